"""Walks the whole URL configuration: no URL answers users who lack the login or permission.

A new page or endpoint is covered the moment it is routed; only the allow-list below may
answer anonymous users.
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.dashboard_data import make_viewer, record_run

pytestmark = pytest.mark.django_db

RUN_ID = "secret-run-id-7f3a"
SAMPLES = {
    "run_id": RUN_ID,
    "object_id": RUN_ID,
    "field": "output",
    "sequence": "1",
    "content_type_id": "1",
    "app_label": "runs",
    "url": "runs/skillrun/",
    "pk": RUN_ID,
    "format": "json",
}
# The only names that may answer anonymous users: the login page and /healthz.
PUBLIC = {"admin:login", "healthz", "admin:logout", "runs:login", "runs:logout"}
# Pages about the staff user's own account, which any staff user may open.
STAFF_OWN = {"admin:index", "admin:jsi18n", "admin:password_change", "admin:password_change_done"}


def _sample_route(route: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLES.get(m.group(1), "1"), route)


def _sample_regex(regex: str) -> str:
    def group(match):
        return SAMPLES.get(match.group(1), "1")

    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", group, regex)
    text = text.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\", "")
    return re.sub(r"[()?*+|]", "", text)


def all_urls(resolver=None, prefix="", namespace=""):
    """(name, sample path) for every routed pattern."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        pattern = entry.pattern
        route = getattr(pattern, "_route", None)
        piece = _sample_route(route) if route is not None else _sample_regex(pattern.regex.pattern)
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from all_urls(entry, prefix + piece, ns)
        elif isinstance(entry, URLPattern):
            yield f"{namespace}{entry.name}" if entry.name else prefix, "/" + prefix + piece


URLS = sorted(set(all_urls()))


@pytest.fixture
def stored_run(db):
    record_run(RUN_ID, output="the secret output", events=[("step", {"s": "secret payload"})])


def test_the_walk_finds_every_part_of_the_site():
    names = {name for name, _ in URLS}
    for expected in (
        "runs:run_list",
        "runs:run_detail",
        "runs:run_tree",
        "runs:skills",
        "admin:index",
        "admin:runs_skillrun_changelist",
    ):
        assert expected in names


@pytest.mark.parametrize("name,url", URLS, ids=[n for n, _ in URLS])
def test_anonymous_users_get_nothing(client, stored_run, name, url):
    if name in PUBLIC:
        return
    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code in (301, 302, 401, 403, 404, 405), (name, url)
        if response.status_code in (301, 302):
            location = response["Location"]
            assert "/login/" in location or location.endswith("/"), (name, url, location)
        assert RUN_ID.encode() not in response.content or response.status_code == 404
        assert b"secret" not in response.content


@pytest.mark.parametrize("name,url", URLS, ids=[n for n, _ in URLS])
def test_staff_without_permissions_get_nothing(client, django_user_model, stored_run, name, url):
    if name in PUBLIC:
        return
    client.force_login(make_viewer(django_user_model, permission=False))
    response = client.get(url)
    # 401: the OTLP receiver takes a token only, never a session.
    assert response.status_code in (302, 401, 403, 404, 405) or name in STAFF_OWN, (name, url)
    assert b"secret" not in response.content


@pytest.mark.parametrize("name,url", URLS, ids=[n for n, _ in URLS])
def test_users_with_permission_but_not_staff_get_nothing_from_the_admin(
    client, django_user_model, stored_run, name, url
):
    if name in PUBLIC:
        return
    client.force_login(make_viewer(django_user_model, staff=False, permission=True))
    response = client.get(url)
    if name.startswith(("api", "runs_api", "runs:")) or not name.startswith("admin:"):
        # The API and the dashboard check the permission, not the staff flag;
        # the admin alone needs staff.
        return
    assert response.status_code in (302, 403, 404, 405), (name, url)
    assert b"secret" not in response.content
