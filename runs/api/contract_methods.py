"""POST /api/contract/<method>/: the Storage methods that have no resource of their own.

Offset pages, exact counts, the finished-before sweep, purge, get_run by an id in the body
and initialize. runs.client.HttpStorage is built on these and on the run resources.

One table (METHODS) says, per method, its request and response bodies, who may call it,
what it does and its OpenAPI text; ``urls()`` turns the table into routes, each view
class with its schema applied from its row. POST, although most of them read: arguments
are JSON values of any size (ids with any character, integers beyond 64 bits, exact
booleans) rather than a query string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers as drf
from rest_framework.response import Response

from .. import contract
from ..models import SkillRun
from ..storage import SchemaMissing, run_from_model
from . import serializers as s
from .permissions import VIEW_RUNS
from .views import (
    BUDGET_BATCH,
    NOT_FOUND,
    READ_METHODS,
    RESPONSE_BUDGET,
    WRITE_ERRORS,
    ApiView,
    ByteBudget,
    Unavailable,
    contract_errors,
    error_response,
    json_size,
    representation,
    with_inputs,
)

# Per call to list_finished_runs_before: its limit is a plain cap, possibly huge.
FINISHED_PAGE = contract.MAX_LIMIT
DELETE_RUNS = ("runs.delete_skillrun", "runs.delete_skillrunlog")


@dataclass(frozen=True)
class ContractMethod:
    """One Storage method over HTTP: ``call(storage, arguments)`` answers the body."""

    name: str
    request: type[s.StrictSerializer]
    response: type
    summary: str
    call: Callable
    description: str = ""
    permissions: tuple[str, ...] = (VIEW_RUNS,)
    errors: dict = field(default_factory=dict)


_row_size = json_size  # what a row adds to an answer's bytes


def _offset_page(fetch: Callable, data) -> dict:
    """Runs fetch(offset, limit) returns, read BUDGET_BATCH at a time and cut at
    RESPONSE_BUDGET bytes (views.ByteBudget); ``next_offset`` is where the next call goes
    on (null when this one answered the lot)."""
    # The storage's own rules first (limits outside 1-500 are 50), so batches add up to them.
    offset, limit = contract.clamp_offset(data["offset"]), contract.clamp_limit(data["limit"])
    budget = ByteBudget(RESPONSE_BUDGET)
    while len(budget.rows) < limit:
        want = min(BUDGET_BATCH, limit - len(budget.rows))
        batch = fetch(offset + len(budget.rows), want)
        for run in batch:
            if not budget.add(representation(s.RunSerializer, run)):
                return {"runs": budget.rows, "next_offset": offset + len(budget.rows)}
        if len(batch) < want:
            break
    return {"runs": budget.rows, "next_offset": None}


def _caller_page(data) -> Callable:
    """fetch(offset, limit) of a caller's newest runs without dry runs (list_runs_by_caller,
    which has no offset in the contract)."""
    caller_id = contract.clean_id(data["caller_id"])

    def fetch(offset: int, limit: int) -> list:
        rows = SkillRun.objects.for_caller(caller_id).newest_first().page(offset, limit)
        return [run_from_model(row) for row in rows]

    return fetch


BUDGET_DESCRIPTION = (
    "Cut at 8 MiB of runs (at least one): `next_offset` says where to go on (call again with "
    "`offset` = `next_offset` and the rest of the limit)."
)


class RunsPageResponse(drf.Serializer):
    runs = s.RunSerializer(many=True)
    next_offset = drf.IntegerField(
        allow_null=True,
        help_text="set when the answer was cut at its byte budget (8 MiB of runs, at least "
        "one run): call again with this offset and the rest of the limit",
    )


def _run_filter(data) -> contract.RunFilter:
    return contract.RunFilter(**data.get("filter", {}))


def _initialize(storage, data):
    try:
        storage.initialize()
    except SchemaMissing as exc:
        raise Unavailable(str(exc)) from None
    return {"ok": True}


def _finished_before(storage, data):
    """One page of at most FINISHED_PAGE runs; ``next`` says where the next call goes on
    when the caller's limit asks for more (HttpStorage follows it behind one call)."""
    limit = data["limit"]
    if limit <= 0:
        return {"runs": [], "next": None}
    page = min(limit, FINISHED_PAGE)
    after = data["after"]
    position = (after["finished_at"], contract.clean_id(after["id"])) if after else None
    budget = ByteBudget(RESPONSE_BUDGET)
    last = None
    while len(budget.rows) < page:
        finished = SkillRun.objects.finished_before(data["cutoff"])
        if position is not None:
            finished = finished.finished_later_than(*position)
        want = min(BUDGET_BATCH, page - len(budget.rows))
        batch = [run_from_model(r) for r in with_inputs(list(finished.with_inputs_text()[:want]))]
        for run in batch:
            if not budget.add(representation(s.RunSerializer, run)):
                # Cut at the byte budget: go on after the last run sent.
                return {"runs": budget.rows, "next": _position(last)}
            last = run
            position = (run.finished_at, run.id)
        if len(batch) < want:
            return {"runs": budget.rows, "next": None}
    return {"runs": budget.rows, "next": _position(last) if limit > page else None}


