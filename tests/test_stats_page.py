"""The /stats/ page: its charts (runs/web/charts.py, pure rendering from plain data) and
the view (runs/web/stats_views.py) on the real test database."""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser

import pytest

from runs.web import charts

SCRIPT = "<script>window.__xss=1</script>"
ATTR = '"><img src=x onerror=alert(1)>'
QUOTE = "' onmouseover='alert(1)"
HOSTILE = f"s{SCRIPT}{ATTR}{QUOTE}"


class Elements(HTMLParser):
    """Every element of a fragment: (tag, attributes, the text directly inside it)."""

    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs), []))
        self._open.append(len(self.found) - 1)

    def handle_endtag(self, tag):
        while self._open:
            index = self._open.pop()
            if self.found[index][0] == tag:
                break

    def handle_data(self, data):
        if self._open:
            self.found[self._open[-1]][2].append(data)

    def tags(self, name: str):
        return [(attrs, "".join(text)) for tag, attrs, text in self.found if tag == name]


def assert_inert(markup: str):
    """No element or attribute came from the text: only its escaped form is there."""
    for raw in (SCRIPT, ATTR, "<img", "onerror=alert(1)>", "' onmouseover"):
        assert raw not in markup, raw
    elements = Elements(markup)
    assert not elements.tags("script") and not elements.tags("img")
    for _, attrs, _ in elements.found:
        assert not any(name.startswith("on") for name in attrs), attrs


def drawn_rects(markup: str) -> list[dict[str, str]]:
    """The rectangles of the chart itself (the legend's swatches are placed by CSS)."""
    return [a for a, _ in Elements(markup).tags("rect") if "y" in a]


def day_chart(columns, **kwargs) -> charts.Chart:
    return charts.Chart(
        ident="runs",
        title="Runs per day",
        series=(charts.Series("ok", "ok"), charts.Series("error", "error")),
        columns=tuple(columns),
        **kwargs,
    )


def column(label, ok, error, href="", **kwargs) -> charts.Column:
    return charts.Column(
        label=label,
        tick=label[-5:],
        href=href,
        parts=(
            charts.Part("ok", ok, f"{href}&status=ok" if href else ""),
            charts.Part("error", error, f"{href}&status=error" if href else ""),
        ),
        **kwargs,
    )


# --- charts: pure rendering ------------------------------------------------------------


@pytest.mark.parametrize(
    "value, integer, top",
    [(0, True, 2.0), (1, True, 2.0), (3, True, 4.0), (7, True, 8.0), (9, True, 10.0),
     (10, True, 10.0), (11, True, 20.0), (150, True, 200.0), (0.03, False, 0.04),
     (0.5, False, 0.6), (0, False, 1.0)],
)  # fmt: skip
def test_axis_top_is_a_round_number_at_or_above_the_largest_value(value, integer, top):
    assert charts.nice_ceiling(value, integer) == pytest.approx(top)


@pytest.mark.parametrize("value", [1, 2, 3, 5, 7, 13, 99, 101, 999, 12345, 0.7, 0.013])
def test_axis_top_never_cuts_a_bar_and_wastes_less_than_half_the_axis(value):
    top = charts.nice_ceiling(value, integer=value >= 1)
    assert value <= top
    assert top < 2.5 * value or top == 2.0


def test_stacked_bars_heights_follow_the_values():
    columns = [column("2026-12-01", 3, 1), column("2026-12-02", 6, 2)]
    markup = str(charts.stacked_bars(day_chart(columns)))
    rects = [a for a in drawn_rects(markup) if a.get("class") in ("k-ok", "k-error")]
    assert len(rects) == 4
    top = charts.nice_ceiling(8, integer=True)
    heights = [float(a["height"]) for a in rects]
    expected = [charts.PLOT * v / top for v in (3, 1, 6, 2)]
    assert heights == pytest.approx(expected, abs=0.01)
    # Stacked: each part starts where the one below it ends.
    first_ok, first_error = rects[0], rects[1]
    assert float(first_error["y"]) + float(first_error["height"]) == pytest.approx(
        float(first_ok["y"]), abs=0.01
    )
    assert float(first_ok["y"]) + float(first_ok["height"]) == pytest.approx(charts.BOTTOM)


def test_every_bar_and_every_part_is_a_link_to_its_runs():
    columns = [column("2026-12-01", 3, 1, href="/runs/?since=a&until=b")]
    markup = str(charts.stacked_bars(day_chart(columns)))
    hrefs = [a["href"] for a, _ in Elements(markup).tags("a")]
    # The slot, each part, and the table's row header.
    assert hrefs.count("/runs/?since=a&until=b") == 2
    assert "/runs/?since=a&until=b&status=ok" in hrefs
    assert "/runs/?since=a&until=b&status=error" in hrefs
    # In the markup the ampersands are escaped.
    assert 'href="/runs/?since=a&amp;until=b&amp;status=ok"' in markup


def test_a_zero_part_draws_nothing_and_a_column_without_href_is_no_link():
    markup = str(charts.stacked_bars(day_chart([column("2026-12-01", 0, 2)])))
    elements = Elements(markup)
    assert not elements.tags("a")
    classes = [a.get("class") for a in drawn_rects(markup)]
    assert "k-ok" not in classes and "k-error" in classes


