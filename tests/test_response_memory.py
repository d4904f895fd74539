"""A big API answer is freed by reference counting once it is sent, not left in a reference
cycle for the cyclic collector: in a gunicorn worker such cycles (the rows' ReturnDicts and
their serializers, the view and DRF's renderer context around the response) held ~40 MB
more after each 104 MB contract answer (tests/system/response_memory.py measures the
worker's memory; this is its fast, deterministic half).

The requests go through Django's WSGI handler, as gunicorn calls it, not the test Client
(which ties its responses into cycles of its own)."""

from __future__ import annotations

import gc
import io
import json
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.response import Response

from runs import contract
from runs.access.models import ApiToken
from runs.storage import DjangoStorage

pytestmark = pytest.mark.django_db

MARK = "held-in-a-cycle?"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def token(django_user_model):
    # As the test Client does: the test's transaction outlives each request.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    storage = DjangoStorage()
    storage.start_run(contract.SkillRun(id="parent", skill_id="big", inputs={}, started_at=T0))
    for n in range(3):
        storage.start_run(
            contract.SkillRun(
                id=f"child-{n}",
                skill_id="big",
                parent_run_id="parent",
                inputs={"blob": MARK * 1000, "n": n},
                started_at=T0 + timedelta(minutes=n + 1),
            )
        )
    storage.append_log(
        contract.SkillRunLog(run_id="parent", sequence=1, event_type="note", payload={"m": MARK})
    )
    user = django_user_model.objects.create_user("memory-client")
    user.user_permissions.set(Permission.objects.filter(codename="view_skillrun"))
    yield ApiToken.objects.create(user=user).key
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def served(token, method, path, query="", body=None):
    """The body of one answer from the WSGI application, closed as gunicorn closes it."""
    data = json.dumps(body).encode() if body is not None else b""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(data),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(data)),
        "CONTENT_TYPE": "application/json",
        "HTTP_AUTHORIZATION": f"Token {token}",
    }
    statuses = []
    answer = WSGIHandler()(environ, lambda status, headers: statuses.append(status))
    content = b"".join(answer)
    answer.close()
    assert statuses[0].startswith("200"), (statuses, content[:300])
    return content


def cyclic_garbage_of(call) -> list:
    """What only the cyclic collector would free after ``call()``."""
    gc.collect()
    gc.disable()
    try:
        call()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    return found


ANSWERS = {
    "contract list_runs_filtered": (
        "POST",
        "/api/contract/list_runs_filtered/",
        "",
        {
            "filter": {"skill_id": "big", "top_level_only": False, "include_dry_run": False},
            "offset": 0,
            "limit": 500,
        },
    ),
    "children full": ("GET", "/api/runs/parent/children/", "full=1", None),
    "logs": ("GET", "/api/runs/parent/logs/", "limit=1000", None),
}


@pytest.mark.parametrize("answer", ANSWERS)
def test_an_answer_leaves_no_cycle_holding_its_rows(token, answer):
    method, path, query, body = ANSWERS[answer]
    assert MARK.encode() in served(token, method, path, query, body)  # rows were answered
    garbage = cyclic_garbage_of(lambda: served(token, method, path, query, body))
    assert not [o for o in garbage if type(o) is Response]
    held = [
        o
        for o in garbage
        if type(o) is dict and any(type(v) is str and MARK in v for v in o.values())
    ]
    assert not held
    assert not [o for o in garbage if type(o) is str and MARK in o]
