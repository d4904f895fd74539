"""manage.py purge_runs: options, errors, and what a SIGKILL in the middle leaves behind."""

import io
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from runs import contract
from runs.durations import parse_duration
from runs.memory import MemoryStorage
from runs.models import SkillRun, SkillRunLog
from runs.services import purge as purge_service

BASE_DIR = Path(__file__).resolve().parent.parent
LOGS_PER_RUN = 3


def make_runs(started: list[tuple[str, datetime]], logs_per_run: int = LOGS_PER_RUN):
    SkillRun.objects.bulk_create(
        [
            SkillRun(id=run_id, skill_id="skill", started_at=at, status=contract.STATUS_OK)
            for run_id, at in started
        ],
        batch_size=2000,
    )
    SkillRunLog.objects.bulk_create(
        [
            SkillRunLog(
                run_id=run_id, sequence=n, event_type=contract.EVENT_STEP, payload={}, created_at=at
            )
            for run_id, at in started
            for n in range(1, logs_per_run + 1)
        ],
        batch_size=2000,
    )


def run_ids() -> set[str]:
    return set(SkillRun.objects.values_list("pk", flat=True))


def purge(*args, stdin=None) -> str:
    out = io.StringIO()
    call_command("purge_runs", *args, stdout=out, stdin=stdin)
    return out.getvalue()


@pytest.fixture
def history(db):
    """Runs 100 days, 40 days, 2 hours and 10 minutes old, LOGS_PER_RUN events each."""
    now = timezone.now()
    ages = {"d100": timedelta(days=100), "d40": timedelta(days=40)}
    ages |= {"h2": timedelta(hours=2), "m10": timedelta(minutes=10)}
    make_runs([(name, now - age) for name, age in ages.items()])
    return now


# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("30", "not a duration"),
        ("d", "not a duration"),
        ("1.5d", "not a duration"),
        ("30 days", "not a duration"),
        ("", "not a duration"),
        ("0d", "zero"),
        ("-5d", "negative"),
        ("99999999999d", "too long"),
    ],
)
def test_parse_duration_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


# --- choosing the cutoff -------------------------------------------------------------


def test_older_than_deletes_runs_and_logs_before_the_cutoff(history):
    out = purge("--older-than", "30d", "--noinput")
    assert run_ids() == {"h2", "m10"}
    assert set(SkillRunLog.objects.values_list("run_id", flat=True)) == {"h2", "m10"}
    assert SkillRunLog.objects.count() == 2 * LOGS_PER_RUN
    assert f"Deleted 2 run(s) and {2 * LOGS_PER_RUN} log event(s)" in out


@pytest.mark.parametrize(
    "duration, kept",
    [("1h", {"m10"}), ("90m", {"m10"}), ("3h", {"h2", "m10"}), ("50d", {"d40", "h2", "m10"})],
)
def test_older_than_units(history, duration, kept):
    purge("--older-than", duration, "--noinput")
    assert run_ids() == kept


def test_default_cutoff_comes_from_the_retention_setting(history, settings):
    settings.SKILLAUDIT_RETENTION_DAYS = 50
    out = purge("--noinput")
    assert run_ids() == {"d40", "h2", "m10"}
    assert "SKILLAUDIT_RETENTION_DAYS=50" in out


@pytest.mark.parametrize("days", [0, -3])
def test_a_retention_setting_below_one_day_is_refused(history, settings, days):
    settings.SKILLAUDIT_RETENTION_DAYS = days
    with pytest.raises(CommandError, match="SKILLAUDIT_RETENTION_DAYS"):
        purge("--noinput")
    assert len(run_ids()) == 4


def test_before_keeps_a_run_started_exactly_at_the_cutoff(db):
    cutoff = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    make_runs(
        [
            ("just-before", cutoff - timedelta(microseconds=1)),
            ("at", cutoff),
            ("after", cutoff + timedelta(seconds=1)),
        ]
    )
    purge("--before", "2024-05-01T12:00:00Z", "--noinput")
    assert run_ids() == {"at", "after"}


def test_before_with_an_offset_is_converted_to_utc(db):
    cutoff = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    make_runs([("early", cutoff - timedelta(minutes=1)), ("late", cutoff + timedelta(minutes=1))])
    purge("--before", "2024-05-01T12:00:00+02:00", "--noinput")
    assert run_ids() == {"late"}


