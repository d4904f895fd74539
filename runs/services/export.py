"""Export runs: one call tree as one JSON document, filtered lists as JSON Lines or CSV.

Every writer here is a generator of byte chunks, so the API, the dashboard and
``manage.py export_runs`` stream the same bytes and a worker's memory stays one batch of
runs (plus one chunk of events) at any size. Stored JSON (inputs, payloads) is copied into
the output as the database returns its text, not parsed and encoded again: that keeps
every value exact (a value nested too deeply for Python to parse comes out whole) and is
most of the speed (measured in bench/export.py).

The format (version 1):

- a JSON Lines line is one run: every column of skill_runs, times in UTC
  (``2026-11-26T08:30:00.123456Z``), and with events an ``events`` array of
  ``{"sequence", "event_type", "created_at", "payload"}`` in sequence order;
- the call-tree document is ``{"format": "skillaudit-runs", "version": 1, "kind": "tree",
  "run_id", "root_id", "exported_at", "runs": [...]}``, the runs (events always included)
  oldest first, one per line;
- CSV has the summary columns (output and error cut to previews), UTF-8 with a byte-order
  mark, and text cells starting with = + - @ tab, CR or an apostrophe get an apostrophe in
  front, so no spreadsheet runs one as a formula (an import removes it again).
"""

from __future__ import annotations

import csv
import io
import json
import queue
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from django.db import DEFAULT_DB_ALIAS, connections

from .. import contract
from ..managers import (
    TRANSFER_FINISHED,
    TRANSFER_RUN_FIELDS,
    TRANSFER_STARTED,
    TRANSFER_SUMMARY_FIELDS,
    PendingRows,
    RunTransfer,
    utc_iso,
)
from ..models import SkillRun

FORMAT = "skillaudit-runs"
FORMAT_VERSION = 1
# Runs read per query. A batch's rows are in memory at once (outputs can be 10 KB each), so
# it bounds a worker's memory; 1,000 costs a query per 1,000 runs (~1% of the time).
BATCH_SIZE = 1000
# With events, fewer runs per batch, and their events read in one query unless they are
# more than EVENTS_PER_QUERY (then run by run, in keyset chunks): memory stays bounded.
EVENTS_BATCH_SIZE = 200
EVENTS_PER_QUERY = 20_000
EVENT_CHUNK = 5000
# Bytes handed to the server per chunk: fewer, bigger writes; still small in memory.
CHUNK_CHARS = 256 * 1024
# A tree bigger than this is refused: the document is read whole on import.
TREE_CAP = 100_000
TREE_DEPTH = 1000

