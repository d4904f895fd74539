"""The /stats/ page: volume, failures, runtime, tokens and cost over a window.

The view parses the window and the list's filters (filters.StatsParameters: unknown or
repeated parameters are a 400 naming them), reads the buckets through
selectors.stats_series, prices their model usage with runs.costs, and hands plain data to
runs/web/charts.py, which draws each chart as SVG with its numbers in a table. Every bar
links to the run list filtered to the runs it counts (BucketLinks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.shortcuts import render
from django.urls import reverse

from .. import contract, costs, pricing, selectors
from ..filters import STATUS_CHOICES, STATUS_GROUPS, StatsParameters
from ..formats import count, seconds
from . import charts, rendering
from .views import bad_request, dashboard_view

# The window presets: window=<value>, shown as links above the charts.
WINDOW_PRESETS = (("24h", "last 24 h"), ("7d", "last 7 days"), ("30d", "last 30 days"))
# The window without window=, since= or until= (filters.StatsParameters' default).
DEFAULT_WINDOW = "7d"
BUCKETS = (("", "automatic"), ("hour", "hour"), ("day", "day"))
BUCKET_LENGTH = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
# At most this many labels on a time axis (7 fit a 390 px phone).
MAX_TICKS = 7
# The statuses of the stacked bars, in this order from the bottom; others after them.
STATUS_ORDER = (
    contract.STATUS_OK,
    contract.STATUS_ERROR,
    contract.STATUS_TIMEOUT,
    contract.STATUS_BUDGET_EXCEEDED,
    contract.STATUS_PREEMPTED,
    contract.STATUS_LANE_BUSY,
    contract.STATUS_RUNNING,
    contract.STATUS_DRY_RUN,
)
# The per-skill charts show the skills with the most runs in the window, this many (the
# category bars draw 20): their runtime histograms and usage are read for those only
# (issue 18: all 200 skills' day rows made a 30-day page 412-462 ms p95 at 1M runs).
SKILLS_SHOWN = charts.CATEGORY_ROWS
# Runs without an outcome: not counted in the failure rate's denominator.
NO_OUTCOME = (contract.STATUS_RUNNING, contract.STATUS_DRY_RUN)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BucketLinks:
    """Run-list URLs for the runs a bar counts: its bucket as full ISO times (the list's
    ``until`` is exclusive for a time, as the buckets are; a bare date would mean the end
    of that day), and the page's filters. Dry runs are counted by the stats, so the links
    include them (include_dry_run=1); nested runs when the page includes them.

    A page has a link per bucket and status (720 hourly buckets: thousands): the filters'
    part of the query is encoded once, the times (digits, "-", "T", ":" and "Z") by hand.
    """

    def __init__(self, query):
        self.list_url = reverse("runs:run_list")
        self.statuses = tuple(query.statuses)
        filters = [
            (name, value)
            for name, value in (
                ("caller", query.caller_id),
                ("channel", query.channel_id),
            )
            if value
        ]
        flags = [("include_nested", "1")] if not query.top_level_only else []
        flags.append(("include_dry_run", "1"))
        self.skill = query.skill_id
        self.tail = "&" + urlencode(filters + flags)
        self._status_parts: dict[tuple[str, ...], str] = {}
        # A bucket's times are asked for once per status and chart (~9 links a bucket):
        # strftime was a third of the page's link building (7 days by hour, cProfile).
        self._times: dict[tuple[datetime, datetime], str] = {}

    def __call__(
        self,
        since: datetime,
        until: datetime,
        *,
        statuses: tuple[str, ...] | None = None,
        skill: str | None = None,
    ) -> str:
        """The list of the runs in [since, until); ``statuses`` narrows the page's status
        filter (an empty intersection is no link: ""), ``skill`` replaces the page's."""
        chosen = self.statuses
        if statuses is not None:
            chosen = tuple(s for s in statuses if not self.statuses or s in self.statuses)
            if not chosen or any(s not in contract.KNOWN_STATUSES for s in chosen):
                return ""  # the list filters by known statuses only
        skill = self.skill if skill is None else skill
        status_part = self._status_parts.get(chosen)
        if status_part is None:
            status_part = self._status_parts[chosen] = (
                f"&{urlencode({'status': ','.join(chosen)})}" if chosen else ""
            )
        skill_part = f"&{urlencode({'skill': skill})}" if skill else ""
        times = self._times.get((since, until))
        if times is None:
            times = self._times[(since, until)] = (
                f"{self.list_url}?since={_iso(since).replace(':', '%3A')}"
                f"&until={_iso(until).replace(':', '%3A')}"
            )
        return f"{times}{skill_part}{status_part}{self.tail}"


