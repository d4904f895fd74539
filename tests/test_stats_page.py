"""The /stats/ page: its charts (runs/web/charts.py, pure rendering from plain data) and
the view (runs/web/stats_views.py) on the real test database."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from runs import costs, selectors
from runs.filters import StatsParameters
from runs.formats import count, seconds
from runs.models import ModelPrice
from runs.web import charts, stats_views
from tests.dashboard_data import make_viewer, record_run
from tests.test_views import ids_on

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


# --- the page ----------------------------------------------------------------------------

# Six hours of 2026-11-20 (tests.dashboard_data.BASE is 12:00 UTC that day), by hour.
WINDOW = "since=2026-11-20T12:00:00Z&until=2026-11-20T18:00:00Z&bucket=hour"
HOSTILE_SKILL = HOSTILE[:200]


def stats_url(query: str = WINDOW) -> str:
    return f"{reverse('runs:stats')}?{query}" if query else reverse("runs:stats")


@pytest.fixture
def viewer(db, client, django_user_model):
    user = make_viewer(django_user_model)
    client.force_login(user)
    return user


@pytest.fixture
def hours(db):
    """Runs over 12:00-16:00 of BASE's day: every kind the charts count."""
    record_run("h12-ok-1", skill="summarise", minutes=1, runtime=2.0, tokens=(100, 20, 5))
    record_run("h12-ok-2", skill="summarise", minutes=5, runtime=4.0, tokens=(300, 40, 0))
    record_run("h12-err", skill="triage", status="error", minutes=10, runtime=1.0)
    record_run("h12-dry", skill="summarise", status="dry_run", minutes=20)
    record_run("h13-timeout", skill="triage", status="timeout", minutes=70, runtime=30.0)
    record_run(
        "h13-ok",
        skill="triage",
        caller="bob",
        channel="ops",
        minutes=80,
        runtime=8.0,
        tokens=(1000, 200, 50),
        events=[("step", {"model": "mystery-model-x", "usage": {"input_tokens": 1000}})],
    )
    record_run("h13-child", skill="lookup", minutes=81, parent="h13-ok")
    record_run("h14-running", skill="summarise", status="running", minutes=130)
    record_run("h15-hostile", skill=HOSTILE_SKILL, status="error", minutes=190)


def selector_series(query: str = WINDOW):
    parameters = StatsParameters(QueryDict(query))
    assert parameters.is_valid(), parameters.error_messages
    return selectors.stats_series(parameters.query())


def table_rows(markup: str, ident: str) -> list[list[tuple[str, str]]]:
    """The body rows of one chart's table: per cell (text, the href of a link in it)."""
    body = markup.split(f'id="{ident}-data"', 1)[1].split("<tbody>", 1)[1]
    body = body.split("</tbody>", 1)[0]
    rows = []
    for row in body.split("</tr>")[:-1]:
        cells = []
        for cell in re.split(r"<t[hd][^>]*>", row)[1:]:
            link = re.search(r'href="([^"]*)"', cell)
            text = re.sub(r"<[^>]+>", "", cell)
            cells.append((html.unescape(text), html.unescape(link[1]) if link else ""))
        rows.append(cells)
    return rows


def chart_links(markup: str, ident: str) -> list[tuple[str, str]]:
    """(href, title) of every link drawn in one chart's SVG."""
    figure = markup.split(f'<figure class="chart" id="{ident}">', 1)[1]
    figure = figure.split('<svg class="chart', 1)[1].split("</svg>", 1)[0]
    return [
        (html.unescape(href), html.unescape(label))
        for href, label in re.findall(r'<a href="([^"]*)"><title>([^<]*)</title>', figure)
    ]


def listed(client, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200, url
    return ids_on(response)


def test_anonymous_users_are_sent_to_the_login_page(client, hours):
    response = client.get(stats_url())
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("runs:login"))
    assert b"summarise" not in response.content


@pytest.mark.parametrize("staff", [True, False], ids=["staff", "no-staff"])
def test_users_without_the_view_permission_get_nothing(client, django_user_model, hours, staff):
    client.force_login(make_viewer(django_user_model, staff=staff, permission=False))
    response = client.get(stats_url())
    assert response.status_code == 403
    assert b"summarise" not in response.content and b"<svg" not in response.content


