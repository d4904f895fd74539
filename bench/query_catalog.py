"""Every contract query as the storage runs it, with its query plan (EXPLAIN) and a verdict.

tests/test_query_plans.py fails when a plan scans or sorts a whole table; bench/explain.py
prints the plans of any database. Each entry calls the real code (DjangoStorage or the
managers) and every statement it sends is explained with its own parameters, through a
connection execute wrapper, so what is checked is exactly what runs: no copy of a query
that could drift from the code, and counts, raw SQL and deletes are covered like the rest.

What counts as a problem:
- a full scan of skill_runs or skill_run_logs (PostgreSQL "Seq Scan", SQLite "SCAN t" with
  no index, or an automatic index, which SQLite builds from a full scan);
- an index walked from one end with no index condition (PostgreSQL Index Scan without
  "Index Cond", SQLite "SCAN t USING INDEX"), except for the entries marked walk_ok: the
  unfiltered feeds, where most rows match and the LIMIT stops the walk after a page. A
  filtered query that walks an index reads all of it when the value is rare, so the
  filtered entries use rare values (for a busy value any plan stops early);
- a sort that has to read more than the rows it returns. A sort without a LIMIT orders
  exactly the rows the query returns (a run's events, a parent's children, the <= 32 rows
  of a chain): it costs what reading them costs, and it is fine. Under a LIMIT it reads
  every matching row to return the first N, which grows with the table (a hot skill's runs,
  a year of history): SQLite's plan does not depend on the value, so there a temp B-tree
  under a LIMIT always fails. PostgreSQL plans per value from its statistics and rightly
  sorts the few rows of a rare value (a bitmap index scan, then a top-N sort) rather than
  walk the ordered index; that passes when the sort's input is bounded by an index
  condition and estimated at most SMALL_SORT rows (well under a millisecond to sort).
Two entries check a shape as well: count_runs_by_skill must be index-only (it reads every
run of the skill), and last_run_by_skills one LIMIT 1 index probe on skill_id per skill (a
correlated subquery), never a read of all of a skill's runs.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction

from runs import contract, search
from runs.contract import RunFilter
from runs.managers import RunTransfer, SkillSummaryManager
from runs.models import (
    RunModelUsage,
    SkillRun,
    SkillRunCount,
    SkillRunLog,
    SkillRunStat,
    SkillSummary,
)
from runs.services import purge
from runs.storage import DjangoStorage

TABLES = frozenset(
    {SkillRun._meta.db_table, SkillRunLog._meta.db_table, SkillRunCount._meta.db_table}
    # the stats buckets and the per-run model usage (migration 0012)
    | {"skill_run_stats", "skill_run_runtimes", "skill_model_usage_stats", "skill_run_model_usage"}
)

# The purge deletes in batches of ids (2000 by default): 0.2% of a reference table of 1M runs.
PURGE_BATCH = purge.DEFAULT_BATCH_SIZE
REFERENCE_RUNS = 1_000_000


@dataclasses.dataclass(frozen=True)
class Sample:
    """Argument values taken from the data, so every query finds rows to work on."""

    run_id: str  # the newest run
    skill_id: str  # a rare recent skill: only its index finds its runs quickly
    busy_skill_id: str  # the busiest recent skill: the longest count
    caller_id: str  # rare
    channel_id: str  # rare
    nested_run_id: str  # a recent run that has a parent
    parent_run_id: str  # its parent, so it has at least one child
    skill_ids: tuple[str, ...]  # up to 50 recent skills and one that never ran
    page_ids: tuple[str, ...]  # a list page: the 50 newest runs and a run with children
    cursor_at: datetime  # a keyset position in the middle of the recent runs
    cursor_id: str
    newest: datetime
    oldest: datetime
    purge_batch: int

    @classmethod
    def from_database(cls, using: str = "default", recent: int = 2000) -> Sample:
        runs = SkillRun.objects.db_manager(using)
        rows = list(
            runs.newest_first().values_list(
                "id", "started_at", "skill_id", "caller_id", "channel_id", "parent_run_id"
            )[:recent]
        )
        if not rows:
            raise ValueError(f"database {using!r} holds no runs: load some history first")
        oldest = runs.oldest_first().values_list("started_at", flat=True)[0]
        nested = next((row for row in rows if row[5]), rows[0])

        def by_frequency(column: int) -> list[str]:
            """Values of a column in the recent runs, the most frequent first."""
            return [value for value, _ in Counter(row[column] for row in rows).most_common()]

        middle = rows[len(rows) // 2]
        skills = by_frequency(2)
        return cls(
            run_id=rows[0][0],
            skill_id=skills[-1],
            busy_skill_id=skills[0],
            caller_id=by_frequency(3)[-1],
            channel_id=by_frequency(4)[-1],
            nested_run_id=nested[0],
            parent_run_id=nested[5],
            skill_ids=(*skills[:50], "skill that never ran"),
            page_ids=(*(row[0] for row in rows[:50]), nested[5]),
            cursor_at=middle[1],
            cursor_id=middle[0],
            newest=rows[0][1],
            oldest=oldest,
            # A batch of 2000 ids is 7% of a 30k-run table, where reading the whole table is
            # rightly cheaper: keep the batch the share of the table it is at 1M runs.
            purge_batch=max(1, min(PURGE_BATCH, runs.count() * PURGE_BATCH // REFERENCE_RUNS)),
        )

    @property
    def day_ago(self) -> datetime:
        return self.newest - timedelta(days=1)

    @property
    def week_ago(self) -> datetime:
        return self.newest - timedelta(days=7)

    @property
    def retention_cutoff(self) -> datetime:
        """Where a retention purge would cut: a third of the history is older."""
        return self.oldest + (self.newest - self.oldest) / 3


@dataclasses.dataclass(frozen=True)
class Query:
    name: str
    call: Callable[[DjangoStorage, Sample], Any]
    walk_ok: bool = False  # an unfiltered feed: walking an index until the LIMIT is right
    # SQLite names that are not tables (CTEs, subqueries), so scanning them is fine.
    derived: tuple[str, ...] = ()
    statements: int = 1
    # "" | "index_only" | "probe_per_skill" | "aggregate" (groups an index range: sorting
    # or hashing the range's rows to group them is the point)
    shape: str = ""
    writes: bool = False  # rolled back, but it locks rows while it runs
    # When SQLite sends another number of statements (a search's fts5vocab row counts).
    sqlite_statements: int | None = None

    def statement_count(self, vendor: str) -> int:
        if vendor == "sqlite" and self.sqlite_statements is not None:
            return self.sqlite_statements
        return self.statements


class _FirstBatchDone(Exception):
    """Stops a purge after one batch: its statements repeat for every batch."""


def _first_purge_batch(storage: DjangoStorage, sample: Sample) -> None:
    def stop(runs: int, logs: int) -> None:
        raise _FirstBatchDone

    try:
        purge.purge_started_before(
            sample.retention_cutoff,
            batch_size=sample.purge_batch,
            on_batch=stop,
            using=storage.using,
        )
    except _FirstBatchDone:
        pass


def _keyset(direction: str, f: RunFilter) -> Callable[[DjangoStorage, Sample], Any]:
    """The dashboard's keyset pages: older_than newest first, newer_than oldest first."""

    def call(storage: DjangoStorage, sample: Sample) -> Any:
        runs = SkillRun.objects.db_manager(storage.using).matching(contract.clean_filter(f))
        if direction == "older":
            qs = runs.older_than(sample.cursor_at, sample.cursor_id).newest_first()
        else:
            qs = runs.newer_than(sample.cursor_at, sample.cursor_id).oldest_first()
        return list(qs[: contract.DEFAULT_LIMIT])

    return call


