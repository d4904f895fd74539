"""skill_run_counts: the triggers keep it exact under every kind of write, and the skills
page's counts summed from it equal counting the runs themselves."""

import io
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from runs import contract
from runs.models import SkillRun, SkillRunCount, SkillRunLog
from runs.services import purge
from runs.storage import DjangoStorage

T0 = datetime(2026, 3, 10, 13, 47, 12, 500_000, tzinfo=UTC)


def bucket(started_at: datetime, span: str) -> datetime:
    at = started_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if span == "day" else at


def expected_buckets() -> dict[tuple, int]:
    """The buckets recounted in Python from the runs as they are now."""
    counted = Counter()
    for skill_id, status, started_at in SkillRun.objects.values_list(
        "skill_id", "status", "started_at"
    ):
        for span in ("hour", "day"):
            counted[(span, bucket(started_at, span), skill_id, status)] += 1
    return dict(counted)


def stored_buckets() -> dict[tuple, int]:
    return {
        (c.span, c.period_start, c.skill_id, c.status): c.runs for c in SkillRunCount.objects.all()
    }


def assert_counts_exact():
    assert stored_buckets() == expected_buckets()


def counted_since(since: datetime) -> dict[str, dict[str, int]]:
    """What the buckets must sum to: the runs started since ``since``, counted one by one."""
    counts: dict[str, dict[str, int]] = {}
    for skill_id, status in SkillRun.objects.filter(started_at__gte=since).values_list(
        "skill_id", "status"
    ):
        counts.setdefault(skill_id, {}).setdefault(status, 0)
        counts[skill_id][status] += 1
    return counts


def new_run(run_id, started_at, skill_id="skill-a", status=contract.STATUS_RUNNING, **extra):
    return SkillRun(id=run_id, skill_id=skill_id, started_at=started_at, status=status, **extra)


@pytest.mark.django_db
def test_every_kind_of_write_keeps_the_buckets_exact():
    storage = DjangoStorage()
    # Through the contract: start, then finish with a new status.
    for i in range(3):
        storage.start_run(contract.SkillRun(id=f"contract-{i}", skill_id="skill-a", started_at=T0))
    assert_counts_exact()
    storage.finish_run("contract-0", contract.RunStats(status=contract.STATUS_OK))
    storage.finish_run("contract-1", contract.RunStats(status=contract.STATUS_ERROR))
    assert_counts_exact()
    # A finish that keeps the status (output only) changes no bucket.
    before = stored_buckets()
    SkillRun.objects.filter(pk="contract-0").update(output="more output")
    assert stored_buckets() == before
    # Bulk inserts spread over hours and days.
    SkillRun.objects.bulk_create(
        [
            new_run(f"bulk-{i}", T0 - timedelta(minutes=37 * i), skill_id=f"skill-{i % 3}")
            for i in range(120)
        ]
    )
    assert_counts_exact()
    # An edit that moves a run to another skill, status and day (the admin's save).
    SkillRun.objects.filter(pk="bulk-5").update(
        skill_id="skill-moved", status=contract.STATUS_TIMEOUT, started_at=T0 - timedelta(days=3)
    )
    assert_counts_exact()
    # Closing the stale runs, moving runs in time, deleting some, purging the old ones.
    SkillRun.objects.filter(pk__startswith="bulk-1").close_running(contract.STATUS_ERROR, T0)
    assert_counts_exact()
    SkillRun.objects.shift_times([f"bulk-{i}" for i in range(20, 40)], timedelta(hours=5))
    assert_counts_exact()
    SkillRun.objects.delete_with_logs(["bulk-2", "bulk-3", "contract-2"])
    assert_counts_exact()
    purge.purge_started_before(T0 - timedelta(hours=30), batch_size=7)
    assert_counts_exact()
    SkillRun.objects.filter(skill_id="skill-1").delete()
    assert_counts_exact()


@pytest.mark.django_db
def test_a_writer_outside_django_is_counted_too():
    """The Go executor writes the same tables with its own SQL."""
    table = SkillRun._meta.db_table
    started = connection.ops.adapt_datetimefield_value(T0)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, skill_id, caller_id, channel_id, inputs, started_at, "
            "status, output, error, tool_calls_count, runtime_seconds, parent_run_id, "
            "total_input_tokens, total_output_tokens, total_thinking_tokens) VALUES "
            "(%s, %s, '', '', '{}', %s, %s, '', '', 0, 0, '', 0, 0, 0)",
            ["go-1", "go-skill", started, contract.STATUS_RUNNING],
        )
        cursor.execute(f"UPDATE {table} SET status = %s WHERE id = %s", ["ok", "go-1"])
    assert stored_buckets() == {
        ("hour", bucket(T0, "hour"), "go-skill", "ok"): 1,
        ("day", bucket(T0, "day"), "go-skill", "ok"): 1,
    }
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", ["go-1"])
    assert stored_buckets() == {}


@pytest.mark.django_db
def test_a_bucket_left_empty_is_deleted():
    SkillRun.objects.bulk_create([new_run("a", T0), new_run("b", T0 + timedelta(days=2))])
    SkillRun.objects.filter(pk="a").update(status=contract.STATUS_OK)
    SkillRun.objects.filter(pk="a").update(status=contract.STATUS_ERROR)
    SkillRun.objects.filter(pk="b").delete()
    assert stored_buckets() == {
        ("hour", bucket(T0, "hour"), "skill-a", "error"): 1,
        ("day", bucket(T0, "day"), "skill-a", "error"): 1,
    }


