"""What the benchmark times: the list filters, the pages, the contract methods."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.http import QueryDict

from runs import contract, cursors
from runs.filters import RunFilterSet
from runs.models import SkillRun
from runs.services import history

EVENT_RUNS = {events: run_id for run_id, events in history.EVENT_FIXTURES.items()}
TREE_ROOT = history.TREE_ROOT
TREE_LEAF = "bench-tree-1000-0999"  # the last node of the sixth level
# Runs the write benchmarks create start in 2000, far before the history, and are purged.
WRITE_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
WRITE_PURGE_BEFORE = datetime(2001, 1, 1, tzinfo=UTC)
WRITE_SKILL = "bench-write"


@dataclass
class Dataset:
    latest: datetime  # newest started_at: "since"/"until" are placed from it

    @classmethod
    def read(cls) -> Dataset:
        latest = SkillRun.objects.newest_first().values_list("started_at", flat=True).first()
        if latest is None:
            raise SystemExit("the database has no runs: run bench/history.py first")
        return cls(latest=latest)


def list_cases(data: Dataset) -> list[tuple[str, dict[str, str]]]:
    """The list page with no filter and with each filter alone (hot and rare values)."""
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return [
        ("no filter", {}),
        ("status=error", {"status": "error"}),
        ("status=stale", {"status": "stale"}),
        ("skill (most runs)", {"skill": history.skill_name(0)}),
        ("skill (rare)", {"skill": history.skill_name(history.SKILLS - 1)}),
        ("caller (most runs)", {"caller": history.caller_name(0)}),
        ("caller (rare)", {"caller": history.caller_name(history.CALLERS // 2)}),
        ("channel (most runs)", {"channel": history.channel_name(0)}),
        ("since (last 7 days)", {"since": (data.latest - timedelta(days=7)).strftime(iso)}),
        ("until (45 days back)", {"until": (data.latest - timedelta(days=45)).strftime(iso)}),
        ("include_nested=1", {"include_nested": "1"}),
        ("include_dry_run=1", {"include_dry_run": "1"}),
        # failure roll-ups, status groups and lists, relative times
        ("failed=1", {"failed": "1"}),
        ("failed=1 + nested", {"failed": "1", "include_nested": "1"}),
        ("failed=1 + skill (most runs)", {"failed": "1", "skill": history.skill_name(0)}),
        ("status=failed", {"status": "failed"}),
        ("status=error,timeout", {"status": "error,timeout"}),
        ("since=-24h", {"since": "-24h"}),
    ]


def stock_expressible(query: dict[str, str]) -> bool:
    """Whether the stock admin can filter the same rows: it knows no failure roll-up and
    no list of statuses (those cases have no stock figure)."""
    status = query.get("status", "")
    return "failed" not in query and "," not in status and status != "failed"


def matching(query: dict[str, str]):
    """The list page's queryset for a query string (RunFilterSet.qs: every filter)."""
    data = QueryDict(mutable=True)
    data.update(query)
    filterset = RunFilterSet(data, queryset=SkillRun.objects.all())
    if not filterset.is_valid():
        raise ValueError(f"invalid bench query {query}: {filterset.error_messages}")
    return filterset.qs


def run_filter(query: dict[str, str]) -> contract.RunFilter:
    """The contract filter the list page derives from a query string."""
    data = QueryDict(mutable=True)
    data.update(query)
    filterset = RunFilterSet(data, queryset=SkillRun.objects.all())
    if not filterset.is_valid():
        raise ValueError(f"invalid bench query {query}: {filterset.error_messages}")
    return filterset.run_filter()


def url(path: str, query: dict[str, str]) -> str:
    return f"{path}?{urlencode(query)}" if query else path


def stock_query(f: contract.RunFilter) -> dict[str, str]:
    """The same rows in the stock admin's query language (it has no "exclude")."""
    query: dict[str, str] = {}
    if f.top_level_only:
        query["parent_run_id__exact"] = ""
    if f.status:
        query["status__exact"] = f.status
    elif not f.include_dry_run:
        statuses = [s for s in contract.KNOWN_STATUSES if s != contract.STATUS_DRY_RUN]
        query["status__in"] = ",".join(statuses)
    for field, value in (
        ("skill_id", f.skill_id),
        ("caller_id", f.caller_id),
        ("channel_id", f.channel_id),
    ):
        if value:
            query[f"{field}__exact"] = value
    if f.since is not None:
        query["started_at__gte"] = f.since.isoformat()
    if f.until is not None:
        query["started_at__lt"] = f.until.isoformat()
    return query


def deep_cursor(offset: int) -> str | None:
    """The "after" cursor that opens the default list after ``offset`` rows (found once)."""
    rows = (
        SkillRun.objects.matching(run_filter({}))
        .newest_first()
        .values_list("started_at", "id")[offset - 1 : offset]
    )
    row = next(iter(rows), None)
    return cursors.encode(*row) if row else None