def _filtered(offset: int = 0, **fields: Any) -> Callable[[DjangoStorage, Sample], Any]:
    """List_runs_filtered; callables in fields are read from the sample."""

    def call(storage: DjangoStorage, sample: Sample) -> Any:
        values = {k: (v(sample) if callable(v) else v) for k, v in fields.items()}
        return storage.list_runs_filtered(RunFilter(**values), offset, contract.DEFAULT_LIMIT)

    return call


def _counted(**fields: Any) -> Callable[[DjangoStorage, Sample], Any]:
    def call(storage: DjangoStorage, sample: Sample) -> Any:
        values = {k: (v(sample) if callable(v) else v) for k, v in fields.items()}
        return storage.count_runs_filtered(RunFilter(**values))

    return call


_SINGLE_FILTERS: dict[str, dict[str, Any]] = {
    "status=error": {"status": contract.STATUS_ERROR},
    "status=running": {"status": contract.STATUS_RUNNING},
    "status=dry_run": {"status": contract.STATUS_DRY_RUN},
    "skill": {"skill_id": lambda s: s.skill_id},
    "caller": {"caller_id": lambda s: s.caller_id},
    "channel": {"channel_id": lambda s: s.channel_id},
    "since a day ago": {"since": lambda s: s.day_ago},
    "until a week ago": {"until": lambda s: s.week_ago},
    "since a week ago until a day ago": {
        "since": lambda s: s.week_ago,
        "until": lambda s: s.day_ago,
    },
}


