"""Export and import over the API: one call tree, a filtered list, and an import.

    GET  /api/runs/<id>/export/                      the call tree as one JSON document
    GET  /api/runs/export/?format=jsonl|csv&events=1&<the list's filters>
    POST /api/runs/import/[?replace=1]               JSON Lines (or a tree document) body

The bytes come from runs.services.export, streamed (StreamingHttpResponse: a worker holds
one batch of runs whatever the export's size); the import is runs.services.importer with
the whole body checked before anything is written.
"""

from __future__ import annotations

import re

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from .. import contract
from ..filters import RunFilterSet, parse_bool
from ..models import SkillRun
from ..services import export, importer
from .permissions import VIEW_RUNS
from .views import (
    BAD_REQUEST,
    FORBIDDEN,
    NOT_FOUND,
    NOT_LOGGED_IN,
    READ_ERRORS,
    READ_METHODS,
    RUN_ID,
    ApiView,
    BadInput,
    BodyTooLarge,
    _list_parameters,
    check_query,
    error_response,
)

DEFAULT_IMPORT_MAX_BYTES = 64 * 2**20
IMPORT_PERMISSIONS = ["runs.add_skillrun", "runs.change_skillrun", "runs.add_skillrunlog"]
# Replacing a run's events deletes the stored ones.
REPLACE_PERMISSIONS = IMPORT_PERMISSIONS + ["runs.delete_skillrunlog"]
IMPORT_MEDIA_TYPES = ("application/x-ndjson", "application/jsonl", "application/json")
CONTENT_TYPES = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}


def import_max_bytes() -> int:
    from django.conf import settings

    return getattr(settings, "SKILLAUDIT_IMPORT_MAX_BODY_BYTES", DEFAULT_IMPORT_MAX_BYTES)


def attachment(chunks, content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def tree_filename(run_id: str) -> str:
    """A file name safe in a header: the id's first letters, digits, dots and dashes."""
    return "run-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)[:60].strip("._") or "x") + ".json"


class StreamingView(ApiView):
    """Errors are JSON whatever the Accept header asks for; a download has its own type."""

    def perform_content_negotiation(self, request, force=False):
        return JSONRenderer(), JSONRenderer.media_type


class RunExportView(StreamingView):
    @extend_schema(
        operation_id="runs_export",
        summary="A run's whole call tree, every field and event, as one JSON document",
        description="From the root of the run's parent chain, as the tree page shows it: "
        '`{"format": "skillaudit-runs", "version": 1, "kind": "tree", "run_id", "root_id", '
        '"exported_at", "runs": [...]}`, runs oldest first with their `events`. Streamed. '
        f"A tree of more than {export.TREE_CAP:,} runs is refused (400).",
        parameters=[RUN_ID],
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT),
            404: NOT_FOUND,
            **READ_ERRORS,
        },
    )
    def get(self, request, run_id):
        check_query(request, ())
        try:
            plan = export.tree_export(run_id)
        except contract.NotFound:
            raise exceptions.NotFound("no such run") from None
        except export.TreeTooLarge as exc:
            raise exceptions.ValidationError({"run_id": [str(exc)]}) from None
        return attachment(plan.chunks(), "application/json", tree_filename(plan.root_id))


class RunsExportView(StreamingView):
    @extend_schema(
        operation_id="runs_export_list",
        summary="The runs the list's filters select, as JSON Lines or CSV (streamed)",
        description="Newest first. JSON Lines: one run a line, every field; `events=1` adds "
        "each run's events. CSV: the summary columns (output and error cut to previews), "
        "UTF-8 with a byte-order mark; text cells starting with = + - @ tab CR or ' get a "
        "leading ' so spreadsheets show them as text.",
        parameters=[
            OpenApiParameter("format", OpenApiTypes.STR, enum=["jsonl", "csv"]),
            OpenApiParameter("events", OpenApiTypes.BOOL, description="jsonl: with events"),
            *_list_parameters()[:-2],
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR),
            **READ_ERRORS,
        },
    )
    def get(self, request):
        filterset = RunFilterSet(
            request.GET, queryset=SkillRun.objects.all(), extra_params=("format", "events")
        )
        if not filterset.is_valid():
            raise exceptions.ValidationError(filterset.error_messages)
        fmt = request.GET.get("format") or "jsonl"
        if fmt not in CONTENT_TYPES:
            raise exceptions.ValidationError({"format": ["must be jsonl or csv"]})
        try:
            events = parse_bool(request.GET.get("events"))
        except ValueError as exc:
            raise exceptions.ValidationError({"events": [str(exc)]}) from None
        if events and fmt == "csv":
            raise exceptions.ValidationError({"events": ["needs format=jsonl"]})
        if fmt == "csv":
            chunks = export.csv_chunks(filterset.qs)
        else:
            chunks = export.jsonl_chunks(filterset.qs, events)
        return attachment(chunks, CONTENT_TYPES[fmt], f"runs.{fmt}")


class BoundedBytesParser(BaseParser):
    """The raw body, at most import_max_bytes() (413 beyond)."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = import_max_bytes()
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge()
        return raw


class RunsImportView(ApiView):
    parser_classes = [BoundedBytesParser]
    required_permissions = {
        **{method: [VIEW_RUNS] for method in READ_METHODS},
        "POST": IMPORT_PERMISSIONS,
    }

    def get_permissions(self):
        if self.request.GET.get("replace") not in (None, "", "0", "false", "off", "no"):
            self.required_permissions = {**self.required_permissions, "POST": REPLACE_PERMISSIONS}
        return super().get_permissions()

    @extend_schema(
        operation_id="runs_import",
        summary="Import runs: JSON Lines as the export writes them (or a tree document)",
        description="Every line is checked before anything is written (400 naming the line). "
        "Runs linked by parent_run_id are one tree, written in one transaction or skipped "
        "whole. A run stored with the same content is left alone; one that differs is a "
        "conflict (409, with the id and the first differing field; the other trees are "
        "imported) unless `replace=1` (which also needs runs.delete_skillrunlog).",
        parameters=[OpenApiParameter("replace", OpenApiTypes.BOOL)],
        request={media: OpenApiTypes.STR for media in IMPORT_MEDIA_TYPES},
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="the import's summary"),
            409: OpenApiResponse(OpenApiTypes.OBJECT, description="the summary, with conflicts"),
            400: BAD_REQUEST,
            401: NOT_LOGGED_IN,
            403: FORBIDDEN,
            413: error_response("body too large"),
        },
    )
    def post(self, request):
        check_query(request, ("replace",))
        try:
            replace = parse_bool(request.GET.get("replace"))
        except ValueError as exc:
            raise exceptions.ValidationError({"replace": [str(exc)]}) from None
        body = request.data
        if not isinstance(body, bytes) or not body.strip():
            raise BadInput("the body is empty")
        try:
            records = importer.parse_all(body)
        except importer.MalformedRecord as exc:
            raise BadInput(str(exc)) from None
        summary = importer.Importer(replace=replace).import_records(records)
        code = status.HTTP_200_OK if summary.ok else status.HTTP_409_CONFLICT
        return Response(summary.as_dict(), status=code)
