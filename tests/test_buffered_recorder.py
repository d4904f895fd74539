"""The buffered recorder (runs/buffered.py under runs/recorder.py) on real storages.

What it promises: everything recorded arrives, in order, exactly once (compared with an
unbuffered recording into MemoryStorage, over random interleavings of runs and threads);
a run is never seen finished before its events; a full queue and a storage outage drop
and count instead of blocking or growing; the queue is flushed on close, ``with`` exit and
interpreter exit. Outages are real: a PostgreSQL alias on a closed port, a TCP proxy in
front of PostgreSQL or of the live server that is stopped and started again.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection, connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs import buffered, contract
from runs.buffered import EVENT, FINISH, START, BufferedStorage, _phases
from runs.contract import SkillRun, SkillRunLog
from runs.memory import MemoryStorage
from runs.recorder import Sink
from runs.storage import DjangoStorage

ROOT = Path(__file__).resolve().parent.parent
# Bounds for waits on a loaded 2-core machine; a passing run uses a fraction of them.
FLUSH_S = 60
POLL_S = 20
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_writer_left_running():
    """A test that failed half-way leaves no writer thread behind (closed at exit, it
    would log into pytest's closed capture)."""
    yield
    for buffer in list(buffered._live):
        buffer.close(5)


def wait_until(condition, timeout=POLL_S, every=0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def events_of(storage, run_id) -> list[tuple]:
    return [(log.sequence, log.event_type, log.payload) for log in storage.list_logs_by_run(run_id)]


def buffered_messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "runs.buffered"]


# Django's storage in committed transactions: the writer thread has its own connection.
DJANGO = pytest.param("django", marks=pytest.mark.django_db(transaction=True))
HTTP = pytest.param("http", marks=pytest.mark.django_db(transaction=True))


@pytest.fixture(params=["memory", DJANGO, HTTP])
def backend(request):
    """Each real storage: in memory, Django's, HTTP through a live server."""
    if request.param == "memory":
        return MemoryStorage()
    if request.param == "http":
        return request.getfixturevalue("http_storage")
    return DjangoStorage()


# --- what the writer does with a batch ----------------------------------------------------


def test_a_batch_is_written_in_phases_that_keep_each_runs_order():
    def op(kind, run_id, n=0):
        return (kind, run_id, n, None)

    batch = [
        op(START, "a"),
        op(EVENT, "a", 1),
        op(START, "b"),
        op(EVENT, "b", 1),
        op(FINISH, "a"),
        op(EVENT, "a", 2),  # after a's finish: must stay after it
        op(EVENT, "b", 2),
        op(FINISH, "b"),
        op(START, "c"),
    ]
    phases = [[(kind, run_id, n) for kind, run_id, n, _ in phase] for phase in _phases(batch)]
    assert phases == [
        [(START, "a", 0), (START, "b", 0), (START, "c", 0)],
        [(EVENT, "a", 1), (EVENT, "b", 1), (EVENT, "b", 2)],
        [(FINISH, "a", 0), (FINISH, "b", 0)],
        [(EVENT, "a", 2)],
    ]


# --- the agent's thread only queues; batches by size or by time ---------------------------


def test_the_agents_thread_only_queues_until_a_batch_is_full():
    storage = MemoryStorage()
    buffer = BufferedStorage(storage, batch_size=10, interval=3600)
    sink = Sink(buffer)
    run = sink.start_run(skill_id="s", run_id="r")
    for i in range(8):
        run.tool_call("t", {"i": i})
    # Nine operations, a batch is ten, the interval an hour: nothing is stored yet.
    time.sleep(0.2)
    assert buffer.pending == 9 and buffer.written == 0
    with pytest.raises(contract.NotFound):
        storage.get_run("r")
    run.tool_call("t", {"i": 8})  # the tenth: the writer takes the batch at once
    assert wait_until(lambda: buffer.written == 10)
    assert [seq for seq, _, _ in events_of(storage, "r")] == list(range(1, 10))
    run.close("ok")
    assert buffer.close()
    assert storage.get_run("r").status == "ok"
    assert (sink.failures, sink.dropped, buffer.failures, buffer.dropped) == (0, 0, 0, 0)


def test_fewer_than_a_batch_are_written_after_the_interval():
    storage = MemoryStorage()
    buffer = BufferedStorage(storage, batch_size=1000, interval=0.05)
    run = Sink(buffer).start_run(skill_id="s", run_id="r")
    run.step(text="one")
    run.close("ok")
    assert wait_until(lambda: buffer.written == 3)
    assert storage.get_run("r").status == "ok"
    assert buffer.close()


def test_what_was_queued_is_a_copy_the_agent_may_change():
    storage = MemoryStorage()
    with Sink(storage, buffered=True) as sink:
        arguments = {"query": "first"}
        run = sink.start_run(skill_id="s", run_id="r", inputs=arguments)
        run.tool_call("search", arguments)
        arguments["query"] = "changed after recording"
        run.close("ok")
    assert storage.get_run("r").inputs == {"query": "first"}
    assert events_of(storage, "r")[0][2]["arguments"] == {"query": "first"}


@pytest.mark.parametrize("backend", ["memory", DJANGO, HTTP], indirect=True)
def test_a_run_recorded_through_the_buffer_is_stored_as_unbuffered(backend):
    buffer = BufferedStorage(backend, batch_size=3, interval=0.01)
    sink = Sink(buffer)
    with sink.start_run(skill_id="s", run_id="r", caller_id="c", inputs={"k": "v"}) as run:
        run.step(input_tokens=10, output_tokens=4, thinking_tokens=2, text="plan")
        run.tool_call("kb.search", {"q": "refund"}, call_id="c1")
        run.tool_result("kb.search", {"hits": [1, 2]}, call_id="c1")
        run.error("the tool failed", tool="kb.search")
        child = sink.start_run(skill_id="child", run_id="r/kid", parent_run_id="r")
        child.close("ok", output="done")
    assert sink.flush(FLUSH_S)
    stored = backend.get_run("r")
    assert (stored.status, stored.caller_id, stored.inputs) == ("ok", "c", {"k": "v"})
    assert (stored.tool_calls_count, stored.total_input_tokens, stored.total_output_tokens) == (
        1,
        10,
        4,
    )
    assert stored.finished_at is not None and stored.runtime_seconds > 0
    assert [(seq, kind) for seq, kind, _ in events_of(backend, "r")] == [
        (1, "step"),
        (2, "tool_call"),
        (3, "tool_result"),
        (4, "error"),
    ]
    assert [r.id for r in backend.walk_parent_chain("r/kid")] == ["r", "r/kid"]
    assert buffer.written == 8
    assert (sink.failures, sink.dropped, run.failures, run.dropped) == (0, 0, 0, 0)
    assert buffer.close()


# --- everything arrives, in order, exactly once: random programs --------------------------

EVENT_KINDS = ("step", "tool_call", "tool_result", "error")


@dataclass
class Program:
    """Per thread, its actions in order (several runs of its own interleaved, some events
    on one run that all threads share); the global order the threads take turns in; the
    writer's batch sizes and interval; where the agent calls flush()."""

    plans: list[list[tuple]]
    schedule: list[int]
    batch_size: int
    max_batch: int
    interval: float
    flush_at: set[int]


@st.composite
def programs(draw):
    texts = st.text(max_size=6)
    plans = []
    for t in range(draw(st.integers(1, 4))):
        runs = []
        for r in range(draw(st.integers(1, 3))):
            key = f"{t}-{r}"
            events = draw(
                st.lists(
                    st.tuples(st.sampled_from(EVENT_KINDS), texts, st.integers(0, 10**6)),
                    max_size=6,
                )
            )
            status = draw(st.sampled_from(["ok", "error", "timeout"]))
            runs.append(
                [("start", key, t, r)]
                + [("event", key, *event) for event in events]
                + [("close", key, status)]
            )
        # This thread's runs interleaved, each in its own order; some shared-run events.
        order = draw(st.permutations([i for i, actions in enumerate(runs) for _ in actions]))
        taken = [0] * len(runs)
        plan = []
        for i in order:
            plan.append(runs[i][taken[i]])
            taken[i] += 1
        for _ in range(draw(st.integers(0, 2))):
            plan.insert(
                draw(st.integers(0, len(plan))),
                ("event", "shared", draw(st.sampled_from(EVENT_KINDS)), "", t),
            )
        plans.append(plan)
    schedule = draw(st.permutations([t for t, plan in enumerate(plans) for _ in plan]))
    return Program(
        plans=plans,
        schedule=list(schedule),
        batch_size=draw(st.integers(1, 12)),
        max_batch=draw(st.integers(1, 20)),
        interval=draw(st.sampled_from([0.001, 0.01, 0.05])),
        flush_at=draw(st.sets(st.integers(0, len(schedule)), max_size=2)),
    )


def perform(sink, recorders, prefix, action) -> None:
    kind, key = action[0], action[1]
    if kind == "start":
        _, _, t, r = action
        recorders[key] = sink.start_run(
            skill_id=f"skill-{t}",
            caller_id=f"thread-{t}",
            run_id=prefix + key,
            inputs={"run": r},
            parent_run_id=prefix + f"{t}-0" if r else "",
        )
        return
    recorder = recorders[key]
    if kind == "close":
        recorder.close(action[2], output=f"output of {key}")
        return
    _, _, event, text, number = action
    if event == "step":
        recorder.step(input_tokens=number, output_tokens=1, text=text)
    elif event == "tool_call":
        recorder.tool_call(text or "tool", {"n": number}, call_id=text)
    elif event == "tool_result":
        recorder.tool_result(text or "tool", [number, text], call_id=text)
    else:
        recorder.error(text, number=number)


def record(program: Program, sink: Sink, prefix: str, threads: bool) -> None:
    """Every action in the schedule's order: in the program's threads taking turns, or
    (the reference) one after the other in this thread."""
    recorders = {"shared": sink.start_run(skill_id="shared", run_id=prefix + "shared")}
    if not threads:
        cursors = [iter(plan) for plan in program.plans]
        for t in program.schedule:
            perform(sink, recorders, prefix, next(cursors[t]))
        recorders["shared"].close("ok")
        return
    turn = threading.Condition()
    position = [0]
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for action in program.plans[t]:
                with turn:
                    if not turn.wait_for(lambda: program.schedule[position[0]] == t, POLL_S):
                        raise TimeoutError(f"thread {t} never got its turn")
                    if position[0] in program.flush_at:
                        assert sink.flush(FLUSH_S)
                    perform(sink, recorders, prefix, action)
                    position[0] += 1
                    turn.notify_all()
        except BaseException as exc:  # reported below
            errors.append(exc)
            with turn:
                position[0] = len(program.schedule)
                program.schedule.append(-1)  # release the others
                turn.notify_all()

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(len(program.plans))]
    for worker_thread in workers:
        worker_thread.start()
    for worker_thread in workers:
        worker_thread.join(FLUSH_S)
    assert not errors, errors
    recorders["shared"].close("ok")


