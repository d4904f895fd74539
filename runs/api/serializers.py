"""Request and response bodies of the JSON API (runs/api/views.py), field by field.

Inputs are checked strictly: a number is a JSON number and a string a JSON string (no
"12" for 12), booleans are true/false, date-times carry a UTC offset, JSON values have a
bounded depth, and unknown keys are refused (a misspelt field silently dropped would store
the wrong run). Text is not cleaned here: DjangoStorage applies the contract's cleaning
(NUL and surrogates become U+FFFD), so these fields accept what the contract accepts.
Field names are the contract's (runs/contract.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from django.core.validators import ProhibitNullCharactersValidator
from django.utils import timezone
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from .. import contract, jsontext

INT64 = (-(2**63), 2**63 - 1)
# How far ahead of the server clock a run may say it started.
START_AHEAD_LIMIT = timedelta(days=1)
MAX_JSON_DEPTH = jsontext.MAX_JSON_DEPTH
MAX_BATCH_EVENTS = 10_000


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, microseconds kept."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- fields ------------------------------------------------------------------------------


class TextField(serializers.CharField):
    """A JSON string, stored as the contract cleans it; numbers are not strings here."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)
        # NUL and surrogates are replaced by the contract's cleaning, not refused.
        self.validators = [
            v
            for v in self.validators
            if not isinstance(
                v, ProhibitNullCharactersValidator | ProhibitSurrogateCharactersValidator
            )
        ]

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer (not a string, float or boolean) within the column's range."""

    default_error_messages = {"invalid": "must be an integer"}

    def __init__(self, bits: int | None = 64, **kwargs):
        if bits == 64:
            kwargs.setdefault("min_value", INT64[0])
            kwargs.setdefault("max_value", INT64[1])
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data


class FiniteFloatField(serializers.FloatField):
    default_error_messages = {"invalid": "must be a finite number"}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        try:
            value = float(data)
        except OverflowError:
            self.fail("invalid")
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class JSONBooleanField(serializers.BooleanField):
    """A JSON true or false in a request body: no "1", "yes" or 0 (unlike query flags)."""

    default_error_messages = {"invalid": "must be true or false"}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with a UTC offset (Z or +hh:mm); naive times are refused. Read in UTC."""

    default_error_messages = {
        "invalid": "must be an ISO 8601 date-time such as 2026-11-26T09:30:00Z",
        "naive": "must include a UTC offset (Z or +hh:mm)",
        "range": "is outside the years 1 to 9999 in UTC",
    }

    def to_internal_value(self, value):
        if not isinstance(value, str) or len(value) > 64:
            self.fail("invalid")
        text = value[:-1] + "Z" if value.endswith("z") else value
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail("invalid")
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            self.fail("naive")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            self.fail("range")

    def to_representation(self, value):
        return iso(value)


@extend_schema_field({"type": "object", "additionalProperties": {}, "description": "a JSON object"})
class JSONObjectField(serializers.Field):
    """A JSON object of bounded depth; null means {} on input."""

    default_error_messages = {
        "invalid": "must be a JSON object",
        "depth": f"is nested deeper than {MAX_JSON_DEPTH} levels",
    }

    def to_internal_value(self, data):
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail("invalid")
        if jsontext.depth_exceeds(data, MAX_JSON_DEPTH):
            self.fail("depth")
        return data

    def to_representation(self, value):
        return value


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {},
        "nullable": True,
        "description": "a JSON object; null when the stored value cannot be served "
        "(written by another program: nested too deeply, or not an object)",
    }
)
class StoredJSONField(JSONObjectField):
    pass


class StrictSerializer(serializers.Serializer):
    """Refuses unknown keys and anything but a JSON object."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = [key for key in data if key not in self.fields]
            if unknown:
                raise serializers.ValidationError(
                    {contract.clean_text(key)[:100]: ["is not a known field"] for key in unknown}
                )
        return super().to_internal_value(data)