def test_the_table_beneath_holds_every_number():
    columns = [column("2026-12-01", 1234, 5), column("2026-12-02", 0, 7, note="2 unpriced")]
    markup = str(charts.stacked_bars(day_chart(columns)))
    elements = Elements(markup)
    rows = [text for _, text in elements.tags("td")]
    assert rows == ["1\u2009234", "5", "1\u2009239", "", "0", "7", "7", "2 unpriced"]
    headers = [text for _, text in elements.tags("th")]
    assert headers == ["Bucket (UTC)", "ok", "error", "Total", "Note", "2026-12-01", "2026-12-02"]
    assert elements.tags("caption")[0][1] == "Runs per day"


def test_hostile_labels_are_text_in_the_svg_the_legend_and_the_table():
    chart = charts.Chart(
        ident="cost-skill",
        title=f"Cost {SCRIPT}",
        series=(charts.Series(HOSTILE, HOSTILE),),
        columns=(
            charts.Column(
                label=HOSTILE,
                tick=HOSTILE,
                href=f'/runs/?skill={ATTR}"',
                note=HOSTILE,
                parts=(charts.Part(HOSTILE, 3, href=f"/runs/?x={QUOTE}"),),
            ),
        ),
    )
    for draw in (charts.stacked_bars, charts.lines, charts.category_bars):
        markup = str(draw(chart))
        assert_inert(markup)
        elements = Elements(markup)
        texts = [t for _, t in elements.tags("th")] + [t for _, t in elements.tags("text")]
        assert HOSTILE in texts, draw
        assert any(HOSTILE in t for _, t in elements.tags("title")), draw
        # A stored key never becomes a class: unknown series get the neutral colour.
        classes = {a.get("class", "") for _, a, _ in elements.found}
        assert not any("script" in c or "onerror" in c for c in classes)
        assert charts.OTHER_CLASS in classes


def test_values_are_written_by_the_charts_formatter():
    chart = charts.Chart(
        ident="cost",
        title="Cost per day",
        series=(charts.Series("cost", "cost"),),
        columns=(
            charts.Column("2026-12-01", (charts.Part("cost", Decimal("12.3456")),), tick="01"),
        ),
        value_text=lambda v: f"${Decimal(v):.2f}",
        integer=False,
    )
    markup = str(charts.stacked_bars(chart))
    cells = [t for _, t in Elements(markup).tags("td")]
    assert cells[:2] == ["$12.35", "$12.35"]
    labels = [t for a, t in Elements(markup).tags("text") if a.get("class") == "ylabel"]
    assert labels == ["$10.00", "$20.00"]


def test_lines_break_where_a_value_is_missing():
    series = (charts.Series("p50", "p50"), charts.Series("p95", "p95"))
    values = [(1.0, 2.0), (None, None), (2.0, 5.0), (3.0, 4.0)]
    columns = tuple(
        charts.Column(
            f"day {i}", (charts.Part("p50", a), charts.Part("p95", b)), tick=str(i), href=f"/r{i}"
        )
        for i, (a, b) in enumerate(values)
    )
    chart = charts.Chart("runtime", "Runtime", series, columns, value_text=str, integer=False)
    elements = Elements(str(charts.lines(chart)))
    segments = [a for a, _ in elements.tags("line") if a.get("class") in ("k-p50", "k-p95")]
    # Day 1 has no value: only days 2 -> 3 are joined, for each series.
    assert len(segments) == 2
    assert len([a for a, _ in elements.tags("circle")]) == 6
    # Each column, with or without a value, links to its runs.
    assert [a["href"] for a, _ in elements.tags("a")][:4] == ["/r0", "/r1", "/r2", "/r3"]


def test_category_bars_draw_the_first_rows_and_tabulate_all():
    columns = tuple(
        charts.Column(f"skill-{i:02d}", (charts.Part("cost", 100 - i),), href=f"/runs/?skill={i}")
        for i in range(charts.CATEGORY_ROWS + 5)
    )
    chart = charts.Chart("per-skill", "Cost per skill", (charts.Series("cost", "cost"),), columns)
    markup = str(charts.category_bars(chart))
    elements = Elements(markup)
    bars = [a for a in drawn_rects(markup) if a.get("class") == "k-cost"]
    assert len(bars) == charts.CATEGORY_ROWS
    assert bars[0]["width"] == "100.000%"
    assert float(bars[1]["width"].rstrip("%")) == pytest.approx(99.0)
    rows = elements.tags("tr")
    assert len(rows) == 1 + len(columns)
    svg = elements.tags("svg")
    assert [a["height"] for a, _ in svg if "categories" in a.get("class", "")] == [
        str(charts.CATEGORY_ROWS * charts.ROW)
    ]


def test_an_empty_chart_says_so_and_draws_nothing():
    markup = str(charts.stacked_bars(day_chart([], empty="No runs in this window.")))
    elements = Elements(markup)
    assert not [a for a, _ in elements.tags("svg") if "chart" in a.get("class", "")]
    assert not elements.tags("table")
    assert "No runs in this window." in markup