@dataclass(frozen=True)
class Bucket:
    """One point of the series with what the charts need around it."""

    point: object
    start: datetime
    end: datetime
    label: str
    tick: str
    href: str
    cost: costs.Cost


def _labels(start: datetime, bucket: str) -> tuple[str, str]:
    if bucket == "hour":
        tick = f"{start:%b %d}" if start.hour == 0 else f"{start:%H:%M}"
        return f"{start:%Y-%m-%d %H:%M} UTC", tick
    return f"{start:%Y-%m-%d} ({start:%a})", f"{start:%b %d}"


def _tick_every(columns: int) -> int:
    return max(1, math.ceil(columns / MAX_TICKS))


def failure_rate(runs: dict[str, int]) -> float | None:
    """Failed runs in percent of the runs with an outcome (running and dry runs left out);
    None when no run had one."""
    decided = sum(n for status, n in runs.items() if status not in NO_OUTCOME)
    if not decided:
        return None
    failed = sum(runs.get(status, 0) for status in contract.FAILED_STATUSES)
    return 100.0 * failed / decided


def _percent_text(value) -> str:
    value = float(value)
    return f"{value:.0f} %" if value >= 10 or value == 0 else f"{value:.1f} %"


def _seconds_text(value) -> str:
    return seconds(value)


class Money:
    """Amounts in the page's currency (the one most cost was priced in; USD by default):
    other currencies and unpriced usage are said in each row's note, never added in."""

    def __init__(self, cost: costs.Cost):
        amounts = sorted(cost.amounts, key=lambda pair: -pair[1])
        self.currency = amounts[0][0] if amounts else costs.DEFAULT_CURRENCY

    def amount(self, cost: costs.Cost) -> Decimal:
        return cost.amount(self.currency)

    def text(self, value) -> str:
        """An amount as costs.money writes it; the axis's round numbers (floats) exactly
        ('0.5 USD', not '0.5000 USD')."""
        if isinstance(value, float):
            return f"{costs.decimal_text(Decimal(repr(value)))} {self.currency}"
        return f"{costs.money(Decimal(value))} {self.currency}"

    def note(self, cost: costs.Cost) -> str:
        parts = []
        others = [(c, a) for c, a in cost.amounts if c != self.currency]
        if others:
            parts.append("also " + " + ".join(f"{costs.money(a)} {c}" for c, a in others))
        if cost.partly_unpriced:
            models = ", ".join(sorted(m or "no model named" for m in cost.unpriced_models)[:5])
            steps = cost.unpriced_steps
            parts.append(
                f"partly unpriced: {count(steps)} step{'s' if steps != 1 else ''} ({models})"
            )
        return "; ".join(parts)


def _status_series(points) -> tuple[charts.Series, ...]:
    seen = {status for point in points for status in point.runs}
    ordered = [s for s in STATUS_ORDER if s in seen]
    ordered += sorted(seen - set(STATUS_ORDER))
    return tuple(charts.Series(status, status) for status in ordered)


@dashboard_view
def stats(request):
    parameters = StatsParameters(request.GET)
    if not parameters.is_valid():
        return bad_request(request, parameters.error_messages)
    query = parameters.query()
    series = selectors.stats_series(query, skill_limit=SKILLS_SHOWN)
    context = page_context(query, series, costs_table())
    context.update(
        {
            "nav": "stats",
            "window_value": request.GET.get("window")
            or ("" if request.GET.get("since") or request.GET.get("until") else DEFAULT_WINDOW),
            "form": {name: request.GET.get(name, "") for name in FORM_FIELDS},
        }
    )
    return render(request, "runs/stats.html", context)


def page_context(query, series, prices: costs.PriceTable) -> dict:
    """The page's charts and figures from a selectors.StatsSeries and the price table:
    no query (bench/stats_page_render.py times it alone)."""
    links = BucketLinks(query)
    pricer = Pricer(prices)
    step = BUCKET_LENGTH[query.bucket]
    every = _tick_every(len(series.points))
    buckets = []
    for index, point in enumerate(series.points):
        end = min(point.start + step, query.until)
        label, tick = _labels(point.start, query.bucket)
        buckets.append(
            Bucket(
                point=point,
                start=point.start,
                end=end,
                label=label,
                tick=tick if index % every == 0 else "",
                href=links(point.start, end),
                cost=pricer.cost([(point.start, point.usage)]),
            )
        )
    skill_costs = {skill.skill_id: pricer.cost(skill.usage_by_bucket) for skill in series.skills}
    total_cost = sum((b.cost for b in buckets), costs.Cost())
    money = Money(total_cost)
    return {
        "query": query,
        "charts": _charts(query, series, buckets, skill_costs, links, money),
        "totals": _totals(series.totals, total_cost),
        "more_skills": series.more_skills,
        "skills_shown": len(series.skills),
        "window_presets": WINDOW_PRESETS,
        "name_max_length": contract.NAME_MAX_LENGTH,
        "buckets": BUCKETS,
        "status_choices": [(v, label) for v, label in STATUS_CHOICES if v != "stale"],
        "since": query.since,
        "until": query.until,
        "list_url": links(query.since, query.until),
    }