def text(max_length: int | None = None, **kwargs) -> TextField:
    kwargs.setdefault("required", False)
    if not kwargs["required"]:
        kwargs.setdefault("default", "")
    return TextField(max_length=max_length, **kwargs)


# --- runs -------------------------------------------------------------------------------


class RunCoreSerializer(serializers.Serializer):
    """The summary columns of a run (managers.SUMMARY_FIELDS): no inputs, output, error."""

    id = serializers.CharField()
    skill_id = serializers.CharField()
    caller_id = serializers.CharField()
    channel_id = serializers.CharField()
    started_at = AwareDateTimeField()
    finished_at = AwareDateTimeField(allow_null=True)
    status = serializers.CharField()
    tool_calls_count = serializers.IntegerField()
    runtime_seconds = serializers.FloatField()
    parent_run_id = serializers.CharField(help_text='"" for a top-level run')
    total_input_tokens = serializers.IntegerField()
    total_output_tokens = serializers.IntegerField()
    total_thinking_tokens = serializers.IntegerField()


class AmountSerializer(serializers.Serializer):
    amount = serializers.CharField(help_text="an exact decimal number as a string")
    currency = serializers.CharField(help_text="ISO 4217 code, e.g. USD")


class CostSerializer(serializers.Serializer):
    """What a run (or a subtree) cost: its steps' tokens priced from the model price table
    (the price valid when the run started; runs.costs), computed when read."""

    amount = serializers.CharField(
        help_text='an exact decimal number as a string ("0.00861"), never a float; "0" '
        "when nothing was priced"
    )
    currency = serializers.CharField(help_text="of amount; USD when nothing was priced")
    unpriced = serializers.BooleanField(
        help_text="partly unpriced: some steps name no model, a model without a price, or "
        "one with no price valid yet; amount leaves them out"
    )
    unpriced_steps = serializers.IntegerField()
    unpriced_models = serializers.ListField(
        child=serializers.CharField(), help_text='"" for steps that name no model'
    )
    amounts = AmountSerializer(
        many=True, required=False, help_text="every currency, only when there are several"
    )


@extend_schema_field(CostSerializer(allow_null=True))
class CostField(serializers.Field):
    """The ``cost`` the view set on the row (runs.pricing.with_costs), or null."""

    def __init__(self, attribute: str = "cost", **kwargs):
        self.attribute = attribute
        kwargs.setdefault("source", "*")
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value):
        found = getattr(value, self.attribute, None)
        return None if found is None else found.as_json()


class RunSummarySerializer(RunCoreSerializer):
    """A run as lists show it: the summary columns and the start of output and error."""

    output_preview = serializers.CharField(help_text="the first 160 characters of output")
    error_preview = serializers.CharField(help_text="the first 160 characters of error")
    has_children = serializers.BooleanField()
    failed_tools = serializers.IntegerField(
        help_text="failed tool calls among its events (tool_result with is_error: true)"
    )
    failed_descendants = serializers.IntegerField(
        help_text="runs below it in its call tree with a failed status"
    )
    cost = CostField()


class RunSerializer(serializers.Serializer):
    """Every field of a run (contract.SkillRun)."""

    id = serializers.CharField()
    skill_id = serializers.CharField()
    caller_id = serializers.CharField()
    channel_id = serializers.CharField()
    inputs = StoredJSONField()
    started_at = AwareDateTimeField()
    finished_at = AwareDateTimeField(allow_null=True)
    status = serializers.CharField()
    output = serializers.CharField()
    error = serializers.CharField()
    tool_calls_count = serializers.IntegerField()
    runtime_seconds = serializers.FloatField()
    parent_run_id = serializers.CharField()
    total_input_tokens = serializers.IntegerField()
    total_output_tokens = serializers.IntegerField()
    total_thinking_tokens = serializers.IntegerField()


