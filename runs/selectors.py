"""Reads that more than one face needs: keyset pages, has-children, the call tree, text heads.

The dashboard (runs/web/) and the API (runs/api/) both call these, so a page of runs, a
tree or a run's head is built one way. Each function reads through the managers; none
renders anything or knows about HTTP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace

from django.db.models import Count, Q, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Length, Substr

from . import contract, search
from .managers import RUNTIME_BIN_LIMIT, RUNTIME_BIN_RATIO, ZERO_RUNTIME_BIN
from .models import ModelPrice, RunModelUsage, SkillRun, SkillRunLog, SkillRunStat

TREE_NODE_CAP = 2000
TREE_DEPTH_CAP = 64
# Output and error longer than this are cut on the run page, with a link to the whole text.
TEXT_PAGE_CHARS = 100_000


# --- keyset pages -------------------------------------------------------------------------


@dataclass
class Page:
    """One page of rows in the order asked for, and whether rows lie on either side."""

    rows: list
    has_older: bool
    has_newer: bool


def newest_first_page(
    matching,
    size: int,
    after: tuple[datetime, str] | None = None,
    before: tuple[datetime, str] | None = None,
) -> Page:
    """A page of ``matching`` (a SkillRun queryset) newest first, as summaries.

    ``after`` is the position of the last row of the page before (older rows follow);
    ``before`` is the first row of the page after (the newer rows, read oldest first
    from the position and turned around). Keyset, not OFFSET: as fast at any depth.
    One row more than the page is read to know whether there is another page.
    """
    if after is not None and before is not None:
        raise ValueError("after and before cannot be combined")
    if before is not None:
        rows = list(matching.newer_than(*before).oldest_first().summaries()[: size + 1])
        if not rows:
            # A position newer than every row (a hand-made or stale cursor): the newest
            # page, rather than an empty one claiming older rows with none to start from.
            return newest_first_page(matching, size)
        return Page(rows=rows[:size][::-1], has_older=True, has_newer=len(rows) > size)
    if after is not None:
        matching = matching.older_than(*after)
    rows = list(matching.newest_first().summaries()[: size + 1])
    return Page(rows=rows[:size], has_older=len(rows) > size, has_newer=after is not None)


def oldest_first_page(matching, size: int, after: tuple[datetime, str] | None = None, full=False):
    """A page of ``matching`` oldest first (children of a run), after a position.

    Summaries, or whole runs with ``inputs_text`` when ``full``. Returns (rows, more).
    """
    if after is not None:
        matching = matching.newer_than(*after)
    matching = matching.oldest_first()
    rows = list((matching.with_inputs_text() if full else matching.summaries())[: size + 1])
    return rows[:size], len(rows) > size


def with_has_children(rows):
    """Set ``has_children`` on summary rows: one query for the page, not a probe per row
    inside the list's own query (see SkillRunQuerySet.summaries)."""
    parents = SkillRun.objects.ids_with_children([run.id for run in rows])
    for run in rows:
        run.has_children = run.id in parents
    return rows


def with_search_snippets(rows, query):
    """Set ``search_snippet`` on summary rows (a runs.search.Snippet of the first text of
    each run that matches ``query``, or None): a page's rows only, never every match."""
    sources = SkillRun.objects.search_sources([run.id for run in rows], query)
    pattern = query.highlight_pattern()
    for run in rows:
        where, text = sources.get(run.id, ("", ""))
        run.search_snippet = search.snippet(where, text, pattern)
    return rows


# --- one run ------------------------------------------------------------------------------


def run_with_text_heads(run_id: str):
    """The run without its big columns whole, or None: inputs as JSON text (parsed by the
    caller under a depth guard), output and error cut to TEXT_PAGE_CHARS, with sizes."""
    chars = TEXT_PAGE_CHARS
    return (
        SkillRun.objects.defer("inputs", "output", "error")
        .annotate(
            inputs_text=Cast("inputs", TextField()),
            output_head=Substr("output", 1, chars),
            output_size=Length("output"),
            error_head=Substr("error", 1, chars),
            error_size=Length("error"),
        )
        .filter(pk=contract.clean_id(run_id))
        .first()
    )


