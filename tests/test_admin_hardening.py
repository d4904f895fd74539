"""The admin filters only by the lookups its filters offer, and a
NUL in an object id or a filter value is a 404 or 400, never a 500 (PostgreSQL refuses NUL)."""

import re
from datetime import UTC, datetime
from html import unescape

import pytest
from django.contrib.auth.models import Permission, User

from runs.models import SkillRun, SkillRunLog

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def viewer(client, db):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_skillrun", "view_skillrunlog"])
    )
    client.force_login(user)
    SkillRun.objects.create(id="r\ufffd1", skill_id="s", status="ok", started_at=T0)
    SkillRunLog.objects.create(
        run_id="r\ufffd1", sequence=1, event_type="step", payload={}, created_at=T0
    )
    return client


@pytest.mark.parametrize(
    "query",
    [
        "output__regex=^(.|.)*X$",
        "inputs__contains=x",
        "id=r1",
        "id__startswith=r",
        "skill_id__iregex=.*",
        "error__icontains=a",
        "status__regex=o",
        "started_at__year=2025",
        "parent_run__skill_id=x",
    ],
)
def test_run_list_refuses_lookups_it_does_not_offer(viewer, query):
    response = viewer.get(f"/admin/runs/skillrun/?{query}")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "query", ["payload__contains=x", "run_id=r1", "run__output__regex=x", "sequence__gt=0"]
)
def test_log_list_refuses_lookups_it_does_not_offer(viewer, query):
    assert viewer.get(f"/admin/runs/skillrunlog/?{query}").status_code == 400


@pytest.mark.parametrize("path", ["/admin/runs/skillrun/", "/admin/runs/skillrunlog/"])
def test_every_filter_link_the_page_offers_still_works(viewer, path):
    page = viewer.get(path).content.decode()
    sidebar = page[page.index('id="changelist-filter"') :]
    links = {unescape(href) for href in re.findall(r'href="(\?[^"]*)"', sidebar)}
    assert len(links) >= 5
    for link in links:
        response = viewer.get(path + link)
        assert response.status_code == 200, link
    assert viewer.get(path + "?q=r%EF%BF%BD1").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/admin/runs/skillrun/?status=%00",
        "/admin/runs/skillrun/?status=a%00b",
        "/admin/runs/skillrun/?started_at__gte=%00",
        "/admin/runs/skillrun/?started_at__lt=2025-01-01%00",
        "/admin/runs/skillrun/?q=%00",
        "/admin/runs/skillrun/?id=%00",
        "/admin/runs/skillrun/?o=%00",
        "/admin/runs/skillrun/?p=%00",
        "/admin/runs/skillrunlog/?event_type=%00",
        "/admin/runs/skillrunlog/?q=r%001",
        "/admin/runs/skillrunlog/?run_id=%00",
    ],
)
def test_nul_in_a_filter_value_is_never_a_500(viewer, url):
    response = viewer.get(url)
    if response.status_code == 302:  # the admin's "invalid filter value" notice
        assert response.url.endswith("?e=1")
    else:
        assert response.status_code in (200, 400)


@pytest.mark.parametrize(
    "url",
    [
        "/admin/runs/skillrun/r%001/change/",
        "/admin/runs/skillrun/r%001/history/",
        "/admin/runs/skillrun/r%001/delete/",
        "/admin/runs/skillrunlog/r%001/change/",
        "/admin/runs/skillrunlog/%00/history/",
    ],
)
def test_nul_in_an_object_id_is_a_404(viewer, url):
    assert viewer.get(url).status_code == 404


def test_the_stored_run_still_opens(viewer):
    assert viewer.get("/admin/runs/skillrun/r%EF%BF%BD1/change/").status_code == 200