def _catalog() -> list[Query]:
    queries = [
        Query(
            "finish_run",
            lambda st, s: st.finish_run(s.run_id, contract.RunStats(status=contract.STATUS_OK)),
            writes=True,
        ),
        Query(
            "append_log",  # locks the run by primary key, then inserts (not explained)
            lambda st, s: st.append_log(contract.SkillRunLog(run_id=s.run_id, sequence=10**9)),
            writes=True,
        ),
        Query("get_run", lambda st, s: st.get_run(s.run_id)),
        Query("list_logs_by_run", lambda st, s: st.list_logs_by_run(s.run_id)),
        Query("list_runs_filtered: no filter", _filtered(), walk_ok=True),
        Query(
            "list_runs_filtered: no filter, dry runs included",
            _filtered(include_dry_run=True),
            walk_ok=True,
        ),
        Query(
            "list_runs_filtered: dashboard default (top level)",
            _filtered(top_level_only=True),
            walk_ok=True,
        ),
        Query(
            "list_runs_filtered: dashboard default, offset 1000",
            _filtered(offset=1000, top_level_only=True),
            walk_ok=True,
        ),
    ]
    for label, fields in _SINGLE_FILTERS.items():
        queries.append(Query(f"list_runs_filtered: {label}", _filtered(**fields)))
        queries.append(
            Query(
                f"list_runs_filtered: {label}, top level",
                _filtered(top_level_only=True, **fields),
            )
        )
    # An exact count of an unfiltered or broad filter reads every matching row whatever the
    # index (the dashboard shows a bounded count for that); selective filters must probe.
    for label in ("status=running", "skill", "caller", "channel", "since a day ago"):
        queries.append(Query(f"count_runs_filtered: {label}", _counted(**_SINGLE_FILTERS[label])))
    for label, f in [
        ("no filter", RunFilter()),
        ("top level", RunFilter(top_level_only=True)),
        ("status=error, top level", RunFilter(status=contract.STATUS_ERROR, top_level_only=True)),
    ]:
        queries.append(Query(f"keyset older page: {label}", _keyset("older", f)))
        queries.append(Query(f"keyset newer page: {label}", _keyset("newer", f)))
    queries += [
        Query(
            "count_runs_by_skill (busiest skill)",
            lambda st, s: st.count_runs_by_skill(s.busy_skill_id, False),
            shape="index_only",
        ),
        Query(
            "count_runs_by_skill (busiest skill), dry runs included",
            lambda st, s: st.count_runs_by_skill(s.busy_skill_id, True),
            shape="index_only",
        ),
        Query("list_runs_by_skill", lambda st, s: st.list_runs_by_skill(s.skill_id, 50)),
        Query(
            "list_runs_by_skill_paginated: offset 10",
            lambda st, s: st.list_runs_by_skill_paginated(s.skill_id, 10, 50, False),
        ),
        Query(
            "list_runs_by_skill_paginated: dry runs included",
            lambda st, s: st.list_runs_by_skill_paginated(s.skill_id, 0, 50, True),
        ),
        Query("list_runs_by_caller", lambda st, s: st.list_runs_by_caller(s.caller_id, 50)),
        Query(
            "list_children_by_parent",
            lambda st, s: st.list_children_by_parent(s.parent_run_id),
        ),
        Query(
            "list_finished_runs_before",
            lambda st, s: st.list_finished_runs_before(s.retention_cutoff, 500),
        ),
        Query(
            "walk_parent_chain",
            lambda st, s: st.walk_parent_chain(s.nested_run_id),
            derived=("chain",),
            statements=2,  # the recursive CTE for the ids, then the rows by primary key
        ),
        Query(
            "last_run_by_skills: ok only",
            lambda st, s: st.last_run_by_skills(s.skill_ids, False),
            derived=("k", "json_each"),  # the skill ids: the parameter's list
            shape="probe_per_skill",
        ),
        Query(
            "last_run_by_skills: failed included",
            lambda st, s: st.last_run_by_skills(s.skill_ids, True),
            derived=("k", "json_each"),  # the skill ids: the parameter's list
            shape="probe_per_skill",
        ),
        # The dashboard's own queries (runs/web/views.py), beside the contract's.
        Query(
            "dashboard: run list page with previews",
            lambda st, s: list(
                SkillRun.objects.db_manager(st.using)
                .matching(RunFilter(top_level_only=True))
                .newest_first()
                .summaries()[:51]
            ),
            walk_ok=True,
        ),
        Query(
            "dashboard: which runs of a page have children",
            lambda st, s: SkillRun.objects.db_manager(st.using).ids_with_children(s.page_ids),
        ),
        Query(
            "dashboard: bounded count of the default list",
            lambda st, s: (
                SkillRun.objects.db_manager(st.using)
                .matching(RunFilter(top_level_only=True))
                .bounded_count(1000)
            ),
            walk_ok=True,
            derived=("subquery",),
        ),
        Query(
            "dashboard: call tree under a run (recursive, capped)",
            lambda st, s: list(
                SkillRun.objects.db_manager(st.using).call_tree(s.parent_run_id, 2000)
            ),
            derived=("tree",),
        ),
        Query(
            "dashboard: run page timeline",
            lambda st, s: list(
                SkillRunLog.objects.db_manager(st.using).for_run(s.run_id).timeline()[:201]
            ),
        ),
        # The skills page: a range of one of skill_summaries' sort indexes (walking it
        # from the top is right: the LIMIT stops after a page), then the page's skills'
        # counts from skill_run_counts, and their sparklines' day buckets.
        *(
            Query(
                f"skills page: a page of skills by {sort}",
                lambda st, s, sort=sort: SkillSummary.objects.db_manager(st.using).page(
                    sort, 0, 100
                ),
                walk_ok=True,
            )
            for sort in SkillSummaryManager.SORT_COLUMNS
        ),
        # Counting the skills reads every summary row (one per skill, ~40 bytes), and
        # SQLite may scan the table for it: 20,000 skills are ~1 ms (bench/RESULTS.md), so
        # this one scan is allowed; skill_runs and its counts are still never scanned.
        Query(
            "skills page: how many skills",
            lambda st, s: SkillSummary.objects.db_manager(st.using).count(),
            walk_ok=True,
            derived=("skill_summaries",),
        ),
        Query(
            "skills page: a page's status counts of the last week and day (summed buckets)",
            lambda st, s: SkillRunCount.objects.db_manager(st.using).by_skill_and_status(
                s.week_ago, s.day_ago, skill_ids=s.skill_ids
            ),
            derived=("parts", "json_each"),  # json_each: the page's skill ids (SQLite)
            statements=2,  # one per window
            shape="aggregate",
        ),
        Query(
            "skills page: a page's sparklines (day buckets of its skills)",
            lambda st, s: SkillRunCount.objects.db_manager(st.using).days_by_skill(
                s.week_ago, s.skill_ids
            ),
        ),
        Query(
            "purge_older_than: one batch",
            _first_purge_batch,
            statements=3,  # the batch's ids, its logs, its runs
            writes=True,
        ),
        # Export (runs.services.export): keyset batches of whole rows in list order, and
        # a batch's events by run and sequence.
        Query(
            "export: first batch of every run",
            lambda st, s: _first_batch(st, SkillRun.objects.all()),
            walk_ok=True,
        ),
        Query(
            "export: first batch of a skill's top-level runs",
            lambda st, s: _first_batch(
                st, SkillRun.objects.matching(RunFilter(skill_id=s.skill_id, top_level_only=True))
            ),
        ),
        Query(
            "export: a batch's events",
            lambda st, s: RunTransfer(st.using).log_rows([s.run_id], 20_000),
        ),
        # The run list's failed=1: the failure partial indexes walked newest
        # first, every entry a match (their condition is the filter).
        Query(
            "run list: failed=1 (top level)",
            lambda st, s: list(
                SkillRun.objects.db_manager(st.using)
                .matching(RunFilter(top_level_only=True))
                .failed()
                .newest_first()
                .values_list("id", flat=True)[:51]
            ),
            walk_ok=True,
        ),
        Query(
            "run list: failed=1 (nested too)",
            lambda st, s: list(
                SkillRun.objects.db_manager(st.using)
                .matching(RunFilter())
                .failed()
                .newest_first()
                .values_list("id", flat=True)[:51]
            ),
            walk_ok=True,
        ),
    ]
    queries += _search_queries()
    queries += _stats_queries()
    return queries