# --- the call tree ------------------------------------------------------------------------


@dataclass
class TreeNode:
    """A run in a call tree; the dashboard adds its drawing (bar, closes) to it."""

    run: object
    depth: int
    children: list[TreeNode] = field(default_factory=list)
    closes: int = 0
    bar: object = None


@dataclass
class CallTree:
    root: TreeNode
    size: int
    capped: bool
    # The root's own parent is no longer stored (purged): the tree starts below it.
    root_is_orphan: bool

    def preorder(self):
        """Every node, depth-first, children oldest first."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def call_tree(run_id: str) -> CallTree:
    """The call tree around a run from its root, capped: three queries whatever its size.

    Cycles in corrupted data are cut where a run repeats; at most TREE_NODE_CAP runs and
    TREE_DEPTH_CAP levels. NotFound for an unknown run.
    """
    chain = SkillRun.objects.parent_chain(run_id, summaries=True)
    root = chain[0]
    rows = [
        SimpleNamespace(**row)
        for row in SkillRun.objects.call_tree(root.id, TREE_NODE_CAP, TREE_DEPTH_CAP)
    ]
    rows.sort(key=lambda row: (row.started_at, row.id))  # children oldest first
    children: dict[str, list] = {}
    for row in rows:
        if row.id != root.id:
            children.setdefault(row.parent_run_id, []).append(row)
    root_node = TreeNode(run=root, depth=0)
    seen = {root.id}
    level = [root_node]
    capped = len(rows) > TREE_NODE_CAP
    while level:
        next_level = []
        for node in level:
            for kid in children.get(node.run.id, ()):
                if kid.id in seen or len(seen) >= TREE_NODE_CAP:
                    capped = capped or kid.id not in seen
                    continue
                if node.depth + 1 > TREE_DEPTH_CAP:
                    capped = True
                    continue
                seen.add(kid.id)
                child = TreeNode(run=kid, depth=node.depth + 1)
                node.children.append(child)
                next_level.append(child)
        level = next_level
    return CallTree(
        root=root_node, size=len(seen), capped=capped, root_is_orphan=root.parent_run_id != ""
    )


# --- a run's events: pages, filters, failures, live totals (the run page) -----------------

# Failures listed with links in a run's header (and used to find the next error).
FAILURE_LIST_CAP = 500
FAILED_SUB_RUNS_CAP = 20
# How far from a page the other half of a tool call is looked for.
PARTNER_WINDOW = 500


@dataclass
class EventFilter:
    """What the run page's event filter asks for (all events when empty)."""

    event_type: str = ""
    tool: str = ""
    errors_only: bool = False

    def active(self) -> bool:
        return bool(self.event_type or self.tool or self.errors_only)


@dataclass
class EventPage:
    rows: list
    has_before: bool
    has_after: bool


@dataclass
class EventBreakdown:
    """A run's events counted by type, tool and failure, from one grouped query."""

    total: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    by_tool: dict[str, int] = field(default_factory=dict)
    failed_tool_results: int = 0
    error_events: int = 0

    @property
    def failures(self) -> int:
        return self.failed_tool_results + self.error_events