CSV_COLUMNS = (*TRANSFER_SUMMARY_FIELDS, "output_preview", "error_preview")
# Numbers and times are written by us and never start with these; text cells may.
CSV_TEXT_COLUMNS = frozenset(
    ("id", "skill_id", "caller_id", "channel_id", "parent_run_id", "status")
    + ("output_preview", "error_preview")
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
_FORMULA_FIRST = frozenset(FORMULA_STARTS)

_dumps = json.JSONEncoder(ensure_ascii=False).encode


class TreeTooLarge(ValueError):
    """The call tree holds more runs than TREE_CAP."""


# An instant in UTC with microseconds and a Z: the one time format of the export.
iso = utc_iso


def guard_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: one apostrophe before a formula start."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


# --- JSON ------------------------------------------------------------------------------


# A run's JSON object is written column by column into a fixed template instead of a dict
# encoded by json: at 100k runs on PostgreSQL the dict and json's string escaping were
# ~45 us of the ~75 us a run cost the exporting process. orjson escapes a string exactly
# as json.dumps(ensure_ascii=False) does (every code point checked; the bytes are pinned by
# tests/test_export_bytes.py) at a tenth of the time; integers and finite floats go through
# bytes formatting (%d, %r: json's spellings). Whatever this path refuses (a lone
# surrogate, an integer beyond 64 bits, NaN, a datetime, a value of another type written
# by another program) sends the row to _run_head_text, the json version: the same bytes.
_EXPECTED_FIELDS = (
    "id",
    "skill_id",
    "caller_id",
    "channel_id",
    "parent_run_id",
    "status",
    "started_at",
    "finished_at",
    "runtime_seconds",
    "tool_calls_count",
    "total_input_tokens",
    "total_output_tokens",
    "total_thinking_tokens",
    "output",
    "error",
)
assert TRANSFER_RUN_FIELDS == _EXPECTED_FIELDS, "update _run_values and its template"
_SPELLING = {"started_at": '"%b"', "runtime_seconds": "%r"} | dict.fromkeys(
    ("tool_calls_count", "total_input_tokens", "total_output_tokens", "total_thinking_tokens"),
    "%d",
)
_RUN_HEAD = (
    "{"
    + ", ".join(f'"{name}": {_SPELLING.get(name, "%b")}' for name in TRANSFER_RUN_FIELDS)
    + ', "inputs": %b'
).encode()
_RUN_LINE = _RUN_HEAD + b"}\n"
_FLOAT_MAX = sys.float_info.max
_dumps_bytes = orjson.dumps


def _run_values(row: tuple) -> tuple:
    """The values of _RUN_HEAD for a full row with its times as text; raises for anything
    the json version would spell otherwise."""
    (
        run_id,
        skill_id,
        caller_id,
        channel_id,
        parent_run_id,
        status,
        started_at,
        finished_at,
        runtime,
        tools,
        input_tokens,
        output_tokens,
        thinking_tokens,
        output,
        error,
        inputs,
    ) = row
    if not (
        type(runtime) is float  # exactly: a subclass may spell itself otherwise
        and -_FLOAT_MAX <= runtime <= _FLOAT_MAX  # NaN and infinities are json's own
        and type(tools) is int
        and type(input_tokens) is int
        and type(output_tokens) is int
        and type(thinking_tokens) is int
    ):
        raise TypeError("not a plain number")
    return (
        _dumps_bytes(run_id),
        _dumps_bytes(skill_id),
        _dumps_bytes(caller_id),
        _dumps_bytes(channel_id),
        _dumps_bytes(parent_run_id),
        _dumps_bytes(status),
        started_at.encode("ascii"),  # a datetime (or None) raises
        b"null" if finished_at is None else b'"' + finished_at.encode("ascii") + b'"',
        runtime,
        tools,
        input_tokens,
        output_tokens,
        thinking_tokens,
        _dumps_bytes(output),
        _dumps_bytes(error),
        (inputs or "{}").encode("utf-8", "replace"),
    )


def _text_times(row: tuple) -> tuple:
    """A full row with datetimes (runs_by_ids) as run_batches(iso_times=True) gives it."""
    return (
        *row[:TRANSFER_STARTED],
        iso(row[TRANSFER_STARTED]),
        iso(row[TRANSFER_FINISHED]),
        *row[TRANSFER_FINISHED + 1 :],
    )


def _run_head_text(row: tuple) -> str:
    """_run_head by json: the first version of the format, for rows _run_values refuses."""
    fields = dict(zip(TRANSFER_RUN_FIELDS, row, strict=False))
    for name in ("started_at", "finished_at"):
        if not isinstance(fields[name], str | None):
            fields[name] = iso(fields[name])
    return _dumps(fields)[:-1] + ', "inputs": ' + (row[-1] or "{}")


def _run_head(row: tuple) -> bytes:
    """The run's JSON object without its closing brace (events follow), UTF-8."""
    try:
        return _RUN_HEAD % _run_values(row)
    except Exception:  # noqa: BLE001 -- any refusal: the json version decides
        return _run_head_text(row).encode("utf-8", "replace")


def _run_lines(rows: list[tuple]) -> list[bytes]:
    """Each run of a batch as one JSON Lines line, UTF-8."""
    lines = []
    for row in rows:
        try:
            lines.append(_RUN_LINE % _run_values(row))
        except Exception:  # noqa: BLE001 -- as in _run_head
            lines.append((_run_head_text(row) + "}\n").encode("utf-8", "replace"))
    return lines


def _event_json(row: tuple) -> str:
    _run_id, sequence, event_type, created_at, payload = row
    return (
        f'{{"sequence": {sequence}, "event_type": {_dumps(event_type)}, '
        f'"created_at": "{iso(created_at)}", "payload": {payload or "{}"}}}'
    )


class _Chunks:
    """Collects UTF-8 (or text, encoded on the way in) and hands it on in pieces of about
    CHUNK_CHARS bytes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.started = False

    def add(self, data: bytes | str) -> bytes | None:
        if isinstance(data, str):
            # Stored text cannot hold lone surrogates (contract.clean_text); "replace"
            # keeps a row written by another program from ending the download half way.
            data = data.encode("utf-8", "replace")
        self.parts.append(data)
        self.size += len(data)
        if self.size >= CHUNK_CHARS:
            return self.take()
        return None

    def add_lines(self, lines: list[bytes]) -> Iterator[bytes]:
        """add() of each line, yielding every chunk filled on the way."""
        parts, size = self.parts, self.size
        for line in lines:
            parts.append(line)
            size += len(line)
            if size >= CHUNK_CHARS:
                self.parts, self.size = [], 0
                yield b"".join(parts)
                parts, size = self.parts, 0
        self.size = size

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        return data


_DONE = object()


def _read_ahead(batches: Iterator[list], using: str) -> Iterator[list]:
    """The batches of ``batches``, each read by a reader thread while the caller encodes the
    one before: the database's work (the keyset query, its rows sent and turned into
    tuples) overlaps Python's (JSON or CSV). Measured on PostgreSQL at 100k runs, the
    backend spent 6.0 s of CPU and the exporting process 3.6 s, one after the other; on two
    cores they now run side by side (bench/export.py). On PostgreSQL the batches come as
    PendingRows and are turned into tuples here, in the caller's thread: the reader only
    waits on PostgreSQL, and sends the next query as soon as a result has arrived.

    The reader uses the caller's own connection (Django's thread sharing), so it reads in
    the caller's transaction and sees what the caller sees; the caller makes no query while
    it iterates (the exports without events, whose only queries are these batches). At most
    one batch waits in the queue: memory is three batches (one encoded, one waiting, one
    being read). If the consumer stops early (a client gone), the reader stops after the
    batch it is reading.
    """
    connection = connections[using]
    connection.ensure_connection()
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        connections[using] = connection  # this thread's alias: the caller's connection
        try:
            for batch in batches:
                if not hand_over(batch):
                    return
            hand_over(_DONE)
        except BaseException as exc:  # handed to the caller, raised there
            hand_over(exc)

    connection.inc_thread_sharing()
    reader = threading.Thread(target=read, name="export-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item.fetch() if isinstance(item, PendingRows) else item
    finally:
        stop.set()
        reader.join()
        while not ready.empty():  # a batch read for a consumer that stopped
            item = ready.get_nowait()
            if isinstance(item, PendingRows):
                item.close()
        connection.dec_thread_sharing()


def _runs_with_events(
    transfer: RunTransfer, rows: list[tuple]
) -> Iterator[tuple[bool, bytes | str]]:
    """(starts a run, UTF-8 or text) pieces of each run's JSON with its events, in the
    order of rows (full rows, times as text); memory: one batch of runs and at most
    EVENTS_PER_QUERY events (a batch with more is read run by run, in keyset chunks)."""
    logs = transfer.log_rows([row[0] for row in rows], EVENTS_PER_QUERY)
    if logs is not None:
        by_run: dict[str, list[str]] = {}
        for log in logs:
            by_run.setdefault(log[0], []).append(_event_json(log))
        for row in rows:
            events = ", ".join(by_run.get(row[0], ())).encode("utf-8", "replace")
            yield True, _run_head(row) + b', "events": [' + events + b"]}"
        return
    for row in rows:
        yield True, _run_head(row) + b', "events": ['
        separator = ""
        for chunk in transfer.run_log_batches(row[0], EVENT_CHUNK):
            yield False, separator + ", ".join(_event_json(log) for log in chunk)
            separator = ", "
        yield False, "]}"


def jsonl_chunks(
    matching, events: bool = False, using: str = DEFAULT_DB_ALIAS, on_runs=None
) -> Iterator[bytes]:
    """The runs of ``matching`` (a SkillRun queryset) newest first, one JSON object a line.

    ``on_runs(n)`` is called after each batch of n runs (progress bars).
    """
    transfer = RunTransfer(using)
    out = _Chunks()
    batch_size = EVENTS_BATCH_SIZE if events else BATCH_SIZE
    if events:
        batches = transfer.run_batches(matching, batch_size, full=True, iso_times=True)
    else:
        # Without events the batches are the only queries: read them ahead.
        batches = _read_ahead(
            transfer.run_batches(matching, batch_size, full=True, iso_times=True, pending=True),
            using,
        )
    for rows in batches:
        if events:
            for starts_run, text in _runs_with_events(transfer, rows):
                if starts_run and out.started:
                    out.add("\n")
                out.started = True
                data = out.add(text)
                if data:
                    yield data
        else:
            yield from out.add_lines(_run_lines(rows))
        if on_runs is not None:
            on_runs(len(rows))
    if events and out.started:
        out.add("\n")
    if out.parts:
        yield out.take()


# --- CSV -------------------------------------------------------------------------------


def csv_chunks(matching, using: str = DEFAULT_DB_ALIAS, on_runs=None) -> Iterator[bytes]:
    """The runs of ``matching`` newest first as CSV rows of CSV_COLUMNS, with a header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")  # so that spreadsheets read UTF-8, not the local code page
    writer.writerow(CSV_COLUMNS)
    text_at = [i for i, name in enumerate(CSV_COLUMNS) if name in CSV_TEXT_COLUMNS]
    first = _FORMULA_FIRST
    # The times come as text (run_batches(iso_times=True)); csv writes None as "".
    batches = RunTransfer(using).run_batches(
        matching, BATCH_SIZE, full=False, iso_times=True, pending=True
    )
    for rows in _read_ahead(batches, using):
        guarded = []
        for row in rows:
            # Most rows have no cell to guard: checked by first character, copied only when
            # one needs its apostrophe.
            for i in text_at:
                if row[i] and row[i][0] in first:
                    cells = list(row)
                    for j in text_at:
                        if cells[j]:
                            cells[j] = guard_cell(cells[j])
                    row = cells
                    break
            guarded.append(row)
        writer.writerows(guarded)
        yield buffer.getvalue().encode("utf-8", "replace")
        buffer.seek(0)
        buffer.truncate()
        if on_runs is not None:
            on_runs(len(rows))
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8", "replace")


