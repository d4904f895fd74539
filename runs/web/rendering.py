"""HTML for the big repeated parts of the pages: run rows, tree nodes, timeline events.

The Django template language costs about a millisecond per row here, which a 1,000-node
tree or a 200-event timeline cannot afford; these functions build the same markup as
plain strings. Every value that comes from the data goes through ``esc()`` (or ``int()``/
``float()`` for numbers); only the assembled markup is marked safe, never a stored value.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus, urlencode

from django.conf import settings
from django.contrib.admin.utils import quote as admin_quote
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.safestring import SafeString, mark_safe

from .. import contract, costs
from ..formats import count, seconds, size  # noqa: F401 (template filters)
from . import markdown

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


def route(name: str, *args) -> str:
    """reverse(name, args=args), kept per process: the same dozen paths (the menu, the
    filter form, the exports) were reversed on every page at ~80 us of CPU each, a tenth
    of a list page's template (issue 17). Keyed by the URLconf and the script prefix the
    request set, so a site mounted under a prefix or a test's URLconf gets its own."""
    return _route(
        get_urlconf() or settings.ROOT_URLCONF,
        get_script_prefix(),
        name,
        tuple(str(arg) for arg in args),
    )


@functools.lru_cache(maxsize=1024)
def _route(urlconf: str, prefix: str, name: str, args: tuple[str, ...]) -> str:
    return reverse(name, args=args, urlconf=urlconf)


@receiver(setting_changed)
def _forget_routes(setting: str, **kwargs) -> None:
    # A test swapping the URLconf's module keeps its name: start again (as Django does).
    if setting == "ROOT_URLCONF":
        _route.cache_clear()


def run_url(name: str, run_id: str, *args) -> str:
    """The dashboard URL `name` of a run, its id quoted whole (dots and slashes too).

    reverse() leaves "." and "/" as they are, so an id like "q/../victim-run" made a link
    that browsers shorten to another run's page (dot segments); the API quotes ids the same
    way (contract.run_id_segment). The view gets the id back decoded, dots included.
    """
    path = route(f"runs:{name}", _PLACEHOLDER, *args)
    return path.replace(_PLACEHOLDER, contract.run_id_segment(run_id), 1)


class RunUrls:
    """Run URLs built from one reverse() each: reverse() per row is a third of a page."""

    def __init__(self):
        self._patterns = {
            name: route(f"runs:{name}", _PLACEHOLDER) for name in ("run_detail", "run_tree")
        }

    def __call__(self, name: str, run_id: str) -> str:
        return self._patterns[name].replace(_PLACEHOLDER, contract.run_id_segment(run_id), 1)


# The characters html.escape(quote=True) replaces: a text with none of them is returned as
# it is (most of a page: times, counts, ids), without five str.replace passes.
_TO_ESCAPE = re.compile("[&<>\"']")


def esc(value) -> str:
    """Escape for HTML text and quoted attributes (what django.utils.html.escape does,
    without its lazy-string wrapper: this runs ~800 times a list page). Exactly
    html.escape(str(value), quote=True); a text with nothing to escape skips it (half of
    run_rows' CPU was html.escape, issue 17)."""
    text = value if type(value) is str else str(value)
    if _TO_ESCAPE.search(text) is None:
        return text
    return html.escape(text, quote=True)


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
        f"{esc(status or '(none)')}</span>"
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
FAILED_ATTR = ' data-failed="1"'


def _bar(bar, label: str) -> str:
    """A bar on the page's one time axis: an SVG whose rectangle is placed in percent of
    the axis (no viewBox, so nothing is stretched), in a focusable track whose tip shows
    ``label`` (already escaped) on hover and focus. data-s/data-d (seconds) let
    static/runs/trace.js redraw it when a live run's axis grows."""
    kind = (" fail" if bar.failed else "") + (" open" if bar.open else "")
    still = ' data-open="1"' if bar.open else ""
    return (
        f'<span class="track" tabindex="0" data-s="{float(bar.start_s):.3f}"'
        f' data-d="{float(bar.length_s):.3f}"{still}'
        f' aria-label="{label}"><svg class="bar" aria-hidden="true" focusable="false">'
        f'<rect x="{float(bar.start)}%" y="0" width="{float(bar.width)}%" height="100%"'
        f' class="span{kind}"></rect></svg><span class="tip" aria-hidden="true">{label}</span>'
        "</span>"
    )