def test_the_command_deletes_what_the_contract_purge_deletes(db):
    """Same history in MemoryStorage (the reference) and the database, same cutoff."""
    base = datetime(2024, 1, 1, tzinfo=UTC)
    started = [(f"r{i:03d}", base + timedelta(hours=i * 7)) for i in range(60)]
    make_runs(started)
    memory = MemoryStorage()
    for run_id, at in started:
        memory.start_run(contract.SkillRun(id=run_id, skill_id="skill", started_at=at))
    cutoff = base + timedelta(days=9, hours=3)
    expected = len([1 for _, at in started if at < cutoff])
    assert memory.purge_older_than(cutoff) == expected
    purge("--before", cutoff.isoformat(), "--noinput", "--batch-size", "7")
    remaining = {run.id for run in memory.list_runs_filtered(contract.RunFilter(), 0, 500)}
    assert run_ids() == remaining
    assert 0 < expected < len(started)


# --- dry run, confirmation, progress ------------------------------------------------


def test_dry_run_counts_and_deletes_nothing(history):
    out = purge("--older-than", "30d", "--dry-run")
    assert f"would delete 2 run(s) and {2 * LOGS_PER_RUN} log event(s)" in out
    assert "Nothing was deleted" in out
    assert len(run_ids()) == 4
    assert SkillRunLog.objects.count() == 4 * LOGS_PER_RUN


def test_interactive_purge_deletes_after_yes(history):
    out = purge("--older-than", "30d", stdin=io.StringIO("yes\n"))
    assert f"This deletes 2 run(s) and {2 * LOGS_PER_RUN} log event(s)" in out
    assert run_ids() == {"h2", "m10"}


@pytest.mark.parametrize("answer", ["no\n", "y\n", "\n", ""])
def test_interactive_purge_keeps_everything_unless_yes(history, answer):
    out = purge("--older-than", "30d", stdin=io.StringIO(answer))
    assert "cancelled" in out
    assert len(run_ids()) == 4


def test_interactive_purge_with_nothing_to_delete_does_not_ask(history):
    out = purge("--older-than", "200d", stdin=io.StringIO(""))
    assert "No runs started before" in out
    assert "Type 'yes'" not in out


def test_noinput_with_nothing_to_delete_says_so(history):
    out = purge("--older-than", "200d", "--noinput")
    assert "No runs started before" in out
    assert len(run_ids()) == 4


def test_progress_lines_at_verbosity_2(db):
    make_runs([(f"r{i}", datetime(2020, 1, 1, tzinfo=UTC)) for i in range(10)])
    out = purge("--older-than", "1d", "--noinput", "--batch-size", "3", "--verbosity", "2")
    progress = [line for line in out.splitlines() if line.startswith("...")]
    # Batches of 3, 3, 3 and 1 run.
    assert len(progress) == 4
    assert progress[0].startswith(f"... 3 run(s) and {3 * LOGS_PER_RUN} log event(s)")
    assert progress[-1].startswith(f"... 10 run(s) and {10 * LOGS_PER_RUN} log event(s)")
    assert "Deleted 10 run(s)" in out
    assert not SkillRun.objects.exists()


def test_verbosity_0_prints_nothing(history):
    assert purge("--older-than", "30d", "--noinput", "--verbosity", "0") == ""
    assert run_ids() == {"h2", "m10"}


def test_purge_never_loads_rows(db, django_assert_max_num_queries):
    """JSON too deep for Python, as another program may store it, does not stop a purge."""
    deep = {}
    for _ in range(1900):  # past Python's parser, within SQLite's JSON limit of 2000
        deep = {"a": deep}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        SkillRun.objects.create(
            id="deep",
            skill_id="s",
            inputs=deep,
            status="ok",
            started_at=datetime(2020, 1, 1, tzinfo=UTC),
        )
        SkillRunLog.objects.create(
            run_id="deep", sequence=1, event_type="step", payload=deep, created_at=timezone.now()
        )
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(RecursionError):
        SkillRun.objects.get(pk="deep")
    purge("--older-than", "1d", "--noinput")
    assert not SkillRun.objects.exists()
    assert not SkillRunLog.objects.exists()


