"""POST /v1/traces: access, limits, errors in the request's encoding, partial success, and
hostile input (stored or refused with a message, never a 500, never half a trace)."""

from __future__ import annotations

import gzip
import json

import pytest
from django.db import connection
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from runs.models import OtlpTrace, SkillRun, SkillRunLog
from tests.otlp_support import T0, as_json, post, request_of, run_id, span, token_for

pytestmark = pytest.mark.django_db

PROTOBUF = "application/x-protobuf"


def one_run(trace=1):
    return request_of(
        [span(trace, 1, None, "invoke_agent a", 0, 10, {"gen_ai.operation.name": "invoke_agent"})]
    )


def nothing_stored():
    return not (SkillRun.objects.exists() or OtlpTrace.objects.exists())


def raw(client, body, content_type=PROTOBUF, key=None, **headers):
    if key:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client.generic("POST", "/v1/traces", body, content_type=content_type, **headers)


# --- access --------------------------------------------------------------------------------


def test_anonymous_and_wrong_tokens_get_401_in_protobuf(client):
    response = raw(client, one_run().SerializeToString())
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert RpcStatus.FromString(response.content).code == 16  # UNAUTHENTICATED
    assert post(client, "0" * 40, one_run()).status_code == 401
    assert nothing_stored()


def test_a_user_without_the_recording_permissions_gets_403(client, django_user_model):
    key = token_for(django_user_model, "reader", ["view_skillrun", "add_skillrun"])
    response = post(client, key, one_run(), "json")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert "permission" in json.loads(response.content)["message"]
    assert nothing_stored()


def test_token_scheme_works_and_a_session_alone_does_not(client, django_user_model):
    key = token_for(django_user_model)
    assert post(client, key, one_run(), scheme="Token").status_code == 200
    user = django_user_model.objects.get(username="exporter")
    client.force_login(user)
    assert raw(client, one_run(2).SerializeToString()).status_code == 401  # no session auth