def snapshot(storage, prefix: str, program: Program) -> dict:
    keys = ["shared"] + [action[1] for plan in program.plans for action in plan]
    found = {}
    for key in dict.fromkeys(keys):
        run = storage.get_run(prefix + key)
        logs = storage.list_logs_by_run(prefix + key)
        assert all(log.created_at is not None for log in logs)
        found[key] = (
            (run.skill_id, run.caller_id, run.parent_run_id, run.inputs, run.status),
            (run.output, run.error, run.tool_calls_count, run.total_input_tokens),
            run.finished_at is not None,
            [(log.sequence, log.event_type, log.payload) for log in logs],
        )
    return found


EXAMPLES = {"memory": 60, "django": 20, "http": 6}


def test_everything_recorded_arrives_in_order_exactly_once(backend, request):
    name = request.node.callspec.params["backend"]

    @settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(program=programs())
    def check(program: Program) -> None:
        prefix = uuid.uuid4().hex[:8] + "-"
        reference = MemoryStorage()
        record(copy.deepcopy(program), Sink(reference), prefix, threads=False)
        buffer = BufferedStorage(
            backend,
            batch_size=program.batch_size,
            max_batch=program.max_batch,
            interval=program.interval,
        )
        sink = Sink(buffer)
        try:
            record(program, sink, prefix, threads=True)
            assert sink.flush(FLUSH_S)
            assert snapshot(backend, prefix, program) == snapshot(reference, prefix, program)
            operations = sum(len(plan) for plan in program.plans) + 2  # + shared start, close
            assert (buffer.written, buffer.failures, buffer.dropped) == (operations, 0, 0)
            assert (sink.failures, sink.dropped) == (0, 0)
        finally:
            assert buffer.close(FLUSH_S)

    check()


