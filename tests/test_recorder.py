"""The recorder (runs/recorder.py) over each Storage: what an executor writes during a run."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from runs import contract
from runs.recorder import Sink
from runs.storage import DjangoStorage

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def _events(storage, run_id):
    return [(log.sequence, log.event_type, log.payload) for log in storage.list_logs_by_run(run_id)]


def test_a_started_run_is_stored_as_running(storage):
    sink = Sink(storage)
    before = contract.utcnow()
    recorder = sink.start_run(
        skill_id="summarise-thread",
        caller_id="member-1",
        channel_id="channel-9",
        inputs={"thread": "t-1"},
        parent_run_id="parent-1",
        run_id="run-1",
    )
    run = storage.get_run("run-1")
    assert recorder.run_id == "run-1"
    assert (run.skill_id, run.caller_id, run.channel_id) == (
        "summarise-thread",
        "member-1",
        "channel-9",
    )
    assert run.inputs == {"thread": "t-1"}
    assert run.parent_run_id == "parent-1"
    assert run.status == contract.STATUS_RUNNING
    assert run.finished_at is None
    assert before <= run.started_at <= contract.utcnow()


def test_without_a_run_id_each_run_gets_a_new_one(storage):
    sink = Sink(storage)
    first = sink.start_run(skill_id="s")
    second = sink.start_run(skill_id="s")
    assert first.run_id != second.run_id
    assert storage.get_run(first.run_id).skill_id == "s"
    assert storage.get_run(second.run_id).skill_id == "s"


def test_sequences_start_at_one_and_increase_by_one(storage):
    recorder = Sink(storage).start_run(skill_id="s", run_id="r")
    assert recorder.sequence == 0
    recorder.step(text="thinking")
    recorder.tool_call("search", {"q": "x"}, call_id="c1")
    recorder.tool_result("search", ["hit"], call_id="c1")
    recorder.error("boom")
    recorder.step(text="again")
    assert recorder.sequence == 5
    logs = storage.list_logs_by_run("r")
    assert [log.sequence for log in logs] == [1, 2, 3, 4, 5]
    assert [log.event_type for log in logs] == [
        contract.EVENT_STEP,
        contract.EVENT_TOOL_CALL,
        contract.EVENT_TOOL_RESULT,
        contract.EVENT_ERROR,
        contract.EVENT_STEP,
    ]
    times = [log.created_at for log in logs]
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)


def test_event_payloads(storage):
    recorder = Sink(storage).start_run(skill_id="s", run_id="r")
    recorder.step(text="plan", model="m-1", input_tokens=10, output_tokens=4, thinking_tokens=2)
    recorder.tool_call("kb.search", {"query": "refund", "limit": 3}, call_id="call-1")
    recorder.tool_call("clock.now")
    recorder.tool_result("kb.search", {"hits": [1, 2]}, call_id="call-1")
    recorder.tool_result("clock.now", "timeout", is_error=True)
    recorder.error("the tool failed", tool="clock.now", attempt=2)
    assert _events(storage, "r") == [
        (
            1,
            "step",
            {
                "text": "plan",
                "model": "m-1",
                "usage": {"input_tokens": 10, "output_tokens": 4, "thinking_tokens": 2},
            },
        ),
        (
            2,
            "tool_call",
            {
                "tool": "kb.search",
                "call_id": "call-1",
                "arguments": {"query": "refund", "limit": 3},
            },
        ),
        (3, "tool_call", {"tool": "clock.now", "call_id": "", "arguments": {}}),
        (
            4,
            "tool_result",
            {
                "tool": "kb.search",
                "call_id": "call-1",
                "result": {"hits": [1, 2]},
                "is_error": False,
            },
        ),
        (
            5,
            "tool_result",
            {"tool": "clock.now", "call_id": "", "result": "timeout", "is_error": True},
        ),
        (6, "error", {"tool": "clock.now", "attempt": 2, "message": "the tool failed"}),
    ]


def test_close_writes_the_roll_ups(storage):
    recorder = Sink(storage).start_run(skill_id="s", run_id="r")
    recorder.step(input_tokens=100, output_tokens=20, thinking_tokens=5)
    recorder.tool_call("a", {})
    recorder.tool_result("a", 1)
    recorder.tool_call("b", {})
    recorder.step(input_tokens=300, output_tokens=7)
    recorder.tool_call("c", {})
    before_close = contract.utcnow()
    recorder.close(contract.STATUS_TIMEOUT, output="partial", error="deadline exceeded")
    run = storage.get_run("r")
    assert run.status == contract.STATUS_TIMEOUT
    assert (run.output, run.error) == ("partial", "deadline exceeded")
    assert run.tool_calls_count == 3
    assert (run.total_input_tokens, run.total_output_tokens, run.total_thinking_tokens) == (
        400,
        27,
        5,
    )
    assert run.runtime_seconds > 0
    assert before_close <= run.finished_at <= contract.utcnow()
    assert (recorder.tool_calls, recorder.input_tokens) == (3, 400)


def test_close_writes_only_once(storage):
    recorder = Sink(storage).start_run(skill_id="s", run_id="r")
    recorder.tool_call("a", {})
    recorder.close(contract.STATUS_OK, output="first")
    first = storage.get_run("r")
    recorder.tool_call("b", {})
    recorder.close(contract.STATUS_ERROR, output="second", error="late")
    assert storage.get_run("r") == first
    assert first.status == contract.STATUS_OK
    assert first.tool_calls_count == 1
    assert recorder.closed


def test_context_manager_closes_a_clean_run_as_ok(storage):
    with Sink(storage).start_run(skill_id="s", run_id="r") as recorder:
        recorder.tool_call("a", {"x": 1})
    run = storage.get_run("r")
    assert run.status == contract.STATUS_OK
    assert run.error == ""
    assert run.tool_calls_count == 1
    assert run.finished_at is not None


def test_context_manager_closes_a_failed_run_as_error_and_reraises(storage):
    class AgentFailure(Exception):
        pass

    with pytest.raises(AgentFailure, match="model refused"):
        with Sink(storage).start_run(skill_id="s", run_id="r") as recorder:
            recorder.step(input_tokens=3)
            raise AgentFailure("model refused")
    run = storage.get_run("r")
    assert run.status == contract.STATUS_ERROR
    assert run.error == "AgentFailure: model refused"
    assert run.total_input_tokens == 3
    assert run.finished_at is not None


def test_context_manager_keeps_an_explicit_close(storage):
    with Sink(storage).start_run(skill_id="s", run_id="r") as recorder:
        recorder.close(contract.STATUS_BUDGET_EXCEEDED, error="budget")
    assert storage.get_run("r").status == contract.STATUS_BUDGET_EXCEEDED


def test_sink_none_records_nothing_and_never_fails(caplog):
    sink = Sink(None)
    with caplog.at_level(logging.DEBUG, logger="runs.recorder"):
        with sink.start_run(skill_id="s", inputs={"bad": object()}) as recorder:
            recorder.step(input_tokens=5, text=object())
            recorder.tool_call("a", object())
            recorder.tool_result("a", object())
            recorder.error("x")
        with pytest.raises(RuntimeError):
            with sink.start_run(skill_id="s") as failing:
                raise RuntimeError("agent bug")
    # Unrecordable payloads would fail in any storage; with none there is nothing to fail.
    assert sink.failures == recorder.failures == failing.failures == 0
    assert caplog.records == []
    assert recorder.closed and failing.closed
    # The roll-ups are still kept, so an executor can report them without a storage.
    assert (recorder.sequence, recorder.tool_calls, recorder.input_tokens) == (4, 1, 5)


def test_a_run_purged_under_the_recorder_is_logged_and_counted(storage, caplog):
    sink = Sink(storage)
    recorder = sink.start_run(skill_id="s", run_id="doomed")
    recorder.step(text="before")
    # Now, not a far future: the API refuses a purge cutoff in the future.
    assert storage.purge_older_than(contract.utcnow()) == 1
    with caplog.at_level(logging.ERROR, logger="runs.recorder"):
        recorder.tool_call("a", {})
        recorder.close(contract.STATUS_OK)
    assert recorder.failures == 2
    assert sink.failures == 2
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "skillaudit: tool_call failed for run doomed",
        "skillaudit: finish_run failed for run doomed",
    ]
    assert all(record.exc_info[0] is contract.NotFound for record in caplog.records)
    with pytest.raises(contract.NotFound):
        storage.get_run("doomed")


def test_a_duplicate_run_id_is_counted_and_never_touches_the_other_run(storage, caplog):
    first = Sink(storage).start_run(skill_id="owner", run_id="same-id")
    first.step(text="mine")
    intruder_sink = Sink(storage)
    with caplog.at_level(logging.ERROR, logger="runs.recorder"):
        intruder = intruder_sink.start_run(skill_id="intruder", run_id="same-id")
        intruder.step(text="not yours", input_tokens=9)
        intruder.tool_call("a", {})
        intruder.close(contract.STATUS_ERROR, error="should not land")
    assert intruder.failures == intruder_sink.failures == 1
    assert [r.getMessage() for r in caplog.records] == [
        "skillaudit: start_run failed for run same-id"
    ]
    assert caplog.records[0].exc_info[0] is contract.Conflict
    # The first run's row and log are exactly what its own recorder wrote.
    run = storage.get_run("same-id")
    assert (run.skill_id, run.status, run.total_input_tokens) == ("owner", "running", 0)
    usage = {"input_tokens": 0, "output_tokens": 0, "thinking_tokens": 0}
    assert _events(storage, "same-id") == [(1, "step", {"text": "mine", "usage": usage})]
    first.close(contract.STATUS_OK)
    assert storage.get_run("same-id").status == contract.STATUS_OK
    assert first.failures == 0


def test_an_unstorable_payload_is_counted_and_later_events_still_land(storage, caplog):
    sink = Sink(storage)
    recorder = sink.start_run(skill_id="s", run_id="r")
    with caplog.at_level(logging.ERROR, logger="runs.recorder"):
        recorder.tool_result("a", object())
        recorder.step(text="after", score=float("nan"))
        recorder.tool_result("a", "fine")
        recorder.close("a status longer than the thirty-two characters allowed")
    assert recorder.failures == sink.failures == 3
    assert len(caplog.records) == 3
    assert all(record.exc_info[0] is contract.InvalidInput for record in caplog.records)
    # Sequences 1 and 2 were used by the failed writes; the stored event keeps its number.
    assert [(seq, kind) for seq, kind, _ in _events(storage, "r")] == [(3, "tool_result")]
    assert storage.get_run("r").status == contract.STATUS_RUNNING


def test_failures_are_counted_per_recorder_and_summed_on_the_sink(storage):
    sink = Sink(storage)
    healthy = sink.start_run(skill_id="s", run_id="healthy")
    broken = sink.start_run(skill_id="s", run_id="healthy")  # duplicate id: 1 failure
    storage.purge_older_than(contract.utcnow())
    healthy.step()  # NotFound: 1 failure
    healthy.close()  # NotFound: 1 failure
    broken.close()  # not recording: no storage call, no failure
    assert (healthy.failures, broken.failures, sink.failures) == (2, 1, 3)


def test_text_is_cleaned_like_the_storage_cleans_it(storage):
    recorder = Sink(storage).start_run(skill_id="s\x00", run_id="r\x00", inputs={"k\x00": "v"})
    recorder.step(text="a\x00b")
    recorder.close(output="o\x00")
    assert recorder.failures == 0
    run = storage.get_run("r\x00")
    assert (run.id, run.skill_id, run.output) == ("r\ufffd", "s\ufffd", "o\ufffd")
    assert run.inputs == {"k\ufffd": "v"}
    assert storage.list_logs_by_run("r\ufffd")[0].payload["text"] == "a\ufffdb"


def test_an_injected_clock_stamps_times_and_measures_the_runtime(storage):
    now = [datetime(2024, 5, 1, 12, 0, tzinfo=UTC)]

    def clock():
        return now[0]

    recorder = Sink(storage, clock=clock).start_run(skill_id="s", run_id="r")
    now[0] += timedelta(seconds=2.5)
    recorder.step(text="a")
    now[0] += timedelta(seconds=10)
    recorder.tool_call("t", {})
    now[0] += timedelta(seconds=30)
    recorder.close()
    run = storage.get_run("r")
    assert run.started_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert run.runtime_seconds == 42.5
    assert [log.created_at for log in storage.list_logs_by_run("r")] == [
        datetime(2024, 5, 1, 12, 0, 2, 500000, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 0, 12, 500000, tzinfo=UTC),
    ]


THREADS = 8
EVENTS_PER_THREAD = 25


@pytest.mark.django_db(transaction=True)
def test_threads_sharing_one_recorder_get_distinct_sequences(storage):
    sink = Sink(storage)
    recorder = sink.start_run(skill_id="s", run_id="shared")
    barrier = threading.Barrier(THREADS)
    errors = []

    def worker(n):
        try:
            barrier.wait()
            for i in range(EVENTS_PER_THREAD):
                recorder.tool_call("t", {"thread": n, "i": i}, call_id=f"{n}-{i}")
                recorder.step(input_tokens=1, output_tokens=2, thread=n, i=i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            if isinstance(storage, DjangoStorage):
                connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close()

    total = THREADS * EVENTS_PER_THREAD * 2
    assert errors == []
    assert sink.failures == recorder.failures == 0
    logs = storage.list_logs_by_run("shared")
    assert [log.sequence for log in logs] == list(range(1, total + 1))
    # Every (thread, i) event is there exactly once, under both event types.
    seen = sorted(
        (log.event_type, log.payload.get("thread", log.payload.get("arguments", {}).get("thread")))
        for log in logs
    )
    expected = sorted(
        (kind, n)
        for n in range(THREADS)
        for _ in range(EVENTS_PER_THREAD)
        for kind in ("step", "tool_call")
    )
    assert seen == expected
    run = storage.get_run("shared")
    assert run.tool_calls_count == THREADS * EVENTS_PER_THREAD
    assert run.total_input_tokens == THREADS * EVENTS_PER_THREAD
    assert run.total_output_tokens == 2 * THREADS * EVENTS_PER_THREAD