def test_get_is_405(client, django_user_model):
    key = token_for(django_user_model)
    assert client.get("/v1/traces", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 405


# --- limits and bad bodies -----------------------------------------------------------------


def test_other_content_types_get_415(client, django_user_model):
    key = token_for(django_user_model)
    response = raw(client, b"x", "text/plain", key)
    assert response.status_code == 415
    assert "Content-Type" in json.loads(response.content)["message"]


@pytest.mark.parametrize(
    "body,content_type,words",
    [
        (b"\xff\xff\xff\xff garbage", PROTOBUF, "protobuf body does not parse"),
        (b"{not json", "application/json", "JSON body does not parse"),
        (b"[1, 2]", "application/json", "must be an object"),
        (b'{"resourceSpans": 5}', "application/json", "not an ExportTraceServiceRequest"),
        (b"[" * 100_000, "application/json", "JSON body does not parse"),
    ],
)
def test_unparseable_bodies_get_400(client, django_user_model, body, content_type, words):
    key = token_for(django_user_model)
    response = raw(client, body, content_type, key)
    assert response.status_code == 400
    if content_type == PROTOBUF:
        assert words in RpcStatus.FromString(response.content).message
    else:
        assert words in json.loads(response.content)["message"]


def test_a_gzip_bomb_is_refused_with_413_without_inflating_it(client, django_user_model):
    key = token_for(django_user_model)
    bomb = gzip.compress(b"\0" * (64 * 2**20))  # 64 MiB of zeros, ~64 KiB compressed
    assert len(bomb) < 2**20
    response = raw(client, bomb, PROTOBUF, key, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    assert "decompressed body is over" in RpcStatus.FromString(response.content).message


def test_a_body_over_20_mib_gets_413(client, django_user_model):
    key = token_for(django_user_model)
    response = raw(client, b"\0" * (20 * 2**20 + 1), PROTOBUF, key)
    assert response.status_code == 413


def test_bad_gzip_and_unknown_encodings(client, django_user_model):
    key = token_for(django_user_model)
    body = one_run().SerializeToString()
    assert raw(client, body, PROTOBUF, key, HTTP_CONTENT_ENCODING="gzip").status_code == 400
    truncated = gzip.compress(body)[:-6]
    assert raw(client, truncated, PROTOBUF, key, HTTP_CONTENT_ENCODING="gzip").status_code == 400
    assert raw(client, body, PROTOBUF, key, HTTP_CONTENT_ENCODING="br").status_code == 415
    assert nothing_stored()


# --- partial success and hostile input ---------------------------------------------------


def test_bad_spans_are_refused_and_the_rest_stored(client, django_user_model):
    key = token_for(django_user_model)
    good = span(3, 1, None, "invoke_agent a", 0, 10, {"gen_ai.operation.name": "invoke_agent"})
    short_trace = span(3, 2, 1, "x", 0, 10)
    short_trace.trace_id = b"\x01\x02\x03"
    zero_span = span(3, 3, 1, "x", 0, 10)
    zero_span.span_id = bytes(8)
    bad_parent = span(3, 4, 1, "x", 0, 10)
    bad_parent.parent_span_id = b"\x01"
    no_start = span(3, 5, 1, "x", 0, 10)
    no_start.start_time_unix_nano = 0
    response = post(client, key, request_of([good, short_trace, zero_span, bad_parent, no_start]))
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 4
    for words in ("trace_id must be 16 bytes", "span_id must be 8 bytes", "parent_span_id",
                  "start_time_unix_nano is 0"):  # fmt: skip
        assert words in partial.error_message
    assert SkillRun.objects.get().id == run_id(3, 1)


def test_partial_success_in_json(client, django_user_model):
    key = token_for(django_user_model)
    document = json.loads(as_json(one_run(4)))
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "zz-not-hex"
    response = raw(client, json.dumps(document).encode(), "application/json", key)
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["partialSuccess"]["rejectedSpans"] == "1"
    assert "span_id must be 8 bytes" in body["partialSuccess"]["errorMessage"]


def test_every_value_type_and_hostile_text_is_stored_clean(client, django_user_model):
    key = token_for(django_user_model)
    values = {
        "s": "NUL\0here",
        "i": -(2**63),
        "big": 2**63 - 1,
        "d": 1.5,
        "nan": float("nan"),
        "inf": float("-inf"),
        "b": True,
        "bytes": b"\x00\xff",
        "array": [1, "two", [3.0, False], {"k": b"\x01"}],
        "kv": {"nested": {"deeper": ["x"]}, "": "empty key"},
        "gen_ai.input.messages": '[{"role": "user", "content": "\\u0000 and \\ud800"}]',
    }
    spans = [
        span(5, 1, None, "", 0, 10, {"gen_ai.operation.name": "invoke_agent"}),
        span(5, 2, 1, "chat\0", 1, 5, {"gen_ai.operation.name": "chat", **values}),
        span(5, 3, 1, "", 6, 2, {"gen_ai.usage.input_tokens": "lots"}),  # ends before start
        span(5, 4, 1, "future", 7, 8),
    ]
    spans[3].start_time_unix_nano = 2**64 - 1  # year 2554
    spans[3].end_time_unix_nano = 2**64 - 1
    response = post(client, key, request_of(spans))
    assert response.status_code == 200
    run = SkillRun.objects.get()
    assert run.skill_id == "(unnamed span)"
    step = SkillRunLog.objects.get(run_id=run.id, event_type="step").payload
    assert step["input_messages"] == [{"role": "user", "content": "\ufffd and \ufffd"}]
    other = SkillRunLog.objects.filter(run_id=run.id, event_type="span").order_by("sequence")
    assert other[0].payload["duration_seconds"] == 0  # an end before the start is its start
    assert other[1].created_at.year == 2554
    # JSON as well: escapes spelling lone surrogates or NUL are replaced, not refused.
    document = json.loads(as_json(request_of([span(6, 1, None, "x", 0, 1, {"k": "v"})])))
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = "a\ud800b\x00"
    body = json.dumps(document).encode()  # ensure_ascii: "\ud800" and "\u0000" escapes
    assert raw(client, body, "application/json", key).status_code == 200
    assert SkillRun.objects.get(pk=run_id(6, 1)).skill_id == "a\ufffdb\ufffd"


def test_a_parent_cycle_is_stored_without_hanging(client, django_user_model):
    key = token_for(django_user_model)
    spans = [
        span(7, 1, 2, "a", 0, 10, {"gen_ai.operation.name": "invoke_agent"}),
        span(7, 2, 1, "b", 1, 9, {"gen_ai.operation.name": "chat"}),
    ]
    assert post(client, key, request_of(spans)).status_code == 200
    assert SkillRun.objects.filter(pk=run_id(7, 1)).exists()


def test_ten_thousand_spans_in_one_request(client, django_user_model):
    key = token_for(django_user_model)
    spans = []
    for trace in range(1, 101):
        spans.append(
            span(trace, 1, None, "root", 0, 1000, {"gen_ai.operation.name": "invoke_agent"})
        )
        spans.extend(
            span(trace, n, 1, "tool", n, n + 1, {"gen_ai.operation.name": "execute_tool"})
            for n in range(2, 101)
        )
    assert len(spans) == 10_000
    response = post(client, key, request_of(spans), gz=True)
    assert response.status_code == 200
    assert (
        ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 0
    )
    assert SkillRun.objects.count() == 100
    assert SkillRunLog.objects.count() == 100 * 99 * 2
    assert set(SkillRun.objects.values_list("tool_calls_count", flat=True)) == {99}


def test_an_id_taken_by_another_writer_refuses_that_trace_only(client, django_user_model):
    """The trace whose run id is taken is refused whole (no half-written trace); the other
    trace of the request is stored."""
    key = token_for(django_user_model)
    SkillRun.objects.create(id=run_id(8, 1), skill_id="api", started_at="2026-01-01T00:00Z")
    spans = [
        span(8, 1, None, "a", 0, 10, {"gen_ai.operation.name": "invoke_agent"}),
        span(8, 2, 1, "chat", 1, 5, {"gen_ai.operation.name": "chat"}),
        span(9, 1, None, "b", 0, 10, {"gen_ai.operation.name": "invoke_agent"}),
    ]
    response = post(client, key, request_of(spans))
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 2 and f"{8:032x}" in partial.error_message
    assert SkillRun.objects.get(pk=run_id(8, 1)).skill_id == "api"  # untouched
    assert not SkillRunLog.objects.filter(run_id=run_id(8, 1)).exists()
    assert not OtlpTrace.objects.filter(pk=f"{8:032x}").exists()
    assert SkillRun.objects.filter(pk=run_id(9, 1)).exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs a second session's lock and a timeout"
)
def test_a_database_that_does_not_answer_gives_503_with_retry_after(
    client, django_user_model, django_db_blocker
):
    """Another session holds the trace's lock; the request's statement times out (as a
    down or overloaded database does) and the exporter is told to retry."""
    import psycopg

    key = token_for(django_user_model)
    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=False,
    )
    try:
        trace_key = int(f"{10:032x}"[:16], 16) - 2**63
        other.execute("SELECT pg_advisory_lock(%s)", [trace_key])
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 300")
        response = post(client, key, one_run(10))
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert "unavailable" in RpcStatus.FromString(response.content).message
    finally:
        other.close()
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
    assert post(client, key, one_run(10)).status_code == 200  # the retry goes through


def test_times_are_exact_to_the_microsecond(client, django_user_model):
    key = token_for(django_user_model)
    s = span(11, 1, None, "a", 0, 10)
    s.start_time_unix_nano = T0 + 123_456_789
    assert post(client, key, request_of([s])).status_code == 200
    assert SkillRun.objects.get().started_at.microsecond == 123_456
