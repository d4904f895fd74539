"""The one small interface every dialect module implements: a span in, its facts out.

A dialect reads one ``Span`` (decode.py) and says what it is (``role``), what it would
put on a run (``RunFacts``), the event(s) it becomes inside its run, the tokens it counts
and the caller/conversation it carries. The parent link is the span's own parent id;
assemble.py turns the facts of a whole trace into runs and events, whichever dialects
wrote them. A new dialect is one module with ``applies(span)`` and ``read(span)``, added
to ``DIALECTS`` (first match wins; GenAI, the fallback, is last).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Protocol

from .decode import Span

RUN = "run"  # a run by itself (GenAI invoke_agent, OpenInference named AGENT)
MODEL = "model"  # a model call: a step event, its tokens counted
TOOL = "tool"  # a tool execution: tool_call + tool_result
OTHER = "other"  # anything else: a `span` event inside its run


@dataclass(slots=True)
class RunFacts:
    skill_id: str
    inputs: dict | None = None  # None: taken from the run's first model step
    output: str | None = None  # None: taken from the run's last model step
    error: str = ""
    # the full text (a stack trace) for an error event, when there is one
    error_detail: str = ""


@dataclass(slots=True)
class SpanFacts:
    role: str
    run: RunFacts
    # The event payload (step, tool_call or span) and, for tools, the tool_result payload.
    event: dict
    result: dict | None = None
    # (input, output, thinking) for model calls only: other spans' usage is never summed.
    tokens: tuple[int, int, int] | None = None
    input_messages: list | None = None
    output_messages: list | None = None
    caller_id: str = ""
    channel_id: str = ""
    # The trace's root span is a run whatever it is (OpenInference); GenAI roots are runs
    # only when the trace has no agent span.
    root_is_run: bool = False
    extra_inputs: dict = field(default_factory=dict)


class Dialect(Protocol):
    name: str

    def applies(self, span: Span) -> bool: ...

    def read(self, span: Span) -> SpanFacts: ...


# --- helpers the dialects share ------------------------------------------------------------


def text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# One decoder for every call: json.loads with an argument builds a new decoder (and its
# scanner) per call, a third of the parse of a short message list.
_DECODE = json.JSONDecoder(parse_constant=str).decode


def maybe_json(value):
    """A JSON text parsed (frameworks send structured values as JSON strings), else as is.

    NaN and Infinity stay text, and escapes that decode to NUL or a lone surrogate are
    replaced as decode.clean does: neither database can store them.
    """
    if isinstance(value, str) and value[:1] in ("{", "[", '"'):
        try:
            parsed = _DECODE(value)
        except (ValueError, RecursionError):
            return value
        return _cleaned(parsed) if "\\u" in value else parsed
    return value


# What json.loads can make of escapes: NUL and lone surrogates (decode.clean sees neither
# surrogates, which protobuf strings cannot hold).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _cleaned(value, depth: int = 0):
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if depth > 200:
        return "(nested too deep)"
    if isinstance(value, list):
        return [_cleaned(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_UNSTORABLE.sub("\ufffd", k): _cleaned(v, depth + 1) for k, v in value.items()}
    return value


def as_count(value) -> int:
    """A token figure as a stored integer: 0 for what is not a count."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, float) and value == value and abs(value) < 2**63:
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            return 0
    if isinstance(value, int):
        return min(max(value, 0), 2**63 - 1)
    return 0


def first(attrs: dict, *keys):
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def exception_of(span: Span) -> tuple[str, str]:
    """(short text, stack trace) from the span's first `exception` event."""
    for name, _, attrs in span.events:
        if name == "exception":
            kind = text(attrs.get("exception.type"))
            message = text(attrs.get("exception.message"))
            short = f"{kind}: {message}" if kind and message else kind or message
            return short, text(attrs.get("exception.stacktrace"))
    return "", ""


TEXT_PARTS = ("text", "output_text")


def messages_text(messages) -> str:
    """The text of the last message's text parts (an answer), else the messages as JSON."""
    if not messages:
        return ""
    last = messages[-1] if isinstance(messages, list) else messages
    if isinstance(last, dict):
        # GenAI: parts [{type: text, content}]; OpenAI response items: content
        # [{type: output_text, text}]; OpenInference: contents (below).
        parts = last.get("parts")
        if not isinstance(parts, list):
            parts = last.get("content")
        if not isinstance(parts, list) and isinstance(last.get("contents"), list):
            # OpenInference: message.contents.N.message_content.{type, text}
            parts = [c.get("message_content", c) for c in last["contents"] if isinstance(c, dict)]
        if isinstance(parts, list):
            texts = []
            for part in parts:
                if isinstance(part, dict) and part.get("type") in TEXT_PARTS:
                    value = part.get("content", part.get("text"))
                    if isinstance(value, str):
                        texts.append(value)
            if texts:
                return "\n".join(texts)
        for key in ("content", "message.content"):
            if isinstance(last.get(key), str):
                return last[key]
    return text(messages)