def event_breakdown(run_id: str, failed_tools: int | None = None) -> EventBreakdown:
    """Counts of a run's events. With ``failed_tools`` (the run's trigger-kept
    roll-up), only the types are counted: no payload is read, which on PostgreSQL is what
    the grouped pass over a 10,000-event run cost (26 of 29 ms); tools are then not listed."""
    found = EventBreakdown()
    if failed_tools is not None:
        rows = SkillRunLog.objects.filter(run_id=run_id).order_by().values_list("event_type")
        for event_type, n in rows.annotate(n=Count("pk")).values_list("event_type", "n"):
            found.total += n
            found.by_type[event_type] = n
        found.failed_tool_results = failed_tools
        found.error_events = found.by_type.get(contract.EVENT_ERROR, 0)
        return found
    for event_type, tool, failed, n in SkillRunLog.objects.filter(run_id=run_id).breakdown():
        found.total += n
        found.by_type[event_type] = found.by_type.get(event_type, 0) + n
        if tool:
            found.by_tool[tool] = found.by_tool.get(tool, 0) + n
        if failed and event_type == contract.EVENT_ERROR:
            found.error_events += n
        elif failed:
            found.failed_tool_results += n
    return found


def _filtered_events(run_id: str, wanted: EventFilter):
    logs = SkillRunLog.objects.for_run(run_id)
    if wanted.errors_only:
        logs = logs.failures()
    if wanted.event_type:
        logs = logs.filter(event_type=wanted.event_type)
    if wanted.tool:
        logs = logs.of_tool(wanted.tool)
    return logs


def event_page(
    run_id: str,
    wanted: EventFilter,
    size: int,
    *,
    after: int | None = None,
    before: int | None = None,
    last: bool = False,
) -> EventPage:
    """A page of a run's events (timeline rows with ``failed``) in sequence order.

    Keyset by sequence: after a sequence, before one, the last page, or the first. With
    ``errors_only``, the tool calls whose results failed are added next to them (with
    ``context`` set), whatever page they are on.
    """
    logs = _filtered_events(run_id, wanted)
    timeline = logs.timeline().with_failed()
    if before is not None or last:
        backwards = timeline.filter(sequence__lt=before) if before is not None else timeline
        rows = list(backwards.order_by("-sequence")[: size + 1])
        has_before = len(rows) > size
        rows = rows[:size][::-1]
        has_after = before is not None and logs.filter(sequence__gte=before).exists()
    else:
        forwards = timeline.filter(sequence__gt=after) if after else timeline
        rows = list(forwards[: size + 1])
        has_after = len(rows) > size
        rows = rows[:size]
        has_before = bool(after) and logs.filter(sequence__lte=after).exists()
    for row in rows:
        row.context = False
    if wanted.errors_only and rows:
        rows = _with_calls_of_failed_results(run_id, rows)
    return EventPage(rows=rows, has_before=has_before, has_after=has_after)


def _with_calls_of_failed_results(run_id: str, rows: list) -> list:
    call_ids = {
        row.payload_call_id
        for row in rows
        if row.event_type == contract.EVENT_TOOL_RESULT and row.payload_call_id
    }
    if not call_ids:
        return rows
    calls = list(
        SkillRunLog.objects.for_run(run_id)
        .filter(event_type=contract.EVENT_TOOL_CALL, sequence__lt=rows[-1].sequence)
        .timeline()
        .with_failed()
        .filter(payload__call_id__in=sorted(call_ids))
    )
    shown = {row.sequence for row in rows}
    for call in calls:
        call.context = True
    merged = rows + [call for call in calls if call.sequence not in shown]
    merged.sort(key=lambda row: row.sequence)
    return merged


def failures(
    run_id: str, cap: int = FAILURE_LIST_CAP, after: int = 0, event_type: str = ""
) -> list:
    """The first ``cap`` failed events of a run after a sequence (of one type when given):
    (sequence, event_type, tool, call_id). Read in sequence order and stopped at ``cap``:
    the first few cost a few rows, not a pass over the run."""
    logs = SkillRunLog.objects.for_run(run_id).failures()
    if after:
        logs = logs.filter(sequence__gt=after)
    if event_type:
        logs = logs.filter(event_type=event_type)
    return list(
        logs.timeline().values_list("sequence", "event_type", "payload_tool", "payload_call_id")[
            :cap
        ]
    )


