"""Any cursor gives a page or a 400 (a `before` cursor newer than every row
was a 500: the page was empty but said older rows followed)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from runs import cursors
from runs.access.models import ApiToken
from tests.dashboard_data import BASE, make_viewer, record_run

pytestmark = pytest.mark.django_db

EDGES = [
    cursors.encode(datetime(9999, 12, 31, 23, 59, tzinfo=UTC), "zzz"),
    cursors.encode(datetime(2999, 1, 1, tzinfo=UTC), ""),
    cursors.encode(datetime(1, 1, 1, tzinfo=UTC), ""),
    cursors.encode(datetime(1970, 1, 1, tzinfo=UTC), "a"),
    cursors.encode(BASE, "run-05"),
]
HAND_MADE = [
    base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    for value in (
        ["0001-01-01T00:00:00+14:00", "x"],
        ["9999-12-31T23:59:59-14:00", "x"],
        ["2026-01-01T00:00:00", "x"],
        ["2026-01-01T00:00:00Z", 5],
        ["2026-01-01T00:00:00Z", "a\u0000b"],
        ["nonsense", "x"],
        [],
        {},
    )
]


@pytest.fixture
def runs(db):
    for n in range(1, 8):
        record_run(f"run-{n:02d}", minutes=n, parent="run-01" if n > 4 else "")


@pytest.fixture
def viewer(client, django_user_model, runs):
    client.force_login(make_viewer(django_user_model))
    return client


@pytest.mark.parametrize("cursor", EDGES + HAND_MADE)
@pytest.mark.parametrize("direction", ["before", "after"])
def test_dashboard_list_answers_any_cursor(viewer, cursor, direction):
    response = viewer.get("/runs/", {direction: cursor, "include_nested": "1"})
    assert response.status_code in (200, 400), response.status_code


def test_a_before_cursor_past_the_newest_run_gives_the_newest_page(viewer):
    response = viewer.get("/runs/", {"before": EDGES[0], "include_nested": "1"})
    assert response.status_code == 200
    assert [run.id for run in response.context["runs"]][:3] == ["run-07", "run-06", "run-05"]


@pytest.mark.parametrize("cursor", EDGES + HAND_MADE)
@pytest.mark.parametrize("path", ["/api/runs/", "/api/runs/run-01/children/"])
def test_api_pages_answer_any_cursor(django_user_model, runs, cursor, path):
    user = make_viewer(django_user_model, staff=False)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.objects.create(user=user).key}")
    response = client.get(path, {"cursor": cursor})
    assert response.status_code in (200, 400), (response.status_code, response.content[:200])
