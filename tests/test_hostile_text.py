"""Everything stored is hostile: every page must show it as inert text."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.dashboard_data import make_viewer, record_run

pytestmark = pytest.mark.django_db

SCRIPT = "<script>window.__xss=1</script>"
ATTR = '"><img src=x onerror=alert(1)>'
QUOTE = "' onmouseover='alert(1)"
TEMPLATE = "{{ 7|add:7 }}{% now 'Y' %}"
RTL = "\u202eevil\u202c مرحبا 🤖"
HOSTILE = [SCRIPT, ATTR, QUOTE, TEMPLATE, RTL]


def hostile(tag: str) -> str:
    return f"{tag}{SCRIPT}{ATTR}{QUOTE}{TEMPLATE}"


@pytest.fixture
def hostile_tree(db):
    parent_id = "p" + SCRIPT[:40]
    child_id = "c" + ATTR
    common = dict(
        skill=hostile("s")[:200],
        caller=hostile("c")[:200],
        channel=hostile("ch")[:200],
        inputs={hostile("key"): hostile("value"), "list": [SCRIPT, {ATTR: QUOTE}]},
        output=hostile("out") + RTL,
        error=hostile("err"),
        events=[
            ("step", {hostile("k"): hostile("v")}),
            ("tool_call", {"tool": hostile("tool"), "call_id": ATTR, "arguments": {SCRIPT: ATTR}}),
            ("tool_result", {"tool": hostile("tool"), "call_id": ATTR, "result": hostile("r")}),
            (SCRIPT[:32], {"message": hostile("m")}),
        ],
    )
    record_run(parent_id, status="error", **common)
    record_run(child_id, status=SCRIPT[:32], parent=parent_id, minutes=1, **common)
    return parent_id, child_id


def assert_inert(html: str):
    for raw in (SCRIPT, ATTR, "<img src=x", "onerror=alert(1)>"):
        assert raw not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html


def test_every_page_shows_hostile_text_as_text(client, django_user_model, hostile_tree):
    client.force_login(make_viewer(django_user_model))
    parent_id, child_id = hostile_tree
    pages = [
        reverse("runs:run_list"),
        reverse("runs:run_list") + "?include_nested=1&include_dry_run=1",
        reverse("runs:run_detail", args=[parent_id]),
        reverse("runs:run_detail", args=[child_id]),
        reverse("runs:run_tree", args=[child_id]),
        reverse("runs:skills"),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert_inert(html)
        # template syntax in data is shown, never evaluated
        assert "{{ 7|add:7 }}{% now &#x27;Y&#x27; %}" in html


def test_hostile_filter_values_are_echoed_escaped(client, django_user_model, hostile_tree):
    client.force_login(make_viewer(django_user_model))
    response = client.get(reverse("runs:run_list"), {"skill": ATTR, "caller": SCRIPT})
    assert response.status_code == 200
    assert_inert(response.content.decode())


def test_hostile_parameter_names_are_echoed_escaped(client, django_user_model, hostile_tree):
    client.force_login(make_viewer(django_user_model))
    response = client.get(reverse("runs:run_list"), {SCRIPT: "1"})
    assert response.status_code == 400
    html = response.content.decode()
    assert SCRIPT not in html
    assert "&lt;script&gt;" in html


def test_raw_views_are_inert(client, django_user_model, hostile_tree):
    client.force_login(make_viewer(django_user_model))
    parent_id, _ = hostile_tree
    response = client.get(reverse("runs:run_raw", args=[parent_id, "output"]))
    assert response["Content-Type"].startswith("text/plain")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    event = client.get(reverse("runs:event_raw", args=[parent_id, 1]))
    assert event["Content-Type"] == "application/json"