# --- bad arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--older-than", "30d", "--before", "2024-01-01T00:00:00Z"], "not allowed with"),
        (["--older-than", "30"], "--older-than: '30' is not a duration"),
        (["--older-than", "thirty days"], "is not a duration"),
        (["--older-than", "0d"], "is zero"),
        (["--older-than", "0m"], "is zero"),
        (["--older-than=-5d"], "is negative"),
        (["--older-than", "-5d"], "--older-than: expected one argument"),
        (["--older-than", "99999999999d"], "too long"),
        (["--older-than", "999999w"], "before the year 1"),
        (["--before", "2024-13-01T00:00:00Z"], "not a valid date-time"),
        (["--before", "yesterday"], "not an ISO 8601 date-time"),
        (["--before", "2024-01-01"], "no time and no time zone"),
        (["--before", "2024-01-01T00:00:00"], "no time zone"),
        (["--before", "2024-01-01T00:00:00+25:00"], "not a valid date-time"),
        (["--before", "0001-01-01T00:00:00+01:00"], "out of range"),
        (["--before", "2999-01-01T00:00:00Z"], "in the future"),
        (["--batch-size", "0"], "--batch-size must be between 1 and"),
        (["--batch-size", "-1"], "--batch-size must be between 1 and"),
        (["--batch-size", "1000000"], "--batch-size must be between 1 and"),
        (["--batch-size", "many"], "invalid int value"),
        (["--workers", "0"], "--workers must be between 1 and"),
        (["--workers", "17"], "--workers must be between 1 and"),
        (["--workers", "two"], "invalid int value"),
    ],
)
def test_bad_arguments_are_command_errors(history, args, message):
    with pytest.raises(CommandError, match=message):
        purge(*args, "--noinput")
    assert len(run_ids()) == 4


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite refuses parallel workers")
def test_workers_on_sqlite_are_refused_with_the_reason(history):
    with pytest.raises(CommandError, match="--workers 2: parallel purge workers need PostgreSQL"):
        purge("--older-than", "30d", "--noinput", "--workers", "2")
    with pytest.raises(ValueError, match="need PostgreSQL"):
        purge_service.purge_started_before(timezone.now(), workers=2)
    assert len(run_ids()) == 4


# --- parallel workers (PostgreSQL) ---------------------------------------------------

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="parallel workers: PostgreSQL only"
)


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_parallel_workers_delete_exactly_the_runs_before_the_cutoff():
    cutoff = datetime(2024, 6, 1, tzinfo=UTC)
    # Many runs share one started_at: a range boundary falls among them.
    same_time = [(f"same-{i:04d}", cutoff - timedelta(days=1)) for i in range(700)]
    spread = [(f"old-{i:04d}", cutoff - timedelta(minutes=i + 1)) for i in range(1500)]
    at_cutoff = [("at-cutoff", cutoff)]
    kept = [(f"new-{i:03d}", cutoff + timedelta(minutes=i)) for i in range(30)]
    make_runs(same_time + spread + at_cutoff + kept)
    totals = []

    runs, logs = purge_service.purge_started_before(
        cutoff, batch_size=100, workers=3, on_batch=lambda r, n: totals.append((r, n))
    )

    doomed = len(same_time) + len(spread)
    assert (runs, logs) == (doomed, doomed * LOGS_PER_RUN)
    assert run_ids() == {"at-cutoff"} | {run_id for run_id, _ in kept}
    assert_only_whole_runs_remain(set())
    # Running totals over all workers: rising, ending at what was deleted.
    assert totals == sorted(totals)
    assert totals[-1] == (runs, logs)
    assert len(totals) >= doomed // 100


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_parallel_workers_with_few_runs_use_one_connection():
    make_runs([(f"r{i}", datetime(2020, 1, 1, tzinfo=UTC)) for i in range(5)])
    assert purge_service.purge_ranges(datetime(2021, 1, 1, tzinfo=UTC), 4, 100) == [
        (None, datetime(2021, 1, 1, tzinfo=UTC))
    ]
    out = purge("--before", "2021-01-01T00:00:00Z", "--noinput", "--workers", "4")
    assert "Deleted 5 run(s)" in out
    assert not SkillRun.objects.exists()


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_an_error_in_one_worker_stops_the_others_and_is_raised():
    cutoff = datetime(2024, 6, 1, tzinfo=UTC)
    make_runs([(f"old-{i:04d}", cutoff - timedelta(minutes=i + 1)) for i in range(2000)])
    calls = []

    def fail_on_the_third_batch(runs: int, logs: int) -> None:
        calls.append(runs)
        if len(calls) == 3:
            raise RuntimeError("progress output failed")

    with pytest.raises(RuntimeError, match="progress output failed"):
        purge_service.purge_started_before(
            cutoff, batch_size=20, workers=2, on_batch=fail_on_the_third_batch
        )
    remaining = SkillRun.objects.count()
    assert 1500 < remaining < 2000, "the other worker did not stop"
    assert_only_whole_runs_remain(set())
    # And the next purge finishes the job.
    runs, logs = purge_service.purge_started_before(cutoff, workers=2, batch_size=20)
    assert (runs, logs) == (remaining, remaining * LOGS_PER_RUN)
    assert not SkillRun.objects.exists()