def failed_sub_runs(run_id: str, cap: int = FAILED_SUB_RUNS_CAP) -> list[dict]:
    """Runs below ``run_id`` (any depth, within the tree's caps) with a failed status,
    oldest first, at most cap + 1 (one more says there are more)."""
    rows = (
        SkillRun.objects.call_tree(run_id, TREE_NODE_CAP, TREE_DEPTH_CAP)
        .filter(status__in=contract.FAILED_STATUSES)
        .exclude(pk=run_id)
        .order_by("started_at", "id")
    )
    return list(rows[: cap + 1])


def partners(
    run_id: str, calls_after: tuple[int, list[str]], results_before: tuple[int, list[str]]
):
    """Where the other half of a tool call lies when it is not on the page:
    {("result", call_id): sequence} for calls whose result comes after sequence
    ``calls_after[0]``, {("call", call_id): sequence} for results whose call came before
    ``results_before[0]``. One query; the nearest match wins."""
    after, call_ids = calls_after
    before, result_ids = results_before
    wanted = Q(pk__in=[])
    if call_ids:
        wanted |= Q(
            event_type=contract.EVENT_TOOL_RESULT,
            sequence__gt=after,
            payload__call_id__in=sorted(set(call_ids)),
        )
    if result_ids:
        wanted |= Q(
            event_type=contract.EVENT_TOOL_CALL,
            sequence__lt=before,
            payload__call_id__in=sorted(set(result_ids)),
        )
    if not (call_ids or result_ids):
        return {}
    # Only so far from the page: a call's result is a few events away, and an unbounded
    # search read every later event of a 10,000-event run (18 ms).
    wanted &= Q(sequence__gt=before - PARTNER_WINDOW, sequence__lte=after + PARTNER_WINDOW)
    found: dict[tuple[str, str], int] = {}
    rows = (
        SkillRunLog.objects.for_run(run_id)
        .timeline()
        .filter(wanted)
        .values_list("event_type", "payload_call_id", "sequence")
    )
    for event_type, call_id, sequence in rows:
        if event_type == contract.EVENT_TOOL_RESULT:
            key = ("result", call_id)
            found[key] = min(found.get(key, sequence), sequence)
        else:
            key = ("call", call_id)
            found[key] = max(found.get(key, sequence), sequence)
    return found


