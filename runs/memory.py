"""MemoryStorage: the in-process reference implementation of the contract.

Zero dependencies and thread-safe, so a light host gets queryable run history with no
set-up, and the Django implementation has something to be compared with.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from datetime import datetime

from . import contract
from .contract import NotFound, RunFilter, RunStats, SkillRun, SkillRunLog


def _newest_first(run: SkillRun):
    return (run.started_at, run.id)


class MemoryStorage:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._runs: dict[str, SkillRun] = {}
        self._logs: dict[str, dict[int, SkillRunLog]] = {}

    def initialize(self) -> None:
        return None

    # --- writes --------------------------------------------------------------------

    def start_run(self, run: SkillRun) -> None:
        stored = contract.new_run(run, contract.utcnow())
        with self._lock:
            if stored.id in self._runs:
                raise contract.Conflict(f"run {stored.id!r} already exists")
            self._runs[stored.id] = stored
            self._logs[stored.id] = {}

    def finish_run(self, run_id: str, stats: RunStats) -> None:
        run_id = contract.clean_id(run_id)
        stats = contract.clean_stats(stats)
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise NotFound(run_id)
            run.finished_at = contract.utcnow()
            run.status = stats.status
            run.output = stats.output
            run.error = stats.error
            run.tool_calls_count = stats.tool_calls
            run.runtime_seconds = stats.runtime_seconds
            run.total_input_tokens = stats.input_tokens
            run.total_output_tokens = stats.output_tokens
            run.total_thinking_tokens = stats.thinking_tokens

    def append_log(self, log: SkillRunLog) -> None:
        stored = contract.new_log(log, contract.utcnow())
        with self._lock:
            logs = self._logs.get(stored.run_id)
            if logs is None:
                raise NotFound(stored.run_id)
            if stored.sequence in logs:
                raise contract.Conflict(
                    f"run {stored.run_id!r} already has sequence {stored.sequence}"
                )
            logs[stored.sequence] = stored

    def purge_older_than(self, t: datetime) -> int:
        t = contract.require_aware(t, "t")
        with self._lock:
            doomed = [run_id for run_id, run in self._runs.items() if run.started_at < t]
            for run_id in doomed:
                del self._runs[run_id]
                del self._logs[run_id]
            return len(doomed)

    # --- reads ---------------------------------------------------------------------

    def get_run(self, run_id: str) -> SkillRun:
        with self._lock:
            run = self._runs.get(contract.clean_id(run_id))
            if run is None:
                raise NotFound(run_id)
            return copy.deepcopy(run)

    def list_logs_by_run(self, run_id: str) -> list[SkillRunLog]:
        with self._lock:
            logs = self._logs.get(contract.clean_id(run_id), {})
            return [copy.deepcopy(logs[seq]) for seq in sorted(logs)]

    def _select(self, keep, *, newest_first=True) -> list[SkillRun]:
        with self._lock:
            runs = [run for run in self._runs.values() if keep(run)]
            runs.sort(key=_newest_first, reverse=newest_first)
            return [copy.deepcopy(run) for run in runs]

    @staticmethod
    def _page(runs: list[SkillRun], offset: int, limit: int) -> list[SkillRun]:
        offset = contract.clamp_offset(offset)
        return runs[offset : offset + contract.clamp_limit(limit)]

    def list_runs_by_skill(self, skill_id: str, limit: int) -> list[SkillRun]:
        return self.list_runs_by_skill_paginated(skill_id, 0, limit, False)

    def list_runs_by_skill_paginated(
        self, skill_id: str, offset: int, limit: int, include_dry_run: bool
    ) -> list[SkillRun]:
        f = RunFilter(skill_id=contract.clean_id(skill_id), include_dry_run=include_dry_run)
        runs = self._select(lambda r: r.skill_id == f.skill_id and self._dry_run_ok(r, f))
        return self._page(runs, offset, limit)

    def count_runs_by_skill(self, skill_id: str, include_dry_run: bool) -> int:
        f = RunFilter(skill_id=contract.clean_id(skill_id), include_dry_run=include_dry_run)
        return len(self._select(lambda r: r.skill_id == f.skill_id and self._dry_run_ok(r, f)))

    def list_runs_by_caller(self, caller_id: str, limit: int) -> list[SkillRun]:
        f = RunFilter(caller_id=contract.clean_id(caller_id))
        runs = self._select(lambda r: r.caller_id == f.caller_id and self._dry_run_ok(r, f))
        return self._page(runs, 0, limit)

    @staticmethod
    def _dry_run_ok(run: SkillRun, f: RunFilter) -> bool:
        return f.include_dry_run or bool(f.status) or run.status != contract.STATUS_DRY_RUN

    @classmethod
    def _matches(cls, run: SkillRun, f: RunFilter) -> bool:
        return (
            cls._dry_run_ok(run, f)
            and (not f.status or run.status == f.status)
            and (not f.skill_id or run.skill_id == f.skill_id)
            and (not f.caller_id or run.caller_id == f.caller_id)
            and (not f.channel_id or run.channel_id == f.channel_id)
            and (not f.top_level_only or run.parent_run_id == "")
            and (f.since is None or run.started_at >= f.since)
            and (f.until is None or run.started_at < f.until)
        )

    def list_runs_filtered(self, f: RunFilter, offset: int, limit: int) -> list[SkillRun]:
        f = contract.clean_filter(f)
        return self._page(self._select(lambda r: self._matches(r, f)), offset, limit)

    def count_runs_filtered(self, f: RunFilter) -> int:
        f = contract.clean_filter(f)
        return len(self._select(lambda r: self._matches(r, f)))

    def list_children_by_parent(self, parent_run_id: str) -> list[SkillRun]:
        parent_run_id = contract.clean_id(parent_run_id)
        if not parent_run_id:
            return []
        return self._select(lambda r: r.parent_run_id == parent_run_id, newest_first=False)

    def walk_parent_chain(self, run_id: str) -> list[SkillRun]:
        with self._lock:
            run = self._runs.get(contract.clean_id(run_id))
            if run is None:
                raise NotFound(run_id)
            chain = [run]
            seen = {run.id}
            while len(chain) < contract.MAX_PARENT_CHAIN_DEPTH:
                parent = self._runs.get(chain[-1].parent_run_id)
                if parent is None or parent.id in seen:
                    break
                chain.append(parent)
                seen.add(parent.id)
            return [copy.deepcopy(r) for r in reversed(chain)]

    def list_finished_runs_before(self, cutoff: datetime, limit: int) -> list[SkillRun]:
        cutoff = contract.require_aware(cutoff, "cutoff")
        limit = int(limit)
        if limit <= 0:
            return []
        with self._lock:
            runs = [
                r
                for r in self._runs.values()
                if r.finished_at is not None
                and r.finished_at < cutoff
                and r.status != contract.STATUS_RUNNING
            ]
            runs.sort(key=lambda r: (r.finished_at, r.id))
            return [copy.deepcopy(r) for r in runs[:limit]]

    def last_run_by_skills(
        self, skill_ids: Sequence[str], include_failed: bool
    ) -> dict[str, datetime]:
        wanted = set(contract.unique_ids(skill_ids))
        if not wanted:
            return {}
        if include_failed:
            counts = lambda r: r.status not in (contract.STATUS_DRY_RUN, contract.STATUS_RUNNING)  # noqa: E731
        else:
            counts = lambda r: r.status == contract.STATUS_OK  # noqa: E731
        latest: dict[str, datetime] = {}
        with self._lock:
            for run in self._runs.values():
                if run.skill_id in wanted and counts(run):
                    if run.skill_id not in latest or run.started_at > latest[run.skill_id]:
                        latest[run.skill_id] = run.started_at
        return latest
