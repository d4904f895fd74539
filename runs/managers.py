"""Every read and write of the audit tables, as QuerySet and Manager methods.

Views, the API, the admin, commands and DjangoStorage call these; none of them builds a
filter or writes SQL of its own. The raw statements below are here because the ORM cannot
express them as one index probe each (the parent-chain walk, the last-run probes) or as one
statement at all (the skills page's counts, the rebuild of the run counts).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson
from django.db import IntegrityError, connections, models, transaction
from django.db.models import F, Q, TextField
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Length, Substr
from django.dispatch import Signal
from django.utils.dateparse import parse_datetime

from . import contract, costs

# What run lists select: everything but the big inputs/output/error columns.
SUMMARY_FIELDS = (
    "id",
    "skill_id",
    "caller_id",
    "channel_id",
    "started_at",
    "finished_at",
    "status",
    "tool_calls_count",
    "runtime_seconds",
    "parent_run_id",
    "total_input_tokens",
    "total_output_tokens",
    "total_thinking_tokens",
    "failed_tools",
    "failed_descendants",
)
PREVIEW_CHARS = 160
# OTLP ingest's run ids: "otlp-" + 32 hex digits of trace id + "-" + 16 of span id.
OTLP_RUN_PREFIX = "otlp-"
OTLP_RUN_ID_LENGTH = len(OTLP_RUN_PREFIX) + 32 + 1 + 16

# A failed run for the list's failed=1 filter: it failed, a tool of it failed, or a run
# below it failed. The text of migration 0010's partial indexes, literal values and all:
# SQLite uses a partial index only for a query that repeats its condition (a bound
# parameter in place of 'error' does not match), so FailedRun writes exactly this.
FAILED_STATUSES_SQL = "(" + ", ".join(f"'{s}'" for s in contract.FAILED_STATUSES) + ")"


class FailedRun(models.Expression):
    """WHERE condition: the run failed, one of its tools failed, or a descendant failed."""

    conditional = True
    output_field = models.BooleanField()

    def as_sql(self, compiler, connection):
        return (
            f"(status IN {FAILED_STATUSES_SQL} OR failed_tools > 0 OR failed_descendants > 0)",
            [],
        )


class SkillRunQuerySet(models.QuerySet):
    def newest_first(self):
        return self.order_by("-started_at", "-id")

    def oldest_first(self):
        return self.order_by("started_at", "id")

    def page(self, offset: int, limit: int):
        offset = contract.clamp_offset(offset)
        return self[offset : offset + contract.clamp_limit(limit)]

    def hiding_dry_runs(self, include_dry_run: bool = False, status: str = ""):
        """The contract's dry-run rule: hidden unless asked for or the status is explicit."""
        if include_dry_run or status:
            return self
        return self.exclude(status=contract.STATUS_DRY_RUN)

    def matching(self, f: contract.RunFilter):
        """Runs that match a contract RunFilter (the one filter of every interface)."""
        qs = self.hiding_dry_runs(f.include_dry_run, f.status)
        if f.status:
            qs = qs.filter(status=f.status)
        if f.skill_id:
            qs = qs.filter(skill_id=f.skill_id)
        if f.caller_id:
            qs = qs.filter(caller_id=f.caller_id)
        if f.channel_id:
            qs = qs.filter(channel_id=f.channel_id)
        if f.top_level_only:
            qs = qs.top_level()
        if f.since is not None:
            qs = qs.filter(started_at__gte=f.since)
        if f.until is not None:
            qs = qs.filter(started_at__lt=f.until)
        return qs

    def top_level(self):
        # is_empty, not ="": SQLite then answers from the top-level partial indexes alone.
        return self.filter(parent_run_id__is_empty=True)

    def failed(self):
        """Runs that failed, had a failed tool call or a failed descendant (the list's
        failed=1), newest first from the runs_failed / runs_toplevel_failed partial
        indexes (migration 0010)."""
        return self.filter(FailedRun())

    def with_statuses(self, statuses: Sequence[str]):
        """Runs with any of these statuses (the list's status=error,timeout).

        Only failed statuses: the failed-run condition is added too (it is implied), so the
        planner may walk the runs_failed partial index newest first instead of collecting
        and sorting every run of the statuses."""
        statuses = list(dict.fromkeys(statuses))
        if len(statuses) == 1:
            qs = self.filter(status=statuses[0])
        else:
            qs = self.filter(status__in=statuses)
        if set(statuses) <= set(contract.FAILED_STATUSES):
            qs = qs.filter(FailedRun())
        return qs

    def for_skill(self, skill_id: str, include_dry_run: bool = False):
        return self.filter(skill_id=skill_id).hiding_dry_runs(include_dry_run)

    def for_caller(self, caller_id: str):
        return self.filter(caller_id=caller_id).hiding_dry_runs()

    def children_of(self, parent_run_id: str):
        # The repeated "<> ''" lets SQLite use the partial index (it does not prove it).
        return self.filter(parent_run_id=parent_run_id).exclude(parent_run_id__is_empty=True)

    def finished_before(self, cutoff: datetime):
        return (
            self.filter(finished_at__isnull=False, finished_at__lt=cutoff)
            .exclude(status=contract.STATUS_RUNNING)
            .order_by("finished_at", "id")
        )

    def started_before(self, t: datetime):
        return self.filter(started_at__lt=t)

    def without_big_columns(self):
        """The list columns only: inputs, output and error can be megabytes or deep JSON."""
        return self.only(*SUMMARY_FIELDS)

    def named(self, term: str):
        """Runs whose id, skill, caller or channel equals term (the admin search).

        Equality, not LIKE: each arm is a probe of an existing index (PostgreSQL ORs them
        in a bitmap), where a prefix LIKE needs a C-collation or pattern_ops index and the
        case-insensitive forms (UPPER(col) LIKE ...) can use no index at all.
        """
        term = contract.clean_text(term)
        return self.filter(Q(pk=term) | Q(skill_id=term) | Q(caller_id=term) | Q(channel_id=term))

    def close_running(self, status: str, finished_at: datetime) -> int:
        """Give the `running` rows among these a terminal status and a finish time.

        Rows that are no longer running (finished meanwhile) are left alone: the filter is
        in the UPDATE itself, so a finish that lands first wins.
        """
        if status not in contract.TERMINAL_STATUSES:
            raise ValueError(f"{status!r} is not a terminal status")
        return self.filter(status=contract.STATUS_RUNNING).update(
            status=status, finished_at=finished_at
        )

    def older_than(self, started_at: datetime, run_id: str):
        """Keyset page after (started_at, id) in newest-first order."""
        return self.filter(started_at__lte=started_at).filter(
            Q(started_at__lt=started_at) | Q(started_at=started_at, id__lt=run_id)
        )

    def newer_than(self, started_at: datetime, run_id: str):
        """Keyset page before (started_at, id) in newest-first order."""
        return self.filter(started_at__gte=started_at).filter(
            Q(started_at__gt=started_at) | Q(started_at=started_at, id__gt=run_id)
        )

    def finished_later_than(self, finished_at: datetime, run_id: str):
        """Keyset page after (finished_at, id) in the finished_before() order."""
        return self.filter(finished_at__gte=finished_at).filter(
            Q(finished_at__gt=finished_at) | Q(finished_at=finished_at, id__gt=run_id)
        )

    def with_inputs_text(self):
        """Every column, with ``inputs_text`` (JSON text) in place of parsed ``inputs``.

        The API parses it with a depth guard: JSON nested thousands deep, which another
        writer can store, would raise RecursionError in the model field.
        """
        return self.defer("inputs").annotate(inputs_text=Cast("inputs", TextField()))

    def summaries(self):
        """The columns a list shows, with short previews computed in the database.

        Lists never load inputs, output or error whole: they can be megabytes, or JSON too
        deep to parse. Whether a run has children is asked separately, for the page's rows
        only (ids_with_children): as a column of this query PostgreSQL planned it as a
        hashed subplan over every nested run (9 ms a page at 100k runs).
        """
        return self.only(*SUMMARY_FIELDS).annotate(
            output_preview=Substr("output", 1, PREVIEW_CHARS),
            error_preview=Substr("error", 1, PREVIEW_CHARS),
        )

    def summary_values(self):
        """The summary columns as plain dicts: no model instances, no previews or probes
        (a 1,000-node tree spent most of its time building deferred model objects)."""
        return self.values(*SUMMARY_FIELDS)

    def bounded_count(self, cap: int) -> int:
        """The exact count up to ``cap`` + 1; never counts more rows than that.

        Only the key is selected inside: previews and other annotations are not computed
        for the rows counted. In the list's own order, so it walks the list's index.
        """
        return self.newest_first().values("pk")[: cap + 1].count()

    def searching(self, query):
        """Runs whose own text (id, inputs, output, error) or any of whose events match every
        required clause of ``query`` (a runs.search.SearchQuery), and no excluded one.

        The rarest required clause drives when it is in at most SEARCH_SET_LIMIT indexed
        rows: its matching runs (run texts UNION ALL events, each from its index) are
        collected, then ordered newest first. Otherwise every clause is common, and the
        list is walked newest first (on the filters' index) probing each run until a page
        is full: a common word matches within the first runs walked, where collecting its
        millions of matches took 5 s at 100k runs (the planner's own choice: it hashes the
        whole set). How many rows hold a clause: the planner's estimate on PostgreSQL (the
        expression indexes' statistics), the fts5vocab tables on SQLite.
        """
        sql = SearchSql(connections[self.db].vendor)
        qs = self
        required = list(query.required)
        with connections[self.db].cursor() as cursor:
            estimates = [(sql.estimate(cursor, clause), i) for i, clause in enumerate(required)]
        count, rarest = min(estimates)
        if count <= SEARCH_SET_LIMIT:
            qs = qs.filter(pk__in=RawSQL(*sql.matching_ids(required.pop(rarest))))
        for clause in required:
            where, params = sql.run_matches(clause)
            qs = qs.extra(where=[where], params=params)
        for clause in query.excluded:
            where, params = sql.run_matches(clause)
            qs = qs.extra(where=[f"NOT {where}"], params=params)
        return qs


