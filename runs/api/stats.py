"""GET /api/stats/: the /stats/ numbers as JSON (runs by status, runtime p50/p95, tokens and
cost per hour or day of a window), read from the stats buckets (selectors.stats_series)
and priced at read time (runs.costs over the model price table)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from .. import contract, costs, pricing, selectors
from ..filters import STALE, STATS_MAX_BUCKETS, STATS_WINDOWS, STATUS_CHOICES, StatsParameters
from .views import READ_ERRORS, ApiView


class StatsCostSerializer(serializers.Serializer):
    amount = serializers.CharField(
        help_text='an exact decimal number as a string ("12.34"), never a float; the steps '
        "of the bucket's runs priced by the model price table at the bucket's start"
    )
    currency = serializers.CharField(help_text="of amount (USD when nothing was priced)")
    unpriced_runs = serializers.IntegerField(
        help_text="runs with steps naming no model or a model without a valid price (their "
        "cost is left out of amount); a run with two such models counts once per model, at "
        "most the bucket's runs"
    )
    amounts = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        required=False,
        help_text="every currency as {amount, currency}, only when there are several",
    )


class StatsPointSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="the bucket's start (UTC)")
    runs = serializers.DictField(
        child=serializers.IntegerField(), help_text="{status: runs started in the bucket}"
    )
    runtime_p50 = serializers.FloatField(
        allow_null=True,
        help_text="median runtime in seconds of the finished runs (from a log-scale "
        "histogram: within 5% of the exact value); null when none finished",
    )
    runtime_p95 = serializers.FloatField(allow_null=True)
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    thinking_tokens = serializers.IntegerField()
    cost = StatsCostSerializer()


class StatsSerializer(serializers.Serializer):
    bucket = serializers.ChoiceField(choices=["hour", "day"])
    since = serializers.DateTimeField(help_text="the window's start, rounded down to a bucket")
    until = serializers.DateTimeField(help_text="its end (exclusive), rounded up to a bucket")
    series = StatsPointSerializer(many=True, help_text="every bucket of the window, oldest first")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cost_json(table: costs.PriceTable, point: selectors.StatsPoint) -> dict:
    """The bucket's cost: its usage rows priced at its start; unpriced_runs counts the runs
    of the usage rows no price covers (capped at the bucket's runs)."""
    cost = table.cost_at(point.usage, point.start)
    unpriced = sum(u.runs for u in point.usage if table.price_for(u.model, point.start) is None)
    amounts = cost.amounts or ((costs.DEFAULT_CURRENCY, Decimal(0)),)
    body = {
        "amount": costs.decimal_text(amounts[0][1]),
        "currency": amounts[0][0],
        "unpriced_runs": min(unpriced, point.total_runs),
    }
    if len(amounts) > 1:
        body["amounts"] = [{"amount": costs.decimal_text(a), "currency": c} for c, a in amounts]
    return body


def stats_json(series: selectors.StatsSeries, table: costs.PriceTable) -> dict:
    return {
        "bucket": series.query.bucket,
        "since": _iso(series.query.since),
        "until": _iso(series.query.until),
        "series": [
            {
                "start": _iso(point.start),
                "runs": point.runs,
                "runtime_p50": point.runtime_p50,
                "runtime_p95": point.runtime_p95,
                "input_tokens": point.input_tokens,
                "output_tokens": point.output_tokens,
                "thinking_tokens": point.thinking_tokens,
                "cost": cost_json(table, point),
            }
            for point in series.points
        ],
    }


def _parameters() -> list[OpenApiParameter]:
    statuses = [value for value, _label in STATUS_CHOICES if value and value != STALE]
    name = {"type": "string", "maxLength": contract.NAME_MAX_LENGTH}
    return [
        OpenApiParameter(
            "window",
            OpenApiTypes.STR,
            enum=list(STATS_WINDOWS),
            description="the last 24 hours, 7 or 30 days (default 7d); not with since/until",
        ),
        OpenApiParameter(
            "since",
            OpenApiTypes.STR,
            description="window start (ISO 8601, no offset means UTC; a date; -24h, -7d), "
            "rounded down to the bucket",
        ),
        OpenApiParameter(
            "until",
            OpenApiTypes.STR,
            description="window end, exclusive (ISO 8601; a date: that whole day included; "
            "default now), rounded up to the bucket",
        ),
        OpenApiParameter(
            "bucket",
            OpenApiTypes.STR,
            enum=["hour", "day"],
            description="default: hour for a window of two days or less, else day; at most "
            f"{STATS_MAX_BUCKETS} buckets (more is a 400 naming bucket)",
        ),
        OpenApiParameter("skill", name, description="exact skill id"),
        OpenApiParameter(
            "caller", name, description="exact caller id (read from the runs: slower)"
        ),
        OpenApiParameter(
            "channel", name, description="exact channel id (read from the runs: slower)"
        ),
        OpenApiParameter(
            "status",
            OpenApiTypes.STR,
            enum=statuses,
            description="a status, several separated by commas, or failed (read from the "
            "runs: slower)",
        ),
        OpenApiParameter(
            "include_nested",
            OpenApiTypes.BOOL,
            description="1: nested runs too (default: top-level runs only)",
        ),
    ]


class StatsView(ApiView):
    """Runs by status, runtime percentiles, tokens and cost per hour or day of a window."""

    @extend_schema(
        operation_id="stats",
        summary="Runs, runtimes, tokens and cost over time",
        description="The numbers of /stats/: every hour or day of the window with its runs "
        "by status, runtime p50/p95, token sums and cost. Read from buckets kept exact as "
        "runs are written (the caller, channel and status filters are aggregated from the "
        "runs instead). An invalid, unknown or repeated parameter is a 400 naming it.",
        parameters=_parameters(),
        responses={200: StatsSerializer, **READ_ERRORS},
    )
    def get(self, request):
        parameters = StatsParameters(request.GET)
        if not parameters.is_valid():
            raise exceptions.ValidationError(parameters.error_messages)
        # The answer has no per-skill numbers: none are read.
        series = selectors.stats_series(parameters.query(), per_skill=False)
        return Response(stats_json(series, pricing.price_table()))
