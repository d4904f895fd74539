"""The OpenTelemetry GenAI semantic conventions (``gen_ai.*``): the fallback dialect.

Both the older names (gen_ai.system, gen_ai.usage.prompt_tokens, one event per message)
and the current ones (gen_ai.provider.name, gen_ai.usage.input_tokens, the
gen_ai.input/output.messages attributes or one gen_ai.client.inference.operation.details
event) are read, so exporters of either generation record the same.
"""

from __future__ import annotations

from .decode import Span
from .dialect import (
    MODEL,
    OTHER,
    RUN,
    TOOL,
    RunFacts,
    SpanFacts,
    as_count,
    exception_of,
    first,
    maybe_json,
    messages_text,
    text,
)

name = "genai"
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
# Call ids some SDKs send when they have none: pairing by them would pair wrong calls.
PLACEHOLDER_CALL_IDS = frozenset({"", "none", "null", "undefined", "unknown", "0", "call_0"})
# Older conventions: one event per message.
MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
DETAILS_EVENT = "gen_ai.client.inference.operation.details"


def applies(span: Span) -> bool:
    return True


def read(span: Span) -> SpanFacts:
    attrs = span.attrs
    operation = attrs.get("gen_ai.operation.name")
    error_text, stack = _error(span)
    agent = text(first(attrs, "gen_ai.agent.name"))
    run = RunFacts(skill_id=agent or span.name or "(unnamed span)", error=error_text)
    run.error_detail = stack
    facts = SpanFacts(
        role=OTHER,
        run=run,
        event={},
        caller_id=text(first(attrs, "enduser.id", "user.id")),
        channel_id=text(first(attrs, "gen_ai.conversation.id", "session.id")),
    )
    if operation == "invoke_agent":
        facts.role = RUN
        inputs = _messages(span, "gen_ai.input.messages")
        if inputs:
            run.inputs = {"messages": inputs}
        output = _messages(span, "gen_ai.output.messages")
        if output:
            run.output = messages_text(output)
        elif "final_result" in attrs:  # pydantic-ai
            run.output = text(attrs["final_result"])
        facts.event = _span_event(span)
    elif operation in MODEL_OPERATIONS:
        facts.role = MODEL
        facts.input_messages = _messages(span, "gen_ai.input.messages")
        facts.output_messages = _messages(span, "gen_ai.output.messages")
        facts.tokens, usage = _usage(attrs)
        request_model = text(first(attrs, "gen_ai.request.model"))
        response_model = text(first(attrs, "gen_ai.response.model"))
        facts.event = {
            "span_id": span.span_id,
            "operation": operation,
            # "model" prices the step (the stats and cost read it, as they read the
            # recorder's): the model that answered, else the one asked for.
            "model": response_model or request_model,
            "request_model": request_model,
            "response_model": response_model,
            "provider": text(first(attrs, "gen_ai.provider.name", "gen_ai.system")),
            **usage,
            "duration_seconds": span.duration,
            "finish_reasons": attrs.get("gen_ai.response.finish_reasons") or [],
        }
        if facts.input_messages:
            facts.event["input_messages"] = facts.input_messages
        if facts.output_messages:
            facts.event["output_messages"] = facts.output_messages
        if span.error:
            facts.event["error"] = error_text
    elif operation == "execute_tool":
        facts.role = TOOL
        tool = text(first(attrs, "gen_ai.tool.name")) or span.name
        call_id = call_id_or_span(attrs.get("gen_ai.tool.call.id"), span)
        arguments = first(attrs, "gen_ai.tool.call.arguments", "gen_ai.tool.arguments")
        result = first(attrs, "gen_ai.tool.call.result", "gen_ai.tool.result")
        if arguments is None or result is None:
            ev_args, ev_result = _tool_from_events(span)
            arguments = ev_args if arguments is None else arguments
            result = ev_result if result is None else result
        facts.event = {
            "span_id": span.span_id,
            "tool": tool,
            "call_id": call_id,
            "arguments": maybe_json(arguments) if arguments is not None else {},
        }
        facts.result = {
            "span_id": span.span_id,
            "tool": tool,
            "call_id": call_id,
            "result": maybe_json(result),
            "duration_seconds": span.duration,
        }
        if span.error:
            facts.result["is_error"] = True
            facts.result["error"] = error_text or "the tool failed"
    else:
        facts.event = _span_event(span)
    return facts


def call_id_or_span(value, span: Span) -> str:
    call_id = text(value)
    if call_id.strip().lower() in PLACEHOLDER_CALL_IDS:
        return span.span_id
    return call_id


def _error(span: Span) -> tuple[str, str]:
    if not span.error:
        return "", ""
    short, stack = exception_of(span)
    return short or span.status_message or "error", stack


def _span_event(span: Span) -> dict:
    event = {
        "span_id": span.span_id,
        "name": span.name,
        "attributes": span.attrs,
        "duration_seconds": span.duration,
        "status": "error" if span.error else "ok",
    }
    if span.error:
        event["error"] = _error(span)[0]
    return event


def _usage(attrs: dict) -> tuple[tuple[int, int, int], dict]:
    """Token figures as stored: output as reported, reasoning also as thinking."""
    inp = as_count(first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"))
    out = as_count(first(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"))
    thinking = as_count(
        first(
            attrs,
            "gen_ai.usage.reasoning.output_tokens",
            "gen_ai.usage.reasoning_tokens",
            "gen_ai.usage.output_tokens_details.reasoning_tokens",
        )
    )
    cached = as_count(
        first(attrs, "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cached_tokens")
    )
    usage = {"input_tokens": inp, "output_tokens": out}
    if thinking:
        usage["thinking_tokens"] = thinking
    if cached:
        usage["cached_input_tokens"] = cached
    created = as_count(first(attrs, "gen_ai.usage.cache_creation.input_tokens"))
    if created:
        usage["cache_creation_input_tokens"] = created
    return (inp, out, thinking), usage


def _messages(span: Span, key: str):
    """Messages from the attribute, else from the span's events (older conventions)."""
    value = span.attrs.get(key)
    if value is not None:
        value = maybe_json(value)
        return value if isinstance(value, list) else [value]
    found = []
    for event_name, _, attrs in span.events:
        if event_name == DETAILS_EVENT and key in attrs:
            value = maybe_json(attrs[key])
            return value if isinstance(value, list) else [value]
        if key == "gen_ai.input.messages" and event_name in MESSAGE_EVENTS:
            found.append(_event_message(MESSAGE_EVENTS[event_name], attrs))
        elif key == "gen_ai.output.messages" and event_name == "gen_ai.choice":
            message = maybe_json(attrs.get("message", attrs.get("content")))
            found.append(message if isinstance(message, dict) else {"content": message})
    return found or None


def _event_message(role: str, attrs: dict) -> dict:
    content = maybe_json(first(attrs, "content", "body", "gen_ai.event.content"))
    if isinstance(content, dict):
        return {"role": role, **content}
    return {"role": role, "content": content}


def _tool_from_events(span: Span):
    arguments = result = None
    for _, _, attrs in span.events:
        if arguments is None:
            arguments = first(attrs, "gen_ai.tool.call.arguments")
        if result is None:
            result = first(attrs, "gen_ai.tool.call.result")
    return arguments, result