class SkillRunManager(models.Manager.from_queryset(SkillRunQuerySet)):
    def start(self, run: contract.SkillRun):
        """Insert a run that contract.new_run has checked; Conflict when the id exists."""
        try:
            with transaction.atomic(using=self.db):
                return self.create(
                    id=run.id,
                    skill_id=run.skill_id,
                    caller_id=run.caller_id,
                    channel_id=run.channel_id,
                    inputs=run.inputs,
                    started_at=run.started_at,
                    finished_at=None,
                    status=run.status,
                    output=run.output,
                    error=run.error,
                    tool_calls_count=run.tool_calls_count,
                    runtime_seconds=run.runtime_seconds,
                    parent_run_id=run.parent_run_id,
                    total_input_tokens=run.total_input_tokens,
                    total_output_tokens=run.total_output_tokens,
                    total_thinking_tokens=run.total_thinking_tokens,
                )
        except IntegrityError as exc:
            raise contract.Conflict(f"run {run.id!r} already exists") from exc

    def finish(self, run_id: str, stats: contract.RunStats, finished_at: datetime) -> None:
        """One UPDATE, so concurrent finishes leave one complete set of stats (last wins)."""
        updated = self.filter(pk=run_id).update(
            finished_at=finished_at,
            status=stats.status,
            output=stats.output,
            error=stats.error,
            tool_calls_count=stats.tool_calls,
            runtime_seconds=stats.runtime_seconds,
            total_input_tokens=stats.input_tokens,
            total_output_tokens=stats.output_tokens,
            total_thinking_tokens=stats.thinking_tokens,
        )
        if not updated:
            raise contract.NotFound(run_id)

    def shift_times(self, run_ids: Sequence[str], delta: timedelta) -> None:
        """Move runs and their events in time by delta (seed_demo places replays in the past).

        One UPDATE per table; a NULL finished_at stays NULL.
        """
        ids = list(run_ids)
        logs = self.model.logs.field.model.objects.db_manager(self.db)
        with transaction.atomic(using=self.db):
            self.filter(pk__in=ids).update(
                started_at=F("started_at") + delta, finished_at=F("finished_at") + delta
            )
            logs.filter(run_id__in=ids).update(created_at=F("created_at") + delta)

    def parent_chain(self, run_id: str, summaries: bool = False) -> list:
        """The run and its ancestors, root first; capped, stops at a missing or repeated run.

        One recursive query finds the ids (capped at MAX_PARENT_CHAIN_DEPTH steps, so a
        cycle cannot loop), one more loads the rows.
        """
        sql = f"""
            WITH RECURSIVE chain(id, parent_run_id, depth) AS (
                SELECT id, parent_run_id, 1 FROM {self.model._meta.db_table} WHERE id = %s
                UNION ALL
                SELECT r.id, r.parent_run_id, chain.depth + 1
                FROM chain JOIN {self.model._meta.db_table} r ON r.id = chain.parent_run_id
                WHERE chain.parent_run_id <> '' AND chain.depth < %s
            )
            SELECT id FROM chain ORDER BY depth
        """
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, [run_id, contract.MAX_PARENT_CHAIN_DEPTH])
            found = [row[0] for row in cursor.fetchall()]
        if not found:
            raise contract.NotFound(run_id)
        chain: list[str] = []
        for chain_id in found:
            if chain_id in chain:
                break
            chain.append(chain_id)
        rows = (self.get_queryset().summaries() if summaries else self.get_queryset()).in_bulk(
            chain
        )
        return [rows[chain_id] for chain_id in reversed(chain)]

    def ids_with_children(self, run_ids: Sequence[str]) -> set[str]:
        """Which of these runs (a page of them) started at least one other run.

        One primary-key probe and one probe of the children index per id: EXISTS stops at
        the first child, where "parent_run_id IN (...)" would read every child of a big
        parent. Raw SQL because building it with the ORM took longer than running it
        (0.8 ms against 0.1 ms on SQLite). The child predicate is spelled as the
        runs_children index spells it, or SQLite does not use the index.
        """
        run_ids = list(run_ids)
        if not run_ids:
            return set()
        table = self.model._meta.db_table
        sql = f"""
            SELECT r.id FROM {table} r
            WHERE r.id IN ({", ".join(["%s"] * len(run_ids))}) AND EXISTS (
                SELECT 1 FROM {table} c
                WHERE c.parent_run_id = r.id AND NOT (c.parent_run_id = '')
            )
        """
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, run_ids)
            return {row[0] for row in cursor.fetchall()}

    def values_from(self, column: str, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` distinct non-empty values of an indexed column (skill_id,
        caller_id, channel_id) that start with ``prefix``, in index order: a loose index
        scan, one MIN() probe of the column's index per value, so a skill with a million
        runs costs what one with a single run does."""
        if column not in ("skill_id", "caller_id", "channel_id"):
            raise ValueError(f"no suggestions for {column}")
        table = self.model._meta.db_table
        sql = f"""
            WITH RECURSIVE v(x, n) AS (
                SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > %s), 1
                UNION ALL
                SELECT (SELECT MIN(r.{column}) FROM {table} r WHERE r.{column} > v.x), v.n + 1
                FROM v WHERE v.x IS NOT NULL AND v.n < %s
            )
            SELECT x FROM v WHERE x IS NOT NULL
        """
        # '' sorts first, so "> prefix" skips empty values; a value equal to the prefix
        # itself is asked for apart.
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, [prefix, limit])
            found = [row[0] for row in cursor.fetchall()]
        if prefix and self.filter(**{column: prefix}).exists():
            found.insert(0, prefix)
        return [value for value in found if value.startswith(prefix)][:limit]

    def recount_failure_rollups(self) -> int:
        """Recount failed_tools and failed_descendants of every run (as migration 0010's
        backfill does); returns how many counts it corrected. Only needed after writes made with the
        triggers off (a restore with --disable-triggers)."""
        connection = connections[self.db]
        if connection.vendor == "postgresql":
            tool_failed = (
                "(l.event_type = 'tool_result' AND jsonb_typeof(l.payload) = 'object' "
                "AND l.payload -> 'is_error' = 'true'::jsonb)"
            )
        else:
            tool_failed = (
                "(l.event_type = 'tool_result' AND (CASE WHEN json_valid(l.payload) "
                "THEN json_type(l.payload, '$.is_error') END) = 'true')"
            )
        changed = 0
        with transaction.atomic(using=self.db), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE skill_runs SET failed_tools = COALESCE(counted.n, 0) FROM ("
                "SELECT r.id, (SELECT COUNT(*) FROM skill_run_logs l WHERE l.run_id = r.id "
                f"AND {tool_failed}) AS n FROM skill_runs r) counted "
                "WHERE skill_runs.id = counted.id AND skill_runs.failed_tools <> counted.n"
            )
            changed += cursor.rowcount
            cursor.execute(
                f"""UPDATE skill_runs SET failed_descendants = COALESCE(counted.n, 0) FROM (
                    WITH RECURSIVE up(d, a) AS (
                        SELECT id, parent_run_id FROM skill_runs
                        WHERE status IN {FAILED_STATUSES_SQL} AND NOT (parent_run_id = '')
                        UNION
                        SELECT up.d, r.parent_run_id FROM up JOIN skill_runs r ON r.id = up.a
                        WHERE NOT (r.parent_run_id = '')
                    )
                    SELECT r.id, k.n FROM skill_runs r LEFT JOIN (
                        SELECT a, COUNT(*) AS n FROM up WHERE a <> d GROUP BY a
                    ) k ON k.a = r.id
                ) counted
                WHERE skill_runs.id = counted.id
                AND skill_runs.failed_descendants <> COALESCE(counted.n, 0)"""
            )
            changed += cursor.rowcount
        return changed

    def skill_ids(self) -> list[str]:
        """Every distinct skill_id, one index probe per skill (a loose index scan).

        SELECT DISTINCT would read the whole index; this walks it skill by skill.
        """
        table = self.model._meta.db_table
        sql = f"""
            WITH RECURSIVE skills(skill_id) AS (
                SELECT MIN(skill_id) FROM {table}
                UNION ALL
                SELECT (SELECT MIN(r.skill_id) FROM {table} r WHERE r.skill_id > skills.skill_id)
                FROM skills WHERE skills.skill_id IS NOT NULL
            )
            SELECT skill_id FROM skills WHERE skill_id IS NOT NULL
        """
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql)
            return [row[0] for row in cursor.fetchall()]

    def call_tree(self, root_id: str, cap: int, max_depth: int = 64):
        """Summary values of the runs under ``root_id`` (and itself), at most cap + 1.

        One recursive query walks the children index level by level, at most
        ``max_depth`` levels, so a cycle in corrupted data ends the walk; the outer IN
        drops a run reached twice, and the LIMIT stops a huge tree early, keeping its
        upper levels. UNION ALL with a depth, not UNION: SQLite planned UNION with a
        bloom filter rebuilt at every step (0.65 s against 5 ms for 1,000 runs at 1M).
        The predicate is spelled as the runs_children index spells it, or SQLite does
        not use the index. Unordered: the caller orders the few rows it gets.
        """
        table = self.model._meta.db_table
        tree_ids = RawSQL(
            f"""
            WITH RECURSIVE tree(id, depth) AS (
                SELECT id, 0 FROM {table} WHERE id = %s
                UNION ALL
                SELECT r.id, tree.depth + 1 FROM tree JOIN {table} r ON r.parent_run_id = tree.id
                WHERE NOT (r.parent_run_id = '') AND tree.depth < %s
            )
            SELECT id FROM tree LIMIT %s
            """,
            [root_id, max_depth, cap + 1],
        )
        return self.filter(pk__in=tree_ids).order_by().summary_values()

    def last_started_by_skills(
        self, skill_ids: Sequence[str], include_failed: bool
    ) -> dict[str, datetime]:
        """Newest started_at per skill: one index probe per skill, not a scan of its runs.

        The ids are one parameter (an array, a JSON list on SQLite), not a UNION ALL of
        one SELECT per id: PostgreSQL took ~13 ms to plan that union for 200 skills, ten
        times what running the probes takes.
        """
        if include_failed:
            status_rule = "r.status NOT IN (%s, %s)"
            status_params = [contract.STATUS_DRY_RUN, contract.STATUS_RUNNING]
        else:
            status_rule = "r.status = %s"
            status_params = [contract.STATUS_OK]
        ids = list(skill_ids)
        if not ids:
            return {}
        connection = connections[self.db]
        if connection.vendor == "postgresql":
            wanted, ids_param = "SELECT unnest(%s::text[]) AS skill_id", ids
        else:
            wanted, ids_param = "SELECT value AS skill_id FROM json_each(%s)", json.dumps(ids)
        table = self.model._meta.db_table
        sql = f"""
            SELECT k.skill_id, (
                SELECT r.started_at FROM {table} r
                WHERE r.skill_id = k.skill_id AND {status_rule}
                ORDER BY r.started_at DESC LIMIT 1
            ) FROM ({wanted}) k
        """
        latest: dict[str, datetime] = {}
        with connection.cursor() as cursor:
            cursor.execute(sql, [*status_params, ids_param])
            for skill_id, started_at in cursor.fetchall():
                if started_at is not None:
                    latest[skill_id] = _as_utc(started_at)
        return latest

    def purge_batch(self, hi: datetime, lo: datetime | None, batch_size: int) -> tuple[int, int]:
        """Delete the oldest ``batch_size`` runs started in [lo, hi) with their logs, in one
        transaction; returns (runs, logs) deleted, (0, 0) when none is left.

        The retention workflow (ranges, workers, running totals) is runs.services.purge;
        this is its unit of work, so a kill at any moment leaves whole runs.
        """
        connection = connections[self.db]
        doomed = self.started_before(hi)
        if lo is not None:
            doomed = doomed.filter(started_at__gte=lo)
        with transaction.atomic(using=self.db):
            if connection.vendor == "postgresql":
                # Each batch's commit need not wait for its WAL flush: after a crash
                # the lost batches are simply still there, and the next purge takes them.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            # Oldest first: an index range on started_at (PostgreSQL otherwise reads the
            # heap from the start, past the dead rows of every earlier batch), and a
            # purge cut short leaves a clean "everything before X is gone" boundary
            # (one per range with several workers).
            locked = list(
                doomed.order_by("started_at")
                .select_for_update()
                .values_list("pk", "started_at")[:batch_size]
            )
            started = (locked[0][1], locked[-1][1]) if locked else None
            return self._delete_locked([pk for pk, _ in locked], started)

    def delete_with_logs(self, run_ids: Sequence[str]) -> tuple[int, int]:
        """Delete these runs and their logs in one transaction; returns (runs, logs).

        Never loads a row (Django's Collector would load every log and parse every JSON
        column): the admin deletes through here.
        """
        with transaction.atomic(using=self.db):
            locked = list(
                self.filter(pk__in=list(run_ids))
                .order_by()
                .select_for_update()
                .values_list("pk", "started_at")
            )
            started = [at for _, at in locked]
            return self._delete_locked(
                [pk for pk, _ in locked], (min(started), max(started)) if started else None
            )

    def _delete_locked(
        self, ids: list[str], started: tuple[datetime, datetime] | None = None
    ) -> tuple[int, int]:
        """Logs first, then their runs; the caller holds the transaction and the row locks.
        ``started``: the first and last started_at of these runs, when the caller knows
        them (with month partitions the logs' DELETE then reads only those months).

        The locks matter on PostgreSQL: append() locks its run before inserting, so an
        append racing this delete either commits before the log DELETE (whose snapshot then
        sees its rows) or waits and finds the run gone. Without them a log inserted between
        the two DELETEs makes the commit fail on the foreign key.
        """
        if not ids:
            return 0, 0
        self._forget_otlp_traces(ids)
        logs = self.model.logs.field.model.objects.db_manager(self.db)
        connection = connections[self.db]
        if connection.vendor == "postgresql":
            # One array parameter instead of thousands: building and quoting a 2,000-item
            # IN list twice per batch took a third of the purge's time.
            logs_table = connection.ops.quote_name(logs.model._meta.db_table)
            runs_table = connection.ops.quote_name(self.model._meta.db_table)
            with connection.cursor() as cursor:
                month_logs = LogPartitions(self.db).logs_delete(cursor, ids, started)
                if month_logs is not None:
                    cursor.execute(*month_logs)
                else:
                    cursor.execute(f"DELETE FROM {logs_table} WHERE run_id = ANY(%s)", [ids])
                logs_deleted = cursor.rowcount
                cursor.execute(f"DELETE FROM {runs_table} WHERE id = ANY(%s)", [ids])
                return cursor.rowcount, logs_deleted
        logs_deleted = logs.filter(run_id__in=ids).delete_rows()
        return self.filter(pk__in=ids)._raw_delete(self.db), logs_deleted

    def _forget_otlp_traces(self, ids: list[str]) -> None:
        """The stored spans of the OTLP traces these runs came from go with them.

        OTLP ingest keeps a trace's spans (otlp_traces) to re-derive its runs when more
        arrive; kept after a purge they would grow without bound, and a late span would
        bring the purged runs back. A run id ``otlp-<trace id>-<span id>`` names its trace:
        a primary-key probe per trace, in the caller's transaction.
        """
        trace_ids = {
            run_id[5:37]
            for run_id in ids
            if run_id.startswith(OTLP_RUN_PREFIX) and len(run_id) == OTLP_RUN_ID_LENGTH
        }
        if trace_ids:
            traces = self.model._meta.apps.get_model("runs", "OtlpTrace")
            traces.objects.db_manager(self.db).filter(pk__in=sorted(trace_ids))._raw_delete(self.db)

    def count_started_before(self, t: datetime) -> tuple[int, int]:
        """(runs, logs) that purge_started_before(t) would delete."""
        doomed = self.started_before(t)
        logs = self.model.logs.field.model.objects.db_manager(self.db)
        return doomed.count(), logs.filter(run__in=doomed.values("pk")).count()

    def search_sources(self, run_ids: Sequence[str], query) -> dict[str, tuple[str, str]]:
        """{run id: (where, text)}: for each run, the first of its texts that matches
        ``query`` (for the list's snippets): the heads of its id, error, output and inputs,
        else its first matching event's payload head. At most two queries on PostgreSQL
        (one per page, the event one stops at each run's first match); SQLite probes the
        events of each run without a match in its own text (a rowid probe per event)."""
        pattern = query.highlight_pattern()
        if not run_ids or pattern is None:
            return {}
        head = SNIPPET_SOURCE_CHARS
        rows = (
            self.filter(pk__in=list(run_ids))
            .annotate(
                error_head=Substr("error", 1, head),
                output_head=Substr("output", 1, head),
                inputs_head=Substr(Cast("inputs", TextField()), 1, head),
            )
            .values_list("id", "error_head", "output_head", "inputs_head")
        )
        found: dict[str, tuple[str, str]] = {}
        for run_id, error, output, inputs in rows:
            for where, text in (
                ("error", error),
                ("output", output),
                ("inputs", _readable_json(inputs or "")),
                ("id", run_id),
            ):
                if text and pattern.search(text):
                    found[run_id] = (where, text)
                    break
        rest = [run_id for run_id in run_ids if run_id not in found]
        if not rest:
            return found
        sql = SearchSql(connections[self.db].vendor)
        conditions, params = [], []
        for clause in query.required:
            where, clause_params = sql.log_matches(clause)
            conditions.append(where)
            params.extend(clause_params)
        matches = " OR ".join(conditions)
        connection = connections[self.db]
        with connection.cursor() as cursor:
            if sql.vendor == "postgresql":
                cursor.execute(
                    "SELECT r.id, x.sequence, x.head FROM unnest(%s::text[]) AS r(id) "
                    "CROSS JOIN LATERAL (SELECT l.sequence, left(l.payload::text, %s) AS head "
                    f"FROM skill_run_logs l WHERE l.run_id = r.id AND ({matches}) "
                    "ORDER BY l.sequence LIMIT 1) x",
                    [rest, head, *params],
                )
                hits = cursor.fetchall()
            else:
                hits = self._sqlite_first_matching_events(cursor, sql, query, rest, head)
        for run_id, sequence, text in hits:
            found[run_id] = (f"event #{sequence}", _readable_json(text or ""))
        return found

    def _sqlite_first_matching_events(self, cursor, sql, query, run_ids, head) -> list:
        """(run id, sequence, payload head) of each run's first matching event (SQLite).

        A rare clause drives from its FTS entries (a run of 10,000 events whose only match
        is its last: 2.7 s probing event by event, a few ms this way); a common one
        probes each run's events in order, where the first few match."""
        required = list(query.required)
        count, rarest = min((sql.estimate(cursor, c), i) for i, c in enumerate(required))
        hits = []
        if count <= SEARCH_SET_LIMIT:
            _runs, logs = sql._fts(required[rarest])
            marks = ", ".join(["%s"] * len(run_ids))
            cursor.execute(
                "SELECT l.run_id, min(l.sequence), NULL FROM skill_run_logs l "
                f"WHERE l.id IN (SELECT rowid FROM {logs} WHERE {logs} MATCH %s) "
                f"AND l.run_id IN ({marks}) GROUP BY l.run_id",
                [_fts_phrase(required[rarest]), *run_ids],
            )
            for run_id, sequence, _ in cursor.fetchall():
                cursor.execute(
                    "SELECT substr(payload, 1, %s) FROM skill_run_logs "
                    "WHERE run_id = %s AND sequence = %s",
                    [head, run_id, sequence],
                )
                hits.append((run_id, sequence, cursor.fetchone()[0]))
            return hits
        conditions, params = [], []
        for clause in required:
            where, clause_params = sql.log_matches(clause)
            conditions.append(where)
            params.extend(clause_params)
        for run_id in run_ids:
            cursor.execute(
                "SELECT l.run_id, l.sequence, substr(l.payload, 1, %s) "
                f"FROM skill_run_logs l WHERE l.run_id = %s AND ({' OR '.join(conditions)}) "
                "ORDER BY l.sequence LIMIT 1",
                [head, run_id, *params],
            )
            hits.extend(cursor.fetchall())
        return hits

    def rebuild_search_index(self) -> None:
        """Rebuild the search index from the stored rows (manage.py rebuild_search_index).

        Only needed after writes made with triggers off on SQLite (the PostgreSQL index is
        kept by the writes themselves; there it is rebuilt with REINDEX, which also sheds
        bloat). Writers wait meanwhile.
        """
        m = _search_index()
        connection = connections[self.db]
        with transaction.atomic(using=self.db), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL statement_timeout = 0")
                for name in m.PG_INDEXES:
                    # With month partitions (LogPartitions) the index is a partitioned one,
                    # which REINDEX refuses inside a transaction: each month's instead (a
                    # plain index is its own one leaf).
                    cursor.execute(
                        "SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass) "
                        "WHERE isleaf",
                        [name],
                    )
                    for (leaf,) in cursor.fetchall():
                        cursor.execute(f"REINDEX INDEX {leaf}")
                return
            for statement in m.SQLITE_EMPTY + m.SQLITE_FILL:
                cursor.execute(statement)


PAYLOAD_PREVIEW_CHARS = 2000


class JsonKeyIsTrue(models.Func):
    """``column -> key`` is JSON true (not 1, not "true"): contract.tool_result_failed's rule
    in SQL. Django's ``payload__key=True`` also matches 1 on SQLite (JSON_EXTRACT gives 1
    for both), so the type is asked for there."""

    output_field = models.BooleanField()

    def __init__(self, column: str, key: str):
        super().__init__(F(column))
        self.key = key

    def as_postgresql(self, compiler, connection):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(({sql} -> %s) = 'true'::jsonb)", [*params, self.key]

    def as_sqlite(self, compiler, connection):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(JSON_TYPE({sql}, %s) = 'true')", [*params, f'$."{self.key}"']


class SkillRunLogQuerySet(models.QuerySet):
    def for_run(self, run_id: str):
        return self.filter(run_id=run_id).order_by("sequence")

    def for_runs(self, runs):
        """Logs of several runs: a list of ids, or a queryset of runs (kept a subquery)."""
        return self.filter(run__in=runs)

    def bounded_count(self, cap: int) -> int:
        """The exact count up to ``cap`` + 1; never counts more rows than that.

        Only the key is selected inside: previews and other annotations are not computed
        for the rows counted.
        """
        return self.order_by().values("pk")[: cap + 1].count()

    def timeline(self):
        """Events without their payloads: sizes and previews come from the database."""
        as_text = Cast("payload", TextField())
        return self.only("id", "run_id", "sequence", "event_type", "created_at").annotate(
            payload_size=Length(as_text),
            payload_preview=Substr(as_text, 1, PAYLOAD_PREVIEW_CHARS),
            # Read even from payloads too big to load, to pair tool calls with results.
            payload_tool=KeyTextTransform("tool", "payload"),
            payload_call_id=KeyTextTransform("call_id", "payload"),
        )

    def after_sequence(self, sequence: int | None):
        """Events after ``sequence`` (all of them for None): keyset paging by sequence."""
        return self if sequence is None else self.filter(sequence__gt=sequence)

    def with_payload_text(self):
        """Events with ``payload_text`` (JSON text) in place of the parsed payload."""
        return self.defer("payload").annotate(payload_text=Cast("payload", TextField()))

    def payloads(self, run_id: str, sequences) -> dict[int, object]:
        """{sequence: payload} for the given events of a run."""
        rows = self.filter(run_id=run_id, sequence__in=list(sequences)).values_list(
            "sequence", "payload"
        )
        return dict(rows)

    # --- the run page's reads: failures, breakdown, filters -------------------

    def failure_rule(self):
        """An expression true for a failed event: an ``error`` event, or a tool result
        whose payload's is_error is JSON true (contract.tool_result_failed)."""
        return models.Case(
            models.When(event_type=contract.EVENT_ERROR, then=models.Value(True)),
            models.When(
                event_type=contract.EVENT_TOOL_RESULT,
                then=JsonKeyIsTrue("payload", contract.TOOL_ERROR_KEY),
            ),
            default=models.Value(False),
            output_field=models.BooleanField(),
        )

    def failures(self):
        """Failed events only (see failure_rule)."""
        return self.alias(_failed=self.failure_rule()).filter(_failed=True)

    def with_failed(self):
        """Rows with ``failed`` (see failure_rule)."""
        return self.annotate(failed=self.failure_rule())

    def of_tool(self, tool: str):
        # A JSON comparison (payload -> 'tool' = '"name"'): Django writes a text key's
        # comparison on SQLite as JSON_EXTRACT('name', '$'), which is malformed JSON.
        return self.filter(payload__tool=tool)

    def breakdown(self):
        """(event_type, tool, failed, n) per kind of event: one pass over a run's events
        gives its count, its filters' choices and its failures' count."""
        return (
            self.order_by()
            .annotate(tool_name=KeyTextTransform("tool", "payload"), is_failed=self.failure_rule())
            .values("event_type", "tool_name", "is_failed")
            .annotate(n=models.Count("pk"))
            .values_list("event_type", "tool_name", "is_failed", "n")
        )

    def delete_rows(self) -> int:
        """A single DELETE without loading rows (logs have no dependents or signals)."""
        return self.order_by()._raw_delete(self.db)


class SkillRunLogManager(models.Manager.from_queryset(SkillRunLogQuerySet)):
    def append(self, logs: Sequence[contract.SkillRunLog]) -> None:
        """Store checked logs of one run in one transaction: all or nothing.

        NotFound when the run is missing, Conflict when a sequence is already stored (or
        repeated in the batch); the stored logs are never changed.
        """
        if not logs:
            return
        run_model = self.model.run.field.related_model
        run_ids = {log.run_id for log in logs}
        sequences = [(log.run_id, log.sequence) for log in logs]
        if len(set(sequences)) != len(sequences):
            raise contract.Conflict("the batch repeats a sequence")
        try:
            with transaction.atomic(using=self.db):
                # Lock the runs so a purge cannot remove them under the insert; FK checks
                # are deferred to commit, which would turn a missing run into a late error.
                found = set(
                    run_model.objects.db_manager(self.db)
                    .select_for_update()
                    .filter(pk__in=run_ids)
                    .values_list("pk", flat=True)
                )
                missing = run_ids - found
                if missing:
                    raise contract.NotFound(sorted(missing)[0])
                if len(logs) > 1 and connections[self.db].vendor == "postgresql":
                    self._copy(logs)
                    return
                self.bulk_create(
                    [
                        self.model(
                            run_id=log.run_id,
                            sequence=log.sequence,
                            event_type=log.event_type,
                            payload=log.payload,
                            created_at=log.created_at,
                        )
                        for log in logs
                    ]
                )
        except IntegrityError as exc:
            raise contract.Conflict("a log with that run and sequence already exists") from exc

    def _copy(self, logs: Sequence[contract.SkillRunLog]) -> None:
        """Insert a batch with COPY (PostgreSQL), inside the caller's transaction.

        About three times faster than bulk_create for 1,000 events: its INSERT ... UNNEST
        has psycopg escape every JSON text into an array literal. The JSON text is what
        JSONField would write (json.dumps); a duplicate raises IntegrityError as an INSERT
        would.
        """
        connection = connections[self.db]
        encoder = self.model._meta.get_field("payload").encoder
        sql = (
            f"COPY {connection.ops.quote_name(self.model._meta.db_table)} "
            "(run_id, sequence, event_type, payload, created_at) FROM STDIN"
        )
        with connection.cursor() as cursor, connection.wrap_database_errors:
            with cursor.cursor.copy(sql) as copy:
                for log in logs:
                    copy.write_row(
                        (
                            log.run_id,
                            log.sequence,
                            log.event_type,
                            json.dumps(log.payload, cls=encoder),
                            log.created_at,
                        )
                    )


def _as_utc(value) -> datetime:
    """A datetime read by a raw cursor (SQLite gives text, PostgreSQL an aware value)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class SkillRunCountManager(models.Manager):
    """Reads of skill_run_counts, the per-hour and per-day run counts kept by triggers.

    The triggers (migration 0006) are the only writers: every INSERT, UPDATE and DELETE on
    skill_runs, whoever issues it, adjusts the counts in the same transaction.
    """

    def by_skill_and_status(
        self,
        since: datetime,
        recent_since: datetime,
        skill_ids: Sequence[str] | None = None,
    ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
        """({skill: {status: n}} of runs started since ``since``, the same since
        ``recent_since``): exact, like counting the runs, but from at most ~8 day rows and
        ~46 hour rows per skill and status, so a busy week costs what a quiet one does.
        With ``skill_ids``, those skills only (a page of the skills page)."""
        return (
            self._by_skill_and_status(since, skill_ids),
            self._by_skill_and_status(recent_since, skill_ids),
        )

    def days_by_skill(
        self, first_day: datetime, skill_ids: Sequence[str]
    ) -> dict[str, dict[datetime, dict[str, int]]]:
        """{skill: {UTC day: {status: n}}} from the day buckets starting at ``first_day``,
        for these skills only (a page of the skills page: its sparklines). A range of the
        bucket key's index per skill, at most 8 days x the statuses each."""
        days: dict[str, dict[datetime, dict[str, int]]] = {}
        rows = self.filter(
            span=self.model.Span.DAY, period_start__gte=first_day, skill_id__in=list(skill_ids)
        ).values_list("skill_id", "period_start", "status", "runs")
        for skill_id, day, status, n in rows:
            days.setdefault(skill_id, {}).setdefault(day, {})[status] = int(n)
        return days

    def _by_skill_and_status(
        self, since: datetime, skill_ids: Sequence[str] | None = None
    ) -> dict[str, dict[str, int]]:
        """Whole days from ``since``'s next midnight (UTC) on, whole hours before that
        from its next full hour, and the runs themselves for the part of an hour left.
        With ``skill_ids``, each part is a range of its index per skill."""
        since = since.astimezone(UTC)
        hour = _ceil(since, timedelta(hours=1))
        day = _ceil(since, timedelta(days=1))
        table = self.model._meta.db_table
        runs_table = self._runs_table()
        connection = connections[self.db]
        params = [
            connection.ops.adapt_datetimefield_value(value)
            for value in (day, hour, day, since, hour)
        ]
        only = ""
        if skill_ids is not None:
            ids = list(skill_ids)
            if not ids:
                return {}
            if connection.vendor == "postgresql":
                only, ids_param = "AND skill_id = ANY (%s::text[])", ids
            else:
                only, ids_param = (
                    "AND skill_id IN (SELECT value FROM json_each(%s))",
                    (json.dumps(ids)),
                )
            day_at, hour_at, day_end, since_at, hour_end = params
            params = [day_at, ids_param, hour_at, day_end, ids_param]
            params += [since_at, hour_end, ids_param]
        sql = f"""
            SELECT skill_id, status, SUM(runs) FROM (
                SELECT skill_id, status, runs FROM {table}
                WHERE span = 'day' AND period_start >= %s {only}
                UNION ALL
                SELECT skill_id, status, runs FROM {table}
                WHERE span = 'hour' AND period_start >= %s AND period_start < %s {only}
                UNION ALL
                SELECT skill_id, status, 1 FROM {runs_table}
                WHERE started_at >= %s AND started_at < %s {only}
            ) parts
            GROUP BY skill_id, status
        """
        counts: dict[str, dict[str, int]] = {}
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for skill_id, status, n in cursor.fetchall():
                if n:
                    counts.setdefault(skill_id, {})[status] = int(n)
        return counts

    def rebuild(self) -> int:
        """Recount every bucket from skill_runs; returns the number of count rows.

        Only needed when rows were changed with the triggers off (a restore with
        --disable-triggers, a TRUNCATE of skill_runs alone). Writers wait meanwhile: on
        PostgreSQL skill_runs is locked against writes for the transaction.
        """
        connection = connections[self.db]
        table = self.model._meta.db_table
        runs_table = self._runs_table()
        if connection.vendor == "postgresql":
            buckets = [f"date_trunc('{span}', started_at, 'UTC')" for span in ("hour", "day")]
        else:
            buckets = [
                "substr(started_at, 1, 13) || ':00:00'",
                "substr(started_at, 1, 10) || ' 00:00:00'",
            ]
        selects = " UNION ALL ".join(
            f"SELECT '{span}', {bucket}, skill_id, status, COUNT(*) FROM {runs_table} "
            f"GROUP BY {bucket}, skill_id, status"
            for span, bucket in zip(("hour", "day"), buckets, strict=True)
        )
        with transaction.atomic(using=self.db), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"LOCK TABLE {runs_table} IN SHARE MODE")
            cursor.execute(f"DELETE FROM {table}")
            # In bucket order: a week's rows then sit on neighbouring pages.
            cursor.execute(
                f"INSERT INTO {table} (span, period_start, skill_id, status, runs) "
                f"SELECT * FROM ({selects}) counted ORDER BY 1, 2, 3, 4"
            )
            return cursor.rowcount

    def _runs_table(self) -> str:
        return self.model._meta.apps.get_model("runs", "SkillRun")._meta.db_table


def _ceil(t: datetime, unit: timedelta) -> datetime:
    """The first multiple of ``unit`` (an hour or a day, counted from the epoch) at or
    after ``t``."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rest = (t - epoch) % unit
    return t if not rest else t + (unit - rest)


class SkillSummaryManager(models.Manager):
    """Reads of skill_summaries, one row per skill kept by triggers (migration 0011)."""

    # Sort order -> (newest-run column or None for the name, the column's meaning).
    SORT_COLUMNS = {"last_run": "last_run_at", "name": None, "failures": "last_failed_at"}

    def page(self, sort: str, offset: int, limit: int) -> list:
        """``limit`` skills from ``offset`` in a sort order of ``SORT_COLUMNS``: newest
        first with the skills that have none last, ties and the name order by skill_id.

        One range of the sort's index (migration 0011 creates them); the order is spelled
        as the index is on each engine, or the engine sorts the whole table instead.
        """
        column = self.SORT_COLUMNS[sort]
        if column is None:
            order = [F("skill_id").asc()]
        elif connections[self.db].vendor == "postgresql":
            order = [F(column).desc(nulls_last=True), F("skill_id").asc()]
        else:  # SQLite: DESC puts NULLs last, as its index is built
            order = [F(column).desc(), F("skill_id").asc()]
        return list(self.order_by(*order)[offset : offset + limit])

    def rebuild(self) -> int:
        """Recount every skill's row from skill_runs; returns the number of skills.

        Only needed when rows were changed with the triggers off (see
        ``SkillRunCountManager.rebuild``). Writers wait meanwhile on PostgreSQL.
        """
        connection = connections[self.db]
        table = self.model._meta.db_table
        runs_table = self.model._meta.apps.get_model("runs", "SkillRun")._meta.db_table
        not_finished = (contract.STATUS_DRY_RUN, contract.STATUS_RUNNING)
        failed = contract.FAILED_STATUSES
        with transaction.atomic(using=self.db), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"LOCK TABLE {runs_table} IN SHARE MODE")
            cursor.execute(f"DELETE FROM {table}")
            cursor.execute(
                f"INSERT INTO {table} (skill_id, runs, last_run_at, last_ok_at, last_failed_at) "
                "SELECT skill_id, COUNT(*), "
                f"MAX(CASE WHEN status NOT IN ({', '.join(['%s'] * len(not_finished))}) "
                "THEN started_at END), "
                "MAX(CASE WHEN status = %s THEN started_at END), "
                f"MAX(CASE WHEN status IN ({', '.join(['%s'] * len(failed))}) "
                "THEN started_at END) "
                f"FROM {runs_table} GROUP BY skill_id ORDER BY skill_id",
                [*not_finished, contract.STATUS_OK, *failed],
            )
            return cursor.rowcount


class OtlpTraceManager(models.Manager):
    """The storage of traces received over OTLP: their spans and the runs derived from them.

    ``store`` replaces, in one transaction, everything a set of traces produced before by
    what their spans (those stored plus those just received) produce now. Traces are
    locked first (PostgreSQL: an advisory lock per trace, taken in key order; SQLite: the
    IMMEDIATE transaction's write lock), so two requests carrying spans of one trace never
    derive it from half of its spans each.
    """

    def store(
        self,
        trace_ids: Sequence[str],
        derive: Callable[[str, bytes | None], tuple[bytes, int, list, list]],
    ) -> None:
        """``derive(trace_id, stored)`` gets the trace's stored spans (bytes, None for a
        new trace) and returns (all its spans as bytes, their number, contract.SkillRun
        list, contract.SkillRunLog list) for the whole trace.

        Rows are written with COPY on PostgreSQL (about three times faster than INSERT for
        a batch: see SkillRunLogManager._copy) and bulk_create on SQLite.
        """
        if not trace_ids:
            return
        connection = connections[self.db]
        runs_model = self.model._meta.apps.get_model("runs", "SkillRun")
        logs_model = runs_model.logs.field.model
        trace_ids = sorted(trace_ids)
        postgres = connection.vendor == "postgresql"
        with transaction.atomic(using=self.db):
            if postgres:
                with connection.cursor() as cursor:
                    # Signed 64-bit keys from the trace ids, locked in one statement in
                    # key order: two requests sharing traces cannot deadlock.
                    keys = sorted({int(t[:16], 16) - 2**63 for t in trace_ids})
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) k", [keys]
                    )
            known = {
                trace_id: (bytes(spans), run_ids)
                for trace_id, spans, run_ids in self.filter(pk__in=trace_ids)
                .values_list("trace_id", "spans", "run_ids")
                .iterator()
            }
            new_runs: list = []
            new_logs: list = []
            now = datetime.now(UTC)
            trace_rows = []
            for trace_id in trace_ids:
                stored = known.get(trace_id)
                spans, count, runs, logs = derive(trace_id, stored[0] if stored else None)
                new_runs.extend(runs)
                new_logs.extend(logs)
                trace_rows.append((trace_id, spans, count, [run.id for run in runs], now))
            if known:
                old_runs = [run_id for _, ids in known.values() for run_id in ids]
                with connection.cursor() as cursor:
                    self._delete_runs(cursor, old_runs, runs_model, logs_model)
                self.filter(pk__in=list(known))._raw_delete(self.db)
            if postgres:
                self._copy_all(trace_rows, new_runs, new_logs, runs_model, logs_model)
                return
            self.bulk_create(
                [
                    self.model(trace_id=t, spans=s, span_count=c, run_ids=r, updated_at=u)
                    for t, s, c, r, u in trace_rows
                ],
                batch_size=500,
            )
            runs_model.objects.db_manager(self.db).bulk_create(
                [runs_model(**dataclass_fields(run)) for run in new_runs], batch_size=500
            )
            logs_model.objects.db_manager(self.db).bulk_create(
                [
                    logs_model(
                        run_id=log.run_id,
                        sequence=log.sequence,
                        event_type=log.event_type,
                        payload=log.payload,
                        created_at=log.created_at,
                    )
                    for log in new_logs
                ],
                batch_size=500,
            )

    def _delete_runs(self, cursor, run_ids, runs_model, logs_model) -> None:
        connection = connections[self.db]
        runs_table = connection.ops.quote_name(runs_model._meta.db_table)
        logs_table = connection.ops.quote_name(logs_model._meta.db_table)
        if connection.vendor == "postgresql":
            cursor.execute(f"DELETE FROM {logs_table} WHERE run_id = ANY(%s)", [run_ids])
            cursor.execute(f"DELETE FROM {runs_table} WHERE id = ANY(%s)", [run_ids])
            return
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"DELETE FROM {logs_table} WHERE run_id IN ({marks})", chunk)
            cursor.execute(f"DELETE FROM {runs_table} WHERE id IN ({marks})", chunk)

    def _copy_all(self, trace_rows, runs, logs, runs_model, logs_model) -> None:
        connection = connections[self.db]
        quote = connection.ops.quote_name
        dumps = copy_json
        with connection.cursor() as cursor, connection.wrap_database_errors:
            raw = cursor.cursor
            table = quote(self.model._meta.db_table)
            sql = f"COPY {table} (trace_id, spans, span_count, run_ids, updated_at) FROM STDIN"
            with raw.copy(sql) as copy:
                for trace_id, spans, count, ids, updated in trace_rows:
                    copy.write_row((trace_id, spans, count, dumps(ids), updated))
            if runs:
                columns = ", ".join(contract.RUN_FIELDS)
                sql = f"COPY {quote(runs_model._meta.db_table)} ({columns}) FROM STDIN"
                with raw.copy(sql) as copy:
                    for run in runs:
                        copy.write_row(
                            (
                                run.id,
                                run.skill_id,
                                run.caller_id,
                                run.channel_id,
                                dumps(run.inputs),
                                run.started_at,
                                run.finished_at,
                                run.status,
                                run.output,
                                run.error,
                                run.tool_calls_count,
                                run.runtime_seconds,
                                run.parent_run_id,
                                run.total_input_tokens,
                                run.total_output_tokens,
                                run.total_thinking_tokens,
                            )
                        )
            if logs:
                sql = (
                    f"COPY {quote(logs_model._meta.db_table)} "
                    "(run_id, sequence, event_type, payload, created_at) FROM STDIN"
                )
                with raw.copy(sql) as copy:
                    for log in logs:
                        copy.write_row(
                            (
                                log.run_id,
                                log.sequence,
                                log.event_type,
                                dumps(log.payload),
                                log.created_at,
                            )
                        )


def copy_json(value) -> str:
    """JSON text of a jsonb value for COPY: orjson, else json.dumps where orjson would not
    say the same thing.

    jsonb keeps the value, not the text, so orjson's spelling (no spaces, UTF-8 instead of
    \\u escapes, 1e16 for 1e+16) stores the same rows. orjson refuses what json.dumps may
    write (an integer beyond 64 bits, a lone surrogate, non-string keys, deep nesting) and
    writes null for NaN and the infinities, which json.dumps spells NaN / Infinity (refused
    by PostgreSQL: the trace is refused, as before, not stored with a null): those go
    through json.dumps. Measured on the OTLP bench's events (512 a request): 13.2 -> 4.3 ms
    of the server's CPU per 1,000 GenAI spans, 6.2 -> 0.8 for OpenInference.
    """
    try:
        text = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value)
    if b"null" in text:  # a None, or a float json.dumps would write otherwise
        return json.dumps(value)
    return text.decode()


def dataclass_fields(run) -> dict:
    return {name: getattr(run, name) for name in contract.RUN_FIELDS}


# --- export and import (runs.services.export and runs.services.importer) --------

# Every column of a run but inputs (read as JSON text beside them), in export order.
TRANSFER_RUN_FIELDS = (
    "id",
    "skill_id",
    "caller_id",
    "channel_id",
    "parent_run_id",
    "status",
    "started_at",
    "finished_at",
    "runtime_seconds",
    "tool_calls_count",
    "total_input_tokens",
    "total_output_tokens",
    "total_thinking_tokens",
    "output",
    "error",
)
# The CSV's columns: the list's summary, with the output and error cut to previews.
TRANSFER_SUMMARY_FIELDS = TRANSFER_RUN_FIELDS[:-2]
# SQLite refuses statements with more than 32,766 parameters; IN lists stay far below.
TRANSFER_IN_CHUNK = 2000
# Where run_batches(iso_times=True) puts the two times as text (next to each other).
TRANSFER_STARTED = TRANSFER_RUN_FIELDS.index("started_at")
TRANSFER_FINISHED = TRANSFER_RUN_FIELDS.index("finished_at")
assert TRANSFER_FINISHED == TRANSFER_STARTED + 1


def utc_iso(value: datetime | None) -> str | None:
    """An instant in UTC with microseconds and a Z (``2026-11-26T08:30:00.123456Z``): the
    one time format of the export (runs.services.export)."""
    if value is None:
        return None
    if value.utcoffset():
        value = value.astimezone(UTC)
    # isoformat is a fixed 26 characters before the offset (years 1-9999); about four
    # times faster than strftime.
    return value.isoformat(timespec="microseconds")[:26] + "Z"


class UtcIsoText(models.Func):
    """utc_iso() of a timestamptz column, formatted by PostgreSQL.

    psycopg turning a timestamptz into a datetime (Django's time zone loader) and Python
    formatting it again cost ~13 us of the exporting process per value, more than a third
    of the export's CPU; to_char costs the backend ~1 us (bench/export.py, 100k runs).
    """

    output_field = TextField()
    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


class PendingRows:
    """A batch of rows PostgreSQL has sent whole (the client holds the result) but nobody
    has yet turned into tuples. RunTransfer.run_batches(pending=True) hands these out so
    that the conversion runs in the consumer's thread while the reading thread waits on the
    next query (runs.services.export's read-ahead); fetch() once, or close()."""

    __slots__ = ("_cursor", "_order")

    def __init__(self, cursor, order: Callable | None) -> None:
        self._cursor = cursor
        self._order = order

    def fetch(self) -> list[tuple]:
        """The rows, as run_batches would have given them; closes the cursor."""
        try:
            rows = self._cursor.fetchall()
        finally:
            self._cursor.close()
        if self._order is not None:
            rows = list(map(self._order, rows))
        return rows

    def close(self) -> None:
        self._cursor.close()


class RunTransfer:
    """The reads and writes behind export and import, on the database ``using``.

    Reads stream in keyset batches (each one short index range scan in list order), not
    through one cursor: on PostgreSQL a server-side cursor outside a transaction is WITH
    HOLD, so the server materialises the whole result first, and one statement reading 1M
    runs would outlive statement_timeout. Memory stays one batch whatever the size.
    Writes are plain INSERTs (COPY for events on PostgreSQL) and UPDATEs of skill_runs, so
    the run-count triggers keep skill_run_counts exact; a batch is one transaction.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using

    @property
    def _runs(self):
        return self._run_model().objects.db_manager(self.using)

    @property
    def _logs(self):
        return self._run_model().logs.field.model.objects.db_manager(self.using)

    @staticmethod
    def _run_model():
        from django.apps import apps

        return apps.get_model("runs", "SkillRun")

    # --- reads ------------------------------------------------------------------------

    def run_batches(
        self,
        matching,
        batch_size: int,
        full: bool = True,
        iso_times: bool = False,
        pending: bool = False,
    ):
        """Rows of ``matching`` (a SkillRun queryset) newest first, in lists of at most
        ``batch_size`` tuples: TRANSFER_RUN_FIELDS + inputs text when ``full``, else
        TRANSFER_SUMMARY_FIELDS + output and error previews. With ``iso_times`` the
        started and finished times come as utc_iso() text (formatted by PostgreSQL).

        With ``pending`` (and ``iso_times``) on PostgreSQL each batch comes as a
        PendingRows, its tuples made by whoever calls fetch(): see PendingRows."""
        qs = matching.using(self.using).newest_first()
        in_database = iso_times and connections[self.using].vendor == "postgresql"
        if full:
            qs = qs.annotate(transfer_inputs=Cast("inputs", TextField()))
            columns = (*TRANSFER_RUN_FIELDS, "transfer_inputs")
        else:
            qs = qs.annotate(
                transfer_output=Substr("output", 1, PREVIEW_CHARS),
                transfer_error=Substr("error", 1, PREVIEW_CHARS),
            )
            columns = (*TRANSFER_SUMMARY_FIELDS, "transfer_output", "transfer_error")
        if in_database:
            qs = qs.annotate(
                transfer_started=UtcIsoText("started_at"),
                transfer_finished=UtcIsoText("finished_at"),
            )
            columns = (
                *columns[:TRANSFER_STARTED],
                "transfer_started",
                "transfer_finished",
                *columns[TRANSFER_FINISHED + 1 :],
            )
        started, finished = TRANSFER_STARTED, TRANSFER_FINISHED + 1
        if pending and in_database:
            yield from self._pending_batches(qs, columns, batch_size)
            return
        after = None
        while True:
            page = qs if after is None else qs.older_than(*after)
            rows = list(page.values_list(*columns)[:batch_size])
            full_batch = len(rows) == batch_size
            if full_batch:
                last = rows[-1][started]
                if in_database:
                    last = datetime.fromisoformat(last)  # the same microsecond, in UTC
                after = (last, rows[-1][0])
            if iso_times and not in_database:
                rows = [
                    (*row[:started], utc_iso(row[started]), utc_iso(row[started + 1]))
                    + row[finished:]
                    for row in rows
                ]
            if rows:
                yield rows
            if not full_batch:
                return

    def _pending_batches(self, qs, columns: tuple, batch_size: int):
        """run_batches(pending=True) on PostgreSQL: each keyset query sent through a cursor
        of its own, the next one as soon as this one's result has arrived. Its last key is
        read from the received result (one row scrolled to, not the whole batch turned into
        tuples), so PostgreSQL runs batch N+1's query while the consumer converts batch N.
        Measured before this (bench/export_reader.py, 100k runs), the reader spent ~20% of
        each batch converting rows while the backend sat idle, and the next query waited."""
        connection = connections[self.using]
        started = columns.index("transfer_started")
        order = None  # the select list's order, when Django's differs from ``columns``
        after = None
        while True:
            page = qs if after is None else qs.older_than(*after)
            sql, params = (
                page.values_list(*columns)[:batch_size].query.get_compiler(self.using).as_sql()
            )
            cursor = connection.cursor()
            try:
                cursor.execute(sql, params)
                if order is None:
                    names = [column.name for column in cursor.description]
                    order = (
                        False
                        if tuple(names) == columns
                        else operator.itemgetter(*(names.index(name) for name in columns))
                    )
                count = cursor.rowcount
                if count == batch_size:
                    cursor.scroll(count - 1, "absolute")
                    last = cursor.fetchone()
                    cursor.scroll(0, "absolute")
                    if order:
                        last = order(last)
                    # the same microsecond, in UTC
                    after = (datetime.fromisoformat(last[started]), last[0])
            except BaseException:
                cursor.close()
                raise
            if count:
                yield PendingRows(cursor, order or None)
            else:
                cursor.close()
            if count != batch_size:
                return

    def tree_positions(self, root_id: str, cap: int, max_depth: int) -> list[tuple]:
        """(started_at, id) of the runs in the call tree under root_id, oldest first; at
        most cap + 1 (the caller refuses a bigger tree)."""
        rows = self._runs.call_tree(root_id, cap, max_depth).values_list("started_at", "id")
        return sorted(rows)

    def runs_by_ids(self, run_ids: Sequence[str]) -> list[tuple]:
        """Full rows (as run_batches(full=True)) of these runs, in the order given."""
        found = {}
        for start in range(0, len(run_ids), TRANSFER_IN_CHUNK):
            chunk = list(run_ids[start : start + TRANSFER_IN_CHUNK])
            rows = (
                self._runs.filter(pk__in=chunk)
                .order_by()
                .annotate(transfer_inputs=Cast("inputs", TextField()))
                .values_list(*TRANSFER_RUN_FIELDS, "transfer_inputs")
            )
            found.update((row[0], row) for row in rows)
        return [found[run_id] for run_id in run_ids if run_id in found]

    def log_rows(self, run_ids: Sequence[str], limit: int) -> list[tuple] | None:
        """(run_id, sequence, event_type, created_at, payload text) of the events of these
        runs by run and sequence, or None when they are more than ``limit``."""
        rows = list(
            self._logs.filter(run_id__in=list(run_ids))
            .order_by("run_id", "sequence")
            .annotate(transfer_payload=Cast("payload", TextField()))
            .values_list("run_id", "sequence", "event_type", "created_at", "transfer_payload")[
                : limit + 1
            ]
        )
        return None if len(rows) > limit else rows

    def run_log_batches(self, run_id: str, batch_size: int):
        """One run's events as log_rows() gives them, in keyset batches by sequence."""
        qs = (
            self._logs.filter(run_id=run_id)
            .order_by("sequence")
            .annotate(transfer_payload=Cast("payload", TextField()))
        )
        after = None
        while True:
            page = qs if after is None else qs.filter(sequence__gt=after)
            rows = list(
                page.values_list(
                    "run_id", "sequence", "event_type", "created_at", "transfer_payload"
                )[:batch_size]
            )
            if rows:
                yield rows
            if len(rows) < batch_size:
                return
            after = rows[-1][1]

    def stored_runs(self, run_ids: Sequence[str]) -> dict[str, tuple]:
        """{id: full row} of those of these runs that are stored (to compare on import)."""
        return {row[0]: row for row in self.runs_by_ids(list(run_ids))}

    def stored_logs(self, run_ids: Sequence[str]) -> dict[str, list[tuple]]:
        """{run id: [(sequence, event_type, created_at, payload text), ...]} by sequence."""
        logs: dict[str, list[tuple]] = {run_id: [] for run_id in run_ids}
        for start in range(0, len(run_ids), TRANSFER_IN_CHUNK):
            chunk = list(run_ids[start : start + TRANSFER_IN_CHUNK])
            rows = (
                self._logs.filter(run_id__in=chunk)
                .order_by("run_id", "sequence")
                .annotate(transfer_payload=Cast("payload", TextField()))
                .values_list("run_id", "sequence", "event_type", "created_at", "transfer_payload")
            )
            for run_id, *rest in rows:
                logs[run_id].append(tuple(rest))
        return logs

    # --- writes -----------------------------------------------------------------------

    def write(
        self,
        new_runs: Sequence[contract.SkillRun],
        changed_runs: Sequence[tuple[contract.SkillRun, Sequence[str]]],
        logs: Sequence[contract.SkillRunLog],
        clear_logs_of: Sequence[str],
    ) -> None:
        """In one transaction: update ``changed_runs`` (the fields named beside each run),
        delete the events of ``clear_logs_of``, insert ``new_runs`` and then ``logs``.
        Everything is checked by the caller (contract rules); IntegrityError when a new
        run's id was stored meanwhile (nothing is then written)."""
        with transaction.atomic(using=self.using):
            for run, fields in changed_runs:
                self._runs.filter(pk=run.id).update(**{name: getattr(run, name) for name in fields})
            for start in range(0, len(clear_logs_of), TRANSFER_IN_CHUNK):
                chunk = list(clear_logs_of[start : start + TRANSFER_IN_CHUNK])
                self._logs.filter(run_id__in=chunk).delete_rows()
            model = self._run_model()
            self._runs.bulk_create(
                [
                    model(**{name: getattr(run, name) for name in (*TRANSFER_RUN_FIELDS, "inputs")})
                    for run in new_runs
                ],
                batch_size=500,
            )
            # append() locks the runs and writes with COPY on PostgreSQL; by run, so a
            # conflict names one run.
            for start in range(0, len(logs), 10_000):
                self._logs.append(logs[start : start + 10_000])


# --- search ----------------------------------------------------------------------


def _search_index():
    """The search index's SQL, defined once in its migration (see there for the why)."""
    import importlib

    return importlib.import_module("runs.migrations.0008_search_index")


# Above this many indexed rows (run texts + events) holding its rarest clause, a search
# walks the runs newest first and probes each one (~0.5 ms a run: its text and events
# re-read), instead of collecting every matching run first (a few us a row). Where the two
# cost the same depends on the history's size (~80k rows at 1M runs, ~25k at 100k);
# bench/search.py measures both sides.
SEARCH_SET_LIMIT = 50_000
SNIPPET_SOURCE_CHARS = 2000


class SearchSql:
    """The SQL of one search clause (runs.search.Clause) for one engine.

    ``matching_ids`` is the set of runs whose text or any event matches (driving a rare
    clause), ``run_matches`` a probe of one run of the outer query (skill_runs) for the
    others and for exclusions. The user's text reaches the database only as parameters:
    PostgreSQL gets the parts (letters and digits separated by spaces) for
    ``phraseto_tsquery``; SQLite gets one quoted FTS5 phrase of the parts.
    """

    def __init__(self, vendor: str):
        self.vendor = vendor
        m = _search_index()
        if vendor == "postgresql":
            # %% : these go into statements with parameters.
            self.run_raw = m.PG_RUN_TEXT.replace("%", "%%")
            self.log_raw = m.PG_LOG_RAW.replace("%", "%%")
            self.run_words = m.pg_words(m.PG_RUN_TEXT).replace("%", "%%")
            self.log_words = m.pg_words(m.PG_LOG_TEXT).replace("%", "%%")
            self.run_chars = m.PG_RUN_TEXT
            self.log_chars = m.PG_LOG_TEXT
            self.run_spaceless = m.pg_has_spaceless(m.PG_RUN_RAW)
            self.log_spaceless = m.pg_has_spaceless(m.PG_LOG_RAW)

    # -- PostgreSQL: the planner picks set or probe from the indexes' statistics --------

    def _pg_run_condition(self, clause) -> tuple[str, list]:
        if clause.substring:
            return f"({self.run_spaceless} AND {self.run_chars} ILIKE %s)", [_like(clause)]
        return f"({self.run_words} @@ phraseto_tsquery('simple', %s))", [clause.text]

    def _pg_log_condition(self, clause) -> tuple[str, list]:
        if clause.substring:
            return f"({self.log_spaceless} AND {self.log_chars} ILIKE %s)", [_like(clause)]
        return f"({self.log_words} @@ phraseto_tsquery('simple', %s))", [clause.text]

    def _pg_probe(self, condition: tuple[str, list], text: str, clause) -> tuple[str, list]:
        """``condition`` for a row tested one by one (not found through the index): first
        a cheap test that its text holds the parts (a word: ILIKE; a phrase: the parts
        next to each other, _pg_adjacent_parts), so most rows are never cut into words
        (to_tsvector: ~250 us for a 300-byte event under load, the test ~30 us). A common
        phrase's page at 100k runs: 3.8 s -> 0.56 s (EXPLAIN ANALYZE, load ~20; CPU
        figures in bench/RESULTS.md). Written first in an AND: PostgreSQL evaluates an
        expression's operands in order."""
        pattern = clause.containment_pattern
        if pattern is None:
            return condition
        where, params = condition
        if len(clause.parts) == 1:
            return f"({text} ILIKE %s AND {where})", [pattern, *params]
        return f"({text} ~* %s AND {where})", [_pg_adjacent_parts(clause), *params]

    # -- SQLite: FTS5 tables; rowid probes ----------------------------------------------

    def _fts(self, clause) -> tuple[str, str]:
        suffix = "_trigram" if clause.substring else ""
        return f"skill_run_search_runs{suffix}", f"skill_run_search_logs{suffix}"

    def matching_ids(self, clause) -> tuple[str, list]:
        if self.vendor == "postgresql":
            run_sql, run_params = self._pg_run_condition(clause)
            log_sql, log_params = self._pg_log_condition(clause)
            return (
                f"SELECT s.id FROM skill_runs s WHERE {run_sql} "
                f"UNION ALL SELECT l.run_id FROM skill_run_logs l WHERE {log_sql}",
                run_params + log_params,
            )
        runs, logs = self._fts(clause)
        phrase = _fts_phrase(clause)
        return (
            "SELECT run_id FROM skill_run_search_keys WHERE key IN "
            f"(SELECT rowid FROM {runs} WHERE {runs} MATCH %s) "
            "UNION ALL SELECT run_id FROM skill_run_logs WHERE id IN "
            f"(SELECT rowid FROM {logs} WHERE {logs} MATCH %s)",
            [phrase, phrase],
        )

    def run_matches(self, clause, outer: str = "skill_runs") -> tuple[str, list]:
        """True for the outer query's run when its text or one of its events matches."""
        if self.vendor == "postgresql":
            run_sql, run_params = self._pg_probe(
                self._pg_run_condition(clause), self.run_raw, clause
            )
            log_sql, log_params = self._pg_probe(
                self._pg_log_condition(clause), self.log_raw, clause
            )
            # OFFSET 0 keeps the probe a probe: without it the planner may turn the EXISTS
            # into a hashed subplan, collecting every matching event first (a common
            # phrase: 20 s at 100k runs instead of walking a few hundred runs).
            return (
                f"({run_sql} OR EXISTS (SELECT 1 FROM skill_run_logs l "
                f"WHERE l.run_id = {outer}.id AND {log_sql} OFFSET 0))",
                run_params + log_params,
            )
        runs, logs = self._fts(clause)
        phrase = _fts_phrase(clause)
        return (
            f"(EXISTS (SELECT 1 FROM {runs} WHERE {runs} MATCH %s AND rowid = "
            f"(SELECT key FROM skill_run_search_keys WHERE run_id = {outer}.id)) "
            f"OR EXISTS (SELECT 1 FROM skill_run_logs l WHERE l.run_id = {outer}.id AND "
            f"EXISTS (SELECT 1 FROM {logs} WHERE {logs} MATCH %s AND rowid = l.id)))",
            [phrase, phrase],
        )

    def log_matches(self, clause) -> tuple[str, list]:
        """True for an event (alias l) that matches, tested row by row."""
        if self.vendor == "postgresql":
            return self._pg_probe(self._pg_log_condition(clause), self.log_raw, clause)
        _runs, logs = self._fts(clause)
        return (
            f"EXISTS (SELECT 1 FROM {logs} WHERE {logs} MATCH %s AND rowid = l.id)",
            [_fts_phrase(clause)],
        )

    def estimate(self, cursor, clause) -> int:
        """About how many indexed rows (run texts and events) hold the clause.

        PostgreSQL: the planner's row estimates for the clause on each table (from the
        expression indexes' statistics; no row is read). SQLite: at most how many hold
        its rarest word or, for a substring, its rarest trigram, from the fts5vocab
        tables: one probe per word."""
        if self.vendor == "postgresql":
            total = 0
            for table, (where, params) in (
                ("skill_runs", self._pg_run_condition(clause)),
                ("skill_run_logs", self._pg_log_condition(clause)),
            ):
                cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {table} WHERE {where}", params)
                plan = cursor.fetchone()[0]
                plan = json.loads(plan) if isinstance(plan, str) else plan
                total += int(plan[0]["Plan"]["Plan Rows"])
            return total
        if clause.substring:
            text = clause.text
            terms = {text[i : i + 3] for i in range(len(text) - 2)}
            tables = ("skill_run_search_runs_trigram_vocab", "skill_run_search_logs_trigram_vocab")
        else:
            terms = set(clause.parts)
            tables = ("skill_run_search_runs_vocab", "skill_run_search_logs_vocab")
        counts = []
        for term in terms:
            total = 0
            for table in tables:
                cursor.execute(f"SELECT doc FROM {table} WHERE term = %s", [term])
                row = cursor.fetchone()
                total += row[0] if row else 0
            counts.append(total)
        return min(counts) if counts else 0


def _fts_phrase(clause) -> str:
    # The parts are letters and digits only (runs.search.split_parts): quoting them makes
    # one FTS5 phrase, and no character of the user's reaches FTS5's query syntax.
    return '"' + clause.text.replace('"', '""') + '"'


def _pg_adjacent_parts(clause) -> str:
    """A PostgreSQL regex (case-insensitive with ~*) that every text holding the phrase
    ``clause`` also holds: its parts in order with only separators between them (not
    letters or digits, or a JSON escape of a newline, tab or return, which the words'
    text makes a space). Tighter than the parts in any order: a common phrase's probes
    then cut into words almost only the texts that hold it (at 100k runs, 12% of events
    hold "token" then "expired" somewhere, 0.3% the phrase)."""
    return r"(\\[ntr]|[^[:alnum:]])+".join(clause.parts)


def _like(clause) -> str:
    text = clause.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{text}%"


def _readable_json(text: str) -> str:
    """JSON text as a person reads it: escapes decoded (SQLite stores \\uXXXX), for snippets."""

    def decode(match):
        escape = match.group(1)
        if escape[0] == "u":
            return chr(int(escape[1:], 16))
        return {"n": " ", "t": " ", "r": " ", "b": " ", "f": " "}.get(escape, escape)

    import re

    decoded = re.sub(r"\\(u[0-9a-fA-F]{4}|.)", decode, text)
    # Pairs of \uD8xx\uDCxx escapes become one character; a lone half stays U+FFFD.
    return decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# --- month partitions of skill_run_logs (PostgreSQL, opt-in: manage.py partition_history) ---

LOGS_VIEW = "skill_run_logs"
LOGS_BY_MONTH = "skill_run_logs_by_month"
LOGS_UNPARTITIONED = "skill_run_logs_unpartitioned"
LOGS_KEY = "run_started_at"
MONTH_PREFIX = "skill_run_logs_m"


def log_tables(connection) -> list[str]:
    """The tables that hold skill_run_logs' rows, for a migration's DDL on it (triggers,
    indexes, columns): ["skill_run_logs"] as migrated; with month partitions
    (LogPartitions) skill_run_logs is a view, and a trigger or index goes on
    skill_run_logs_by_month (PostgreSQL passes both on to every month), plus the old table
    while a conversion is moving rows. The rule for every migration that touches
    skill_run_logs on PostgreSQL: ``for table in log_tables(schema_editor.connection):``.
    A database converted after the migration needs nothing: the conversion carries every
    trigger and index of the plain table over (LogPartitions.setup)."""
    if connection.vendor != "postgresql":
        return [LOGS_VIEW]
    state = LogPartitions(connection.alias).state()
    if state == "plain":
        return [LOGS_VIEW]
    return [LOGS_BY_MONTH] + ([LOGS_UNPARTITIONED] if state == "migrating" else [])


def _month_start(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return datetime(value.year, value.month, 1, tzinfo=UTC)


def _next_month(value: datetime) -> datetime:
    return value.replace(year=value.year + value.month // 12, month=value.month % 12 + 1)


class LogPartitions:
    """Skill_run_logs partitioned by month of its run's start, on PostgreSQL (opt-in).

    Layout once converted (``manage.py partition_history``):
    - ``skill_run_logs_by_month``: the rows, with one more column, ``run_started_at`` (the
      run's started_at), RANGE-partitioned on it: ``skill_run_logs_mYYYYMM`` per UTC month
      and a DEFAULT partition for runs outside the months created (kept empty in practice:
      ``ensure_months`` makes the coming months ahead of time). Its unique keys carry the
      partition key, as PostgreSQL requires: (id, run_started_at) and (run_id, sequence,
      run_started_at). Since run_started_at is a function of run_id (triggers below keep
      it so), (run_id, sequence) stays unique across partitions: a duplicate lands in the
      same partition as its twin and fails the same way (IntegrityError -> Conflict).
    - ``skill_run_logs``: a view of the original columns. Every reader (the ORM, the
      Go executor's SELECTs, raw SQL in this module) reads it unchanged; DELETE goes
      through it (a simple view is updatable); INSERT and UPDATE go through INSTEAD OF
      triggers that fill run_started_at from the run. The key cannot be filled by a
      BEFORE trigger on the partitioned table: PostgreSQL routes a row to its partition
      before such a trigger runs and refuses to move it afterwards. A view also takes COPY.
    - the foreign key to skill_runs becomes triggers: the insert trigger reads the run
      FOR KEY SHARE (the lock the foreign key took) and raises foreign_key_violation when
      it is missing; deleting runs deletes their logs (statement trigger, a join on the
      partition key so each run's logs are looked up in one partition); TRUNCATE
      skill_runs empties the logs; changing a run's started_at moves its logs. A foreign
      key from a partitioned table would pin the test runner's TRUNCATE of skill_runs and
      check every partition on each deleted run.
    - every trigger that was on skill_run_logs (run counts, search, failure roll-ups,
      whatever another migration added) is recreated on skill_run_logs_by_month from
      pg_get_triggerdef, and every index from pg_get_indexdef: nothing is hard-coded.
    Retention drops whole months (``drop_months_before``): no row-by-row DELETE, no
    dead tuples, no vacuum debt.
    """

    def __init__(self, using: str = "default"):
        self.using = using
        self.connection = connections[using]

    # --- state -----------------------------------------------------------------------

    def _relkind(self, cursor, name: str) -> str | None:
        cursor.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = %s",
            [name],
        )
        row = cursor.fetchone()
        return row[0] if row else None

    def state(self) -> str:
        """The layout: "plain", "migrating" (rows still to move) or "partitioned"."""
        if self.connection.vendor != "postgresql":
            return "plain"
        with self.connection.cursor() as cursor:
            if self._relkind(cursor, LOGS_BY_MONTH) != "p":
                return "plain"
            if self._relkind(cursor, LOGS_UNPARTITIONED) is not None:
                return "migrating"
            return "partitioned"

    def logs_delete(
        self, cursor, run_ids: list[str], started: tuple[datetime, datetime] | None
    ) -> tuple[str, list] | None:
        """The DELETE of these runs' logs that reads only the months of ``started`` (the
        first and last started_at of the runs), as (sql, params); None unless the logs are
        partitioned (the caller deletes through skill_run_logs then).

        Through the view a ``run_id = ANY(...)`` DELETE cannot prune: it probes the run_id
        index of every month for every id. The partition key range (the batch's runs are
        locked, so their started_at cannot move) lets the planner keep only the months it
        spans: one, for a purge's oldest-first batches.
        """
        if started is None or self.connection.vendor != "postgresql":
            return None
        cursor.execute(
            "SELECT c.relkind = 'p' AND to_regclass(%s) IS NULL FROM pg_class c "
            "WHERE c.oid = to_regclass(%s)",
            [LOGS_UNPARTITIONED, LOGS_BY_MONTH],
        )
        row = cursor.fetchone()
        if not (row and row[0]):
            return None
        return (
            f"DELETE FROM {LOGS_BY_MONTH} WHERE run_id = ANY(%s) AND {LOGS_KEY} BETWEEN %s AND %s",
            [run_ids, *started],
        )

    def partitions(self) -> list[tuple[str, datetime | None, datetime | None, int]]:
        """(name, from, to, estimated rows) of each partition, oldest first; the DEFAULT
        partition has no bounds."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, greatest(c.reltuples, 0)::bigint FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass "
                "ORDER BY c.relname",
                [LOGS_BY_MONTH],
            )
            rows = cursor.fetchall()
        found = []
        for name, estimate in rows:
            digits = name.removeprefix(MONTH_PREFIX)
            if not (len(digits) == 6 and digits.isdigit()):
                found.append((name, None, None, estimate))  # the DEFAULT partition
                continue
            start = datetime(int(digits[:4]), int(digits[4:]), 1, tzinfo=UTC)
            found.append((name, start, _next_month(start), estimate))
        return found

    # --- conversion --------------------------------------------------------------------

    def _columns(self, cursor, table: str) -> list[tuple[str, str | None]]:
        """(name, default expression) of a table's columns, in order."""
        cursor.execute(
            "SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [table],
        )
        return cursor.fetchall()

    def setup(self, months_ahead: int = 3) -> None:
        """Create the partitioned table, its months, indexes and triggers, and put the view
        in place over the new table and the old one (renamed): every row stays readable
        and writable while ``move_batch`` moves the old rows. One transaction."""
        if self.connection.vendor != "postgresql":
            raise ValueError("month partitions need PostgreSQL")
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            if self._relkind(cursor, LOGS_VIEW) != "r":
                raise ValueError(f"{LOGS_VIEW} is not a plain table: already converted?")
            # Writers wait for this transaction: it only creates empty objects.
            cursor.execute("SET LOCAL statement_timeout = 0")
            cursor.execute(f"LOCK TABLE {LOGS_VIEW} IN ACCESS EXCLUSIVE MODE")
            cursor.execute(
                f"CREATE TABLE {LOGS_BY_MONTH} (LIKE {LOGS_VIEW} INCLUDING DEFAULTS "
                f"INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING STORAGE, "
                f"{LOGS_KEY} timestamptz NOT NULL) PARTITION BY RANGE ({LOGS_KEY})"
            )
            cursor.execute(
                f"CREATE TABLE {MONTH_PREFIX}default PARTITION OF {LOGS_BY_MONTH} DEFAULT"
            )
            # One partition per month holding runs, plus the months ahead.
            cursor.execute(
                "SELECT DISTINCT date_trunc('month', started_at AT TIME ZONE 'UTC') FROM skill_runs"
            )
            months = {m.replace(tzinfo=UTC) for (m,) in cursor.fetchall()}
            for month in sorted(months):
                self._create_month(cursor, month)
            self._copy_indexes(cursor)
            self._copy_triggers(cursor)
            # New ids continue the old sequence.
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{LOGS_BY_MONTH}', 'id'), "
                f"greatest((SELECT last_value FROM {self._old_sequence(cursor)}), "
                f"(SELECT coalesce(max(id), 0) FROM {LOGS_VIEW})) + 1, false)"
            )
            cursor.execute(f"ALTER TABLE {LOGS_VIEW} RENAME TO {LOGS_UNPARTITIONED}")
            self._install_view(cursor, migrating=True)
            self._install_run_triggers(cursor)
        self.ensure_months(months_ahead)

    def _old_sequence(self, cursor) -> str:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [LOGS_VIEW])
        return cursor.fetchone()[0]

    def _create_month(self, cursor, month: datetime) -> bool:
        """Whether the month's partition was created: not when it exists, nor when the
        DEFAULT partition holds rows of that month (a run recorded before its month had
        a partition): those stay there, purged by batches, and the month is skipped."""
        from django.db import DatabaseError

        name = f"{MONTH_PREFIX}{month:%Y%m}"
        if self._relkind(cursor, name) is not None:
            return False
        try:
            with transaction.atomic(using=self.using):
                cursor.execute(
                    f"CREATE TABLE {name} PARTITION OF {LOGS_BY_MONTH} "
                    "FOR VALUES FROM (%s) TO (%s)",
                    [month, _next_month(month)],
                )
        except DatabaseError:
            return False
        return True

    def _copy_indexes(self, cursor) -> None:
        """Every index of the plain table on the partitioned one; unique ones get the
        partition key appended (PostgreSQL requires it; see the class docstring)."""
        cursor.execute(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid), x.indisunique, x.indisprimary, "
            "x.indexprs IS NULL AND x.indpred IS NULL, "
            "ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o) "
            "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o)"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass",
            [LOGS_VIEW],
        )
        for name, definition, unique, primary, plain, columns in cursor.fetchall():
            new_name = self._new_name(name)
            keyed = ", ".join([*(f'"{c}"' for c in columns), LOGS_KEY])
            if primary:
                cursor.execute(
                    f"ALTER TABLE {LOGS_BY_MONTH} ADD CONSTRAINT {new_name} PRIMARY KEY ({keyed})"
                )
            elif unique:
                if not plain:
                    raise ValueError(f"unique index {name} on expressions: cannot partition it")
                cursor.execute(
                    f"ALTER TABLE {LOGS_BY_MONTH} ADD CONSTRAINT {new_name} UNIQUE ({keyed})"
                )
            else:
                head, _, tail = definition.partition(f" ON public.{LOGS_VIEW} ")
                if not tail:
                    head, _, tail = definition.partition(f" ON {LOGS_VIEW} ")
                head = head.replace(f"INDEX {name}", f"INDEX {new_name}", 1)
                cursor.execute(f"{head} ON {LOGS_BY_MONTH} {tail}")

    @staticmethod
    def _new_name(name: str) -> str:
        return f"{name[:56]}_pm"

    def _copy_triggers(self, cursor) -> None:
        cursor.execute(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY tgname",
            [LOGS_VIEW],
        )
        for _name, definition in cursor.fetchall():
            for table in (f" ON public.{LOGS_VIEW} ", f" ON {LOGS_VIEW} "):
                if table in definition:
                    definition = definition.replace(table, f" ON {LOGS_BY_MONTH} ", 1)
                    break
            cursor.execute(definition)

    def _install_view(self, cursor, migrating: bool) -> None:
        """The view and its INSTEAD OF triggers; while migrating, over both tables."""
        columns = [name for name, _ in self._columns(cursor, LOGS_BY_MONTH) if name != LOGS_KEY]
        listed = ", ".join(f'"{c}"' for c in columns)
        new_values = ", ".join(f'NEW."{c}"' for c in columns)
        assignments = ", ".join(f'"{c}" = NEW."{c}"' for c in columns)
        source = f"SELECT {listed} FROM {LOGS_BY_MONTH}"
        if migrating:
            source += f" UNION ALL SELECT {listed} FROM {LOGS_UNPARTITIONED}"
        cursor.execute(f"DROP VIEW IF EXISTS {LOGS_VIEW}")
        cursor.execute(f"CREATE VIEW {LOGS_VIEW} AS {source}")
        # The view's columns default as the table's did (an INSERT naming only some works).
        for name, default in self._columns(cursor, LOGS_BY_MONTH):
            if name == "id":
                default = f"nextval(pg_get_serial_sequence('{LOGS_BY_MONTH}', 'id'))"
            if default is not None and name != LOGS_KEY:
                cursor.execute(
                    f'ALTER VIEW {LOGS_VIEW} ALTER COLUMN "{name}" SET DEFAULT {default}'
                )
        # INSERT (and COPY) through the view: each row is buffered in a temporary table by
        # the INSTEAD OF row trigger, and the statement's AFTER trigger files them all with
        # one INSERT ... SELECT joined to their runs. One statement, so the statement-level
        # triggers carried over to the partitioned table fire once per statement as they
        # did on the plain table (per row they cost ~5 ms each: 2,000 rows took 11 s).
        pending = "pg_temp.skill_run_logs_pending"
        duplicate_check = (
            f"IF EXISTS (SELECT 1 FROM {pending} p JOIN {LOGS_UNPARTITIONED} o ON "
            "o.run_id = p.run_id AND o.sequence = p.sequence) THEN RAISE unique_violation "
            "USING MESSAGE = 'duplicate key value violates unique constraint "
            "\"run_logs_run_sequence\"', CONSTRAINT = 'run_logs_run_sequence'; END IF;"
            if migrating
            else ""
        )
        pending_listed = ", ".join(f'p."{c}"' for c in columns)
        cursor.execute(
            "CREATE OR REPLACE FUNCTION skill_run_logs_view_begin() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"IF to_regclass('{pending}') IS NULL THEN "
            f"CREATE TEMPORARY TABLE skill_run_logs_pending ON COMMIT DELETE ROWS AS "
            f"SELECT {listed} FROM {LOGS_BY_MONTH} WITH NO DATA; END IF; RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE OR REPLACE FUNCTION skill_run_logs_view_insert() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN INSERT INTO {pending} ({listed}) "
            f"VALUES ({new_values}); RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE OR REPLACE FUNCTION skill_run_logs_view_flush() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ DECLARE missing text; BEGIN "
            # The runs locked as the foreign key's check did (FOR KEY SHARE), missing ones
            # refused with its error.
            f"PERFORM 1 FROM skill_runs r WHERE r.id IN (SELECT run_id FROM {pending}) "
            "FOR KEY SHARE; "
            f"SELECT p.run_id INTO missing FROM {pending} p WHERE NOT EXISTS "
            "(SELECT 1 FROM skill_runs r WHERE r.id = p.run_id) LIMIT 1; "
            "IF FOUND THEN RAISE foreign_key_violation USING MESSAGE = format("
            "'insert or update on skill_run_logs: run %L is not in skill_runs', missing); "
            f"END IF; {duplicate_check} "
            f"INSERT INTO {LOGS_BY_MONTH} ({listed}, {LOGS_KEY}) SELECT {pending_listed}, "
            f"r.started_at FROM {pending} p JOIN skill_runs r ON r.id = p.run_id; "
            f"DELETE FROM {pending}; RETURN NULL; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER skill_run_logs_view_begin BEFORE INSERT ON {LOGS_VIEW} "
            "FOR EACH STATEMENT EXECUTE FUNCTION skill_run_logs_view_begin()"
        )
        cursor.execute(
            f"CREATE TRIGGER skill_run_logs_view_flush AFTER INSERT ON {LOGS_VIEW} "
            "FOR EACH STATEMENT EXECUTE FUNCTION skill_run_logs_view_flush()"
        )
        lookup = (
            "SELECT started_at INTO started FROM skill_runs WHERE id = NEW.run_id FOR KEY SHARE; "
            "IF NOT FOUND THEN RAISE foreign_key_violation USING MESSAGE = format("
            "'insert or update on skill_run_logs: run %L is not in skill_runs', NEW.run_id); "
            "END IF;"
        )
        old_update = (
            f"UPDATE {LOGS_UNPARTITIONED} SET {assignments} WHERE id = OLD.id;" if migrating else ""
        )
        cursor.execute(
            "CREATE OR REPLACE FUNCTION skill_run_logs_view_update() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ DECLARE started timestamptz; BEGIN "
            f"{lookup} "
            f"UPDATE {LOGS_BY_MONTH} SET {assignments}, {LOGS_KEY} = started WHERE id = OLD.id;"
            f" {old_update} RETURN NEW; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER skill_run_logs_view_insert INSTEAD OF INSERT ON {LOGS_VIEW} "
            "FOR EACH ROW EXECUTE FUNCTION skill_run_logs_view_insert()"
        )
        cursor.execute(
            f"CREATE TRIGGER skill_run_logs_view_update INSTEAD OF UPDATE ON {LOGS_VIEW} "
            "FOR EACH ROW EXECUTE FUNCTION skill_run_logs_view_update()"
        )
        if migrating:  # a UNION view is not updatable by itself
            cursor.execute(
                "CREATE OR REPLACE FUNCTION skill_run_logs_view_delete() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN DELETE FROM {LOGS_BY_MONTH} WHERE id = OLD.id; "
                f"DELETE FROM {LOGS_UNPARTITIONED} WHERE id = OLD.id; RETURN OLD; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER skill_run_logs_view_delete INSTEAD OF DELETE ON {LOGS_VIEW} "
                "FOR EACH ROW EXECUTE FUNCTION skill_run_logs_view_delete()"
            )

    def refresh(self) -> None:
        """Once partitioned: the triggers on skill_runs that stand in for the foreign key,
        reinstalled as this version of the code writes them (``manage.py partition_history``
        on a partitioned database does it, so a database converted by an older version
        gets the pruning cascade)."""
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '10s'")
            self._install_run_triggers(cursor)

    def _install_run_triggers(self, cursor) -> None:
        """The foreign key's duties, as triggers on skill_runs (see the class docstring)."""
        # One statement (the carried-over statement triggers fire once), as index probes
        # on run_id: a join would let the planner hash-join every partition whole. The
        # partition key's range (the deleted runs' first and last started_at, passed as
        # values) prunes the months no deleted run started in: a purge batch's runs lie
        # in one month, so its cascade reads one partition, not all of them; as a
        # condition alone (no run_id) the same range made the planner walk the primary key.
        cursor.execute(
            "CREATE OR REPLACE FUNCTION skill_run_logs_cascade() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ DECLARE first_start timestamptz; last_start timestamptz; "
            "BEGIN SELECT min(started_at), max(started_at) INTO first_start, last_start "
            "FROM gone_runs; IF first_start IS NULL THEN RETURN NULL; END IF; "
            f"DELETE FROM {LOGS_BY_MONTH} WHERE run_id = ANY (ARRAY(SELECT id FROM gone_runs)) "
            f"AND {LOGS_KEY} BETWEEN first_start AND last_start; RETURN NULL; END $$"
        )
        cursor.execute("DROP TRIGGER IF EXISTS skill_run_logs_cascade ON skill_runs")
        cursor.execute(
            "CREATE TRIGGER skill_run_logs_cascade AFTER DELETE ON skill_runs "
            "REFERENCING OLD TABLE AS gone_runs FOR EACH STATEMENT "
            "EXECUTE FUNCTION skill_run_logs_cascade()"
        )
        cursor.execute(
            "CREATE OR REPLACE FUNCTION skill_run_logs_truncate() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN TRUNCATE {LOGS_BY_MONTH}; RETURN NULL; END $$"
        )
        cursor.execute("DROP TRIGGER IF EXISTS skill_run_logs_truncate ON skill_runs")
        cursor.execute(
            "CREATE TRIGGER skill_run_logs_truncate AFTER TRUNCATE ON skill_runs "
            "FOR EACH STATEMENT EXECUTE FUNCTION skill_run_logs_truncate()"
        )
        cursor.execute(
            "CREATE OR REPLACE FUNCTION skill_run_logs_follow_run() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "IF OLD.id IS DISTINCT FROM NEW.id AND EXISTS (SELECT 1 FROM "
            f"{LOGS_BY_MONTH} WHERE run_id = OLD.id AND {LOGS_KEY} = OLD.started_at) THEN "
            "RAISE foreign_key_violation USING MESSAGE = format("
            "'run %L still has logs in skill_run_logs', OLD.id); END IF; "
            f"UPDATE {LOGS_BY_MONTH} SET {LOGS_KEY} = NEW.started_at "
            f"WHERE run_id = OLD.id AND {LOGS_KEY} = OLD.started_at; RETURN NULL; END $$"
        )
        cursor.execute("DROP TRIGGER IF EXISTS skill_run_logs_follow_run ON skill_runs")
        cursor.execute(
            "CREATE TRIGGER skill_run_logs_follow_run AFTER UPDATE OF id, started_at "
            "ON skill_runs FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR "
            "OLD.started_at IS DISTINCT FROM NEW.started_at) "
            "EXECUTE FUNCTION skill_run_logs_follow_run()"
        )

    def move_batch(self, batch_size: int = 20_000) -> int:
        """Move the oldest ``batch_size`` rows of the old table into their months, in one
        transaction; returns how many moved (0: none left). Killed at any moment, every row
        is in exactly one of the two tables.

        The carried-over triggers must not see a move as a new event (the failure roll-ups
        would count it twice): the transaction runs with session_replication_role =
        replica, which needs a superuser or, on PostgreSQL 15, GRANT SET ON PARAMETER
        session_replication_role to the role.
        """
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            if self._relkind(cursor, LOGS_UNPARTITIONED) is None:
                return 0  # converted already
            # A batch job, not a request: no STATEMENT_TIMEOUT_MS cut-off.
            cursor.execute("SET LOCAL statement_timeout = 0")
            cursor.execute("SET LOCAL session_replication_role = replica")
            columns = [name for name, _ in self._columns(cursor, LOGS_UNPARTITIONED)]
            listed = ", ".join(f'"{c}"' for c in columns)
            moved_listed = ", ".join(f'm."{c}"' for c in columns)
            cursor.execute(
                f"WITH batch AS (SELECT id FROM {LOGS_UNPARTITIONED} ORDER BY id LIMIT %s "
                f"FOR UPDATE), moved AS (DELETE FROM {LOGS_UNPARTITIONED} o USING batch b "
                f"WHERE o.id = b.id RETURNING o.*), placed AS (INSERT INTO {LOGS_BY_MONTH} "
                f"({listed}, {LOGS_KEY}) SELECT {moved_listed}, r.started_at FROM moved m "
                "JOIN skill_runs r ON r.id = m.run_id RETURNING 1) "
                "SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM placed)",
                [batch_size],
            )
            moved, placed = cursor.fetchone()
            if moved != placed:
                raise IntegrityError(f"{moved - placed} logs have no run: nothing moved")
        return moved

    def rows_to_move(self) -> bool:
        with self.connection.cursor() as cursor:
            if self._relkind(cursor, LOGS_UNPARTITIONED) is None:
                return False
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {LOGS_UNPARTITIONED})")
            return cursor.fetchone()[0]

    def remaining(self) -> int:
        with self.connection.cursor() as cursor:
            if self._relkind(cursor, LOGS_UNPARTITIONED) is None:
                return 0
            cursor.execute(
                "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass",
                [LOGS_UNPARTITIONED],
            )
            return cursor.fetchone()[0]

    def finish(self) -> None:
        """Once the old table is empty: drop it, and make the view a plain one over the
        partitioned table (updatable, so DELETE reaches the partitions with pruning)."""
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {LOGS_UNPARTITIONED} IN ACCESS EXCLUSIVE MODE")
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {LOGS_UNPARTITIONED})")
            if cursor.fetchone()[0]:
                raise ValueError("rows are left to move: run move_batch first")
            cursor.execute(
                "SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                "WHERE x.indrelid = %s::regclass",
                [LOGS_UNPARTITIONED],
            )
            names = [name for (name,) in cursor.fetchall()]
            cursor.execute(f"DROP VIEW {LOGS_VIEW}")
            cursor.execute(f"DROP TABLE {LOGS_UNPARTITIONED}")
            cursor.execute("DROP FUNCTION IF EXISTS skill_run_logs_view_delete()")
            # The indexes get their old names back (code refers to some by name).
            for name in names:
                cursor.execute(
                    "SELECT c.conname FROM pg_constraint c WHERE c.conrelid = %s::regclass "
                    "AND c.conname = %s",
                    [LOGS_BY_MONTH, self._new_name(name)],
                )
                if cursor.fetchone():
                    cursor.execute(
                        f"ALTER TABLE {LOGS_BY_MONTH} RENAME CONSTRAINT "
                        f"{self._new_name(name)} TO {name}"
                    )
                else:
                    cursor.execute(f"ALTER INDEX IF EXISTS {self._new_name(name)} RENAME TO {name}")
            self._install_view(cursor, migrating=False)

    # --- upkeep ------------------------------------------------------------------------

    def ensure_months(
        self, months_ahead: int = 3, now: datetime | None = None, months_back: int = 0
    ) -> list[str]:
        """Create the partitions of this month and the next ``months_ahead`` ones (and the
        past ``months_back``); returns the names created. Run from the purge's cron line
        (purge_runs does it)."""
        created = []
        month = _month_start(now or datetime.now(UTC))
        for _ in range(months_back):
            month = (month - timedelta(days=1)).replace(day=1)
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            # A short wait for the lock, never a queue of blocked writers behind it.
            cursor.execute("SET LOCAL lock_timeout = '5s'")
            for _ in range(months_back + months_ahead + 1):
                if self._create_month(cursor, month):
                    created.append(f"skill_run_logs_m{month:%Y%m}")
                month = _next_month(month)
        return created

    def drop_months_before(self, cutoff: datetime) -> list[tuple[str, int]]:
        """Drop every month partition that ends at or before ``cutoff``: all its logs belong
        to runs started before it. Returns (partition, rows dropped). The runs themselves
        are deleted afterwards by purge_batch, which then finds no logs to
        delete. Each drop is its own short transaction (an ACCESS EXCLUSIVE lock on the
        parent for a moment; lock_timeout keeps it from queueing writers for long).

        A month is never read: its rows are PostgreSQL's estimate (the planner's own:
        rows per page at the last VACUUM or ANALYZE times the pages it has now; autovacuum
        analyzes a partition once 10% of it changed, so the figure is within a few
        percent). An exact count(*) walked the whole month at ~1M rows/s under load,
        which was most of the drop's time (bench/RESULTS.md, "Month partitions"); a DROP
        itself costs the same for 1 row as for 10M. A month never analyzed (small, or
        just filled) is counted exactly.
        """
        dropped = []
        for name, _start, end, _estimate in self.partitions():
            if end is None or end > cutoff:
                continue
            with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '10s'")
                cursor.execute(
                    "SELECT CASE WHEN c.reltuples < 0 THEN -1 WHEN c.relpages = 0 THEN "
                    "c.reltuples ELSE c.reltuples / c.relpages * (pg_relation_size(c.oid) / "
                    "current_setting('block_size')::int) END::bigint FROM pg_class c "
                    "WHERE c.oid = %s::regclass",
                    [name],
                )
                rows = cursor.fetchone()[0]
                if rows < 0:  # never analyzed: small, or just filled
                    cursor.execute("SET LOCAL statement_timeout = 0")
                    cursor.execute(f"SELECT count(*) FROM {name}")
                    rows = cursor.fetchone()[0]
                cursor.execute(f"DROP TABLE {name}")
            dropped.append((name, rows))
        return dropped


# --- trends and cost: the stats buckets (migration 0012) --------------------------------

# Runtime histogram bins: bin b holds runtimes in [RATIO**b, RATIO**(b+1)) seconds, so a
# bin's geometric midpoint is within sqrt(1.1) - 1 = 4.88% of any runtime in it. Bins are
# clamped to +-RUNTIME_BIN_LIMIT (1.1**400 s is 10**16 s); runtimes of 0 or less, and
# NaN on SQLite (stored as NULL), go to ZERO_RUNTIME_BIN, read back as 0 seconds.
RUNTIME_BIN_RATIO = 1.1
RUNTIME_BIN_LIMIT = 400
ZERO_RUNTIME_BIN = -32768
# Token counts read from a step payload: a JSON number from 0 to 10**15, else 0 (a payload
# written by another program may hold anything; a trigger must never fail the write).
MAX_STEP_TOKENS = 10**15
MODEL_NAME_MAX_LENGTH = 255
# The runtime percentiles the stats read (nearest rank), in percent.
STATS_PERCENTILES = (50, 95)
USAGE_TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "thinking_tokens")
RUN_TOKENS = ("input_tokens", "output_tokens", "thinking_tokens")
USAGE_SUMS = "SUM(runs), SUM(steps), " + ", ".join(f"SUM({t})" for t in USAGE_TOKENS)
# Day blocks (migration 0018): per skill, the per-skill buckets also hold rows of 4 and 16
# whole UTC days (span 'd4', 'd16'), aligned on 1970-01-01 (a block starts on a day whose
# number since then is a multiple of its length), each the sum of its days' rows. A
# window's whole days are read as the fewest aligned blocks (SkillRunStatManager.
# _skill_window): 30 days are ~8 rows per skill and status, bin or model instead of 30.
# Two lengths keep a write's extra rows at two per table (a run's insert or finish
# upserted 2 per-skill rows per table, now 4).
STATS_BLOCK_DAYS = (16, 4)
STATS_DAY_SPANS = ("day", *(f"d{n}" for n in STATS_BLOCK_DAYS))


class StatsRows(NamedTuple):
    """SkillRunStatManager.bucket_rows' answer: its three row lists, and how many skills
    with runs in the window were left out of them by ``skill_limit`` (the ranking done in
    the database; 0 when every skill's runs rows are there)."""

    runs: list[tuple]
    runtimes: list[tuple]
    usage: list[tuple]
    skills_left_out: int = 0


class StatsSql:
    """The SQL that keeps the stats buckets (SkillRunStat, SkillRunRuntime, RunModelUsage,
    ModelUsageStat) exact: triggers for both engines, and the set-based recount used by the
    migration's backfill and by SkillRunStatManager.rebuild().

    What a step's usage is: the payload's ``model`` (a string, cut at 255 characters; ""
    when absent) and its token counts read from ``usage`` when the payload has a ``usage``
    object (the recorder's step) or else from the payload itself (OTLP's step events):
    input_tokens, output_tokens, cached_input_tokens, thinking_tokens.

    PostgreSQL: statement-level triggers over the transition tables (a batch of 1,000
    events or a purge batch is one grouped upsert per table, as in migration 0006); the
    upserts take their rows in key order, so concurrent writers cannot deadlock on shared
    buckets. Only step events reach the usage tables (a WHERE on the transition table).
    SQLite: row-level triggers, the step triggers guarded by WHEN event_type = 'step'.
    """

    def __init__(self, vendor: str, *, all_skills: bool = True, blocks: bool = True):
        """``all_skills``: keep the all-skills tables too (migration 0016's); migration
        0012, which precedes them, installs its triggers without them. ``blocks``: keep
        the per-skill day blocks (STATS_BLOCK_DAYS, migration 0018's)."""
        if vendor not in ("postgresql", "sqlite"):
            raise RuntimeError(f"the stats buckets have no triggers for {vendor}")
        self.vendor = vendor
        self.pg = vendor == "postgresql"
        self.all_skills = all_skills
        self.blocks = STATS_BLOCK_DAYS if blocks else ()

    # --- expressions ------------------------------------------------------------------

    def hour(self, column: str) -> str:
        if self.pg:
            return f"date_trunc('hour', {column}, 'UTC')"
        # Django stores UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]': a bucket is a prefix.
        return f"(substr({column}, 1, 13) || ':00:00')"

    def day_of_hour(self, column: str) -> str:
        if self.pg:
            return f"date_trunc('day', {column}, 'UTC')"
        return f"(substr({column}, 1, 10) || ' 00:00:00')"

    def block_of(self, column: str, days: int) -> str:
        """The start of the ``days``-day block (aligned on 1970-01-01, UTC) holding the
        time ``column`` (a run's start, or an hour or day bucket's)."""
        if self.pg:
            size = 86400 * days
            return f"to_timestamp(floor(extract(epoch FROM {column}) / {size}) * {size})"
        # the day's number since 1970-01-01 (julianday of a date is at midnight: .5)
        number = f"CAST(julianday(substr({column}, 1, 10)) - 2440587.5 AS INTEGER)"
        return (
            f"(date({number} - ((({number}) % {days}) + {days}) % {days} + 2440587.5) "
            "|| ' 00:00:00')"
        )

    def block_spans(self, column: str) -> list[tuple[str, str]]:
        """(span, period start) of the blocks holding the time ``column``."""
        return [(f"d{n}", self.block_of(column, n)) for n in self.blocks]

    def _pg_block_deltas(self, columns: str, source: str = "hourly") -> str:
        """``UNION ALL`` the block rows of the hourly deltas ``source`` (its first column
        ``hour``; ``columns``: the rest of the select list, grouped by its 2nd to 5th)."""
        return "".join(
            f"""
            UNION ALL
            SELECT '{span}', {period}, {columns}
            FROM {source} GROUP BY 2, 3, 4, 5"""
            for span, period in self.block_spans("hour")
        )

    def recount_blocks(self) -> list[str]:
        """The per-skill day blocks from scratch, each summed from its days' rows."""
        if not self.blocks:
            return []
        statements = []
        for table, key, sums in (
            ("skill_run_stats", "status", "runs, " + ", ".join(RUN_TOKENS)),
            ("skill_run_runtimes", "bin", "runs"),
            ("skill_model_usage_stats", "model", "runs, steps, " + ", ".join(USAGE_TOKENS)),
        ):
            statements.append(f"DELETE FROM {table} WHERE span NOT IN ('hour', 'day')")
            for span, period in self.block_spans("period_start"):
                statements.append(
                    f"INSERT INTO {table} (span, period_start, skill_id, top_level, {key}, "
                    f"{sums}) SELECT '{span}', {period}, skill_id, top_level, {key}, "
                    + ", ".join(f"SUM({c})" for c in sums.split(", "))
                    + f" FROM {table} WHERE span = 'day' GROUP BY 2, 3, 4, 5 ORDER BY 2, 3, 4, 5"
                )
        return statements

    def runtime_bin(self, column: str) -> str:
        limit = RUNTIME_BIN_LIMIT
        ratio = RUNTIME_BIN_RATIO
        if self.pg:
            # NaN and Infinity compare greater than every number: they land in the top bin.
            return (
                f"(CASE WHEN {column} > 0 THEN LEAST(GREATEST(floor(ln({column}) / ln({ratio})),"
                f" -{limit}), {limit})::integer ELSE {ZERO_RUNTIME_BIN} END)"
            )
        return (
            f"(CASE WHEN {column} > 0 THEN max(min(CAST(floor(ln({column}) / ln({ratio})) "
            f"AS INTEGER), {limit}), -{limit}) ELSE {ZERO_RUNTIME_BIN} END)"
        )

    def run_tokens(self, column: str) -> str:
        """A run's token total as the buckets count it: 0 to MAX_STEP_TOKENS, else 0. The
        contract stores any 64-bit total; summed into a bucket, two extreme totals would
        overflow the bucket's 64-bit column and fail the run's write (PostgreSQL) or the
        read's SUM (SQLite)."""
        return f"(CASE WHEN {column} BETWEEN 0 AND {MAX_STEP_TOKENS} THEN {column} ELSE 0 END)"

    def step_model(self, payload: str) -> str:
        if self.pg:
            return (
                f"(CASE WHEN jsonb_typeof({payload} -> 'model') = 'string' "
                f"THEN left({payload} ->> 'model', {MODEL_NAME_MAX_LENGTH}) ELSE '' END)"
            )
        return (
            f"(CASE WHEN json_valid({payload}) THEN (CASE WHEN json_type({payload}, '$.model') "
            f"= 'text' THEN substr(json_extract({payload}, '$.model'), 1, "
            f"{MODEL_NAME_MAX_LENGTH}) ELSE '' END) ELSE '' END)"
        )

    def step_tokens(self, payload: str, key: str) -> str:
        top = MAX_STEP_TOKENS
        if self.pg:
            value = (
                f"(CASE WHEN jsonb_typeof({payload} -> 'usage') = 'object' "
                f"THEN {payload} -> 'usage' ELSE {payload} END -> '{key}')"
            )
            # Nested CASEs: PostgreSQL does not promise to evaluate AND left to right, and
            # a string cast to numeric would fail the write.
            return (
                f"(CASE WHEN jsonb_typeof({value}) = 'number' THEN (CASE WHEN "
                f"{value}::numeric BETWEEN 0 AND {top} THEN trunc({value}::numeric)::bigint "
                f"ELSE 0 END) ELSE 0 END)"
            )
        path = (
            f"(CASE WHEN json_type({payload}, '$.usage') = 'object' "
            f"THEN '$.usage.{key}' ELSE '$.{key}' END)"
        )
        return (
            f"(CASE WHEN json_valid({payload}) THEN (CASE WHEN json_type({payload}, {path}) "
            f"IN ('integer', 'real') THEN (CASE WHEN json_extract({payload}, {path}) "
            f"BETWEEN 0 AND {top} THEN CAST(json_extract({payload}, {path}) AS INTEGER) "
            f"ELSE 0 END) ELSE 0 END) ELSE 0 END)"
        )

    # --- the recount (backfill and rebuild) -------------------------------------------

    def recount(self) -> list[str]:
        """Every bucket from scratch: one grouped INSERT per table (the runs are read once
        per table; the day rows are summed from the hour rows)."""
        hour = self.hour("started_at")
        top = "(parent_run_id = '')"
        run_tokens = ", ".join(f"SUM({self.run_tokens(f'total_{t}')}) AS {t}" for t in RUN_TOKENS)
        run_cols = ", ".join(RUN_TOKENS)
        sum_run_tokens = ", ".join(f"SUM({t})" for t in RUN_TOKENS)
        usage_sums = ", ".join(f"SUM({t})" for t in USAGE_TOKENS)
        usage_cols = ", ".join(USAGE_TOKENS)
        model = self.step_model("payload")
        tokens = ", ".join(f"{self.step_tokens('payload', t)} AS {t}" for t in USAGE_TOKENS)
        day = self.day_of_hour("hour")
        statements = [
            "DELETE FROM skill_run_stats",
            "DELETE FROM skill_run_runtimes",
            "DELETE FROM skill_run_model_usage",
            "DELETE FROM skill_model_usage_stats",
            f"""INSERT INTO skill_run_stats (span, period_start, skill_id, top_level, status,
                runs, {", ".join(RUN_TOKENS)})
            SELECT * FROM (
                WITH hourly AS (
                    SELECT {hour} AS hour, skill_id, {top} AS top_level, status,
                        COUNT(*) AS runs, {run_tokens}
                    FROM skill_runs GROUP BY 1, 2, 3, 4
                )
                SELECT 'hour', hour, skill_id, top_level, status, runs, {run_cols} FROM hourly
                UNION ALL
                SELECT 'day', {day}, skill_id, top_level, status, SUM(runs), {sum_run_tokens}
                FROM hourly GROUP BY 2, 3, 4, 5
            ) counted WHERE true""",
            f"""INSERT INTO skill_run_runtimes (span, period_start, skill_id, top_level, bin, runs)
            SELECT * FROM (
                WITH hourly AS (
                    SELECT {hour} AS hour, skill_id, {top} AS top_level,
                        {self.runtime_bin("runtime_seconds")} AS bin, COUNT(*) AS runs
                    FROM skill_runs WHERE status <> 'running' GROUP BY 1, 2, 3, 4
                )
                SELECT 'hour', hour, skill_id, top_level, bin, runs FROM hourly
                UNION ALL
                SELECT 'day', {day}, skill_id, top_level, bin, SUM(runs) FROM hourly
                GROUP BY 2, 3, 4, 5
            ) counted WHERE true""",
            # Only events of runs that exist (what the triggers count).
            f"""INSERT INTO skill_run_model_usage (run_id, model, steps, {usage_cols})
            SELECT run_id, model, COUNT(*), {usage_sums} FROM (
                SELECT l.run_id, {model} AS model, {tokens} FROM skill_run_logs l
                WHERE l.event_type = 'step'
                AND EXISTS (SELECT 1 FROM skill_runs r WHERE r.id = l.run_id)
            ) steps GROUP BY run_id, model""",
            f"""INSERT INTO skill_model_usage_stats (span, period_start, skill_id, top_level,
                model, runs, steps, {usage_cols})
            SELECT * FROM (
                WITH hourly AS (
                    SELECT {self.hour("r.started_at")} AS hour, r.skill_id,
                        (r.parent_run_id = '') AS top_level, u.model, COUNT(*) AS runs,
                        SUM(u.steps) AS steps,
                        {", ".join(f"SUM(u.{t}) AS {t}" for t in USAGE_TOKENS)}
                    FROM skill_run_model_usage u JOIN skill_runs r ON r.id = u.run_id
                    GROUP BY 1, 2, 3, 4
                )
                SELECT 'hour', hour, skill_id, top_level, model, runs, steps, {usage_cols}
                FROM hourly
                UNION ALL
                SELECT 'day', {day}, skill_id, top_level, model, SUM(runs), SUM(steps),
                    {usage_sums}
                FROM hourly GROUP BY 2, 3, 4, 5
            ) counted WHERE true""",
        ]
        return (
            statements
            + self.recount_blocks()
            + (self.recount_all_skills() if self.all_skills else [])
        )

    def recount_all_skills(self) -> list[str]:
        """The all-skills tables from scratch, summed from the per-skill buckets (already
        exact): a grouped read of those tables, not of the runs. Inserted in key order, so
        a window's day rows share a few pages (in hash order, 30 days' 2,297 runtime rows
        at 100k runs lay on 858 pages of all_skills_runtimes)."""
        statements = []
        for table, source, key, sums in self.ALL_SKILLS_TABLES:
            statements += [
                f"DELETE FROM {table}",
                f"INSERT INTO {table} (span, period_start, top_level, {key}, {sums}) "
                f"SELECT span, period_start, top_level, {key}, "
                + ", ".join(f"SUM({c})" for c in sums.split(", "))
                + f" FROM {source} WHERE span IN ('hour', 'day') "
                f"GROUP BY span, period_start, top_level, {key} "
                f"ORDER BY span, period_start, top_level, {key}",
            ]
        return statements

    # (table, per-skill table it sums, its key column after top_level, its summed columns)
    ALL_SKILLS_TABLES = (
        ("all_skills_run_stats", "skill_run_stats", "status", "runs, " + ", ".join(RUN_TOKENS)),
        ("all_skills_runtimes", "skill_run_runtimes", "bin", "runs"),
        (
            "all_skills_model_usage_stats",
            "skill_model_usage_stats",
            "model",
            "runs, steps, " + ", ".join(USAGE_TOKENS),
        ),
    )

    def _pg_all_skills_upsert(self, name: str, table: str, source: str) -> str:
        """``, name AS (upsert)``: the per-skill deltas ``source`` (span, period_start,
        skill_id, top_level, key, sums...) summed over the skills into the all-skills
        ``table``, in key order (concurrent writers lock its rows in one order); "" when
        the all-skills tables are not kept."""
        if not self.all_skills:
            return ""
        _, _, key, sums = next(t for t in self.ALL_SKILLS_TABLES if t[0] == table)
        columns = sums.split(", ")
        return f""", {name} AS (
            INSERT INTO {table} AS b (span, period_start, top_level, {key}, {sums})
            SELECT span, period_start, top_level, {key},
                {", ".join(f"SUM({c})" for c in columns)}
            FROM {source} WHERE span IN ('hour', 'day') GROUP BY 1, 2, 3, 4
            HAVING {" OR ".join(f"SUM({c}) <> 0" for c in columns)}
            ORDER BY 1, 2, 3, 4
            ON CONFLICT (span, period_start, top_level, {key}) DO UPDATE SET
                {", ".join(f"{c} = b.{c} + EXCLUDED.{c}" for c in columns)}
            RETURNING id, runs
        )"""

    def _pg_all_skills_emptied(self, name: str) -> str:
        return f", (SELECT array_agg(id) FROM {name} WHERE runs <= 0)" if self.all_skills else ""

    def _pg_all_skills_delete(self, variable: str, table: str) -> str:
        if not self.all_skills:
            return ""
        return f"""
    IF {variable} IS NOT NULL THEN
        DELETE FROM {table} WHERE id = ANY ({variable});
    END IF;"""

    # --- triggers ---------------------------------------------------------------------

    def install(self) -> list[str]:
        return self._pg_install() if self.pg else self._sqlite_install()

    def drop(self) -> list[str]:
        if self.pg:
            return [
                *(
                    f"DROP TRIGGER IF EXISTS {name} ON {table}"
                    for name, table in (
                        ("skill_run_stats_insert", "skill_runs"),
                        ("skill_run_stats_update", "skill_runs"),
                        ("skill_run_stats_delete", "skill_runs"),
                        ("skill_run_usage_insert", "skill_run_logs"),
                        ("skill_run_usage_update", "skill_run_logs"),
                        ("skill_run_usage_delete", "skill_run_logs"),
                    )
                ),
                "DROP FUNCTION IF EXISTS skill_run_stats_apply()",
                "DROP FUNCTION IF EXISTS skill_run_usage_apply()",
            ]
        return [f"DROP TRIGGER IF EXISTS {name}" for name in self.SQLITE_TRIGGER_NAMES]

    def _pg_install(self) -> list[str]:
        runs_cols = (
            "id, skill_id, status, started_at, parent_run_id, runtime_seconds, "
            + ", ".join(f"total_{t}" for t in RUN_TOKENS)
        )
        usage_cols = ", ".join(USAGE_TOKENS)
        key_changed = (
            "NOT EXISTS (SELECT 1 FROM {other} x WHERE x.id = {row}.id "
            "AND x.skill_id = {row}.skill_id AND x.started_at = {row}.started_at "
            "AND (x.parent_run_id = '') = ({row}.parent_run_id = ''))"
        )
        delta_tokens = ", ".join(
            f"SUM(delta * {self.run_tokens(f'total_{t}')}) AS {t}" for t in RUN_TOKENS
        )
        runs_function = f"""
CREATE FUNCTION skill_run_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    changes text;
    moved text;
    emptied bigint[];
    emptied_runtimes bigint[];
    emptied_usage bigint[];
    emptied_all bigint[];
    emptied_all_runtimes bigint[];
    emptied_all_usage bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        changes := 'SELECT {runs_cols}, 1 AS delta FROM new_runs';
    ELSIF TG_OP = 'DELETE' THEN
        changes := 'SELECT {runs_cols}, -1 AS delta FROM old_runs';
    ELSE
        changes := 'SELECT {runs_cols}, 1 AS delta FROM new_runs '
                   'UNION ALL SELECT {runs_cols}, -1 FROM old_runs';
    END IF;
    EXECUTE format($sql$
        WITH c AS (%s),
        hourly AS (
            SELECT {self.hour("started_at")} AS hour, skill_id, (parent_run_id = '') AS top_level,
                status, SUM(delta) AS runs,
                {delta_tokens}
            FROM c GROUP BY 1, 2, 3, 4
        ), deltas AS (
            SELECT 'hour' AS span, hour AS period_start, skill_id, top_level, status, runs,
                {", ".join(RUN_TOKENS)}
            FROM hourly
            UNION ALL
            SELECT 'day', {self.day_of_hour("hour")}, skill_id, top_level, status, SUM(runs),
                {", ".join(f"SUM({t})" for t in RUN_TOKENS)}
            FROM hourly GROUP BY 2, 3, 4, 5{
            self._pg_block_deltas(
                "skill_id, top_level, status, SUM(runs), "
                + ", ".join(f"SUM({t})" for t in RUN_TOKENS)
            )
        }
        ), changed AS (
            INSERT INTO skill_run_stats AS b (span, period_start, skill_id, top_level, status,
                runs, {", ".join(RUN_TOKENS)})
            SELECT * FROM deltas
            WHERE runs <> 0 OR {" OR ".join(f"{t} <> 0" for t in RUN_TOKENS)}
            ORDER BY 1, 2, 3, 4, 5
            ON CONFLICT (span, period_start, skill_id, top_level, status) DO UPDATE SET
                runs = b.runs + EXCLUDED.runs,
                {", ".join(f"{t} = b.{t} + EXCLUDED.{t}" for t in RUN_TOKENS)}
            RETURNING id, runs
        ), runtime_hourly AS (
            SELECT {self.hour("started_at")} AS hour, skill_id, (parent_run_id = '') AS top_level,
                {self.runtime_bin("runtime_seconds")} AS bin, SUM(delta) AS runs
            FROM c WHERE status <> 'running' GROUP BY 1, 2, 3, 4
        ), runtime_deltas AS (
            SELECT 'hour' AS span, hour AS period_start, skill_id, top_level, bin, runs
            FROM runtime_hourly
            UNION ALL
            SELECT 'day', {self.day_of_hour("hour")}, skill_id, top_level, bin, SUM(runs)
            FROM runtime_hourly GROUP BY 2, 3, 4, 5{
            self._pg_block_deltas("skill_id, top_level, bin, SUM(runs)", "runtime_hourly")
        }
        ), runtimes_changed AS (
            INSERT INTO skill_run_runtimes AS b (span, period_start, skill_id, top_level, bin,
                runs)
            SELECT * FROM runtime_deltas WHERE runs <> 0 ORDER BY 1, 2, 3, 4, 5
            ON CONFLICT (span, period_start, skill_id, top_level, bin) DO UPDATE SET
                runs = b.runs + EXCLUDED.runs
            RETURNING id, runs
        ){self._pg_all_skills_upsert("all_changed", "all_skills_run_stats", "deltas")}{
            self._pg_all_skills_upsert(
                "all_runtimes_changed", "all_skills_runtimes", "runtime_deltas"
            )
        }
        SELECT (SELECT array_agg(id) FROM changed WHERE runs <= 0),
            (SELECT array_agg(id) FROM runtimes_changed WHERE runs <= 0){
            self._pg_all_skills_emptied("all_changed")
        }{self._pg_all_skills_emptied("all_runtimes_changed")}
    $sql$, changes) INTO emptied, emptied_runtimes{
            ", emptied_all, emptied_all_runtimes" if self.all_skills else ""
        };
    IF emptied IS NOT NULL THEN
        DELETE FROM skill_run_stats WHERE id = ANY (emptied);
    END IF;
    IF emptied_runtimes IS NOT NULL THEN
        DELETE FROM skill_run_runtimes WHERE id = ANY (emptied_runtimes);
    END IF;{self._pg_all_skills_delete("emptied_all", "all_skills_run_stats")}{
            self._pg_all_skills_delete("emptied_all_runtimes", "all_skills_runtimes")
        }
    -- A run's model usage follows it when its bucket key (skill, start hour, top-level)
    -- changes, and goes with it when it is deleted. Inserts have none yet.
    IF TG_OP = 'INSERT' THEN
        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
        moved := 'SELECT o.skill_id, o.started_at, o.parent_run_id, -1 AS delta, u.* '
                 'FROM old_runs o JOIN skill_run_model_usage u ON u.run_id = o.id';
    ELSE
        moved := $q$SELECT o.skill_id, o.started_at, o.parent_run_id, -1 AS delta, u.*
                 FROM old_runs o JOIN skill_run_model_usage u ON u.run_id = o.id
                 WHERE {key_changed.format(other="new_runs", row="o")}
                 UNION ALL
                 SELECT n.skill_id, n.started_at, n.parent_run_id, 1, u.*
                 FROM new_runs n JOIN skill_run_model_usage u ON u.run_id = n.id
                 WHERE {key_changed.format(other="old_runs", row="n")}$q$;
    END IF;
    EXECUTE format($sql$
        WITH c AS (%s),
        hourly AS (
            SELECT {self.hour("started_at")} AS hour, skill_id, (parent_run_id = '') AS top_level,
                model, SUM(delta) AS runs, SUM(delta * steps) AS steps,
                {", ".join(f"SUM(delta * {t}) AS {t}" for t in USAGE_TOKENS)}
            FROM c GROUP BY 1, 2, 3, 4
        ), {self._pg_usage_deltas()}
        SELECT (SELECT array_agg(id) FROM changed WHERE runs <= 0){
            self._pg_all_skills_emptied("all_changed")
        }
    $sql$, moved) INTO emptied_usage{", emptied_all_usage" if self.all_skills else ""};
    IF emptied_usage IS NOT NULL THEN
        DELETE FROM skill_model_usage_stats WHERE id = ANY (emptied_usage);
    END IF;{self._pg_all_skills_delete("emptied_all_usage", "all_skills_model_usage_stats")}
    IF TG_OP = 'DELETE' THEN
        DELETE FROM skill_run_model_usage WHERE run_id IN (SELECT id FROM old_runs);
    END IF;
    RETURN NULL;
END
$body$
"""
        model = self.step_model("payload")
        tokens = ", ".join(f"delta * {self.step_tokens('payload', t)} AS {t}" for t in USAGE_TOKENS)
        logs_function = f"""
CREATE FUNCTION skill_run_usage_apply() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    changes text;
    emptied_runs bigint[];
    emptied bigint[];
    emptied_all bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        changes := $q$SELECT run_id, payload, 1 AS delta FROM new_logs
                   WHERE event_type = 'step'$q$;
    ELSIF TG_OP = 'DELETE' THEN
        changes := $q$SELECT run_id, payload, -1 AS delta FROM old_logs
                   WHERE event_type = 'step'$q$;
    ELSE
        changes := $q$SELECT run_id, payload, 1 AS delta FROM new_logs
                   WHERE event_type = 'step'
                   UNION ALL SELECT run_id, payload, -1 FROM old_logs
                   WHERE event_type = 'step'$q$;
    END IF;
    EXECUTE format($sql$
        WITH c AS (
            SELECT run_id, {model} AS model, delta, {tokens} FROM (%s) s
        ), per_run AS (
            SELECT c.run_id, c.model, SUM(c.delta) AS steps,
                {", ".join(f"SUM(c.{t}) AS {t}" for t in USAGE_TOKENS)},
                r.skill_id, r.started_at, (r.parent_run_id = '') AS top_level
            FROM c JOIN skill_runs r ON r.id = c.run_id
            GROUP BY c.run_id, c.model, r.skill_id, r.started_at, r.parent_run_id
        ), upserted AS (
            INSERT INTO skill_run_model_usage AS u (run_id, model, steps, {usage_cols})
            SELECT run_id, model, steps, {usage_cols} FROM per_run
            WHERE steps <> 0 OR {" OR ".join(f"{t} <> 0" for t in USAGE_TOKENS)}
            ORDER BY run_id, model
            ON CONFLICT (run_id, model) DO UPDATE SET steps = u.steps + EXCLUDED.steps,
                {", ".join(f"{t} = u.{t} + EXCLUDED.{t}" for t in USAGE_TOKENS)}
            RETURNING u.id, u.run_id, u.model, u.steps, (u.xmax = 0) AS created
        ), counted AS (
            -- a run starts using a model (+1 run) or stops (-1)
            SELECT p.*, CASE WHEN up.created AND up.steps > 0 THEN 1
                WHEN NOT up.created AND up.steps <= 0 THEN -1 ELSE 0 END AS runs
            FROM per_run p JOIN upserted up ON up.run_id = p.run_id AND up.model = p.model
        ), hourly AS (
            SELECT {self.hour("started_at")} AS hour, skill_id, top_level, model,
                SUM(runs) AS runs, SUM(steps) AS steps,
                {", ".join(f"SUM({t}) AS {t}" for t in USAGE_TOKENS)}
            FROM counted GROUP BY 1, 2, 3, 4
        ), {self._pg_usage_deltas()}
        SELECT (SELECT array_agg(id) FROM upserted WHERE steps <= 0),
            (SELECT array_agg(id) FROM changed WHERE runs <= 0){
            self._pg_all_skills_emptied("all_changed")
        }
    $sql$, changes) INTO emptied_runs, emptied{", emptied_all" if self.all_skills else ""};
    IF emptied_runs IS NOT NULL THEN
        DELETE FROM skill_run_model_usage WHERE id = ANY (emptied_runs);
    END IF;
    IF emptied IS NOT NULL THEN
        DELETE FROM skill_model_usage_stats WHERE id = ANY (emptied);
    END IF;{self._pg_all_skills_delete("emptied_all", "all_skills_model_usage_stats")}
    RETURN NULL;
END
$body$
"""
        # Static SQL per operation instead of EXECUTE: PL/pgSQL then keeps each statement's
        # plan for the session, where EXECUTE plans the CTEs again on every statement
        # (measured: most of the triggers' cost on a finish or a 1,000-event batch).
        statements = [_pg_static(runs_function), _pg_static(logs_function)]
        for table, function, transition in (
            ("skill_runs", "skill_run_stats_apply", "runs"),
            ("skill_run_logs", "skill_run_usage_apply", "logs"),
        ):
            name = "skill_run_stats" if table == "skill_runs" else "skill_run_usage"
            statements += [
                f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} "
                f"REFERENCING NEW TABLE AS new_{transition} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
                f"CREATE TRIGGER {name}_update AFTER UPDATE ON {table} "
                f"REFERENCING OLD TABLE AS old_{transition} NEW TABLE AS new_{transition} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
                f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} "
                f"REFERENCING OLD TABLE AS old_{transition} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            ]
        return statements

    def _pg_usage_deltas(self) -> str:
        """The CTEs after ``hourly`` (usage per hour, skill, top-level and model) in both
        usage functions: each hour's and each day's deltas, upserted as ``changed``."""
        usage_cols = ", ".join(USAGE_TOKENS)
        return f"""deltas AS (
            SELECT 'hour' AS span, hour AS period_start, skill_id, top_level, model, runs,
                steps, {usage_cols}
            FROM hourly
            UNION ALL
            SELECT 'day', {self.day_of_hour("hour")}, skill_id, top_level, model, SUM(runs),
                SUM(steps), {", ".join(f"SUM({t})" for t in USAGE_TOKENS)}
            FROM hourly GROUP BY 2, 3, 4, 5{
            self._pg_block_deltas(
                "skill_id, top_level, model, SUM(runs), SUM(steps), "
                + ", ".join(f"SUM({t})" for t in USAGE_TOKENS)
            )
        }
        ), changed AS (
            {self._pg_usage_upsert("deltas")}
        ){self._pg_all_skills_upsert("all_changed", "all_skills_model_usage_stats", "deltas")}"""

    def _pg_usage_upsert(self, source: str) -> str:
        usage_cols = ", ".join(USAGE_TOKENS)
        return f"""INSERT INTO skill_model_usage_stats AS b (span, period_start, skill_id,
                top_level, model, runs, steps, {usage_cols})
            SELECT * FROM {source}
            WHERE runs <> 0 OR steps <> 0 OR {" OR ".join(f"{t} <> 0" for t in USAGE_TOKENS)}
            ORDER BY 1, 2, 3, 4, 5
            ON CONFLICT (span, period_start, skill_id, top_level, model) DO UPDATE SET
                runs = b.runs + EXCLUDED.runs, steps = b.steps + EXCLUDED.steps,
                {", ".join(f"{t} = b.{t} + EXCLUDED.{t}" for t in USAGE_TOKENS)}
            RETURNING id, runs"""

    SQLITE_TRIGGER_NAMES = (
        "skill_run_stats_insert",
        "skill_run_stats_update",
        "skill_run_stats_delete",
        "skill_run_stats_usage_move",
        "skill_run_usage_insert",
        "skill_run_usage_update",
        "skill_run_usage_delete",
    )

    def _sqlite_targets(self, per_skill: str, all_skills: str) -> list[tuple[str, bool]]:
        """(table, keyed by skill): the per-skill buckets, then the all-skills ones."""
        return [(per_skill, True)] + ([(all_skills, False)] if self.all_skills else [])

    def _sqlite_run_add(self, row: str, sign: int) -> str:
        """Statements adding (sign 1) or removing (-1) the run ``row`` in its buckets (and
        in the all-skills buckets)."""
        top = f"({row}.parent_run_id = '')"
        statements = []
        targets = zip(
            self._sqlite_targets("skill_run_stats", "all_skills_run_stats"),
            self._sqlite_targets("skill_run_runtimes", "all_skills_runtimes"),
            strict=True,
        )
        for (stats, by_skill), (runtimes, _) in targets:
            skill_col = "skill_id, " if by_skill else ""
            skill_val = f"{row}.skill_id, " if by_skill else ""
            for span, period in (
                ("hour", self.hour(f"{row}.started_at")),
                ("day", self.day_of_hour(f"{row}.started_at")),
                *(self.block_spans(f"{row}.started_at") if by_skill else ()),
            ):
                if sign > 0:
                    statements.append(
                        f"INSERT INTO {stats} (span, period_start, {skill_col}top_level, "
                        f"status, runs, {', '.join(RUN_TOKENS)}) VALUES ('{span}', {period}, "
                        f"{skill_val}{top}, {row}.status, 1, "
                        + ", ".join(self.run_tokens(f"{row}.total_{t}") for t in RUN_TOKENS)
                        + f") ON CONFLICT (span, period_start, {skill_col}top_level, status) DO "
                        "UPDATE SET runs = runs + 1, "
                        + ", ".join(f"{t} = {t} + excluded.{t}" for t in RUN_TOKENS)
                        + ";"
                    )
                    statements.append(
                        f"INSERT INTO {runtimes} (span, period_start, {skill_col}top_level, "
                        f"bin, runs) SELECT '{span}', {period}, {skill_val}{top}, "
                        f"{self.runtime_bin(f'{row}.runtime_seconds')}, 1 "
                        f"WHERE {row}.status <> 'running' "
                        f"ON CONFLICT (span, period_start, {skill_col}top_level, bin) DO UPDATE "
                        "SET runs = runs + 1;"
                    )
                else:
                    key = f"span = '{span}' AND period_start = {period} AND top_level = {top}"
                    if by_skill:
                        key += f" AND skill_id = {row}.skill_id"
                    statements.append(
                        f"UPDATE {stats} SET runs = runs - 1, "
                        + ", ".join(
                            f"{t} = {t} - {self.run_tokens(f'{row}.total_{t}')}" for t in RUN_TOKENS
                        )
                        + f" WHERE {key} AND status = {row}.status;"
                    )
                    statements.append(
                        f"DELETE FROM {stats} WHERE {key} AND status = {row}.status AND runs <= 0;"
                    )
                    bin_key = f"{key} AND bin = {self.runtime_bin(f'{row}.runtime_seconds')}"
                    statements.append(
                        f"UPDATE {runtimes} SET runs = runs - 1 WHERE {bin_key} "
                        f"AND {row}.status <> 'running';"
                    )
                    statements.append(f"DELETE FROM {runtimes} WHERE {bin_key} AND runs <= 0;")
        return " ".join(statements)

    def _sqlite_usage_move(self, row: str, sign: int) -> str:
        """Statements adding (1) or removing (-1) the run ``row``'s model usage in the
        buckets of its key (skill, start hour, top-level) and the all-skills buckets."""
        top = f"({row}.parent_run_id = '')"
        usage_cols = ", ".join(USAGE_TOKENS)
        statements = []
        for table, by_skill in self._sqlite_targets(
            "skill_model_usage_stats", "all_skills_model_usage_stats"
        ):
            # (SQLite triggers allow no alias in UPDATE: the table's name qualifies.)
            skill_col = "skill_id, " if by_skill else ""
            skill_val = f"{row}.skill_id, " if by_skill else ""
            for span, period in (
                ("hour", self.hour(f"{row}.started_at")),
                ("day", self.day_of_hour(f"{row}.started_at")),
                *(self.block_spans(f"{row}.started_at") if by_skill else ()),
            ):
                if sign > 0:
                    statements.append(
                        f"INSERT INTO {table} (span, period_start, {skill_col}"
                        f"top_level, model, runs, steps, {usage_cols}) SELECT '{span}', "
                        f"{period}, {skill_val}{top}, u.model, 1, u.steps, "
                        + ", ".join(f"u.{t}" for t in USAGE_TOKENS)
                        + f" FROM skill_run_model_usage u WHERE u.run_id = {row}.id "
                        f"ON CONFLICT (span, period_start, {skill_col}top_level, model) DO "
                        "UPDATE SET runs = runs + 1, steps = steps + excluded.steps, "
                        + ", ".join(f"{t} = {t} + excluded.{t}" for t in USAGE_TOKENS)
                        + ";"
                    )
                else:
                    key = (
                        f"{table}.span = '{span}' AND {table}.period_start = {period} "
                        f"AND {table}.top_level = {top}"
                    )
                    if by_skill:
                        key += f" AND {table}.skill_id = {row}.skill_id"
                    statements.append(
                        f"UPDATE {table} SET runs = {table}.runs - 1, "
                        f"steps = {table}.steps - u.steps, "
                        + ", ".join(f"{t} = {table}.{t} - u.{t}" for t in USAGE_TOKENS)
                        + f" FROM skill_run_model_usage u WHERE u.run_id = {row}.id AND {key} "
                        f"AND {table}.model = u.model;"
                    )
                    statements.append(f"DELETE FROM {table} WHERE {key} AND runs <= 0;")
        return " ".join(statements)

    def _sqlite_step(self, row: str, sign: int) -> str:
        """Statements adding (1) or removing (-1) the step event ``row`` in its run's
        usage and in the usage buckets, per skill and of all skills (only when the run
        exists)."""
        model = self.step_model(f"{row}.payload")
        tokens = {t: self.step_tokens(f"{row}.payload", t) for t in USAGE_TOKENS}
        usage_cols = ", ".join(USAGE_TOKENS)
        statements = []
        run_exists = f"EXISTS (SELECT 1 FROM skill_runs r WHERE r.id = {row}.run_id)"
        is_step = f"{row}.event_type = 'step'"
        targets = self._sqlite_targets("skill_model_usage_stats", "all_skills_model_usage_stats")
        all_spans = (
            ("hour", self.hour("r.started_at")),
            ("day", self.day_of_hour("r.started_at")),
        )
        skill_spans = (*all_spans, *self.block_spans("r.started_at"))
        if sign > 0:
            # the buckets first: +1 run when the run had no step of this model yet
            for table, by_skill in targets:
                skill_col = "skill_id, " if by_skill else ""
                skill_val = "r.skill_id, " if by_skill else ""
                for span, period in skill_spans if by_skill else all_spans:
                    statements.append(
                        f"INSERT INTO {table} (span, period_start, {skill_col}"
                        f"top_level, model, runs, steps, {usage_cols}) SELECT '{span}', "
                        f"{period}, {skill_val}(r.parent_run_id = ''), {model}, "
                        "CASE WHEN EXISTS (SELECT 1 FROM skill_run_model_usage u "
                        f"WHERE u.run_id = {row}.run_id AND u.model = {model}) THEN 0 ELSE 1 "
                        "END, 1, "
                        + ", ".join(tokens.values())
                        + f" FROM skill_runs r WHERE r.id = {row}.run_id AND {is_step} "
                        f"ON CONFLICT (span, period_start, {skill_col}top_level, model) DO "
                        "UPDATE SET runs = runs + excluded.runs, steps = steps + 1, "
                        + ", ".join(f"{t} = {t} + excluded.{t}" for t in USAGE_TOKENS)
                        + ";"
                    )
            statements.append(
                f"INSERT INTO skill_run_model_usage (run_id, model, steps, {usage_cols}) "
                f"SELECT {row}.run_id, {model}, 1, "
                + ", ".join(tokens.values())
                + f" WHERE {is_step} AND {run_exists} "
                "ON CONFLICT (run_id, model) DO UPDATE SET steps = steps + 1, "
                + ", ".join(f"{t} = {t} + excluded.{t}" for t in USAGE_TOKENS)
                + ";"
            )
            return " ".join(statements)
        statements.append(
            "UPDATE skill_run_model_usage SET steps = steps - 1, "
            + ", ".join(f"{t} = {t} - {tokens[t]}" for t in USAGE_TOKENS)
            + f" WHERE run_id = {row}.run_id AND model = {model} AND {is_step};"
        )
        for table, by_skill in targets:
            # (SQLite triggers allow no alias in UPDATE: the table's name qualifies.)
            for span, period in skill_spans if by_skill else all_spans:
                skill_match = f"AND {table}.skill_id = r.skill_id " if by_skill else ""
                statements.append(
                    f"UPDATE {table} SET "
                    f"runs = {table}.runs - (CASE WHEN u.steps <= 0 THEN 1 ELSE 0 END), "
                    f"steps = {table}.steps - 1, "
                    + ", ".join(f"{t} = {table}.{t} - {tokens[t]}" for t in USAGE_TOKENS)
                    + f" FROM skill_runs r JOIN skill_run_model_usage u ON u.run_id = r.id "
                    f"WHERE r.id = {row}.run_id AND u.model = {model} AND {is_step} "
                    f"AND {table}.span = '{span}' AND {table}.period_start = {period} "
                    f"{skill_match}AND {table}.top_level = (r.parent_run_id = '') "
                    f"AND {table}.model = u.model;"
                )
                key_cols = (
                    "period_start, skill_id, top_level" if by_skill else ("period_start, top_level")
                )
                key_vals = (
                    f"{period}, r.skill_id, (r.parent_run_id = '')"
                    if by_skill
                    else f"{period}, (r.parent_run_id = '')"
                )
                statements.append(
                    f"DELETE FROM {table} WHERE runs <= 0 AND model = "
                    f"{model} AND span = '{span}' AND ({key_cols}) IN "
                    f"(SELECT {key_vals} FROM skill_runs r WHERE r.id = {row}.run_id);"
                )
        statements.append(
            f"DELETE FROM skill_run_model_usage WHERE run_id = {row}.run_id AND model = "
            f"{model} AND steps <= 0;"
        )
        return " ".join(statements)

    def _sqlite_install(self) -> list[str]:
        changed = " OR ".join(
            f"OLD.{c} IS NOT NEW.{c}"
            for c in (
                "skill_id",
                "status",
                "started_at",
                "parent_run_id",
                "runtime_seconds",
                *(f"total_{t}" for t in RUN_TOKENS),
            )
        )
        columns = "skill_id, status, started_at, parent_run_id, runtime_seconds, " + ", ".join(
            f"total_{t}" for t in RUN_TOKENS
        )
        key_changed = (
            "OLD.skill_id IS NOT NEW.skill_id OR OLD.started_at IS NOT NEW.started_at "
            "OR (OLD.parent_run_id = '') IS NOT (NEW.parent_run_id = '')"
        )
        return [
            "CREATE TRIGGER skill_run_stats_insert AFTER INSERT ON skill_runs "
            f"BEGIN {self._sqlite_run_add('NEW', 1)} END",
            f"CREATE TRIGGER skill_run_stats_update AFTER UPDATE OF {columns} ON skill_runs "
            f"WHEN {changed} BEGIN {self._sqlite_run_add('OLD', -1)} "
            f"{self._sqlite_run_add('NEW', 1)} END",
            "CREATE TRIGGER skill_run_stats_usage_move AFTER UPDATE OF skill_id, started_at, "
            f"parent_run_id ON skill_runs WHEN {key_changed} BEGIN "
            f"{self._sqlite_usage_move('OLD', -1)} {self._sqlite_usage_move('NEW', 1)} END",
            "CREATE TRIGGER skill_run_stats_delete AFTER DELETE ON skill_runs BEGIN "
            f"{self._sqlite_run_add('OLD', -1)} {self._sqlite_usage_move('OLD', -1)} "
            "DELETE FROM skill_run_model_usage WHERE run_id = OLD.id; END",
            "CREATE TRIGGER skill_run_usage_insert AFTER INSERT ON skill_run_logs "
            f"WHEN NEW.event_type = 'step' BEGIN {self._sqlite_step('NEW', 1)} END",
            "CREATE TRIGGER skill_run_usage_delete AFTER DELETE ON skill_run_logs "
            f"WHEN OLD.event_type = 'step' BEGIN {self._sqlite_step('OLD', -1)} END",
            "CREATE TRIGGER skill_run_usage_update AFTER UPDATE OF run_id, event_type, payload "
            "ON skill_run_logs WHEN OLD.event_type = 'step' OR NEW.event_type = 'step' BEGIN "
            f"{self._sqlite_step('OLD', -1)} {self._sqlite_step('NEW', 1)} END",
        ]


def _pg_literal(expression: str) -> str:
    """The text of a PL/pgSQL string expression made of '...' literals (adjacent ones
    concatenated, '' for a quote) or one $q$...$q$ literal."""
    expression = expression.strip()
    if expression.startswith("$q$"):
        return expression[3 : expression.rindex("$q$")]
    parts = re.findall(r"'((?:[^']|'')*)'", expression)
    return "".join(part.replace("''", "'") for part in parts)


def _pg_static(function: str) -> str:
    """Rewrite a trigger function's ``IF TG_OP ... v := <sql>; ... END IF; EXECUTE
    format($sql$...%s...$sql$, v) INTO ...;`` into one static statement per operation."""
    pattern = re.compile(
        r"    IF TG_OP = 'INSERT' THEN\n(?P<ins>.*?)\n    ELSIF TG_OP = 'DELETE' THEN\n"
        r"(?P<del>.*?)\n    ELSE\n(?P<upd>.*?)\n    END IF;\n"
        r"    EXECUTE format\(\$sql\$(?P<body>.*?)\$sql\$, (?P<var>\w+)\) INTO (?P<into>[^;]+);",
        re.S,
    )

    def branch(code: str, body: str, into: str, var: str) -> str:
        code = code.strip()
        if not code.startswith(f"{var} :="):
            return "        " + code  # e.g. RETURN NULL
        sql = _pg_literal(code[len(var) + 3 : code.rstrip().rindex(";")])
        return "        " + body.strip().replace("%s", sql, 1) + f" INTO {into};"

    def rewrite(match) -> str:
        body, var, into = match["body"], match["var"], match["into"]
        return (
            "    IF TG_OP = 'INSERT' THEN\n"
            + branch(match["ins"], body, into, var)
            + "\n    ELSIF TG_OP = 'DELETE' THEN\n"
            + branch(match["del"], body, into, var)
            + "\n    ELSE\n"
            + branch(match["upd"], body, into, var)
            + "\n    END IF;"
        )

    rewritten, count = pattern.subn(rewrite, function)
    if not count:
        raise RuntimeError("no EXECUTE to make static")
    return rewritten


# Sent (sender=ModelPrice, using=alias) after a bulk write of the price table that sends no
# post_save/post_delete of its own (QuerySet.update, bulk_create, bulk_update): runs.pricing
# drops its cached price table on it, as on those two signals.
model_prices_written = Signal()


class ModelPriceQuerySet(models.QuerySet):
    """The price table's rows; every bulk write says so (``model_prices_written``)."""

    def price_table(self) -> costs.PriceTable:
        """Every row as a runs.costs.PriceTable: one query of a small table (a few hundred
        rows at most). runs.pricing.price_table() keeps it per process between writes."""
        return costs.PriceTable(row.as_price() for row in self.all())

    def _written(self) -> None:
        model_prices_written.send(sender=self.model, using=self.db)

    def update(self, **kwargs):
        found = super().update(**kwargs)
        self._written()
        return found

    def bulk_create(self, *args, **kwargs):
        created = super().bulk_create(*args, **kwargs)
        self._written()
        return created

    def bulk_update(self, *args, **kwargs):
        found = super().bulk_update(*args, **kwargs)
        self._written()
        return found

    def delete(self):
        found = super().delete()  # post_delete for each row too; said once more here
        self._written()
        return found


class ModelPriceManager(models.Manager.from_queryset(ModelPriceQuerySet)):
    """The model price table: read whole for pricing, written by load_prices and the admin."""

    def upsert(self, prices: Sequence[costs.Price]) -> tuple[int, int, int]:
        """Write ``prices`` keyed by (model, provider, valid_from), in one transaction:
        new rows are added, changed rows updated, equal rows left alone. Returns
        (created, updated, unchanged); loading the same file twice changes nothing."""
        fields = (
            "input_per_million",
            "output_per_million",
            "cached_input_per_million",
            "thinking_per_million",
            "currency",
            "note",
        )
        created = updated = unchanged = 0
        with transaction.atomic(using=self.db):
            for price in prices:
                values = {name: getattr(price, name) for name in fields}
                row = (
                    self.select_for_update()
                    .filter(model=price.model, provider=price.provider, valid_from=price.valid_from)
                    .first()
                )
                if row is None:
                    self.create(
                        model=price.model,
                        provider=price.provider,
                        valid_from=price.valid_from,
                        **values,
                    )
                    created += 1
                elif all(_same(getattr(row, name), value) for name, value in values.items()):
                    unchanged += 1
                else:
                    for name, value in values.items():
                        setattr(row, name, value)
                    row.save(update_fields=list(fields))
                    updated += 1
        return created, updated, unchanged


def _same(stored, given) -> bool:
    """Decimals compare by value (10.000000 == 10), None only with None."""
    if stored is None or given is None:
        return stored is given
    return stored == given


class SkillRunStatManager(models.Manager):
    """Reads of the stats buckets (skill_run_stats, skill_run_runtimes,
    skill_model_usage_stats), and the exact path over skill_runs for the filters the
    buckets cannot answer.

    The buckets are keyed by skill, start hour or day and top-level, so they answer the
    window, ``skill`` and ``include_nested``; ``caller``, ``channel`` and ``status`` are
    not in their key (a key per caller and channel would multiply the rows by the callers,
    and a runtime histogram per status by the statuses). With any of those, the same
    numbers are aggregated from skill_runs over the window (the index on the filter's
    column, then the rows): exact, but it reads the window's matching runs.
    """

    def _sql(self) -> StatsSql:
        return StatsSql(connections[self.db].vendor)

    def _period(self, span: str, column: str) -> str:
        sql = self._sql()
        if span == "hour":
            return sql.hour(column)
        return sql.day_of_hour(column)

    def bucket_rows(
        self,
        span: str,
        since: datetime,
        until: datetime,
        *,
        skill_id: str = "",
        caller_id: str = "",
        channel_id: str = "",
        statuses: Sequence[str] = (),
        top_level_only: bool = True,
        segments: Sequence[datetime] = (),
        per_skill: bool = True,
        skill_limit: int | None = None,
    ) -> StatsRows:
        """The window's numbers, grouped twice: per period (the series) and per skill
        (the window's skills), so a 30-day read returns ~30 + ~skills rows per status or
        bin, not days x skills x bins (PostgreSQL: one scan with GROUPING SETS):

        - runs: (period, skill, status, runs, input, output, thinking tokens), exactly one
          of period and skill None in each row;
        - runtimes: (period, skill, finished runs, p50 bin, p95 bin): the percentiles'
          histogram bins computed in the database (STATS_PERCENTILES), per period, per
          skill, and for the whole window (period and skill both None);
        - usage: (period, skill, segment, model, runs, steps, input, output, cached input,
          thinking) per period (skill and segment None) and per skill and segment (period
          None): segment i holds the buckets from ``segments[i - 1]`` (from ``since`` for
          0) to the next, so a price that changes at those bucket starts prices each
          skill's usage exactly with one row per model and segment.

        ``since`` and ``until`` must be whole ``span``s (the caller rounds them).

        ``per_skill=False``: no skill rows (the API's series). ``skill_limit``: the
        runtimes and usage of the first that many skills only (most runs first, then by
        name); their runs rows are there for every skill. Without caller, channel or
        status, the series and totals are read from the all-skills buckets (_bucket_reads).
        """
        connection = connections[self.db]
        exact = bool(caller_id or channel_id or statuses)
        if not exact:
            return self._bucket_reads(
                span,
                since,
                until,
                skill_id=skill_id,
                top_level_only=top_level_only,
                segments=segments,
                per_skill=per_skill,
                skill_limit=skill_limit,
            )
        adapt = connection.ops.adapt_datetimefield_value
        run_sums = ", ".join(RUN_TOKENS)
        if exact:
            where = ["r.started_at >= %s", "r.started_at < %s"]
            params: list = [adapt(since), adapt(until)]
            for column, value in (
                ("skill_id", skill_id),
                ("caller_id", caller_id),
                ("channel_id", channel_id),
            ):
                if value:
                    where.append(f"r.{column} = %s")
                    params.append(value)
            if statuses:
                where.append(f"r.status IN ({', '.join(['%s'] * len(statuses))})")
                params.extend(statuses)
            if top_level_only:
                where.append("r.parent_run_id = ''")
            condition = " AND ".join(where)
            period = self._period(span, "r.started_at")
            runs_source = (
                f"SELECT {period} AS period, r.skill_id AS skill_id, r.status AS k, 1 AS runs, "
                + ", ".join(f"{self._sql().run_tokens(f'r.total_{t}')} AS {t}" for t in RUN_TOKENS)
                + f" FROM skill_runs r WHERE {condition}"
            )
            runtime_source = (
                f"SELECT {period} AS period, r.skill_id AS skill_id, "
                f"{self._sql().runtime_bin('r.runtime_seconds')} AS k, 1 AS runs "
                f"FROM skill_runs r WHERE {condition} AND r.status <> 'running'"
            )
            usage_source = (
                f"SELECT {period} AS period, r.skill_id AS skill_id, u.model AS model, "
                "1 AS runs, u.steps AS steps, "
                + ", ".join(f"u.{t} AS {t}" for t in USAGE_TOKENS)
                + " FROM skill_runs r JOIN skill_run_model_usage u ON u.run_id = r.id "
                f"WHERE {condition}"
            )
        else:
            where = ["span = %s", "period_start >= %s", "period_start < %s"]
            params = [span, adapt(since), adapt(until)]
            if skill_id:
                where.append("skill_id = %s")
                params.append(skill_id)
            if top_level_only:
                where.append("top_level = %s")
                params.append(True)
            condition = " AND ".join(where)
            runs_source = (
                f"SELECT period_start AS period, skill_id, status AS k, runs, {run_sums} "
                f"FROM skill_run_stats WHERE {condition}"
            )
            runtime_source = (
                "SELECT period_start AS period, skill_id, bin AS k, runs "
                f"FROM skill_run_runtimes WHERE {condition}"
            )
            usage_source = (
                "SELECT period_start AS period, skill_id, model, runs, steps, "
                + ", ".join(USAGE_TOKENS)
                + f" FROM skill_model_usage_stats WHERE {condition}"
            )
        sums = ", ".join(f"SUM({t})" for t in RUN_TOKENS)
        pg = connection.vendor == "postgresql"
        if pg:
            by_skill = ", (skill_id, k)" if per_skill else ""
            skill = "skill_id" if per_skill else "NULL"
            runs_sql = (
                f"SELECT period, {skill}, k, SUM(runs), {sums} FROM ({runs_source}) s "
                f"GROUP BY GROUPING SETS ((period, k){by_skill})"
            )
            histogram = (
                f"SELECT period, {skill} AS skill_id, k, SUM(runs) AS n FROM ({runtime_source}) s "
                f"GROUP BY GROUPING SETS ((period, k){by_skill}, (k))"
            )
        else:
            runs_sql = (
                f"SELECT period, NULL, k, SUM(runs), {sums} FROM ({runs_source}) s "
                f"GROUP BY period, k UNION ALL "
                f"SELECT NULL, skill_id, k, SUM(runs), {sums} FROM ({runs_source}) s "
                "GROUP BY skill_id, k"
            )
            histogram = (
                f"SELECT period, NULL AS skill_id, k, SUM(runs) AS n FROM ({runtime_source}) s "
                f"GROUP BY period, k UNION ALL "
                f"SELECT NULL, skill_id, k, SUM(runs) FROM ({runtime_source}) s "
                f"GROUP BY skill_id, k UNION ALL "
                f"SELECT NULL, NULL, k, SUM(runs) FROM ({runtime_source}) s GROUP BY k"
            )
        results = []
        with connection.cursor() as cursor:
            cursor.execute(runs_sql, params * (1 if pg else 2))
            results.append(
                [
                    (None if row[0] is None else _as_utc(row[0]), *row[1:])
                    for row in cursor.fetchall()
                ]
            )
            results.append(self._percentile_rows(cursor, histogram, params * (1 if pg else 3)))
            # Usage per (period, model) and per (skill, segment, model): a segment is the
            # buckets between two price changes (``segments``: bucket starts where a new
            # price applies), so each skill's usage is one row per model and segment.
            usage_sums = USAGE_SUMS
            segment, segment_params = self._segment(segments, "period")
            with_segment = f"SELECT s.*, {segment} AS seg FROM ({usage_source}) s"
            if pg:
                by_skill = ", (skill_id, seg, model)" if per_skill else ""
                columns = "skill_id, seg" if per_skill else "NULL, NULL"
                usage_sql = (
                    f"SELECT period, {columns}, model, {usage_sums} FROM ({with_segment}) x "
                    f"GROUP BY GROUPING SETS ((period, model){by_skill})"
                )
                usage_params = segment_params + params
            else:
                usage_sql = (
                    f"SELECT period, NULL, NULL, model, {usage_sums} FROM ({usage_source}) s "
                    f"GROUP BY period, model UNION ALL SELECT NULL, skill_id, seg, model, "
                    f"{usage_sums} FROM ({with_segment}) x GROUP BY skill_id, seg, model"
                )
                usage_params = params + segment_params + params
            cursor.execute(usage_sql, usage_params)
            results.append(
                [
                    (None if row[0] is None else _as_utc(row[0]), *row[1:])
                    for row in cursor.fetchall()
                ]
            )
        return StatsRows(results[0], results[1], results[2])

    def _bucket_reads(
        self,
        span: str,
        since: datetime,
        until: datetime,
        *,
        skill_id: str,
        top_level_only: bool,
        segments: Sequence[datetime],
        per_skill: bool,
        skill_limit: int | None,
    ) -> StatsRows:
        """bucket_rows from the buckets. The series and the window's totals come from the
        all-skills tables (one skill's rows with ``skill``): 30 days are ~30 rows per status,
        runtime bin or model, whatever the skills. Per skill: every skill's runs by status,
        ranked in the database (only the first ``skill_limit`` skills' rows are returned),
        then the runtime histograms and usage of those skills only, through the
        (skill_id, span, period_start) indexes; per skill the window's whole days are read
        as aligned day blocks (_skill_window).

        Measured (issue 18, PostgreSQL, 30 days by day, 200 skills): at 1M runs the old read
        summed ~360,000 skill_run_runtimes rows per call (412-462 ms p95 for /stats/); at
        100k runs the day blocks read 2,726 runs rows instead of 6,877 for the ranking and
        4,392 histogram rows instead of 10,421; see bench/RESULTS.md for the times.
        """
        connection = connections[self.db]
        adapt = connection.ops.adapt_datetimefield_value
        window = ["span = %s", "period_start >= %s", "period_start < %s"]
        window_params: list = [span, adapt(since), adapt(until)]
        if top_level_only:
            window.append("top_level = %s")
            window_params.append(True)
        if skill_id:
            series_where = " AND ".join([*window, "skill_id = %s"])
            series_params = [*window_params, skill_id]
            tables = ("skill_run_stats", "skill_run_runtimes", "skill_model_usage_stats")
        else:
            series_where = " AND ".join(window)
            series_params = window_params
            tables = (
                "all_skills_run_stats",
                "all_skills_runtimes",
                "all_skills_model_usage_stats",
            )
        sums = ", ".join(f"SUM({t})" for t in RUN_TOKENS)
        results: list[list[tuple]] = [[], [], []]
        left_out = 0

        def fetch(cursor, sql, params, into):
            cursor.execute(sql, params)
            into.extend(
                (None if row[0] is None else _as_utc(row[0]), *row[1:]) for row in cursor.fetchall()
            )

        with connection.cursor() as cursor:
            # runs per period (skill None), then per skill (period None)
            fetch(
                cursor,
                f"SELECT period_start, NULL, status, SUM(runs), {sums} FROM {tables[0]} "
                f"WHERE {series_where} GROUP BY period_start, status",
                series_params,
                results[0],
            )
            skills: list[str] = []
            # per skill, the window's whole UTC days are read from the day rows
            span_where, span_params = self._skill_window(
                span, since, until, segments, top_level_only
            )
            if per_skill:
                skill_where = span_where + (" AND skill_id = %s" if skill_id else "")
                skill_params = [*span_params, *([skill_id] if skill_id else [])]
                if skill_limit is None:
                    skill_runs: list[tuple] = []
                    fetch(
                        cursor,
                        f"SELECT NULL, skill_id, status, SUM(runs), {sums} FROM skill_run_stats "
                        f"WHERE {skill_where} GROUP BY skill_id, status",
                        skill_params,
                        skill_runs,
                    )
                    results[0].extend(skill_runs)
                    totals: dict[str, int] = {}
                    for _, skill, _, n, *_ in skill_runs:
                        if n and n > 0:
                            totals[skill] = totals.get(skill, 0) + int(n)
                    skills = sorted(totals, key=lambda k: (-totals[k], k))
                else:
                    skills, left_out = self._ranked_skill_runs(
                        cursor, skill_where, skill_params, skill_limit, results[0]
                    )
            # runtime percentiles per period and of the window (and per chosen skill)
            # the window's histogram summed from the periods' (one read of the rows)
            histogram = (
                f"WITH p AS (SELECT period_start AS period, bin AS k, SUM(runs) AS n "
                f"FROM {tables[1]} WHERE {series_where} GROUP BY period_start, bin) "
                "SELECT period, NULL AS skill_id, k, n FROM p "
                "UNION ALL SELECT NULL, NULL, k, SUM(n) FROM p GROUP BY k"
            )
            params = list(series_params)
            marks = ", ".join(["%s"] * len(skills))
            if skills:
                histogram += (
                    " UNION ALL SELECT NULL, skill_id, bin, SUM(runs) FROM skill_run_runtimes "
                    f"WHERE skill_id IN ({marks}) AND {span_where} "
                    "GROUP BY skill_id, bin"
                )
                params += [*skills, *span_params]
            results[1].extend(self._percentile_rows(cursor, histogram, params))
            # usage per period, and per chosen skill and price segment
            fetch(
                cursor,
                f"SELECT period_start, NULL, NULL, model, {USAGE_SUMS} FROM {tables[2]} "
                f"WHERE {series_where} GROUP BY period_start, model",
                series_params,
                results[2],
            )
            if skills:
                segment, segment_params = self._segment(segments, "period_start")
                fetch(
                    cursor,
                    f"SELECT NULL, skill_id, {segment} AS seg, model, {USAGE_SUMS} "
                    f"FROM skill_model_usage_stats WHERE skill_id IN ({marks}) AND "
                    f"{span_where} GROUP BY skill_id, seg, model",
                    [*segment_params, *skills, *span_params],
                    results[2],
                )
        return StatsRows(results[0], results[1], results[2], left_out)

    def _ranked_skill_runs(
        self, cursor, where: str, params: list, limit: int, into: list
    ) -> tuple[list[str], int]:
        """The first ``limit`` skills by runs in the window (then by name), their runs rows
        (period None, skill, status, runs, tokens) added to ``into`` in that order, and how
        many other skills have rows: the ranking done in the database, so only the shown
        skills' rows reach Python. Ties go by the name's code points, as Python's sort of
        the names does (PostgreSQL: COLLATE "C", byte order of UTF-8; SQLite's default
        BINARY is that already).

        Measured (issue 18, 100k runs, 30 days by day, 200 skills): ~1,000 rows of every
        skill's statuses were folded in Python to keep ~120 (cProfile: a third of
        stats_series' own time); see bench/RESULTS.md for the page before and after."""
        sums = ", ".join(f"SUM({t}) AS {t}" for t in RUN_TOKENS)
        tokens = ", ".join(f"s.{t}" for t in RUN_TOKENS)
        collate = ' COLLATE "C"' if connections[self.db].vendor == "postgresql" else ""
        cursor.execute(
            f"""WITH s AS (
                SELECT skill_id, status, SUM(runs) AS runs, {sums} FROM skill_run_stats
                WHERE {where} GROUP BY skill_id, status
            ), t AS (
                SELECT skill_id, SUM(CASE WHEN runs > 0 THEN runs ELSE 0 END) AS total
                FROM s GROUP BY skill_id
            ), r AS (
                SELECT skill_id, ROW_NUMBER() OVER (ORDER BY total DESC,
                    skill_id{collate}) AS n, COUNT(*) OVER () AS skills FROM t
            )
            SELECT r.n, r.skills, s.skill_id, s.status, s.runs, {tokens}
            FROM r LEFT JOIN s ON s.skill_id = r.skill_id
            WHERE r.n <= %s OR r.n = 1 ORDER BY r.n""",
            [*params, limit],
        )
        skills: list[str] = []
        counted = 0
        for n, of, skill, status, *numbers in cursor.fetchall():
            counted = int(of)
            if n > limit:  # the first skill's rows, read only for the count of skills
                continue
            if not skills or skills[-1] != skill:
                skills.append(skill)
            into.append((None, skill, status, *numbers))
        return skills, max(0, counted - len(skills))

    def _skill_window(
        self,
        span: str,
        since: datetime,
        until: datetime,
        segments: Sequence[datetime],
        top_level_only: bool,
    ) -> tuple[str, list]:
        """The condition selecting the window's bucket rows for numbers over the whole
        window (per skill), and its parameters: its whole UTC days are read from the
        fewest aligned day blocks (STATS_BLOCK_DAYS: 16 and 4 days, then days), the hours
        only at the window's ragged ends (hourly pages) and a price segment's start is
        never inside a block (the usage is split there: with hours, that day is read as
        hours). A 30-day page reads ~8 rows per skill and status, bin or model instead of
        30; a 7-day hourly page ~4 instead of 168."""
        ranges: list[tuple[str, datetime, datetime]] = []
        day = timedelta(days=1)
        if span == "hour":
            start = since.astimezone(UTC)
            midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
            first = midnight if midnight == start else midnight + day
            end = until.astimezone(UTC)
            last = end.replace(hour=0, minute=0, second=0, microsecond=0)
            split = {
                m.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
                for m in segments
            }
            if first < last:
                if start < first:
                    ranges.append(("hour", start, first))
                moment, run = first, None
                while moment < last:
                    if moment in split:
                        if run is not None:
                            ranges += self._day_blocks(run, moment)
                            run = None
                        ranges.append(("hour", moment, moment + day))
                    elif run is None:
                        run = moment
                    moment += day
                if run is not None:
                    ranges += self._day_blocks(run, last)
                if last < end:
                    ranges.append(("hour", last, end))
        elif span == "day":
            # whole days; a segment starts on a day: blocks end there
            cuts = sorted({since, until, *(m for m in segments if since < m < until)})
            for a, b in zip(cuts, cuts[1:], strict=False):
                ranges += self._day_blocks(a, b)
        if not ranges:
            ranges = [(span, since, until)]
        adapt = connections[self.db].ops.adapt_datetimefield_value
        condition = (
            "("
            + " OR ".join(
                ["(span = %s AND period_start >= %s AND period_start < %s)"] * len(ranges)
            )
            + ")"
        )
        params: list = [x for r in ranges for x in (r[0], adapt(r[1]), adapt(r[2]))]
        if top_level_only:
            condition += " AND top_level = %s"
            params.append(True)
        return condition, params

    @staticmethod
    def _day_blocks(since: datetime, until: datetime) -> list[tuple[str, datetime, datetime]]:
        """The whole UTC days [since, until) as the fewest aligned blocks (the largest of
        STATS_BLOCK_DAYS that starts there and fits, else a day), as (span, first start,
        end) ranges, neighbours of one span merged."""
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        sizes = [(f"d{n}", timedelta(days=n)) for n in STATS_BLOCK_DAYS]
        sizes.append(("day", timedelta(days=1)))
        ranges: list[tuple[str, datetime, datetime]] = []
        moment = since.astimezone(UTC)
        end = until.astimezone(UTC)
        while moment < end:
            name, size = next(
                (
                    (n, z)
                    for n, z in sizes
                    if (moment - epoch) % z == timedelta(0) and moment + z <= end
                ),
                sizes[-1],
            )
            if ranges and ranges[-1][0] == name and ranges[-1][2] == moment:
                ranges[-1] = (name, ranges[-1][1], moment + size)
            else:
                ranges.append((name, moment, moment + size))
            moment += size
        return ranges

    def _percentile_rows(self, cursor, histogram: str, params: list) -> list[tuple]:
        """(period, skill, finished runs, percentile bins...) per (period, skill) group of
        ``histogram`` (rows period, skill_id, k = bin, n = runs): the nearest-rank
        percentile's bin is the first bin (in order) whose running count reaches
        ceil(p * total / 100), i.e. cum * 100 >= p * total (whole numbers: no float
        rounding moves the rank).

        The database sums the histograms and hands each group's bins over (PostgreSQL: two
        arrays in bin order; SQLite: one text of "bin:runs" pairs); the running counts are
        taken here. Window functions over the
        summed rows (a sort, two running sums, a grouped pick) were most of the statement:
        measured on a 30-day page at 100k runs (3,754 summed rows, backend CPU, 4 x 25
        calls), 19-30 ms with them, 13-21 ms without."""
        if connections[self.db].vendor == "postgresql":
            # Two int arrays in bin order: psycopg reads them as lists of ints (no text to
            # cut up and no sort here; 30-day page at 100k runs, cProfile: this method's
            # own time 4.8 -> see bench/RESULTS.md).
            cursor.execute(
                f"WITH h AS ({histogram}) SELECT period, skill_id, array_agg(k ORDER BY k), "
                "array_agg(n::bigint ORDER BY k) FROM h GROUP BY period, skill_id",
                params,
            )
            groups = cursor.fetchall()
        else:
            # SQLite's group_concat has no order before 3.44: "bin:runs" pairs, sorted here
            cursor.execute(
                f"WITH h AS ({histogram}) SELECT period, skill_id, "
                "group_concat(k || ':' || n, ',') FROM h GROUP BY period, skill_id",
                params,
            )
            groups = []
            for period, skill_id, text in cursor.fetchall():
                pairs = sorted(tuple(map(int, pair.split(":"))) for pair in text.split(","))
                groups.append((period, skill_id, [k for k, _ in pairs], [n for _, n in pairs]))
        rows = []
        for period, skill_id, bins, counts in groups:
            total = sum(counts)
            picks: list[int | None] = [None] * len(STATS_PERCENTILES)
            cum, wanted = 0, 0
            for k, n in zip(bins, counts, strict=True):
                cum += n
                while (
                    wanted < len(STATS_PERCENTILES)
                    and cum * 100 >= total * (STATS_PERCENTILES[wanted])
                ):
                    picks[wanted] = k
                    wanted += 1
                if wanted == len(STATS_PERCENTILES):
                    break
            rows.append((None if period is None else _as_utc(period), skill_id, total, *picks))
        return rows

    def _segment(self, segments: Sequence[datetime], column: str) -> tuple[str, list]:
        """SQL numbering the price segment a bucket start lies in (0 before the first of
        ``segments``), and its parameters."""
        if not segments:
            return "0", []
        adapt = connections[self.db].ops.adapt_datetimefield_value
        case = f"(CASE WHEN {column} >= %s THEN 1 ELSE 0 END)"
        return "(" + " + ".join([case] * len(segments)) + ")", [adapt(m) for m in segments]

    def skill_usage(
        self,
        span: str,
        since: datetime,
        until: datetime,
        skill_ids: Sequence[str],
        segments: Sequence[datetime] = (),
    ) -> list[tuple]:
        """(skill, segment, model, runs, steps, input, output, cached input, thinking) of
        these skills' runs (nested ones too) started in [since, until), one row per skill,
        price segment (as in bucket_rows) and model.

        The skills page asks for its 100 skills: a range of the model_usage_stats_skill
        index per skill, never the window's rows of every skill (stats_series read all
        20,000 skills' days for that page: 1.2 s CPU, 7-9 s at load 11).
        """
        if not skill_ids:
            return []
        adapt = connections[self.db].ops.adapt_datetimefield_value
        segment, segment_params = self._segment(segments, "period_start")
        marks = ", ".join(["%s"] * len(skill_ids))
        sql = (
            f"SELECT skill_id, {segment} AS seg, model, {USAGE_SUMS} "
            "FROM skill_model_usage_stats "
            f"WHERE skill_id IN ({marks}) AND span = %s "
            "AND period_start >= %s AND period_start < %s "
            "GROUP BY skill_id, seg, model"
        )
        params = [*segment_params, *skill_ids, span, adapt(since), adapt(until)]
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]

    def rebuild(self) -> int:
        """Recount the stats tables (the four per-skill ones, then the all-skills ones summed
        from them) from skill_runs and skill_run_logs; returns the number of
        skill_run_stats rows. Only needed after writes made with triggers off. Writers wait
        meanwhile: on PostgreSQL both tables are locked against writes. A database not yet
        at migration 0016 has no all-skills tables: only the per-skill ones are recounted."""
        connection = connections[self.db]
        all_skills = "all_skills_run_stats" in connection.introspection.table_names()
        sql = StatsSql(connection.vendor, all_skills=all_skills)
        with transaction.atomic(using=self.db), connection.cursor() as cursor:
            if sql.pg:
                cursor.execute("SET LOCAL statement_timeout = 0")
                cursor.execute("LOCK TABLE skill_runs, skill_run_logs IN SHARE MODE")
            for statement in sql.recount():
                cursor.execute(statement)
            cursor.execute("SELECT COUNT(*) FROM skill_run_stats")
            return int(cursor.fetchone()[0])


class RunModelUsageManager(models.Manager):
    """Reads of skill_run_model_usage, each run's step usage by model (kept by triggers)."""

    def for_runs(self, run_ids: Sequence[str]) -> list[tuple]:
        """(run_id, model, steps, input, output, cached input, thinking tokens) of these
        runs: one probe of the (run_id, model) key per run.

        Raw SQL, as ids_with_children: the ORM's ``run_id__in`` prepared each of a list
        page's 50 ids one by one, and building the query cost 1.7 ms of CPU against
        0.4 ms for this (every list page asks it: issue 17)."""
        run_ids = list(run_ids)
        if not run_ids:
            return []
        sql = (
            f"SELECT run_id, model, steps, {', '.join(USAGE_TOKENS)} "
            f"FROM {self.model._meta.db_table} "
            f"WHERE run_id IN ({', '.join(['%s'] * len(run_ids))})"
        )
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, run_ids)
            return cursor.fetchall()


# --- derived data, recounted whole ------------------------------------------------------


def rebuild_derived(using: str = "default", *, reindex: bool = True) -> dict[str, float]:
    """Recount everything the triggers derive from skill_runs and skill_run_logs, from those
    two tables, in one transaction; returns the seconds each part took, by name.

    Only needed after rows were written with the triggers off: a bulk load that disabled
    them (bench/generate.py: 1M runs load in minutes instead of firing every trigger per
    row), a pg_restore with --disable-triggers. The parts, in order: the failure roll-ups
    (columns of skill_runs, which the tables after them may read), the search index, then
    every table of the runs app whose manager has ``rebuild()`` -- the convention for a
    table kept by triggers (skill_run_counts and those added since). A new derived table
    is picked up by giving its manager ``rebuild()``; nothing else lists them.

    ``reindex=False`` skips what is only an index on PostgreSQL (the search index's
    expression indexes), for a caller that has just built every index.
    """
    import time

    from django.apps import apps

    connection = connections[using]
    parts: list[tuple[str, Callable[[], object]]] = []
    runs = apps.get_model("runs", "SkillRun").objects.db_manager(using)
    parts.append(("failure roll-ups", runs.recount_failure_rollups))
    if reindex or connection.vendor != "postgresql":
        parts.append(("search index", runs.rebuild_search_index))
    # A database migrated only part way (a benchmark's data set) lacks the later tables.
    tables = set(connection.introspection.table_names())
    for model in apps.get_app_config("runs").get_models():
        manager = model._default_manager.db_manager(using)
        if callable(getattr(manager, "rebuild", None)) and model._meta.db_table in tables:
            parts.append((model._meta.db_table, manager.rebuild))
    took: dict[str, float] = {}
    with transaction.atomic(using=using):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # A recount reads every run and event: at 1M runs it outlasts the site's
                # statement_timeout.
                cursor.execute("SET LOCAL statement_timeout = 0")
        for name, rebuild in parts:
            began = time.perf_counter()
            rebuild()
            took[name] = time.perf_counter() - began
    return took