class PricedRunSerializer(RunSerializer):
    """Every field of a run and its cost (reads; writes answer RunSerializer)."""

    cost = CostField()


class RunStartSerializer(StrictSerializer):
    """POST /api/runs/: start_run. The run is stored as running, unfinished."""

    id = text(contract.ID_MAX_LENGTH, required=True, allow_blank=False)
    skill_id = text(contract.NAME_MAX_LENGTH)
    caller_id = text(contract.NAME_MAX_LENGTH)
    channel_id = text(contract.NAME_MAX_LENGTH)
    inputs = JSONObjectField(required=False, default=dict, allow_null=True)
    started_at = AwareDateTimeField(required=False, allow_null=True, default=None)
    output = text()
    error = text()
    tool_calls_count = StrictIntegerField(required=False, default=0)
    runtime_seconds = FiniteFloatField(required=False, default=0.0)
    parent_run_id = text(contract.ID_MAX_LENGTH, help_text='"" (the default) for a top-level run')
    total_input_tokens = StrictIntegerField(required=False, default=0)
    total_output_tokens = StrictIntegerField(required=False, default=0)
    total_thinking_tokens = StrictIntegerField(required=False, default=0)

    def validate_started_at(self, value):
        # A writer's clock may drift a little; a day ahead is a wrong clock or a forged row
        # that would sit on top of every newest-first list for a day.
        if value is not None and value > timezone.now() + START_AHEAD_LIMIT:
            raise serializers.ValidationError("is more than a day ahead of the server clock")
        return value

    def to_contract(self) -> contract.SkillRun:
        return contract.SkillRun(**self.validated_data)


class RunStatsSerializer(StrictSerializer):
    """POST /api/runs/<id>/finish/: finish_run (contract.RunStats). Last write wins."""

    status = text(contract.STATUS_MAX_LENGTH, help_text="ok, error, timeout, ... (not running)")
    output = text()
    error = text()
    # Counts and durations of a finished run: never negative.
    tool_calls = StrictIntegerField(required=False, default=0, min_value=0)
    runtime_seconds = FiniteFloatField(required=False, default=0.0, min_value=0.0)
    input_tokens = StrictIntegerField(required=False, default=0, min_value=0)
    output_tokens = StrictIntegerField(required=False, default=0, min_value=0)
    thinking_tokens = StrictIntegerField(required=False, default=0, min_value=0)

    def validate_status(self, value):
        if value == contract.STATUS_RUNNING:
            raise serializers.ValidationError("a finished run cannot have status running")
        return value

    def to_contract(self) -> contract.RunStats:
        return contract.RunStats(**self.validated_data)


# --- events -----------------------------------------------------------------------------


class LogSerializer(serializers.Serializer):
    run_id = serializers.CharField()
    sequence = serializers.IntegerField()
    event_type = serializers.CharField()
    payload = StoredJSONField()
    created_at = AwareDateTimeField()


class LogEventSerializer(StrictSerializer):
    """One event of a run (the run comes from the URL)."""

    # From 1: the dashboard and the API page events after a sequence starting at 0, so an
    # event at 0 or below was stored and never shown.
    sequence = StrictIntegerField(
        min_value=1, help_text="from 1, unique within the run; the order of events"
    )
    event_type = text(contract.EVENT_TYPE_MAX_LENGTH, help_text="step, tool_call, ...")
    payload = JSONObjectField(required=False, default=dict, allow_null=True)
    created_at = AwareDateTimeField(
        required=False, allow_null=True, default=None, help_text="defaults to now"
    )

    def to_internal_value(self, data):
        # Batches hold thousands of events: a valid one takes this direct path (about a
        # tenth of DRF's per-field cost); anything else gets the fields' own checks and
        # messages below.
        fast = _valid_event(data)
        if fast is not None:
            return fast
        return super().to_internal_value(data)


