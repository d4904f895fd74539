"""The JSON API: runs read with the dashboard's filters, and recorded over HTTP.

Reads go through selectors and managers (the list through the same RunFilterSet as
/runs/), writes through DjangoStorage so the contract's checks and cleaning apply. Contract
errors map to HTTP: NotFound 404, Conflict 409, InvalidInput 400; any other exception is a
server error and stays one (a bug must not look like the client's mistake). The
/api/contract/<method>/ endpoints are in contract_methods.py.
"""

from __future__ import annotations

import functools
import json
import math
import re
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import exceptions, renderers, status
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from .. import contract, cursors, jsontext, pricing, selectors
from ..filters import (
    STATUS_CHOICES,
    IdFilter,
    IsoDateTimeFilter,
    RunFilterSet,
    StrictBooleanFilter,
    parameter_problems,
    parse_bool,
)
from ..models import SkillRun, SkillRunLog
from ..selectors import with_has_children
from ..storage import DjangoStorage
from . import serializers as s
from .permissions import VIEW_RUNS

DEFAULT_PAGE_SIZE = contract.DEFAULT_LIMIT
MAX_PAGE_SIZE = contract.MAX_LIMIT
DEFAULT_LOG_PAGE = 100
MAX_LOG_PAGE = 1000
# Below Django's DATA_UPLOAD_MAX_NUMBER_FIELDS (1000 parameters in all).
MAX_SKILLS = 500
DEFAULT_MAX_BODY_BYTES = 16 * 2**20

WRITE_RUNS = ["runs.add_skillrun", "runs.change_skillrun"]
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def max_body_bytes() -> int:
    return getattr(settings, "SKILLAUDIT_API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)


# --- errors ------------------------------------------------------------------------------


class BadInput(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "invalid input"
    default_code = "invalid"


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "already stored"
    default_code = "conflict"


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"

    def __init__(self, limit: int | None = None):
        super().__init__(f"the body is larger than {limit or max_body_bytes()} bytes")


class Unavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"


@contextmanager
def contract_errors():
    """Storage calls inside answer NotFound with 404, Conflict with 409, InvalidInput with
    400. Other errors (a plain ValueError included) are bugs: they stay 500s."""
    try:
        yield
    except contract.NotFound as exc:
        raise exceptions.NotFound(f"no run {contract.clean_text(str(exc))}") from None
    except contract.Conflict as exc:
        raise ConflictError(contract.clean_text(str(exc))) from None
    except contract.InvalidInput as exc:
        raise BadInput(contract.clean_text(str(exc))) from None


def error_response(text: str) -> OpenApiResponse:
    return OpenApiResponse(s.ErrorSerializer, description=text)


BAD_REQUEST = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="invalid input: {parameter or field: [messages]}, or {detail: message}",
)
NOT_LOGGED_IN = error_response("no valid token or session")
FORBIDDEN = error_response("missing permission (or CSRF token, for a session)")
NOT_FOUND = error_response("no such run")
# gunicorn itself answers 414 (in HTML) to a request line over 4094 bytes.
TOO_LONG = OpenApiResponse(description="URL too long for the server (gunicorn: 4094 bytes)")
READ_ERRORS = {
    400: BAD_REQUEST,
    401: NOT_LOGGED_IN,
    403: FORBIDDEN,
    (414, "text/html"): TOO_LONG,
}
WRITE_ERRORS = {
    **READ_ERRORS,
    413: error_response("body too large"),
    415: error_response("the body must be application/json"),
}


# CSRF-exempt: it changes nothing, and a POST to an unknown path should get this JSON 404,
# not Django's HTML CSRF page.
@csrf_exempt
def not_found(request, *args, **kwargs):
    return JsonResponse({"detail": "no such endpoint (API paths end with a slash)"}, status=404)


# --- request bodies ----------------------------------------------------------------------


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


class BoundedJSONParser(BaseParser):
    """A JSON object of bounded size and depth; every way to get it wrong is a 4xx.

    The recording endpoints (views with ``recording = True``) take bodies up to
    SKILLAUDIT_API_MAX_BODY_BYTES (16 MiB); every other endpoint up to Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB); above either, 413. Not a JSONParser subclass on
    purpose: DRF hands JSONParser subclasses ``request.body``, which Django refuses past its
    2.5 MB with a 400, whatever the endpoint documents; this parser reads the stream itself.
    DRF's own parser also lets RecursionError from deep nesting through as a 500 and takes
    any JSON value.
    """

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        view = (parser_context or {}).get("view")
        if getattr(view, "recording", False):
            limit = max_body_bytes()
        else:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or max_body_bytes()
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(limit)
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise BodyTooLarge(limit)
        try:
            data = json.loads(raw, parse_float=_finite_float, parse_constant=_refuse_constant)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {str(exc)[:200]}") from None
        if not isinstance(data, dict):
            raise exceptions.ParseError("the body must be a JSON object")
        # Depth beyond what json.loads survives is refused above; the fields that take
        # free JSON (inputs, payload) enforce MAX_JSON_DEPTH before anything recurses.
        return data


# --- query strings -----------------------------------------------------------------------


def check_query(request, allowed, repeatable=()) -> None:
    """Unknown or repeated parameters are refused: ignoring them could widen a result."""
    problems = parameter_problems(request.GET, set(allowed))
    for name in repeatable:
        problems.pop(name, None)
    if problems:
        raise exceptions.ValidationError(problems)


_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,20}")


