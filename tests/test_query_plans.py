"""Every contract query is an index scan: no full scan and no sort of a whole table.

The queries, the EXPLAIN capture and the verdicts live in runs/query_catalog.py (shared with
bench/explain.py). A planner picks a full scan on a tiny table, so this module loads a
history big and skewed enough for the plans to be the ones of a real database first, and
empties the tables again when it is done.

On SQLite the plans are checked twice: without statistics (an embedded database that nobody
ANALYZEs: the planner's heuristics) and after ANALYZE. PostgreSQL gets VACUUM ANALYZE, as
autovacuum would do, so index-only scans can skip the heap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Max

from bench.query_catalog import QUERIES, Query, Sample, Statement, explain
from runs import contract
from runs.managers import LOGS_BY_MONTH, LogPartitions
from runs.models import SkillRun, SkillRunLog
from runs.services import history as generator
from runs.services import purge

# The data is loaded once per module, outside the tests' transactions; the mark makes
# pytest-django create the test database.
pytestmark = pytest.mark.django_db

RUNS = 30_000
END = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=90)
EVENTS = 3 * RUNS


def _load_history() -> None:
    """RUNS runs over 90 days from the project's one generator (runs.services.history):
    skewed skills, callers and channels, call trees, a skewed number of events per run,
    without the benchmark's fixture runs (a 10,000-event run and a 1,000-run tree would
    be most of a history this small). Loaded through the ORM: a few seconds."""
    generator.load(generator.History(RUNS, EVENTS, seed=2026, end=END, fixtures=False))


def _gather_statistics() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Maintenance, not a request: the site's 20 s statement_timeout cut the first
            # VACUUM on a machine busy with a 1M-run index build (load 5 on 2 cores).
            cursor.execute("SET statement_timeout = 0")
            cursor.execute(f"VACUUM ANALYZE {SkillRun._meta.db_table}")
            cursor.execute(f"VACUUM ANALYZE {SkillRunLog._meta.db_table}")
            # the stats buckets and the per-run model usage (migration 0012)
            for table in (
                "skill_run_stats",
                "skill_run_runtimes",
                "skill_run_model_usage",
                "skill_model_usage_stats",
            ):
                cursor.execute(f"VACUUM ANALYZE {table}")
            if LogPartitions().state() == "partitioned":  # the view is not vacuumed itself
                cursor.execute(f"VACUUM ANALYZE {LOGS_BY_MONTH}")
            cursor.execute("RESET statement_timeout")
        else:
            cursor.execute("ANALYZE")


def _forget_statistics() -> None:
    """SQLite: back to no statistics (sqlite_stat1 cannot be dropped, only emptied).

    PostgreSQL: fresh statistics, so later tests do not plan for rows that are gone.
    """
    if connection.vendor != "sqlite":
        _gather_statistics()
        return
    with connection.cursor() as cursor:
        if _has_stat1(cursor):
            cursor.execute("DELETE FROM sqlite_stat1")
        cursor.execute("ANALYZE sqlite_schema")  # reloads the (now empty) statistics


def _has_stat1(cursor) -> bool:
    cursor.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_stat1'")
    return bool(cursor.fetchone()[0])


@pytest.fixture(scope="module")
def history(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        assert not SkillRun.objects.exists(), "the test database must start empty"
        _load_history()
        try:
            yield
        finally:
            purge.purge_started_before(END + SPAN, batch_size=10_000)
            _forget_statistics()


# PostgreSQL always has statistics (autovacuum); an embedded SQLite file usually has none.
STATISTICS = ["no statistics", "analyzed"] if connection.vendor == "sqlite" else ["analyzed"]


@pytest.fixture(scope="module", params=STATISTICS)
def sample(request, history, django_db_blocker):
    with django_db_blocker.unblock():
        if request.param == "analyzed":
            _gather_statistics()
        else:
            _forget_statistics()
        yield Sample.from_database()


def _report(query: Query, statements: list[Statement]) -> str:
    parts = [f"{query.name} on {connection.vendor}: {len(statements)} statement(s)"]
    for number, statement in enumerate(statements, 1):
        parts.append(f"--- statement {number}: {statement.sql}\n    params: {statement.params}")
        parts.append(statement.plan)
        parts.extend(f"!!! {problem}" for problem in statement.problems)
    return "\n".join(parts)


@pytest.mark.parametrize("query", QUERIES, ids=[q.name for q in QUERIES])
def test_plan_is_an_index_scan(query, sample):
    statements = explain(query, sample)
    report = _report(query, statements)
    assert len(statements) == query.statement_count(connection.vendor), report
    assert not [p for s in statements for p in s.problems], report


def test_every_contract_query_has_a_plan_checked():
    """A new Storage method needs an entry in the catalog (start_run only inserts)."""
    methods = {name for name in vars(contract.Storage) if not name.startswith("_")}
    checked = {query.name.split(":")[0].split(" ")[0] for query in QUERIES}
    assert methods - checked == {"initialize", "start_run"}


def test_the_sample_reaches_the_data(sample):
    """The plans are only worth checking if each query finds rows to work on."""
    runs = SkillRun.objects
    assert 0 < runs.for_skill(sample.skill_id, True).count() < RUNS / 100
    assert runs.for_skill(sample.busy_skill_id).count() > RUNS / 20
    assert 0 < runs.for_caller(sample.caller_id).count() < RUNS / 100
    assert 0 < runs.filter(channel_id=sample.channel_id).count() < RUNS / 100
    assert runs.children_of(sample.parent_run_id).filter(pk=sample.nested_run_id).exists()
    assert SkillRunLog.objects.for_run(sample.run_id).exists()
    assert runs.started_before(sample.retention_cutoff).count() > RUNS / 4
    assert len(sample.skill_ids) == 51
    assert sample.purge_batch == RUNS * 2000 // 1_000_000


# Plans that must be refused, made by real queries on the same data: each check fails when
# the problem it names is missed.
BAD_PLANS = [
    (
        "filter on a column no index has",
        Query(
            "bad",
            lambda st, s: list(SkillRun.objects.filter(error="nothing like it").order_by()),
        ),
        "full scan",
    ),
    (
        "first page in an order no index gives",
        Query(
            "bad",
            lambda st, s: list(
                SkillRun.objects.filter(skill_id=s.busy_skill_id).order_by("runtime_seconds")[:50]
            ),
        ),
        "sort",
    ),
    (
        "newest first, filtered on a column no index has",
        Query(
            "bad",
            lambda st, s: list(SkillRun.objects.filter(error="nothing").newest_first()[:50]),
        ),
        "",
    ),
    (
        "last run per skill by GROUP BY",
        Query(
            "bad",
            lambda st, s: list(
                SkillRun.objects.filter(skill_id__in=s.skill_ids)
                .order_by()
                .values("skill_id")
                .annotate(Max("started_at"))
            ),
            shape="probe_per_skill",
        ),
        "probe",
    ),
    (
        "count that reads the table",
        Query(
            "bad",
            lambda st, s: SkillRun.objects.filter(skill_id=s.busy_skill_id, output="").count(),
            shape="index_only",
        ),
        "only",
    ),
]


@pytest.mark.parametrize(
    ("query", "expected"), [b[1:] for b in BAD_PLANS], ids=[b[0] for b in BAD_PLANS]
)
def test_the_checks_refuse_a_bad_plan(query, expected, sample):
    statements = explain(query, sample)
    found = [p for s in statements for p in s.problems]
    assert found, _report(query, statements)
    assert any(expected in p.lower() for p in found), _report(query, statements)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL proves the implication")
def test_sqlite_uses_the_children_index_only_with_the_repeated_predicate(sample):
    """Why children_of repeats "parent_run_id <> ''": without it the partial index is unused."""
    query = Query(
        "children without the repeated predicate",
        lambda st, s: list(SkillRun.objects.filter(parent_run_id=s.parent_run_id).oldest_first()),
    )
    statements = explain(query, sample)
    assert [p for s in statements for p in s.problems], _report(query, statements)