def _search_page(
    q: Callable[[Sample], str], **fields: Any
) -> Callable[[DjangoStorage, Sample], Any]:
    """The run list's search (runs/web/views.py): the newest page of the runs matching q."""

    def call(storage: DjangoStorage, sample: Sample) -> Any:
        values = {k: (v(sample) if callable(v) else v) for k, v in fields.items()}
        return list(
            SkillRun.objects.db_manager(storage.using)
            .matching(RunFilter(top_level_only=True, **values))
            .searching(search.parse(q(sample)))
            .newest_first()
            .summaries()[:51]
        )

    return call


# The search's FTS5 tables (SQLite): read through their own index (MATCH, rowid, term); a
# read with no constraint is caught on its own ("full scan of a search table").
_FTS_TABLES = (
    "skill_run_search_runs",
    "skill_run_search_logs",
    "skill_run_search_runs_vocab",
    "skill_run_search_logs_vocab",
)


def _search_queries() -> list[Query]:
    """The search (runs.search, SkillRunQuerySet.searching): a clause in at most
    SEARCH_SET_LIMIT indexed rows drives from its index entries and sorts its runs (shape
    match_set: that sort is bounded by the limit); a commoner one walks the list's index
    newest first, probing each run, until the page is full (walk_ok). Which one a word
    gets depends on the history's size, so the common words accept both; a full scan of a
    table fails either way. SQLite first reads each word's row count in
    the fts5vocab tables (one statement per word and table); PostgreSQL asks its planner
    (EXPLAIN, not counted). The rare word is the newest run's id: in its own text only."""
    return [
        Query(
            "search: rare word",
            _search_page(lambda s: s.run_id),
            derived=_FTS_TABLES,
            shape="match_set",
            sqlite_statements=3,
        ),
        Query(
            "search: rare word + skill filter",
            _search_page(lambda s: s.run_id, skill_id=lambda s: s.busy_skill_id),
            derived=_FTS_TABLES,
            shape="match_set",
            sqlite_statements=3,
        ),
        Query(
            "search: common word",
            _search_page(lambda s: "agent"),
            walk_ok=True,
            shape="match_set",
            derived=_FTS_TABLES,
            sqlite_statements=3,
        ),
        Query(
            "search: common phrase",
            _search_page(lambda s: '"token expired"'),
            walk_ok=True,
            shape="match_set",
            derived=_FTS_TABLES,
            sqlite_statements=5,
        ),
        Query(
            "search: common word, a rare one excluded",
            _search_page(lambda s: f"agent -{s.run_id}"),
            walk_ok=True,
            shape="match_set",
            derived=_FTS_TABLES,
            sqlite_statements=3,
        ),
        Query(
            "search: snippets of a page (rare word)",
            lambda st, s: SkillRun.objects.db_manager(st.using).search_sources(
                s.page_ids[:50], search.parse(s.run_id)
            ),
            derived=(*_FTS_TABLES, "r", "x"),
            shape="match_set",
            statements=2,  # the runs' text heads, then the other runs' first matching event
            sqlite_statements=4,  # heads, the word's two row counts, events by its entries
        ),
    ]


