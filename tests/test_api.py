"""The JSON API (runs/api.py) with DRF's test client on the real test database."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import JSONField, Value
from django.db.models.functions import Cast
from django.middleware.csrf import CSRF_ALLOWED_CHARS
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import get_resolver, reverse
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from runs import cursors
from runs.access.models import ApiToken as Token
from runs.api import contract_methods
from runs.api import views as api
from runs.models import SkillRun, SkillRunLog
from tests.dashboard_data import BASE, make_viewer, record_run

pytestmark = pytest.mark.django_db

VIEW = ["view_skillrun"]
WRITE = ["view_skillrun", "add_skillrun", "change_skillrun", "add_skillrunlog"]
EVERYTHING = WRITE + ["delete_skillrun", "delete_skillrunlog"]


def make_user(django_user_model, name, codenames, *, active=True):
    user = django_user_model.objects.create_user(name, password="pw-123456", is_active=active)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="runs", codename__in=codenames)
    )
    return user


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def reader(django_user_model):
    return token_client(make_user(django_user_model, "reader", VIEW))


@pytest.fixture
def writer(django_user_model):
    return token_client(make_user(django_user_model, "writer", WRITE))


@pytest.fixture
def admin_api(django_user_model):
    return token_client(make_user(django_user_model, "purger", EVERYTHING))


@pytest.fixture
def nobody(django_user_model):
    return token_client(make_user(django_user_model, "nobody", []))


def run_url(run_id: str, suffix: str = "") -> str:
    return api.run_path(run_id) + (f"{suffix}/" if suffix else "")


def post_json(client, path, body, **extra):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.generic("POST", path, raw, content_type="application/json", **extra)


def assert_json(response):
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    return json.loads(response.content)


@pytest.fixture
def mixed_runs(db):
    # The dashboard tests' data: top-level and nested runs, dry runs, every filter axis.
    record_run("top-ok", skill="summarise", caller="alice", channel="general", minutes=1)
    record_run(
        "top-err",
        skill="triage",
        caller="bob",
        channel="ops",
        status="error",
        minutes=2,
        error="tool failed",
    )
    record_run("top-dry", skill="summarise", caller="alice", status="dry_run", minutes=3)
    record_run(
        "child", skill="lookup", caller="alice", minutes=4, parent="top-ok", output="kid output"
    )
    record_run(
        "top-timeout", skill="triage", caller="carol", channel="ops", status="timeout", minutes=5
    )
    record_run("top-running", skill="summarise", caller="dave", status="running", minutes=6)


def ids(response) -> list[str]:
    return [row["id"] for row in assert_json(response)["results"]]


# --- authentication and permissions ------------------------------------------------------


def api_routes():
    """(method, path) for every endpoint, with a stored run's id where one is needed."""
    run = run_url("top-ok")
    gets = [
        "/api/",
        "/api/runs/",
        run,
        run + "logs/",
        run + "chain/",
        run + "children/",
        run + "tree/",
        run + "export/",
        "/api/runs/export/",
        "/api/skills/last-run/?skill=summarise",
        "/api/stats/",
        "/api/schema/",
    ]
    posts = ["/api/runs/", run + "logs/", run + "finish/", "/api/runs/import/"]
    posts += [f"/api/contract/{name}/" for name in CONTRACT_BODIES]
    return [("GET", path) for path in gets] + [("POST", path) for path in posts]


CONTRACT_BODIES = {
    "initialize": {},
    "get_run": {"id": "top-ok"},
    "list_runs_by_skill": {"skill_id": "summarise"},
    "list_runs_by_skill_paginated": {"skill_id": "summarise", "offset": 0, "limit": 5},
    "count_runs_by_skill": {"skill_id": "summarise"},
    "list_runs_by_caller": {"caller_id": "alice"},
    "list_runs_filtered": {"filter": {"skill_id": "summarise"}},
    "count_runs_filtered": {"filter": {}},
    "list_finished_runs_before": {"cutoff": "2100-01-01T00:00:00Z", "limit": 10},
    "purge_older_than": {"t": "2000-01-01T00:00:00Z"},
}


def call(client, method, path, body=None):
    if method == "GET":
        return client.get(path)
    if body is None:
        name = path.rsplit("/", 2)[-2]
        body = CONTRACT_BODIES.get(name, {"id": "new-run", "sequence": 99, "status": "ok"})
    return post_json(client, path, body)


def test_every_api_url_is_in_the_route_list():
    routed = {path.split("?")[0] for _, path in api_routes()}
    patterns = get_resolver("runs.api.urls").url_patterns
    assert len(patterns) >= 19
    for pattern in patterns:
        if pattern.name == "not-found":
            continue
        kwargs = {"run_id": "top-ok"} if "run_id" in pattern.pattern.converters else {}
        assert reverse(f"api:{pattern.name}", kwargs=kwargs) in routed, pattern.name


