"""Every contract query as the storage runs it, with its query plan (EXPLAIN) and a verdict.

tests/test_query_plans.py fails when a plan scans or sorts a whole table; bench/explain.py
prints the plans of any database. Each entry calls the real code (DjangoStorage or the
managers) and every statement it sends is explained with its own parameters, through a
connection execute wrapper, so what is checked is exactly what runs: no copy of a query
that could drift from the code, and counts, raw SQL and deletes are covered like the rest.
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

from . import contract
from .contract import RunFilter
from .models import SkillRun, SkillRunLog
from .storage import DjangoStorage

TABLES = frozenset({SkillRun._meta.db_table, SkillRunLog._meta.db_table})


@dataclasses.dataclass(frozen=True)
class Sample:
    """Argument values taken from the data, so every query finds rows to work on."""

    run_id: str  # the newest run
    skill_id: str  # the busiest recent skill: the longest per-skill scans
    caller_id: str
    channel_id: str
    nested_run_id: str  # a recent run that has a parent
    parent_run_id: str  # its parent, so it has at least one child
    skill_ids: tuple[str, ...]  # up to 50 recent skills and one that never ran
    cursor_at: datetime  # a keyset position in the middle of the recent runs
    cursor_id: str
    newest: datetime
    oldest: datetime

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

        def busiest(column: int) -> list[str]:
            return [value for value, _ in Counter(row[column] for row in rows).most_common()]

        middle = rows[len(rows) // 2]
        return cls(
            run_id=rows[0][0],
            skill_id=busiest(2)[0],
            caller_id=busiest(3)[0],
            channel_id=busiest(4)[0],
            nested_run_id=nested[0],
            parent_run_id=nested[5],
            skill_ids=(*busiest(2)[:50], "skill that never ran"),
            cursor_at=middle[1],
            cursor_id=middle[0],
            newest=rows[0][1],
            oldest=oldest,
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
    # Why a sort in this plan is bounded (few rows whatever the table size); empty: no sort
    # is allowed, the index must deliver the order.
    sort_ok: str = ""
    # SQLite names that are not tables (CTEs, subqueries), so scanning them is fine.
    derived: tuple[str, ...] = ()
    statements: int = 1
    shape: str = ""  # "" | "index_only" | "probe_per_skill"


class _FirstBatchDone(Exception):
    """Stops a purge after one batch: its statements repeat for every batch."""


def _first_purge_batch(storage: DjangoStorage, sample: Sample) -> None:
    def stop(runs: int, logs: int) -> None:
        raise _FirstBatchDone

    try:
        SkillRun.objects.db_manager(storage.using).purge_started_before(
            sample.retention_cutoff, on_batch=stop
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


def _filtered(**fields: Any) -> Callable[[DjangoStorage, Sample], Any]:
    """list_runs_filtered, first page; callables in fields are read from the sample."""

    def call(storage: DjangoStorage, sample: Sample) -> Any:
        values = {k: (v(sample) if callable(v) else v) for k, v in fields.items()}
        return storage.list_runs_filtered(RunFilter(**values), 0, contract.DEFAULT_LIMIT)

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

_DASHBOARD = RunFilter(top_level_only=True)


def _catalog() -> list[Query]:
    queries = [
        Query("get_run", lambda st, s: st.get_run(s.run_id)),
        Query("list_logs_by_run", lambda st, s: st.list_logs_by_run(s.run_id)),
        Query("list_runs_filtered: no filter", _filtered()),
        Query(
            "list_runs_filtered: no filter, dry runs included", _filtered(include_dry_run=True)
        ),
        Query("list_runs_filtered: dashboard default (top level)", _filtered(top_level_only=True)),
    ]
    for label, fields in _SINGLE_FILTERS.items():
        queries.append(Query(f"list_runs_filtered: {label}", _filtered(**fields)))
        queries.append(
            Query(
                f"list_runs_filtered: {label}, top level",
                _filtered(top_level_only=True, **fields),
            )
        )
    for label, f in [
        ("no filter", RunFilter()),
        ("top level", _DASHBOARD),
        ("status=error, top level", RunFilter(status=contract.STATUS_ERROR, top_level_only=True)),
    ]:
        queries.append(Query(f"keyset older page: {label}", _keyset("older", f)))
        queries.append(Query(f"keyset newer page: {label}", _keyset("newer", f)))
    queries += [
        Query(
            "list_runs_filtered: deep page (offset 1000), top level",
            lambda st, s: st.list_runs_filtered(_DASHBOARD, 1000, contract.DEFAULT_LIMIT),
        ),
        Query(
            "count_runs_by_skill",
            lambda st, s: st.count_runs_by_skill(s.skill_id, False),
            shape="index_only",
        ),
        Query(
            "count_runs_by_skill: dry runs included",
            lambda st, s: st.count_runs_by_skill(s.skill_id, True),
            shape="index_only",
        ),
        Query("list_runs_by_skill", lambda st, s: st.list_runs_by_skill(s.skill_id, 50)),
        Query(
            "list_runs_by_skill_paginated: offset 100",
            lambda st, s: st.list_runs_by_skill_paginated(s.skill_id, 100, 50, False),
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
            sort_ok="ORDER BY depth sorts the chain: at most 32 rows",
            derived=("chain",),
            statements=2,  # the recursive CTE for the ids, then the rows by primary key
        ),
        Query(
            "last_run_by_skills: ok only",
            lambda st, s: st.last_run_by_skills(s.skill_ids, False),
            derived=("k",),
            shape="probe_per_skill",
        ),
        Query(
            "last_run_by_skills: failed included",
            lambda st, s: st.last_run_by_skills(s.skill_ids, True),
            derived=("k",),
            shape="probe_per_skill",
        ),
        Query(
            "purge_older_than: one batch",
            _first_purge_batch,
            statements=3,  # the batch's ids, its logs, its runs
        ),
    ]
    return queries


QUERIES: list[Query] = _catalog()


@dataclasses.dataclass
class Statement:
    sql: str
    params: Any
    plan: str  # readable: PostgreSQL's text EXPLAIN, SQLite's query plan as a tree
    detail: Any  # what the checks read: PostgreSQL's JSON plan, SQLite's plan rows
    problems: list[str] = dataclasses.field(default_factory=list)


_EXPLAINABLE = re.compile(r"\s*(SELECT|WITH|DELETE|UPDATE)\b", re.IGNORECASE)


class _Explainer:
    """An execute wrapper: explains each statement with its parameters, then runs it."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self.statements: list[Statement] = []

    def __call__(self, execute, sql, params, many, context):
        if not many and _EXPLAINABLE.match(sql):
            self.statements.append(self._explain(context["cursor"].cursor, sql, params))
        return execute(sql, params, many, context)

    def _explain(self, cursor, sql: str, params: Any) -> Statement:
        if self.vendor == "postgresql":
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            detail = cursor.fetchone()[0]
            if isinstance(detail, str):
                detail = json.loads(detail)
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
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
    return "\n".join(lines)


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
    return _sqlite_problems(query, statement.detail)


