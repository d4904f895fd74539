"""The OpenInference dialect, from hand-built spans, protobuf and JSON."""

from __future__ import annotations

import pytest

from runs.models import SkillRun, SkillRunLog
from tests.otlp_support import post, request_of, run_id, span, token_for

pytestmark = pytest.mark.django_db

KIND = "openinference.span.kind"


def oi_trace(trace=7):
    """A CHAIN root (the run, with user and session), a named AGENT child run, LLM spans
    with message indexes that start at 1 and have gaps, tools (bare-value input, a failed
    one without output, a handoff without tool name), a retriever, an unnamed AGENT, and
    a GenAI model call inside (mixed dialects)."""
    return [
        span(trace, 1, None, "LangGraph", 0, 1000, {
            KIND: "CHAIN", "user.id": "frank", "session.id": "sess-1",
            "input.value": '{"question": "why?"}', "input.mime_type": "application/json",
            "output.value": "because", "metadata": '{"team": "sre"}',
            "tag.tags": ["prod", "eu"]}),
        span(trace, 2, 1, "ChatOpenAI", 10, 100, {
            KIND: "LLM", "llm.model_name": "gpt-4o", "llm.provider": "openai",
            "llm.token_count.prompt": 100, "llm.token_count.completion": 20,
            "llm.token_count.total": 120, "llm.token_count.completion_details.reasoning": 7,
            "llm.token_count.prompt_details.cache_read": 30,
            "llm.invocation_parameters": '{"temperature": 0}',
            "llm.input_messages.1.message.role": "system",
            "llm.input_messages.1.message.content": "be brief",
            "llm.input_messages.4.message.role": "user",
            "llm.input_messages.4.message.content": "why?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_9",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "grep",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments":
                '{"pattern": "disk"}'}),
        span(trace, 3, 1, "grep", 110, 200, {
            KIND: "TOOL", "tool.name": "grep", "input.value": "disk",
            "output.value": "3 lines"}),
        span(trace, 4, 1, "broken_tool", 210, 250, {KIND: "TOOL", "tool.name": "rm"},
             error="PermissionError('no')\nTraceback (most recent call last):\n  ...\n"
                   "PermissionError: no"),
        span(trace, 5, 1, "transfer_to_researcher", 260, 270, {KIND: "TOOL",
             "input.value": '{"reason": "deeper"}', "input.mime_type": "application/json"}),
        span(trace, 6, 1, "researcher", 280, 900, {
            KIND: "AGENT", "agent.name": "researcher", "graph.node.id": "researcher",
            "graph.node.parent_id": "supervisor"}),
        span(trace, 7, 6, "ChatAnthropic", 300, 400, {
            KIND: "LLM", "llm.model_name": "claude", "llm.system": "anthropic",
            "llm.token_count.prompt": 40, "llm.token_count.completion": 5,
            "llm.output_messages.2.message.role": "assistant",
            "llm.output_messages.2.message.content": "found it"}),
        span(trace, 8, 6, "retrieve", 410, 500, {
            KIND: "RETRIEVER", "input.value": "disk",
            "retrieval.documents.0.document.content": "doc a",
            "retrieval.documents.0.document.score": 0.9,
            "retrieval.documents.1.document.content": "doc b"}),
        span(trace, 9, 6, "agent_step", 510, 600, {KIND: "AGENT",
             "llm.token_count.prompt": 999}),
        span(trace, 10, 6, "chat", 610, 700, {"gen_ai.operation.name": "chat",
             "gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 1}),
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["protobuf", "json"])
def test_an_openinference_trace(client, django_user_model, kind):
    key = token_for(django_user_model)
    response = post(client, key, request_of(oi_trace()), kind)
    assert response.status_code == 200, response.content
    assert SkillRun.objects.count() == 2
    root = SkillRun.objects.get(pk=run_id(7, 1))
    assert (root.skill_id, root.caller_id, root.channel_id) == ("LangGraph", "frank", "sess-1")
    assert root.inputs == {
        "question": "why?",
        "_openinference": {"metadata": {"team": "sre"}, "tags": ["prod", "eu"]},
    }
    assert root.output == "because" and root.status == "ok"
    # Own LLM spans only: input = prompt, output = completion, thinking = reasoning.
    assert (root.total_input_tokens, root.total_output_tokens, root.total_thinking_tokens) == (
        100,
        20,
        7,
    )
    assert root.tool_calls_count == 3

    child = SkillRun.objects.get(pk=run_id(7, 6))
    assert (child.skill_id, child.parent_run_id) == ("researcher", root.id)
    assert (child.caller_id, child.channel_id) == ("frank", "sess-1")  # inherited
    # The unnamed AGENT's token attribute is not summed; the GenAI chat span inside is.
    assert (child.total_input_tokens, child.total_output_tokens) == (43, 6)
    assert child.output == "found it"  # the last LLM span's output messages
    assert child.inputs == {}

    events = list(SkillRunLog.objects.for_run(root.id))
    assert [e.event_type for e in events] == [
        "step",
        "tool_call",
        "tool_result",
        "tool_call",
        "tool_result",
        "tool_call",
        "tool_result",
    ]
    step = events[0].payload
    assert [m["role"] for m in step["input_messages"]] == ["system", "user"]  # gaps closed
    call = step["output_messages"][0]["tool_calls"][0]["tool_call"]
    assert call == {"id": "call_9", "function": {"name": "grep", "arguments": {"pattern": "disk"}}}
    assert (step["model"], step["provider"], step["cached_input_tokens"]) == (
        "gpt-4o",
        "openai",
        30,
    )
    assert step["invocation_parameters"] == {"temperature": 0}
    grep_call, grep_result = events[1].payload, events[2].payload
    assert grep_call["arguments"] == "disk" and grep_result["result"] == "3 lines"
    assert grep_call["call_id"] == grep_result["call_id"] == f"{3:016x}"  # paired by span
    failed = events[4].payload
    assert failed["is_error"] is True and failed["error"] == "PermissionError: no"
    assert failed["result"] is None
    handoff = events[5].payload
    assert handoff["tool"] == "transfer_to_researcher"
    assert handoff["arguments"] == {"reason": "deeper"}

    child_events = list(SkillRunLog.objects.for_run(child.id))
    assert [e.event_type for e in child_events] == ["step", "span", "span", "step"]
    retriever = child_events[1].payload
    assert retriever["kind"] == "RETRIEVER"
    assert [d["content"] for d in retriever["documents"]] == ["doc a", "doc b"]
    assert child_events[2].payload["kind"] == "AGENT"
    assert child_events[0].payload["provider"] == "anthropic"


def test_a_failed_root_takes_the_exception_message(client, django_user_model):
    key = token_for(django_user_model)
    spans = [
        span(8, 1, None, "chain", 0, 10, {KIND: "CHAIN"}, error="Traceback...\nKeyError: 'x'",
             events=[("exception", 9, {"exception.type": "KeyError",
                                       "exception.message": "'x'",
                                       "exception.stacktrace": "Traceback..."})]),
    ]  # fmt: skip
    assert post(client, key, request_of(spans)).status_code == 200
    run = SkillRun.objects.get()
    assert (run.status, run.error) == ("error", "'x'")
    error = SkillRunLog.objects.get(run_id=run.id)
    assert error.event_type == "error" and error.payload["detail"] == "Traceback..."


def test_a_bare_text_input_is_kept_as_input(client, django_user_model):
    key = token_for(django_user_model)
    spans = [span(9, 1, None, "agent", 0, 10, {KIND: "AGENT", "input.value": "hello"})]
    assert post(client, key, request_of(spans)).status_code == 200
    assert SkillRun.objects.get().inputs == {"input": "hello"}
