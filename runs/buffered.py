"""BufferedStorage: a Storage whose writes cost the caller microseconds, stored in batches.

Why: unbuffered, the recorder stores one event per transaction inside the agent's own
thread. On PostgreSQL (bench/api_ingest.py) that is 309 events/s in process and 87/s over
HttpStorage: 3-11 ms of the agent's time per event, while the same database takes
10,800-17,400 events/s when they arrive 1,000 to a transaction. Langfuse's SDK and
OpenTelemetry's BatchSpanProcessor record the same way: a bounded queue in memory, one
background thread that exports batches.

How: ``start_run``, ``append_log`` and ``finish_run`` check and copy their argument with
the contract's own rules (a refused argument raises at once, as in every Storage; the copy
means the caller may change a payload afterwards) and put it on a bounded queue. One
daemon thread per BufferedStorage takes what is queued (up to ``max_batch``) as soon as
``batch_size`` operations are waiting or every ``interval`` seconds, whichever comes
first, and writes it: runs' starts, then their events (one ``append_logs`` call, that is one
transaction, for the whole batch on DjangoStorage, one request per run on HttpStorage),
then their finishes. A run's own operations keep their order: it is never started after
one of its events or finished before an event recorded before the finish.

Bounded:

- a full queue (``max_queue`` operations) drops the newest operation and counts it in
  ``dropped``; the caller waits for room at most ``wait_when_full`` seconds (default 0,
  and never inside a running asyncio event loop, which must not block);
- a write that fails for another reason than the contract's (NotFound, Conflict,
  ValueError: the storage refused that operation) means the storage is unavailable: it is
  retried with backoff (0.05 s doubling to ``max_backoff``) until the storage has been
  failing for ``retry_for`` seconds; then the batch is dropped and counted, and, until the
  storage answers again, each next batch gets one try per ``max_backoff`` (the queue stays
  bounded meanwhile by dropping new operations). An outage is logged when it starts, when
  it first costs data and when it ends: a few lines, not one per event;
- an operation the storage refuses is counted in ``failures`` and logged, like the
  unbuffered recorder does; a refused batch is split (by run, then event by event) so that
  one bad event costs only itself.

Flushed: ``flush(timeout)`` waits until everything accepted before it is stored (or
refused, or dropped); ``close(timeout)`` flushes and stops the thread, and runs on
``with`` exit and at interpreter exit (``atexit``, each buffer at most ``close_timeout``
seconds). A process that is killed (SIGKILL, or a SIGTERM it does not turn into
``SystemExit``) loses what was still in the queue: at most ``max_queue`` operations,
normally the last ``interval`` seconds of recording.

Writes the storage stamps itself are stamped when the writer stores them: a finished run's
``finished_at`` is normally within ``interval`` of ``close()`` (its runtime is measured by
the recorder at ``close()``, exactly). Events and starts carry the time they were recorded.

Reads pass straight through to the wrapped storage and do not wait for the queue: call
``flush()`` first to read what was just recorded. ``purge_older_than`` flushes first, so it
acts on everything recorded before it.

This module imports nothing from Django: the executor's side (runs.recorder) imports it.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from . import contract
from .contract import RunFilter, RunStats, SkillRun, SkillRunLog, Storage

logger = logging.getLogger(__name__)

# Operation kinds; an operation is a tuple (kind, run_id, checked argument, owner).
START, EVENT, FINISH = 0, 1, 2
# The API takes at most this many events in one request.
MAX_EVENTS_PER_CALL = 10_000
# An operation the storage refuses: retrying cannot help, the operation alone is at fault.
REFUSALS = (contract.NotFound, ValueError)
# How often drops are logged at most (the count goes on in ``dropped``).
DROP_LOG_EVERY_S = 60.0
FIRST_BACKOFF_S = 0.05

_OK, _REFUSED, _LOST = "ok", "refused", "lost"
WRITER_NAME = "skillaudit-writer"
# What the writer remembers of an owner whose start was not stored.
_START_REFUSED, _START_LOST = "refused", "lost"


def _what(op: tuple) -> str:
    kind, _run_id, item, _owner = op
    if kind == START:
        return "start_run"
    if kind == FINISH:
        return "finish_run"
    return item.event_type


def _phases(batch: Sequence[tuple]) -> list[list[tuple]]:
    """The batch as consecutive phases of one kind (starts, events, finishes, starts...),
    as few as keep every run's own order: each operation goes to the first phase of its
    kind at or after its run's previous operation. Runs are independent of each other."""
    last: dict[str, int] = {}
    phases: dict[int, list[tuple]] = {}
    for op in batch:
        kind, run_id = op[0], op[1]
        previous = last.get(run_id, 0)
        phase = previous + (kind - previous) % 3
        last[run_id] = phase
        phases.setdefault(phase, []).append(op)
    return [phases[phase] for phase in sorted(phases)]