def _position(run) -> dict:
    return {"finished_at": s.iso(run.finished_at), "id": run.id}


METHODS = (
    ContractMethod(
        "initialize",
        s.EmptyRequest,
        s.InitializeResponse,
        "Check that the audit tables exist (initialize)",
        _initialize,
        errors={503: error_response("the tables are missing: run manage.py migrate")},
    ),
    ContractMethod(
        "get_run",
        s.GetRunRequest,
        s.RunSerializer,
        "One run by id (get_run)",
        lambda storage, data: s.RunSerializer(storage.get_run(data["id"])).data,
        description="Exact for ids a URL path cannot tell apart.",
        errors={404: NOT_FOUND},
    ),
    ContractMethod(
        "list_runs_by_skill",
        s.RunsBySkillRequest,
        RunsPageResponse,
        "A skill's newest runs without dry runs (list_runs_by_skill)",
        lambda storage, data: _offset_page(
            lambda offset, limit: storage.list_runs_by_skill_paginated(
                data["skill_id"], offset, limit, False
            ),
            data,
        ),
        description=BUDGET_DESCRIPTION,
    ),
    ContractMethod(
        "list_runs_by_skill_paginated",
        s.RunsBySkillPageRequest,
        RunsPageResponse,
        "A page of a skill's runs, newest first (list_runs_by_skill_paginated)",
        lambda storage, data: _offset_page(
            lambda offset, limit: storage.list_runs_by_skill_paginated(
                data["skill_id"], offset, limit, data["include_dry_run"]
            ),
            data,
        ),
        description=BUDGET_DESCRIPTION,
    ),
    ContractMethod(
        "count_runs_by_skill",
        s.CountBySkillRequest,
        s.CountResponse,
        "How many runs a skill has (count_runs_by_skill)",
        lambda storage, data: {
            "count": storage.count_runs_by_skill(data["skill_id"], data["include_dry_run"])
        },
    ),
    ContractMethod(
        "list_runs_by_caller",
        s.RunsByCallerRequest,
        RunsPageResponse,
        "A caller's newest runs without dry runs (list_runs_by_caller)",
        lambda storage, data: _offset_page(_caller_page(data), data),
        description=BUDGET_DESCRIPTION,
    ),
    ContractMethod(
        "list_runs_filtered",
        s.RunsFilteredRequest,
        RunsPageResponse,
        "Runs matching a RunFilter, newest first, by offset (list_runs_filtered)",
        lambda storage, data: _offset_page(
            lambda offset, limit: storage.list_runs_filtered(_run_filter(data), offset, limit),
            data,
        ),
        description=BUDGET_DESCRIPTION,
    ),
    ContractMethod(
        "count_runs_filtered",
        s.CountFilteredRequest,
        s.CountResponse,
        "How many runs match a RunFilter (count_runs_filtered)",
        lambda storage, data: {"count": storage.count_runs_filtered(_run_filter(data))},
    ),
    ContractMethod(
        "list_finished_runs_before",
        s.FinishedBeforeRequest,
        s.FinishedRunsResponse,
        "Runs finished before a cutoff, oldest finished first (list_finished_runs_before)",
        _finished_before,
        description=f"At most {FINISHED_PAGE} runs and 8 MiB of runs (at least one) per "
        "call: when `limit` asks for more and more are stored, `next` says where to continue.",
    ),
    ContractMethod(
        "purge_older_than",
        s.PurgeRequest,
        s.PurgeResponse,
        "Delete runs started before t, with their events (purge_older_than)",
        lambda storage, data: {"deleted": storage.purge_older_than(data["t"])},
        description="Needs the delete permissions. Deletes in batches; for big purges "
        "prefer `manage.py purge_runs`.",
        permissions=DELETE_RUNS,
    ),
)


class ContractView(ApiView):
    """Validates the body against the method's request serializer and calls it."""

    method: ContractMethod

    def post(self, request):
        body = self.method.request(data=request.data)
        body.is_valid(raise_exception=True)
        with contract_errors():
            return Response(self.method.call(self.storage, body.validated_data))


def view_class(method: ContractMethod) -> type[ContractView]:
    """A ContractView subclass for one method, its OpenAPI schema applied from the row."""

    def post(self, request):
        return ContractView.post(self, request)

    schema = extend_schema(
        operation_id=f"contract_{method.name}",
        summary=method.summary,
        description=method.description,
        request=method.request,
        responses={200: method.response, **WRITE_ERRORS, **method.errors},
    )
    # OPTIONS (a read verb) needs only the view permission; the call itself its own.
    permissions = {verb: [VIEW_RUNS] for verb in READ_METHODS}
    permissions["POST"] = list(method.permissions)
    return type(
        f"Contract_{method.name}",
        (ContractView,),
        {
            "method": method,
            "required_permissions": permissions,
            "post": schema(post),
            "__doc__": method.summary,
        },
    )


def urls() -> list:
    """Routes /api/contract/<method>/ named ``contract-<method>`` (dashes for underscores)."""
    return [
        path(
            f"contract/{method.name}/",
            view_class(method).as_view(),
            name=f"contract-{method.name.replace('_', '-')}",
        )
        for method in METHODS
    ]