FORM_FIELDS = ("window", "since", "until", "bucket", "skill", "caller", "channel", "status")


def costs_table() -> costs.PriceTable:
    """The price table (runs.pricing: kept per process between price writes, as for the
    list and the run pages)."""
    return pricing.price_table()


class Pricer:
    """The page's usage rows priced by runs/costs.py's rules, in few steps.

    The page prices every bucket and, per skill, every bucket again (each at its own
    start): 100 skills over 30 days by hour are 216,000 (model, bucket) rows. Here the
    price of a (model, time) is looked up once per page, and a skill's rows that one price
    row prices are summed before being charged once: costs.charge is linear in the token
    counts once each row's parts are capped at their wholes (cached at input, thinking at
    output, as charge caps them), so the sum is exact (Decimal) and equals pricing row by
    row (tests/test_stats_page.py checks it against PriceTable.cost_at). Measured on
    bench/stats_page_render.py's series (100 skills, 3 models, every bucket; CPU, best of
    5, load average 18): 30 days by day 117 ms with PriceTable.cost_at per bucket, 7 ms
    this way; 30 days by hour 2,119 ms and 142 ms.
    """

    def __init__(self, table: costs.PriceTable):
        self.table = table
        self._prices: dict[tuple[str, datetime], costs.Price | None] = {}

    def price(self, model: str, at: datetime) -> costs.Price | None:
        key = (model, at)
        if key not in self._prices:
            self._prices[key] = self.table.price_for(model, at)
        return self._prices[key]

    def cost(self, rows) -> costs.Cost:
        """The cost of ``rows``: (time, selectors.ModelUsage rows) pairs."""
        groups: dict[int, list] = {}
        unpriced_steps = unpriced_tokens = 0
        unpriced_models: set[str] = set()
        prices = self._prices
        for at, usages in rows:
            for usage in usages:
                # max()/min() spelt out: this loop runs for every (skill, bucket, model).
                inp, out = usage.input_tokens, usage.output_tokens
                inp, out = (inp if inp > 0 else 0), (out if out > 0 else 0)
                key = (usage.model, at)
                price = prices[key] if key in prices else self.price(usage.model, at)
                if price is None:
                    unpriced_steps += usage.steps if usage.steps > 0 else 0
                    unpriced_tokens += inp + out
                    unpriced_models.add(usage.model)
                    continue
                group = groups.get(id(price))
                if group is None:
                    group = groups[id(price)] = [price, usage.model, 0, 0, 0, 0]
                cached, thinking = usage.cached_input_tokens, usage.thinking_tokens
                group[2] += inp
                group[3] += out
                group[4] += inp if cached > inp else (cached if cached > 0 else 0)
                group[5] += out if thinking > out else (thinking if thinking > 0 else 0)
        total = costs.Cost(
            unpriced_steps=unpriced_steps,
            unpriced_tokens=unpriced_tokens,
            unpriced_models=frozenset(unpriced_models),
        )
        for price, model, inp, out, cached, thinking in groups.values():
            summed = costs.Usage(model, price.valid_from, inp, out, cached, thinking)
            total += costs.Cost(amounts=((price.currency, costs.charge(price, summed)),))
        return total


def _totals(totals, cost: costs.Cost) -> list[tuple[str, str]]:
    rate = failure_rate(totals.runs)
    return [
        ("runs", count(totals.total_runs)),
        ("failed", count(totals.failed_runs)),
        ("failure rate", "—" if rate is None else _percent_text(rate)),
        ("runtime p50", seconds(totals.runtime_p50)),
        ("runtime p95", seconds(totals.runtime_p95)),
        (
            "tokens",
            rendering.token_text(totals.input_tokens, totals.output_tokens, totals.thinking_tokens),
        ),
        ("cost", costs.display(cost)),
    ]