@pytest.mark.parametrize("backend", ["memory", DJANGO], indirect=True)
def test_a_run_is_never_seen_finished_before_its_events_are_stored(backend):
    threads, runs_per_thread, events_per_run = 6, 5, 30
    buffer = BufferedStorage(backend, batch_size=7, max_batch=7, interval=0.002)
    sink = Sink(buffer)
    run_ids = [f"t{t}-r{r}" for t in range(threads) for r in range(runs_per_thread)]
    done = threading.Event()
    seen: dict[str, int] = {}
    problems: list[str] = []

    def reader() -> None:
        deadline = time.monotonic() + FLUSH_S
        try:
            while time.monotonic() < deadline:
                last_pass = done.is_set()  # a whole pass after everything was stored
                for run_id in run_ids:
                    try:
                        run = backend.get_run(run_id)
                    except contract.NotFound:
                        continue
                    if run.finished_at is not None:
                        stored = len(backend.list_logs_by_run(run_id))
                        seen[run_id] = stored
                        if stored != events_per_run:
                            problems.append(f"{run_id} finished with {stored} events stored")
                if last_pass:
                    return
        finally:
            if isinstance(backend, DjangoStorage):
                connection.close()

    def agent(t: int) -> None:
        for r in range(runs_per_thread):
            with sink.start_run(skill_id="s", run_id=f"t{t}-r{r}") as run:
                for i in range(events_per_run):
                    run.tool_call("t", {"i": i})

    watcher = threading.Thread(target=reader)
    watcher.start()
    agents = [threading.Thread(target=agent, args=(t,)) for t in range(threads)]
    for thread in agents:
        thread.start()
    for thread in agents:
        thread.join(FLUSH_S)
    assert sink.flush(FLUSH_S)
    done.set()
    watcher.join(FLUSH_S)
    assert problems == []
    assert sorted(seen) == sorted(run_ids)
    assert buffer.written == threads * runs_per_thread * (events_per_run + 2)
    assert buffer.close()


