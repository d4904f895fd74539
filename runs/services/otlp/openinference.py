"""OpenInference spans (``openinference.span.kind``, ``llm.*``, ``tool.*``, ``input.value``).

Chosen per span: any span with ``openinference.span.kind`` is read here. Messages,
tool calls and retrieved documents arrive flattened (``llm.input_messages.3.message.role``)
and are rebuilt as lists ordered by index; indexes may start at 0 or 1 and have gaps.
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
    first,
    maybe_json,
    text,
)
from .genai import call_id_or_span

name = "openinference"
KIND = "openinference.span.kind"
RESERVED_INPUTS_KEY = "_openinference"


def applies(span: Span) -> bool:
    return KIND in span.attrs


def read(span: Span) -> SpanFacts:
    attrs = span.attrs
    kind = text(attrs.get(KIND)).upper()
    error_text, detail = _error(span)
    agent = text(first(attrs, "agent.name"))
    run = RunFacts(skill_id=agent or span.name or "(unnamed span)", error=error_text)
    run.error_detail = detail
    if "input.value" in attrs:
        run.inputs = _inputs(attrs)
    if "output.value" in attrs:
        run.output = text(attrs["output.value"])
    facts = SpanFacts(
        role=OTHER,
        run=run,
        event={},
        caller_id=text(first(attrs, "user.id")),
        channel_id=text(first(attrs, "session.id")),
        root_is_run=True,
    )
    extra = {}
    if "metadata" in attrs:
        extra["metadata"] = maybe_json(attrs["metadata"])
    if "tag.tags" in attrs:
        extra["tags"] = attrs["tag.tags"]
    if extra:
        facts.extra_inputs = {RESERVED_INPUTS_KEY: extra}
    if kind == "AGENT" and agent:
        facts.role = RUN
        facts.event = _span_event(span, kind)
    elif kind == "LLM":
        facts.role = MODEL
        inp = as_count(attrs.get("llm.token_count.prompt"))
        out = as_count(attrs.get("llm.token_count.completion"))
        thinking = as_count(attrs.get("llm.token_count.completion_details.reasoning"))
        facts.tokens = (inp, out, thinking)
        facts.input_messages = _messages(attrs, "llm.input_messages.")
        facts.output_messages = _messages(attrs, "llm.output_messages.")
        if "output.value" in attrs and not _say_anything(facts.output_messages):
            # Some instrumentations (OpenAI Agents) send the response items only as
            # output.value (the flattened messages have a role and nothing else): they
            # stand in for the output messages.
            output = maybe_json(attrs["output.value"])
            facts.output_messages = output if isinstance(output, list) else [output]
        event = {
            "span_id": span.span_id,
            "kind": kind,
            "model": text(first(attrs, "llm.model_name")),
            "provider": text(first(attrs, "llm.provider", "llm.system")),
            "input_tokens": inp,
            "output_tokens": out,
        }
        if thinking:
            event["thinking_tokens"] = thinking
        total = attrs.get("llm.token_count.total")
        if total is not None:
            event["total_tokens"] = as_count(total)
        for key, label in (
            ("llm.token_count.prompt_details.cache_read", "cached_input_tokens"),
            ("llm.token_count.prompt_details.cache_write", "cache_creation_input_tokens"),
        ):
            if key in attrs:
                event[label] = as_count(attrs[key])
        if "llm.invocation_parameters" in attrs:
            event["invocation_parameters"] = maybe_json(attrs["llm.invocation_parameters"])
        event["duration_seconds"] = span.duration
        if facts.input_messages:
            event["input_messages"] = facts.input_messages
        if facts.output_messages:
            event["output_messages"] = facts.output_messages
        if span.error:
            event["error"] = error_text
        facts.event = event
    elif kind == "TOOL":
        facts.role = TOOL
        tool = text(first(attrs, "tool.name")) or span.name or "(unnamed tool)"
        call_id = call_id_or_span(first(attrs, "tool_call.id", "tool.id"), span)
        if "input.value" in attrs:
            arguments = maybe_json(attrs["input.value"])
        else:
            arguments = maybe_json(attrs.get("tool.parameters", {}))
        facts.event = {
            "span_id": span.span_id,
            "tool": tool,
            "call_id": call_id,
            "arguments": arguments,
        }
        facts.result = {
            "span_id": span.span_id,
            "tool": tool,
            "call_id": call_id,
            "result": maybe_json(attrs.get("output.value")),
            "duration_seconds": span.duration,
        }
        if span.error:
            facts.result["is_error"] = True
            facts.result["error"] = error_text or "the tool failed"
    else:
        facts.event = _span_event(span, kind)
    return facts


def _error(span: Span) -> tuple[str, str]:
    if not span.error:
        return "", ""
    message = stack = ""
    for event_name, _, attrs in span.events:
        if event_name == "exception":
            message = text(attrs.get("exception.message")) or text(attrs.get("exception.type"))
            stack = text(attrs.get("exception.stacktrace"))
            break
    status = span.status_message
    if message:
        return message, stack or (status if status != message else "")
    if "\n" in status:  # a whole traceback: its last line is the error
        return status.strip().splitlines()[-1], status
    return status or "error", ""


def _inputs(attrs: dict) -> dict:
    value = attrs["input.value"]
    if "json" in text(attrs.get("input.mime_type")).lower():
        parsed = maybe_json(value)
        if isinstance(parsed, dict):
            return parsed
        if not isinstance(parsed, str):
            return {"input": parsed}
    return {"input": text(value)}


def _span_event(span: Span, kind: str) -> dict:
    attrs = span.attrs
    event = {
        "span_id": span.span_id,
        "name": span.name,
        "kind": kind,
        "duration_seconds": span.duration,
        "status": "error" if span.error else "ok",
    }
    if "input.value" in attrs:
        event["input"] = maybe_json(attrs["input.value"])
    if "output.value" in attrs:
        event["output"] = maybe_json(attrs["output.value"])
    documents = _indexed(attrs, "retrieval.documents.")
    if documents:
        event["documents"] = [d.get("document", d) for d in documents]
    event["attributes"] = attrs
    if span.error:
        event["error"] = _error(span)[0]
    return event


def _say_anything(messages) -> bool:
    return bool(messages) and any(
        isinstance(m, dict) and any(key != "role" for key in m) for m in messages
    )


def _messages(attrs: dict, prefix: str) -> list | None:
    found = _indexed(attrs, prefix)
    if not found:
        return None
    return [m.get("message", m) if isinstance(m, dict) else m for m in found]


def _indexed(attrs: dict, prefix: str) -> list:
    """Flattened ``prefix.N.a.b`` attributes as a list of nested dicts ordered by N."""
    tree: dict = {}
    for key, value in attrs.items():
        if key.startswith(prefix):
            _put(tree, key[len(prefix) :].split("."), value)
    if not tree:
        return []
    result = _listify(tree)
    return result if isinstance(result, list) else [result]


def _put(tree: dict, path: list[str], value) -> None:
    node = tree
    for segment in path[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = node[segment] = {}
        node = child
    node[path[-1]] = maybe_json(value) if path[-1] == "arguments" else value


def _listify(node):
    if not isinstance(node, dict):
        return node
    items = {key: _listify(value) for key, value in node.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items
