"""The recording endpoints take the
documented 16 MiB, with a 413 above it; every other API endpoint keeps a small limit (413
above Django's 2.5 MB); a POST to an unknown /api/ path is the JSON 404, not the CSRF page."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from runs.access.models import ApiToken
from runs.api.views import DEFAULT_MAX_BODY_BYTES
from runs.models import SkillRunLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(django_user_model):
    user = django_user_model.objects.create_user("executor")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="runs"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.objects.create(user=user).key}")
    assert client.post("/api/runs/", {"id": "r1"}, format="json").status_code == 201
    return client


def post_raw(client, path: str, body: str):
    return client.generic("POST", path, body.encode(), content_type="application/json")


def test_a_4_mb_batch_of_10000_events_is_stored(api):
    events = [
        {"sequence": n, "event_type": "tool_call", "payload": {"x": "y" * 380}}
        for n in range(1, 10_001)
    ]
    body = json.dumps({"events": events})
    assert 4_000_000 < len(body) < DEFAULT_MAX_BODY_BYTES
    response = post_raw(api, "/api/runs/r1/logs/", body)
    assert response.status_code == 201, response.content[:200]
    assert response.json() == {"run_id": "r1", "stored": 10_000}
    assert SkillRunLog.objects.filter(run_id="r1").count() == 10_000


def test_a_body_over_16_mib_is_a_413(api):
    padding = "y" * (DEFAULT_MAX_BODY_BYTES + 10)
    response = post_raw(api, "/api/runs/r1/finish/", json.dumps({"status": "ok", "x": padding}))
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


def test_other_api_endpoints_keep_a_small_limit(api):
    small = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps({"id": "r1", "padding": "y" * (small + 10)})
    response = post_raw(api, "/api/contract/get_run/", body)
    assert response.status_code == 413
    assert str(small) in response.json()["detail"]


def test_a_post_to_an_unknown_api_path_is_the_json_404():
    browser = Client(enforce_csrf_checks=True)
    response = browser.post("/api/no-such-thing/", "{}", content_type="application/json")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "no such endpoint" in response.json()["detail"]