def axis(length: float, ticks) -> SafeString:
    """The time axis drawn above a timeline or a tree: ticks in percent of ``length``
    seconds (presentation.axis_ticks), labels as durations from the start."""
    parts = []
    last = len(ticks) - 1
    for index, (percent, at) in enumerate(ticks):
        anchor = "start" if index == 0 else "end" if index == last else "middle"
        parts.append(
            f'<line x1="{float(percent)}%" x2="{float(percent)}%" y1="14" y2="20"></line>'
            f'<text x="{float(percent)}%" y="11" text-anchor="{anchor}">'
            f"{esc(seconds(at) if at else '0')}</text>"
        )
    return mark_safe(
        f'<svg class="axis" data-length="{float(length):.3f}" role="img"'
        f' aria-label="time axis: 0 to {esc(seconds(length))}">{"".join(parts)}</svg>'
    )


def grouped(value) -> str:
    """1234567 -> '1,234,567' (the tree's and the run header's token figures)."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "0"


def token_text(input_tokens, output_tokens, thinking_tokens) -> str:
    """'16,342 in · 3,866 out · 9,475 thinking' (thinking left out when none)."""
    text = f"{grouped(input_tokens)} in · {grouped(output_tokens)} out"
    if thinking_tokens:
        text += f" · {grouped(thinking_tokens)} thinking"
    return text


UNPRICED_NAMES_SHOWN = 5


def cost_title(cost) -> str:
    """Plain text saying what a partly unpriced cost left out (model names are stored text:
    the caller escapes it)."""
    if cost is None or not cost.partly_unpriced:
        return ""
    names = sorted(cost.unpriced_models)
    shown = ", ".join(name or "(no model named)" for name in names[:UNPRICED_NAMES_SHOWN])
    more = (
        f" and {len(names) - UNPRICED_NAMES_SHOWN} more"
        if len(names) > UNPRICED_NAMES_SHOWN
        else ""
    )
    return f"{grouped(cost.unpriced_tokens)} tokens have no price: {shown}{more}"


def cost_html(cost) -> str:
    """A cost (runs.costs.Cost) as text, marked "partly unpriced" with what was left out
    in its title; "—" for none (no model usage)."""
    if cost is None or cost.is_empty:
        return '<span class="muted">—</span>'
    text = esc(costs.display(cost))
    if cost.partly_unpriced:
        return f'<span class="cost unpriced" title="{esc(cost_title(cost))}">{text}</span>'
    return f'<span class="cost">{text}</span>'


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
            f'<td class="num tokens">{esc(tokens(run))}{_row_cost(run)}</td>'
            f'<td class="preview"><span class="clamp{" err" if run.error_preview else ""}">'
            f"{esc(preview or '')}</span>{_search_snippet(run)}</td>"
            "</tr>\n"
        )
    return mark_safe("".join(rows))


def _row_cost(run) -> str:
    """The run's cost under its tokens (one column: the list fits 1,280 px); nothing when
    it used no model."""
    cost = getattr(run, "cost", None)
    if cost is None or cost.is_empty:
        return ""
    return f"<br>{cost_html(cost)}"


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


_SINCE_TITLE = (
    "-1h, -24h, -7d (before now), a date (that whole day, UTC) or an ISO 8601 time (UTC unless"
    " an offset is given)"
)
_UNTIL_TITLE = (
    "-1h, -24h, -7d (before now), a date (up to the end of that day, UTC) or an ISO 8601 time"
    " (UTC unless an offset is given)"
)


def run_filters(form, status_choices, page_sizes, page_size, default_page_size) -> SafeString:
    """The run list's filter form (``form``: the RunFilterSet's, bound to the query).

    Was a template include: 1.5 ms of a list page's ~24 ms of CPU went to the template
    engine resolving form.data and form.fields lookups (issue 17); this is ~0.1 ms."""
    data, fields = form.data, form.fields
    cleaned = getattr(form, "cleaned_data", None) or {}

    def value(name: str) -> str:
        given = data.get(name)
        return esc(given) if given else ""

    def suggested(name: str, label: str) -> str:
        return (
            f'  <label>{label} <input name="{name}" value="{value(name)}"'
            f' maxlength="{int(fields[name].max_length)}" autocomplete="off"'
            f' list="{name}-values" data-suggest="{esc(route("runs:suggest", name))}"></label>\n'
        )

    def check(name: str) -> str:
        return " checked" if cleaned.get(name) else ""

    parts = [
        f'<form class="filters" method="get" action="{esc(route("runs:run_list"))}"'
        ' role="search" aria-label="Filter runs">\n'
        f'  <label class="search">Search <input type="search" name="q" value="{value("q")}"'
        f' maxlength="{int(fields["q"].max_length)}"'
        ' placeholder=\'words, "a phrase", -excluded\' autocomplete="off"></label>\n'
        "  <label>Status\n"
        '    <select name="status">\n'
        f"      {options(status_choices, data.get('status') or '')}\n"
        "    </select>\n"
        "  </label>\n",
        suggested("skill", "Skill"),
        suggested("caller", "Caller"),
        suggested("channel", "Channel"),
        '  <datalist id="skill-values"></datalist><datalist id="caller-values"></datalist>'
        '<datalist id="channel-values"></datalist>\n'
        f'  <label>Since (UTC) <input name="since" value="{value("since")}"'
        f' placeholder="-24h or 2026-11-25" title="{_SINCE_TITLE}"></label>\n'
        f'  <label>Until (UTC) <input name="until" value="{value("until")}"'
        f' placeholder="2026-11-26" title="{_UNTIL_TITLE}"></label>\n'
        '  <label class="check"><input type="checkbox" name="include_nested" value="1"'
        f"{check('include_nested')}> nested runs</label>\n"
        '  <label class="check"><input type="checkbox" name="include_dry_run" value="1"'
        f"{check('include_dry_run')}> dry runs</label>\n"
        '  <label class="check" title="The run failed, one of its tool calls failed, or a run'
        ' below it failed"><input type="checkbox" name="failed" value="1"'
        f"{check('failed')}> any failure</label>\n",
    ]
    if page_sizes:
        sizes = "".join(
            f'<option value="{int(n) if n != default_page_size else ""}"'
            f"{' selected' if n == page_size else ''}>{int(n)}</option>"
            for n in page_sizes
        )
        parts.append(
            f'  <label>Per page\n    <select name="page_size">{sizes}</select>\n  </label>\n'
        )
    else:
        parts.append("  \n")
    parts.append(
        '  <span class="actions">\n'
        '    <button type="submit">Apply</button>\n'
        f'    <a href="{esc(route("runs:run_list"))}">Reset</a>\n'
        "  </span>\n"
        "</form>\n"
    )
    return mark_safe("".join(parts))


CURRENT = ' aria-current="true"'


def _plural(n: int, word: str) -> str:
    return f"{grouped(n)} {word}{'' if n == 1 else 's'}"


def tree_items(nodes, current_id: str) -> SafeString:
    """Nested <li>/<details> for the pre-ordered nodes of presentation.flatten_tree: each
    node with its own figures, its subtree's when it has one, a mark and a link when runs
    below it failed, and its bar on the tree's time axis."""
    urls = RunUrls()
    index_of = {node.run.id: index for index, node in enumerate(nodes)}
    parts = []
    for index, node in enumerate(nodes):
        run = node.run
        current = run.id == current_id
        kids = len(node.children)
        own, sub = node.own, node.subtree
        running = run.finished_at is None and run.status == contract.STATUS_RUNNING
        took = f"{esc(seconds(own.runtime))}{' so far' if running else ''}"
        skill = esc(run.skill_id)
        own_cost, sub_cost = getattr(node, "own_cost", None), getattr(node, "subtree_cost", None)
        figures = (
            f'<span class="own">{took} · {_plural(own.tool_calls, "tool call")} · '
            f"{token_text(own.input_tokens, own.output_tokens, own.thinking_tokens)}"
            f"{_tree_cost(own_cost)}</span>"
        )
        if kids:
            figures += (
                f' <span class="sub" title="This run and every run below it">subtree: '
                f"{_plural(sub.runs - 1, 'sub-run')} · Σ {esc(seconds(sub.runtime))} · "
                f"{_plural(sub.tool_calls, 'tool call')} · "
                f"{token_text(sub.input_tokens, sub.output_tokens, sub.thinking_tokens)}"
                f"{_tree_cost(sub_cost)}</span>"
            )
        flag = ""
        if node.failed_below:
            target = index_of.get(node.first_failed_below)
            flag = (
                f' <a class="flag bad below" href="#node-{int(target)}"'
                ' title="Runs below this one failed: go to the first">'
                f"{_plural(node.failed_below, 'failed sub-run')}</a>"
                if target is not None
                else f' <span class="flag bad below">{_plural(node.failed_below, "failed sub-run")}'
                "</span>"
            )
        label = esc(
            f"{run.skill_id} · starts +{seconds(node.bar.start_s)} · "
            f"{seconds(own.runtime)}{' so far' if running else ''}"
        )
        line = (
            f'<span class="node{" failed" if own.failed else ""}'
            f'{" failed-below" if node.failed_below else ""}" id="node-{index}">'
            f"{_badge(run.status)} "
            f'<a href="{esc(urls("run_detail", run.id))}" class="id"'
            f"{CURRENT if current else ''}>{skill}</a>{flag} "
            f'<span class="muted figures">{figures}</span>'
            f"{_bar(node.bar, label)}</span>"
        )
        opening = '<li class="current">' if current else "<li>"
        if kids:
            parts.append(f"{opening}<details open><summary>{line}</summary><ul>\n")
        else:
            parts.append(f"{opening}{line}</li>\n")
        parts.append("</ul></details></li>\n" * node.closes)
    return mark_safe("".join(parts))