def _first_batch(storage: DjangoStorage, matching) -> list:
    batches = RunTransfer(storage.using).run_batches(matching, 2000)
    return next(batches, [])


def _stats_queries() -> list[Query]:
    """/stats/ and GET /api/stats/ (SkillRunStatManager.bucket_rows): from the buckets, five
    grouped reads (runs, runtimes and usage per period from the all-skills tables; runs and
    usage per skill), each a range of its table's key (span, period_start, ...); with a
    caller filter (the exact path), a range of the caller's top-level index, the usage by
    run id. And the list's cost column: a page of runs' usage rows by their key."""

    def buckets(**filters: Any) -> Callable[[DjangoStorage, Sample], Any]:
        def call(storage: DjangoStorage, sample: Sample) -> Any:
            values = {k: (v(sample) if callable(v) else v) for k, v in filters.items()}
            since = (sample.newest - timedelta(days=30)).replace(hour=0, minute=0, second=0)
            return SkillRunStat.objects.db_manager(storage.using).bucket_rows(
                "day", since, sample.newest, **values
            )

        return call

    # SQLite's names for the reads' CTEs and subqueries (the percentile's running counts
    # over the summed histogram, p: the periods' histogram read once, the UNION ALL that
    # stands for GROUPING SETS): derived rows,
    # not tables.
    # t and r: the page's ranking of the skills (their totals, their ranks).
    derived = ("h", "c", "p", "s", "t", "r", "x", *(f"(subquery-{n})" for n in range(1, 40)))
    return [
        Query(
            "stats: 30 days by day (buckets)",
            buckets(),
            statements=5,
            shape="aggregate",
            derived=derived,
        ),
        Query(
            "stats: 30 days by day, the page's first 20 skills (buckets)",
            buckets(skill_limit=20),
            statements=5,
            shape="aggregate",
            derived=derived,
        ),
        Query(
            "stats: 30 days by day, one skill (buckets)",
            buckets(skill_id=lambda s: s.skill_id),
            statements=5,
            shape="aggregate",
            derived=derived,
        ),
        Query(
            "stats: 30 days by day, a caller (from the runs)",
            buckets(caller_id=lambda s: s.caller_id),
            statements=3,
            shape="aggregate",
            derived=derived,
        ),
        Query(
            "skills page cost: a page of skills' 7 days of model usage",
            lambda st, s: SkillRunStat.objects.db_manager(st.using).skill_usage(
                "day",
                (s.newest - timedelta(days=7)).replace(hour=0, minute=0, second=0),
                s.newest,
                [s.skill_id],
            ),
            shape="aggregate",
            derived=derived,
        ),
        Query(
            "cost column: a page of runs' model usage",
            lambda st, s: RunModelUsage.objects.db_manager(st.using).for_runs(s.page_ids),
        ),
    ]