def _by_run(ops: Sequence[tuple]) -> list[list[tuple]]:
    runs: dict[str, list[tuple]] = {}
    for op in ops:
        runs.setdefault(op[1], []).append(op)
    return list(runs.values())


def _chunks(ops: Sequence[tuple], size: int) -> Iterator[Sequence[tuple]]:
    for start in range(0, len(ops), size):
        yield ops[start : start + size]


class BufferedStorage:
    """Wraps any Storage; see the module docstring for what it guarantees.

    Options (the defaults, and why):

    - ``batch_size=1000``: the writer writes as soon as this many operations wait (or
      after ``interval``). The API's batch endpoint and DjangoStorage.append_logs reach
      their rate near 1,000 events per transaction (bench/api_ingest.py).
    - ``max_batch=10_000``: the most one batch takes when more are waiting (the API takes
      10,000 events a request). A backlog is written in big batches: over HTTP each run
      in a batch costs a request, and 8 runs interleaved in 1,000 operations would be 8
      requests of 125 events, each paying the API's fixed cost per request.
    - ``interval=0.1``: seconds between writes when fewer than a batch are waiting: what
      the dashboard lags behind, and roughly what a killed process loses.
    - ``max_queue=10_000``: operations queued at most (with the batch being written, at
      most ``max_queue + max_batch`` in memory: a few MB for 300-byte payloads); enough
      to ride out a one-second storage hiccup at 10,000 events/s.
    - ``wait_when_full=0.0``: seconds a caller waits for room in a full queue before its
      operation is dropped. 0: recording never slows the agent; a benchmark or a batch job
      that must not lose events sets it (back-pressure).
    - ``connections=2``: on a storage that stores one run's events per call (HttpStorage:
      one request per run), the calls of one batch go out on up to this many threads at
      once. The server runs 2 workers by default; one request at a time leaves one idle.
      DjangoStorage stores a whole batch in one transaction (and has per-thread
      connections): it is written from the writer thread alone.
    - ``retry_for=30.0``, ``max_backoff=5.0``: how long a failing storage is retried.
    - ``close_timeout=10.0``: what ``close()`` without an argument (``with`` exit, atexit)
      waits at most.
    - ``on_refused``: called in the writer thread as ``on_refused(what, run_id, error)``
      for each operation the storage refused (after it is counted and logged).

    ``dropped``, ``failures`` and ``written`` count operations (a start, an event, a
    finish); ``pending`` is the queue's length.

    ``start_run``, ``append_log`` and ``finish_run`` take an optional ``owner``: the
    RunRecorder that wrote them. The writer reports each outcome back to it
    (``owner._buffer_refused(what)``, ``owner._buffer_lost(what)``) and, once the owner's
    start is refused or lost, skips the owner's later operations, so a recorder whose run
    id belongs to another run never writes into that run (as unbuffered).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        batch_size: int = 1000,
        max_batch: int = 10_000,
        interval: float = 0.1,
        max_queue: int = 10_000,
        wait_when_full: float = 0.0,
        connections: int = 2,
        retry_for: float = 30.0,
        max_backoff: float = 5.0,
        close_timeout: float = 10.0,
        on_refused: Callable[[str, str, BaseException], None] | None = None,
    ) -> None:
        if isinstance(storage, BufferedStorage):
            raise ValueError("the storage is already buffered")
        if not 1 <= batch_size <= max_queue or max_batch < 1:
            raise ValueError("batch_size must be between 1 and max_queue, max_batch >= 1")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if interval <= 0 or wait_when_full < 0 or retry_for < 0 or max_backoff <= 0:
            raise ValueError("interval and max_backoff must be positive, the others >= 0")
        self.storage = storage
        self.batch_size = batch_size
        self.max_batch = max_batch
        self.interval = interval
        self.max_queue = max_queue
        self.wait_when_full = wait_when_full
        self.connections = connections
        self.retry_for = retry_for
        self.max_backoff = max_backoff
        self.close_timeout = close_timeout
        self.on_refused = on_refused
        # DjangoStorage stores events of many runs in one transaction; HttpStorage's
        # endpoint is per run.
        self._across_runs = bool(getattr(storage, "append_logs_across_runs", False))
        # Helper threads only for storages without per-thread connections to close.
        self._parallel = connections > 1 and not hasattr(storage, "close_connection")
        self.dropped = 0
        self.failures = 0
        self.written = 0
        self._init_state()
        _live.add(self)

    def _init_state(self) -> None:
        """Everything a forked child must not share with its parent (see _after_fork)."""
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # producers waiting for room
        self._progress = threading.Condition(self._lock)  # flush() waiting for the writer
        self._counts = threading.Lock()
        self._wake = threading.Event()
        self._interrupt = threading.Event()  # ends the writer's sleeps when close() gives up
        self._queue: collections.deque[tuple] = collections.deque()
        self._accepted = 0  # operations ever queued
        self._handled = 0  # of those, how many the writer (or close) is done with
        self._waiting_for_room = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopping = False
        self._abandon = False
        # Writer-thread state (the outage's shared with the helpers sending a batch's calls).
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._outage_lock = threading.Lock()
        self._gate: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._down_since: float | None = None
        self._given_up = False
        self._next_try = 0.0
        self._batch_lost = False
        self._lost_in_outage = 0
        self._last_drop_log = float("-inf")
        self._unlogged_drops = 0

    # --- the caller's side: check, copy, queue ---------------------------------------

    def start_run(self, run: SkillRun, *, owner: Any = None) -> None:
        stored = contract.new_run(run, contract.utcnow())
        self._put((START, stored.id, stored, owner))

    def append_log(self, log: SkillRunLog, *, owner: Any = None) -> None:
        stored = contract.new_log(log, contract.utcnow())
        self._put((EVENT, stored.run_id, stored, owner))

    def append_logs(self, logs: Sequence[SkillRunLog], *, owner: Any = None) -> None:
        """Queued together or dropped together; stored in order, but a batch boundary
        may fall between them, so not necessarily in one transaction."""
        now = contract.utcnow()
        ops = [(EVENT, log.run_id, log, owner) for log in (contract.new_log(x, now) for x in logs)]
        if ops:
            self._put(*ops)

    def finish_run(self, run_id: str, stats: RunStats, *, owner: Any = None) -> None:
        run_id = contract.clean_id(run_id)
        self._put((FINISH, run_id, contract.clean_stats(stats), owner))

    def _put(self, *ops: tuple) -> None:
        with self._lock:
            queue = self._queue
            if self._closed:
                reason = "recorded after close()"
            elif len(queue) + len(ops) <= self.max_queue or self._wait_for_room(len(ops)):
                queue.extend(ops)
                self._accepted += len(ops)
                if self._thread is None:
                    self._start_writer()
                if len(queue) >= self.batch_size and not self._wake.is_set():
                    self._wake.set()
                return
            else:
                reason = "queue full"
        self._lose(ops, reason)

    def _wait_for_room(self, needed: int) -> bool:
        """With the lock held and no room: wait up to wait_when_full for the writer to
        take a batch. Never in the writer itself, nor in an event loop's thread."""
        if (
            self.wait_when_full <= 0
            or threading.current_thread() is self._thread
            or asyncio._get_running_loop() is not None
        ):
            return False
        deadline = time.monotonic() + self.wait_when_full
        while len(self._queue) + needed > self.max_queue and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wake.set()
            self._waiting_for_room += 1
            try:
                self._room.wait(remaining)
            finally:
                self._waiting_for_room -= 1
        return not self._closed

    @property
    def pending(self) -> int:
        return len(self._queue)

    # --- flush, close ------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every operation queued before this call is stored, refused or
        dropped; False if ``timeout`` seconds passed first (or when called from the
        writer thread, e.g. inside ``on_refused``, where waiting would never end)."""
        if threading.current_thread().name.startswith(WRITER_NAME):
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._accepted
            while self._handled < target:
                if self._thread is None or not self._thread.is_alive():
                    return False
                self._wake.set()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # Bounded slices: a writer that died is noticed above.
                self._progress.wait(1.0 if remaining is None else min(remaining, 1.0))
            return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the writer; later writes are dropped (and counted). Waits at
        most ``timeout`` seconds (default ``close_timeout``): past that, what is still
        queued is dropped and counted and False is returned."""
        timeout = self.close_timeout if timeout is None else timeout
        with self._lock:
            self._closed = True
            self._stopping = True
            thread = self._thread
            self._room.notify_all()
        _live.discard(self)
        if thread is None or threading.current_thread() is thread:
            return thread is None
        self._wake.set()
        thread.join(timeout)
        if not thread.is_alive():
            self._report_unlogged_drops()
            return True
        # The storage is too slow or down: give up on what is left. The writer drops (and
        # counts) the batch it holds at its next try; a call it is inside of (a request
        # hanging until its own timeout) cannot be cut short, so it gets one more second.
        self._abandon = True
        self._interrupt.set()
        thread.join(min(timeout, 1.0))
        with self._lock:
            rest = list(self._queue)
            self._queue.clear()
            self._handled += len(rest)
            self._progress.notify_all()
        self._lose(rest, "close() timed out")
        self._report_unlogged_drops()
        return False

    def _report_unlogged_drops(self) -> None:
        """At close, the drops the once-a-minute log line has not told yet."""
        with self._counts:
            unlogged, self._unlogged_drops = self._unlogged_drops, 0
        if unlogged:
            logger.warning(
                "skillaudit: closed with %d operations dropped in all (%d since the last report)",
                self.dropped,
                unlogged,
            )

    def __enter__(self) -> BufferedStorage:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    # --- the writer thread ---------------------------------------------------------------

    def _start_writer(self) -> None:
        thread = threading.Thread(target=self._write_loop, name=WRITER_NAME, daemon=True)
        self._thread = thread
        thread.start()

    def _write_loop(self) -> None:
        try:
            while True:
                self._wake.wait(self.interval)
                self._wake.clear()
                while self._take_and_write():
                    pass
                if self._stopping and not self._queue:
                    return
        finally:
            self._close_connection()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            with self._lock:
                self._progress.notify_all()

    def _take_and_write(self) -> bool:
        with self._lock:
            n = min(len(self._queue), self.max_batch)
            if n == 0:
                return False
            popleft = self._queue.popleft
            batch = [popleft() for _ in range(n)]
            if self._waiting_for_room:
                self._room.notify_all()
        try:
            self._write_batch(batch)
        except Exception:  # a bug here must not end the thread that every run relies on
            logger.exception("skillaudit: the buffered writer failed on a batch")
        finally:
            with self._lock:
                self._handled += n
                self._progress.notify_all()
        return True

    def _write_batch(self, batch: list[tuple]) -> None:
        self._batch_lost = False
        for phase in _phases(batch):
            live = [op for op in phase if not self._gated(op)]
            if not live:
                continue
            if phase[0][0] == EVENT:
                self._store_events(live)
            else:
                for op in live:
                    self._store_one(op)

    def _gated(self, op: tuple) -> bool:
        """True for an operation of an owner whose start was refused (skipped, as the
        unbuffered recorder skips them) or lost (dropped and counted: it is lost too)."""
        owner = op[3]
        if owner is None:
            return False
        state = self._gate.get(owner)
        if state is None:
            return False
        if state == _START_LOST:
            self._lose([op], "its run's start was lost")
        return True

    def _store_one(self, op: tuple) -> None:
        kind, run_id, item, _owner = op
        if kind == START:
            outcome, error, ambiguous = self._attempt(lambda: self.storage.start_run(item))
            if (
                outcome == _REFUSED
                and ambiguous
                and isinstance(error, contract.Conflict)
                and self._start_was_stored(item)
            ):
                outcome = _OK  # the try that seemed to fail had stored it
        else:
            outcome, error, _ = self._attempt(lambda: self.storage.finish_run(run_id, item))
        self._settle([op], outcome, error)

    def _start_was_stored(self, run: SkillRun) -> bool:
        try:
            stored = self.storage.get_run(run.id)
        except Exception:
            return False
        return (stored.skill_id, stored.caller_id, stored.started_at) == (
            run.skill_id,
            run.caller_id,
            run.started_at,
        )

    def _store_events(self, ops: Sequence[tuple], ambiguous: bool = False) -> None:
        """Events in as few calls as the storage allows (in order); a refused call is
        split by run, then event by event, so one bad event costs only itself."""
        # The events were checked when queued (contract.new_log): a storage that can skip
        # checking them again does.
        append_logs = getattr(self.storage, "append_checked_logs", None) or getattr(
            self.storage, "append_logs", None
        )
        if append_logs is None and len(ops) > 1:
            groups = [[op] for op in ops]
        elif not self._across_runs and len({op[1] for op in ops}) > 1:
            groups = _by_run(ops)
        else:
            groups = None
        if groups is not None:
            if self._parallel and append_logs is not None and len(groups) > 1:
                self._in_parallel(groups, ambiguous)
                return
            for group in groups:
                self._store_events(group, ambiguous)
            return
        for chunk in _chunks(ops, MAX_EVENTS_PER_CALL):
            logs = [op[2] for op in chunk]
            if len(logs) == 1:
                call = lambda log=logs[0]: self.storage.append_log(log)  # noqa: E731
            else:
                call = lambda logs=logs: append_logs(logs)  # noqa: E731
            outcome, error, failed_before = self._attempt(call)
            ambiguous = ambiguous or failed_before
            if outcome != _REFUSED:
                self._settle(chunk, outcome, error)
            elif len(by_run := _by_run(chunk)) > 1:
                for group in by_run:
                    self._store_events(group, ambiguous)
            elif ambiguous and isinstance(error, contract.Conflict):
                self._store_unstored(chunk)
            elif len(chunk) == 1 or isinstance(error, contract.NotFound):
                self._settle(chunk, _REFUSED, error)
            else:
                for op in chunk:
                    self._store_events([op], ambiguous)

    def _in_parallel(self, groups: list[list[tuple]], ambiguous: bool) -> None:
        """Each run's events on one of ``connections`` threads; returns when all are done
        (the batch's finishes come after). Runs are independent, and each run's events
        stay in one thread, in order."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.connections, thread_name_prefix=f"{WRITER_NAME}-call"
            )
        futures = [self._pool.submit(self._store_events, g, ambiguous) for g in groups]
        for future in futures:
            try:
                future.result()
            except Exception:  # as in _take_and_write: logged, the writer goes on
                logger.exception("skillaudit: the buffered writer failed on a batch")

    def _store_unstored(self, chunk: Sequence[tuple]) -> None:
        """A retry after a failure whose outcome was unknown (a timeout after the request
        was sent) conflicts: the first try may have stored the events. Those whose
        sequence is stored count as written; the others are written again."""
        try:
            stored = {log.sequence for log in self.storage.list_logs_by_run(chunk[0][1])}
        except Exception:
            stored = set()
        done = [op for op in chunk if op[2].sequence in stored]
        rest = [op for op in chunk if op[2].sequence not in stored]
        self._settle(done, _OK, None)
        if rest and len(rest) < len(chunk):
            self._store_events(rest)
        elif rest:  # nothing of ours is there: a real conflict, one event at a time
            for op in rest:
                self._store_events([op])

    def _attempt(self, call: Callable[[], None]) -> tuple[str, BaseException | None, bool]:
        """Run one storage call, retrying while the storage is unavailable.

        Returns (outcome, error, whether a try failed before the last one)."""
        backoff = FIRST_BACKOFF_S
        failed_before = False
        while True:
            if self._abandon or self._batch_lost:
                return _LOST, None, failed_before
            if self._given_up:
                # Down past retry_for: one try per max_backoff until it answers.
                self._interrupt.wait(max(0.0, self._next_try - time.monotonic()))
                if self._abandon:
                    return _LOST, None, failed_before
            try:
                call()
            except REFUSALS as exc:
                self._storage_answers()
                return _REFUSED, exc, failed_before
            except Exception as exc:
                failed_before = True
                now = time.monotonic()
                self._storage_failed(exc, now)
                self._close_connection()
                down_since = self._down_since  # None if another call just got through
                if self._given_up or (
                    down_since is not None and now - down_since >= self.retry_for
                ):
                    self._give_up(exc, now)
                    return _LOST, exc, True
                self._interrupt.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            else:
                self._storage_answers()
                return _OK, None, failed_before

    def _storage_failed(self, exc: BaseException, now: float) -> None:
        with self._outage_lock:
            if self._down_since is not None:
                return
            self._down_since = now
            self._lost_in_outage = 0
            logger.warning(
                "skillaudit: the storage is unavailable (%s: %s); retrying for up to %s s",
                type(exc).__name__,
                exc,
                self.retry_for,
            )

    def _give_up(self, exc: BaseException, now: float) -> None:
        with self._outage_lock:
            self._batch_lost = True
            self._next_try = now + self.max_backoff
            if self._given_up:
                return
            self._given_up = True
            logger.error(
                "skillaudit: the storage has been unavailable for %.1f s (%s: %s); dropping "
                "what cannot be stored until it answers (counted in dropped)",
                now - (self._down_since or now),
                type(exc).__name__,
                exc,
            )

    def _storage_answers(self) -> None:
        if self._down_since is None:  # the common case, without the lock
            return
        with self._outage_lock:
            if self._down_since is None:
                return
            logger.warning(
                "skillaudit: the storage answers again after %.1f s; %d operations were "
                "dropped meanwhile",
                time.monotonic() - self._down_since,
                self._lost_in_outage,
            )
            self._down_since = None
            self._given_up = False

    def _close_connection(self) -> None:
        """Let a storage with a per-thread connection (DjangoStorage) drop the writer's:
        after a failure, so the retry reconnects (outside a request nothing else replaces
        a connection a database restart broke), and when the writer stops."""
        close = getattr(self.storage, "close_connection", None)
        if close is not None:
            try:
                close()
            except Exception:
                logger.debug("skillaudit: closing the writer's connection failed", exc_info=True)

    def _settle(self, ops: Sequence[tuple], outcome: str, error: BaseException | None) -> None:
        if not ops:
            return
        if outcome == _OK:
            with self._counts:
                self.written += len(ops)
        elif outcome == _LOST:
            self._lose(ops, "close() timed out" if self._abandon else "storage unavailable")
        else:
            self._refuse(ops, error)

    def _refuse(self, ops: Sequence[tuple], error: BaseException | None) -> None:
        with self._counts:
            self.failures += len(ops)
        run_id = ops[0][1]
        what = _what(ops[0]) if len(ops) == 1 else f"{len(ops)} events"
        logger.error(
            "skillaudit: %s failed for run %s",
            what,
            run_id,
            exc_info=(type(error), error, error.__traceback__) if error else None,
        )
        for op in ops:
            owner = op[3]
            if owner is not None:
                if op[0] == START:
                    self._gate[owner] = _START_REFUSED
                self._tell(owner._buffer_refused, _what(op))
            if self.on_refused is not None:
                try:
                    self.on_refused(_what(op), op[1], error)
                except Exception:
                    logger.exception("skillaudit: on_refused failed")

    def _lose(self, ops: Sequence[tuple], reason: str) -> None:
        """Count and report operations that will never be stored; log at most once a
        minute (with the count since the last line), never once per event."""
        if not ops:
            return
        in_writer = threading.current_thread() is self._thread
        with self._counts:
            self.dropped += len(ops)
            self._unlogged_drops += len(ops)
            if self._down_since is not None and threading.current_thread().name.startswith(
                WRITER_NAME
            ):
                self._lost_in_outage += len(ops)
            now = time.monotonic()
            log = now - self._last_drop_log >= DROP_LOG_EVERY_S
            if log:
                self._last_drop_log = now
                count, self._unlogged_drops = self._unlogged_drops, 0
        if log:
            logger.warning(
                "skillaudit: dropped %d operations (%s); %d dropped in all",
                count,
                reason,
                self.dropped,
            )
        for op in ops:
            owner = op[3]
            if owner is None:
                continue
            if op[0] == START and in_writer:
                self._gate[owner] = _START_LOST
            self._tell(owner._buffer_lost, _what(op))

    @staticmethod
    def _tell(report: Callable[[str], None], what: str) -> None:
        try:
            report(what)
        except Exception:
            logger.exception("skillaudit: reporting to the recorder failed")

    def _after_fork(self) -> None:
        """In a forked child: a fresh queue and no writer (threads do not survive a fork;
        the parent stores what it had queued). The next write starts a writer."""
        closed = self._closed
        self._init_state()
        self._closed = closed
        if closed:
            self._stopping = True

    # --- everything else passes through --------------------------------------------------

    def initialize(self) -> None:
        self.storage.initialize()

    def purge_older_than(self, t: datetime) -> int:
        self.flush(self.close_timeout)
        return self.storage.purge_older_than(t)

    def get_run(self, run_id: str) -> SkillRun:
        return self.storage.get_run(run_id)

    def list_logs_by_run(self, run_id: str) -> list[SkillRunLog]:
        return self.storage.list_logs_by_run(run_id)

    def list_runs_by_skill(self, skill_id: str, limit: int) -> list[SkillRun]:
        return self.storage.list_runs_by_skill(skill_id, limit)

    def list_runs_by_skill_paginated(
        self, skill_id: str, offset: int, limit: int, include_dry_run: bool
    ) -> list[SkillRun]:
        return self.storage.list_runs_by_skill_paginated(skill_id, offset, limit, include_dry_run)

    def count_runs_by_skill(self, skill_id: str, include_dry_run: bool) -> int:
        return self.storage.count_runs_by_skill(skill_id, include_dry_run)

    def list_runs_by_caller(self, caller_id: str, limit: int) -> list[SkillRun]:
        return self.storage.list_runs_by_caller(caller_id, limit)

    def list_runs_filtered(self, f: RunFilter, offset: int, limit: int) -> list[SkillRun]:
        return self.storage.list_runs_filtered(f, offset, limit)

    def count_runs_filtered(self, f: RunFilter) -> int:
        return self.storage.count_runs_filtered(f)

    def list_children_by_parent(self, parent_run_id: str) -> list[SkillRun]:
        return self.storage.list_children_by_parent(parent_run_id)

    def walk_parent_chain(self, run_id: str) -> list[SkillRun]:
        return self.storage.walk_parent_chain(run_id)

    def list_finished_runs_before(self, cutoff: datetime, limit: int) -> list[SkillRun]:
        return self.storage.list_finished_runs_before(cutoff, limit)

    def last_run_by_skills(
        self, skill_ids: Sequence[str], include_failed: bool
    ) -> dict[str, datetime]:
        return self.storage.last_run_by_skills(skill_ids, include_failed)


# Every open buffer, to be closed at interpreter exit and reset in a forked child.
_live: weakref.WeakSet[BufferedStorage] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    # Daemon threads still run while atexit handlers do, so each writer can drain.
    for buffer in list(_live):
        try:
            buffer.close()
        except Exception:
            logger.exception("skillaudit: closing a buffer at exit failed")


def _after_fork_in_child() -> None:
    for buffer in list(_live):
        buffer._after_fork()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
