"""The list filters (status lists and groups, failed=1, relative and whole-day
times, page size), each alone and combined, on both databases, against counting in Python;
the same through the API; the suggestions, the 400 page's way back, /api/, the skills
page's chips, sparklines and sorting."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from runs import contract
from runs.filters import RunFilterSet
from runs.models import SkillRun, SkillRunLog
from tests.dashboard_data import make_viewer

pytestmark = pytest.mark.django_db

STATUSES = [*contract.KNOWN_STATUSES, "custom_status"]


@pytest.fixture
def history(db):
    """Runs over the last ten days: every status, trees, failed tools, hostile names."""
    now = timezone.now()
    runs = []
    for i in range(160):
        parent = f"r{i - 1:03d}" if i % 5 and i % 7 else ""
        runs.append(
            SkillRun(
                id=f"r{i:03d}",
                skill_id=["summarise", "sum<b>", "triage"][i % 3],
                caller_id=["alice", "bob", ""][i % 3],
                channel_id=["ops", "", "support"][i % 3],
                status=STATUSES[(i * 7) % len(STATUSES)],
                started_at=now - timedelta(hours=1.5 * i + 0.25),
                parent_run_id=parent,
            )
        )
    SkillRun.objects.bulk_create(runs)
    SkillRunLog.objects.bulk_create(
        [
            SkillRunLog(
                run_id=f"r{i:03d}",
                sequence=1,
                event_type="tool_result",
                payload={"tool": "t", "is_error": i % 2 == 0},
                created_at=now,
            )
            for i in range(0, 160, 9)
        ]
    )
    return now


def expected_ids(params: dict, now: datetime) -> list[str]:
    """The list's rule, counted in Python over every run."""
    runs = {r.id: r for r in SkillRun.objects.all()}
    failed_tools = {r.id: r.failed_tools for r in runs.values()}
    failed_below = {r.id: r.failed_descendants for r in runs.values()}
    statuses = ()
    if params.get("status"):
        names = params["status"].split(",")
        statuses = tuple(
            s for n in names for s in (contract.FAILED_STATUSES if n == "failed" else (n,))
        )

    def at(value: str, end: bool) -> datetime:
        m = re.fullmatch(r"-(\d+)([mhd])", value)
        if m:
            unit = {"m": "minutes", "h": "hours", "d": "days"}[m[2]]
            return now - timedelta(**{unit: int(m[1])})
        if len(value) == 10:
            day = datetime.fromisoformat(value).replace(tzinfo=UTC)
            return day + timedelta(days=1) if end else day
        return datetime.fromisoformat(value)

    picked = []
    for run in runs.values():
        if params.get("include_nested") != "1" and run.parent_run_id:
            continue
        if statuses:
            if run.status not in statuses:
                continue
        elif params.get("include_dry_run") != "1" and run.status == contract.STATUS_DRY_RUN:
            continue
        if params.get("failed") == "1" and not (
            run.status in contract.FAILED_STATUSES or failed_tools[run.id] or failed_below[run.id]
        ):
            continue
        for key in ("skill", "caller", "channel"):
            if params.get(key) and getattr(run, f"{key}_id") != params[key]:
                break
        else:
            if params.get("since") and run.started_at < at(params["since"], False):
                continue
            if params.get("until") and run.started_at >= at(params["until"], True):
                continue
            picked.append(run)
    picked.sort(key=lambda r: (r.started_at, r.id), reverse=True)
    return [r.id for r in picked]


def test_failure_counts_in_python_agree_with_the_triggers(history):
    runs = dict(SkillRun.objects.values_list("id", "parent_run_id"))
    statuses = dict(SkillRun.objects.values_list("id", "status"))
    for run_id, below in SkillRun.objects.values_list("id", "failed_descendants"):
        count = 0
        for other, status in statuses.items():
            if other == run_id or status not in contract.FAILED_STATUSES:
                continue
            parent = runs[other]
            while parent:
                if parent == run_id:
                    count += 1
                    break
                parent = runs.get(parent, "")
        assert below == count, run_id


