"""The run page's timeline and its live updates: parameters, pages, failures, totals.

views.run_detail and views.run_live call these; rendering.py draws the events. A run's
page reads a fixed number of queries whatever its size (tests/test_views.py counts them):
the run, its parent chain and children, its failed sub-runs (one walk of the call tree),
one grouped pass over its events (count, filter choices, failures), the first
FAILURE_LIST_CAP failures, a page of events, their payloads, and, when a call's other half
lies on another page, one lookup of those. A running run adds its step tokens summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.utils import timezone

from .. import contract, selectors
from ..filters import parse_bool
from ..models import SkillRunLog
from . import presentation, rendering

# 100 events a page: the run page with 1,000 events has to answer within 60 ms (p95), and
# a page of 200 expanded payloads was 50,000 px tall.
EVENTS_PAGE_SIZE = 100
# The query parameters the run page takes (a search engineer adds theirs here).
PAGE_PARAMS = {"events_after", "events_before", "last", "type", "tool", "errors"}
LIVE_PARAMS = {"after", "append"}
# New events sent by one poll at most; the page says when more are waiting.
LIVE_EVENTS_MAX = 200
# Failures linked by name in a run's header; the rest are counted, and "errors only" lists them.
FAILURES_NAMED = 8
# Seconds between two polls of a running run's page (static/runs/trace.js reads it).
POLL_SECONDS = 2


class BadParameters(ValueError):
    def __init__(self, problems: dict[str, list[str]]):
        super().__init__(str(problems))
        self.problems = problems


def _sequence(value: str, name: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise BadParameters({name: ["must be a whole number (an event sequence)"]})
    return int(value)


@dataclass
class Position:
    wanted: selectors.EventFilter
    after: int | None = None
    before: int | None = None
    last: bool = False

    def filter_params(self) -> list[tuple[str, str]]:
        params = []
        if self.wanted.event_type:
            params.append(("type", self.wanted.event_type))
        if self.wanted.tool:
            params.append(("tool", self.wanted.tool))
        if self.wanted.errors_only:
            params.append(("errors", "1"))
        return params


def parse_position(data) -> Position:
    """The run page's query string: where the page of events starts and its filter."""
    problems: dict[str, list[str]] = {}
    wanted = selectors.EventFilter()
    event_type = data.get("type", "")
    if len(event_type) > contract.EVENT_TYPE_MAX_LENGTH:
        problems["type"] = [f"is longer than {contract.EVENT_TYPE_MAX_LENGTH} characters"]
    wanted.event_type = contract.clean_text(event_type)
    tool = data.get("tool", "")
    if len(tool) > contract.NAME_MAX_LENGTH:
        problems["tool"] = [f"is longer than {contract.NAME_MAX_LENGTH} characters"]
    wanted.tool = contract.clean_text(tool)
    for name in ("errors", "last"):
        try:
            value = parse_bool(data.get(name))
        except ValueError as exc:
            problems[name] = [str(exc)]
            value = False
        if name == "errors":
            wanted.errors_only = value
        else:
            last = value
    position = Position(wanted=wanted, last=last)
    try:
        if data.get("events_after"):
            position.after = _sequence(data["events_after"], "events_after")
        if data.get("events_before"):
            position.before = _sequence(data["events_before"], "events_before")
    except BadParameters as exc:
        problems.update(exc.problems)
    chosen = [
        name
        for name, given in (
            ("events_after", position.after),
            ("events_before", position.before),
            ("last", position.last or None),
        )
        if given is not None
    ]
    if len(chosen) > 1:
        problems[chosen[1]] = [f"cannot be combined with {chosen[0]}"]
    if problems:
        raise BadParameters(problems)
    return position


def _query(params: list[tuple[str, str]]) -> str:
    return "?" + urlencode(params) if params else "?"


def is_running(run) -> bool:
    return run.status == contract.STATUS_RUNNING and run.finished_at is None


def run_length(run, last_event_at=None, now=None) -> float:
    """The run's time axis in seconds: to now while it runs, else its runtime (or its
    last event, when a clock put that later)."""
    now = now or timezone.now()
    if is_running(run):
        return max((now - run.started_at).total_seconds(), 0.0)
    length = float(run.runtime_seconds or 0.0)
    if not length and run.finished_at is not None:
        length = (run.finished_at - run.started_at).total_seconds()
    if last_event_at is not None:
        length = max(length, (last_event_at - run.started_at).total_seconds())
    return max(length, 0.0)