# --- the recorder's rules hold when the writer finds out --------------------------------


@pytest.mark.parametrize("backend", ["memory", DJANGO], indirect=True)
def test_a_duplicate_run_id_is_counted_and_never_touches_the_other_run(backend, caplog):
    buffer = BufferedStorage(backend, interval=0.01)
    owner_sink, intruder_sink = Sink(buffer), Sink(buffer)
    first = owner_sink.start_run(skill_id="owner", run_id="same-id")
    first.step(text="mine")
    with caplog.at_level(logging.ERROR, logger="runs.buffered"):
        intruder = intruder_sink.start_run(skill_id="intruder", run_id="same-id")
        intruder.step(text="not yours", input_tokens=9)
        intruder.tool_call("a", {})
        intruder.close("error", error="should not land")
        assert buffer.flush(FLUSH_S)
    # Only the start was refused: the intruder's later writes were skipped, not failed.
    assert (intruder.failures, intruder_sink.failures, buffer.failures) == (1, 1, 1)
    assert buffered_messages(caplog) == ["skillaudit: start_run failed for run same-id"]
    assert caplog.records[0].exc_info[0] is contract.Conflict
    assert not intruder.recording
    run = backend.get_run("same-id")
    assert (run.skill_id, run.status, run.total_input_tokens) == ("owner", "running", 0)
    usage = {"input_tokens": 0, "output_tokens": 0, "thinking_tokens": 0}
    assert events_of(backend, "same-id") == [(1, "step", {"text": "mine", "usage": usage})]
    first.close("ok")
    assert buffer.flush(FLUSH_S)
    assert backend.get_run("same-id").status == "ok"
    assert (first.failures, owner_sink.failures) == (0, 0)
    assert buffer.close()


@pytest.mark.parametrize("backend", [DJANGO, HTTP], indirect=True)
def test_a_refused_event_costs_only_itself(backend, caplog):
    """A batch with a refused event (here: its run was purged meanwhile, and a sequence
    that is already stored) is split: the other events of the batch are stored."""
    buffer = BufferedStorage(backend, batch_size=1000, interval=3600)
    sink = Sink(buffer)
    kept = sink.start_run(skill_id="s", run_id="kept")
    doomed = sink.start_run(skill_id="s", run_id="doomed")
    kept.step(text="before")
    doomed.step(text="before")
    assert buffer.flush(FLUSH_S)
    assert backend.purge_older_than(contract.utcnow()) == 2
    backend.start_run(SkillRun(id="kept", skill_id="s"))  # back, without its first event
    backend.append_log(SkillRunLog(run_id="kept", sequence=3, event_type="step"))
    with caplog.at_level(logging.ERROR, logger="runs.buffered"):
        for _ in range(3):
            kept.tool_call("a", {})  # sequences 2, 3 (already stored), 4
            doomed.tool_call("a", {})
        assert buffer.flush(FLUSH_S)
    assert [seq for seq, _, _ in events_of(backend, "kept")] == [2, 3, 4]
    assert events_of(backend, "kept")[1][1] == "step"  # the stored one was not replaced
    assert (kept.failures, doomed.failures, sink.failures, buffer.failures) == (1, 3, 4, 4)
    messages = buffered_messages(caplog)
    assert sorted(messages) == sorted(
        [
            "skillaudit: tool_call failed for run kept",
            "skillaudit: 3 events failed for run doomed",
        ]
    )
    assert buffer.close()


def test_an_unstorable_payload_is_refused_in_the_agents_thread(caplog):
    storage = MemoryStorage()
    buffer = BufferedStorage(storage, interval=0.01)
    sink = Sink(buffer)
    recorder = sink.start_run(skill_id="s", run_id="r")
    with caplog.at_level(logging.ERROR):
        recorder.tool_result("a", object())
        recorder.step(text="after", score=float("nan"))
        recorder.tool_result("a", "fine")
        recorder.close("a status longer than the thirty-two characters allowed")
    # Checked before queueing, like every Storage checks: counted at once, nothing queued.
    assert recorder.failures == sink.failures == 3
    assert [r.name for r in caplog.records] == ["runs.recorder"] * 3
    assert sink.flush(FLUSH_S)
    assert [(seq, kind) for seq, kind, _ in events_of(storage, "r")] == [(3, "tool_result")]
    assert storage.get_run("r").status == "running"
    assert buffer.failures == 0
    assert buffer.close()


# --- bounded: a full queue ---------------------------------------------------------------


def _writer_is_stuck(buffer: BufferedStorage, taken: int) -> bool:
    """The writer holds ``taken`` operations it cannot store yet (nothing is queued)."""
    return buffer.pending == 0 and buffer.written == 0 and buffer._accepted == taken


