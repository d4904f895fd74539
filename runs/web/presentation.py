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
    """A span drawn against a total length, in percent (for SVG x/width attributes)."""

    start: float
    width: float

    @classmethod
    def of(cls, offset: float, length: float, total: float) -> Bar:
        if total <= 0:
            return cls(0.0, 0.5)
        start = min(max(offset / total * 100, 0.0), 100.0)
        width = min(max(length / total * 100, 0.5), 100.0 - start) if start < 100 else 0.5
        return cls(round(start, 3), round(max(width, 0.5), 3))


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


def _payload_field(payload, key: str) -> str:
    if isinstance(payload, dict):
        value = payload.get(key)
        if isinstance(value, str):
            return value
    return ""


def build_timeline(rows, payloads: dict, run_started: datetime, run_length: float):
    """TimelineEvents from SkillRunLogQuerySet.timeline() rows and the loaded payloads.

    Tool calls are paired with their results (by call_id, else the oldest open call of
    the same tool) within the rows given.
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
    for index, event in enumerate(events):
        if event.pair_seconds is not None and event.event_type == contract.EVENT_TOOL_CALL:
            length = event.pair_seconds
        elif index + 1 < len(events):
            length = (events[index + 1].created_at - event.created_at).total_seconds()
        else:
            length = 0.0
        event.bar = Bar.of(event.offset_seconds, length, run_length)
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


def flatten_tree(root: TreeNode, started: datetime, length: float) -> list[TreeNode]:
    """Pre-order nodes; ``closes`` says how many open subtrees end after each node."""
    order: list[TreeNode] = []
    stack = [(root, 0)]
    while stack:
        node, _ = stack.pop()
        order.append(node)
        offset = (node.run.started_at - started).total_seconds()
        node.bar = Bar.of(offset, node.run.runtime_seconds or 0.0, length)
        for child in reversed(node.children):
            stack.append((child, 0))
    # A node closes its own subtree (if it has children) and every ancestor whose last
    # descendant it is.
    for index, node in enumerate(order):
        following = order[index + 1].depth if index + 1 < len(order) else 0
        node.closes = max(node.depth - following, 0)
    return order
