"""Month partitions of skill_run_logs (manage.py partition_history, runs.managers.LogPartitions).

PostgreSQL only. Each test converts a database of its own (created, migrated and dropped
here), so the conversion never changes the suite's test database. The whole suite on a
partitioned test database is ``SKILLAUDIT_TEST_PARTITIONED=1`` (tests/conftest.py).
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from runs import contract
from runs.contract import RunFilter, RunStats, SkillRun, SkillRunLog
from runs.managers import LOGS_BY_MONTH, LogPartitions
from runs.models import SkillRun as RunRow
from runs.models import SkillRunCount
from runs.models import SkillRunLog as LogRow
from runs.services import purge
from runs.storage import DjangoStorage

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="month partitions are a PostgreSQL layout"
    ),
]

ALIAS = "partitions_test"
MONTHS = [datetime(2026, m, 10, 12, tzinfo=UTC) for m in (3, 4, 5, 6)]


@pytest.fixture
def own_db(transactional_db):
    """A fresh, migrated database reachable as ALIAS."""
    name = f"sa_partitions_{os.getpid()}"
    settings_dict = dict(connections[DEFAULT_DB_ALIAS].settings_dict, NAME=name)
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name}")
    connections.settings[ALIAS] = settings_dict
    assert connections[ALIAS].alias == ALIAS
    # Out of the settings again: Django's test isolation lets such "dynamically created"
    # connections through.
    del connections.settings[ALIAS]
    try:
        call_command("migrate", database=ALIAS, verbosity=0)
        yield DjangoStorage(ALIAS)
    finally:
        connections[ALIAS].close()
        del connections[ALIAS]
        connections.settings.pop(ALIAS, None)
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def record(storage: DjangoStorage, run_id: str, started: datetime, events: int, failed=0):
    storage.start_run(SkillRun(id=run_id, skill_id="s", caller_id="c", started_at=started))
    logs = [
        SkillRunLog(
            run_id=run_id,
            sequence=n,
            event_type=contract.EVENT_TOOL_RESULT if n <= failed else "step",
            payload={"is_error": True} if n <= failed else {"n": n},
            created_at=started + timedelta(seconds=n),
        )
        for n in range(1, events + 1)
    ]
    storage.append_logs(logs)
    storage.finish_run(run_id, RunStats(status="ok"))


def snapshot(storage: DjangoStorage):
    """Everything a reader sees: runs (with roll-ups), logs, and the run counts."""
    runs = list(RunRow.objects.using(ALIAS).order_by("id").values())
    logs = list(LogRow.objects.using(ALIAS).order_by("id").values())
    counts = sorted(SkillRunCount.objects.using(ALIAS).values_list("span", "period_start", "runs"))
    return runs, logs, counts


def history(storage: DjangoStorage) -> None:
    for month_number, started in enumerate(MONTHS):
        for k in range(5):
            record(storage, f"m{month_number}-{k}", started + timedelta(hours=k), 4, failed=k % 2)


def test_conversion_in_batches_is_resumable_and_changes_nothing_visible(own_db):
    history(own_db)
    before = snapshot(own_db)
    out = io.StringIO()
    call_command(
        "partition_history", batch_size=1000, max_batches=1, database=ALIAS, stdout=out
    )  # 80 rows: one batch of 1000 moves them all, so stop earlier by hand:
    parts = LogPartitions(ALIAS)
    assert parts.state() in ("migrating", "partitioned")
    call_command("partition_history", database=ALIAS, stdout=out)
    assert parts.state() == "partitioned"
    assert snapshot(own_db) == before
    names = {name for name, *_ in parts.partitions()}
    assert {f"skill_run_logs_m2026{m:02d}" for m in (3, 4, 5, 6)} <= names
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ONLY {LOGS_BY_MONTH}")
        assert cursor.fetchone()[0] == 0  # the parent holds nothing itself
        cursor.execute("SELECT count(*) FROM skill_run_logs_m202604")
        assert cursor.fetchone()[0] == 20


def test_reads_and_writes_work_while_rows_are_being_moved(own_db):
    history(own_db)
    parts = LogPartitions(ALIAS)
    parts.setup(months_ahead=1)
    assert parts.move_batch(1000) and parts.state() == "migrating"
    # A few rows back in the old table: the migration is half done.
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "WITH moved AS (DELETE FROM skill_run_logs_by_month WHERE run_id = 'm1-0' "
            "RETURNING id, sequence, event_type, payload, created_at, run_id) "
            "INSERT INTO skill_run_logs_unpartitioned SELECT * FROM moved"
        )
        cursor.execute("SET session_replication_role = origin")
    assert [log.sequence for log in own_db.list_logs_by_run("m1-0")] == [1, 2, 3, 4]
    with pytest.raises(contract.Conflict):  # the twin is in the old table
        own_db.append_log(SkillRunLog(run_id="m1-0", sequence=2, event_type="step"))
    own_db.append_log(SkillRunLog(run_id="m1-0", sequence=5, event_type="step"))
    assert parts.move_batch(1000) == 4
    parts.finish()
    assert [log.sequence for log in own_db.list_logs_by_run("m1-0")] == [1, 2, 3, 4, 5]


def test_every_writer_works_on_the_partitioned_layout(own_db):
    history(own_db)
    call_command("partition_history", database=ALIAS, stdout=io.StringIO())
    run = RunRow.objects.using(ALIAS).get(pk="m2-1")
    with connections[ALIAS].cursor() as cursor:
        # The Go executor's INSERT, with its own columns only.
        cursor.execute(
            "INSERT INTO skill_run_logs (run_id, sequence, event_type, payload, created_at) "
            "VALUES ('m2-1', 10, 'step', '{}', now()) RETURNING id"
        )
        assert cursor.fetchone()[0] > 0
        cursor.execute(
            "SELECT run_started_at FROM skill_run_logs_by_month WHERE run_id = 'm2-1' "
            "AND sequence = 10"
        )
        assert cursor.fetchone()[0] == run.started_at
    for bad in ("('m2-1', 10, 'step', '{}', now())", "('no-such-run', 1, 'step', '{}', now())"):
        with pytest.raises(IntegrityError), connections[ALIAS].cursor() as cursor:
            cursor.execute(
                "INSERT INTO skill_run_logs (run_id, sequence, event_type, payload, created_at) "
                f"VALUES {bad}"
            )
    # The contract: append (COPY of a batch), Conflict, NotFound, reads, filters, purge.
    own_db.append_logs(
        [SkillRunLog(run_id="m2-1", sequence=n, event_type="step") for n in (11, 12)]
    )
    with pytest.raises(contract.Conflict):
        own_db.append_logs(
            [SkillRunLog(run_id="m2-1", sequence=n, event_type="step") for n in (12, 13)]
        )
    with pytest.raises(contract.NotFound):
        own_db.append_log(SkillRunLog(run_id="nope", sequence=1, event_type="step"))
    assert [log.sequence for log in own_db.list_logs_by_run("m2-1")] == [1, 2, 3, 4, 10, 11, 12]
    assert own_db.count_runs_filtered(RunFilter(skill_id="s")) == 20
    # A failed tool result counted by the carried-over roll-up trigger, through the view.
    own_db.append_log(
        SkillRunLog(
            run_id="m2-1", sequence=13, event_type=contract.EVENT_TOOL_RESULT,
            payload={"is_error": True},
        )
    )  # fmt: skip
    assert RunRow.objects.using(ALIAS).get(pk="m2-1").failed_tools == 2
    # Moving a run to another month moves its logs along.
    RunRow.objects.using(ALIAS).filter(pk="m2-1").update(started_at=MONTHS[0])
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM skill_run_logs_m202603 WHERE run_id = 'm2-1'")
        assert cursor.fetchone()[0] == 8
    # Deleting a run deletes its logs (the foreign key's cascade, as a trigger).
    RunRow.objects.using(ALIAS).filter(pk="m3-0").delete()
    assert not LogRow.objects.using(ALIAS).filter(run_id="m3-0").exists()


def test_purge_drops_whole_months_and_deletes_the_boundary_in_batches(own_db):
    history(own_db)
    call_command("partition_history", database=ALIAS, stdout=io.StringIO())
    cutoff = MONTHS[2] + timedelta(hours=2)  # inside May: runs m2-0 and m2-1 go too
    runs, logs = purge.purge_started_before(cutoff, batch_size=3, using=ALIAS)
    assert (runs, logs) == (12, 48)
    names = {name for name, *_ in LogPartitions(ALIAS).partitions()}
    assert "skill_run_logs_m202603" not in names and "skill_run_logs_m202604" not in names
    assert "skill_run_logs_m202605" in names
    left = sorted(RunRow.objects.using(ALIAS).values_list("pk", flat=True))
    assert left == ["m2-2", "m2-3", "m2-4", "m3-0", "m3-1", "m3-2", "m3-3", "m3-4"]
    assert LogRow.objects.using(ALIAS).count() == 32
    assert (
        sum(SkillRunCount.objects.using(ALIAS).filter(span="day").values_list("runs", flat=True))
        == 8
    )


def test_months_are_created_ahead_of_time(own_db):
    call_command("partition_history", database=ALIAS, months_ahead=2, stdout=io.StringIO())
    parts = LogPartitions(ALIAS)
    later = datetime(2031, 11, 5, tzinfo=UTC)
    assert parts.ensure_months(2, now=later) == [
        "skill_run_logs_m203111",
        "skill_run_logs_m203112",
        "skill_run_logs_m203201",
    ]
    assert parts.ensure_months(2, now=later) == []


def test_the_command_refuses_what_it_cannot_do(own_db):
    from django.core.management.base import CommandError

    for options in ({"batch_size": 10}, {"months_ahead": 99}, {"max_batches": 0}):
        with pytest.raises(CommandError):
            call_command("partition_history", database=ALIAS, **options)
    out = io.StringIO()
    call_command("partition_history", database=ALIAS, status=True, stdout=out)
    assert out.getvalue().startswith("layout: plain")


def test_every_trigger_of_the_plain_table_is_carried_over(own_db):
    """Whatever migration added a trigger to skill_run_logs (run counts, search, failure
    roll-ups, token usage...), the conversion recreates it on the partitioned table: the
    list is read from pg_trigger, not written down."""
    query = (
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal "
        "ORDER BY tgname"
    )
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(query, ["skill_run_logs"])
        plain = [name for (name,) in cursor.fetchall()]
    call_command("partition_history", database=ALIAS, stdout=io.StringIO())
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(query, [LOGS_BY_MONTH])
        carried = [name for (name,) in cursor.fetchall()]
    assert plain and carried == plain


def _add_counting_trigger(alias: str) -> None:
    """What a migration adding a statement-level trigger on skill_run_logs does, through
    log_tables (the rule for migrations, see runs.managers.log_tables)."""
    from runs.managers import log_tables

    with connections[alias].cursor() as cursor:
        cursor.execute("CREATE TABLE inserted_logs_seen (n bigint NOT NULL)")
        cursor.execute(
            "CREATE FUNCTION count_inserted_logs() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO inserted_logs_seen SELECT count(*) FROM new_logs; "
            "RETURN NULL; END $$"
        )
        for table in log_tables(connections[alias]):
            cursor.execute(
                f"CREATE TRIGGER count_inserted_logs AFTER INSERT ON {table} "
                "REFERENCING NEW TABLE AS new_logs FOR EACH STATEMENT "
                "EXECUTE FUNCTION count_inserted_logs()"
            )


def _inserted_logs_seen(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(n), 0) FROM inserted_logs_seen")
        return cursor.fetchone()[0]


@pytest.mark.parametrize("converted", ["before", "after"])
def test_a_later_migrations_trigger_works_on_either_layout(own_db, converted):
    """A trigger added the way log_tables says fires for every writer whether the database
    was converted before the migration (the trigger lands on skill_run_logs_by_month) or
    after it (the conversion carries it over)."""
    from runs.managers import log_tables

    history(own_db)
    if converted == "before":
        call_command("partition_history", database=ALIAS, stdout=io.StringIO())
        assert log_tables(connections[ALIAS]) == [LOGS_BY_MONTH]
    _add_counting_trigger(ALIAS)
    if converted == "after":
        call_command("partition_history", database=ALIAS, stdout=io.StringIO())
    own_db.append_logs(
        [SkillRunLog(run_id="m1-1", sequence=n, event_type="step") for n in (7, 8, 9)]
    )
    with connections[ALIAS].cursor() as cursor:  # the Go executor's plain INSERT
        cursor.execute(
            "INSERT INTO skill_run_logs (run_id, sequence, event_type, payload, created_at) "
            "VALUES ('m1-1', 10, 'step', '{}', now())"
        )
    assert _inserted_logs_seen(ALIAS) == 4


def _scans_in_transaction(cursor) -> dict[str, int]:
    """Index and sequential scans of each month this transaction started (the
    transaction-local statistics: exact, not flushed later like pg_stat_user_tables)."""
    cursor.execute(
        "SELECT c.relname, pg_stat_get_xact_numscans(c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        [LOGS_BY_MONTH],
    )
    scans = dict(cursor.fetchall())
    cursor.execute(
        "SELECT i.relname, pg_stat_get_xact_numscans(i.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_inherits h ON h.inhrelid = x.indrelid "
        "JOIN pg_class t ON t.oid = x.indrelid WHERE h.inhparent = %s::regclass",
        [LOGS_BY_MONTH],
    )
    for name, count in cursor.fetchall():
        month = name.split("_")[3] if name.startswith("skill_run_logs_m") else name
        scans[f"index {month}"] = scans.get(f"index {month}", 0) + count
    return scans


def test_a_purge_batch_reads_only_the_months_of_its_runs(own_db):
    """A batch's logs DELETE and the cascade from its runs' DELETE carry the batch's
    started_at range, so the planner keeps only the months it spans (the partition key):
    the other months are not even opened."""
    history(own_db)
    call_command("partition_history", database=ALIAS, stdout=io.StringIO())
    runs = RunRow.objects.db_manager(ALIAS)
    with transaction.atomic(using=ALIAS), connections[ALIAS].cursor() as cursor:
        before = _scans_in_transaction(cursor)
        assert runs.purge_batch(MONTHS[1] + timedelta(hours=2), MONTHS[1], 10) == (2, 8)
        after = _scans_in_transaction(cursor)
    touched = {name for name, count in after.items() if count != before.get(name, 0)}
    assert touched and all("202604" in name for name in touched), touched
    # A plain DELETE of runs (any writer) cascades with the same pruning.
    with transaction.atomic(using=ALIAS), connections[ALIAS].cursor() as cursor:
        before = _scans_in_transaction(cursor)
        cursor.execute("DELETE FROM skill_runs WHERE id IN ('m2-3', 'm2-4')")
        after = _scans_in_transaction(cursor)
    touched = {name for name, count in after.items() if count != before.get(name, 0)}
    assert touched and all("202605" in name for name in touched), touched
    assert not LogRow.objects.using(ALIAS).filter(run_id__in=["m2-3", "m2-4"]).exists()
    assert LogRow.objects.using(ALIAS).count() == 80 - 16


def test_a_dropped_month_is_not_read_and_counts_as_its_estimate(own_db):
    """Months with statistics are dropped without a count(*) (the planner's estimate of
    their rows is reported); the first batch's on_batch reports them with its own rows."""
    history(own_db)
    call_command("partition_history", database=ALIAS, stdout=io.StringIO())
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(f"ANALYZE {LOGS_BY_MONTH}")
    reported = []
    cutoff = MONTHS[2] - timedelta(days=1)  # March and April: 10 runs, 40 logs
    with CaptureQueriesContext(connections[ALIAS]) as queries:
        runs, logs = purge.purge_started_before(
            cutoff, batch_size=4, using=ALIAS, on_batch=lambda *t: reported.append(t)
        )
    assert (runs, logs) == (10, 40)  # analyzed just now: the estimate is exact
    assert reported[0] == (4, 40) and reported[-1] == (10, 40)
    assert not [q["sql"] for q in queries.captured_queries if "count(" in q["sql"].lower()]
