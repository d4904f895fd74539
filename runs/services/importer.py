"""Import runs from an export: JSON Lines, the call-tree document, or CSV (also gzipped).

Records are read in batches; each batch is parsed and checked whole before anything of it
is written, so a malformed line (named by its number) stops the import before its tree is
written, with the batches before it imported. Within a batch, runs linked by
``parent_run_id`` are one tree, written or skipped whole:

- a run not stored yet is inserted with its events;
- a stored run equal to the record (every field the record carries; its events too when
  the record has ``events``) is left alone, so importing a file twice changes nothing;
- a stored run that differs is a conflict, reported with its id and the first differing
  field, and its whole tree is skipped; with ``replace`` the record overwrites it (its
  events are replaced when the record has events).

Everything goes through the contract's rules (runs.contract: NUL and lone surrogates
become U+FFFD, sizes, 64-bit integers, aware times) and is written through the storage
layer (runs.managers.RunTransfer), one transaction per batch, so the run-count triggers
keep /skills/ exact. Times keep their instants; JSON values compare and come back equal.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import math
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, IntegrityError

from .. import contract, jsontext
from ..managers import TRANSFER_RUN_FIELDS, RunTransfer
from .export import CSV_COLUMNS, CSV_TEXT_COLUMNS, FORMAT, FORMAT_VERSION

BATCH_SIZE = 1000
# A batch also ends after this many events, so memory stays bounded with busy runs.
BATCH_EVENTS = 50_000
RUN_KEYS = frozenset((*TRANSFER_RUN_FIELDS, "inputs"))
REQUIRED_KEYS = ("id", "skill_id", "status", "started_at")
EVENT_KEYS = frozenset(("sequence", "event_type", "created_at", "payload"))
# Fields compared in this order; the first that differs is the one reported.
COMPARED = (*TRANSFER_RUN_FIELDS[1:], "inputs")
# Times are parsed from the file; text fields are cut where the contract cuts them.
TIME_FIELDS = ("started_at", "finished_at")
INT_FIELDS = ("tool_calls_count", "total_input_tokens", "total_output_tokens")
INT_FIELDS += ("total_thinking_tokens",)


class MalformedRecord(ValueError):
    """A record that cannot be imported; ``where`` names its line (or its place)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass
class Record:
    where: str  # "line 12" or "runs[3]"
    run: contract.SkillRun
    fields: tuple[str, ...]  # the run fields the record carries
    events: list[contract.SkillRunLog] | None  # None: the record has no events


@dataclass
class ImportConflict:
    run_id: str
    field: str
    where: str
    source: str = ""

    def __str__(self) -> str:
        source = f"{self.source}, " if self.source else ""
        return f"{source}{self.where}: run {self.run_id!r} differs in {self.field}"


@dataclass
class ImportSummary:
    runs_read: int = 0
    created: int = 0
    unchanged: int = 0
    replaced: int = 0
    skipped: int = 0  # runs of trees skipped for a conflict
    events_written: int = 0
    conflicts: list[ImportConflict] = field(default_factory=list)
    error: str = ""  # the malformed record that stopped the import

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.error

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["conflicts"] = [
            {"run_id": c.run_id, "field": c.field, "where": c.where} for c in self.conflicts
        ]
        return data

    def text(self) -> str:
        return (
            f"{self.runs_read} run(s) read: {self.created} created, {self.unchanged} already "
            f"stored, {self.replaced} replaced, {self.skipped} skipped in "
            f"{len(self.conflicts)} conflict(s); {self.events_written} event(s) written"
        )


# --- reading records ---------------------------------------------------------------------


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _loads(text: str):
    return json.loads(text, parse_float=_finite, parse_constant=_refuse_constant)