def _charts(query, series, buckets, skill_costs, links, money) -> list:
    points = [b.point for b in buckets]
    header = "Hour (UTC)" if query.bucket == "hour" else "Day (UTC)"
    per = "hour" if query.bucket == "hour" else "day"
    empty = "No runs in this window."
    any_runs = any(p.total_runs for p in points)
    status_series = _status_series(points)

    def columns(parts_of, href_of=lambda b: b.href, note_of=lambda b: ""):
        if not any_runs:
            return ()
        return tuple(
            charts.Column(
                label=b.label, tick=b.tick, href=href_of(b), parts=parts_of(b), note=note_of(b)
            )
            for b in buckets
        )

    runs_chart = charts.Chart(
        ident="chart-runs",
        title=f"Runs per {per}, by status",
        series=status_series,
        columns=columns(
            lambda b: tuple(
                charts.Part(
                    s.key, b.point.runs.get(s.key, 0), links(b.start, b.end, statuses=(s.key,))
                )
                for s in status_series
            )
        ),
        column_header=header,
        empty=empty,
    )
    failure_chart = charts.Chart(
        ident="chart-failures",
        title="Failure rate",
        note="Failed runs (error, timeout, budget_exceeded) in percent of the runs with an "
        "outcome; running and dry runs are left out.",
        series=(charts.Series("failed", "failure rate"),),
        columns=columns(
            lambda b: (charts.Part("failed", failure_rate(b.point.runs)),),
            href_of=lambda b: links(b.start, b.end, statuses=STATUS_GROUPS["failed"]),
        ),
        value_text=_percent_text,
        column_header=header,
        empty=empty,
        total=False,
        integer=False,
    )
    runtime_chart = charts.Chart(
        ident="chart-runtime",
        title="Runtime p50 and p95",
        note="Finished runs; percentiles from log-scale buckets, within 5% of the exact value.",
        series=(charts.Series("p50", "p50"), charts.Series("p95", "p95")),
        columns=columns(
            lambda b: (
                charts.Part("p50", b.point.runtime_p50),
                charts.Part("p95", b.point.runtime_p95),
            )
        ),
        value_text=_seconds_text,
        column_header=header,
        empty=empty,
        total=False,
        integer=False,
    )
    token_chart = charts.Chart(
        ident="chart-tokens",
        title=f"Tokens per {per}",
        note="Output includes thinking where the model reports it so; shown as reported.",
        series=(
            charts.Series("input", "input"),
            charts.Series("output", "output"),
            charts.Series("thinking", "thinking"),
        ),
        columns=columns(
            lambda b: (
                charts.Part("input", b.point.input_tokens),
                charts.Part("output", b.point.output_tokens),
                charts.Part("thinking", b.point.thinking_tokens),
            )
        ),
        column_header=header,
        empty=empty,
    )
    cost_chart = charts.Chart(
        ident="chart-cost",
        title=f"Cost per {per} ({money.currency})",
        note="Priced from each step's model at the bucket's time; usage without a price is "
        "never counted as 0 (see each row's note).",
        series=(charts.Series("cost", f"cost ({money.currency})"),),
        columns=columns(
            lambda b: (charts.Part("cost", money.amount(b.cost)),),
            note_of=lambda b: money.note(b.cost),
        ),
        value_text=money.text,
        column_header=header,
        empty=empty,
        total=False,
        integer=False,
    )
    skills = series.skills
    more = (
        f"The {count(len(skills))} skills with the most runs; {count(series.more_skills)} more "
        f"ran in this window."
        if series.more_skills
        else ""
    )
    skill_runtime = charts.Chart(
        ident="chart-skill-runtime",
        title="Runtime per skill (p50, p95)",
        series=(charts.Series("p50", "p50"), charts.Series("p95", "p95")),
        columns=tuple(
            charts.Column(
                label=s.skill_id,
                href=links(query.since, query.until, skill=s.skill_id),
                parts=(charts.Part("p50", s.runtime_p50), charts.Part("p95", s.runtime_p95)),
                note=f"{count(s.total_runs)} runs",
            )
            for s in skills
        ),
        value_text=_seconds_text,
        column_header="Skill",
        note=more,
        empty=empty,
        total=False,
        integer=False,
    )
    by_cost = sorted(skills, key=lambda s: (-money.amount(skill_costs[s.skill_id]), s.skill_id))
    skill_cost = charts.Chart(
        ident="chart-skill-cost",
        title=f"Cost per skill ({money.currency})",
        series=(charts.Series("cost", f"cost ({money.currency})"),),
        columns=tuple(
            charts.Column(
                label=s.skill_id,
                href=links(query.since, query.until, skill=s.skill_id),
                parts=(charts.Part("cost", money.amount(skill_costs[s.skill_id])),),
                note=money.note(skill_costs[s.skill_id]),
            )
            for s in by_cost
        ),
        value_text=money.text,
        column_header="Skill",
        note=more,
        empty=empty,
        total=False,
        integer=False,
    )
    return [
        charts.stacked_bars(runs_chart),
        charts.stacked_bars(failure_chart),
        charts.lines(runtime_chart),
        charts.stacked_bars(token_chart),
        charts.stacked_bars(cost_chart),
        charts.category_bars(skill_cost),
        charts.category_bars(skill_runtime),
    ]
