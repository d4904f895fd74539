"""Hand-built OTLP spans and requests, and what the OTLP tests read back from the tables."""

from __future__ import annotations

import gzip
import io
import json

from django.contrib.auth.models import Permission
from django.core.management import call_command
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from runs.models import SkillRun, SkillRunLog

RECORD = ["add_skillrun", "change_skillrun", "add_skillrunlog", "view_skillrun"]
T0 = 1_780_000_000 * 10**9  # 2026-05-28
MS = 10**6


def any_value(value) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list | tuple):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(
            KeyValue(key=k, value=any_value(v)) for k, v in value.items()
        )
        return out
    return AnyValue(string_value=str(value))


def span(
    trace: int,
    sid: int,
    parent: int | None,
    name: str,
    start_ms: int,
    end_ms: int,
    attrs: dict | None = None,
    *,
    error: str | None = None,
    events: list | None = None,
) -> Span:
    """A span of trace number ``trace`` with span number ``sid`` (times in ms from T0)."""
    s = Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=sid.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=name,
        start_time_unix_nano=T0 + start_ms * MS,
        end_time_unix_nano=T0 + end_ms * MS,
    )
    for key, value in (attrs or {}).items():
        s.attributes.append(KeyValue(key=key, value=any_value(value)))
    if error is not None:
        s.status.code = Status.STATUS_CODE_ERROR
        s.status.message = error
    for event_name, at_ms, event_attrs in events or []:
        event = s.events.add(name=event_name, time_unix_nano=T0 + at_ms * MS)
        for key, value in event_attrs.items():
            event.attributes.append(KeyValue(key=key, value=any_value(value)))
    return s


def request_of(spans) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    scope.spans.extend(spans)
    return request


def as_json(request: ExportTraceServiceRequest) -> bytes:
    """The OTLP JSON encoding: protobuf's JSON mapping with hex ids."""
    document = json_format.MessageToDict(request)
    for rs in document.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = __import__("base64").b64decode(s[key]).hex()
    return json.dumps(document).encode()


def run_id(trace: int, sid: int) -> str:
    return f"otlp-{trace:032x}-{sid:016x}"


def token_for(django_user_model, name="exporter", codenames=RECORD) -> str:
    user = django_user_model.objects.create_user(name, password="pw-123456")
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="runs", codename__in=codenames)
    )
    # Through the command, whatever model stores the tokens.
    out = io.StringIO()
    call_command("create_api_token", name, stdout=out)
    return out.getvalue().strip()


def post(client, key, request, kind="protobuf", *, gz=False, scheme="Bearer"):
    if kind == "protobuf":
        body, content_type = request.SerializeToString(), "application/x-protobuf"
    else:
        body, content_type = as_json(request), "application/json"
    headers = {"HTTP_AUTHORIZATION": f"{scheme} {key}"}
    if gz:
        body = gzip.compress(body)
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    return client.generic("POST", "/v1/traces", body, content_type=content_type, **headers)


def snapshot() -> tuple[list, list]:
    """Every run and event as plain tuples, in key order: what 'the same result' means."""
    run_fields = [f.attname for f in SkillRun._meta.fields]
    runs = [tuple(r) for r in SkillRun.objects.order_by("id").values_list(*run_fields)]
    logs = [
        tuple(row)
        for row in SkillRunLog.objects.order_by("run_id", "sequence").values_list(
            "run_id", "sequence", "event_type", "payload", "created_at"
        )
    ]
    return runs, logs