# --- one call tree ---------------------------------------------------------------------


@dataclass
class TreeExport:
    """A call tree found and counted, ready to stream (so a 404 or a refusal comes before
    the first byte)."""

    run_id: str
    root_id: str
    run_ids: list[str]
    using: str

    def chunks(self) -> Iterator[bytes]:
        transfer = RunTransfer(self.using)
        head = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": "tree",
            "run_id": self.run_id,
            "root_id": self.root_id,
            "exported_at": iso(contract.utcnow()),
        }
        out = _Chunks()
        out.add(_dumps(head)[:-1] + ', "runs": [\n')
        first = True
        for start in range(0, len(self.run_ids), EVENTS_BATCH_SIZE):
            rows = transfer.runs_by_ids(self.run_ids[start : start + EVENTS_BATCH_SIZE])
            rows = [_text_times(row) for row in rows]
            for starts_run, text in _runs_with_events(transfer, rows):
                if starts_run and not first:
                    out.add(",\n")
                first = False
                data = out.add(text)
                if data:
                    yield data
        out.add("\n]}\n")
        yield out.take()


def tree_export(run_id: str, using: str = DEFAULT_DB_ALIAS) -> TreeExport:
    """The whole call tree of a run, from the root of its parent chain (as the tree page
    shows it). NotFound for an unknown run, TreeTooLarge beyond TREE_CAP runs."""
    run_id = contract.clean_id(run_id)
    chain = SkillRun.objects.db_manager(using).parent_chain(run_id, summaries=True)
    root_id = chain[0].id
    positions = RunTransfer(using).tree_positions(root_id, TREE_CAP, TREE_DEPTH)
    if len(positions) > TREE_CAP:
        raise TreeTooLarge(
            f"the call tree of {run_id!r} has more than {TREE_CAP:,} runs; export it as "
            "JSON Lines with filters instead"
        )
    return TreeExport(
        run_id=run_id, root_id=root_id, run_ids=[p[1] for p in positions], using=using
    )