def test_a_full_queue_drops_the_newest_and_counts_them(caplog):
    storage = MemoryStorage()
    buffer = BufferedStorage(storage, batch_size=5, max_queue=10, interval=0.01)
    sink = Sink(buffer)
    # The storage is busy (its own lock held, as by a long purge): the writer waits on it.
    with caplog.at_level(logging.WARNING, logger="runs.buffered"):
        with storage._lock:
            run = sink.start_run(skill_id="s", run_id="r")
            assert wait_until(lambda: _writer_is_stuck(buffer, 1))
            slowest = 0.0
            for i in range(25):
                started = time.perf_counter()
                run.tool_call("t", {"i": i})
                slowest = max(slowest, time.perf_counter() - started)
            assert buffer.pending == 10
            assert (run.dropped, sink.dropped, buffer.dropped) == (15, 15, 15)
            # Dropping never waited for the storage.
            assert slowest < 1.0
        assert sink.flush(FLUSH_S)
        run.close("ok")
        assert buffer.close(FLUSH_S)
    assert [seq for seq, _, _ in events_of(storage, "r")] == list(range(1, 11))
    assert storage.get_run("r").status == "ok"
    assert buffer.written == 12 and run.failures == 0
    # Logged once for the fifteen, not once per event.
    drops = [m for m in buffered_messages(caplog) if "dropped" in m]
    assert drops == [
        "skillaudit: dropped 1 operations (queue full); 1 dropped in all",
        "skillaudit: closed with 15 operations dropped in all (14 since the last report)",
    ]


def test_a_full_queue_waits_at_most_wait_when_full():
    storage = MemoryStorage()
    buffer = BufferedStorage(storage, batch_size=2, max_queue=2, interval=0.01, wait_when_full=1)
    sink = Sink(buffer)
    with storage._lock:
        run = sink.start_run(skill_id="s", run_id="r")
        assert wait_until(lambda: _writer_is_stuck(buffer, 1))
        run.step()
        run.step()
        started = time.monotonic()
        run.step()  # no room: waits a second, then dropped
        waited = time.monotonic() - started
        assert 0.9 <= waited < 10
        assert run.dropped == 1
        # Room made within the wait: the event is kept.
        helper = threading.Thread(target=run.step)
        helper.start()
        assert wait_until(lambda: buffer._waiting_for_room == 1)
    # The storage is free again: the writer stores, takes the queue, the helper gets in.
    helper.join(FLUSH_S)
    assert buffer.close(FLUSH_S)
    assert run.dropped == 1
    assert [seq for seq, _, _ in events_of(storage, "r")] == [1, 2, 4]


def test_an_event_loop_never_waits_for_room():
    storage = MemoryStorage()
    buffer = BufferedStorage(storage, batch_size=2, max_queue=2, interval=0.01, wait_when_full=5)
    sink = Sink(buffer)

    async def agent() -> float:
        run = sink.start_run(skill_id="s", run_id="r")
        assert wait_until(lambda: _writer_is_stuck(buffer, 1))
        started = time.monotonic()
        for _ in range(10):
            run.step()
            await asyncio.sleep(0)
        return time.monotonic() - started

    with storage._lock:
        elapsed = asyncio.run(agent())
    assert elapsed < 2.5  # never the 5 s wait: a coroutine must not block its loop
    assert sink.dropped == 8
    assert buffer.close(FLUSH_S)


def test_a_dropped_start_makes_its_run_lost_not_failed(caplog):
    storage = MemoryStorage()
    buffer = BufferedStorage(storage, batch_size=1, max_queue=1, interval=0.01)
    sink = Sink(buffer)
    with storage._lock:
        first = sink.start_run(skill_id="s", run_id="first")
        assert wait_until(lambda: _writer_is_stuck(buffer, 1))
        sink.start_run(skill_id="s", run_id="filler")  # takes the one place
        lost = sink.start_run(skill_id="s", run_id="lost")  # no room: dropped
        lost.step()
        lost.close("ok")
        first.close("ok")  # no room either
    assert sink.flush(FLUSH_S)
    assert (lost.dropped, lost.failures, lost.recording) == (3, 0, False)
    assert (first.dropped, sink.dropped, sink.failures) == (1, 4, 0)
    with pytest.raises(contract.NotFound):
        storage.get_run("lost")
    assert storage.get_run("first").status == "running"  # its finish was dropped
    assert buffer.close()


# --- bounded: the storage is down -------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    """Forwards a loopback port to a target port. ``stop()`` closes the listener and every
    forwarded connection, which is what a client sees when the server behind it stops;
    ``start()`` listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            doomed, self._sockets = self._sockets, set()
        for sock in doomed:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        # Ends when either side closes or stop() shuts the sockets down.
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def postgres_settings(port: int) -> dict:
    """The default database's settings, reached through a loopback port."""
    settings_dict = copy.deepcopy(connections.settings["default"])
    if settings_dict["ENGINE"] != "django.db.backends.postgresql":
        # SQLite runs: a PostgreSQL database that is never reached (closed-port test).
        settings_dict.update(ENGINE="django.db.backends.postgresql", NAME="postgres")
        settings_dict.update(USER="postgres", PASSWORD="", OPTIONS={})
    settings_dict.update(HOST="127.0.0.1", PORT=str(port), CONN_MAX_AGE=0)
    settings_dict["OPTIONS"] = dict(settings_dict.get("OPTIONS") or {}, connect_timeout=2)
    return settings_dict


