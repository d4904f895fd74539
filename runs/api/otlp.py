"""POST /v1/traces: the OTLP/HTTP trace receiver (OpenTelemetry exporters post here).

Authentication is the API token only, as ``Authorization: Bearer <key>`` (what
OTEL_EXPORTER_OTLP_HEADERS sets) or ``Token <key>``: no session, so no CSRF. The user
needs the permissions of recording through the API. Every answer is in the request's
content type (protobuf or JSON): ExportTraceServiceResponse on success, a google.rpc.Status
otherwise, as the OTLP specification has it, so exporters know what to retry (429, 502,
503, 504) and what not (400, 401, 403, 413, 415).
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, TokenAuthentication
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from ..services.otlp import decode, receiver
from .permissions import RunModelPermissions

logger = logging.getLogger(__name__)

RECORD = ["runs.add_skillrun", "runs.change_skillrun", "runs.add_skillrunlog"]
# gRPC status codes for the google.rpc.Status body.
GRPC_CODES = {400: 3, 401: 16, 403: 7, 405: 12, 413: 8, 415: 3, 429: 8, 503: 14}
RETRY_AFTER_SECONDS = "5"


def _token_authentication() -> type[TokenAuthentication]:
    """The API's own token class (REST_FRAMEWORK settings), with its checks and throttles."""
    for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES:
        if issubclass(cls, TokenAuthentication):
            return cls
    return TokenAuthentication


class BearerOrTokenAuthentication(BaseAuthentication):
    """The API token as ``Bearer <key>`` (OTLP exporters) or ``Token <key>``, checked by
    the API's token authentication: the Bearer scheme is read as that class's keyword."""

    def authenticate(self, request):
        tokens = _token_authentication()()
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "bearer":
            request.META["HTTP_AUTHORIZATION"] = f"{tokens.keyword} {rest}"
            # request.headers is built from META once and cached: build it again.
            request._request.__dict__.pop("headers", None)
        elif scheme.lower() != tokens.keyword.lower():
            return None
        return tokens.authenticate(request)

    def authenticate_header(self, request):
        return "Bearer"


def _kind(request) -> str:
    """The answer's encoding: the request's, JSON when it sent something else."""
    kind = decode.media_type(request.META.get("CONTENT_TYPE", ""))
    return kind if kind in (decode.PROTOBUF, decode.JSON) else decode.JSON


def _error(request, status: int, message: str) -> HttpResponse:
    kind = _kind(request)
    body = decode.status_body(kind, GRPC_CODES.get(status, 2), message)
    response = HttpResponse(body, status=status, content_type=kind)
    if status == 503:
        response["Retry-After"] = RETRY_AFTER_SECONDS
    return response


class TracesView(APIView):
    authentication_classes = [BearerOrTokenAuthentication]
    permission_classes = [RunModelPermissions]
    # Every method needs them: only POST exists, the others get 405 once authorised.
    required_permissions = dict.fromkeys(
        ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"), RECORD
    )
    parser_classes = []
    # Not in the OpenAPI document: OTLP is specified elsewhere (protobuf, not JSON schemas).
    schema = None

    def handle_exception(self, exc):
        if isinstance(exc, OperationalError | InterfaceError):
            # Also while authenticating (the token lookup), before post() runs.
            logger.error("OTLP export not stored, database unavailable: %s", exc)
            return _error(self.request, 503, "the database is unavailable; retry shortly")
        if isinstance(exc, exceptions.APIException):
            status = exc.status_code
            message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            response = _error(self.request, status, str(message))
            if status == 401:
                response["WWW-Authenticate"] = "Bearer"
            wait = getattr(exc, "wait", None)
            if wait:
                response["Retry-After"] = str(int(wait) + 1)
            return response
        return super().handle_exception(exc)

    def post(self, request):
        meta = request.META
        try:
            kind = receiver.body_kind(meta.get("CONTENT_TYPE", ""))
            body = self._read_body(request)
            outcome = receiver.ingest(body, kind, meta.get("HTTP_CONTENT_ENCODING", ""))
        except decode.BodyError as exc:
            return _error(request, exc.status, str(exc))
        body = decode.response_body(kind, outcome.rejected, outcome.message)
        return HttpResponse(body, status=200, content_type=kind)

    @staticmethod
    def _read_body(request) -> bytes:
        """At most MAX_BODY_BYTES: a longer Content-Length is refused before reading."""
        limit = decode.MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise decode.BodyError(400, "Content-Length is not a number") from None
        if length > limit:
            raise decode.BodyError(413, f"the body is over {limit} bytes")
        data = request._request.read(limit + 1)
        if len(data) > limit:
            raise decode.BodyError(413, f"the body is over {limit} bytes")
        return data