def page_cases() -> list[tuple[str, str]]:
    return [
        ("run page, 10 events", f"/runs/{EVENT_RUNS[10]}/"),
        ("run page, 1,000 events", f"/runs/{EVENT_RUNS[1000]}/"),
        ("run page, 10,000 events", f"/runs/{EVENT_RUNS[10_000]}/"),
        ("tree page, 1,000 runs", f"/runs/{TREE_ROOT}/tree/"),
        ("skills page", "/skills/"),
    ]


class ContractCalls:
    """The 17 Storage methods as timed calls, writes on throwaway runs started in 2000."""

    def __init__(self, storage, data: Dataset):
        self.storage = storage
        self.data = data
        self.counter = itertools.count()
        self.prepared: list[str] = []

    def _new_run(self, suffix: str = "") -> str:
        run_id = f"bench-write-{uuid.uuid4().hex[:20]}{suffix}"
        started = WRITE_EPOCH + timedelta(seconds=next(self.counter))
        run = contract.SkillRun(id=run_id, skill_id=WRITE_SKILL, started_at=started)
        self.storage.start_run(run)
        return run_id

    def _prepare_run(self, _i: int) -> None:
        self.prepared.append(self._new_run())

    def _prepare_purge(self, _i: int) -> None:
        run_id = self._new_run()
        for sequence in range(1, 4):
            self.storage.append_log(contract.SkillRunLog(run_id=run_id, sequence=sequence))

    def cleanup(self) -> int:
        return self.storage.purge_older_than(WRITE_PURGE_BEFORE)

    def calls(self):
        """(name, call, per-iteration setup or None, writes?) for each method."""
        s, data = self.storage, self.data
        hot_skill, hot_caller = history.skill_name(0), history.caller_name(0)
        fifty_skills = [history.skill_name(rank) for rank in range(0, history.SKILLS, 4)]
        log_run = {"id": None, "sequence": 0}

        def append_one():
            log_run["sequence"] += 1
            s.append_log(
                contract.SkillRunLog(
                    run_id=log_run["id"],
                    sequence=log_run["sequence"],
                    event_type="step",
                    payload={"thought": "benchmark", "usage": {"input_tokens": 10}},
                )
            )

        def start_log_run(_i):
            if log_run["id"] is None:
                log_run["id"] = self._new_run()

        def finish_prepared():
            s.finish_run(self.prepared.pop(), contract.RunStats(status="ok", output="done"))

        top_level = contract.RunFilter(top_level_only=True)
        cutoff = data.latest - timedelta(days=30)
        return [
            ("initialize", s.initialize, None, False),
            ("start_run", lambda: self._new_run(), None, True),
            ("finish_run", finish_prepared, self._prepare_run, True),
            ("append_log", append_one, start_log_run, True),
            ("get_run", lambda: s.get_run(EVENT_RUNS[1000]), None, False),
            (
                "list_logs_by_run (1,000 events)",
                lambda: s.list_logs_by_run(EVENT_RUNS[1000]),
                None,
                False,
            ),
            (
                "list_runs_by_skill (most runs, 50)",
                lambda: s.list_runs_by_skill(hot_skill, 50),
                None,
                False,
            ),
            (
                "list_runs_by_skill_paginated (offset 1,000)",
                lambda: s.list_runs_by_skill_paginated(hot_skill, 1000, 50, False),
                None,
                False,
            ),
            (
                "count_runs_by_skill (most runs)",
                lambda: s.count_runs_by_skill(hot_skill, False),
                None,
                False,
            ),
            (
                "list_runs_by_caller (most runs, 50)",
                lambda: s.list_runs_by_caller(hot_caller, 50),
                None,
                False,
            ),
            (
                "list_runs_filtered (top level, 50)",
                lambda: s.list_runs_filtered(top_level, 0, 50),
                None,
                False,
            ),
            (
                "count_runs_filtered (top level, exact)",
                lambda: s.count_runs_filtered(top_level),
                None,
                False,
            ),
            ("purge_older_than (1 run, 3 logs)", self.cleanup, self._prepare_purge, True),
            ("list_children_by_parent", lambda: s.list_children_by_parent(TREE_ROOT), None, False),
            ("walk_parent_chain (depth 6)", lambda: s.walk_parent_chain(TREE_LEAF), None, False),
            (
                "list_finished_runs_before (50)",
                lambda: s.list_finished_runs_before(cutoff, 50),
                None,
                False,
            ),
            (
                "last_run_by_skills (50 skills, ok only)",
                lambda: s.last_run_by_skills(fifty_skills, False),
                None,
                False,
            ),
            (
                "last_run_by_skills (50 skills, include_failed)",
                lambda: s.last_run_by_skills(fifty_skills, True),
                None,
                False,
            ),
        ]