def _time(value, what: str) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise contract.InvalidInput(f"{what} must be an ISO 8601 time with an offset")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise contract.InvalidInput(f"{what} is not an ISO 8601 time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise contract.InvalidInput(f"{what} has no offset (write Z for UTC): {value!r}")
    return contract.require_aware(parsed, what)


def _json_object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise contract.InvalidInput(f"{what} must be a JSON object")
    if jsontext.depth_exceeds(value, jsontext.MAX_JSON_DEPTH):
        raise contract.InvalidInput(f"{what} is nested deeper than {jsontext.MAX_JSON_DEPTH}")
    return contract.clean_json(value)


def check_run(data, where: str) -> Record:
    """A Record from one run object (a JSON Lines line, or a run of a tree document)."""
    try:
        return _check_run(data)
    except (contract.InvalidInput, TypeError, OverflowError) as exc:
        raise MalformedRecord(where, contract.clean_text(str(exc))[:500]) from None


def _check_run(data) -> Record:
    if not isinstance(data, dict):
        raise contract.InvalidInput("a run must be a JSON object")
    unknown = sorted(set(data) - RUN_KEYS - {"events"})
    if unknown:
        raise contract.InvalidInput(f"unknown field {contract.clean_text(unknown[0])[:100]!r}")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise contract.InvalidInput(f"missing field {missing[0]!r}")
    if data["started_at"] is None:
        raise contract.InvalidInput("started_at must be an ISO 8601 time with an offset")
    values = {}
    for name in TIME_FIELDS:
        if data.get(name) is not None:
            values[name] = _time(data[name], name)
    if "inputs" in data:
        values["inputs"] = _json_object(data["inputs"], "inputs")
    for name in ("id", "skill_id", "caller_id", "channel_id", "parent_run_id"):
        if name in data and not isinstance(data[name], str):
            raise contract.InvalidInput(f"{name} must be a string")
    # new_run checks ids, names and numbers as start_run does; clean_stats the rest.
    run = contract.new_run(
        contract.SkillRun(
            id=data["id"],
            skill_id=data["skill_id"],
            caller_id=data.get("caller_id", ""),
            channel_id=data.get("channel_id", ""),
            parent_run_id=data.get("parent_run_id", ""),
            inputs=values.get("inputs", {}),
            started_at=values["started_at"],
            tool_calls_count=data.get("tool_calls_count", 0),
            runtime_seconds=data.get("runtime_seconds", 0.0),
            total_input_tokens=data.get("total_input_tokens", 0),
            total_output_tokens=data.get("total_output_tokens", 0),
            total_thinking_tokens=data.get("total_thinking_tokens", 0),
        ),
        contract.utcnow(),
    )
    stats = contract.clean_stats(
        contract.RunStats(
            status=data["status"],
            output=data.get("output", ""),
            error=data.get("error", ""),
        )
    )
    run = dataclasses.replace(
        run,
        status=stats.status,
        output=stats.output,
        error=stats.error,
        finished_at=values.get("finished_at"),
    )
    events = None
    if "events" in data:
        events = _check_events(run.id, data["events"])
    fields = tuple(name for name in COMPARED if name in data)
    return Record(where="", run=run, fields=fields, events=events)


def _check_events(run_id: str, events) -> list[contract.SkillRunLog]:
    if not isinstance(events, list):
        raise contract.InvalidInput("events must be a JSON array")
    checked = []
    seen: set[int] = set()
    for n, event in enumerate(events):
        what = f"events[{n}]"
        if not isinstance(event, dict):
            raise contract.InvalidInput(f"{what} must be a JSON object")
        unknown = sorted(set(event) - EVENT_KEYS)
        if unknown:
            raise contract.InvalidInput(
                f"{what}: unknown field {contract.clean_text(unknown[0])[:100]!r}"
            )
        for key in ("sequence", "event_type", "created_at"):
            if key not in event:
                raise contract.InvalidInput(f"{what}: missing field {key!r}")
        if not isinstance(event["event_type"], str):
            raise contract.InvalidInput(f"{what}: event_type must be a string")
        try:
            log = contract.new_log(
                contract.SkillRunLog(
                    run_id=run_id,
                    sequence=event["sequence"],
                    event_type=event["event_type"],
                    payload=_json_object(event.get("payload", {}), "payload"),
                    created_at=_time(event["created_at"], "created_at"),
                ),
                contract.utcnow(),
            )
        except contract.InvalidInput as exc:
            raise contract.InvalidInput(f"{what}: {exc}") from None
        if log.sequence in seen:
            raise contract.InvalidInput(f"{what}: sequence {log.sequence} is repeated")
        seen.add(log.sequence)
        checked.append(log)
    return checked


def _csv_records(lines: Iterator[str]) -> Iterator[Record]:
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise MalformedRecord("line 1", f"not CSV: {exc}") from None
    header = [name.lstrip("\ufeff") for name in header]
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if unknown:
        raise MalformedRecord("line 1", f"unknown column {contract.clean_text(unknown[0])!r}")
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise MalformedRecord(f"line {reader.line_num}", f"not CSV: {exc}") from None
        where = f"line {reader.line_num}"
        if not cells:
            continue
        if len(cells) != len(header):
            raise MalformedRecord(where, f"{len(cells)} cells for {len(header)} columns")
        data: dict = {}
        for name, cell in zip(header, cells, strict=True):
            if name in ("output_preview", "error_preview"):
                continue  # previews of text the CSV does not carry whole
            if name in CSV_TEXT_COLUMNS:
                data[name] = cell[1:] if cell.startswith("'") else cell
            elif name == "finished_at":
                data[name] = cell or None
            elif name == "runtime_seconds":
                data[name] = _csv_number(cell, name, where, float)
            elif name in INT_FIELDS:
                data[name] = _csv_number(cell, name, where, int)
            else:
                data[name] = cell
        record = check_run(data, where)
        record.where = where
        yield record


def _csv_number(cell: str, name: str, where: str, kind):
    try:
        value = kind(cell)
    except ValueError:
        raise MalformedRecord(where, f"{name} is not a number: {cell[:40]!r}") from None
    if kind is float and not math.isfinite(value):
        raise MalformedRecord(where, f"{name} must be finite")
    return value


def _tree_records(document, line: int) -> Iterator[Record]:
    where = f"line {line}"
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise MalformedRecord(where, f"not a {FORMAT} document")
    version = document.get("version")
    if version != FORMAT_VERSION:
        raise MalformedRecord(
            where, f"format version {version!r} is not {FORMAT_VERSION}, the one this reads"
        )
    runs = document.get("runs")
    if not isinstance(runs, list):
        raise MalformedRecord(where, "runs must be a JSON array")
    for n, data in enumerate(runs):
        record = check_run(data, f"runs[{n}]")
        record.where = f"runs[{n}]"
        yield record


def _json_records(lines: Iterator[str]) -> Iterator[Record]:
    """JSON Lines, or one tree document (written one run a line, or on one line)."""
    first = True
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if first:
            first = False
            text = text.lstrip("\ufeff")
            if text == "{" or text.startswith('{"format"'):
                # The tree document: read whole (at most export.TREE_CAP runs).
                rest = "".join(lines)
                try:
                    document = _loads(text + rest)
                except RecursionError:
                    raise MalformedRecord(f"line {number}", "JSON nested too deeply") from None
                except json.JSONDecodeError as exc:
                    raise MalformedRecord(
                        f"line {number + exc.lineno - 1}", f"not JSON: {exc.msg}"
                    ) from None
                except ValueError as exc:
                    raise MalformedRecord(f"line {number}", f"not JSON: {exc}") from None
                yield from _tree_records(document, number)
                return
        where = f"line {number}"
        try:
            data = _loads(text)
        except RecursionError:
            raise MalformedRecord(where, "JSON nested too deeply") from None
        except ValueError as exc:
            raise MalformedRecord(
                where, f"not JSON: {contract.clean_text(str(exc))[:200]}"
            ) from None
        record = check_run(data, where)
        record.where = where
        yield record


def read_records(stream: io.BufferedIOBase) -> Iterator[Record]:
    """Records from a binary stream: gzip (by its magic bytes), then JSON or CSV (by the
    first character: JSON starts with "{" or "["). A corrupt or cut gzip stream is a
    MalformedRecord too (the records before it come first)."""
    try:
        yield from _read_records(stream)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise MalformedRecord(
            "gzip", f"the compressed data is corrupt or cut short ({exc})"
        ) from None


def _read_records(stream: io.BufferedIOBase) -> Iterator[Record]:
    if not isinstance(stream, io.BufferedReader | gzip.GzipFile):
        stream = io.BufferedReader(stream)
    if stream.peek(2)[:2] == b"\x1f\x8b":
        stream = io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"))
    head = stream.peek(64)[:64].decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    lines = iter(text)
    if head.startswith(("{", "[")) or not head:
        yield from _json_records(lines)
    else:
        yield from _csv_records(lines)


def batches(records: Iterable[Record], size: int = BATCH_SIZE) -> Iterator[list[Record]]:
    batch: list[Record] = []
    events = 0
    for record in records:
        batch.append(record)
        events += len(record.events or ())
        if len(batch) >= size or events >= BATCH_EVENTS:
            yield batch
            batch, events = [], 0
    if batch:
        yield batch


# --- comparing with what is stored ---------------------------------------------------------


def same_json(a, b) -> bool:
    """JSON equality: numbers by their value as a double (PostgreSQL's jsonb writes 1e20
    as an integer, 1e308 as 309 digits), but true is not 1 and 1 is not "1"; objects
    regardless of key order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        try:
            return float(a) == float(b)
        except OverflowError:
            return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _stored_value(row: tuple, name: str):
    if name == "inputs":
        return jsontext.load_object(row[-1])
    value = row[TRANSFER_RUN_FIELDS.index(name)]
    return value


def first_difference(record: Record, row: tuple, stored_logs: list[tuple] | None) -> str | None:
    """The first field (in COMPARED order, then events) where record and the stored row
    differ, or None when they agree on everything the record carries."""
    for name in record.fields:
        mine, stored = getattr(record.run, name), _stored_value(row, name)
        if name == "inputs":
            if stored is None or not same_json(mine, stored):
                return name
        elif name in TIME_FIELDS:
            if (mine is None) != (stored is None) or (mine is not None and mine != stored):
                return name
        elif name == "runtime_seconds":
            if float(stored) != mine:
                return name
        elif mine != stored:
            return name
    if record.events is None:
        return None
    stored_by_sequence = {log[0]: log for log in stored_logs or ()}
    mine_by_sequence = {log.sequence: log for log in record.events}
    for sequence in sorted(stored_by_sequence.keys() | mine_by_sequence.keys()):
        mine, stored = mine_by_sequence.get(sequence), stored_by_sequence.get(sequence)
        if stored is None:
            return f"events (sequence {sequence} is not stored)"
        if mine is None:
            return f"events (sequence {sequence} is stored but not in the import)"
        if mine.event_type != stored[1]:
            return f"events[sequence {sequence}].event_type"
        if mine.created_at != stored[2]:
            return f"events[sequence {sequence}].created_at"
        payload = jsontext.load_object(stored[3])
        if payload is None or not same_json(mine.payload, payload):
            return f"events[sequence {sequence}].payload"
    return None


def trees(batch: list[Record]) -> list[list[Record]]:
    """The records grouped by call tree: runs linked by parent_run_id within the batch.

    MalformedRecord when a run id appears twice in the batch."""
    by_id: dict[str, Record] = {}
    for record in batch:
        earlier = by_id.get(record.run.id)
        if earlier is not None:
            raise MalformedRecord(record.where, f"repeats run {record.run.id!r} of {earlier.where}")
        by_id[record.run.id] = record
    roots: dict[str, str] = {}

    def root_of(run_id: str) -> str:
        path = []
        while run_id not in roots:
            path.append(run_id)
            parent = by_id[run_id].run.parent_run_id
            if parent not in by_id or parent in path:
                roots[run_id] = run_id
                break
            run_id = parent
        root = roots[run_id]
        for step in path:
            roots[step] = root
        return root

    groups: dict[str, list[Record]] = {}
    for record in batch:
        groups.setdefault(root_of(record.run.id), []).append(record)
    return list(groups.values())


# --- writing -----------------------------------------------------------------------------


@dataclass
class _Plan:
    new_runs: list = field(default_factory=list)
    changed: list = field(default_factory=list)
    logs: list = field(default_factory=list)
    clear_logs_of: list = field(default_factory=list)
    created: int = 0
    unchanged: int = 0
    replaced: int = 0

    def add(self, other: _Plan) -> None:
        self.new_runs += other.new_runs
        self.changed += other.changed
        self.logs += other.logs
        self.clear_logs_of += other.clear_logs_of
        self.created += other.created
        self.unchanged += other.unchanged
        self.replaced += other.replaced


class Importer:
    """Imports batches of records into the database ``using`` and keeps the summary."""

    def __init__(self, replace: bool = False, using: str = DEFAULT_DB_ALIAS, source: str = ""):
        self.replace = replace
        self.transfer = RunTransfer(using)
        self.summary = ImportSummary()
        self.source = source

    def import_records(
        self,
        records: Iterable[Record],
        batch_size: int = BATCH_SIZE,
        on_batch: Callable[[ImportSummary], None] | None = None,
    ) -> ImportSummary:
        """Import every batch; stops at a malformed record (summary.error says where)."""
        try:
            for batch in batches(records, batch_size):
                self.import_batch(batch)
                if on_batch is not None:
                    on_batch(self.summary)
        except MalformedRecord as exc:
            source = f"{self.source}, " if self.source else ""
            self.summary.error = f"{source}{exc}"
        return self.summary

    def import_batch(self, batch: list[Record]) -> None:
        groups = trees(batch)
        self.summary.runs_read += len(batch)
        ids = [record.run.id for record in batch]
        stored = self.transfer.stored_runs(ids)
        with_events = [r.run.id for r in batch if r.events is not None and r.run.id in stored]
        stored_logs = self.transfer.stored_logs(with_events) if with_events else {}
        plans = []
        for group in groups:
            plan = self._plan(group, stored, stored_logs)
            if plan is not None:
                plans.append((group, plan))
        whole = _Plan()
        for _group, plan in plans:
            whole.add(plan)
        try:
            self._write(whole)
        except (IntegrityError, contract.Conflict):
            # Another writer stored one of these runs meanwhile: tree by tree, so only the
            # trees it touched are skipped.
            for group, plan in plans:
                try:
                    self._write(plan)
                except (IntegrityError, contract.Conflict):
                    self._conflict(group, group[0], "id (stored by another writer meanwhile)")

    def _plan(self, group: list[Record], stored: dict, stored_logs: dict) -> _Plan | None:
        plan = _Plan()
        conflicts = []
        for record in group:
            run = record.run
            row = stored.get(run.id)
            if row is None:
                plan.new_runs.append(run)
                plan.logs += record.events or ()
                plan.created += 1
                continue
            difference = first_difference(record, row, stored_logs.get(run.id))
            if difference is None:
                plan.unchanged += 1
                continue
            if not self.replace:
                conflicts.append((record, difference))
                continue
            plan.changed.append((run, record.fields))
            if record.events is not None:
                plan.clear_logs_of.append(run.id)
                plan.logs += record.events
            plan.replaced += 1
        if conflicts:
            for record, difference in conflicts:
                self._conflict(group, record, difference, count=False)
            self.summary.skipped += len(group)
            return None
        return plan

    def _conflict(self, group, record: Record, difference: str, count: bool = True) -> None:
        self.summary.conflicts.append(
            ImportConflict(record.run.id, difference, record.where, self.source)
        )
        if count:
            self.summary.skipped += len(group)

    def _write(self, plan: _Plan) -> None:
        self.transfer.write(plan.new_runs, plan.changed, plan.logs, plan.clear_logs_of)
        self.summary.created += plan.created
        self.summary.unchanged += plan.unchanged
        self.summary.replaced += plan.replaced
        self.summary.events_written += len(plan.logs)


def import_stream(
    stream,
    replace: bool = False,
    using: str = DEFAULT_DB_ALIAS,
    source: str = "",
    batch_size: int = BATCH_SIZE,
    on_batch=None,
    importer: Importer | None = None,
) -> ImportSummary:
    """Import one export (a binary stream: JSON Lines, tree document or CSV, maybe gzip).

    Pass the same ``importer`` for several files to add up one summary."""
    importer = importer or Importer(replace=replace, using=using)
    importer.source = source
    return importer.import_records(read_records(stream), batch_size, on_batch)


def parse_all(data: bytes) -> list[Record]:
    """Every record of a body, checked (MalformedRecord at the first bad one, or at a run
    id given twice): the API refuses a bad body before writing anything."""
    records = list(read_records(io.BytesIO(data)))
    trees(records)  # refuses a repeated run id
    return records
