"""OTLP/HTTP request bodies to message objects, and one received span to a plain ``Span``.

Parsing is the opentelemetry-proto message classes' (upb, in C): no protobuf is parsed by
hand. JSON bodies follow the OTLP JSON encoding (ids as hex, not base64 as protobuf's own
JSON mapping would have them), so the ids are rewritten before json_format reads them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

MAX_BODY_BYTES = 20 * 2**20
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# Year 9999 ends here; later times cannot be stored as a datetime by either database driver.
MAX_TIME_NS = 253402300799 * 10**9
STATUS_ERROR = Status.STATUS_CODE_ERROR
ZERO_TRACE = bytes(16)
ZERO_SPAN = bytes(8)


class BodyError(ValueError):
    """The body as a whole cannot be read: HTTP ``status`` with this message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Refused(ValueError):
    """One span cannot be stored; the message says why (it goes into partial_success)."""


def clean(text: str) -> str:
    """NUL replaced (PostgreSQL stores none). A string read from a protobuf message holds no
    surrogate: upb accepts only valid UTF-8, and JSON bodies have theirs replaced before
    parsing (_without_surrogates). A substring test is ~10x cheaper than the regex."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def inflate(body: bytes, encoding: str, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body decompressed, refused (413) as soon as it passes ``limit``.

    zlib's max_length stops the inflation there: a gzip bomb costs at most ``limit`` bytes
    of memory, never its full size.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise BodyError(415, f"unsupported Content-Encoding {encoding!r} (use gzip)")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, f"the gzip body does not decompress: {exc}") from None
    if len(data) > limit:
        raise BodyError(413, f"the decompressed body is over {limit} bytes")
    if not inflater.eof:
        raise BodyError(400, "the gzip body is truncated")
    return data


def parse_request(body: bytes, kind: str) -> ExportTraceServiceRequest:
    """An ExportTraceServiceRequest from a protobuf or OTLP JSON body; BodyError(400)."""
    request = ExportTraceServiceRequest()
    if kind == PROTOBUF:
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise BodyError(400, f"the protobuf body does not parse: {exc}") from None
        return request
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BodyError(400, f"the JSON body does not parse: {exc}") from None
    if not isinstance(document, dict):
        raise BodyError(400, "the JSON body must be an object (ExportTraceServiceRequest)")
    try:
        if b"\\u" in body:
            # Escapes can spell lone surrogates, which protobuf strings cannot hold:
            # replaced as everywhere else (clean), so the span is stored, not refused.
            document = _without_surrogates(document)
        _hex_ids_to_base64(document)
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise BodyError(400, f"the JSON body is not an ExportTraceServiceRequest: {exc}") from None
    return request


def _hex_ids_to_base64(document: dict) -> None:
    """OTLP JSON carries ids as hex; protobuf's JSON mapping reads bytes as base64."""
    for resource_spans in _list(document, "resourceSpans", "resource_spans"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                if not isinstance(span, dict):
                    continue
                for key in ("traceId", "trace_id", "spanId", "span_id", "parentSpanId",
                            "parent_span_id"):  # fmt: skip
                    if key in span:
                        span[key] = _hex_to_base64(span[key])
                for link in _list(span, "links"):
                    if isinstance(link, dict):
                        for key in ("traceId", "trace_id", "spanId", "span_id"):
                            if key in link:
                                link[key] = _hex_to_base64(link[key])


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value):
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


def _list(obj, *keys) -> list:
    if not isinstance(obj, dict):
        return []
    for key in keys:
        value = obj.get(key)
        if isinstance(value, list):
            return value
    return []


def _hex_to_base64(value):
    """A hex id as base64; anything else (not hex) becomes an empty id, which the span
    check then refuses with a message naming the field."""
    if not isinstance(value, str):
        return ""
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        return base64.b64encode(b"\xff").decode()  # one byte: "wrong length"


def response_body(kind: str, rejected: int, message: str) -> bytes:
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if kind == PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def status_body(kind: str, code: int, message: str) -> bytes:
    """A google.rpc.Status, as OTLP/HTTP answers errors (code: the gRPC code)."""
    from google.rpc.status_pb2 import Status as RpcStatus

    status = RpcStatus(code=code, message=message)
    if kind == PROTOBUF:
        return status.SerializeToString()
    return json_format.MessageToJson(status, indent=None).encode()


# --- one span ----------------------------------------------------------------------------


@dataclass(slots=True)
class Span:
    """A received span, checked and cleaned: what the dialects read."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_ns: int
    end_ns: int
    error: bool
    status_message: str
    attrs: dict
    # (name, time_ns, attributes)
    events: list = field(default_factory=list)

    @property
    def duration(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def check(span: ProtoSpan) -> tuple[str, str]:
    """(trace id, span id) as hex, or Refused naming what is wrong with the span."""
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if len(trace_id) != 16 or trace_id == ZERO_TRACE:
        raise Refused(f"trace_id must be 16 bytes, not all zero (got {len(trace_id)} bytes)")
    if len(span_id) != 8 or span_id == ZERO_SPAN:
        raise Refused(f"span_id must be 8 bytes, not all zero (got {len(span_id)} bytes)")
    if len(parent) not in (0, 8):
        raise Refused(f"parent_span_id must be empty or 8 bytes (got {len(parent)} bytes)")
    if span.start_time_unix_nano == 0:
        raise Refused("start_time_unix_nano is 0 (missing)")
    if span.start_time_unix_nano > MAX_TIME_NS:
        raise Refused("start_time_unix_nano is after the year 9999")
    if span.end_time_unix_nano > MAX_TIME_NS:
        raise Refused("end_time_unix_nano is after the year 9999")
    return trace_id.hex(), span_id.hex()


def to_span(span: ProtoSpan, trace_id: str, span_id: str) -> Span:
    parent = span.parent_span_id
    start = span.start_time_unix_nano
    # An end before the start (or none) is a zero-length span, not a negative runtime.
    end = max(span.end_time_unix_nano, start)
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent.hex() if parent and parent != ZERO_SPAN else "",
        name=clean(span.name),
        start_ns=start,
        end_ns=end,
        error=span.status.code == STATUS_ERROR,
        status_message=clean(span.status.message),
        attrs=attributes(span.attributes),
        events=[
            (clean(e.name), e.time_unix_nano or start, attributes(e.attributes))
            for e in span.events
        ],
    )


def attributes(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, v = pair.key, pair.value
        if "\x00" in key:
            key = clean(key)
        if v.WhichOneof("value") == "string_value":  # most values: inlined
            text = v.string_value
            out[key] = text.replace("\x00", "\ufffd") if "\x00" in text else text
        else:
            out[key] = value(v)
    return out


def value(v, depth: int = 0):
    """An AnyValue as plain JSON-able Python: bytes as base64, non-finite floats as text."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return clean(v.string_value)
    if which == "int_value" or which == "bool_value":
        return getattr(v, which)
    if which == "double_value":
        d = v.double_value
        return d if math.isfinite(d) else str(d)
    if depth > 64:
        return "(nested too deep)"
    if which == "array_value":
        return [value(item, depth + 1) for item in v.array_value.values]
    if which == "kvlist_value":
        return {clean(kv.key): value(kv.value, depth + 1) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return binascii.b2a_base64(v.bytes_value, newline=False).decode()
    return None