def _tree_cost(cost) -> str:
    """' · 0.0123 USD' after a tree node's tokens; nothing when it used no model."""
    if cost is None or cost.is_empty:
        return ""
    return f" · {cost_html(cost)}"


def timeline_items(events, run_id: str, run_started: datetime | None = None) -> SafeString:
    """The <li> events of a run's timeline (presentation.TimelineEvent).

    Stable hooks for scripts (trace.js, search highlighting): each event is
    li.event[data-seq][data-type][data-tool] with its text in .etype, .tool, .md and
    pre.payload.
    """
    raw_prefix = run_url("event_raw", run_id, 0)[: -len("0/raw/")]
    budget = [MARKDOWN_PER_PAGE]
    return mark_safe("".join(_event(e, raw_prefix, run_started, budget) for e in events))


# Steps rendered as markdown per page: markdown-it-py takes ~0.1 ms for a sentence and
# ~2 ms for a page of headings and lists; the rest show their text with its line breaks.
MARKDOWN_PER_PAGE = 25
_MARKDOWN_HINT = re.compile(r"(^|\n)\s{0,3}(#{1,6}\s|[-*+]\s|\d+[.)]\s|>|```|\|)|\*\*|`|\]\(")


def markdown_block(text: str) -> SafeString:
    """Markdown (a run's output) as HTML: markdown-it-py escapes every character of the
    text (raw HTML off); only its assembled markup is marked safe."""
    return mark_safe(markdown.render(text))


