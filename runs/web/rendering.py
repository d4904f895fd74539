"""HTML for the big repeated parts of the pages: run rows, tree nodes, timeline events.

The Django template language costs about a millisecond per row here, which a 1,000-node
tree or a 200-event timeline cannot afford; these functions build the same markup as
plain strings. Every value that comes from the data goes through ``esc()`` (or ``int()``/
``float()`` for numbers); only the assembled markup is marked safe, never a stored value.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus, urlencode

from django.contrib.admin.utils import quote as admin_quote
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from .. import contract
from ..formats import count, seconds, size  # noqa: F401 (template filters)

_PLACEHOLDER = "RUNID"


def status_class(status: str) -> str:
    """A CSS class for a status badge; unknown statuses get a neutral one."""
    return _STATUS_CLASSES.get(status, "muted")


_STATUS_CLASSES = {
    contract.STATUS_OK: "ok",
    contract.STATUS_RUNNING: "running",
    contract.STATUS_ERROR: "bad",
    contract.STATUS_TIMEOUT: "bad",
    contract.STATUS_BUDGET_EXCEEDED: "warn",
    contract.STATUS_DRY_RUN: "muted",
    contract.STATUS_PREEMPTED: "warn",
    contract.STATUS_LANE_BUSY: "warn",
}


def admin_pk(value: str) -> str:
    """A primary key as the admin's URLs carry it (its own escaping of / _ : and friends)."""
    return admin_quote(value)


def run_url(name: str, run_id: str, *args) -> str:
    """The dashboard URL `name` of a run, its id quoted whole (dots and slashes too).

    reverse() leaves "." and "/" as they are, so an id like "q/../victim-run" made a link
    that browsers shorten to another run's page (dot segments); the API quotes ids the same
    way (contract.run_id_segment). The view gets the id back decoded, dots included.
    """
    path = reverse(f"runs:{name}", args=[_PLACEHOLDER, *args])
    return path.replace(_PLACEHOLDER, contract.run_id_segment(run_id), 1)


class RunUrls:
    """Run URLs built from one reverse() each: reverse() per row is a third of a page."""

    def __init__(self):
        self._patterns = {
            name: reverse(f"runs:{name}", args=[_PLACEHOLDER])
            for name in ("run_detail", "run_tree")
        }

    def __call__(self, name: str, run_id: str) -> str:
        return self._patterns[name].replace(_PLACEHOLDER, contract.run_id_segment(run_id), 1)


def esc(value) -> str:
    """Escape for HTML text and quoted attributes (what django.utils.html.escape does,
    without its lazy-string wrapper: this runs a few thousand times a page)."""
    return html.escape(str(value), quote=True)


def _when(value: datetime | None, empty: str = "—") -> str:
    if value is None:
        return esc(empty)
    utc = value.astimezone(UTC)
    exact = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<time datetime="{esc(utc.isoformat())}" title="{esc(exact)}">{esc(exact)}</time>'


def when(value: datetime | None, empty: str = "—") -> SafeString:
    """A <time> that static/runs/dashboard.js shows in local time; UTC stays on hover."""
    return mark_safe(_when(value, empty))


def _badge(status: str, stale: bool = False) -> str:
    extra, word = (" stale", "stale ") if stale else ("", "")
    return (
        f'<span class="badge {esc(status_class(status))}{extra}">{word}'
        f'{esc(status or "(none)")}</span>'
    )


def badge(status: str, stale: bool = False) -> SafeString:
    return mark_safe(_badge(status, stale))


def tokens(run, separator: str = " / ") -> str:
    return separator.join(
        count(n)
        for n in (run.total_input_tokens, run.total_output_tokens, run.total_thinking_tokens)
    )


def _duration(run) -> str:
    if run.finished_at:
        return esc(seconds(run.runtime_seconds))
    return '<span class="muted">running</span>'