QUERIES: list[Query] = _catalog()


@dataclasses.dataclass
class Statement:
    sql: str
    params: Any
    plan: str  # readable: PostgreSQL's text EXPLAIN, SQLite's query plan as a tree
    detail: Any  # what the checks read: PostgreSQL's JSON plan, SQLite's plan rows
    problems: list[str] = dataclasses.field(default_factory=list)


_EXPLAINABLE = re.compile(r"\s*(SELECT|WITH|DELETE|UPDATE)\b", re.IGNORECASE)
# Lookups in the system catalogs (is skill_run_logs partitioned?) read no table of ours:
# they are not the query's statements and have no plan worth checking.
_SYSTEM_CATALOG = re.compile(r"\bFROM\s+pg_(class|namespace|inherits|partitioned_table)\b", re.I)


class _Explainer:
    """An execute wrapper: explains each statement with its parameters, then runs it."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self.statements: list[Statement] = []

    def __call__(self, execute, sql, params, many, context):
        if not many and _EXPLAINABLE.match(sql) and not _SYSTEM_CATALOG.search(sql):
            self.statements.append(self._explain(context["cursor"].cursor, sql, params))
        return execute(sql, params, many, context)

    def _explain(self, cursor, sql: str, params: Any) -> Statement:
        if self.vendor == "postgresql":
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            detail = cursor.fetchone()[0]
            if isinstance(detail, str):
                detail = json.loads(detail)
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(_collapse([row[0] for row in cursor.fetchall()]))
            return Statement(sql, params, plan, detail)
        if self.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params if params is not None else ())
            rows = [(row[0], row[1], row[3]) for row in cursor.fetchall()]
            return Statement(sql, params, _sqlite_tree(rows), rows)
        raise NotImplementedError(f"no plan reader for {self.vendor}")


def _sqlite_tree(rows: list[tuple[int, int, str]]) -> str:
    depth = {0: -1}
    lines = []
    for node, parent, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return "\n".join(_collapse(lines))


def _collapse(lines: list[str]) -> list[str]:
    """Repeated lines or pairs of lines shown once: the last-run query's one constant row
    per skill (UNION ALL), fifty times over."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        for size in (1, 2):
            block = lines[i : i + size]
            n = 1
            while lines[i + n * size : i + (n + 1) * size] == block:
                n += 1
            if n > 2:
                indent = block[0][: len(block[0]) - len(block[0].lstrip())]
                out += [*block, f"{indent}... and {n - 1} more times the same"]
                i += n * size
                break
        else:
            out.append(lines[i])
            i += 1
    return out