_EVENT_KEYS = frozenset(("sequence", "event_type", "payload", "created_at"))
_DATETIME = AwareDateTimeField()


def _valid_event(data) -> dict | None:
    """The validated event when ``data`` is plainly valid, else None."""
    if type(data) is not dict or not data.keys() <= _EVENT_KEYS:
        return None
    sequence = data.get("sequence")
    if type(sequence) is not int or not 1 <= sequence <= INT64[1]:
        return None
    event_type = data.get("event_type", "")
    if type(event_type) is not str or len(event_type) > contract.EVENT_TYPE_MAX_LENGTH:
        return None
    payload = data.get("payload", {})
    # None stays None, as the field leaves it: the contract stores it as {}.
    if payload is not None and (
        type(payload) is not dict or jsontext.depth_exceeds(payload, MAX_JSON_DEPTH)
    ):
        return None
    created_at = data.get("created_at")
    if created_at is not None:
        if type(created_at) is not str:
            return None
        try:
            created_at = _DATETIME.to_internal_value(created_at)
        except serializers.ValidationError:
            return None
    return {
        "sequence": sequence,
        "event_type": event_type,
        "payload": payload,
        "created_at": created_at,
    }


class LogBatchSerializer(StrictSerializer):
    """Several events stored in one transaction: all of them or none."""

    events = LogEventSerializer(many=True, allow_empty=False, max_length=MAX_BATCH_EVENTS)


def logs_to_contract(run_id: str, events: list[dict]) -> list[contract.SkillRunLog]:
    return [contract.SkillRunLog(run_id=run_id, **event) for event in events]


class AppendedSerializer(serializers.Serializer):
    run_id = serializers.CharField()
    stored = serializers.IntegerField(help_text="how many events were stored")


# --- pages ------------------------------------------------------------------------------


class RunSummaryPageSerializer(serializers.Serializer):
    results = RunSummarySerializer(many=True)
    next_cursor = serializers.CharField(
        allow_null=True, help_text="pass as `cursor` for the next page; null on the last page"
    )
    next = serializers.URLField(allow_null=True, help_text="the next page's URL, or null")


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="RunOrSummary",
        serializers=[RunSummarySerializer, PricedRunSerializer],
        resource_type_field_name=None,
    )
)
class RunOrSummaryField(serializers.Field):
    """Documents results that are summaries, or whole runs with ?full=1."""


class RunsOrSummariesPageSerializer(serializers.Serializer):
    results = serializers.ListField(
        child=RunOrSummaryField(), help_text="summaries; whole runs with full=1"
    )
    next_cursor = serializers.CharField(allow_null=True)
    next = serializers.URLField(allow_null=True)


class LogPageSerializer(serializers.Serializer):
    results = LogSerializer(many=True)
    next_after = serializers.IntegerField(
        allow_null=True, help_text="pass as `after` for the next page; null on the last page"
    )
    next = serializers.URLField(allow_null=True)


class TreeNodeSerializer(RunCoreSerializer):
    depth = serializers.IntegerField(help_text="0 for the root")
    cost = CostField(help_text="the run's own cost")
    subtree_cost = CostField(
        "subtree_cost", help_text="the run's and every run's below it (in this answer)"
    )


class TreeSerializer(serializers.Serializer):
    run_id = serializers.CharField(help_text="the run asked for")
    root_id = serializers.CharField()
    root_is_orphan = serializers.BooleanField(
        help_text="the root names a parent that is no longer stored"
    )
    size = serializers.IntegerField(help_text="number of nodes returned")
    capped = serializers.BooleanField(help_text="the tree is bigger than what is returned")
    nodes = TreeNodeSerializer(many=True, help_text="depth-first, parents before children")


@extend_schema_field(
    {"type": "object", "additionalProperties": {"type": "string", "format": "date-time"}}
)
class LastRunMapField(serializers.Field):
    def to_representation(self, value):
        return {skill: iso(started) for skill, started in value.items()}