class FilterLinks:
    """Query strings that keep the current filters and set one more (never a cursor)."""

    def __init__(self, params: Iterable[tuple[str, str]]):
        self.params = [(k, v) for k, v in params if k not in ("after", "before")]
        # Per key, the encoded query around its value; per (key, value, title), the link.
        # A page repeats the same few skills, callers and channels: each link is built
        # once, not once per row (building them was a third of the rows' time).
        self._around: dict[str, tuple[str, str]] = {}
        self._anchors: dict[tuple[str, str, str], str] = {}

    def __call__(self, key: str, value: str) -> str:
        if key not in self._around:
            params = [(k, v) for k, v in self.params if k != key]
            position = next((i for i, (k, _) in enumerate(self.params) if k == key), len(params))
            before, after = urlencode(params[:position]), urlencode(params[position:])
            self._around[key] = (
                f"?{before}&{quote_plus(key)}=" if before else f"?{quote_plus(key)}=",
                f"&{after}" if after else "",
            )
        before, after = self._around[key]
        return f"{before}{quote_plus(value)}{after}"

    def anchor(self, key: str, value: str, title: str) -> str:
        if not value:
            return ""
        found = self._anchors.get((key, value, title))
        if found is None:
            found = f'<a href="{esc(self(key, value))}" title="{esc(title)}">{esc(value)}</a>'
            self._anchors[(key, value, title)] = found
        return found


NESTED_MARK = ' <span class="mark" title="Nested: started by another run">nested</span>'
BAR = (
    '<svg class="bar" viewBox="0 0 100 4" preserveAspectRatio="none" aria-hidden="true"'
    ' focusable="false"><rect x="{start}" y="0" width="{width}" height="4"></rect></svg>'
)


def _bar(bar) -> str:
    return BAR.format(start=float(bar.start), width=float(bar.width))


def run_rows(runs, query_params, stale_before: datetime) -> SafeString:
    """The <tr> rows of the run list."""
    urls = RunUrls()
    link = FilterLinks(query_params)
    # Opened from a search, the run page highlights the words (static/runs/search.js).
    q = next((value for key, value in link.params if key == "q"), "")
    found = f"#q={quote(q, safe='')}" if q.strip() else ""
    rows = []
    for run in runs:
        stale = run.status == contract.STATUS_RUNNING and run.started_at < stale_before
        marks = NESTED_MARK if run.parent_run_id else ""
        if run.has_children:
            marks += (
                f' <a class="mark" href="{esc(urls("run_tree", run.id))}"'
                ' title="Started sub-runs: open the call tree">tree</a>'
            )
        preview = run.error_preview or run.output_preview
        rows.append(
            "<tr>"
            f'<td class="time"><a href="{esc(urls("run_detail", run.id))}{found}">'
            f"{_when(run.started_at)}</a></td>"
            f'<td class="status">{_badge(run.status, stale)}</td>'
            f'<td class="id skill">'
            f"{link.anchor('skill', run.skill_id, 'Only runs of this skill')}{marks}</td>"
            f'<td class="id caller">'
            f"{link.anchor('caller', run.caller_id, 'Only runs by this caller')}</td>"
            f'<td class="id channel">'
            f"{link.anchor('channel', run.channel_id, 'Only runs in this channel')}</td>"
            f'<td class="num dur">{_duration(run)}</td>'
            f'<td class="num tools">{count(run.tool_calls_count)}</td>'
            f'<td class="fails">{_failures(run)}</td>'
            f'<td class="num tokens">{esc(tokens(run))}</td>'
            f'<td class="preview"><span class="clamp{" err" if run.error_preview else ""}">'
            f"{esc(preview or '')}</span>{_search_snippet(run)}</td>"
            "</tr>\n"
        )
    return mark_safe("".join(rows))


def _failures(run) -> str:
    """The row's failure roll-ups (migration 0010): failed tool calls, failed sub-runs."""
    tools, below = int(run.failed_tools or 0), int(run.failed_descendants or 0)
    if not tools and not below:
        return '<span class="muted" title="No failed tool call or sub-run">none</span>'
    parts = []
    if tools:
        parts.append(
            f'<span class="fail" title="Failed tool calls">{count(tools)} tool'
            f"{'' if tools == 1 else 's'}</span>"
        )
    if below:
        parts.append(
            f'<span class="fail" title="Failed runs below this one in its call tree">'
            f"{count(below)} sub-run{'' if below == 1 else 's'}</span>"
        )
    return " ".join(parts)


def _search_snippet(run) -> str:
    """The row's search snippet (runs.search.Snippet): each piece of the stored text
    escaped, and a <mark> of ours around the escaped matches."""
    hit = getattr(run, "search_snippet", None)
    if hit is None:
        return ""
    body = "".join(
        f"<mark>{esc(text)}</mark>" if match else esc(text) for text, match in hit.segments
    )
    return (
        f'<span class="snippet"><span class="where">{esc(hit.where)}</span> '
        f"{'…' if hit.cut_before else ''}{body}{'…' if hit.cut_after else ''}</span>"
    )


