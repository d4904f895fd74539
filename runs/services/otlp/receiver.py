"""One OTLP/HTTP export request: decode, check each span, store each trace whole.

Every trace the request touches is re-derived from all of its spans (those stored before
plus those received now, a re-sent span replacing its earlier copy) and its runs and
events replaced, so a replay, a retry or a trace split over requests in any order ends in
exactly the rows that one request with every span would give.

All the traces of a request are written in one transaction (a commit per trace would cost
a WAL flush each: 45 per 512-span export). A trace is thus never half-written. If that
transaction fails on the data (a run id already taken by another writer, say), each trace
is tried alone, and the traces that still fail are refused in partial_success while the
others are stored.

A transaction that PostgreSQL ends as a deadlock victim or a serialization failure (two
exports whose writes reach the same roll-up rows in the triggers, in different orders) is
run again here, up to RETRIES times: nothing of it was written, and retrying in process
costs one more transaction instead of the exporter's 503, back-off and whole re-send.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import DataError, IntegrityError, OperationalError
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

from ...models import OtlpTrace
from .assemble import assemble
from .decode import (
    JSON,
    PROTOBUF,
    BodyError,
    ProtoSpan,
    Refused,
    Span,
    check,
    inflate,
    media_type,
    parse_request,
    to_span,
)

logger = logging.getLogger(__name__)
MAX_MESSAGES = 5
RETRIES = 3
# deadlock_detected, serialization_failure: the transaction was rolled back whole.
RETRIED_SQLSTATES = frozenset({"40P01", "40001"})


@dataclass
class Outcome:
    accepted: int = 0
    rejected: int = 0
    messages: list[str] = field(default_factory=list)
    traces: int = 0

    def refuse(self, count: int, message: str) -> None:
        self.rejected += count
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)

    @property
    def message(self) -> str:
        if not self.rejected:
            return ""
        text = "; ".join(self.messages)
        return f"{self.rejected} span(s) refused: {text}"


def body_kind(content_type: str) -> str:
    """PROTOBUF or JSON; BodyError(415) for any other media type."""
    kind = media_type(content_type)
    if kind not in (PROTOBUF, JSON):
        raise BodyError(415, f"unsupported Content-Type {kind!r}: use {PROTOBUF} or {JSON}")
    return kind


def ingest(body: bytes, kind: str, content_encoding: str = "") -> Outcome:
    """Store what the body holds. BodyError for a body refused whole; database errors
    other than refused traces propagate (the view answers 503)."""
    request = parse_request(inflate(body, content_encoding), kind)
    outcome = Outcome()
    received: dict[str, dict[str, tuple[ProtoSpan, Span]]] = {}
    index = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for proto in scope_spans.spans:
                index += 1
                try:
                    trace_id, span_id = check(proto)
                    span = to_span(proto, trace_id, span_id)
                except Refused as exc:
                    outcome.refuse(1, f"span #{index}: {exc}")
                    continue
                received.setdefault(trace_id, {})[span_id] = (proto, span)
    if not received:
        return outcome

    def derive(trace_id: str, stored: bytes | None):
        new = received[trace_id]
        protos = []
        spans = {}
        if stored:
            for proto in ScopeSpans.FromString(stored).spans:
                try:
                    span_id = check(proto)[1]
                    if span_id not in new:
                        spans[span_id] = to_span(proto, trace_id, span_id)
                        protos.append(proto)
                except Refused as exc:  # stored by an older version with other rules
                    logger.warning("stored span of %s skipped: %s", trace_id, exc)
        for span_id, (proto, span) in new.items():
            spans[span_id] = span
            protos.append(proto)
        data = ScopeSpans(spans=protos).SerializeToString()
        runs, logs = assemble(spans)
        return data, len(protos), runs, logs

    try:
        _store(list(received), derive)
    except (IntegrityError, DataError):
        # Find the trace(s) at fault; store the others.
        for trace_id in sorted(received):
            try:
                _store([trace_id], derive)
            except (IntegrityError, DataError) as exc:
                logger.warning("OTLP trace %s refused: %s", trace_id, exc)
                outcome.refuse(
                    len(received[trace_id]),
                    f"trace {trace_id}: the database refused it ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200]})",
                )
                del received[trace_id]
    outcome.traces = len(received)
    outcome.accepted = sum(len(spans) for spans in received.values())
    return outcome


def _store(trace_ids: list[str], derive) -> None:
    """OtlpTrace.objects.store, run again when the database rolled it back as a deadlock
    victim or a serialization failure (other OperationalErrors propagate: 503)."""
    for attempt in range(1, RETRIES + 1):
        try:
            OtlpTrace.objects.store(trace_ids, derive)
            return
        except OperationalError as exc:
            state = getattr(exc.__cause__, "sqlstate", None)
            if state not in RETRIED_SQLSTATES or attempt == RETRIES:
                raise
            logger.warning("OTLP export retried (%s, attempt %d): %s", state, attempt, exc)