@pytest.fixture
def unreachable_alias(django_db_setup, django_db_blocker):
    """A database alias whose server is down (a closed loopback port). The test runs
    outside Django's test case: it would refuse an alias made after it started."""
    alias = "buffered_unreachable"
    connections.settings[alias] = postgres_settings(closed_port())
    with django_db_blocker.unblock():
        yield alias
        connections[alias].close()
    del connections.settings[alias]


PROXY_ALIAS = "buffered_via_proxy"


# Django's test case checks the aliases a test uses when it starts: the proxy's alias is
# made by a module fixture (before it) and named in the mark; the test case then flushes
# it at the end (the test database again, through the proxy), which removes the runs.
def through_proxy(test):
    skip = pytest.mark.skipif(connection.vendor != "postgresql", reason="stops PostgreSQL")
    return skip(pytest.mark.django_db(transaction=True, databases=["default", PROXY_ALIAS])(test))


@pytest.fixture(scope="module")
def postgres_proxy(django_db_setup, django_db_blocker):
    """A TcpProxy in front of the test database's server, and the alias PROXY_ALIAS to
    the test database through it."""
    proxy = TcpProxy(int(connections.settings["default"]["PORT"] or 5432)).start()
    connections.settings[PROXY_ALIAS] = postgres_settings(proxy.port)
    yield proxy
    with django_db_blocker.unblock():
        connections[PROXY_ALIAS].close()
    del connections.settings[PROXY_ALIAS]
    proxy.stop()


def test_an_unreachable_database_is_retried_then_dropped_and_logged_once(unreachable_alias, caplog):
    storage = DjangoStorage(using=unreachable_alias)
    buffer = BufferedStorage(
        storage, batch_size=50, max_queue=200, interval=0.01, retry_for=0.5, max_backoff=0.1
    )
    sink = Sink(buffer)
    slowest = 0.0
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="runs.buffered"):
        # The agent records for a second and a half, through and past retry_for.
        runs = 0
        while time.monotonic() - started < 1.5:
            t0 = time.perf_counter()
            with sink.start_run(skill_id="s") as run:
                for i in range(20):
                    run.tool_call("t", {"i": i})
            slowest = max(slowest, time.perf_counter() - t0)
            runs += 1
            assert buffer.pending <= 200  # bounded whatever happens
            time.sleep(0.01)
        assert buffer.close(FLUSH_S)
    assert buffer.written == 0
    # Every operation is accounted for: dropped at the queue or by the writer, or not
    # even queued because its run's start was lost (counted by the recorder alone).
    assert sink.dropped == runs * 22
    assert 0 < buffer.dropped <= sink.dropped
    assert sink.failures == 0
    assert slowest < 1.0  # the agent never waited on the database
    messages = buffered_messages(caplog)
    assert messages[0].startswith("skillaudit: the storage is unavailable (OperationalError")
    assert any(m.startswith("skillaudit: the storage has been unavailable") for m in messages)
    # A few lines, not one per event (hundreds were dropped).
    assert len(messages) <= 4, messages


@through_proxy
def test_a_database_that_stops_and_comes_back_loses_nothing(postgres_proxy, caplog):
    proxy = postgres_proxy
    storage = DjangoStorage(using=PROXY_ALIAS)
    try:
        buffer = BufferedStorage(storage, batch_size=20, interval=0.01, retry_for=30)
        sink = Sink(buffer)
        with caplog.at_level(logging.WARNING, logger="runs.buffered"):
            run = sink.start_run(skill_id="s", run_id="through-outage")
            for i in range(30):
                run.tool_call("t", {"i": i})
            assert sink.flush(FLUSH_S)
            proxy.stop()  # the database is gone: the writer's connection is cut
            for i in range(30, 60):
                run.tool_call("t", {"i": i})
            assert wait_until(lambda: buffered_messages(caplog), timeout=POLL_S)
            time.sleep(0.5)  # a few retries against nothing
            proxy.start()
            run.close("ok")
            assert sink.flush(FLUSH_S)
        stored = DjangoStorage(using=storage.using)
        assert [log.sequence for log in stored.list_logs_by_run("through-outage")] == list(
            range(1, 61)
        )
        assert stored.get_run("through-outage").status == "ok"
        assert (sink.dropped, sink.failures, buffer.written) == (0, 0, 62)
        messages = buffered_messages(caplog)
        assert len(messages) == 2, messages
        assert messages[0].startswith("skillaudit: the storage is unavailable")
        assert messages[1].startswith("skillaudit: the storage answers again after")
        assert buffer.close()
    finally:
        if proxy._listener is None:
            proxy.start()  # for the test case's flush