# --- concurrency and kills -----------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL only")
@pytest.mark.django_db(transaction=True)
def test_an_append_racing_the_purge_neither_fails_it_nor_leaves_an_orphan():
    """An append that holds its run's lock while the purge starts commits a new log.

    The purge must wait for it and delete that log too; without the purge taking the row
    locks first, its run DELETE would hit the new log and the batch would fail.
    """
    old = timezone.now() - timedelta(days=10)
    make_runs([("racing", old)])
    locked = threading.Event()
    proceed = threading.Event()
    errors = []

    def append_holding_the_lock():
        try:
            with transaction.atomic():
                SkillRun.objects.select_for_update().get(pk="racing")
                locked.set()
                proceed.wait(10)
                SkillRunLog.objects.create(
                    run_id="racing", sequence=99, event_type="step", created_at=old
                )
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    appender = threading.Thread(target=append_holding_the_lock)
    appender.start()
    assert locked.wait(10)

    def let_the_append_commit():
        time.sleep(0.5)  # the purge is now waiting on the run's lock
        proceed.set()

    releaser = threading.Thread(target=let_the_append_commit)
    releaser.start()
    try:
        out = purge("--older-than", "1d", "--noinput")
    finally:
        proceed.set()
        releaser.join()
        appender.join()
    assert errors == []
    assert "Deleted 1 run(s) and 4 log event(s)" in out
    assert not SkillRun.objects.exists()
    assert not SkillRunLog.objects.exists()


def child_environment() -> dict[str, str]:
    """The environment that points a manage.py child at this test's database."""
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "skillaudit_site.settings_test"}
    env["SKILLAUDIT_DATA_DIR"] = str(settings.DATA_DIR)
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{Path(db['NAME']).resolve()}"
    else:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        env["DATABASE_URL"] = (
            f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    return env


def start_purge(cutoff: datetime, env: dict[str, str], workers: int = 1) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(BASE_DIR / "manage.py"),
            "purge_runs",
            "--noinput",
            "--before",
            cutoff.isoformat(),
            "--batch-size",
            "5",
            "--workers",
            str(workers),
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_only_whole_runs_remain(kept_ids: set[str]):
    orphans = SkillRunLog.objects.exclude(run__in=SkillRun.objects.all())
    assert orphans.count() == 0
    # A batch is one transaction: no run may be left with part of its logs.
    partial = SkillRun.objects.annotate(n=Count("logs")).exclude(n=LOGS_PER_RUN)
    assert list(partial.values_list("pk", flat=True)[:5]) == []
    assert kept_ids <= run_ids()


@pytest.mark.parametrize(
    "workers",
    [
        1,
        pytest.param(
            3,
            marks=pytest.mark.skipif(
                connection.vendor != "postgresql", reason="parallel workers: PostgreSQL only"
            ),
        ),
    ],
)
@pytest.mark.django_db(transaction=True)
def test_sigkill_midway_leaves_whole_runs_and_a_second_run_finishes(workers):
    cutoff = datetime(2024, 6, 1, tzinfo=UTC)
    doomed = [(f"old-{i:05d}", cutoff - timedelta(minutes=i + 1)) for i in range(6000)]
    kept = [(f"new-{i:03d}", cutoff + timedelta(minutes=i)) for i in range(50)]
    make_runs(doomed + kept)
    kept_ids = {run_id for run_id, _ in kept}
    env = child_environment()

    remaining = len(doomed)
    for kill in range(3):
        child = start_purge(cutoff, env, workers)
        try:
            # Wait until the child has committed a batch or two, then kill it mid-work.
            deadline = time.monotonic() + 60
            while SkillRun.objects.started_before(cutoff).count() >= remaining:
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the purge never started deleting"
                time.sleep(0.01)
            time.sleep(0.05 * kill)
            child.send_signal(signal.SIGKILL)
            child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL
        now_remaining = SkillRun.objects.started_before(cutoff).count()
        assert 0 < now_remaining < remaining, "the kill did not land mid-purge"
        remaining = now_remaining
        assert_only_whole_runs_remain(kept_ids)

    finish = start_purge(cutoff, env, workers)
    out, err = finish.communicate(timeout=300)
    assert finish.returncode == 0, err
    assert f"Deleted {remaining} run(s) and {remaining * LOGS_PER_RUN} log event(s)" in out
    assert not SkillRun.objects.started_before(cutoff).exists()
    assert run_ids() == kept_ids
    assert SkillRunLog.objects.count() == len(kept) * LOGS_PER_RUN