def int_param(request, name: str, default, low: int, high: int):
    raw = request.GET.get(name)
    if raw in (None, ""):
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise exceptions.ValidationError({name: ["must be a whole number"]})
    value = int(raw)
    if not low <= value <= high:
        raise exceptions.ValidationError({name: [f"must be between {low} and {high}"]})
    return value


def bool_param(request, name: str) -> bool:
    try:
        return parse_bool(request.GET.get(name))
    except ValueError as exc:
        raise exceptions.ValidationError({name: [str(exc)]}) from None


def cursor_param(request, name: str = "cursor"):
    raw = request.GET.get(name)
    if not raw:
        return None
    try:
        return cursors.decode(raw)
    except cursors.InvalidCursor as exc:
        raise exceptions.ValidationError({name: [str(exc)]}) from None


def next_url(request, **changes) -> str:
    query = request.GET.copy()
    for key, value in changes.items():
        query[key] = value
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


# A JSON answer holds at most RESPONSE_BUDGET bytes of serialized rows (at least one row,
# whatever its size) and says where to go on: `next_offset` (contract methods), `next_cursor`
# (children), `next_after` (events). Whole rows are read BUDGET_BATCH at a time, so a worker
# holds one batch of models and one budget of rows, never a whole limit: 500 runs of 2.6 MB
# inputs were one 1.3 GB answer before. Batches of 20 and of 4 left the same worker memory
# (tests/system/response_memory.py): 4 keeps the peak low.
RESPONSE_BUDGET = 8 * 1024 * 1024
BUDGET_BATCH = 4
# Events are smaller than runs (a payload is one step's): more of them per read.
LOG_BUDGET_BATCH = 50
BUDGET_NOTE = (
    "An answer holds at most 8 MiB of serialized rows (at least one row): when it is cut "
    "there, the link to the rest is set as when the page size is reached."
)


def json_size(row) -> int:
    """The bytes of ``row`` in a JSON answer (UTF-8, as DRF's renderer writes it)."""
    return len(json.dumps(row, cls=JSONEncoder, ensure_ascii=False).encode())


@functools.cache
def _shared_serializer(serializer_class):
    serializer = serializer_class()
    serializer.fields  # noqa: B018 (bound once, here, not by two threads at once)
    return serializer


def representation(serializer_class, instance) -> dict:
    """``serializer_class(instance).data`` as a plain dict, through one shared serializer
    (as DRF's ListSerializer does with its child).

    ``.data`` is a ReturnDict pointing back at its serializer, whose bound fields point at
    it too (``field.parent``) and whose ``instance`` is the run: a reference cycle, so a
    run's inputs outlive the answer until the cyclic collector happens to run. A worker
    that answered 26 MB of runs held ~100 MB more until a gc.collect() (tests/system/
    response_memory.py); with plain dicts the answer is freed the moment it is sent.
    """
    return _shared_serializer(serializer_class).to_representation(instance)