def explain(query: Query, sample: Sample, using: str = "default") -> list[Statement]:
    """Run one query in a transaction that is rolled back; its statements, plans, problems."""
    connection = connections[using]
    explainer = _Explainer(connection.vendor)
    with transaction.atomic(using=using), connection.execute_wrapper(explainer):
        query.call(DjangoStorage(using), sample)
        transaction.set_rollback(True, using=using)
    for statement in explainer.statements:
        statement.problems = problems(query, connection.vendor, statement)
    return explainer.statements


def problems(query: Query, vendor: str, statement: Statement) -> list[str]:
    if vendor == "postgresql":
        return _pg_problems(query, statement.detail[0]["Plan"])
    return _sqlite_problems(query, statement.sql, statement.detail)


# --- PostgreSQL ----------------------------------------------------------------------------

_TABLE_NODES = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan", "ModifyTable", "Seq Scan"}
_TOP_N = {"Limit", "Aggregate", "Unique", "SetOp", "WindowAgg"}  # keep less than they read
SMALL_SORT = 1000


def _pg_nodes(node: dict, ancestors: tuple[dict, ...] = ()):
    yield node, ancestors
    for child in node.get("Plans", []):
        yield from _pg_nodes(child, (*ancestors, node))


def _pg_table(node: dict) -> str | None:
    """The table a plan node reads; a month partition of the logs (manage.py
    partition_history) counts as skill_run_logs itself."""
    name = node.get("Relation Name")
    if name and name.startswith(f"{SkillRunLog._meta.db_table}_"):
        return SkillRunLog._meta.db_table
    return name


def _pg_empty_partition(node: dict) -> bool:
    """A Seq Scan of a month partition with no pages (a month ahead, not yet written:
    costed below one page read, seq_page_cost = 1): it reads nothing, and the planner
    rightly prefers it to an index."""
    return (
        node["Node Type"] == "Seq Scan"
        and node.get("Relation Name") != _pg_table(node)
        and node.get("Total Cost", 1) < 1
    )


def _pg_unbounded(node: dict) -> bool:
    """Whether a plan reads one of the tables with no index condition."""
    for scan, _ in _pg_nodes(node):
        if _pg_empty_partition(scan):
            continue
        if _pg_table(scan) in TABLES and scan["Node Type"] != "ModifyTable":
            if "Index Cond" not in scan and "Recheck Cond" not in scan:
                return True
    return False


