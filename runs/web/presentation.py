"""Turning stored runs and events into what the pages draw: JSON text, bars, pairs, trees.

Nothing here marks text safe: templates escape every value this module returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .. import contract, jsontext
from ..selectors import TreeNode

# Payloads up to this many characters are loaded and pretty-printed; bigger ones show a
# preview and a link to the raw JSON, so a megabyte payload cannot freeze the browser.
PRETTY_PAYLOAD_MAX_CHARS = 64_000
# JSON longer than this many lines is folded.
FOLD_LINES = 24


def is_long(text: str | None) -> bool:
    return bool(text) and (text.count("\n") > FOLD_LINES or len(text) > 2000)


@dataclass
class Bar:
    """A span drawn against a total length, in percent (for SVG x/width attributes), with
    its own seconds kept so the page's script can redraw it as a live run grows."""

    start: float
    width: float
    start_s: float = 0.0
    length_s: float = 0.0
    failed: bool = False
    open: bool = False  # still going: drawn to now, open-ended

    @classmethod
    def of(
        cls, offset: float, length: float, total: float, failed: bool = False, open: bool = False
    ) -> Bar:
        extra = {"start_s": offset, "length_s": length, "failed": failed, "open": open}
        if total <= 0:
            return cls(0.0, 0.5, **extra)
        start = min(max(offset / total * 100, 0.0), 100.0)
        width = min(max(length / total * 100, 0.5), 100.0 - start) if start < 100 else 0.5
        return cls(round(start, 3), round(max(width, 0.5), 3), **extra)


def axis_ticks(length: float, most: int = 6) -> list[tuple[float, float]]:
    """(percent, seconds) ticks at a round step (1, 2 or 5 times a power of ten) over
    ``length`` seconds: at most ``most`` of them, 0 included."""
    if length <= 0:
        return [(0.0, 0.0)]
    step = 0.001
    while length / step > most - 1:
        for factor in (2, 2.5, 2):
            step *= factor
            if length / step <= most - 1:
                break
    ticks, at = [], 0.0
    while at <= length + 1e-9:
        ticks.append((round(at / length * 100, 3), round(at, 3)))
        at += step
    return ticks


@dataclass
class TimelineEvent:
    sequence: int
    event_type: str
    created_at: datetime
    offset_seconds: float
    payload_size: int
    pretty: str | None = None
    preview: str = ""
    too_big: bool = False
    fold: bool = False
    tool: str = ""
    call_id: str = ""
    paired_with: int | None = None
    pair_seconds: float | None = None
    bar: Bar | None = None
    # A failure by the contract's rule (an error event, a tool result with is_error true).
    failed: bool = False
    # Shown for a failure next to it (the call of a failed result, in "errors only").
    context: bool = False
    # A model step's latency, when its payload says it.
    latency: float | None = None
    # Markdown a model step answered with (payload text/content), rendered below it.
    markdown: str | None = None
    # The other half of a tool call or result when it lies on another page.
    partner_elsewhere: int | None = None


def _payload_field(payload, key: str) -> str:
    if isinstance(payload, dict):
        value = payload.get(key)
        if isinstance(value, str):
            return value
    return ""


# Where a model step's latency is found, and the unit it is in.
LATENCY_KEYS = (
    ("latency_ms", 0.001),
    ("latency_seconds", 1.0),
    ("duration_seconds", 1.0),
    ("duration_ms", 0.001),
)
# Step payload fields whose text is a model's answer (shown rendered as markdown).
MARKDOWN_KEYS = ("text", "content", "answer", "output")
MARKDOWN_MAX_CHARS = 20_000


def _latency(payload) -> float | None:
    if not isinstance(payload, dict):
        return None
    for key, unit in LATENCY_KEYS:
        value = payload.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            seconds = value * unit
            if seconds < 10**7:
                return float(seconds)
    return None


def _markdown_source(payload) -> str | None:
    if not isinstance(payload, dict):
        return None
    for key in MARKDOWN_KEYS:
        value = payload.get(key)
        if isinstance(value, str) and value.strip() and len(value) <= MARKDOWN_MAX_CHARS:
            return value
    return None