@through_proxy
def test_a_long_outage_drops_counted_batches_then_recovers(postgres_proxy, caplog):
    proxy = postgres_proxy
    storage = DjangoStorage(using=PROXY_ALIAS)
    try:
        buffer = BufferedStorage(
            storage, batch_size=10, interval=0.01, retry_for=0.3, max_backoff=0.1
        )
        sink = Sink(buffer)
        with caplog.at_level(logging.WARNING, logger="runs.buffered"):
            run = sink.start_run(skill_id="s", run_id="long-outage")
            run.step(text="before")
            assert sink.flush(FLUSH_S)
            proxy.stop()
            for i in range(25):
                run.tool_call("t", {"i": i})  # sequences 2-26: lost
            assert sink.flush(FLUSH_S)
            assert sink.dropped == 25 == run.dropped == buffer.dropped
            proxy.start()
            run.step(text="after")  # sequence 27
            run.close("ok")
            assert sink.flush(FLUSH_S)
        stored = DjangoStorage(using=storage.using)
        assert [log.sequence for log in stored.list_logs_by_run("long-outage")] == [1, 27]
        assert stored.get_run("long-outage").status == "ok"
        assert sink.failures == 0
        messages = buffered_messages(caplog)
        expected = [
            r"skillaudit: the storage is unavailable \(OperationalError: .*",
            r"skillaudit: the storage has been unavailable for \d+\.\d s .*",
            r"skillaudit: dropped \d+ operations \(storage unavailable\); \d+ dropped in all",
            r"skillaudit: the storage answers again after .*; 25 operations were dropped "
            r"meanwhile",
        ]
        assert len(messages) == len(expected), messages
        for pattern, message in zip(expected, messages, strict=True):
            assert re.fullmatch(pattern, message, re.DOTALL), message
        assert buffer.close()
    finally:
        if proxy._listener is None:
            proxy.start()  # for the test case's flush


@pytest.mark.django_db(transaction=True)
def test_a_server_that_stops_and_comes_back_loses_nothing_over_http(http_storage, caplog):
    server_port = int(http_storage.base_url.rsplit(":", 1)[1])
    proxy = TcpProxy(server_port).start()
    try:
        through_proxy = copy.copy(http_storage)
        through_proxy.base_url = f"http://127.0.0.1:{proxy.port}"
        through_proxy.timeout = 5
        buffer = BufferedStorage(through_proxy, batch_size=10, interval=0.01, retry_for=30)
        sink = Sink(buffer)
        with caplog.at_level(logging.WARNING, logger="runs.buffered"):
            run = sink.start_run(skill_id="s", run_id="http-outage")
            for i in range(20):
                run.tool_call("t", {"i": i})
            assert sink.flush(FLUSH_S)
            proxy.stop()
            for i in range(20, 45):
                run.tool_call("t", {"i": i})
            assert wait_until(lambda: buffered_messages(caplog), timeout=POLL_S)
            proxy.start()
            run.close("ok")
            assert sink.flush(FLUSH_S)
        logs = http_storage.list_logs_by_run("http-outage")
        assert [log.sequence for log in logs] == list(range(1, 46))
        assert http_storage.get_run("http-outage").status == "ok"
        assert (sink.dropped, sink.failures, buffer.written) == (0, 0, 47)
        messages = buffered_messages(caplog)
        # Refused, or reset when the proxy closed a waiting connection: either way down.
        assert messages[0].startswith("skillaudit: the storage is unavailable (")
        assert messages[-1].startswith("skillaudit: the storage answers again")
        assert buffer.close()
    finally:
        proxy.stop()


# --- many threads and event loops, one writer --------------------------------------------


