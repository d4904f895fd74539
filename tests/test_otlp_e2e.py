"""End to end: the real OpenTelemetry SDK and OTLP/HTTP exporter against a live server.

The bare SDK (nested agents, a failing tool), pydantic-ai's own GenAI instrumentation and
LangChain through openinference-instrumentation-langchain, each with a scripted model (no
network but 127.0.0.1). Every trace is then replayed one span per request in reverse order,
onto the stored rows and onto an empty database: the rows must not change.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from runs.models import OtlpTrace, SkillRun, SkillRunLog
from tests.dashboard_data import make_viewer
from tests.otlp_support import snapshot, token_for


@pytest.fixture
def otlp(live_server, django_user_model):
    """(provider, captured spans, exporter): spans go to the live server as each ends."""
    key = token_for(django_user_model)
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    captured = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(captured))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, captured, exporter
    provider.shutdown()


def wipe() -> None:
    SkillRunLog.objects.all().delete()
    SkillRun.objects.all().delete()
    OtlpTrace.objects.all().delete()


def replays_change_nothing(captured, exporter) -> None:
    """Reverse order, one span per request: onto the stored trace, then onto nothing."""
    stored = snapshot()
    assert stored[0], "nothing was stored"
    spans = list(captured.get_finished_spans())
    for span in reversed(spans):
        assert exporter.export([span]) == SpanExportResult.SUCCESS
    assert snapshot() == stored
    wipe()
    for span in reversed(spans):
        assert exporter.export([span]) == SpanExportResult.SUCCESS
    assert snapshot() == stored
    wipe()
    assert exporter.export(spans) == SpanExportResult.SUCCESS  # all in one request
    assert snapshot() == stored


def test_bare_sdk_nested_agents_and_a_failing_tool(
    otlp, transactional_db, client, django_user_model
):
    provider, captured, exporter = otlp
    tracer = provider.get_tracer("e2e")
    agent = {"gen_ai.operation.name": "invoke_agent"}
    with tracer.start_as_current_span(
        "invoke_agent planner",
        attributes={**agent, "gen_ai.agent.name": "planner", "enduser.id": "carol",
                    "gen_ai.conversation.id": "c-9"},
    ):  # fmt: skip
        with tracer.start_as_current_span(
            "chat", attributes={"gen_ai.operation.name": "chat",
                                "gen_ai.usage.input_tokens": 10,
                                "gen_ai.usage.output_tokens": 2}):  # fmt: skip
            pass
        with tracer.start_as_current_span(
            "execute_tool delegate",
            attributes={"gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": "delegate"},
        ):  # fmt: skip
            with tracer.start_as_current_span(
                "invoke_agent worker", attributes={**agent, "gen_ai.agent.name": "worker"}
            ):
                with tracer.start_as_current_span(
                    "execute_tool rm",
                    attributes={"gen_ai.operation.name": "execute_tool",
                                "gen_ai.tool.name": "rm", "gen_ai.tool.call.id": "t-1"},
                ) as failing:  # fmt: skip
                    failing.record_exception(PermissionError("read-only file system"))
                    failing.set_status(Status(StatusCode.ERROR, "read-only file system"))
                with tracer.start_as_current_span(
                    "chat", attributes={"gen_ai.operation.name": "chat",
                                        "gen_ai.usage.input_tokens": 5,
                                        "gen_ai.usage.output_tokens": 1}):  # fmt: skip
                    pass
    planner = SkillRun.objects.get(skill_id="planner")
    worker = SkillRun.objects.get(skill_id="worker")
    assert planner.parent_run_id == "" and worker.parent_run_id == planner.id
    assert (planner.total_input_tokens, planner.tool_calls_count) == (10, 1)
    assert (worker.total_input_tokens, worker.tool_calls_count) == (5, 1)
    assert (worker.caller_id, worker.channel_id) == ("carol", "c-9")  # inherited
    assert planner.status == worker.status == "ok"
    result = SkillRunLog.objects.get(run_id=worker.id, event_type="tool_result").payload
    assert result["is_error"] is True
    assert result["error"] == "PermissionError: read-only file system"
    assert result["call_id"] == "t-1"

    viewer = make_viewer(django_user_model)
    client.force_login(viewer)
    for path in (f"/runs/{planner.id}/", f"/runs/{worker.id}/", f"/runs/{planner.id}/tree/"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert b"worker" in page.content and b"planner" in page.content
    skills = client.get("/skills/")
    assert skills.status_code == 200 and b"planner" in skills.content
    assert b"delegate" in client.get(f"/runs/{planner.id}/").content

    replays_change_nothing(captured, exporter)


def test_pydantic_ai_agents_through_their_own_instrumentation(otlp, transactional_db):
    """A workflow span (no run: its caller passes down) around two agent runs: one whose
    tool runs a sub-agent, one whose tool fails (run one after the other: pydantic-ai runs
    a turn's tools concurrently and cancels the others when one fails)."""
    from pydantic_ai import Agent, InstrumentationSettings
    from pydantic_ai.capabilities.instrumentation import Instrumentation
    from pydantic_ai.models.test import TestModel

    provider, captured, exporter = otlp
    settings = InstrumentationSettings(tracer_provider=provider, include_content=True)
    instrumented = [Instrumentation(settings=settings)]
    researcher = Agent(
        TestModel(custom_output_text="three articles"), name="researcher",
        capabilities=instrumented,
    )  # fmt: skip
    orchestrator = Agent(
        TestModel(call_tools=["research"]), name="orchestrator", capabilities=instrumented
    )
    fixer = Agent(TestModel(call_tools=["broken"]), name="fixer", capabilities=instrumented)

    @orchestrator.tool_plain
    async def research(topic: str) -> str:
        return (await researcher.run(topic)).output

    @fixer.tool_plain
    def broken(x: int) -> str:
        raise ValueError("tool exploded")

    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("handle ticket", attributes={"enduser.id": "erin"}):
        orchestrator.run_sync("find the incident")
        with pytest.raises(ValueError, match="tool exploded"):
            fixer.run_sync("fix it")
    assert SkillRun.objects.count() == 3  # the workflow span is no run
    top = SkillRun.objects.get(skill_id="orchestrator")
    child = SkillRun.objects.get(skill_id="researcher")
    failing = SkillRun.objects.get(skill_id="fixer")
    assert child.parent_run_id == top.id and top.parent_run_id == failing.parent_run_id == ""
    assert top.caller_id == child.caller_id == failing.caller_id == "erin"
    assert top.status == child.status == "ok" and child.output == "three articles"
    assert failing.status == "error" and "tool exploded" in failing.error
    # Each run counts its own model calls only (the agent spans' aggregated usage is not
    # summed), and its own tools: the one wrapping the sub-agent counts in the parent.
    assert top.tool_calls_count == 1 and child.tool_calls_count == 0
    assert failing.tool_calls_count == 1
    model_steps = SkillRunLog.objects.filter(run_id=top.id, event_type="step")
    assert top.total_input_tokens == sum(s.payload["input_tokens"] for s in model_steps) > 0
    assert child.total_output_tokens > 0
    assert top.inputs["messages"][0]["parts"][0]["content"] == "find the incident"
    failed = SkillRunLog.objects.get(run_id=failing.id, event_type="tool_result").payload
    assert failed["is_error"] is True and "tool exploded" in failed["error"]
    assert trace.get_current_span() is trace.INVALID_SPAN
    replays_change_nothing(captured, exporter)


def test_langchain_through_openinference(otlp, transactional_db, client, django_user_model):
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool
    from openinference.instrumentation import using_attributes
    from openinference.instrumentation.langchain import LangChainInstrumentor

    provider, captured, exporter = otlp
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:

        @tool
        def lookup(q: str) -> str:
            """Look something up."""
            return f"found {q}"

        @tool
        def broken(x: int) -> str:
            """Fails."""
            raise ValueError("tool exploded")

        model = FakeMessagesListChatModel(
            responses=[
                AIMessage(
                    content="",
                    tool_calls=[{"name": "lookup", "args": {"q": "disk"}, "id": "call_1"}],
                ),
                AIMessage(content="done: disk"),
            ]
        )
        sub_model = FakeMessagesListChatModel(responses=[AIMessage(content="sub answer")])
        sub = RunnableLambda(lambda q: sub_model.invoke(q).content).with_config(
            run_name="research_agent"
        )

        def main_agent(question):
            message = model.invoke(question)
            for call in message.tool_calls:
                lookup.invoke(call)
            try:
                broken.invoke({"x": 1})
            except ValueError:
                pass
            sub.invoke("dig deeper")
            return model.invoke(question).content

        agent = RunnableLambda(main_agent).with_config(run_name="orchestrator_agent")
        with using_attributes(session_id="s-1", user_id="dave", metadata={"team": "sre"}):
            assert agent.invoke("why is the disk full?") == "done: disk"
    finally:
        instrumentor.uninstrument()

    run = SkillRun.objects.get()  # the root is the run; the unnamed AGENT is an event
    assert (run.skill_id, run.caller_id, run.channel_id) == ("orchestrator_agent", "dave", "s-1")
    assert run.inputs["input"] == "why is the disk full?"
    assert run.inputs["_openinference"]["metadata"] == {"team": "sre"}
    assert run.output == "done: disk" and run.status == "ok"
    assert run.tool_calls_count == 2
    events = list(SkillRunLog.objects.for_run(run.id))
    kinds = [e.event_type for e in events]
    assert kinds.count("step") == 3 and kinds.count("span") == 1
    first_step = next(e.payload for e in events if e.event_type == "step")
    assert first_step["output_messages"][0]["tool_calls"][0]["tool_call"]["function"] == {
        "name": "lookup",
        "arguments": {"q": "disk"},
    }
    failed = next(
        e.payload for e in events if e.event_type == "tool_result" and e.payload["tool"] == "broken"
    )
    assert failed["is_error"] is True and failed["error"] == "tool exploded"

    # Shown like any other run: run page, tree, skills page, search.
    client.force_login(make_viewer(django_user_model))
    for path in (f"/runs/{run.id}/", f"/runs/{run.id}/tree/", "/skills/"):
        page = client.get(path)
        assert page.status_code == 200 and b"orchestrator_agent" in page.content, path
    found = client.get("/runs/", {"q": "exploded"})
    assert found.status_code == 200 and run.id.encode() in found.content
    replays_change_nothing(captured, exporter)


def test_openai_agents_handoff_through_openinference(otlp, transactional_db):
    """OpenAI Agents SDK with a scripted model (it opens the SDK's own generation spans,
    as the SDK's model classes do): a tool, a failing tool (the SDK redacts its output),
    a handoff to a sibling agent."""
    import asyncio
    import json

    from agents import Agent, Runner, function_tool, set_trace_processors
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.tracing import generation_span
    from agents.usage import Usage
    from openai.types.responses import (
        ResponseFunctionToolCall,
        ResponseOutputMessage,
        ResponseOutputText,
    )
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    provider, captured, exporter = otlp

    def says(text):
        return ResponseOutputMessage(
            id="m", type="message", role="assistant", status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )  # fmt: skip

    def calls(name, arguments, call_id):
        return ResponseFunctionToolCall(
            type="function_call", name=name, arguments=json.dumps(arguments),
            call_id=call_id, id=f"f{call_id}", status="completed",
        )  # fmt: skip

    class Scripted(Model):
        def __init__(self, turns):
            self.turns = list(turns)

        async def get_response(self, system_instructions, input, *args, **kwargs):
            output = self.turns.pop(0)
            with generation_span(
                model="scripted-1", input=[{"role": "user", "content": str(input)[:200]}]
            ) as span:
                span.span_data.output = [item.model_dump() for item in output]
                span.span_data.usage = {"input_tokens": 11, "output_tokens": 3}
            return ModelResponse(
                output=output,
                usage=Usage(requests=1, input_tokens=11, output_tokens=3, total_tokens=14),
                response_id=None,
            )

        def stream_response(self, *args, **kwargs):
            raise NotImplementedError

    @function_tool
    def lookup(q: str) -> str:
        """Look something up."""
        return f"found {q}"

    @function_tool
    def broken(x: int) -> str:
        """Fails."""
        raise ValueError("tool exploded")

    researcher = Agent(
        name="researcher", instructions="dig", model=Scripted([[says("deep answer")]])
    )
    triage = Agent(
        name="triage", instructions="route", tools=[lookup, broken], handoffs=[researcher],
        model=Scripted([
            [calls("lookup", {"q": "disk"}, "c1"), calls("broken", {"x": 1}, "c2")],
            [calls("transfer_to_researcher", {}, "c3")],
        ]),
    )  # fmt: skip
    set_trace_processors([])  # nothing to OpenAI's own tracing service
    instrumentor = OpenAIAgentsInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        result = asyncio.run(Runner.run(triage, "why is the disk full?"))
    finally:
        instrumentor.uninstrument()
    assert result.final_output == "deep answer"

    root = SkillRun.objects.get(parent_run_id="")
    assert root.skill_id == "Agent workflow"
    triage_run = SkillRun.objects.get(skill_id="triage")
    research_run = SkillRun.objects.get(skill_id="researcher")
    # The handoff target is a sibling of the agent that handed off: a child of their
    # common enclosing run.
    assert triage_run.parent_run_id == research_run.parent_run_id == root.id
    assert (triage_run.total_input_tokens, triage_run.total_output_tokens) == (22, 6)
    assert (research_run.total_input_tokens, research_run.total_output_tokens) == (11, 3)
    assert root.total_input_tokens == 0  # never a child run's tokens
    assert triage_run.tool_calls_count == 3  # lookup, broken and the handoff
    assert research_run.output == "deep answer"
    results = {
        e.payload["tool"]: e.payload
        for e in SkillRunLog.objects.filter(run_id=triage_run.id, event_type="tool_result")
    }
    assert set(results) == {"lookup", "broken", "handoff to researcher"}
    assert results["lookup"]["result"] == "found disk"
    assert results["broken"]["is_error"] is True
    assert "broken" in results["broken"]["error"]
    replays_change_nothing(captured, exporter)


def test_halves_of_a_trace_sent_at_once_by_two_exporters(live_server, django_user_model):
    """Two exporters post the two halves of a trace at the same moment (the live server's
    threads, like gunicorn's workers, take them in parallel): the trace is locked while it
    is derived, so it is never stored from one half alone."""
    import random
    import threading

    import requests

    from tests.otlp_support import request_of
    from tests.test_otlp_mapping import genai_trace

    key = token_for(django_user_model)

    def send(spans) -> None:
        response = requests.post(
            f"{live_server.url}/v1/traces",
            data=request_of(spans).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.status_code == 200

    def post_halves(halves, errors) -> None:
        start = threading.Barrier(len(halves))

        def post(half) -> None:
            try:
                start.wait(timeout=10)
                send(half)
            except BaseException as exc:  # reported by the caller
                errors.append(exc)

        threads = [threading.Thread(target=post, args=(half,)) for half in halves]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    send(genai_trace(100))
    reference = snapshot()
    errors: list = []
    for number in range(1, 13):
        spans = genai_trace(number)
        random.Random(number).shuffle(spans)
        post_halves([spans[: len(spans) // 2], spans[len(spans) // 2 :]], errors)
    assert not errors
    # Every trace ends exactly like the one sent whole (ids aside).
    runs, logs = snapshot()
    assert len(runs) == 13 * len(reference[0]) and len(logs) == 13 * len(reference[1])

    def shape(rows):
        return sorted((r[1], r[5], r[8], r[11], r[14]) for r in rows)

    for number in range(1, 13):
        mine = [r for r in runs if r[0].startswith(f"otlp-{number:032x}")]
        assert shape(mine) == shape(reference[0])
    assert not SkillRun.objects.filter(status="running").exists()