def test_the_page_refuses_post(client, viewer):
    assert client.post(stats_url()).status_code == 405


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("bogus=1", "bogus"),
        ("skill=a&skill=b", "skill"),
        ("bucket=week", "bucket"),
        ("since=yesterday", "since"),
        ("status=stale", "status"),
        ("status=nonsense", "status"),
        ("window=5y", "window"),
        ("include_nested=perhaps", "include_nested"),
        ("since=2026-01-01&until=2026-12-01&bucket=hour", "bucket"),
        ("q=word", "q"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(client, viewer, query, parameter):
    response = client.get(stats_url(query))
    assert response.status_code == 400
    assert f"<code>{parameter}</code>" in response.content.decode()


@pytest.mark.parametrize("query", ["", "window=24h", "window=7d", "window=30d", WINDOW])
def test_every_window_answers(client, viewer, hours, query):
    response = client.get(stats_url(query))
    assert response.status_code == 200
    assert response.content.decode().count('<figure class="chart"') == 7


def test_the_runs_chart_numbers_equal_the_selectors(client, viewer, hours):
    markup = client.get(stats_url()).content.decode()
    series = selector_series()
    rows = table_rows(markup, "chart-runs")
    assert len(rows) == len(series.points) == 6
    header = markup.split('id="chart-runs-data"', 1)[1].split("</thead>", 1)[0]
    statuses = [
        html.unescape(s) for s in re.findall(r'<th scope="col" class="num">([^<]*)<', header)
    ]
    assert statuses[-1] == "Total"
    for row, point in zip(rows, series.points, strict=True):
        numbers = [int(text.replace("\u2009", "")) for text, _ in row[1 : len(statuses) + 1]]
        assert numbers[:-1] == [point.runs.get(s, 0) for s in statuses[:-1]]
        assert numbers[-1] == point.total_runs
    # And the counts are the runs recorded: 12:00 has two ok, an error and a dry run.
    assert series.points[0].runs == {"ok": 2, "error": 1, "dry_run": 1}


def test_tokens_runtime_and_totals_equal_the_selectors(client, viewer, hours):
    markup = client.get(stats_url()).content.decode()
    series = selector_series()
    tokens = table_rows(markup, "chart-tokens")
    for row, point in zip(tokens, series.points, strict=True):
        numbers = [int(text.replace("\u2009", "")) for text, _ in row[1:4]]
        assert numbers == [point.input_tokens, point.output_tokens, point.thinking_tokens]
    runtime = table_rows(markup, "chart-runtime")
    for row, point in zip(runtime, series.points, strict=True):
        assert [text for text, _ in row[1:3]] == [
            seconds(point.runtime_p50),
            seconds(point.runtime_p95),
        ]
    totals = markup.split('class="stats-totals"', 1)[1].split("</ul>", 1)[0]
    assert f'<span class="figure">{count(series.totals.total_runs)}</span>' in totals


def test_cost_of_an_unknown_model_is_never_a_silent_zero(client, viewer, hours):
    markup = client.get(stats_url()).content.decode()
    rows = table_rows(markup, "chart-cost")
    notes = {row[0][0]: row[-1][0] for row in rows}
    assert "partly unpriced" in notes["2026-11-20 13:00 UTC"]
    assert "mystery-model-x" in notes["2026-11-20 13:00 UTC"]


def test_each_bar_opens_exactly_the_runs_it_counts(client, viewer, hours):
    markup = client.get(stats_url()).content.decode()
    series = selector_series()
    by_label = {row[0][0]: row[0][1] for row in table_rows(markup, "chart-runs")}
    for point in series.points:
        href = by_label[f"{point.start:%Y-%m-%d %H:%M} UTC"]
        got = parse_qs(urlsplit(href).query)
        assert got["since"] == [f"{point.start:%Y-%m-%dT%H:%M:%SZ}"]
        assert got["include_dry_run"] == ["1"] and "include_nested" not in got
        assert len(listed(client, href)) == point.total_runs
    segments = [
        (href, label) for href, label in chart_links(markup, "chart-runs") if "status=" in href
    ]
    assert segments
    for href, label in segments:
        status = parse_qs(urlsplit(href).query)["status"][0]
        assert f": {status} " in label
        assert len(listed(client, href)) == int(label.rsplit(" ", 1)[1])
    failures = chart_links(markup, "chart-failures")
    first = next(href for href, label in failures if label.startswith("2026-11-20 13:00"))
    assert sorted(listed(client, first)) == ["h13-timeout"]


def test_links_keep_the_pages_filters(client, viewer, hours):
    query = f"{WINDOW}&skill=triage&caller=bob&channel=ops&include_nested=1"
    markup = client.get(stats_url(query)).content.decode()
    hrefs = [href for href, _ in chart_links(markup, "chart-runs")]
    assert hrefs
    for href in hrefs:
        got = parse_qs(urlsplit(href).query)
        assert got["skill"] == ["triage"] and got["caller"] == ["bob"]
        assert got["channel"] == ["ops"] and got["include_nested"] == ["1"]
    assert {run for href in hrefs for run in listed(client, href)} == {"h13-ok"}


def test_per_skill_bars_open_the_skills_runs(client, viewer, hours):
    markup = client.get(stats_url()).content.decode()
    series = selector_series()
    rows = {row[0][0]: row[0][1] for row in table_rows(markup, "chart-skill-runtime")}
    assert set(rows) == {s.skill_id for s in series.skills}
    for skill in series.skills:
        assert parse_qs(urlsplit(rows[skill.skill_id]).query)["skill"] == [skill.skill_id]
        assert len(listed(client, rows[skill.skill_id])) == skill.total_runs


def test_hostile_skill_names_are_text_in_the_svg_and_the_table(client, viewer, hours):
    markup = client.get(stats_url()).content.decode()
    body = markup.split('<div class="stats-grid">', 1)[1]
    assert_inert(body)
    elements = Elements(body)
    # The table's row header (a link to the skill's runs) and the bar's label.
    assert HOSTILE_SKILL in [text for _, text in elements.tags("a")]
    assert HOSTILE_SKILL in [text for _, text in elements.tags("text")]
    links = [href for href, _ in chart_links(markup, "chart-skill-cost")]
    assert any(parse_qs(urlsplit(h).query).get("skill") == [HOSTILE_SKILL] for h in links)


def test_an_empty_window_says_so(client, viewer, hours):
    markup = client.get(stats_url("since=2020-01-01&until=2020-01-02")).content.decode()
    assert markup.count("No runs in this window.") == 7
    assert '<svg class="chart' not in markup


def test_the_form_keeps_what_was_asked(client, viewer, hours):
    markup = client.get(stats_url(f"{WINDOW}&skill=triage&status=failed")).content.decode()
    assert 'name="skill" value="triage"' in markup
    assert '<option value="failed" selected>' in markup
    assert 'name="since" value="2026-11-20T12:00:00Z"' in markup


def test_the_page_asks_as_many_queries_for_many_skills_as_for_few(client, viewer, hours):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(stats_url()).status_code == 200
        return len(captured.captured_queries)

    queries()  # the process's first page reads the price table (kept per process: pricing)
    few = queries()
    for index in range(12):
        record_run(f"more-{index}", skill=f"skill-{index}", minutes=15 + index * 20)
    assert queries() == few


def test_past_part_links_max_columns_only_whole_bars_are_links():
    many = [
        column(f"day {i:03d}", 2, 1, href=f"/runs/?b={i}") for i in range(charts.PART_LINKS_MAX + 1)
    ]
    hrefs = [a["href"] for a, _ in Elements(str(charts.stacked_bars(day_chart(many)))).tags("a")]
    assert not [h for h in hrefs if "status=" in h]
    # Each bar in the drawing and each row of the table.
    assert len(hrefs) == 2 * len(many)
    few = many[: charts.PART_LINKS_MAX]
    hrefs = [a["href"] for a, _ in Elements(str(charts.stacked_bars(day_chart(few)))).tags("a")]
    assert len([h for h in hrefs if "status=" in h]) == 2 * len(few)


# --- pricing the page's usage ------------------------------------------------------------


def test_the_pages_pricer_equals_pricing_bucket_by_bucket():
    """stats_views.Pricer sums rows priced alike before charging: the same Decimal as
    runs.costs's PriceTable.cost_at bucket by bucket, across a price change, patterns,
    two currencies, unknown models and parts larger than their wholes."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    change = start + timedelta(hours=30)
    table = costs.PriceTable(
        [
            costs.Price("gpt-4o*", start, Decimal("2.50"), Decimal("10.00"), Decimal("1.25")),
            costs.Price("gpt-4o*", change, Decimal("2.00"), Decimal("8.00"), Decimal("1.00")),
            costs.Price("gpt-4o-mini", start, Decimal("0.15"), Decimal("0.60")),
            costs.Price(
                "claude-x", start, Decimal("3"), Decimal("15"), None, Decimal("12"), currency="EUR"
            ),
        ]
    )
    rows = []
    for hour in range(60):
        at = start + timedelta(hours=hour)
        rows.append(
            (
                at,
                tuple(
                    selectors.ModelUsage(model, 1, 1 + hour % 3, inp, out, cached, thinking)
                    for model, inp, out, cached, thinking in (
                        ("gpt-4o", 1000 + hour, 300, 200, 0),
                        ("gpt-4o-mini", 7 * hour, 11, 900 * (hour % 2), 0),  # cached > input
                        ("claude-x", 500, 100 + hour, 0, 40 + 2 * hour),
                        ("mystery", 10, 10, 0, 0),
                        ("", 5, hour, 0, 0),
                    )
                    if not (model == "claude-x" and hour % 5 == 0)
                ),
            )
        )
    expected = sum((table.cost_at(usages, at) for at, usages in rows), costs.Cost())
    got = stats_views.Pricer(table).cost(rows)
    assert got == expected
    assert set(dict(got.amounts)) == {"USD", "EUR"} and got.partly_unpriced
    assert got.unpriced_models == frozenset({"mystery", ""})


def test_the_pages_costs_are_the_apis(client, viewer, hours):
    """Each bucket's cost on the page is GET /api/stats/'s amount for that bucket."""
    ModelPrice.objects.create(
        model="gpt-test*",
        input_per_million=Decimal("2.50"),
        output_per_million=Decimal("10"),
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    step = {"model": "gpt-test-1", "usage": {"input_tokens": 123_457, "output_tokens": 8_765}}
    record_run("h12-priced", minutes=30, events=[("step", step), ("step", step)])
    record_run("h14-priced", minutes=140, events=[("step", step)])
    markup = client.get(stats_url()).content.decode()
    api = client.get(f"/api/stats/?{WINDOW}")
    assert api.status_code == 200
    rows = table_rows(markup, "chart-cost")
    answers = api.json()["series"]
    assert len(rows) == len(answers)
    for row, answer in zip(rows, answers, strict=True):
        assert answer["cost"]["currency"] == "USD"
        assert row[1][0] == f"{costs.money(Decimal(answer['cost']['amount']))} USD"
    assert (
        Decimal(answers[0]["cost"]["amount"])
        == 2 * (Decimal("2.50") * 123_457 + Decimal(10) * 8_765) / 1_000_000
    )


def test_per_skill_charts_show_the_skills_with_the_most_runs_and_count_the_others(
    client, viewer, hours, monkeypatch
):
    monkeypatch.setattr(stats_views, "SKILLS_SHOWN", 2)
    full = selector_series()
    assert len(full.skills) == 3
    markup = client.get(stats_url()).content.decode()
    for ident in ("chart-skill-runtime", "chart-skill-cost"):
        shown = {cells[0][0] for cells in table_rows(markup, ident)}
        assert shown == {s.skill_id for s in full.skills[:2]}
    assert "The 2 skills with the most runs; 1 more ran in this window." in markup
    more = Elements(markup.split('class="muted stats-more-skills"', 1)[1]).tags("a")
    assert more[0][0]["href"] == reverse("runs:skills")
    monkeypatch.setattr(stats_views, "SKILLS_SHOWN", 3)
    assert "more ran in this window" not in client.get(stats_url()).content.decode()