@pytest.mark.parametrize("backend", ["memory", DJANGO], indirect=True)
def test_coroutines_and_threads_share_one_writer(backend):
    loops, coroutines, events = 4, 25, 20
    buffer = BufferedStorage(backend, batch_size=100, interval=0.01)
    sink = Sink(buffer)

    async def agent(key: str) -> None:
        with sink.start_run(skill_id="async", run_id=key) as run:
            for i in range(events):
                run.tool_call("t", {"i": i})
                await asyncio.sleep(0)

    async def many(t: int) -> None:
        await asyncio.gather(*(agent(f"loop{t}-{c}") for c in range(coroutines)))

    threads = [threading.Thread(target=asyncio.run, args=(many(t),)) for t in range(loops)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(FLUSH_S)
    assert sink.flush(FLUSH_S)
    for t in range(loops):
        for c in range(coroutines):
            logs = backend.list_logs_by_run(f"loop{t}-{c}")
            assert [log.payload["arguments"]["i"] for log in logs] == list(range(events))
            assert backend.get_run(f"loop{t}-{c}").status == "ok"
    assert buffer.written == loops * coroutines * (events + 2)
    assert (sink.failures, sink.dropped) == (0, 0)
    assert buffer.close()


# --- flushed on close, with exit and interpreter exit ------------------------------------


def test_close_flushes_and_later_writes_are_dropped_and_counted():
    storage = MemoryStorage()
    buffer = BufferedStorage(storage, batch_size=1000, interval=3600)
    sink = Sink(buffer)
    run = sink.start_run(skill_id="s", run_id="r")
    run.step()
    assert buffer.close()  # the hour-long interval does not delay it
    assert [seq for seq, _, _ in events_of(storage, "r")] == [1]
    run.step()
    run.close("ok")
    assert (run.dropped, sink.dropped, buffer.dropped) == (2, 2, 2)
    assert buffer.close() and buffer.flush()
    assert storage.get_run("r").status == "running"


def test_a_sink_closes_its_own_buffer_and_only_flushes_a_shared_one():
    storage = MemoryStorage()
    with Sink(storage, buffered=True) as own:
        own.start_run(skill_id="s", run_id="own").close("ok")
    assert storage.get_run("own").status == "ok"
    assert own.buffer._closed

    shared = BufferedStorage(storage, interval=3600)
    with Sink(shared) as first:
        first.start_run(skill_id="s", run_id="first").close("ok")
    assert storage.get_run("first").status == "ok"
    Sink(shared).start_run(skill_id="s", run_id="second").close("ok")  # still open
    assert shared.close()
    assert storage.get_run("second").status == "ok"


EXIT_SCRIPT = r"""
import os, signal, sys, time
from runs.buffered import BufferedStorage
from runs.client import HttpStorage
from runs.recorder import Sink

mode, url, token, run_id, events = sys.argv[1:6]
assert "django" not in sys.modules  # the executor's library, without Django
buffer = BufferedStorage(
    HttpStorage(url, token, timeout=30), interval=3600, batch_size=10_000,
    retry_for=60, close_timeout=float(os.environ.get("CLOSE_TIMEOUT", "30")),
)
sink = Sink(buffer)
run = sink.start_run(skill_id="exit", run_id=run_id)
for i in range(int(events)):
    run.tool_call("t", {"i": i})
run.close("ok")
print(buffer.written, buffer.pending, flush=True)  # nothing stored yet: all queued
if mode == "exception":
    raise RuntimeError("the agent crashed")
if mode == "sigterm":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
"""


def run_exit_script(mode, url, token, run_id, events=500, **env):
    return subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, mode, url, token, run_id, str(events)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def token_of(storage) -> str:
    return storage._headers["Authorization"].split(" ", 1)[1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode,returncode", [("end", 0), ("exception", 1), ("sigterm", 143)])
def test_the_queue_is_flushed_at_interpreter_exit(http_storage, mode, returncode):
    result = run_exit_script(mode, http_storage.base_url, token_of(http_storage), f"exit-{mode}")
    assert result.returncode == returncode, result.stderr
    assert result.stdout.split() == ["0", "502"]
    logs = http_storage.list_logs_by_run(f"exit-{mode}")
    assert [log.sequence for log in logs] == list(range(1, 501))
    assert http_storage.get_run(f"exit-{mode}").status == "ok"


def test_exit_with_the_storage_down_waits_at_most_close_timeout():
    started = time.monotonic()
    result = run_exit_script(
        "end", f"http://127.0.0.1:{closed_port()}", "token", "never", CLOSE_TIMEOUT="1"
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 30  # retry_for is 60 s: close_timeout (1 s) bounded the exit
    assert "the storage is unavailable (URLError" in result.stderr
    assert "dropped 1 operations (close() timed out)" in result.stderr  # the start
    assert "closed with 502 operations dropped in all (501 since" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_forked_child_does_not_write_its_parents_queue(http_storage):
    buffer = BufferedStorage(http_storage, interval=3600, batch_size=1000)
    sink = Sink(buffer)
    parent = sink.start_run(skill_id="s", run_id="parent")
    for _ in range(5):
        parent.step()
    pid = os.fork()
    if pid == 0:  # the child: records its own run, then leaves at once
        code = 1
        try:
            child = sink.start_run(skill_id="s", run_id="child")
            child.step()
            child.close("ok")
            code = 0 if sink.flush(FLUSH_S) and buffer.written == 3 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent.close("ok")
    assert buffer.close(FLUSH_S)
    assert [log.sequence for log in http_storage.list_logs_by_run("parent")] == [1, 2, 3, 4, 5]
    assert [log.sequence for log in http_storage.list_logs_by_run("child")] == [1]
    assert http_storage.get_run("child").status == "ok"
    assert buffer.written == 7 and buffer.failures == 0


def test_the_recorder_imports_no_django():
    script = "import sys, runs.recorder; print([m for m in sys.modules if m.startswith('django')])"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stderr