@pytest.mark.django_db
def test_buckets_are_utc_hours_and_days_whatever_the_writers_offset():
    kolkata = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2026, 3, 11, 2, 10, tzinfo=kolkata)  # 2026-03-10 20:40 UTC
    SkillRun.objects.bulk_create([new_run("india", at)])
    assert set(stored_buckets()) == {
        ("hour", datetime(2026, 3, 10, 20, tzinfo=UTC), "skill-a", "running"),
        ("day", datetime(2026, 3, 10, tzinfo=UTC), "skill-a", "running"),
    }


# Runs on every side of the edges the sum is split at: the window's start, the next full
# hour, the next midnight, today, and a clock ahead of the server's.
EDGE_OFFSETS = [
    timedelta(0),
    timedelta(microseconds=-1),
    timedelta(microseconds=1),
    timedelta(minutes=12, seconds=47),
    timedelta(minutes=12, seconds=47, microseconds=499_999),  # just before 14:00
    timedelta(minutes=12, seconds=47, microseconds=500_000),  # 14:00 sharp
    timedelta(hours=10, minutes=12, seconds=47, microseconds=500_000),  # midnight
    timedelta(hours=10, minutes=12, seconds=47, microseconds=499_999),
    timedelta(days=3, hours=2),
    timedelta(days=6, hours=23),
    timedelta(days=7, hours=1),
    timedelta(days=9),  # started in the future
    timedelta(days=-1),
    timedelta(hours=-2),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "since",
    [
        T0,  # 13:47:12.5: every part of the sum is used
        T0.replace(minute=0, second=0, microsecond=0),  # on the hour
        T0.replace(hour=0, minute=0, second=0, microsecond=0),  # at midnight
        T0 + timedelta(days=30),  # after every run
    ],
)
def test_summed_buckets_equal_counting_the_runs(since):
    statuses = [contract.STATUS_OK, contract.STATUS_ERROR, contract.STATUS_RUNNING, "custom"]
    SkillRun.objects.bulk_create(
        [
            new_run(
                f"r{i}-{j}",
                T0 + offset,
                skill_id=f"skill-{(i + j) % 3}",
                status=statuses[(i * 7 + j) % len(statuses)],
            )
            for i, offset in enumerate(EDGE_OFFSETS)
            for j in range(3)
        ]
    )
    recent = since + timedelta(days=6, hours=1, minutes=5)

    week, day = SkillRunCount.objects.by_skill_and_status(since, recent)

    assert week == counted_since(since)
    assert day == counted_since(recent)
    if since == T0:
        at_or_after = sum(1 for offset in EDGE_OFFSETS if offset >= timedelta(0))
        assert sum(sum(v.values()) for v in week.values()) == 3 * at_or_after


@pytest.mark.django_db
def test_rebuild_recounts_what_was_written_with_the_triggers_off():
    SkillRun.objects.bulk_create(
        [new_run(f"r{i}", T0 - timedelta(hours=i), skill_id=f"s{i % 4}") for i in range(50)]
    )
    # What a TRUNCATE of the counts, or a restore with triggers disabled, leaves.
    SkillRunCount.objects.all().delete()
    SkillRunCount.objects.create(
        span="hour", period_start=T0, skill_id="ghost", status="ok", runs=9
    )

    rows = SkillRunCount.objects.rebuild()

    assert rows == len(expected_buckets())
    assert_counts_exact()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="parallel workers: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_parallel_writers_leave_the_buckets_exact():
    """Two purge workers and a writer lower and raise shared buckets at once."""
    SkillRun.objects.bulk_create(
        [
            new_run(f"old-{i:04d}", T0 - timedelta(minutes=i), skill_id=f"s{i % 5}")
            for i in range(3000)
        ]
    )
    SkillRunLog.objects.bulk_create(
        [
            SkillRunLog(
                run_id=f"old-{i:04d}", sequence=1, event_type="step", payload={}, created_at=T0
            )
            for i in range(0, 3000, 3)
        ]
    )

    def write_meanwhile():
        try:
            for i in range(300):
                with transaction.atomic():
                    SkillRun.objects.bulk_create(
                        [new_run(f"new-{i:03d}", T0 - timedelta(minutes=7 * i), skill_id="s1")]
                    )
        finally:
            connections.close_all()

    writer = threading.Thread(target=write_meanwhile)
    writer.start()
    purge.purge_started_before(T0 - timedelta(minutes=1000), batch_size=50, workers=2)
    writer.join()

    assert_counts_exact()
    assert SkillRun.objects.filter(started_at__gte=T0 - timedelta(minutes=1000)).count() >= 1001


@pytest.mark.django_db
def test_the_rebuild_command_recounts_and_says_how_many_buckets():
    SkillRun.objects.bulk_create(
        [new_run(f"r{i}", T0 - timedelta(hours=i)) for i in range(30)]  # 30 hours, 2 days
    )
    SkillRunCount.objects.filter(span="day").delete()
    out = io.StringIO()

    call_command("rebuild_run_counts", stdout=out)

    assert out.getvalue().splitlines() == [
        "Recounted the runs into 32 hour and day buckets.",
        "Recounted 1 skill summaries.",
    ]
    assert_counts_exact()