def timeline_events(run, rows, length: float):
    """TimelineEvents for rows of one page, with their payloads and the pages of the
    other halves of their calls."""
    small = [
        r.sequence for r in rows if (r.payload_size or 0) <= presentation.PRETTY_PAYLOAD_MAX_CHARS
    ]
    payloads = SkillRunLog.objects.payloads(run.id, small) if small else {}
    events = presentation.build_timeline(
        rows, payloads, run.started_at, length, running=is_running(run)
    )
    calls = [
        e.call_id
        for e in events
        if e.event_type == contract.EVENT_TOOL_CALL and not e.paired_with and e.call_id
    ]
    results = [
        e.call_id
        for e in events
        if e.event_type == contract.EVENT_TOOL_RESULT and not e.paired_with and e.call_id
    ]
    if events and (calls or results):
        found = selectors.partners(
            run.id, (events[-1].sequence, calls), (events[0].sequence, results)
        )
        for e in events:
            if e.paired_with or not e.call_id:
                continue
            side = "result" if e.event_type == contract.EVENT_TOOL_CALL else "call"
            e.partner_elsewhere = found.get((side, e.call_id))
    return events


def totals(run, breakdown: selectors.EventBreakdown) -> dict:
    """Tokens and tool calls: the run's roll-ups once finished, summed from its events
    while it runs (the roll-ups are written when it finishes)."""
    if is_running(run):
        tokens = selectors.step_token_totals(run.id)
        tool_calls = breakdown.by_type.get(contract.EVENT_TOOL_CALL, 0)
        counted = True
    else:
        tokens = (run.total_input_tokens, run.total_output_tokens, run.total_thinking_tokens)
        tool_calls = run.tool_calls_count
        counted = False
    return {
        "tokens": rendering.token_text(*tokens),
        "tool_calls": rendering.grouped(tool_calls),
        "from_events": counted,
    }


def failure_summary(breakdown, failed_runs: list, more_runs: bool) -> str:
    """'2 tool calls failed · 1 error event · 1 sub-run failed' (empty when none)."""
    parts = []
    if breakdown.failed_tool_results:
        n = breakdown.failed_tool_results
        parts.append(f"{rendering.grouped(n)} tool call{'' if n == 1 else 's'} failed")
    if breakdown.error_events:
        n = breakdown.error_events
        parts.append(f"{rendering.grouped(n)} error event{'' if n == 1 else 's'}")
    if failed_runs:
        n = len(failed_runs)
        plus = "+" if more_runs else ""
        parts.append(f"{n}{plus} sub-run{'' if n == 1 and not plus else 's'} failed")
    return " · ".join(parts)


