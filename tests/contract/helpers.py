"""Shared vocabulary of the conformance suite: times, run builders, snapshots."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime, timedelta, timezone

from runs.contract import RunFilter, RunStats, SkillRun, SkillRunLog, Storage

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
# Non-UTC zones on both sides of UTC: results must come back in UTC whatever went in.
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))

# More than the default limit and less than the maximum, so clamping is visible.
BULK = 55


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def start(
    storage: Storage,
    run_id: str,
    seconds: float = 0,
    *,
    skill: str = "skill-a",
    caller: str = "caller-1",
    channel: str = "chan-1",
    parent: str = "",
    **fields,
) -> None:
    storage.start_run(
        SkillRun(
            id=run_id,
            skill_id=skill,
            caller_id=caller,
            channel_id=channel,
            started_at=at(seconds),
            parent_run_id=parent,
            **fields,
        )
    )


def finish(storage: Storage, run_id: str, status: str = "ok", **fields) -> None:
    storage.finish_run(run_id, RunStats(status=status, **fields))


def log(run_id: str, sequence: int, event_type: str = "step", payload=None, created_at=None):
    return SkillRunLog(
        run_id=run_id,
        sequence=sequence,
        event_type=event_type,
        payload=payload if payload is not None else {},
        created_at=created_at,
    )


def ids(runs) -> list[str]:
    return [run.id for run in runs]


def assert_utc(value: datetime) -> None:
    assert value is not None
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value


def everything(storage: Storage) -> list:
    """Every run (dry runs too) with its logs: to show that a refused call changed nothing."""
    runs = storage.list_runs_filtered(RunFilter(include_dry_run=True), 0, 500)
    return [(run, storage.list_logs_by_run(run.id)) for run in runs]


def seed_bulk(storage: Storage, finished: bool = False) -> list[str]:
    """BULK runs of skill-a/caller-1, one second apart; their ids newest first."""
    for i in range(BULK):
        start(storage, f"bulk-{i:02d}", i)
        if finished:
            finish(storage, f"bulk-{i:02d}")
    return [f"bulk-{i:02d}" for i in reversed(range(BULK))]


def no_database_queries(storage: Storage, request):
    """A context asserting that the storage sends the database no query, where it has one."""
    from runs.storage import DjangoStorage

    if isinstance(storage, DjangoStorage):
        return request.getfixturevalue("django_assert_num_queries")(0)
    return nullcontext()
