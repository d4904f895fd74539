"""DjangoStorage: the contract over the managers, converting models to dataclasses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connections

from . import contract
from .contract import RunFilter, RunStats, SkillRun, SkillRunLog
from .models import SkillRun as SkillRunModel
from .models import SkillRunLog as SkillRunLogModel
from .services import purge


class SchemaMissing(RuntimeError):
    """The audit tables are not in the database."""


def run_from_model(row: SkillRunModel) -> SkillRun:
    return SkillRun(**{name: getattr(row, name) for name in contract.RUN_FIELDS})


def log_from_model(row: SkillRunLogModel) -> SkillRunLog:
    return SkillRunLog(
        run_id=row.run_id,
        sequence=row.sequence,
        event_type=row.event_type,
        payload=row.payload,
        created_at=row.created_at,
    )


class DjangoStorage:
    """The Storage contract on the Django database ``using`` (default: "default")."""

    # append_logs stores events of several runs in one transaction: runs.buffered writes a
    # batch of events of many runs with one commit instead of one per run.
    append_logs_across_runs = True

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using

    def close_connection(self) -> None:
        """Close this thread's connection; the next call opens a new one. Outside a request
        nothing replaces a connection that a database restart broke, so a long-lived writer
        thread (runs.buffered) calls this after a failed write and when it stops."""
        connections[self.using].close()

    @property
    def _runs(self):
        return SkillRunModel.objects.db_manager(self.using)

    @property
    def _logs(self):
        return SkillRunLogModel.objects.db_manager(self.using)

    def initialize(self) -> None:
        """Check that the schema is there; migrations, not this call, create it."""
        # Views count: with month partitions skill_run_logs is one (manage.py partition_history).
        tables = set(connections[self.using].introspection.table_names(include_views=True))
        missing = {SkillRunModel._meta.db_table, SkillRunLogModel._meta.db_table} - tables
        if missing:
            raise SchemaMissing(
                f"the skillaudit tables {', '.join(sorted(missing))} are missing from "
                f"database {self.using!r}: run `python manage.py migrate`"
            )

    # --- writes --------------------------------------------------------------------

    def start_run(self, run: SkillRun) -> None:
        self._runs.start(contract.new_run(run, contract.utcnow()))

    def finish_run(self, run_id: str, stats: RunStats) -> None:
        self._runs.finish(contract.clean_id(run_id), contract.clean_stats(stats), contract.utcnow())

    def append_log(self, log: SkillRunLog) -> None:
        self._logs.append([contract.new_log(log, contract.utcnow())])

    def append_logs(self, logs: Sequence[SkillRunLog]) -> None:
        """Several events in one transaction: all stored or none (used by the API)."""
        now = contract.utcnow()
        self._logs.append([contract.new_log(log, now) for log in logs])

    def append_checked_logs(self, logs: Sequence[SkillRunLog]) -> None:
        """append_logs for logs that contract.new_log returned already: runs.buffered checks
        each event in the recording thread, and its writer thread need not check it again
        (the check walks the whole payload: the costliest part of queueing an event)."""
        self._logs.append(list(logs))

    def purge_older_than(self, t: datetime) -> int:
        t = contract.require_aware(t, "t")
        runs, _logs = purge.purge_started_before(t, using=self.using)
        return runs

    # --- reads ---------------------------------------------------------------------

    def get_run(self, run_id: str) -> SkillRun:
        try:
            return run_from_model(self._runs.get(pk=contract.clean_id(run_id)))
        except SkillRunModel.DoesNotExist:
            raise contract.NotFound(run_id) from None

    def list_logs_by_run(self, run_id: str) -> list[SkillRunLog]:
        return [log_from_model(row) for row in self._logs.for_run(contract.clean_id(run_id))]

    def list_runs_by_skill(self, skill_id: str, limit: int) -> list[SkillRun]:
        return self.list_runs_by_skill_paginated(skill_id, 0, limit, False)

    def list_runs_by_skill_paginated(
        self, skill_id: str, offset: int, limit: int, include_dry_run: bool
    ) -> list[SkillRun]:
        qs = self._runs.for_skill(contract.clean_id(skill_id), include_dry_run).newest_first()
        return [run_from_model(row) for row in qs.page(offset, limit)]

    def count_runs_by_skill(self, skill_id: str, include_dry_run: bool) -> int:
        return self._runs.for_skill(contract.clean_id(skill_id), include_dry_run).count()

    def list_runs_by_caller(self, caller_id: str, limit: int) -> list[SkillRun]:
        qs = self._runs.for_caller(contract.clean_id(caller_id)).newest_first()
        return [run_from_model(row) for row in qs.page(0, limit)]

    def list_runs_filtered(self, f: RunFilter, offset: int, limit: int) -> list[SkillRun]:
        qs = self._runs.matching(contract.clean_filter(f)).newest_first()
        return [run_from_model(row) for row in qs.page(offset, limit)]

    def count_runs_filtered(self, f: RunFilter) -> int:
        return self._runs.matching(contract.clean_filter(f)).count()

    def list_children_by_parent(self, parent_run_id: str) -> list[SkillRun]:
        parent_run_id = contract.clean_id(parent_run_id)
        if not parent_run_id:
            return []
        return [run_from_model(r) for r in self._runs.children_of(parent_run_id).oldest_first()]

    def walk_parent_chain(self, run_id: str) -> list[SkillRun]:
        return [run_from_model(row) for row in self._runs.parent_chain(contract.clean_id(run_id))]

    def list_finished_runs_before(self, cutoff: datetime, limit: int) -> list[SkillRun]:
        cutoff = contract.require_aware(cutoff, "cutoff")
        limit = int(limit)
        if limit <= 0:
            return []
        limit = min(limit, contract.MAX_OFFSET)
        return [run_from_model(row) for row in self._runs.finished_before(cutoff)[:limit]]

    def last_run_by_skills(
        self, skill_ids: Sequence[str], include_failed: bool
    ) -> dict[str, datetime]:
        ids = contract.unique_ids(skill_ids)
        if not ids:
            return {}
        return self._runs.last_started_by_skills(ids, include_failed)