def exact_utc(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _pair(e) -> str:
    if e.paired_with and e.event_type == contract.EVENT_TOOL_CALL:
        return (
            f' <a href="#event-{int(e.paired_with)}" class="pair">result #{int(e.paired_with)}'
            f" after {esc(seconds(e.pair_seconds))}</a>"
        )
    if e.paired_with:
        return (
            f' <a href="#event-{int(e.paired_with)}" class="pair">'
            f"result of call #{int(e.paired_with)}</a>"
        )
    if e.partner_elsewhere and e.event_type == contract.EVENT_TOOL_CALL:
        seq = int(e.partner_elsewhere)
        return (
            f' <a href="?events_after={seq - 1}#event-{seq}" class="pair elsewhere"'
            f' data-seq="{seq}">result #{seq} (another page)</a>'
        )
    if e.partner_elsewhere:
        seq = int(e.partner_elsewhere)
        return (
            f' <a href="?events_after={seq - 1}#event-{seq}" class="pair elsewhere"'
            f' data-seq="{seq}">result of call #{seq} (another page)</a>'
        )
    if e.event_type == contract.EVENT_TOOL_CALL:
        return (
            f' <span class="muted pair pending" data-call-id="{esc(e.call_id)}"'
            f' data-tool="{esc(e.tool)}">no result yet</span>'
        )
    return ""


def _event(e, raw_prefix: str, run_started: datetime | None, budget: list[int]) -> str:
    seq = int(e.sequence)
    raw_url = f"{esc(raw_prefix)}{seq}/raw/"
    if e.too_big:
        body = (
            f'<details class="json"><summary>payload · {esc(size(e.payload_size))} · preview'
            f'</summary><pre class="payload" id="payload-{seq}">{esc(e.preview)}</pre>'
            f'</details><p class="muted"><a href="{raw_url}">'
            "Open the whole payload as JSON</a></p>"
        )
        copy = f'<button type="button" class="copy" data-copy-url="{raw_url}">copy JSON</button>'
    else:
        body = (
            f'<details class="json"{"" if e.fold else " open"}><summary>payload · '
            f"{esc(size(e.payload_size))}</summary>"
            f'<pre class="payload" id="payload-{seq}" data-json="1">{esc(e.pretty)}</pre>'
            "</details>"
        )
        copy = (
            f'<button type="button" class="copy" data-copy-target="payload-{seq}">'
            "copy JSON</button>"
        )
    if e.markdown:
        if budget[0] > 0 and _MARKDOWN_HINT.search(e.markdown):
            budget[0] -= 1
            body = f'<div class="md">{markdown.render(e.markdown)}</div>{body}'
        else:
            body = f'<div class="md plain">{esc(e.markdown)}</div>{body}'
    tool = f' <span class="id tool">{esc(e.tool)}</span>' if e.tool else ""
    failed = e.failed
    if e.event_type == contract.EVENT_ERROR:
        mark = '<span class="fail-mark">⚠ error</span>'
    elif failed:
        mark = '<span class="fail-mark">⚠ failed</span>'
    else:
        mark = ""
    latency = (
        f' <span class="latency" title="model latency">{esc(seconds(e.latency))}</span>'
        if e.latency is not None
        else ""
    )
    exact = exact_utc(e.created_at)
    label = esc(
        f"#{seq} {e.event_type}{' ' + e.tool if e.tool else ''}{' (failed)' if failed else ''}"
        f" · starts +{seconds(e.bar.start_s)} · lasts {seconds(e.bar.length_s)}"
        f"{' so far' if e.bar.open else ''} · {exact}"
    )
    classes = f"event {esc(e.event_type)}{' failed' if failed else ''}"
    classes += " context" if e.context else ""
    return (
        f'<li class="{classes}" id="event-{seq}" data-seq="{seq}"'
        f' data-type="{esc(e.event_type)}" data-tool="{esc(e.tool)}"'
        f'{FAILED_ATTR if failed else ""} tabindex="-1">'
        f'<div class="event-head"><span class="seq">#{seq}</span>'
        f'<span class="offset" title="{esc(exact)}">+{esc(seconds(e.offset_seconds))}</span>'
        f'<span class="what"><span class="etype">{esc(e.event_type)}</span>{mark}{tool}{latency}'
        f"{_pair(e)} {copy}</span>"
        f"{_bar(e.bar, label)}</div>{body}</li>\n"
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
            f'<td class="num cost">{cost_html(skill.get("cost"))}</td>'
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