class LastRunSerializer(serializers.Serializer):
    last_run = LastRunMapField(
        help_text="skill -> newest started_at; skills without a matching run are absent"
    )


# --- the contract over HTTP (POST /api/contract/<method>/) -----------------------------


class RunFilterSerializer(StrictSerializer):
    """contract.RunFilter. Unlike the list's query string, top_level_only defaults to false."""

    status = text(contract.STATUS_MAX_LENGTH)
    skill_id = text()
    caller_id = text()
    channel_id = text()
    top_level_only = JSONBooleanField(required=False, default=False)
    include_dry_run = JSONBooleanField(required=False, default=False)
    since = AwareDateTimeField(required=False, allow_null=True, default=None)
    until = AwareDateTimeField(required=False, allow_null=True, default=None)


def limit_field(**kwargs):
    # Any integer: the contract clamps limits (<= 0 or > 500 become 50) and offsets.
    return StrictIntegerField(bits=None, required=False, **kwargs)


class EmptyRequest(StrictSerializer):
    """No arguments: {}."""


class GetRunRequest(StrictSerializer):
    id = text(required=True)


class RunsBySkillRequest(StrictSerializer):
    skill_id = text(required=True)
    # Where to go on when an answer was cut at its byte budget (its `next_offset`).
    offset = limit_field(default=0)
    limit = limit_field(default=contract.DEFAULT_LIMIT)


class RunsBySkillPageRequest(StrictSerializer):
    skill_id = text(required=True)
    offset = limit_field(default=0)
    limit = limit_field(default=contract.DEFAULT_LIMIT)
    include_dry_run = JSONBooleanField(required=False, default=False)


class CountBySkillRequest(StrictSerializer):
    skill_id = text(required=True)
    include_dry_run = JSONBooleanField(required=False, default=False)


class RunsByCallerRequest(StrictSerializer):
    caller_id = text(required=True)
    # Where to go on when an answer was cut at its byte budget (its `next_offset`).
    offset = limit_field(default=0)
    limit = limit_field(default=contract.DEFAULT_LIMIT)


class RunsFilteredRequest(StrictSerializer):
    filter = RunFilterSerializer(required=False)
    offset = limit_field(default=0)
    limit = limit_field(default=contract.DEFAULT_LIMIT)


class CountFilteredRequest(StrictSerializer):
    filter = RunFilterSerializer(required=False)


class FinishedPosition(StrictSerializer):
    finished_at = AwareDateTimeField()
    id = text(required=True)


class FinishedBeforeRequest(StrictSerializer):
    cutoff = AwareDateTimeField()
    limit = StrictIntegerField(
        bits=None, help_text="a plain cap: <= 0 returns no runs; not clamped to 500"
    )
    after = FinishedPosition(
        required=False,
        allow_null=True,
        default=None,
        help_text="continue after this run (the previous response's `next`)",
    )


class PurgeRequest(StrictSerializer):
    t = AwareDateTimeField(help_text="runs started before t are deleted; not in the future")

    def validate_t(self, value):
        # As `manage.py purge_runs` refuses it: a future cutoff deletes runs still going on.
        if value > timezone.now():
            raise serializers.ValidationError("is in the future")
        return value


class RunsResponse(serializers.Serializer):
    runs = RunSerializer(many=True)


class FinishedRunsResponse(serializers.Serializer):
    runs = RunSerializer(many=True)
    next = FinishedPosition(
        allow_null=True,
        help_text="where the next call continues (pass as `after`), null when this call "
        "returned every run asked for or there are no more",
    )


class CountResponse(serializers.Serializer):
    count = serializers.IntegerField()


class PurgeResponse(serializers.Serializer):
    deleted = serializers.IntegerField(help_text="runs deleted (their events went with them)")


class InitializeResponse(serializers.Serializer):
    ok = serializers.BooleanField()


# --- errors -------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