# --- PostgreSQL ----------------------------------------------------------------------------
# A Seq Scan of an audit table reads every row, whatever the LIMIT; a Sort (or Incremental
# Sort) has to read every row that matches before it returns the first one, so on a list it
# grows with the table (a hot skill's runs, a year of history). Only entries that say why
# their input is bounded may sort. A Bitmap Heap Scan is an index scan; it is fine where no
# order is needed (counts, deletes) and it cannot feed a page without a Sort.

_INDEX_NODES = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Bitmap Index Scan"}


def _pg_nodes(node: dict, parent: dict | None = None):
    yield node, parent
    for child in node.get("Plans", []):
        yield from _pg_nodes(child, node)


def _pg_problems(query: Query, root: dict) -> list[str]:
    found = []
    for node, parent in _pg_nodes(root):
        kind = node["Node Type"]
        table = node.get("Relation Name")
        if kind == "Seq Scan" and table in TABLES:
            found.append(f"full scan of {table} (Seq Scan)")
        if kind in ("Sort", "Incremental Sort") and not query.sort_ok:
            found.append(f"{kind} of ~{node['Plan Rows']} rows: the index gives no order")
        if table in TABLES and query.shape == "index_only" and kind != "Index Only Scan":
            found.append(f"{kind} on {table}, not an Index Only Scan")
        if table in TABLES and query.shape == "probe_per_skill":
            probe = kind in ("Index Scan", "Index Only Scan") and "skill_id" in node.get(
                "Index Cond", ""
            )
            if not probe or parent is None or parent["Node Type"] != "Limit":
                found.append(
                    f"{kind} on {table} is not a LIMIT 1 index probe on skill_id:"
                    " it reads all of a skill's runs"
                )
        if table in TABLES and kind not in _INDEX_NODES | {"Seq Scan"}:
            found.append(f"unexpected {kind} on {table}")
    return found


# --- SQLite --------------------------------------------------------------------------------
# "SCAN t" without an index reads the whole table; "SCAN t USING [COVERING] INDEX i" walks an
# index in its order and stops at the LIMIT (the unfiltered feed), so it is fine. A temp
# B-tree for ORDER BY sorts every matching row (see the PostgreSQL note); an automatic index
# is built from a full scan; a temp B-tree for GROUP BY or DISTINCT reads every row too.

_SCAN = re.compile(r"^SCAN (\S+)(.*)$")


def _sqlite_problems(query: Query, rows: list[tuple[int, int, str]]) -> list[str]:
    found = []
    details = [detail for _node, _parent, detail in rows]
    for detail in details:
        scan = _SCAN.match(detail)
        if scan and "INDEX" not in scan.group(2) and detail != "SCAN CONSTANT ROW":
            if scan.group(1) not in query.derived:
                found.append(f"full scan: {detail}")
        if "AUTOMATIC" in detail:
            found.append(f"index built from a full scan: {detail}")
        if "TEMP B-TREE" in detail and ("ORDER BY" not in detail or not query.sort_ok):
            found.append(f"sort of every matching row: {detail}")
        name = detail.split(" ")[1] if detail.startswith(("SCAN ", "SEARCH ")) else None
        table_line = name is not None and name not in query.derived and name != "CONSTANT"
        if table_line and query.shape == "index_only" and "COVERING INDEX" not in detail:
            found.append(f"not index-only: {detail}")
        if table_line and query.shape == "probe_per_skill":
            if not (detail.startswith("SEARCH ") and "INDEX" in detail and "skill_id=?" in detail):
                found.append(f"not an index probe on skill_id: {detail}")
    if query.shape == "probe_per_skill" and "CORRELATED SCALAR SUBQUERY" not in " ".join(
        details
    ):
        found.append("no correlated subquery: the skills are not probed one by one")
    return found
