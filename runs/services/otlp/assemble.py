"""A trace's spans (all received so far) to its runs and events: a pure function.

The result depends only on the set of spans, never on the order they came in or how often:
that is what makes replays and out-of-order exports safe (receiver.py re-derives a trace
from all its stored spans whenever a span of it arrives). Run ids come from the trace id
and the run's span id; events are ordered by time (a tool's result at the tool span's
end), ties broken by span id, and numbered 1..n per run.

Which spans are runs: each dialect's own runs (GenAI ``invoke_agent``, OpenInference
``AGENT`` spans with ``agent.name``), an OpenInference trace root, and, in a trace with
no run at all, its root span. A span whose parent has not arrived yet belongs to a
placeholder run (id of that missing span, status ``running``) until the parent comes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ... import contract
from ...managers import OTLP_RUN_PREFIX
from . import genai, openinference
from .decode import Span
from .dialect import MODEL, RUN, TOOL, SpanFacts, messages_text

# First match wins; GenAI, which applies to every span, is the fallback.
DIALECTS = (openinference, genai)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AWAITING = "(awaiting parent span)"
EVENT_SPAN = "span"


def dialect_of(span: Span):
    for dialect in DIALECTS:
        if dialect.applies(span):
            return dialect
    return genai


def run_id(trace_id: str, span_id: str) -> str:
    """Deterministic, so the same span always lands on the same run; the purge reads the
    trace id back out of it (managers.OTLP_RUN_PREFIX)."""
    return f"{OTLP_RUN_PREFIX}{trace_id}-{span_id}"


def when(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)


def _name(value: str) -> str:
    return value[: contract.NAME_MAX_LENGTH]


class _Run:
    __slots__ = ("span", "facts", "id", "parent", "events", "tokens", "tools", "models")

    def __init__(self, run_key, span, facts):
        self.span = span
        self.facts = facts
        self.id = run_key
        self.parent = ""
        self.events = []  # (time_ns, rank, span_id, type, payload)
        self.tokens = [0, 0, 0]
        self.tools = 0
        self.models = []  # (start_ns, end_ns, span_id, facts)


def assemble(
    spans: dict[str, Span],
) -> tuple[list[contract.SkillRun], list[contract.SkillRunLog]]:
    if not spans:
        return [], []
    trace_id = next(iter(spans.values())).trace_id
    facts: dict[str, SpanFacts] = {sid: dialect_of(s).read(s) for sid, s in spans.items()}
    roots = sorted(sid for sid, s in spans.items() if not s.parent_id)
    runs_at = {sid for sid, f in facts.items() if f.role == RUN}
    runs_at.update(sid for sid in roots if facts[sid].root_is_run)
    if not runs_at:
        runs_at.update(roots)

    owner_cache: dict[str, str | None] = {}

    def owner(sid: str) -> str | None:
        """The nearest run strictly above ``sid``: a run span id, ``?<missing id>`` for a
        placeholder, or None (outside every run)."""
        path = []
        seen = {sid}
        parent = spans[sid].parent_id
        while True:
            if not parent:
                found = None
            elif parent not in spans:
                found = "?" + parent
            elif parent in runs_at:
                found = parent
            elif parent in owner_cache:
                found = owner_cache[parent]
            elif parent in seen:  # a parent cycle (hostile input): outside every run
                found = None
            else:
                seen.add(parent)
                path.append(parent)
                parent = spans[parent].parent_id
                continue
            break
        for p in path:
            owner_cache[p] = found
        return found

    inherited: dict[tuple[str, str], str] = {}

    def inherit(sid: str, attr: str) -> str:
        """The span's own caller/channel, else its nearest ancestor's that has one."""
        chain = []
        current = sid
        value = ""
        seen = set()
        while current in spans and current not in seen:
            key = (current, attr)
            if key in inherited:
                value = inherited[key]
                break
            seen.add(current)
            chain.append(current)
            value = getattr(facts[current], attr)
            if value:
                break
            current = spans[current].parent_id
        for c in chain:
            inherited[(c, attr)] = value
        return value

    runs: dict[str, _Run] = {}
    for sid in runs_at:
        runs[sid] = _Run(run_id(trace_id, sid), spans[sid], facts[sid])

    def run_for(key: str) -> _Run:
        run = runs.get(key)
        if run is None:  # a placeholder for a span not received yet
            run = runs[key] = _Run(run_id(trace_id, key[1:]), None, None)
        return run

    for sid in sorted(spans):
        span, f = spans[sid], facts[sid]
        if sid in runs_at:
            above = owner(sid)
            run = runs[sid]
            if above is not None:
                run.parent = run_for(above).id
                run_for(above)  # make sure a placeholder parent exists
            if f.run.error_detail:
                when_ns = next((t for n, t, _ in span.events if n == "exception"), span.end_ns)
                run.events.append(
                    (
                        when_ns,
                        2,
                        sid,
                        contract.EVENT_ERROR,
                        {"span_id": sid, "error": f.run.error, "detail": f.run.error_detail},
                    )
                )
            if f.role in (MODEL, TOOL):  # a root promoted to a run keeps its own event
                _add_events(run, span, f)
            continue
        above = owner(sid)
        if above is None:
            continue  # above or beside every run (a workflow wrapper): no event
        _add_events(run_for(above), span, f)

    out_runs: list[contract.SkillRun] = []
    out_logs: list[contract.SkillRunLog] = []
    for key in sorted(runs):
        run = runs[key]
        run.events.sort(key=lambda e: (e[0], e[1], e[2]))
        out_runs.append(_row(run, key, runs, spans, facts, inherit))
        for sequence, (time_ns, _, _, event_type, payload) in enumerate(run.events, 1):
            out_logs.append(
                contract.SkillRunLog(
                    run_id=run.id,
                    sequence=sequence,
                    event_type=event_type,
                    payload=payload,
                    created_at=when(time_ns),
                )
            )
    return out_runs, out_logs


def _add_events(run: _Run, span: Span, f: SpanFacts) -> None:
    sid = span.span_id
    if f.role == MODEL:
        run.events.append((span.start_ns, 0, sid, contract.EVENT_STEP, f.event))
        if f.tokens:
            for i in range(3):
                run.tokens[i] += f.tokens[i]
        run.models.append((span.start_ns, span.end_ns, sid, f))
    elif f.role == TOOL:
        run.events.append((span.start_ns, 0, sid, contract.EVENT_TOOL_CALL, f.event))
        run.events.append((span.end_ns, 1, sid, contract.EVENT_TOOL_RESULT, f.result))
        run.tools += 1
    else:
        run.events.append((span.start_ns, 0, sid, EVENT_SPAN, f.event))


def _row(run: _Run, key, runs, spans, facts, inherit) -> contract.SkillRun:
    models = sorted(run.models)
    if run.span is None:  # placeholder: the run's own span has not arrived
        times = [e[0] for e in run.events] + [
            r.span.start_ns for r in runs.values() if r.span is not None and r.parent == run.id
        ]
        hint = ""
        for _, _, sid, _, _ in sorted(run.events, key=lambda e: (e[0], e[2])):
            attrs = spans[sid].attrs
            hint = attrs.get("gen_ai.agent.name") or attrs.get("agent.name") or ""
            if isinstance(hint, str) and hint:
                break
            hint = ""
        return contract.SkillRun(
            id=run.id,
            skill_id=_name(hint or AWAITING),
            inputs={},
            started_at=when(min(times)) if times else EPOCH,
            status=contract.STATUS_RUNNING,
            tool_calls_count=run.tools,
            total_input_tokens=run.tokens[0],
            total_output_tokens=run.tokens[1],
            total_thinking_tokens=run.tokens[2],
        )
    span, f = run.span, run.facts
    inputs = f.run.inputs
    if inputs is None:
        first_model = next((m for m in models if m[3].input_messages), None)
        inputs = {"messages": first_model[3].input_messages} if first_model else {}
    if f.extra_inputs:
        inputs = {**inputs, **f.extra_inputs}
    output = f.run.output
    if output is None:
        last = [m for m in sorted(models, key=lambda m: (m[1], m[2])) if m[3].output_messages]
        output = messages_text(last[-1][3].output_messages) if last else ""
    sid = span.span_id
    return contract.SkillRun(
        id=run.id,
        skill_id=_name(f.run.skill_id),
        caller_id=_name(inherit(sid, "caller_id")),
        channel_id=_name(inherit(sid, "channel_id")),
        inputs=inputs if isinstance(inputs, dict) else {"input": inputs},
        started_at=when(span.start_ns),
        finished_at=when(span.end_ns),
        status=contract.STATUS_ERROR if span.error else contract.STATUS_OK,
        output=output,
        error=f.run.error,
        tool_calls_count=run.tools,
        runtime_seconds=span.duration,
        parent_run_id=run.parent,
        total_input_tokens=run.tokens[0],
        total_output_tokens=run.tokens[1],
        total_thinking_tokens=run.tokens[2],
    )