def page_context(run, position: Position) -> dict:
    """Everything the run page's timeline, header failures and live updates need."""
    now = timezone.now()
    wanted = position.wanted
    page = selectors.event_page(
        run.id,
        wanted,
        EVENTS_PAGE_SIZE,
        after=position.after,
        before=position.before,
        last=position.last,
    )
    rows = page.rows
    breakdown = selectors.event_breakdown(run.id, getattr(run, "failed_tools", None))
    # The lists are skipped when the counts say they are empty: the breakdown's failures,
    # and the failed_descendants roll-up the database keeps on the run. Each
    # reads failures in sequence order and stops early: the header names the first few,
    # the pager links the next one after this page.
    failures = selectors.failures(run.id, FAILURES_NAMED) if breakdown.failures else []
    if getattr(run, "failed_descendants", None) == 0:
        failed_runs = []
    else:
        failed_runs = selectors.failed_sub_runs(run.id)
    more_failed_runs = len(failed_runs) > selectors.FAILED_SUB_RUNS_CAP
    failed_runs = failed_runs[: selectors.FAILED_SUB_RUNS_CAP]
    length = run_length(run, rows[-1].created_at if rows else None, now)
    events = timeline_events(run, rows, length)
    shown = {e.sequence for e in events}
    filters = position.filter_params()

    def event_link(sequence: int) -> str:
        if sequence in shown:
            return f"#event-{sequence}"
        return f"?events_after={sequence - 1}#event-{sequence}"

    last_shown = events[-1].sequence if events else (position.after or 0)
    later = selectors.failures(run.id, 1, after=last_shown) if breakdown.failures else []
    next_error = later[0][0] if later else None
    next_error_link = event_link(next_error) if next_error is not None else ""
    named = [
        {
            "sequence": sequence,
            "event_type": event_type,
            "tool": tool or "",
            "link": event_link(sequence),
        }
        for sequence, event_type, tool, _ in failures[:FAILURES_NAMED]
    ]
    at_end = not page.has_after and not wanted.active()
    types, tools = dict(breakdown.by_type), dict(breakdown.by_tool)
    if not tools:  # counted by type only: the tools of this page are offered
        for e in events:
            if e.tool:
                tools[e.tool] = None  # no count: only this page was read
    # A filter for a type or tool the run lacks still shows as chosen (with 0 events).
    if wanted.event_type:
        types.setdefault(wanted.event_type, 0)
    if wanted.tool:
        tools.setdefault(wanted.tool, 0)
    error_event = next((f[0] for f in failures if f[1] == contract.EVENT_ERROR), None)
    if error_event is None and breakdown.error_events:
        found = selectors.failures(run.id, 1, event_type=contract.EVENT_ERROR)
        error_event = found[0][0] if found else None
    return {
        "events": events,
        "event_rows_seen": len(rows),
        "breakdown": breakdown,
        "event_count": breakdown.total,
        "event_types": sorted(types.items()),
        "event_tools": sorted(tools.items())[:200],
        "error_event_sequence": error_event,
        "error_event_link": event_link(error_event) if error_event is not None else "",
        "wanted": wanted,
        "filters_active": wanted.active(),
        "failures_named": named,
        "failure_count": breakdown.failures,
        "failure_summary": failure_summary(breakdown, failed_runs, more_failed_runs),
        "failed_runs": failed_runs,
        "more_failed_runs": more_failed_runs,
        "first_error_link": event_link(failures[0][0]) if failures else "",
        "next_error_link": next_error_link,
        "errors_only_link": _query([("errors", "1")]),
        "first_link": _query(filters) if (page.has_before or position.after) else "",
        "prev_link": _query([*filters, ("events_before", str(events[0].sequence))])
        if page.has_before and events
        else "",
        "next_link": _query([*filters, ("events_after", str(rows[-1].sequence))])
        if page.has_after and rows
        else "",
        "last_link": _query([*filters, ("last", "1")]) if page.has_after else "",
        "clear_filters_link": "?" if wanted.active() else "",
        "run_length": length,
        "axis": rendering.axis(length, presentation.axis_ticks(length)),
        "running": is_running(run),
        "live_append": at_end,
        "live_after": events[-1].sequence if (at_end and events) else last_shown,
        "poll_seconds": POLL_SECONDS,
        "totals": totals(run, breakdown),
        "duration": rendering.seconds(length if is_running(run) else run.runtime_seconds),
    }


def live_state(run, after: int, append: bool) -> dict:
    """What a running run's page needs since it last asked: its status, figures, failures,
    and (``append``: the page shows the end of the timeline) the events after ``after``
    as rendered <li>s, the same markup the page has (rendering.timeline_items)."""
    now = timezone.now()
    breakdown = selectors.event_breakdown(run.id, getattr(run, "failed_tools", None))
    last = selectors.last_sequence(run.id)
    state = {
        "status": run.status,
        "badge": rendering.status_class(run.status),
        "running": is_running(run),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "finished_at_utc": rendering.exact_utc(run.finished_at) if run.finished_at else "",
        "event_count": breakdown.total,
        "failure_count": breakdown.failures,
        "failure_summary": failure_summary(breakdown, [], False),
        "last_sequence": last,
        "new_events": max(last - after, 0),
        "events_html": "",
        "more": False,
    }
    length = run_length(run, None, now)
    if append and last > after:
        page = selectors.event_page(run.id, selectors.EventFilter(), LIVE_EVENTS_MAX, after=after)
        if page.rows:
            length = run_length(run, page.rows[-1].created_at, now)
            events = timeline_events(run, page.rows, length)
            state["events_html"] = str(rendering.timeline_items(events, run.id))
            state["last_sequence"] = page.rows[-1].sequence
            state["more"] = page.has_after
    figures = totals(run, breakdown)
    state.update(
        {
            "length_seconds": round(length, 3),
            "duration": rendering.seconds(length if is_running(run) else run.runtime_seconds),
            "tokens": figures["tokens"],
            "tool_calls": figures["tool_calls"],
        }
    )
    if not is_running(run):
        heads = selectors.run_with_text_heads(run.id)
        state["output"] = heads.output_head if heads else ""
        state["error"] = heads.error_head if heads else ""
    return state


def parse_live(data) -> tuple[int, bool]:
    problems: dict[str, list[str]] = {}
    after = 0
    if "after" not in data:
        problems["after"] = ["is required (the last event sequence the page has)"]
    else:
        try:
            after = _sequence(data["after"], "after")
        except BadParameters as exc:
            problems.update(exc.problems)
    try:
        append = parse_bool(data.get("append"))
    except ValueError as exc:
        problems["append"] = [str(exc)]
        append = False
    if problems:
        raise BadParameters(problems)
    return after, append