OPTIONS = {
    "status": ["", "failed", "error,timeout", "ok,dry_run", "running"],
    "failed": ["", "1"],
    "since": ["", "-24h", "-7d", "SINCE_DATE"],
    "until": ["", "-1h", "UNTIL_DATE"],
    "include_nested": ["", "1"],
    "skill": ["", "triage"],
}


def combinations():
    keys = list(OPTIONS)
    for values in itertools.product(*(OPTIONS[k] for k in keys)):
        yield {k: v for k, v in zip(keys, values, strict=True) if v}


def test_every_combination_matches_counting_in_python(history):
    now = history
    since_date = (now - timedelta(days=3)).date().isoformat()
    until_date = (now - timedelta(days=1)).date().isoformat()
    checked = 0
    for params in combinations():
        params = {
            k: v.replace("SINCE_DATE", since_date).replace("UNTIL_DATE", until_date)
            for k, v in params.items()
        }
        filterset = RunFilterSet(params, queryset=SkillRun.objects.all())
        assert filterset.is_valid(), (params, filterset.error_messages)
        got = list(filterset.qs.newest_first().values_list("id", flat=True))
        assert got == expected_ids(params, timezone.now()), params
        checked += 1
    assert checked == 5 * 2 * 4 * 3 * 2 * 2


@pytest.fixture
def viewer_client(client, django_user_model):
    client.force_login(make_viewer(django_user_model, staff=False))
    return client


@pytest.mark.parametrize(
    "query",
    [
        {"status": "failed", "include_nested": "1"},
        {"status": "error,timeout", "failed": "1"},
        {"failed": "1", "since": "-7d", "include_nested": "1"},
        {"status": "ok,dry_run", "until": "-1h"},
    ],
)
def test_the_api_and_the_page_answer_the_same(viewer_client, history, query):
    expected = expected_ids(query, timezone.now())
    api = viewer_client.get(reverse("api:runs"), {**query, "page_size": 500})
    assert api.status_code == 200, api.content
    assert [r["id"] for r in api.json()["results"]] == expected
    page = viewer_client.get(reverse("runs:run_list"), {**query, "page_size": 200})
    html = page.content.decode()
    shown = re.findall(r'<td class="time"><a href="/runs/([^/"#]+)/', html)
    assert shown == expected[:200]


def test_page_size_and_its_refusals(viewer_client, history):
    html = viewer_client.get(reverse("runs:run_list"), {"page_size": 25}).content.decode()
    assert html.count('<td class="time">') == 25
    for bad in ("30", "0", "x", "500"):
        response = viewer_client.get(reverse("runs:run_list"), {"page_size": bad})
        assert response.status_code == 400
        assert b"page_size" in response.content


@pytest.mark.parametrize(
    "query,bad",
    [
        ({"status": "error,nope"}, "status"),
        ({"status": "stale,error"}, "status"),
        ({"since": "-1y"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"failed": "maybe"}, "failed"),
    ],
)
def test_bad_values_are_refused_and_the_way_back_drops_only_them(viewer_client, query, bad):
    params = {"skill": "triage", "caller": "a&b", **query}
    response = viewer_client.get(reverse("runs:run_list"), params)
    assert response.status_code == 400
    html = response.content.decode()
    back = re.search(r'<a href="([^"]*)" id="back-link">', html)[1].replace("&amp;", "&")
    assert back.startswith("/runs/?")
    assert f"{bad}=" not in back
    assert "skill=triage" in back and "caller=a%26b" in back
    api = viewer_client.get(reverse("api:runs"), params)
    assert api.status_code == 400 and bad in api.json()