def _pg_problems(query: Query, root: dict) -> list[str]:
    found = []
    for node, ancestors in _pg_nodes(root):
        kind = node["Node Type"]
        table = _pg_table(node)
        parent = ancestors[-1] if ancestors else None
        if kind in ("Sort", "Incremental Sort"):
            top_n = {a["Node Type"] for a in ancestors} & _TOP_N
            if _pg_unbounded(node):
                found.append(f"{kind} of rows read with no index condition")
            elif (
                top_n
                and node["Plan Rows"] > SMALL_SORT
                and query.shape != "match_set"
                # an aggregate groups (or runs counts over) its whole index range: that
                # sort is the point, unless a LIMIT then keeps a few of the groups
                and not (query.shape == "aggregate" and "Limit" not in top_n)
            ):
                found.append(
                    f"{kind} of ~{node['Plan Rows']} rows under {'/'.join(sorted(top_n))}:"
                    " every matching row is read to return a few"
                )
        if table not in TABLES or _pg_empty_partition(node):
            continue
        if kind == "Seq Scan":
            found.append(f"full scan of {table} (Seq Scan)")
        elif kind not in _TABLE_NODES:
            found.append(f"unexpected {kind} on {table}")
        index_scan = kind in ("Index Scan", "Index Only Scan")
        if index_scan and "Index Cond" not in node and not query.walk_ok:
            found.append(
                f"{kind} using {node.get('Index Name')} walks the index with no index"
                f" condition (Filter: {node.get('Filter', '-')})"
            )
        if query.shape == "index_only" and kind != "Index Only Scan":
            found.append(f"{kind} on {table}, not an Index Only Scan")
        if query.shape == "probe_per_skill":
            probe = index_scan and "skill_id" in node.get("Index Cond", "")
            if not probe or parent is None or parent["Node Type"] != "Limit":
                found.append(
                    f"{kind} on {table} is not a LIMIT 1 index probe on skill_id:"
                    " it reads all of a skill's runs"
                )
    return found


# --- SQLite --------------------------------------------------------------------------------

_LIMITED = re.compile(r"\bLIMIT\b", re.IGNORECASE)


def _sqlite_problems(query: Query, sql: str, rows: list[tuple[int, int, str]]) -> list[str]:
    found = []
    details = [detail for _node, _parent, detail in rows]
    for detail in details:
        if "AUTOMATIC" in detail:
            found.append(f"index built from a full scan: {detail}")
        grouping = query.shape == "aggregate" and "GROUP BY" in detail
        # A search's match set (runs.managers.SEARCH_SET_LIMIT bounds it) is sorted newest
        # first, or grouped by run (the snippets' first matching events).
        match_set = query.shape == "match_set" and ("ORDER BY" in detail or "GROUP BY" in detail)
        if (
            "TEMP B-TREE" in detail
            and not grouping
            and not match_set
            and ("ORDER BY" not in detail or _LIMITED.search(sql))
        ):
            found.append(f"sort of every matching row: {detail}")
        if detail.endswith("VIRTUAL TABLE INDEX 0:"):
            # A search's FTS5 or fts5vocab table read with no MATCH, rowid or term.
            found.append(f"full scan of a search table: {detail}")
        words = detail.split(" ")
        if words[0] not in ("SCAN", "SEARCH") or words[1] in query.derived:
            continue
        if detail == "SCAN CONSTANT ROW":
            continue
        if words[0] == "SCAN" and "INDEX" not in detail:
            found.append(f"full scan: {detail}")
        elif words[0] == "SCAN" and not query.walk_ok:
            found.append(f"walks a whole index with no condition: {detail}")
        if query.shape == "index_only" and "COVERING INDEX" not in detail:
            found.append(f"not index-only: {detail}")
        if query.shape == "probe_per_skill":
            if not (words[0] == "SEARCH" and "INDEX" in detail and "(skill_id=?" in detail):
                found.append(f"not an index probe on skill_id: {detail}")
    if query.shape == "probe_per_skill" and not any(
        d.startswith("CORRELATED SCALAR SUBQUERY") for d in details
    ):
        found.append("no correlated subquery: the skills are not probed one by one")
    return found
