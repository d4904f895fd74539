"""Charts drawn on the server as SVG, each with its numbers in a table beneath it.

No chart library is downloaded and no script draws anything: the page works under the
site's Content Security Policy (no inline script, no inline style) and every colour is a
CSS class of static/runs/dashboard.css, so dark mode (``prefers-color-scheme``) recolours
the charts as it does the rest of the site.

The drawing follows the run page's bars (rendering._bar): no viewBox, horizontal
positions in percent of the chart's width and vertical ones in pixels, so a chart fills
any width (1,440 px or a 390 px phone) without stretching its text. Everything here is
plain data in, markup out: the view builds the links and the labels, these functions
place them. Every label goes through rendering.esc() (skill names are hostile text) and
every number through int()/float() or a formatter whose output is escaped too; only the
assembled markup is marked safe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.safestring import SafeString, mark_safe

from .. import contract
from ..formats import count
from .rendering import esc

Number = int | float | Decimal


@dataclass(frozen=True)
class Series:
    """One kind of value drawn in a chart (a status, input tokens, the p95...): ``key``
    picks its colour from SERIES_CLASSES (an unknown key gets the neutral one, so stored
    text never becomes a class name); ``label`` is what the legend and the table say."""

    key: str
    label: str


@dataclass(frozen=True)
class Part:
    """A series' value in one column; ``href`` (optional) opens the runs behind it."""

    series: str
    value: Number | None
    href: str = ""


@dataclass(frozen=True)
class Column:
    """One bucket (an hour, a day) or one category (a skill): ``label`` names it in full
    (table, tooltips), ``tick`` on the axis (empty: no tick); ``href`` opens its runs."""

    label: str
    parts: tuple[Part, ...]
    tick: str = ""
    href: str = ""
    note: str = ""


@dataclass(frozen=True)
class Chart:
    """What any of the three drawings needs: ``ident`` is the figure's HTML id (chosen by
    the code), ``value_text`` writes a value as plain text (it is escaped here)."""

    ident: str
    title: str
    series: tuple[Series, ...]
    columns: tuple[Column, ...]
    value_text: Callable[[Number], str] = count
    column_header: str = "Bucket (UTC)"
    note: str = ""
    empty: str = "Nothing in this window."
    total: bool = True
    integer: bool = True


# Colours: each a class of static/runs/dashboard.css (the "stats page" section), one per
# status (the badges' five classes would draw error and timeout in the same red, side by
# side in one bar) and one per other series.
SERIES_CLASSES = {
    contract.STATUS_OK: "k-ok",
    contract.STATUS_RUNNING: "k-running",
    contract.STATUS_ERROR: "k-error",
    contract.STATUS_TIMEOUT: "k-timeout",
    contract.STATUS_BUDGET_EXCEEDED: "k-budget",
    contract.STATUS_DRY_RUN: "k-dry",
    contract.STATUS_PREEMPTED: "k-preempted",
    contract.STATUS_LANE_BUSY: "k-lane",
    "failed": "k-error",
    "input": "k-input",
    "output": "k-output",
    "thinking": "k-thinking",
    "p50": "k-p50",
    "p95": "k-p95",
    "cost": "k-cost",
}
OTHER_CLASS = "k-other"


def series_class(key: str) -> str:
    return SERIES_CLASSES.get(key, OTHER_CLASS)


# Geometry in pixels: the plot's top and bottom, the axis labels' baseline, the height.
TOP, BOTTOM, TICK_Y, HEIGHT = 12, 176, 194, 200
PLOT = BOTTOM - TOP
# A bar's share of its slot (the rest is the gap between bars).
BAR_SHARE = 0.76
# Category bars (per skill): one row per category, this tall.
ROW, ROW_BAR = 34, 12
CATEGORY_ROWS = 20
# Parts of a bar link to their own runs up to this many columns (the bar always does).
PART_LINKS_MAX = 200
# Axis labels this close (percent of the width) to an edge are aligned to it.
EDGE = 4.0