class ByteBudget:
    """Serialized rows added while they fit in ``limit`` bytes; the first always fits."""

    def __init__(self, limit: int | None = None):
        self.limit = RESPONSE_BUDGET if limit is None else limit
        self.rows: list = []
        self.used = 0

    def add(self, row) -> bool:
        """Keep ``row`` and say True, or say False (full: the answer is cut before it)."""
        size = json_size(row)
        if self.rows and self.used + size > self.limit:
            return False
        self.rows.append(row)
        self.used += size
        return True


def keyset_response(request, serializer, rows, more: bool) -> Response:
    """A page of runs: ``results``, and where the next page starts (``next_cursor``, the
    position of the last row, and ``next``, this URL with it) when ``more``."""
    cursor = cursors.encode(rows[-1].started_at, rows[-1].id) if more else None
    return Response(
        {
            "results": serializer(rows, many=True).data,
            "next_cursor": cursor,
            "next": next_url(request, cursor=cursor) if cursor else None,
        }
    )


def run_path(run_id: str) -> str:
    """The URL path of a run: every character quoted, dots too (no dot segments)."""
    return "/api/runs/" + contract.run_id_segment(run_id) + "/"


# --- reading runs ------------------------------------------------------------------------


def with_inputs(rows):
    """Rows from with_inputs_text() with ``inputs`` parsed under a depth guard."""
    for row in rows:
        row.inputs = jsontext.load_object(row.inputs_text)
    return rows


def load_run(run_id: str):
    rows = with_inputs(list(SkillRun.objects.with_inputs_text().filter(pk=run_id)[:1]))
    if not rows:
        raise exceptions.NotFound("no such run")
    return rows[0]


def full_runs(run_ids: list[str]) -> list:
    """Whole runs in the order of run_ids (a run deleted meanwhile is left out)."""
    found = SkillRun.objects.with_inputs_text().in_bulk(run_ids)
    return with_inputs([found[run_id] for run_id in run_ids if run_id in found])


RUN_ID = OpenApiParameter(
    "run_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="the run's id, percent-encoded (it may contain '/')",
)
FULL = OpenApiParameter(
    "full",
    OpenApiTypes.BOOL,
    description="1: whole runs (inputs, output, error) instead of list summaries",
)
PAGE_SIZE = OpenApiParameter(
    "page_size", OpenApiTypes.INT, description=f"1 to {MAX_PAGE_SIZE}, default 50"
)
CURSOR = OpenApiParameter(
    "cursor", OpenApiTypes.STR, description="`next_cursor` of the previous page"
)


def _list_parameters() -> list[OpenApiParameter]:
    """The list's query parameters, read off RunFilterSet so the two cannot drift apart."""
    described = {
        "status": "a status, several separated by commas (`error,timeout`), `failed` "
        "(error, timeout, budget_exceeded), or `stale` (running longer than the stale "
        "threshold)",
        "failed": "1: runs that failed, had a failed tool call or a failed run below them",
        "include_nested": "1: nested runs too (default: top-level runs only)",
        "include_dry_run": "1: dry runs too (default: hidden unless status=dry_run)",
        "q": 'search the runs\' texts and events: words, "a phrase", -excluded (a q with '
        "no word is a 400)",
        "since": "started at or after (ISO 8601, no offset means UTC; a date: its start in "
        "UTC; -1h, -24h, -7d: that long before now)",
        "until": "started before (ISO 8601, no offset means UTC; a date: that whole day "
        "included; -1h, -24h, -7d: that long before now)",
    }
    parameters = []
    for name, field in RunFilterSet.base_filters.items():
        extra = {"description": described.get(name, f"exact {name} id")}
        if isinstance(field, IsoDateTimeFilter):
            kind = OpenApiTypes.STR  # a date-time, a date or -24h
        elif isinstance(field, StrictBooleanFilter):
            kind = OpenApiTypes.BOOL
        elif isinstance(field, IdFilter):
            kind = {"type": "string", "maxLength": contract.NAME_MAX_LENGTH}
        else:
            kind = OpenApiTypes.STR
            extra["enum"] = [value for value, _label in STATUS_CHOICES if value]
        parameters.append(OpenApiParameter(name, kind, **extra))
    return parameters + [CURSOR, PAGE_SIZE]


def _forget_renderer_context(response) -> None:
    """Once rendered, a DRF response needs no renderer context (which holds the response
    itself, the view and the request): see ApiView.dispatch."""
    response.renderer_context = {}


