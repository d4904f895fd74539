"""The GenAI mapping, from hand-built ExportTraceServiceRequests (protobuf and JSON)."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from runs.models import OtlpTrace, SkillRun, SkillRunLog
from tests.otlp_support import post, request_of, run_id, snapshot, span, token_for

pytestmark = pytest.mark.django_db

MESSAGES_IN = '[{"role":"user","parts":[{"type":"text","content":"find the bug"}]}]'
FINAL = '[{"role":"assistant","parts":[{"type":"text","content":"the final answer"}]}]'


def genai_trace(trace=1):
    """A workflow wrapper, an orchestrator agent with a tool that runs a sub-agent whose
    own tool fails (no call id), model calls, a plain span and aggregated usage on the
    agent span (never summed)."""
    return [
        span(
            trace,
            1,
            None,
            "workflow",
            0,
            1000,
            {"enduser.id": "alice", "gen_ai.conversation.id": "conv-1"},
        ),  # fmt: skip
        span(
            trace,
            2,
            1,
            "invoke_agent orchestrator",
            10,
            990,
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "orchestrator",
                "gen_ai.usage.input_tokens": 999,
                "gen_ai.usage.output_tokens": 999,
            },
        ),  # fmt: skip
        span(
            trace,
            3,
            2,
            "chat gpt",
            20,
            100,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-x",
                "gen_ai.provider.name": "openai",
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 20,
                "gen_ai.usage.reasoning.output_tokens": 5,
                "gen_ai.input.messages": MESSAGES_IN,
            },
        ),  # fmt: skip
        span(
            trace,
            4,
            2,
            "execute_tool search",
            110,
            300,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "search",
                "gen_ai.tool.call.id": "c1",
                "gen_ai.tool.call.arguments": '{"q": "bug"}',
                "gen_ai.tool.call.result": "3 hits",
            },
        ),  # fmt: skip
        span(
            trace,
            5,
            4,
            "invoke_agent researcher",
            120,
            290,
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "researcher",
                "gen_ai.conversation.id": "conv-2",
            },
        ),  # fmt: skip
        span(
            trace,
            6,
            5,
            "chat",
            130,
            200,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "anthropic",
                "gen_ai.usage.prompt_tokens": 50,
                "gen_ai.usage.completion_tokens": 10,
            },
        ),  # fmt: skip
        span(
            trace,
            7,
            5,
            "execute_tool fetch",
            210,
            280,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "fetch",
                "gen_ai.tool.call.id": "null",
            },
            error="boom",
            events=[
                (
                    "exception",
                    270,
                    {
                        "exception.type": "IOError",
                        "exception.message": "unreachable",
                        "exception.stacktrace": "Traceback ...",
                    },
                )
            ],
        ),  # fmt: skip
        span(
            trace,
            8,
            2,
            "chat",
            400,
            500,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.usage.input_tokens": 200,
                "gen_ai.usage.output_tokens": 30,
                "gen_ai.output.messages": FINAL,
            },
        ),  # fmt: skip
        span(trace, 9, 2, "db.query", 600, 650, {"db.system": "postgresql"}),
    ]


@pytest.mark.parametrize("kind", ["protobuf", "json"])
def test_a_genai_trace_becomes_runs_and_events(client, django_user_model, kind):
    key = token_for(django_user_model)
    response = post(client, key, request_of(genai_trace()), kind)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith(
        "application/x-protobuf" if kind == "protobuf" else "application/json"
    )
    if kind == "protobuf":
        parsed = ExportTraceServiceResponse.FromString(response.content)
        assert parsed.partial_success.rejected_spans == 0
    assert OtlpTrace.objects.get().span_count == 9
    assert SkillRun.objects.count() == 2  # the workflow wrapper is no run
    top = SkillRun.objects.get(pk=run_id(1, 2))
    assert (top.skill_id, top.parent_run_id, top.status) == ("orchestrator", "", "ok")
    assert (top.caller_id, top.channel_id) == ("alice", "conv-1")
    # Its own model steps only: the agent span's usage and the child's steps are not summed.
    assert (top.total_input_tokens, top.total_output_tokens, top.total_thinking_tokens) == (
        300,
        50,
        5,
    )
    assert top.tool_calls_count == 1
    assert top.inputs == {
        "messages": [{"role": "user", "parts": [{"type": "text", "content": "find the bug"}]}]
    }
    assert top.output == "the final answer"
    assert top.runtime_seconds == pytest.approx(0.98)

    child = SkillRun.objects.get(pk=run_id(1, 5))
    assert (child.skill_id, child.parent_run_id) == ("researcher", top.id)
    assert (child.caller_id, child.channel_id) == ("alice", "conv-2")  # own conversation kept
    assert (child.total_input_tokens, child.total_output_tokens, child.tool_calls_count) == (
        50,
        10,
        1,
    )

    top_events = list(SkillRunLog.objects.for_run(top.id).values_list("sequence", "event_type"))
    assert top_events == [
        (1, "step"),
        (2, "tool_call"),
        (3, "tool_result"),
        (4, "step"),
        (5, "span"),
    ]
    step = SkillRunLog.objects.get(run_id=top.id, sequence=1).payload
    assert step["model"] == "gpt-x" and step["provider"] == "openai"
    assert (step["input_tokens"], step["output_tokens"], step["thinking_tokens"]) == (100, 20, 5)
    call = SkillRunLog.objects.get(run_id=top.id, sequence=2).payload
    assert call["tool"] == "search" and call["call_id"] == "c1"
    assert call["arguments"] == {"q": "bug"}
    assert SkillRunLog.objects.get(run_id=top.id, sequence=3).payload["result"] == "3 hits"
    other = SkillRunLog.objects.get(run_id=top.id, sequence=5).payload
    assert other["name"] == "db.query" and other["attributes"] == {"db.system": "postgresql"}

    failed = SkillRunLog.objects.for_run(child.id)
    assert [e.event_type for e in failed] == ["step", "tool_call", "tool_result"]
    call, result = failed[1].payload, failed[2].payload
    # A placeholder call id: paired by the span id instead.
    assert call["call_id"] == result["call_id"] == f"{7:016x}"
    assert result["is_error"] is True and result["error"] == "IOError: unreachable"
    assert failed[0].payload["provider"] == "anthropic"


def test_protobuf_and_json_store_the_same(client, django_user_model):
    key = token_for(django_user_model)
    assert post(client, key, request_of(genai_trace()), "protobuf").status_code == 200
    first = snapshot()
    SkillRunLog.objects.all().delete()
    SkillRun.objects.all().delete()
    OtlpTrace.objects.all().delete()
    assert post(client, key, request_of(genai_trace()), "json", gz=True).status_code == 200
    assert snapshot() == first


def test_a_trace_without_agent_spans_makes_its_root_the_run(client, django_user_model):
    key = token_for(django_user_model)
    spans = [
        span(2, 1, None, "handle request", 0, 100, {"user.id": "bob"}),
        span(
            2,
            2,
            1,
            "chat",
            10,
            50,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.usage.input_tokens": 7,
                "gen_ai.usage.output_tokens": 3,
                "gen_ai.output.messages": FINAL,
            },
        ),  # fmt: skip
    ]
    assert post(client, key, request_of(spans)).status_code == 200
    run = SkillRun.objects.get()
    assert (run.id, run.skill_id, run.caller_id) == (run_id(2, 1), "handle request", "bob")
    assert (run.total_input_tokens, run.total_output_tokens, run.output) == (
        7,
        3,
        "the final answer",
    )


def test_a_failed_agent_keeps_its_error_and_stack(client, django_user_model):
    key = token_for(django_user_model)
    spans = [
        span(3, 1, None, "invoke_agent a", 0, 100,
             {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"},
             error="status text",
             events=[("exception", 90, {"exception.type": "ValueError",
                                        "exception.message": "bad",
                                        "exception.stacktrace": "Traceback (most recent)"})]),
    ]  # fmt: skip
    assert post(client, key, request_of(spans)).status_code == 200
    run = SkillRun.objects.get()
    assert (run.status, run.error) == ("error", "ValueError: bad")
    event = SkillRunLog.objects.get(run_id=run.id)
    assert event.event_type == "error" and event.payload["detail"] == "Traceback (most recent)"


def test_older_conventions_messages_in_events(client, django_user_model):
    key = token_for(django_user_model)
    spans = [
        span(4, 1, None, "invoke_agent a", 0, 100,
             {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"}),
        span(4, 2, 1, "chat", 10, 50, {"gen_ai.operation.name": "text_completion"},
             events=[("gen_ai.user.message", 10, {"content": "hi"}),
                     ("gen_ai.choice", 50, {"message": '{"role": "assistant", '
                                                       '"content": "hello"}'})]),
        span(4, 3, 1, "chat", 60, 90, {"gen_ai.operation.name": "chat"},
             events=[("gen_ai.client.inference.operation.details", 90,
                      {"gen_ai.output.messages": FINAL})]),
    ]  # fmt: skip
    assert post(client, key, request_of(spans)).status_code == 200
    run = SkillRun.objects.get()
    assert run.inputs == {"messages": [{"role": "user", "content": "hi"}]}
    assert run.output == "the final answer"


def test_a_purged_trace_takes_its_stored_spans_with_it(client, django_user_model):
    """otlp_traces must not outlive the runs: a late span of a purged trace would bring the
    purged runs back, and the table would grow without bound."""
    from datetime import UTC, datetime

    from runs.services import purge

    key = token_for(django_user_model)
    assert post(client, key, request_of(genai_trace(1)), "protobuf").status_code == 200
    assert post(client, key, request_of(genai_trace(2)), "protobuf").status_code == 200
    assert OtlpTrace.objects.count() == 2
    # Deleting one trace's runs (as the admin or a purge batch does) forgets that trace only.
    SkillRun.objects.delete_with_logs([run_id(1, 2)])
    assert sorted(OtlpTrace.objects.values_list("pk", flat=True)) == [f"{2:032x}"]
    purge.purge_started_before(datetime(2100, 1, 1, tzinfo=UTC))
    assert not OtlpTrace.objects.exists() and not SkillRun.objects.exists()