def test_a_bare_until_date_includes_that_day(viewer_client, db):
    SkillRun.objects.bulk_create(
        [
            SkillRun(
                id="late",
                skill_id="s",
                status="ok",
                started_at=datetime(2026, 12, 2, 23, 59, tzinfo=UTC),
            ),
            SkillRun(
                id="next", skill_id="s", status="ok", started_at=datetime(2026, 12, 3, tzinfo=UTC)
            ),
        ]
    )
    filterset = RunFilterSet({"until": "2026-12-02"}, queryset=SkillRun.objects.all())
    assert filterset.is_valid()
    assert list(filterset.qs.values_list("id", flat=True)) == ["late"]
    filterset = RunFilterSet({"since": "2026-12-03"}, queryset=SkillRun.objects.all())
    assert filterset.is_valid()
    assert list(filterset.qs.values_list("id", flat=True)) == ["next"]


def test_suggestions_are_known_values_by_prefix(viewer_client, history):
    url = reverse("runs:suggest", args=["skill"])
    assert viewer_client.get(url, {"prefix": "sum"}).json() == {"values": ["sum<b>", "summarise"]}
    assert viewer_client.get(url).json() == {"values": ["sum<b>", "summarise", "triage"]}
    callers = viewer_client.get(reverse("runs:suggest", args=["caller"]), {"prefix": ""})
    assert callers.json() == {"values": ["alice", "bob"]}
    assert viewer_client.get(url, {"prefix": "zz"}).json() == {"values": []}
    assert viewer_client.get(url, {"prefix": "s", "x": "1"}).status_code == 400
    assert viewer_client.get(reverse("runs:suggest", args=["status"])).status_code == 404


def test_suggestions_and_the_api_index_need_the_permission(client, django_user_model, history):
    url = reverse("runs:suggest", args=["skill"])
    assert client.get(url).status_code == 302
    assert client.get("/api/").status_code == 401
    client.force_login(make_viewer(django_user_model, permission=False))
    assert client.get(url).status_code == 403
    assert client.get("/api/").status_code == 403
    assert b"summarise" not in client.get(url).content


def test_the_api_index_lists_the_endpoints(viewer_client):
    body = viewer_client.get("/api/").json()
    paths = {e["path"]: e for e in body["endpoints"]}
    assert body["schema"] == "/api/schema/"
    assert paths["/api/runs/"]["methods"] == ["GET", "POST"]
    assert "/api/runs/{run_id}/logs/" in paths


def test_skills_page_chips_sparklines_and_sorting(viewer_client, history):
    html = viewer_client.get(reverse("runs:skills")).content.decode()
    # 24-hour chips open 24-hour lists; 7-day chips 7-day ones.
    day_cell = re.search(r'<td class="counts day">(.*?)</td>', html)[1]
    week_cell = re.search(r'<td class="counts week">(.*?)</td>', html)[1]
    assert "since=-24h" in day_cell and "since=-7d" not in day_cell
    assert "since=-7d" in week_cell
    # A sparkline per skill, its labels escaped.
    assert html.count('<svg class="spark"') == 3
    assert "sum<b>" not in html and "sum&lt;b&gt;" in html
    by_name = viewer_client.get(reverse("runs:skills"), {"sort": "name"}).content.decode()
    order = re.findall(r'<tr><td class="id"><a href="[^"]*">([^<]*)</a>', by_name)
    assert order == ["sum&lt;b&gt;", "summarise", "triage"]
    assert viewer_client.get(reverse("runs:skills"), {"sort": "nope"}).status_code == 400
    assert viewer_client.get(reverse("runs:skills"), {"page": "0"}).status_code == 400


def test_a_24_hour_chip_opens_exactly_its_runs(viewer_client, history):
    html = viewer_client.get(reverse("runs:skills"), {"sort": "name"}).content.decode()
    chip = re.search(r'<td class="counts day"><a href="([^"]*)">.*?</span> (\d+)</a>', html)
    url, shown = chip[1].replace("&amp;", "&"), int(chip[2])
    listed = viewer_client.get(url + "&page_size=200").content.decode()
    assert listed.count('<td class="time">') == shown
    assert json.dumps(shown)  # a number