@pytest.mark.parametrize("method,path", api_routes())
def test_anonymous_requests_get_401(client, mixed_runs, method, path):
    response = call(APIClient(), method, path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert b"top-ok" not in response.content


@pytest.mark.parametrize("method,path", api_routes())
def test_users_without_permissions_get_403(nobody, mixed_runs, method, path):
    response = call(nobody, method, path)
    assert response.status_code == 403
    assert b"summarise" not in response.content


def test_a_wrong_or_inactive_token_gets_401(django_user_model, mixed_runs):
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert bad.get("/api/runs/").status_code == 401
    inactive = token_client(make_user(django_user_model, "gone", WRITE, active=False))
    assert inactive.get("/api/runs/").status_code == 401


@pytest.mark.parametrize("method,path", api_routes())
def test_view_only_users_read_and_cannot_write(reader, mixed_runs, method, path):
    response = call(reader, method, path)
    writes = method == "POST" and not path.startswith("/api/contract/")
    if writes or path.endswith("/purge_older_than/"):
        assert response.status_code == 403
    else:
        assert response.status_code == 200, response.content
    assert SkillRun.objects.filter(pk="new-run").count() == 0
    assert SkillRun.objects.get(pk="top-ok").status == "ok"


def test_writing_events_needs_the_log_permission(django_user_model, mixed_runs):
    codenames = ["view_skillrun", "add_skillrun", "change_skillrun"]
    runs_only = token_client(make_user(django_user_model, "runs-only", codenames))
    assert post_json(runs_only, "/api/runs/", {"id": "mine"}).status_code == 201
    denied = post_json(runs_only, run_url("mine", "logs"), {"sequence": 1})
    assert denied.status_code == 403
    assert not SkillRunLog.objects.filter(run_id="mine").exists()
    assert post_json(runs_only, run_url("mine", "finish"), {"status": "ok"}).status_code == 200


def test_purge_needs_the_delete_permissions(writer, admin_api, mixed_runs):
    # The newest run started in 2026-11; a cutoff in the future is refused.
    body = {"t": "2026-12-01T00:00:00Z"}
    assert post_json(writer, "/api/contract/purge_older_than/", body).status_code == 403
    assert SkillRun.objects.count() == 6
    response = post_json(admin_api, "/api/contract/purge_older_than/", body)
    assert assert_json(response) == {"deleted": 6}
    assert SkillRun.objects.count() == 0


def test_session_users_need_a_csrf_token_to_write(django_user_model, mixed_runs):
    user = make_user(django_user_model, "browser", WRITE)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get("/api/runs/").status_code == 200
    body = json.dumps({"id": "from-browser"})
    refused = browser.post("/api/runs/", body, content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in assert_json(refused)["detail"]
    assert not SkillRun.objects.filter(pk="from-browser").exists()
    secret = get_random_string(32, CSRF_ALLOWED_CHARS)
    browser.cookies["csrftoken"] = secret
    accepted = browser.post(
        "/api/runs/", body, content_type="application/json", HTTP_X_CSRFTOKEN=secret
    )
    assert accepted.status_code == 201
    assert SkillRun.objects.filter(pk="from-browser").exists()


def test_token_requests_need_no_csrf_token(django_user_model):
    client = APIClient(enforce_csrf_checks=True)
    key = Token.objects.create(user=make_user(django_user_model, "program", WRITE)).key
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert post_json(client, "/api/runs/", {"id": "by-token"}).status_code == 201


def test_api_serves_non_staff_users_with_the_permission(client, django_user_model, mixed_runs):
    client.force_login(make_viewer(django_user_model, staff=False))
    assert client.get("/api/runs/").status_code == 200
    # ...and so does the dashboard (the permission, not the staff flag)
    assert client.get("/runs/").status_code == 200


def test_create_api_token_prints_a_working_token(django_user_model, capsys, mixed_runs):
    make_user(django_user_model, "executor", WRITE)
    call_command("create_api_token", "executor")
    first = capsys.readouterr().out.strip()
    # Only a hash is kept: the key cannot be printed again.
    with pytest.raises(CommandError, match="has a token already"):
        call_command("create_api_token", "executor")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.get("/api/runs/").status_code == 200
    call_command("create_api_token", "executor", "--rotate")
    rotated = capsys.readouterr().out.strip()
    assert rotated != first and len(rotated) == 40
    assert client.get("/api/runs/").status_code == 401
    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_token", "ghost")
    make_user(django_user_model, "retired", WRITE, active=False)
    with pytest.raises(CommandError, match="inactive"):
        call_command("create_api_token", "retired")


# --- the list ------------------------------------------------------------------------------

PARITY_QUERIES = [
    "",
    "status=error",
    "status=ok&include_nested=1",
    "status=dry_run",
    "status=stale",
    "skill=triage",
    "caller=alice&include_nested=1&include_dry_run=1",
    "channel=ops",
    "include_nested=1",
    "include_dry_run=true&include_nested=on",
    "include_nested=0",
    "since=2026-11-20T12:02:00Z",
    "until=2026-11-20T12:02:00Z",
    "since=2026-11-20T14:02:00%2B02:00",
    "since=2026-11-20",
    "since=0001-01-01T00:00:00Z&until=9999-12-31",
    "skill=triage&channel=ops&status=timeout",
    "skill=&caller=&status=",
    "skill=%00",
    # invalid: both refuse them, naming the same parameters
    "status=bogus",
    "since=nope",
    "until=2026-13-01",
    "since=2026-11-20T12:00:00%2B25:00",
    "until=1e60",
    "include_nested=2",
    "skill=" + "x" * 300,
    "statuss=ok",
    "status=ok&status=error",
    "since=%00",
]


@pytest.mark.parametrize("query", PARITY_QUERIES)
def test_the_list_filters_exactly_like_the_dashboard(
    client, django_user_model, reader, mixed_runs, query
):
    client.force_login(make_viewer(django_user_model))
    page = client.get("/runs/?" + query)
    response = reader.get("/api/runs/?" + query)
    assert response.status_code == page.status_code
    if page.status_code == 200:
        assert ids(response) == [run.id for run in page.context["runs"]]
    else:
        assert page.status_code == 400
        assert set(assert_json(response)) == set(page.context["errors"])


def test_list_rows_are_summaries_with_previews(reader, mixed_runs):
    rows = assert_json(reader.get("/api/runs/?include_nested=1"))["results"]
    assert [row["id"] for row in rows] == [
        "top-running",
        "top-timeout",
        "child",
        "top-err",
        "top-ok",
    ]
    by_id = {row["id"]: row for row in rows}
    assert by_id["top-ok"]["has_children"] is True
    assert by_id["child"]["has_children"] is False
    assert by_id["child"]["parent_run_id"] == "top-ok"
    assert by_id["child"]["output_preview"] == "kid output"
    assert by_id["top-err"]["error_preview"] == "tool failed"
    assert by_id["top-running"]["finished_at"] is None
    assert by_id["top-ok"]["started_at"] == "2026-11-20T12:01:00Z"
    for row in rows:
        assert not {"inputs", "output", "error"} & set(row)


@pytest.fixture
def many_runs(db):
    for i in range(23):
        record_run(f"run-{i:04d}", minutes=i // 2, skill=f"s{i % 3}")
    # ties on started_at are broken by id, descending
    return sorted((f"run-{i:04d}" for i in range(23)), key=lambda r: (int(r[4:]) // 2, r))[::-1]


def test_cursor_pages_walk_every_run_once_in_order(reader, many_runs):
    seen, url, pages = [], "/api/runs/?page_size=5&skill=", 0
    while url:
        page = assert_json(reader.get(url))
        seen += [row["id"] for row in page["results"]]
        pages += 1
        url = page["next"]
        assert (url is None) == (page["next_cursor"] is None)
        if url:
            assert "skill=" in url and "page_size=5" in url
    assert pages == 5
    assert seen == many_runs


def test_paging_keeps_the_filters(reader, many_runs):
    first = assert_json(reader.get("/api/runs/?skill=s1&page_size=3"))
    second = assert_json(reader.get(first["next"]))
    expected = [r for r in many_runs if int(r[4:]) % 3 == 1]
    assert [r["id"] for r in first["results"] + second["results"]] == expected[:6]


@pytest.mark.parametrize(
    "query,parameter",
    [
        ("page_size=0", "page_size"),
        ("page_size=501", "page_size"),
        ("page_size=ten", "page_size"),
        ("page_size=" + "9" * 40, "page_size"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=%00", "cursor"),
        ("cursor=" + "A" * 500, "cursor"),
        ("cursor=" + cursors.encode(BASE, "x") + "&cursor=x", "cursor"),
        ("format=json", "format"),
    ],
)
def test_bad_paging_parameters_are_400s(reader, many_runs, query, parameter):
    response = reader.get("/api/runs/?" + query)
    assert response.status_code == 400
    assert parameter in assert_json(response)


def test_a_forged_cursor_with_an_unrepresentable_time_is_a_400(reader, many_runs):
    import base64

    for stamp in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"):
        forged = base64.urlsafe_b64encode(json.dumps([stamp, "x"]).encode()).decode()
        response = reader.get("/api/runs/", {"cursor": forged})
        assert response.status_code == 400
        assert "cursor" in assert_json(response)


def test_list_never_counts_and_never_loads_big_columns(reader):
    def queries(query):
        with CaptureQueriesContext(connection) as ctx:
            assert reader.get("/api/runs/?" + query).status_code == 200
        return [q["sql"] for q in ctx.captured_queries]

    for i in range(60):
        record_run(f"r-{i}", minutes=i, output="o" * 10_000, inputs={"big": "i" * 1000})
    queries("page_size=1")  # the process's first page reads the price table (pricing's cache)
    small, big = queries("page_size=1"), queries("page_size=500&include_nested=1")
    assert len(small) == len(big)
    for sql in big:
        assert "COUNT(" not in sql.upper()
        assert '"skill_runs"."inputs"' not in sql
        assert not re.search(r'(?<!\()"skill_runs"\."(output|error)"', sql)


# --- one run -----------------------------------------------------------------------------


def test_run_detail_has_every_field(reader):
    record_run(
        "full",
        inputs={"q": "x", "n": [1, 2.5, None]},
        output="answer",
        error="",
        tokens=(1, 2, 3),
        parent="p",
    )
    data = assert_json(reader.get(run_url("full")))
    assert data == {
        "id": "full",
        "skill_id": "summarise",
        "caller_id": "alice",
        "channel_id": "general",
        "inputs": {"q": "x", "n": [1, 2.5, None]},
        "started_at": "2026-11-20T12:00:00Z",
        "finished_at": "2026-11-20T12:00:01.500000Z",
        "status": "ok",
        "output": "answer",
        "error": "",
        "tool_calls_count": 0,
        "runtime_seconds": 1.5,
        "parent_run_id": "p",
        "total_input_tokens": 1,
        "total_output_tokens": 2,
        "total_thinking_tokens": 3,
        # tokens the run counts but no step attributes to a model: unpriced, never free
        "cost": {
            "amount": "0",
            "currency": "USD",
            "unpriced": True,
            "unpriced_steps": 0,
            "unpriced_models": [""],
        },
    }


def test_unknown_run_is_a_json_404(reader):
    for suffix in ("", "logs", "chain", "tree"):
        response = reader.get(run_url("ghost", suffix))
        assert response.status_code == 404
        assert "detail" in assert_json(response)
    response = post_json(reader, "/api/contract/get_run/", {"id": "ghost"})
    assert response.status_code == 404


def test_unrouted_api_paths_are_json_404s(reader):
    for path in ("/api/nope/", "/api/runs", "/api/runs/x/bogus", "/api/x"):
        response = reader.get(path)
        assert response.status_code == 404, path
        assert "detail" in assert_json(response)


@pytest.mark.parametrize(
    "run_id",
    ["a/b", "a/b/", "/lead", ".", "..", "x/../y", "100%", "q?x=1#f", "new\nline", "sp ace ", "é🧪"],
)
def test_any_run_id_is_addressable_by_path(writer, run_id):
    assert post_json(writer, "/api/runs/", {"id": run_id}).status_code == 201
    assert post_json(writer, run_url(run_id, "logs"), {"sequence": 1}).status_code == 201
    assert post_json(writer, run_url(run_id, "finish"), {"status": "ok"}).status_code == 200
    assert assert_json(writer.get(run_url(run_id)))["id"] == run_id
    logs = assert_json(writer.get(run_url(run_id, "logs")))["results"]
    assert [(log["run_id"], log["sequence"]) for log in logs] == [(run_id, 1)]
    assert ids(writer.get(run_url(run_id, "chain"))) == [run_id]


def test_an_id_ending_like_a_route_is_read_through_contract_get_run(writer):
    post_json(writer, "/api/runs/", {"id": "x"})
    post_json(writer, "/api/runs/", {"id": "x/logs", "skill_id": "suffixed"})
    # the path form of "x/logs" is the log list of run "x"...
    assert "results" in assert_json(writer.get(run_url("x/logs")))
    # ...the sub-routes are exact whatever the id ends with...
    assert post_json(writer, run_url("x/logs", "logs"), {"sequence": 7}).status_code == 201
    assert SkillRunLog.objects.get(run_id="x/logs").sequence == 7
    # ...and contract/get_run takes the id in the body.
    got = assert_json(post_json(writer, "/api/contract/get_run/", {"id": "x/logs"}))
    assert got["skill_id"] == "suffixed"


def test_detail_refuses_query_parameters(reader, mixed_runs):
    assert reader.get(run_url("top-ok") + "?x=1").status_code == 400
    assert reader.get(run_url("top-ok", "tree") + "?full=1").status_code == 400


def _as_json_text(depth: int):
    return Cast(Value('{"d":' * depth + "{}" + "}" * depth), JSONField())


def test_stored_json_too_deep_to_serve_comes_back_null(reader):
    # written as another program would, straight into the columns
    depth = 3000 if connection.vendor == "postgresql" else 990
    record_run("deep", events=[("step", {"ok": True}), ("step", {"ok": True})])
    SkillRun.objects.filter(pk="deep").update(inputs=_as_json_text(depth))
    SkillRunLog.objects.filter(run_id="deep", sequence=2).update(payload=_as_json_text(depth))
    run = assert_json(reader.get(run_url("deep")))
    assert run["inputs"] is None and run["id"] == "deep"
    logs = assert_json(reader.get(run_url("deep", "logs")))["results"]
    assert [log["payload"] for log in logs] == [{"ok": True}, None]
    chain = assert_json(reader.get(run_url("deep", "chain") + "?full=1"))["results"]
    assert chain[0]["inputs"] is None
    assert reader.get("/api/runs/").status_code == 200
    assert reader.get(run_url("deep", "tree")).status_code == 200


def test_stored_json_of_moderate_depth_is_served(reader):
    record_run("nested")
    SkillRun.objects.filter(pk="nested").update(inputs=_as_json_text(150))
    inputs = assert_json(reader.get(run_url("nested")))["inputs"]
    for _ in range(150):
        inputs = inputs["d"]
    assert inputs == {}


# --- recording runs ---------------------------------------------------------------------


def test_start_run_stores_and_returns_the_run(writer):
    response = post_json(
        writer,
        "/api/runs/",
        {
            "id": "r1",
            "skill_id": "summarise",
            "caller_id": "u",
            "channel_id": "c",
            "inputs": {"q": "hi", "n": [1, {"x": None}]},
            "started_at": "2026-11-20T13:00:00.5+01:00",
            "parent_run_id": "p0",
            "total_input_tokens": 2**62,
        },
    )
    assert response.status_code == 201
    assert response["Location"] == "/api/runs/r1/"
    data = assert_json(response)
    assert data["started_at"] == "2026-11-20T12:00:00.500000Z"
    assert data["status"] == "running" and data["finished_at"] is None
    stored = SkillRun.objects.get(pk="r1")
    assert stored.inputs == {"q": "hi", "n": [1, {"x": None}]}
    assert stored.started_at == datetime(2026, 11, 20, 12, 0, 0, 500000, tzinfo=UTC)
    assert stored.total_input_tokens == 2**62
    assert stored.parent_run_id == "p0"


def test_start_run_defaults(writer):
    before = datetime.now(UTC)
    data = assert_json(post_json(writer, "/api/runs/", {"id": "bare"}))
    assert before <= datetime.fromisoformat(data["started_at"]) <= datetime.now(UTC)
    assert data["inputs"] == {} and data["skill_id"] == "" and data["tool_calls_count"] == 0


def test_duplicate_run_is_a_409_and_changes_nothing(writer, mixed_runs):
    before = SkillRun.objects.values().get(pk="top-ok")
    response = post_json(writer, "/api/runs/", {"id": "top-ok", "skill_id": "other"})
    assert response.status_code == 409
    assert "already exists" in assert_json(response)["detail"]
    assert SkillRun.objects.values().get(pk="top-ok") == before


def test_nul_and_surrogates_are_replaced_not_refused(writer):
    raw = (
        b'{"id": "r\\u0000x", "skill_id": "s\\ud800", "inputs": {"k\\u0000": ["\\udfff"]},'
        b' "output": "o\\u0000"}'
    )
    response = post_json(writer, "/api/runs/", raw)
    assert response.status_code == 201, response.content
    stored = SkillRun.objects.get(pk="r\ufffdx")
    assert (stored.skill_id, stored.output) == ("s\ufffd", "o\ufffd")
    assert stored.inputs == {"k\ufffd": ["\ufffd"]}
    # the id in a URL is cleaned the same way
    assert writer.get(run_url("r\x00x")).status_code == 200
    # unknown keys are named in the error, cleaned too
    refused = post_json(writer, "/api/runs/", b'{"id": "z", "k\\ud800": 1}')
    assert assert_json(refused) == {"k\ufffd": ["is not a known field"]}


BAD_RUN_BODIES = [
    ({"skill_id": "s"}, "id"),
    ({"id": ""}, "id"),
    ({"id": "x" * 65}, "id"),
    ({"id": 7}, "id"),
    ({"id": "r", "skill_id": "s" * 256}, "skill_id"),
    ({"id": "r", "skill_id": None}, "skill_id"),
    ({"id": "r", "parent_run_id": "p" * 65}, "parent_run_id"),
    ({"id": "r", "started_at": "2026-11-20T12:00:00"}, "started_at"),
    ({"id": "r", "started_at": "2026-11-20"}, "started_at"),
    ({"id": "r", "started_at": "yesterday"}, "started_at"),
    ({"id": "r", "started_at": "0001-01-01T00:00:00+01:00"}, "started_at"),
    ({"id": "r", "started_at": "9999-12-31T23:59:59-05:00"}, "started_at"),
    ({"id": "r", "started_at": 1700000000}, "started_at"),
    ({"id": "r", "inputs": [1, 2]}, "inputs"),
    ({"id": "r", "inputs": "text"}, "inputs"),
    ({"id": "r", "tool_calls_count": "3"}, "tool_calls_count"),
    ({"id": "r", "tool_calls_count": 2**63}, "tool_calls_count"),
    ({"id": "r", "tool_calls_count": 1.5}, "tool_calls_count"),
    ({"id": "r", "tool_calls_count": True}, "tool_calls_count"),
    ({"id": "r", "total_input_tokens": 2**63}, "total_input_tokens"),
    ({"id": "r", "total_output_tokens": -(2**63) - 1}, "total_output_tokens"),
    ({"id": "r", "runtime_seconds": "1.5"}, "runtime_seconds"),
    ({"id": "r", "runtime_seconds": 10**400}, "runtime_seconds"),
    ({"id": "r", "status": "ok"}, "status"),
    ({"id": "r", "finished_at": None}, "finished_at"),
]


@pytest.mark.parametrize("body,field", BAD_RUN_BODIES)
def test_invalid_run_fields_are_400s_naming_the_field(writer, body, field):
    response = post_json(writer, "/api/runs/", body)
    assert response.status_code == 400, response.content
    assert field in assert_json(response)
    assert not SkillRun.objects.exists()


BAD_BODIES = [
    (b"", 400),
    (b"not json", 400),
    (b'{"id": "r",}', 400),
    (b"[]", 400),
    (b'"a string"', 400),
    (b"null", 400),
    (b"42", 400),
    (b'{"id": "r", "runtime_seconds": NaN}', 400),
    (b'{"id": "r", "runtime_seconds": Infinity}', 400),
    (b'{"id": "r", "runtime_seconds": 1e400}', 400),
    (b'{"id": "r", "inputs": {"x": -1e999}}', 400),
    (b'{"id": "r", "total_input_tokens": 1' + b"0" * 5000 + b"}", 400),
    (b'{"id": "r", "inputs": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}", 400),
    (b'{"id": "r", "inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    (b'{"id": "r", "inputs": ' + b'{"a":' * 250 + b"1" + b"}" * 250 + b"}", 400),
    (b'{"id": "\xff\xfe"}', 400),
    (b'{"id": "r", "id": 5}', 400),
]


@pytest.mark.parametrize("raw,expected", BAD_BODIES)
def test_malformed_bodies_are_4xx_never_500(writer, raw, expected):
    response = post_json(writer, "/api/runs/", raw)
    assert response.status_code == expected, response.content[:300]
    assert_json(response)
    assert not SkillRun.objects.exists()


def test_a_json_value_at_the_depth_limit_is_accepted(writer):
    from runs.api.serializers import MAX_JSON_DEPTH

    deep = {}
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = {"a": deep}
    assert post_json(writer, "/api/runs/", {"id": "ok", "inputs": deep}).status_code == 201
    too_deep = {"a": deep}
    response = post_json(writer, "/api/runs/", {"id": "no", "inputs": too_deep})
    assert response.status_code == 400 and "inputs" in assert_json(response)


def test_wrong_content_type_is_415(writer):
    response = writer.generic("POST", "/api/runs/", b"id=r", content_type="text/plain")
    assert response.status_code == 415
    response = writer.post("/api/runs/", {"id": "r"})  # multipart form
    assert response.status_code == 415
    assert not SkillRun.objects.exists()


def test_huge_bodies_are_413_without_being_read(writer, settings):
    settings.SKILLAUDIT_API_MAX_BODY_BYTES = 1000
    body = {"id": "big", "output": "x" * 2000}
    response = post_json(writer, "/api/runs/", body)
    assert response.status_code == 413
    assert "larger than 1000 bytes" in assert_json(response)["detail"]
    # a body that claims a small length is cut at the limit, not trusted
    raw = json.dumps(body).encode()
    response = writer.generic(
        "POST", "/api/runs/", raw, content_type="application/json", CONTENT_LENGTH="10"
    )
    assert response.status_code == 400
    assert not SkillRun.objects.exists()


def test_finish_run_sets_the_stats(writer):
    post_json(writer, "/api/runs/", {"id": "r1", "output": "partial"})
    before = datetime.now(UTC)
    stats = {
        "status": "timeout",
        "output": "out",
        "error": "err",
        "tool_calls": 3,
        "runtime_seconds": 12.5,
        "input_tokens": 100,
        "output_tokens": 2**40,
        "thinking_tokens": 7,
    }
    data = assert_json(post_json(writer, run_url("r1", "finish"), stats))
    assert before <= datetime.fromisoformat(data["finished_at"]) <= datetime.now(UTC)
    assert (data["status"], data["output"], data["error"]) == ("timeout", "out", "err")
    assert (data["tool_calls_count"], data["runtime_seconds"]) == (3, 12.5)
    assert data["total_output_tokens"] == 2**40
    # last write wins, zero values included
    again = assert_json(post_json(writer, run_url("r1", "finish"), {"status": "ok"}))
    assert (again["status"], again["output"], again["tool_calls_count"]) == ("ok", "", 0)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"status": "s" * 33}, "status"),
        ({"status": 1}, "status"),
        ({"tool_calls": -(2**63) - 1}, "tool_calls"),
        ({"input_tokens": "5"}, "input_tokens"),
        ({"runtime_seconds": None}, "runtime_seconds"),
        ({"tool_calls_count": 1}, "tool_calls_count"),
    ],
)
def test_invalid_stats_are_400s_and_change_nothing(writer, body, field):
    post_json(writer, "/api/runs/", {"id": "r1"})
    response = post_json(writer, run_url("r1", "finish"), body)
    assert response.status_code == 400
    assert field in assert_json(response)
    assert SkillRun.objects.get(pk="r1").status == "running"


def test_finishing_an_unknown_run_is_a_404(writer):
    response = post_json(writer, run_url("ghost", "finish"), {"status": "ok"})
    assert response.status_code == 404


# --- events -----------------------------------------------------------------------------


def test_append_one_event_and_read_it_back(writer):
    post_json(writer, "/api/runs/", {"id": "r1"})
    created = "2026-11-20T12:00:00.000001-08:00"
    event = {"sequence": 5, "event_type": "tool_call", "payload": {"t": 1}, "created_at": created}
    response = post_json(writer, run_url("r1", "logs"), event)
    assert response.status_code == 201
    assert assert_json(response) == {"run_id": "r1", "stored": 1}
    [log] = assert_json(writer.get(run_url("r1", "logs")))["results"]
    assert log == {
        "run_id": "r1",
        "sequence": 5,
        "event_type": "tool_call",
        "payload": {"t": 1},
        "created_at": "2026-11-20T20:00:00.000001Z",
    }


def test_a_batch_is_stored_in_order(writer):
    post_json(writer, "/api/runs/", {"id": "r1"})
    events = [{"sequence": n, "event_type": "step", "payload": {"n": n}} for n in (3, 1, 2)]
    response = post_json(writer, run_url("r1", "logs"), {"events": events})
    assert assert_json(response) == {"run_id": "r1", "stored": 3}
    logs = assert_json(writer.get(run_url("r1", "logs")))["results"]
    assert [(log["sequence"], log["payload"]) for log in logs] == [
        (1, {"n": 1}),
        (2, {"n": 2}),
        (3, {"n": 3}),
    ]


@pytest.mark.parametrize(
    "sequences,expected",
    [
        ([10, 11, 1, 12], 409),  # 1 is already stored
        ([10, 11, 10], 409),  # repeated inside the batch
    ],
)
def test_a_batch_with_a_duplicate_stores_nothing(writer, sequences, expected):
    post_json(writer, "/api/runs/", {"id": "r1"})
    post_json(writer, run_url("r1", "logs"), {"sequence": 1, "payload": {"original": True}})
    events = [{"sequence": n, "payload": {"n": n}} for n in sequences]
    response = post_json(writer, run_url("r1", "logs"), {"events": events})
    assert response.status_code == expected
    logs = list(SkillRunLog.objects.filter(run_id="r1").values_list("sequence", "payload"))
    assert logs == [(1, {"original": True})]


def test_a_batch_with_one_invalid_event_is_a_400_naming_it_and_stores_nothing(writer):
    post_json(writer, "/api/runs/", {"id": "r1"})
    events = [{"sequence": 1}, {"sequence": "2"}, {"sequence": 3, "payload": [1]}]
    response = post_json(writer, run_url("r1", "logs"), {"events": events})
    assert response.status_code == 400
    errors = assert_json(response)["events"]
    assert set(errors) == {"1", "2"}
    assert "sequence" in errors["1"] and "payload" in errors["2"]
    assert not SkillRunLog.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"events": []},
        {"events": {"sequence": 1}},
        {"events": [1]},
        {"events": [{"sequence": 1}], "sequence": 2},
        {"sequence": 1, "run_id": "other"},
        {"sequence": None},
        {},
        {"sequence": 1, "event_type": "e" * 33},
        {"sequence": 2**63},
    ],
)
def test_invalid_event_bodies_are_400s(writer, body):
    post_json(writer, "/api/runs/", {"id": "r1"})
    response = post_json(writer, run_url("r1", "logs"), body)
    assert response.status_code == 400, response.content
    assert not SkillRunLog.objects.exists()


def test_batches_have_a_size_limit(writer):
    post_json(writer, "/api/runs/", {"id": "r1"})
    from runs.api.serializers import MAX_BATCH_EVENTS

    events = [{"sequence": n} for n in range(MAX_BATCH_EVENTS + 1)]
    response = post_json(writer, run_url("r1", "logs"), {"events": events})
    assert response.status_code == 400
    assert not SkillRunLog.objects.exists()


@pytest.mark.parametrize(
    "event",
    [
        {"sequence": 1},
        {"sequence": 1, "event_type": "", "payload": None, "created_at": None},
        {"sequence": 2**63 - 1, "event_type": "e" * 32, "payload": {"a": [{"b": None}]}},
        {"sequence": 7, "created_at": "2026-11-20T12:00:00.5-08:00"},
        {"sequence": 7, "created_at": "2026-11-20T12:00:00z", "payload": {"\u0000": "\ud800"}},
    ],
)
def test_the_fast_event_check_agrees_with_the_fields(event, monkeypatch):
    from runs.api import serializers

    fast = serializers.LogEventSerializer(data=event)
    assert fast.is_valid(), fast.errors
    monkeypatch.setattr(serializers, "_valid_event", lambda data: None)
    slow = serializers.LogEventSerializer(data=event)
    assert slow.is_valid(), slow.errors
    assert fast.validated_data == slow.validated_data


def test_events_for_an_unknown_run_are_a_404(writer):
    response = post_json(writer, run_url("ghost", "logs"), {"events": [{"sequence": 1}]})
    assert response.status_code == 404
    assert not SkillRunLog.objects.exists()


def test_logs_are_paged_by_sequence(reader):
    record_run("r1", events=[("step", {"n": n}) for n in range(1, 8)])
    seen, url = [], run_url("r1", "logs") + "?limit=3"
    while url:
        page = assert_json(reader.get(url))
        seen += [log["sequence"] for log in page["results"]]
        url = page["next"]
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    page = assert_json(reader.get(run_url("r1", "logs") + "?after=5"))
    assert [log["sequence"] for log in page["results"]] == [6, 7]
    assert page["next_after"] is None and page["next"] is None
    page = assert_json(reader.get(run_url("r1", "logs") + f"?after={-(2**63)}"))
    assert len(page["results"]) == 7


@pytest.mark.parametrize(
    "query", ["after=x", "after=1.5", "limit=0", "limit=1001", f"after={2**63}", "page=2"]
)
def test_bad_log_parameters_are_400s(reader, query):
    record_run("r1", events=[("step", {})])
    response = reader.get(run_url("r1", "logs") + "?" + query)
    assert response.status_code == 400
    assert query.split("=")[0] in assert_json(response)


# --- chain, children, tree ----------------------------------------------------------------


@pytest.fixture
def family(db):
    record_run("root", minutes=0, inputs={"level": 0})
    record_run("mid", minutes=1, parent="root", inputs={"level": 1})
    record_run("leaf", minutes=2, parent="mid", output="leaf output")
    for i in range(7):
        record_run(f"kid-{i}", minutes=3, parent="root")


def test_chain_is_root_first(reader, family):
    assert ids(reader.get(run_url("leaf", "chain"))) == ["root", "mid", "leaf"]
    summaries = assert_json(reader.get(run_url("leaf", "chain")))["results"]
    assert "inputs" not in summaries[0] and summaries[2]["output_preview"] == "leaf output"
    full = assert_json(reader.get(run_url("leaf", "chain") + "?full=1"))["results"]
    assert [run["inputs"] for run in full] == [{"level": 0}, {"level": 1}, {}]
    assert full[2]["output"] == "leaf output"


def test_children_are_paged_oldest_first(reader, family):
    expected = ["mid"] + [f"kid-{i}" for i in range(7)]
    seen, url = [], run_url("root", "children") + "?page_size=3"
    while url:
        page = assert_json(reader.get(url))
        seen += [run["id"] for run in page["results"]]
        url = page["next"]
    assert seen == expected
    full = assert_json(reader.get(run_url("root", "children") + "?full=1"))["results"]
    assert full[0]["inputs"] == {"level": 1}
    # children outlive their parent: an unknown parent id lists them, no 404
    SkillRun.objects.filter(pk="root").delete()
    assert ids(reader.get(run_url("root", "children") + "?page_size=500")) == expected
    assert ids(reader.get(run_url("nobody-has-this", "children"))) == []


def test_has_children_on_lists_chains_and_children(reader, family):
    def has_children(url) -> dict[str, bool]:
        return {run["id"]: run["has_children"] for run in assert_json(reader.get(url))["results"]}

    # Newest first: the seven kids and leaf fill the first page; mid, whose only child is
    # leaf, opens the second.
    first = assert_json(reader.get("/api/runs/?include_nested=1&page_size=8"))
    assert {run["id"]: run["has_children"] for run in first["results"]} == {
        **{f"kid-{i}": False for i in range(7)},
        "leaf": False,
    }
    assert has_children(first["next"]) == {"mid": True, "root": True}
    assert has_children(run_url("leaf", "chain")) == {"root": True, "mid": True, "leaf": False}
    assert has_children(run_url("root", "children")) == {
        "mid": True,
        **{f"kid-{i}": False for i in range(7)},
    }


def test_tree_is_flat_preorder_with_depths(reader, family):
    tree = assert_json(reader.get(run_url("leaf", "tree")))
    assert (tree["run_id"], tree["root_id"], tree["size"]) == ("leaf", "root", 10)
    assert tree["capped"] is False and tree["root_is_orphan"] is False
    nodes = [(node["id"], node["depth"]) for node in tree["nodes"]]
    assert nodes[:3] == [("root", 0), ("mid", 1), ("leaf", 2)]
    assert nodes[3:] == [(f"kid-{i}", 1) for i in range(7)]


def test_tree_and_chain_survive_cycles_and_purged_parents(reader):
    record_run("a", parent="b", minutes=0)
    record_run("b", parent="a", minutes=1)
    record_run("orphan", parent="purged", minutes=2)
    assert ids(reader.get(run_url("a", "chain"))) == ["b", "a"]
    tree = assert_json(reader.get(run_url("a", "tree")))
    assert sorted(node["id"] for node in tree["nodes"]) == ["a", "b"]
    orphan = assert_json(reader.get(run_url("orphan", "tree")))
    assert orphan["root_is_orphan"] is True and orphan["size"] == 1


def test_tree_is_capped(reader, monkeypatch):
    monkeypatch.setattr("runs.selectors.TREE_NODE_CAP", 4)
    record_run("root")
    for i in range(6):
        record_run(f"kid-{i}", parent="root", minutes=1)
    tree = assert_json(reader.get(run_url("root", "tree")))
    assert tree["capped"] is True and tree["size"] == len(tree["nodes"]) == 4


# --- last run by skills ------------------------------------------------------------------


def test_last_run_by_skills(reader):
    record_run("a-ok", skill="alpha", minutes=1)
    record_run("a-err", skill="alpha", status="error", minutes=2)
    record_run("a-run", skill="alpha", status="running", minutes=3)
    record_run("b-dry", skill="beta", status="dry_run", minutes=4)
    url = "/api/skills/last-run/?skill=alpha&skill=beta&skill=gamma&skill=alpha"
    assert assert_json(reader.get(url)) == {"last_run": {"alpha": "2026-11-20T12:01:00Z"}}
    failed = assert_json(reader.get(url + "&include_failed=1"))
    assert failed == {"last_run": {"alpha": "2026-11-20T12:02:00Z"}}
    assert assert_json(reader.get("/api/skills/last-run/")) == {"last_run": {}}


@pytest.mark.parametrize(
    "query",
    ["include_failed=maybe", "include_failed=1&include_failed=0", "skills=a", "skill=x&since=1"],
)
def test_last_run_refuses_bad_parameters(reader, query):
    assert reader.get("/api/skills/last-run/?" + query).status_code == 400


def test_last_run_caps_the_number_of_skills(reader):
    query = "&".join(f"skill=s{i}" for i in range(api.MAX_SKILLS + 1))
    response = reader.get("/api/skills/last-run/?" + query)
    assert response.status_code == 400 and "skill" in assert_json(response)
    # beyond what Django parses at all, still a JSON 400
    query = "&".join(f"skill=s{i}" for i in range(5000))
    response = reader.get("/api/skills/last-run/?" + query)
    assert response.status_code == 400 and "detail" in assert_json(response)


# --- the contract endpoints ----------------------------------------------------------------


def test_contract_list_and_count_endpoints(reader, mixed_runs):
    def runs_of(name, body):
        response = post_json(reader, f"/api/contract/{name}/", body)
        return [run["id"] for run in assert_json(response)["runs"]]

    assert runs_of("list_runs_by_skill", {"skill_id": "summarise", "limit": 0}) == [
        "top-running",
        "top-ok",
    ]
    assert runs_of(
        "list_runs_by_skill_paginated",
        {"skill_id": "summarise", "offset": 1, "limit": 10**30, "include_dry_run": True},
    ) == ["top-dry", "top-ok"]
    assert runs_of("list_runs_by_caller", {"caller_id": "alice"}) == ["child", "top-ok"]
    # the contract's RunFilter: nested runs are in unless top_level_only
    assert runs_of("list_runs_filtered", {"filter": {"caller_id": "alice"}}) == ["child", "top-ok"]
    assert runs_of(
        "list_runs_filtered", {"filter": {"top_level_only": True}, "offset": 2, "limit": 2}
    ) == ["top-err", "top-ok"]
    count = post_json(reader, "/api/contract/count_runs_filtered/", {})
    assert assert_json(count) == {"count": 5}
    by_skill = post_json(
        reader,
        "/api/contract/count_runs_by_skill/",
        {"skill_id": "summarise", "include_dry_run": True},
    )
    assert assert_json(by_skill) == {"count": 3}
    full = assert_json(post_json(reader, "/api/contract/get_run/", {"id": "top-err"}))
    assert full["error"] == "tool failed"
    assert assert_json(post_json(reader, "/api/contract/initialize/", {})) == {"ok": True}


@pytest.mark.parametrize(
    "name,body,field",
    [
        ("list_runs_by_skill", {}, "skill_id"),
        ("list_runs_by_skill", {"skill_id": "s", "limit": "5"}, "limit"),
        (
            "list_runs_by_skill_paginated",
            {"skill_id": "s", "include_dry_run": 1},
            "include_dry_run",
        ),
        ("list_runs_filtered", {"filter": {"since": "2026-01-01T00:00:00"}}, "filter"),
        ("list_runs_filtered", {"filter": {"colour": "red"}}, "filter"),
        ("list_runs_filtered", {"filter": []}, "filter"),
        ("count_runs_filtered", {"offset": 1}, "offset"),
        ("list_finished_runs_before", {"limit": 5}, "cutoff"),
        ("list_finished_runs_before", {"cutoff": "2026-01-01", "limit": 5}, "cutoff"),
        ("list_finished_runs_before", {"cutoff": "2026-01-01T00:00Z"}, "limit"),
        ("purge_older_than", {"t": "2026-01-01T00:00:00"}, "t"),
        ("initialize", {"please": True}, "please"),
        ("get_run", {"id": None}, "id"),
    ],
)
def test_contract_endpoints_refuse_bad_arguments(admin_api, mixed_runs, name, body, field):
    response = post_json(admin_api, f"/api/contract/{name}/", body)
    assert response.status_code == 400, response.content
    assert field in assert_json(response)
    assert SkillRun.objects.count() == 6


def test_finished_before_continues_past_one_response(reader, monkeypatch):
    monkeypatch.setattr(contract_methods, "FINISHED_PAGE", 3)
    for i in range(8):
        record_run(f"f{i}", minutes=i)
    body = {"cutoff": "2100-01-01T00:00:00Z", "limit": 7}
    first = assert_json(post_json(reader, "/api/contract/list_finished_runs_before/", body))
    assert [run["id"] for run in first["runs"]] == ["f0", "f1", "f2"]
    assert first["next"] == {"finished_at": "2026-11-20T12:02:01.500000Z", "id": "f2"}
    second = assert_json(
        post_json(
            reader,
            "/api/contract/list_finished_runs_before/",
            {**body, "limit": 4, "after": first["next"]},
        )
    )
    assert [run["id"] for run in second["runs"]] == ["f3", "f4", "f5"]
    last = assert_json(
        post_json(
            reader,
            "/api/contract/list_finished_runs_before/",
            {**body, "limit": 1, "after": second["next"]},
        )
    )
    assert [run["id"] for run in last["runs"]] == ["f6"] and last["next"] is None
    none = post_json(reader, "/api/contract/list_finished_runs_before/", {**body, "limit": 0})
    assert assert_json(none) == {"runs": [], "next": None}


# --- hostile text ---------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'; DROP TABLE skill_runs; --",
    "\u202eevil\u202c",
    "</script><!--",
    "{{ 7*7 }}",
]


def test_hostile_strings_are_served_as_json_never_html(writer):
    for i, text in enumerate(HOSTILE):
        run_id = f"h{i}{text}"[:64]
        body = {
            "id": run_id,
            "skill_id": text,
            "caller_id": text,
            "channel_id": text,
            "inputs": {text: [text]},
            "output": text,
            "error": text,
            "parent_run_id": text[:64],
        }
        assert post_json(writer, "/api/runs/", body).status_code == 201
        event = {"sequence": 1, "event_type": text[:32], "payload": {text: text}}
        assert post_json(writer, run_url(run_id, "logs"), event).status_code == 201
        stats = {"status": "ok", "output": text, "error": text}
        assert post_json(writer, run_url(run_id, "finish"), stats).status_code == 200
        paths = [
            (run_url(run_id), {}),
            (run_url(run_id, "logs"), {}),
            (run_url(run_id, "chain"), {"full": "1"}),
            (run_url(run_id, "tree"), {}),
            (run_url(text[:64], "children"), {"full": "1"}),
            ("/api/runs/", {"include_nested": "1"}),
            ("/api/skills/last-run/", {"skill": text}),
        ]
        for path, query in paths:
            response = writer.get(path, query)
            assert response.status_code == 200, path
            assert response["X-Content-Type-Options"] == "nosniff"
            data = assert_json(response)
            assert text in json.dumps(data, ensure_ascii=False), path
        run = assert_json(writer.get(run_url(run_id)))
        assert run["inputs"] == {text: [text]} and run["output"] == text
    # error bodies echo ids and names as JSON too
    response = post_json(writer, "/api/runs/", {"id": f"h0{HOSTILE[0]}"[:64]})
    assert response.status_code == 409 and "<script>" in assert_json(response)["detail"]


# --- the schema -----------------------------------------------------------------------------


def test_schema_needs_a_login_and_documents_every_endpoint(reader):
    assert APIClient().get("/api/schema/").status_code == 401
    response = reader.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    schema = json.loads(response.content)
    paths = schema["paths"]
    for route in [
        "/api/runs/",
        "/api/runs/{run_id}/",
        "/api/runs/{run_id}/logs/",
        "/api/runs/{run_id}/finish/",
        "/api/runs/{run_id}/chain/",
        "/api/runs/{run_id}/children/",
        "/api/runs/{run_id}/tree/",
        "/api/skills/last-run/",
        "/api/contract/purge_older_than/",
    ]:
        assert route in paths, route
    listing = paths["/api/runs/"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    from runs.filters import RunFilterSet

    assert names == set(RunFilterSet.base_filters) | {"cursor", "page_size"}
    for path in paths.values():
        for operation in path.values():
            assert {"200", "400", "401", "403"} <= set(operation["responses"]) or {
                "201",
                "400",
                "401",
                "403",
            } <= set(operation["responses"])
            assert {"tokenAuth": []} in operation["security"]
    assert "LogAppendRequest" in schema["components"]["schemas"]
    yaml = reader.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert yaml.status_code == 200 and b"openapi: 3" in yaml.content


# --- never a 500 ---------------------------------------------------------------------------

PARAM_NAMES = [
    "status",
    "skill",
    "caller",
    "channel",
    "since",
    "until",
    "include_nested",
    "include_dry_run",
    "cursor",
    "page_size",
    "after",
    "limit",
    "full",
    "include_failed",
    "x",
]
nasty_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "1",
            "0",
            "-1",
            str(2**63),
            "9" * 30,
            "NaN",
            "1e999",
            "\x00",
            "2026-11-20",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-23:59",
            "%",
            "ok",
            "stale",
        ]
    ),
)
query_strategy = st.lists(st.tuples(st.sampled_from(PARAM_NAMES), nasty_text), max_size=6)
GET_PATHS = [
    "/api/runs/",
    run_url("top-ok"),
    run_url("top-ok", "logs"),
    run_url("top-ok", "chain"),
    run_url("top-ok", "children"),
    run_url("top-ok", "tree"),
    "/api/skills/last-run/",
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(GET_PATHS), query=query_strategy)
def test_no_query_string_gets_a_server_error(reader, mixed_runs, path, query):
    response = reader.get(path, query)
    assert response.status_code in (200, 400, 404), (path, query, response.content[:200])
    assert_json(response)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
FIELD_NAMES = [
    "id",
    "skill_id",
    "inputs",
    "started_at",
    "tool_calls_count",
    "runtime_seconds",
    "status",
    "sequence",
    "payload",
    "created_at",
    "events",
    "filter",
    "offset",
    "limit",
    "cutoff",
    "after",
    "t",
    "skill_id",
    "caller_id",
    "include_dry_run",
    "tool_calls",
]
body_strategy = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=6)
POST_PATHS = [
    "/api/runs/",
    run_url("top-ok", "logs"),
    run_url("top-ok", "finish"),
    *[f"/api/contract/{name}/" for name in CONTRACT_BODIES if name != "purge_older_than"],
]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(POST_PATHS), body=body_strategy)
def test_no_body_gets_a_server_error(writer, mixed_runs, path, body):
    response = post_json(writer, path, body)
    assert response.status_code in (200, 201, 400, 404, 409), (path, body, response.content[:300])
    assert_json(response)