def nice_ceiling(value: float, integer: bool = False) -> float:
    """The axis top: the smallest of 1, 2, 4, 6, 8 or 10 times a power of ten at or above
    ``value``, so that the top and its half are round numbers (counts: 2 at least, so
    that the half is a whole number too)."""
    if not value or value <= 0 or not math.isfinite(value):
        return 2.0 if integer else 1.0
    power = 10.0 ** math.floor(math.log10(value))
    candidate = 10 * power
    for step in (1, 2, 4, 6, 8, 10):
        if value <= step * power * (1 + 1e-9):
            candidate = step * power
            break
    return max(candidate, 2.0) if integer else candidate


def _percent(value: float) -> str:
    return f"{float(value):.3f}%"


def _y(value: float, top: float) -> float:
    return BOTTOM - PLOT * (float(value) / top if top else 0.0)


def _link(href: str, inner: str, label: str) -> str:
    """A link around ``inner`` (SVG <a>, focusable; its <title> is its name and its
    tooltip) or a plain group without one."""
    title = f"<title>{esc(label)}</title>"
    if not href:
        return f"<g>{title}{inner}</g>"
    return f'<a href="{esc(href)}">{title}{inner}</a>'


def _value(chart: Chart, value: Number | None) -> str:
    return "—" if value is None else chart.value_text(value)


def _column_total(column: Column) -> Number:
    return sum((p.value for p in column.parts if p.value is not None), 0)


def _column_label(chart: Chart, column: Column, labels: dict[str, str] | None = None) -> str:
    if labels is None:
        labels = _series_labels(chart)
    shown = "; ".join(
        f"{labels.get(p.series, p.series)} {_value(chart, p.value)}"
        for p in column.parts
        if p.value
    )
    note = f" ({column.note})" if column.note else ""
    return f"{column.label}: {shown or 'none'}{note}"


def _series_label(chart: Chart, key: str) -> str:
    return next((s.label for s in chart.series if s.key == key), key)


def _series_labels(chart: Chart) -> dict[str, str]:
    """{series key: label} (the first series of a key, as _series_label reads it): looked
    up for every part of every column."""
    labels: dict[str, str] = {}
    for s in chart.series:
        labels.setdefault(s.key, s.label)
    return labels


def _grid(chart: Chart, top: float) -> tuple[str, str]:
    """Gridlines (drawn under the bars) and their labels (drawn over them, haloed)."""
    lines, labels = [], []
    for value in (top / 2, top):
        y = _y(value, top)
        lines.append(f'<line class="grid" x1="0" x2="100%" y1="{y:.1f}" y2="{y:.1f}"></line>')
        labels.append(
            f'<text class="ylabel" x="2" y="{y - 3:.1f}">{esc(chart.value_text(value))}</text>'
        )
    lines.append(f'<line class="base" x1="0" x2="100%" y1="{BOTTOM}" y2="{BOTTOM}"></line>')
    return "".join(lines), "".join(labels)


def _ticks(columns: Sequence[Column]) -> str:
    slot = 100 / len(columns)
    out = []
    for index, column in enumerate(columns):
        if column.tick:
            x = (index + 0.5) * slot
            # Near an edge a centred label would be cut off: it starts or ends there.
            anchor, x = (
                ("start", 0.0) if x < EDGE else ("end", 100.0) if x > 100 - EDGE else ("middle", x)
            )
            out.append(
                f'<text class="tick" x="{_percent(x)}" y="{TICK_Y}" text-anchor="{anchor}">'
                f"{esc(column.tick)}</text>"
            )
    return "".join(out)


def _svg(chart: Chart, kind: str, body: str, height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart {kind}" width="100%" height="{int(height)}" role="group"'
        f' aria-labelledby="{esc(chart.ident)}-title">'
        f'<title id="{esc(chart.ident)}-title">{esc(chart.title)}</title>{body}</svg>'
    )


def _legend(chart: Chart) -> str:
    items = "".join(
        f'<li><svg class="swatch" width="10" height="10" aria-hidden="true">'
        f'<rect class="{esc(series_class(s.key))}" width="10" height="10"></rect></svg>'
        f"{esc(s.label)}</li>"
        for s in chart.series
    )
    return f'<ul class="legend">{items}</ul>'