class ApiView(APIView):
    parser_classes = [BoundedJSONParser]
    # Whose model permissions apply (runs.*_skillrun); never evaluated.
    queryset = SkillRun.objects.all()
    storage = DjangoStorage()

    def dispatch(self, request, *args, **kwargs):
        """DRF's dispatch, less its reference cycles around the response: the view points
        at the response (``self.response``) and the response at itself and the view
        (``renderer_context``), so the answer's rows lived until the cyclic collector
        happened to run (a worker held ~35 MB of runs after a 26 MB answer, ~40 MB more
        after each 104 MB one, tests/system/response_memory.py); without them the rows are
        freed by reference counting once the answer is sent."""
        response = super().dispatch(request, *args, **kwargs)
        self.response = None
        if isinstance(response, Response):
            response.add_post_render_callback(_forget_renderer_context)
        return response

    def handle_exception(self, exc):
        # Django refuses some requests itself (thousands of parameters): answer in JSON.
        if isinstance(exc, SuspiciousOperation):
            exc = BadInput(str(exc) or "bad request")
        return super().handle_exception(exc)


class RunListView(ApiView):
    recording = True  # POST starts a run: the recording body limit

    @extend_schema(
        operation_id="runs_list",
        summary="Runs, newest first, with the dashboard's filters",
        description="The same parameters as /runs/, plus keyset paging (`cursor`, "
        "`page_size`). Summaries only: GET a run for its inputs, output and error. "
        "An invalid, unknown or repeated parameter is a 400 naming it.",
        parameters=_list_parameters(),
        responses={200: s.RunSummaryPageSerializer, **READ_ERRORS},
    )
    def get(self, request):
        filterset = RunFilterSet(
            request.GET, queryset=SkillRun.objects.all(), extra_params=("cursor", "page_size")
        )
        if not filterset.is_valid():
            raise exceptions.ValidationError(filterset.error_messages)
        page_size = int_param(request, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        page = selectors.newest_first_page(filterset.qs, page_size, after=cursor_param(request))
        rows = pricing.with_costs(with_has_children(page.rows))
        return keyset_response(request, s.RunSummarySerializer, rows, page.has_older)

    @extend_schema(
        operation_id="runs_start",
        summary="Start a run (start_run)",
        description="Stored with status `running` and no finished_at; started_at defaults "
        "to now. 409 when the id is taken (nothing changes).",
        request=s.RunStartSerializer,
        responses={201: s.RunSerializer, 409: error_response("the run id exists"), **WRITE_ERRORS},
    )
    def post(self, request):
        body = s.RunStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = body.to_contract()
        with contract_errors():
            self.storage.start_run(run)
        stored = load_run(contract.clean_id(run.id))
        return Response(
            s.RunSerializer(stored).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": run_path(stored.id)},
        )


class RunDetailView(ApiView):
    @extend_schema(
        operation_id="runs_get",
        summary="One run, every field (get_run)",
        parameters=[RUN_ID],
        responses={200: s.RunSerializer, 404: NOT_FOUND, **READ_ERRORS},
    )
    def get(self, request, run_id):
        check_query(request, ())
        run = load_run(contract.clean_id(run_id))
        pricing.with_costs([run])
        return Response(s.PricedRunSerializer(run).data)


LOG_WRITE = WRITE_RUNS + ["runs.add_skillrunlog"]


class RunLogsView(ApiView):
    recording = True
    required_permissions = {
        **{method: [VIEW_RUNS] for method in READ_METHODS},
        "POST": LOG_WRITE,
    }

    @extend_schema(
        operation_id="runs_logs_list",
        summary="A run's events in sequence order, paged by sequence",
        description=BUDGET_NOTE + " Go on with `after` = `next_after` (or follow `next`).",
        parameters=[
            RUN_ID,
            OpenApiParameter(
                "after", OpenApiTypes.INT, description="only events with a greater sequence"
            ),
            OpenApiParameter(
                "limit", OpenApiTypes.INT, description=f"1 to {MAX_LOG_PAGE}, default 100"
            ),
        ],
        responses={200: s.LogPageSerializer, 404: NOT_FOUND, **READ_ERRORS},
    )
    def get(self, request, run_id):
        check_query(request, ("after", "limit"))
        after = int_param(request, "after", None, *s.INT64)
        limit = int_param(request, "limit", DEFAULT_LOG_PAGE, 1, MAX_LOG_PAGE)
        run_id = contract.clean_id(run_id)
        if not SkillRun.objects.filter(pk=run_id).exists():
            raise exceptions.NotFound("no such run")
        # A batch of events at a time, up to the limit or the byte budget.
        budget, last, more = ByteBudget(), after, False
        while not more:
            want = min(LOG_BUDGET_BATCH, limit - len(budget.rows))
            rows = list(
                SkillRunLog.objects.for_run(run_id)
                .after_sequence(last)
                .with_payload_text()[: want + 1]
            )
            for row in rows[:want]:
                row.payload = jsontext.load_object(row.payload_text)
                if not budget.add(representation(s.LogSerializer, row)):
                    more = True  # cut at the byte budget
                    break
                last = row.sequence
            else:
                if len(rows) <= want:
                    break  # every event read
                more = len(budget.rows) == limit  # a full page, and more follow
        next_after = last if more else None
        return Response(
            {
                "results": budget.rows,
                "next_after": next_after,
                "next": next_url(request, after=next_after) if more else None,
            }
        )

    @extend_schema(
        operation_id="runs_logs_append",
        summary="Record one event, or a batch of events in one transaction",
        description="A body with `events` is a batch: every event is stored or none is "
        "(409 when any sequence is taken or repeated). Otherwise the body is one event.",
        parameters=[RUN_ID],
        request=PolymorphicProxySerializer(
            component_name="LogAppend",
            serializers=[s.LogEventSerializer, s.LogBatchSerializer],
            resource_type_field_name=None,
        ),
        responses={
            201: s.AppendedSerializer,
            404: NOT_FOUND,
            409: error_response("a sequence is already stored for this run, or repeated"),
            **WRITE_ERRORS,
        },
    )
    def post(self, request, run_id):
        data = request.data
        if "events" in data:
            body = s.LogBatchSerializer(data=data)
            body.is_valid(raise_exception=True)
            events = body.validated_data["events"]
        else:
            body = s.LogEventSerializer(data=data)
            body.is_valid(raise_exception=True)
            events = [body.validated_data]
        logs = s.logs_to_contract(run_id, events)
        with contract_errors():
            self.storage.append_logs(logs)
        return Response(
            {"run_id": contract.clean_id(run_id), "stored": len(logs)},
            status=status.HTTP_201_CREATED,
        )


class RunFinishView(ApiView):
    recording = True

    @extend_schema(
        operation_id="runs_finish",
        summary="Finish a run (finish_run)",
        description="Sets finished_at to now and every stat; calling it again overwrites "
        "(last write wins).",
        parameters=[RUN_ID],
        request=s.RunStatsSerializer,
        responses={200: s.RunSerializer, 404: NOT_FOUND, **WRITE_ERRORS},
    )
    def post(self, request, run_id):
        body = s.RunStatsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run_id = contract.clean_id(run_id)
        with contract_errors():
            self.storage.finish_run(run_id, body.to_contract())
        return Response(s.RunSerializer(load_run(run_id)).data)


class RunChainView(ApiView):
    @extend_schema(
        operation_id="runs_chain",
        summary="The run and its ancestors, root first (walk_parent_chain)",
        description="At most 32 runs; stops at a parent that is no longer stored and at a "
        "repeated run (cycles in corrupted data). `next_cursor` and `next` are always null.",
        parameters=[RUN_ID, FULL],
        responses={200: s.RunsOrSummariesPageSerializer, 404: NOT_FOUND, **READ_ERRORS},
    )
    def get(self, request, run_id):
        check_query(request, ("full",))
        full = bool_param(request, "full")
        with contract_errors():
            chain = SkillRun.objects.parent_chain(contract.clean_id(run_id), summaries=True)
        if full:
            runs = pricing.with_costs(full_runs([run.id for run in chain]))
            data = s.PricedRunSerializer(runs, many=True).data
        else:
            data = s.RunSummarySerializer(
                pricing.with_costs(with_has_children(chain)), many=True
            ).data
        return Response({"results": data, "next_cursor": None, "next": None})


class RunChildrenView(ApiView):
    @extend_schema(
        operation_id="runs_children",
        summary="The runs this run started, oldest first (list_children_by_parent)",
        description="Children outlive a purged parent: they are listed whether or not the "
        "parent is still stored, so an unknown id gives an empty page, not a 404. With "
        "`full=1`: " + BUDGET_NOTE + " Go on with `cursor` = `next_cursor` (or follow `next`).",
        parameters=[RUN_ID, FULL, CURSOR, PAGE_SIZE],
        responses={200: s.RunsOrSummariesPageSerializer, **READ_ERRORS},
    )
    def get(self, request, run_id):
        check_query(request, ("full", "cursor", "page_size"))
        full = bool_param(request, "full")
        page_size = int_param(request, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        rows, more = selectors.oldest_first_page(
            SkillRun.objects.children_of(contract.clean_id(run_id)),
            page_size,
            after=cursor_param(request),
        )
        if not full:
            rows = pricing.with_costs(with_has_children(rows))
            return keyset_response(request, s.RunSummarySerializer, rows, more)
        # Whole runs a few at a time, in the page's order, up to the byte budget.
        budget, last, cut = ByteBudget(), None, False
        for start in range(0, len(rows), BUDGET_BATCH):
            batch = full_runs([row.id for row in rows[start : start + BUDGET_BATCH]])
            for run in pricing.with_costs(batch):
                if not budget.add(representation(s.PricedRunSerializer, run)):
                    cut = True
                    break
                last = run
            if cut:
                break
        if not cut:
            last = rows[-1] if more else None
        cursor = cursors.encode(last.started_at, last.id) if last else None
        return Response(
            {
                "results": budget.rows,
                "next_cursor": cursor,
                "next": next_url(request, cursor=cursor) if cursor else None,
            }
        )


class RunTreeView(ApiView):
    @extend_schema(
        operation_id="runs_tree",
        summary="The whole call tree that contains the run, from its root",
        description="Capped in size and depth like the dashboard's tree (`capped`); safe on "
        "cycles and purged parents.",
        parameters=[RUN_ID],
        responses={200: s.TreeSerializer, 404: NOT_FOUND, **READ_ERRORS},
    )
    def get(self, request, run_id):
        check_query(request, ())
        run_id = contract.clean_id(run_id)
        run = SkillRun.objects.summaries().filter(pk=run_id).first()
        if run is None:
            raise exceptions.NotFound("no such run")
        tree = selectors.call_tree(run.id)
        order = list(tree.preorder())
        pricing.subtree_costs(order)
        nodes = []
        for node in order:
            node.run.depth = node.depth
            node.run.cost, node.run.subtree_cost = node.own_cost, node.subtree_cost
            nodes.append(node.run)
        return Response(
            {
                "run_id": run.id,
                "root_id": tree.root.run.id,
                "root_is_orphan": tree.root_is_orphan,
                "size": tree.size,
                "capped": tree.capped,
                "nodes": s.TreeNodeSerializer(nodes, many=True).data,
            }
        )


class LastRunView(ApiView):
    @extend_schema(
        operation_id="skills_last_run",
        summary="The newest run of each skill (last_run_by_skills)",
        description="Without include_failed only `ok` runs count; with it every finished "
        "status but dry_run. Running rows never count.",
        parameters=[
            OpenApiParameter(
                "skill",
                {
                    "type": "array",
                    "items": {"type": "string", "maxLength": contract.NAME_MAX_LENGTH},
                    "maxItems": MAX_SKILLS,
                },
                explode=True,
                description=f"a skill id; repeat for more (at most {MAX_SKILLS})",
            ),
            OpenApiParameter("include_failed", OpenApiTypes.BOOL),
        ],
        responses={200: s.LastRunSerializer, **READ_ERRORS},
    )
    def get(self, request):
        check_query(request, ("skill", "include_failed"), repeatable=("skill",))
        skills = request.GET.getlist("skill")
        if len(skills) > MAX_SKILLS:
            raise exceptions.ValidationError({"skill": [f"at most {MAX_SKILLS} skills"]})
        include_failed = bool_param(request, "include_failed")
        with contract_errors():
            latest = self.storage.last_run_by_skills(skills, include_failed)
        return Response(s.LastRunSerializer({"last_run": latest}).data)
