"""DjangoStorage under concurrent writers, on the real database (SQLite or PostgreSQL).

Each thread has its own database connection, committed transactions (transaction=True) and
closes its connection when done, as Django's own select_for_update tests do.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from runs import contract
from runs.contract import RunStats, SkillRun, SkillRunLog
from runs.recorder import Sink
from runs.storage import DjangoStorage

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8


def run_in_threads(work, count=THREADS):
    """Call work(n) in `count` threads released together; the results, in thread order.

    An exception in a thread is returned as its result, so the test can assert on it.
    """
    barrier = threading.Barrier(count)
    results = [None] * count

    def target(n):
        try:
            barrier.wait()
            results[n] = work(n)
        except Exception as exc:
            results[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _origin(log: SkillRunLog) -> tuple[int, int, int]:
    """(thread, run, event) that wrote a tool_call or step event of the first test."""
    fields = log.payload["arguments"] if log.event_type == "tool_call" else log.payload
    return fields["thread"], fields["run"], fields["event"]


def test_threads_recording_their_own_runs_through_one_sink():
    runs_per_thread, events_per_run = 20, 10
    storage = DjangoStorage()
    sink = Sink(storage)

    def record(n):
        failures = 0
        for r in range(runs_per_thread):
            with sink.start_run(
                skill_id=f"skill-{r % 3}",
                caller_id=f"caller-{n}",
                inputs={"thread": n, "run": r},
                run_id=f"t{n}-r{r}",
            ) as recorder:
                for e in range(events_per_run // 2):
                    recorder.tool_call("search", {"thread": n, "run": r, "event": e})
                    recorder.step(input_tokens=e, output_tokens=1, thread=n, run=r, event=e)
            failures += recorder.failures
        return failures

    assert run_in_threads(record) == [0] * THREADS
    assert sink.failures == 0

    total = THREADS * runs_per_thread
    assert storage.count_runs_filtered(contract.RunFilter()) == total
    for n in range(THREADS):
        runs = storage.list_runs_by_caller(f"caller-{n}", 500)
        assert sorted(run.id for run in runs) == sorted(
            f"t{n}-r{r}" for r in range(runs_per_thread)
        )
        for run in runs:
            r = run.inputs["run"]
            assert run.inputs == {"thread": n, "run": r}
            assert run.status == contract.STATUS_OK
            assert run.tool_calls_count == events_per_run // 2
            assert run.total_input_tokens == sum(range(events_per_run // 2))
            logs = storage.list_logs_by_run(run.id)
            assert [log.sequence for log in logs] == list(range(1, events_per_run + 1))
            assert [log.event_type for log in logs] == ["tool_call", "step"] * (events_per_run // 2)
            # Each event is this run's own, in the order it was recorded.
            assert [_origin(log) for log in logs] == [
                (n, r, e) for e in range(events_per_run // 2) for _kind in ("call", "step")
            ]
            times = [log.created_at for log in logs]
            assert times == sorted(times)


def test_threads_appending_distinct_sequences_to_one_run():
    per_thread = 40
    storage = DjangoStorage()
    storage.start_run(SkillRun(id="shared", skill_id="s"))

    def append(n):
        # Interleaved: thread n owns sequences n+1, n+1+THREADS, ...
        for i in range(per_thread):
            sequence = n + 1 + i * THREADS
            storage.append_log(
                SkillRunLog(
                    run_id="shared",
                    sequence=sequence,
                    event_type="step",
                    payload={"thread": n, "sequence": sequence},
                )
            )

    assert run_in_threads(append) == [None] * THREADS
    logs = storage.list_logs_by_run("shared")
    total = THREADS * per_thread
    assert [log.sequence for log in logs] == list(range(1, total + 1))
    assert [log.payload for log in logs] == [
        {"thread": (s - 1) % THREADS, "sequence": s} for s in range(1, total + 1)
    ]


def test_threads_racing_for_the_same_sequence_one_wins():
    rounds = 10
    storage = DjangoStorage()
    storage.start_run(SkillRun(id="contested", skill_id="s"))

    for sequence in range(1, rounds + 1):

        def append(n, sequence=sequence):
            storage.append_log(
                SkillRunLog(
                    run_id="contested",
                    sequence=sequence,
                    event_type="step",
                    payload={"winner": n},
                )
            )
            return "stored"

        results = run_in_threads(append)
        winners = [n for n, result in enumerate(results) if result == "stored"]
        losers = [result for result in results if result != "stored"]
        assert len(winners) == 1, results
        assert len(losers) == THREADS - 1
        assert all(isinstance(result, contract.Conflict) for result in losers), results
        stored = storage.list_logs_by_run("contested")
        assert len(stored) == sequence
        assert stored[-1].sequence == sequence
        assert stored[-1].payload == {"winner": winners[0]}


def _stats(n: int) -> RunStats:
    """Stats whose every field says which thread wrote it."""
    return RunStats(
        status=contract.TERMINAL_STATUSES[n % len(contract.TERMINAL_STATUSES)],
        output=f"output of thread {n} " * (n + 1),
        error=f"error of thread {n}",
        tool_calls=n + 1,
        runtime_seconds=n + 0.5,
        input_tokens=1000 + n,
        output_tokens=2000 + n,
        thinking_tokens=3000 + n,
    )


def _stored_stats(run: SkillRun) -> RunStats:
    return RunStats(
        status=run.status,
        output=run.output,
        error=run.error,
        tool_calls=run.tool_calls_count,
        runtime_seconds=run.runtime_seconds,
        input_tokens=run.total_input_tokens,
        output_tokens=run.total_output_tokens,
        thinking_tokens=run.total_thinking_tokens,
    )


def test_concurrent_finishes_leave_one_complete_set_of_stats():
    rounds = 10
    storage = DjangoStorage()
    candidates = [_stats(n) for n in range(THREADS)]
    for r in range(rounds):
        run_id = f"finish-{r}"
        storage.start_run(SkillRun(id=run_id, skill_id="s"))
        before = contract.utcnow()
        results = run_in_threads(lambda n, run_id=run_id: storage.finish_run(run_id, _stats(n)))
        assert results == [None] * THREADS
        run = storage.get_run(run_id)
        assert _stored_stats(run) in candidates
        assert before <= run.finished_at <= contract.utcnow()