def table(chart: Chart) -> str:
    """The chart's numbers: a row per column (its label a link to its runs), a cell per
    series, and the row's total when the series add up."""
    head = "".join(f'<th scope="col" class="num">{esc(s.label)}</th>' for s in chart.series)
    if chart.total:
        head += '<th scope="col" class="num">Total</th>'
    head += '<th scope="col">Note</th>'
    rows = []
    for column in chart.columns:
        values = {p.series: p.value for p in column.parts}
        cells = "".join(
            f'<td class="num">{esc(_value(chart, values.get(s.key)))}</td>' for s in chart.series
        )
        if chart.total:
            cells += f'<td class="num">{esc(_value(chart, _column_total(column)))}</td>'
        label = esc(column.label)
        if column.href:
            label = f'<a href="{esc(column.href)}">{label}</a>'
        rows.append(f'<tr><th scope="row">{label}</th>{cells}<td>{esc(column.note)}</td></tr>\n')
    return (
        f'<div class="table-wrap"><table class="chart-data" id="{esc(chart.ident)}-data">'
        f"<caption>{esc(chart.title)}</caption>"
        f'<thead><tr><th scope="col">{esc(chart.column_header)}</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _figure(chart: Chart, drawing: str) -> SafeString:
    note = f'<p class="muted chart-note">{esc(chart.note)}</p>' if chart.note else ""
    if not chart.columns:
        drawing = f'<p class="notice">{esc(chart.empty)}</p>'
        numbers = ""
    else:
        numbers = f'<details class="numbers"><summary>The numbers</summary>{table(chart)}</details>'
    return mark_safe(
        f'<figure class="chart" id="{esc(chart.ident)}"><figcaption><h2>{esc(chart.title)}'
        f"</h2>{note}</figcaption>{_legend(chart) if chart.columns else ''}{drawing}"
        f"{numbers}</figure>"
    )


def stacked_bars(chart: Chart) -> SafeString:
    """One bar per column, its parts stacked in the order of ``chart.series``. The whole
    slot links to the column's runs; each part to its own (e.g. that status's).

    Each part's text (its series' label and value) is written once for the column's
    tooltip and the part's, and a column's x and the bars' width once per column and per
    chart: 7 days by hour draw ~1,300 parts (cProfile: label look-ups, value formatting
    and percent formatting were half of the drawing)."""
    if not chart.columns:
        return _figure(chart, "")
    top = nice_ceiling(max(float(_column_total(c)) for c in chart.columns), chart.integer)
    order = {s.key: i for i, s in enumerate(chart.series)}
    last = len(order)
    labels = _series_labels(chart)
    classes: dict[str, str] = {}
    value_text = chart.value_text
    slot = 100 / len(chart.columns)
    width = slot * BAR_SHARE
    width_text = _percent(width)
    grid, axis_labels = _grid(chart, top)
    # Past PART_LINKS_MAX columns a bar is under 3 px wide at 1,440 px: its parts are too
    # thin to aim at, and their links would be most of the page's weight.
    detailed = len(chart.columns) <= PART_LINKS_MAX
    bars = []
    for index, column in enumerate(chart.columns):
        x_text = _percent(index * slot + (slot - width) / 2)
        shown = [
            (part, f"{labels.get(part.series, part.series)} {value_text(part.value)}")
            for part in column.parts
            if part.value
        ]
        note = f" ({column.note})" if column.note else ""
        summary = "; ".join(text for _, text in shown) or "none"
        drawn = _link(
            column.href,
            f'<rect class="slot" x="{x_text}" y="{TOP}" width="{width_text}"'
            f' height="{PLOT}"></rect>',
            f"{column.label}: {summary}{note}",
        )
        y = float(BOTTOM)
        shown.sort(key=lambda pair: order.get(pair[0].series, last))
        for part, text in shown:
            height = PLOT * float(part.value) / top
            y -= height
            css = classes.get(part.series)
            if css is None:
                css = classes[part.series] = esc(series_class(part.series))
            drawn += _link(
                part.href if detailed else "",
                f'<rect class="{css}" x="{x_text}"'
                f' y="{y:.2f}" width="{width_text}" height="{height:.2f}"></rect>',
                f"{column.label}: {text}",
            )
        bars.append(f'<g class="col">{drawn}</g>')
    body = f"{grid}{''.join(bars)}{axis_labels}{_ticks(chart.columns)}"
    return _figure(chart, _svg(chart, "bars", body))


def lines(chart: Chart) -> SafeString:
    """One line per series through the columns' values (a gap where a value is None), a
    dot at each value, and each column a transparent link to its runs over the lines."""
    if not chart.columns:
        return _figure(chart, "")
    values = [float(p.value) for c in chart.columns for p in c.parts if p.value is not None]
    top = nice_ceiling(max(values, default=0.0), chart.integer)
    slot = 100 / len(chart.columns)
    grid, labels = _grid(chart, top)
    drawn = []
    for series in chart.series:
        css = esc(series_class(series.key))
        previous = None
        for index, column in enumerate(chart.columns):
            part = next((p for p in column.parts if p.series == series.key), None)
            if part is None or part.value is None:
                previous = None
                continue
            x, y = (index + 0.5) * slot, _y(float(part.value), top)
            if previous is not None:
                drawn.append(
                    f'<line class="{css}" x1="{_percent(previous[0])}" y1="{previous[1]:.2f}"'
                    f' x2="{_percent(x)}" y2="{y:.2f}"></line>'
                )
            drawn.append(f'<circle class="{css}" cx="{_percent(x)}" cy="{y:.2f}" r="3"></circle>')
            previous = (x, y)
    series_labels = _series_labels(chart)
    slot_text = _percent(slot)
    hits = "".join(
        _link(
            column.href,
            f'<rect class="hit" x="{_percent(index * slot)}" y="{TOP}"'
            f' width="{slot_text}" height="{PLOT}"></rect>',
            _column_label(chart, column, series_labels),
        )
        for index, column in enumerate(chart.columns)
    )
    body = f"{grid}{''.join(drawn)}{labels}{_ticks(chart.columns)}{hits}"
    return _figure(chart, _svg(chart, "lines", body))


def category_bars(chart: Chart) -> SafeString:
    """Horizontal bars, a row per column (a skill): its label above its bars, one bar per
    series side by side, lengths in percent of the largest value. The first
    CATEGORY_ROWS columns are drawn; the table holds them all."""
    if not chart.columns:
        return _figure(chart, "")
    shown = chart.columns[:CATEGORY_ROWS]
    values = [float(p.value) for c in shown for p in c.parts if p.value is not None]
    top = max(values, default=0.0) or 1.0
    keys = [s.key for s in chart.series]
    bar = ROW_BAR / max(len(keys), 1)
    labels = _series_labels(chart)
    rows = []
    for index, column in enumerate(shown):
        y = index * ROW
        label = _column_label(chart, column, labels)
        inner = (
            f'<rect class="slot" x="0" y="{y}" width="100%" height="{ROW - 2}"></rect>'
            f'<text class="clabel" x="2" y="{y + 12}">{esc(column.label)}'
            f'<tspan class="cvalue"> {esc(_summary(chart, column))}</tspan></text>'
        )
        values_by_key = {p.series: p.value for p in column.parts}
        for position, key in enumerate(keys):
            value = values_by_key.get(key)
            if not value:
                continue
            width = 100 * float(value) / top
            inner += (
                f'<rect class="{esc(series_class(key))}" x="0" y="{y + 16 + position * bar:.1f}"'
                f' width="{_percent(width)}" height="{bar:.1f}"></rect>'
            )
        rows.append(_link(column.href, inner, label))
    note = ""
    if len(chart.columns) > CATEGORY_ROWS:
        note = (
            f'<p class="muted chart-note">The first {CATEGORY_ROWS} of '
            f"{count(len(chart.columns))} are drawn; the table holds them all.</p>"
        )
    drawing = _svg(chart, "categories", "".join(rows), height=len(shown) * ROW) + note
    return _figure(chart, drawing)


def _summary(chart: Chart, column: Column) -> str:
    values = {p.series: p.value for p in column.parts}
    text = " · ".join(
        f"{s.label} {_value(chart, values.get(s.key))}" for s in chart.series if s.key in values
    )
    return f"{text} ({column.note})" if column.note else text
