"""Network input that can never be right is a 400 naming the field, and
nothing is stored: a start more than a day ahead of the server clock, a finish with status
running or a negative count, an event sequence below 1, a purge cutoff in the future."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from runs.access.models import ApiToken
from runs.models import SkillRun, SkillRunLog

pytestmark = pytest.mark.django_db

EVERYTHING = [
    "view_skillrun",
    "add_skillrun",
    "change_skillrun",
    "add_skillrunlog",
    "delete_skillrun",
    "delete_skillrunlog",
]


@pytest.fixture
def api(django_user_model):
    user = django_user_model.objects.create_user("executor")
    user.user_permissions.set(Permission.objects.filter(codename__in=EVERYTHING))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.objects.create(user=user).key}")
    return client


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def iso(moment) -> str:
    return moment.isoformat()


def test_a_start_more_than_a_day_ahead_is_refused(api):
    now = timezone.now()
    ahead = post(api, "/api/runs/", {"id": "future", "started_at": iso(now + timedelta(days=2))})
    assert ahead.status_code == 400 and "started_at" in ahead.json()
    assert not SkillRun.objects.filter(pk="future").exists()
    # A writer's clock a little ahead is fine.
    near = post(api, "/api/runs/", {"id": "near", "started_at": iso(now + timedelta(hours=23))})
    assert near.status_code == 201


@pytest.mark.parametrize(
    "body,field",
    [
        ({"status": "running"}, "status"),
        ({"status": "ok", "runtime_seconds": -0.5}, "runtime_seconds"),
        ({"status": "ok", "tool_calls": -1}, "tool_calls"),
        ({"status": "ok", "input_tokens": -1}, "input_tokens"),
        ({"status": "ok", "output_tokens": -(2**63)}, "output_tokens"),
        ({"status": "ok", "thinking_tokens": -3}, "thinking_tokens"),
    ],
)
def test_a_finish_that_cannot_be_right_is_refused(api, body, field):
    assert post(api, "/api/runs/", {"id": "r1"}).status_code == 201
    response = post(api, f"/api/runs/{quote('r1')}/finish/", body)
    assert response.status_code == 400 and field in response.json()
    run = SkillRun.objects.get(pk="r1")
    assert run.status == "running" and run.finished_at is None


def test_a_finish_with_zero_counts_is_fine(api):
    post(api, "/api/runs/", {"id": "r1"})
    body = {"status": "error", "runtime_seconds": 0, "tool_calls": 0, "input_tokens": 0}
    assert post(api, "/api/runs/r1/finish/", body).status_code == 200


@pytest.mark.parametrize("sequence", [0, -1, -(2**63)])
def test_an_event_sequence_below_one_is_refused(api, sequence):
    post(api, "/api/runs/", {"id": "r1"})
    one = post(api, "/api/runs/r1/logs/", {"sequence": sequence})
    assert one.status_code == 400 and "sequence" in one.json()
    batch = post(api, "/api/runs/r1/logs/", {"events": [{"sequence": 1}, {"sequence": sequence}]})
    assert batch.status_code == 400
    assert not SkillRunLog.objects.exists()
    assert post(api, "/api/runs/r1/logs/", {"sequence": 1}).status_code == 201


def test_a_purge_cutoff_in_the_future_is_refused(api):
    post(api, "/api/runs/", {"id": "r1"})
    future = iso(timezone.now() + timedelta(minutes=5))
    response = post(api, "/api/contract/purge_older_than/", {"t": future})
    assert response.status_code == 400 and "t" in response.json()
    assert SkillRun.objects.filter(pk="r1").exists()
    past = iso(timezone.now() - timedelta(days=1))
    assert post(api, "/api/contract/purge_older_than/", {"t": past}).json() == {"deleted": 0}