def build_timeline(
    rows, payloads: dict, run_started: datetime, run_length: float, running: bool = False
):
    """TimelineEvents from SkillRunLogQuerySet.timeline() rows and the loaded payloads.

    Tool calls are paired with their results (by call_id, else the oldest open call of
    the same tool) within the rows given. Bars share the run's time axis: a paired call
    spans to its result, a step with a known latency spans the latency before it, other
    events last until the next one; the last event of a running run is open to now.
    """
    events: list[TimelineEvent] = []
    open_calls: list[TimelineEvent] = []
    for row in rows:
        offset = (row.created_at - run_started).total_seconds()
        event = TimelineEvent(
            sequence=row.sequence,
            event_type=row.event_type,
            created_at=row.created_at,
            offset_seconds=offset,
            payload_size=row.payload_size or 0,
            failed=bool(getattr(row, "failed", False)),
            context=bool(getattr(row, "context", False)),
        )
        if row.sequence in payloads:
            payload = payloads[row.sequence]
            event.pretty = jsontext.pretty(payload)
            if event.pretty is None:
                event.preview = row.payload_preview
                event.too_big = True
            event.fold = is_long(event.pretty)
            event.tool = _payload_field(payload, "tool")
            event.call_id = _payload_field(payload, "call_id")
            if event.event_type == contract.EVENT_STEP:
                event.latency = _latency(payload)
                event.markdown = _markdown_source(payload)
            # The contract's rule, for rows read without the database's flag.
            event.failed = event.failed or contract.tool_result_failed(event.event_type, payload)
        else:
            event.preview = row.payload_preview
            event.too_big = True
            event.tool = getattr(row, "payload_tool", None) or ""
            event.call_id = getattr(row, "payload_call_id", None) or ""
        if event.event_type == contract.EVENT_TOOL_CALL:
            open_calls.append(event)
        elif event.event_type == contract.EVENT_TOOL_RESULT:
            call = _match_call(open_calls, event)
            if call is not None:
                open_calls.remove(call)
                seconds = (event.created_at - call.created_at).total_seconds()
                call.paired_with, event.paired_with = event.sequence, call.sequence
                call.pair_seconds = event.pair_seconds = seconds
        events.append(event)
    by_sequence = {e.sequence: e for e in events}
    for index, event in enumerate(events):
        start, is_open = event.offset_seconds, False
        if event.pair_seconds is not None and event.event_type == contract.EVENT_TOOL_CALL:
            length = event.pair_seconds
        elif event.latency is not None:
            length = event.latency
            start = max(event.offset_seconds - event.latency, 0.0)
        elif index + 1 < len(events):
            length = (events[index + 1].created_at - event.created_at).total_seconds()
        elif running:
            length, is_open = max(run_length - event.offset_seconds, 0.0), True
        else:
            length = 0.0
        partner = by_sequence.get(event.paired_with)
        failed = event.failed or (
            event.event_type == contract.EVENT_TOOL_CALL and partner is not None and partner.failed
        )
        event.bar = Bar.of(start, length, run_length, failed=failed, open=is_open)
    return events


def _match_call(open_calls: list[TimelineEvent], result: TimelineEvent):
    if result.call_id:
        for call in open_calls:
            if call.call_id == result.call_id:
                return call
        return None
    for call in open_calls:
        if call.tool == result.tool and not call.call_id:
            return call
    return None


@dataclass
class Rollup:
    """A run's own figures, or its subtree's (itself and every run below it)."""

    input_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    tool_calls: int = 0
    runtime: float = 0.0
    failed: int = 0  # runs with a failed status (contract.FAILED_STATUSES)
    runs: int = 1

    def add(self, other: Rollup) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.thinking_tokens += other.thinking_tokens
        self.tool_calls += other.tool_calls
        self.runtime += other.runtime
        self.failed += other.failed
        self.runs += other.runs


def run_failed(run) -> bool:
    return run.status in contract.FAILED_STATUSES


def own_rollup(run, now: datetime) -> Rollup:
    if run.finished_at is None and run.status == contract.STATUS_RUNNING:
        runtime = max((now - run.started_at).total_seconds(), 0.0)
    else:
        runtime = float(run.runtime_seconds or 0.0)
    return Rollup(
        input_tokens=int(run.total_input_tokens or 0),
        output_tokens=int(run.total_output_tokens or 0),
        thinking_tokens=int(run.total_thinking_tokens or 0),
        tool_calls=int(run.tool_calls_count or 0),
        runtime=runtime,
        failed=1 if run_failed(run) else 0,
    )


def tree_length(nodes, started: datetime, now: datetime) -> float:
    """The tree's time axis in seconds from the root's start: to the latest end of a run
    (its start plus its runtime, or now while it runs), so every bar fits."""
    end = 0.0
    for node in nodes:
        offset = (node.run.started_at - started).total_seconds()
        end = max(end, offset + own_rollup(node.run, now).runtime)
    return max(end, 0.0)


def flatten_tree(
    root: TreeNode, started: datetime, length: float, now: datetime | None = None
) -> list[TreeNode]:
    """Pre-order nodes; ``closes`` says how many open subtrees end after each node.

    Each node gets ``own`` and ``subtree`` (Rollup: summed here from the tree's rows, at
    most selectors.TREE_NODE_CAP of them), ``failed_below`` (failed runs under it) and
    ``first_failed_below`` (the id of the first, pre-order), and a bar on the root's time
    axis: a running run's bar is open-ended to now.
    """
    now = now or datetime.now(started.tzinfo)
    order: list[TreeNode] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        run = node.run
        node.own = own_rollup(run, now)
        offset = (run.started_at - started).total_seconds()
        running = run.finished_at is None and run.status == contract.STATUS_RUNNING
        node.bar = Bar.of(offset, node.own.runtime, length, failed=run_failed(run), open=running)
        for child in reversed(node.children):
            stack.append(child)
    # Sums bottom-up: children come after their parent in pre-order.
    for node in reversed(order):
        node.subtree = Rollup(runs=0)
        node.subtree.add(node.own)
        node.failed_below = 0
        node.first_failed_below = ""
        for child in node.children:
            node.subtree.add(child.subtree)
            node.failed_below += child.subtree.failed
            if not node.first_failed_below:
                node.first_failed_below = (
                    child.run.id if run_failed(child.run) else child.first_failed_below
                )
    # A node closes its own subtree (if it has children) and every ancestor whose last
    # descendant it is.
    for index, node in enumerate(order):
        following = order[index + 1].depth if index + 1 < len(order) else 0
        node.closes = max(node.depth - following, 0)
    return order