def options(choices, selected: str) -> SafeString:
    """The <option>s of a <select> (the list's status filter), ``selected`` marked: a
    template loop spent 0.2 ms on ten options."""
    return mark_safe(
        "".join(
            f'<option value="{esc(value)}"{" selected" if value == selected else ""}>'
            f"{esc(label)}</option>\n"
            for value, label in choices
        )
    )


CURRENT = ' aria-current="true"'


def tree_items(nodes, current_id: str) -> SafeString:
    """Nested <li>/<details> for the pre-ordered nodes of presentation.flatten_tree."""
    urls = RunUrls()
    parts = []
    for node in nodes:
        run = node.run
        current = run.id == current_id
        kids = len(node.children)
        took = esc(seconds(run.runtime_seconds)) if run.finished_at else "running"
        sub_runs = f" · {kids} sub-run{'' if kids == 1 else 's'}" if kids else ""
        line = (
            f'<span class="node">{_badge(run.status)} '
            f'<a href="{esc(urls("run_detail", run.id))}" class="id"'
            f"{CURRENT if current else ''}>{esc(run.skill_id)}</a> "
            f'<span class="muted">{took} · {esc(tokens(run, "/"))} tok{sub_runs}</span>'
            f"{_bar(node.bar)}</span>"
        )
        opening = '<li class="current">' if current else "<li>"
        if kids:
            parts.append(f"{opening}<details open><summary>{line}</summary><ul>\n")
        else:
            parts.append(f"{opening}{line}</li>\n")
        parts.append("</ul></details></li>\n" * node.closes)
    return mark_safe("".join(parts))


def timeline_items(events, run_id: str) -> SafeString:
    """The <li> events of a run's timeline (presentation.TimelineEvent)."""
    raw_prefix = run_url("event_raw", run_id, 0)[: -len("0/raw/")]
    return mark_safe("".join(_event(e, raw_prefix) for e in events))


def _event(e, raw_prefix: str) -> str:
    if e.paired_with and e.event_type == contract.EVENT_TOOL_CALL:
        pair = (
            f' <a href="#event-{int(e.paired_with)}" class="pair">result #{int(e.paired_with)}'
            f" after {esc(seconds(e.pair_seconds))}</a>"
        )
    elif e.paired_with:
        pair = (
            f' <a href="#event-{int(e.paired_with)}" class="pair">'
            f"result of call #{int(e.paired_with)}</a>"
        )
    elif e.event_type == contract.EVENT_TOOL_CALL:
        pair = ' <span class="muted pair">no result on this page</span>'
    else:
        pair = ""
    if e.too_big:
        body = (
            f'<details class="json"><summary>payload · {esc(size(e.payload_size))} · preview'
            f"</summary><pre>{esc(e.preview)}</pre></details>"
            f'<p class="muted"><a href="{esc(raw_prefix)}{int(e.sequence)}/raw/">'
            "Open the whole payload as JSON</a></p>"
        )
    else:
        body = (
            f'<details class="json"{"" if e.fold else " open"}><summary>payload · '
            f"{esc(size(e.payload_size))}</summary><pre>{esc(e.pretty)}</pre></details>"
        )
    tool = f' <span class="id tool">{esc(e.tool)}</span>' if e.tool else ""
    warn = "⚠ " if e.event_type == contract.EVENT_ERROR else ""
    return (
        f'<li class="event {esc(e.event_type)}" id="event-{int(e.sequence)}">'
        f'<div class="event-head"><span class="seq">#{int(e.sequence)}</span>'
        f'<span class="offset" title="time since the run started">'
        f"+{esc(seconds(e.offset_seconds))}</span>"
        f'<span class="etype">{warn}{esc(e.event_type)}</span>{tool}{pair}'
        f"{_bar(e.bar)}</div>{body}</li>\n"
    )