def _as_count(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        try:
            number = int(float(value))
        except (TypeError, ValueError, OverflowError):
            return 0
    return max(number, 0)


def step_token_totals(run_id: str) -> tuple[int, int, int]:
    """(input, output, thinking) tokens summed from a run's step events: what a running
    run has used so far (its row's totals are written when it finishes). Usage is read
    where the recorder writes it (payload.usage) and where OTLP ingest does (top level)."""
    rows = (
        SkillRunLog.objects.for_run(run_id)
        .filter(event_type=contract.EVENT_STEP)
        .order_by()
        .values_list(
            KT("payload__usage__input_tokens"),
            KT("payload__usage__output_tokens"),
            KT("payload__usage__thinking_tokens"),
            KT("payload__input_tokens"),
            KT("payload__output_tokens"),
            KT("payload__thinking_tokens"),
        )
    )
    totals = [0, 0, 0]
    for row in rows:
        for index in range(3):
            totals[index] += _as_count(row[index]) or _as_count(row[index + 3])
    return totals[0], totals[1], totals[2]


def last_sequence(run_id: str) -> int:
    found = SkillRunLog.objects.for_run(run_id).order_by("-sequence").values_list("sequence")[:1]
    return found[0][0] if found else 0


# --- trends and cost: the stats series ------------------------------------------------


@dataclass(frozen=True)
class StatsQuery:
    """A window of whole buckets and the list's filters (filters.StatsParameters builds
    it). ``until`` is exclusive."""

    since: datetime
    until: datetime
    bucket: str  # "hour" | "day"
    skill_id: str = ""
    caller_id: str = ""
    channel_id: str = ""
    statuses: tuple[str, ...] = ()
    top_level_only: bool = True

    @property
    def exact_path(self) -> bool:
        """True when the numbers are aggregated from skill_runs (caller, channel or status
        set: the buckets are not keyed by them), not read from the buckets."""
        return bool(self.caller_id or self.channel_id or self.statuses)

    @property
    def step(self) -> timedelta:
        return timedelta(hours=1) if self.bucket == "hour" else timedelta(days=1)

    def starts(self) -> list[datetime]:
        starts, moment = [], self.since
        while moment < self.until:
            starts.append(moment)
            moment += self.step
        return starts


@dataclass(frozen=True)
class ModelUsage:
    """Token usage of step events naming one model ("" = naming none: unpriced). ``runs``:
    how many runs had such steps (1 for a run's own row)."""

    model: str
    runs: int
    steps: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    thinking_tokens: int

    def __add__(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(
            self.model,
            self.runs + other.runs,
            self.steps + other.steps,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.thinking_tokens + other.thinking_tokens,
        )


@dataclass(frozen=True)
class StatsPoint:
    """One bucket (or the whole window, for totals and per skill)."""

    start: datetime
    runs: dict[str, int]
    total_runs: int
    failed_runs: int
    runtime_p50: float | None
    runtime_p95: float | None
    input_tokens: int
    output_tokens: int
    thinking_tokens: int
    usage: tuple[ModelUsage, ...]


@dataclass(frozen=True)
class SkillStats(StatsPoint):
    """A skill over the window. ``usage_by_bucket``: its usage as (start, rows) to price at
    that start: one entry per stretch of buckets with the same prices (price_segments), so
    pricing each entry at its start equals pricing every bucket at its own start, with one
    row per model and price change instead of per model and bucket."""

    skill_id: str = ""
    usage_by_bucket: tuple[tuple[datetime, tuple[ModelUsage, ...]], ...] = ()


@dataclass(frozen=True)
class StatsSeries:
    query: StatsQuery
    points: list[StatsPoint]
    skills: list[SkillStats]
    totals: StatsPoint
    # skills with runs in the window left out of ``skills`` (stats_series' skill_limit)
    more_skills: int = 0


def runtime_bin_value(bin_number: int) -> float:
    """The runtime a histogram bin stands for: its geometric midpoint (0 for the zero bin),
    within 4.9% of every runtime in the bin."""
    if bin_number == ZERO_RUNTIME_BIN:
        return 0.0
    return RUNTIME_BIN_RATIO ** (bin_number + 0.5)


def runtime_bin_of(seconds: float) -> int:
    """The bin of a runtime, as the triggers compute it (for tests and checks)."""
    if not seconds > 0:
        return ZERO_RUNTIME_BIN
    if math.isinf(seconds):
        return RUNTIME_BIN_LIMIT
    b = math.floor(math.log(seconds) / math.log(RUNTIME_BIN_RATIO))
    return max(min(b, RUNTIME_BIN_LIMIT), -RUNTIME_BIN_LIMIT)


def histogram_percentile(histogram: dict[int, int], percent: int) -> float | None:
    """The nearest-rank percentile (the value at rank ceil(percent * n / 100), 1-based)
    read from a runtime histogram {bin: runs}: the geometric midpoint of the bin holding
    that rank, so within 4.9% of the exact nearest-rank percentile. None when empty. The
    stats' reads pick the same bin (SkillRunStatManager._percentile_rows)."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    seen = 0
    for bin_number in sorted(histogram):
        seen += histogram[bin_number]
        if seen * 100 >= percent * total:
            return runtime_bin_value(bin_number)
    return runtime_bin_value(max(histogram))


class _Accumulator:
    def __init__(self):
        self.runs: dict[str, int] = {}
        self.tokens = [0, 0, 0]
        self.runtimes: tuple[float | None, float | None] = (None, None)
        self.usage: dict[str, list[int]] = {}

    def add_runs(self, status, n, tokens):
        self.runs[status] = self.runs.get(status, 0) + n
        for i, value in enumerate(tokens):
            self.tokens[i] += value

    def set_runtimes(self, p50_bin, p95_bin):
        self.runtimes = tuple(
            None if b is None else runtime_bin_value(int(b)) for b in (p50_bin, p95_bin)
        )

    def add_usage(self, model: str, numbers: list[int]):
        known = self.usage.get(model)
        if known is None:
            self.usage[model] = list(numbers)
        else:
            for i, value in enumerate(numbers):
                known[i] += value

    def point(self, start: datetime, cls=StatsPoint, **extra) -> StatsPoint:
        runs = {status: n for status, n in sorted(self.runs.items()) if n > 0}
        return cls(
            start=start,
            runs=runs,
            total_runs=sum(runs.values()),
            failed_runs=sum(n for s, n in runs.items() if s in contract.FAILED_STATUSES),
            runtime_p50=self.runtimes[0],
            runtime_p95=self.runtimes[1],
            input_tokens=self.tokens[0],
            output_tokens=self.tokens[1],
            thinking_tokens=self.tokens[2],
            usage=tuple(ModelUsage(m, *self.usage[m]) for m in sorted(self.usage)),
            **extra,
        )


def price_segments(query: StatsQuery) -> list[datetime]:
    """The bucket starts inside the window where another price applies: each model price's
    valid_from (a small table), rounded up to the bucket that is priced at it first."""
    moments = ModelPrice.objects.filter(
        valid_from__gt=query.since, valid_from__lt=query.until
    ).values_list("valid_from", flat=True)
    starts = set()
    for moment in moments:
        start = query.since + (moment - query.since) // query.step * query.step
        if start < moment:
            start += query.step
        if query.since < start < query.until:
            starts.add(start)
    return sorted(starts)


def skill_usage(
    skill_ids: Sequence[str], since: datetime, until: datetime
) -> dict[str, tuple[tuple[datetime, tuple[ModelUsage, ...]], ...]]:
    """{skill: usage_by_bucket} of these skills' runs (nested ones too) started in the
    whole UTC days [since, until), as SkillStats.usage_by_bucket gives it (one entry per
    price segment, to price at its start), read for these skills only."""
    query = StatsQuery(since=since, until=until, bucket="day", top_level_only=False)
    segments = price_segments(query)
    segment_starts = [since, *segments]
    found: dict[str, dict[datetime, list[ModelUsage]]] = {}
    rows = SkillRunStat.objects.skill_usage("day", since, until, list(skill_ids), segments)
    for skill_id, segment, model, *numbers in rows:
        usage = ModelUsage(model, *(int(x or 0) for x in numbers))
        start = segment_starts[int(segment)]
        found.setdefault(skill_id, {}).setdefault(start, []).append(usage)
    return {
        skill_id: tuple(
            (start, tuple(sorted(rows, key=lambda u: u.model)))
            for start, rows in sorted(by_start.items())
        )
        for skill_id, by_start in found.items()
    }


def stats_series(
    query: StatsQuery, *, per_skill: bool = True, skill_limit: int | None = None
) -> StatsSeries:
    """The window's series (one point per bucket, empty ones included), its skills (most
    runs first) and totals: grouped reads of the buckets (or, with caller, channel or
    status, of skill_runs: see SkillRunStatManager), folded here.

    ``per_skill=False``: no skills (the API's answer has none, and reads none).
    ``skill_limit``: only the first that many skills (``more_skills`` counts the others);
    the buckets' runtime histograms and usage are read for those skills only (issue 18: a
    30-day window of 200 skills summed ~360,000 histogram rows at 1M runs).

    Percentiles per point, per skill and for the window are read from the runtime
    histograms summed in the database over the point's (or skill's) rows: the bin holding
    the nearest rank, so within 4.9% of the exact nearest-rank value.
    """
    segments = price_segments(query)
    runs, runtimes, usage, left_out = SkillRunStat.objects.bucket_rows(
        query.bucket,
        query.since,
        query.until,
        skill_id=query.skill_id,
        caller_id=query.caller_id,
        channel_id=query.channel_id,
        statuses=query.statuses,
        top_level_only=query.top_level_only,
        segments=segments,
        per_skill=per_skill,
        skill_limit=skill_limit,
    )
    segment_starts = [query.since, *segments]
    starts = query.starts()
    points = {start: _Accumulator() for start in starts}
    skills: dict[str, _Accumulator] = {}
    skill_buckets: dict[str, dict[datetime, dict[str, ModelUsage]]] = {}
    totals = _Accumulator()
    # Each runs/runtimes row is either a period's (skill None) or a skill's (period None).
    for start, skill_id, status, n, *tokens in runs:
        n, tokens = int(n), [int(t or 0) for t in tokens]
        if start is None:
            _skill(skills, skill_id).add_runs(status, n, tokens)
            continue
        for acc in (points.setdefault(start, _Accumulator()), totals):
            acc.add_runs(status, n, tokens)
    for start, skill_id, _finished, p50_bin, p95_bin in runtimes:
        if start is not None:
            acc = points.setdefault(start, _Accumulator())
        elif skill_id is not None:
            acc = _skill(skills, skill_id)
        else:
            acc = totals
        acc.set_runtimes(p50_bin, p95_bin)
    for start, skill_id, segment, model, *numbers in usage:
        numbers = [int(x or 0) for x in numbers]
        if start is not None:
            for acc in (points.setdefault(start, _Accumulator()), totals):
                acc.add_usage(model, numbers)
            continue
        _skill(skills, skill_id).add_usage(model, numbers)
        segment_start = segment_starts[int(segment)]
        skill_buckets.setdefault(skill_id, {}).setdefault(segment_start, {})[model] = ModelUsage(
            model, *numbers
        )
    ranked = sorted(skills, key=lambda k: (-sum(n for n in skills[k].runs.values() if n > 0), k))
    # skills the database left out (it ranked them: bucket_rows), then any left out here
    more_skills = left_out
    if not per_skill:
        ranked = []
    elif skill_limit is not None and len(ranked) > skill_limit:
        more_skills += len(ranked) - skill_limit
        ranked = ranked[:skill_limit]
    skill_rows = [
        skills[skill_id].point(
            query.since,
            cls=SkillStats,
            skill_id=skill_id,
            usage_by_bucket=tuple(
                (start, tuple(models[m] for m in sorted(models)))
                for start, models in sorted(skill_buckets.get(skill_id, {}).items())
            ),
        )
        for skill_id in ranked
    ]
    return StatsSeries(
        query=query,
        points=[points[start].point(start) for start in sorted(points)],
        skills=skill_rows,
        totals=totals.point(query.since),
        more_skills=more_skills,
    )


def _skill(skills: dict[str, _Accumulator], skill_id: str) -> _Accumulator:
    acc = skills.get(skill_id)
    if acc is None:
        acc = skills[skill_id] = _Accumulator()
    return acc


def usage_by_run(run_ids) -> dict[str, tuple[ModelUsage, ...]]:
    """Each run's step usage by model (runs without step events are absent): one indexed
    read of skill_run_model_usage. For the list's cost column, the run page and tree sums."""
    found: dict[str, list[ModelUsage]] = {}
    for run_id, model, steps, *tokens in RunModelUsage.objects.for_runs(list(run_ids)):
        found.setdefault(run_id, []).append(ModelUsage(model, 1, int(steps), *map(int, tokens)))
    return {run_id: tuple(sorted(rows, key=lambda u: u.model)) for run_id, rows in found.items()}