def skill_rows(skills, quiet_days: int) -> SafeString:
    """The <tr> rows of the skills overview (views.skill_overview's dicts)."""
    list_url = reverse("runs:run_list")
    badges = _StatusBadges()
    rows = []
    for skill in skills:
        runs_of = f"{list_url}?{urlencode({'skill': skill['id'], 'include_nested': 1})}"
        # The list filtered by this skill and a status: the skill's part of the query is
        # encoded and escaped once per row, each status's part once per page (a busy week
        # has ten badges a skill; building each link whole was most of the page's time).
        skill_query = esc(f"{list_url}?{urlencode({'skill': skill['id']})}&status=")
        flags = ""
        if skill["never_succeeded"]:
            flags += '<span class="flag bad">never succeeded</span> '
        if skill["quiet"]:
            flags += f'<span class="flag warn">no run finished in {int(quiet_days)} days</span>'
        rows.append(
            f'<tr><td class="id"><a href="{esc(runs_of)}">{esc(skill["id"])}</a></td>'
            f"<td>{_when(skill['last_run'], 'never')}</td>"
            f"<td>{_when(skill['last_ok'], 'never')}</td>"
            f'<td class="counts day">{badges.counts(skill_query, skill["day"], DAY)}</td>'
            f'<td class="counts week">{badges.counts(skill_query, skill["week"], WEEK)}</td>'
            f'<td class="spark">{sparkline(skill.get("days") or [])}</td>'
            f"<td>{flags}</td></tr>\n"
        )
    return mark_safe("".join(rows))


# The windows of the skills page's chips: each opens the list over the same window.
DAY, WEEK = "-24h", "-7d"
# Sparkline colours by status: the badge classes (ok, bad, warn, running, muted).
SPARK_WIDTH, SPARK_HEIGHT, SPARK_BAR = 70, 20, 8


def sparkline(days) -> str:
    """A 7-day bar chart (one stacked bar per UTC day, one segment per status) as inline
    SVG drawn here from the skill_run_counts day buckets: ``days`` is a list of
    (date text, [(status, n), ...]) oldest first. Each bar's <title> (escaped) says the
    day's counts; heights are relative to the skill's busiest day."""
    if not days:
        return ""
    top = max((sum(n for _, n in counts) for _, counts in days), default=0) or 1
    step = SPARK_WIDTH / len(days)
    parts = []
    for i, (day, counts) in enumerate(days):
        x = i * step
        y = float(SPARK_HEIGHT)
        label = ", ".join(f"{status} {n}" for status, n in counts) or "no runs"
        rects = []
        for status, n in counts:
            h = SPARK_HEIGHT * n / top
            y -= h
            rects.append(
                f'<rect class="{esc(status_class(status))}" x="{x:.1f}" y="{y:.2f}" '
                f'width="{SPARK_BAR}" height="{h:.2f}"></rect>'
            )
        parts.append(
            f"<g><title>{esc(day)}: {esc(label)}</title>"
            f'<rect class="slot" x="{x:.1f}" y="0" width="{SPARK_BAR}" '
            f'height="{SPARK_HEIGHT}"></rect>{"".join(rects)}</g>'
        )
    return (
        f'<svg class="spark" viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" width="{SPARK_WIDTH}"'
        f' height="{SPARK_HEIGHT}" role="img" aria-label="runs per day, last 7 days">'
        f"{''.join(parts)}</svg>"
    )


class _StatusBadges:
    """Status badges with counts; a known status links to the list of its runs over the
    chip's window (since=-24h or -7d), nested runs included, as the counts are."""

    def __init__(self):
        # (status, window) -> (badge HTML, the link's escaped tail after "status=", or None)
        self._parts: dict[tuple[str, str], tuple[str, str | None]] = {}

    def counts(self, skill_query: str, counts, window: str = WEEK) -> str:
        """``counts``: (status, n, known) triples; ``skill_query`` the escaped list URL
        up to "status=" for one skill."""
        if not counts:
            return '<span class="muted">none</span>'
        out = []
        for status, n, known in counts:
            badge, tail = self._part(status, known, window)
            if tail is None:
                out.append(f"<span>{badge} {count(n)}</span>")
            else:
                out.append(f'<a href="{skill_query}{tail}">{badge} {count(n)}</a>')
        return " ".join(out)

    def _part(self, status: str, known: bool, window: str) -> tuple[str, str | None]:
        part = self._parts.get((status, window))
        if part is None:
            tail = (
                esc(f"{quote_plus(status)}&include_nested=1&include_dry_run=1&since={window}")
                if known
                else None
            )
            part = self._parts[(status, window)] = (_badge(status), tail)
        return part
