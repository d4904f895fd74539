"""The dashboard views with the Django test client on the real test database."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs import cursors
from runs.models import SkillRun
from runs.web.views import COUNT_CAP, EVENTS_PAGE_SIZE, PAGE_SIZE
from tests.dashboard_data import BASE, make_viewer, record_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client, django_user_model):
    user = make_viewer(django_user_model)
    client.force_login(user)
    return user


def ids_on(response) -> list[str]:
    """Run ids linked from the rows of a list page, in order."""
    html = response.content.decode()
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    return re.findall(r'<td class="time"><a href="/runs/([^"]+)/">', body)


@pytest.fixture
def mixed_runs(db):
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
    record_run("child", skill="lookup", caller="alice", minutes=4, parent="top-ok")
    record_run(
        "top-timeout", skill="triage", caller="carol", channel="ops", status="timeout", minutes=5
    )
    record_run("top-running", skill="summarise", caller="dave", status="running", minutes=6)


# --- access --------------------------------------------------------------------------


def dashboard_urls():
    return [
        reverse("runs:run_list"),
        reverse("runs:run_detail", args=["top-ok"]),
        reverse("runs:run_tree", args=["top-ok"]),
        reverse("runs:run_raw", args=["top-ok", "output"]),
        reverse("runs:event_raw", args=["top-ok", 1]),
        reverse("runs:skills"),
    ]


def test_anonymous_users_are_sent_to_the_login_page(client, mixed_runs):
    for url in dashboard_urls():
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("runs:login")), url
        assert b"top-ok" not in response.content


@pytest.mark.parametrize("staff", [True, False], ids=["staff", "no-staff"])
def test_users_without_the_view_permission_are_refused(
    client, django_user_model, mixed_runs, staff
):
    client.force_login(make_viewer(django_user_model, staff=staff, permission=False))
    for url in dashboard_urls():
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"top-ok" not in response.content


def test_the_view_permission_is_enough_staff_or_not(client, django_user_model, mixed_runs):
    """The dashboard needs runs.view_skillrun, not the staff flag (the admin
    does)."""
    client.force_login(make_viewer(django_user_model, staff=False, permission=True))
    for url in dashboard_urls():
        assert client.get(url).status_code in (200, 404), url  # 404: a run without events
    assert b"top-ok" in client.get(reverse("runs:run_list")).content
    admin = client.get(reverse("admin:runs_skillrun_changelist"))
    assert admin.status_code == 302 and b"top-ok" not in admin.content


def test_inactive_user_is_refused(client, django_user_model, mixed_runs):
    user = make_viewer(django_user_model)
    user.is_active = False
    user.save()
    client.force_login(user)
    assert client.get(reverse("runs:run_list")).status_code in (302, 403)


def test_home_redirects_to_the_run_list(client, viewer):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("runs:run_list")


def test_pages_refuse_post(client, viewer, mixed_runs):
    assert client.post(reverse("runs:run_list")).status_code == 405


# --- list filters --------------------------------------------------------------------


def test_default_list_is_top_level_without_dry_runs_newest_first(client, viewer, mixed_runs):
    response = client.get(reverse("runs:run_list"))
    assert response.status_code == 200
    assert ids_on(response) == ["top-running", "top-timeout", "top-err", "top-ok"]
    assert "4 runs" in response.content.decode()


@pytest.mark.parametrize(
    "query,expected",
    [
        ("status=error", ["top-err"]),
        ("status=ok", ["top-ok"]),
        ("status=ok&include_nested=1", ["child", "top-ok"]),
        ("status=dry_run", ["top-dry"]),
        ("skill=triage", ["top-timeout", "top-err"]),
        ("caller=alice", ["top-ok"]),
        ("caller=alice&include_nested=1", ["child", "top-ok"]),
        ("caller=alice&include_nested=1&include_dry_run=1", ["child", "top-dry", "top-ok"]),
        ("channel=ops", ["top-timeout", "top-err"]),
        ("include_nested=1", ["top-running", "top-timeout", "child", "top-err", "top-ok"]),
        ("include_dry_run=1", ["top-running", "top-timeout", "top-dry", "top-err", "top-ok"]),
        (
            "include_dry_run=true&include_nested=on",
            ["top-running", "top-timeout", "child", "top-dry", "top-err", "top-ok"],
        ),
        ("include_nested=0", ["top-running", "top-timeout", "top-err", "top-ok"]),
        ("since=2026-11-20T12:02:00Z", ["top-running", "top-timeout", "top-err"]),
        ("until=2026-11-20T12:02:00Z", ["top-ok"]),
        ("since=2026-11-20T12:02:00Z&until=2026-11-20T12:05:00Z", ["top-err"]),
        # A bare date as until includes that whole day (UTC).
        (
            "since=2026-11-20T14:02:00%2B02:00&until=2026-11-20",
            ["top-running", "top-timeout", "top-err"],
        ),
        ("until=2026-11-19", []),
        ("status=failed", ["top-timeout", "top-err"]),
        ("status=error,timeout", ["top-timeout", "top-err"]),
        ("status=ok,dry_run", ["top-dry", "top-ok"]),
        ("since=2026-11-20T14:02:00%2B02:00", ["top-running", "top-timeout", "top-err"]),
        ("since=2026-11-20", ["top-running", "top-timeout", "top-err", "top-ok"]),
        ("skill=triage&channel=ops&status=timeout", ["top-timeout"]),
        ("skill=summarise&status=error", []),
        ("status=running", ["top-running"]),
        ("skill=nope", []),
        ("skill=&caller=&status=", ["top-running", "top-timeout", "top-err", "top-ok"]),
    ],
)
def test_filters(client, viewer, mixed_runs, query, expected):
    response = client.get(reverse("runs:run_list") + "?" + query)
    assert response.status_code == 200, response.content
    assert ids_on(response) == expected


def test_stale_status_means_running_longer_than_the_setting(client, viewer, settings):
    settings.SKILLAUDIT_STALE_AFTER_MINUTES = 60
    now = timezone.now()
    record_run("old-running", status="running", started_at=now - timedelta(hours=2))
    record_run("new-running", status="running", started_at=now - timedelta(minutes=5))
    record_run("old-ok", started_at=now - timedelta(hours=3))
    response = client.get(reverse("runs:run_list") + "?status=stale")
    assert ids_on(response) == ["old-running"]
    # the default list marks it as stale, not as a plain running run
    listing = client.get(reverse("runs:run_list")).content.decode()
    assert "stale running" in listing
    # a tighter until still narrows the stale filter (never widens it)
    until = (now - timedelta(hours=4)).isoformat().replace("+00:00", "Z")
    assert ids_on(client.get(reverse("runs:run_list"), {"status": "stale", "until": until})) == []


@pytest.mark.parametrize(
    "query,parameter",
    [
        ("status=bogus", "status"),
        ("since=nope", "since"),
        ("until=2026-13-01", "until"),
        ("since=2026-11-20T12:00:00%2B25:00", "since"),
        ("until=NaN", "until"),
        ("until=1e60", "until"),
        ("include_nested=2", "include_nested"),
        ("include_dry_run=maybe", "include_dry_run"),
        ("skill=" + "x" * 300, "skill"),
        ("caller=" + "y" * 256, "caller"),
        ("statuss=ok", "statuss"),
        ("status=ok&status=error", "status"),
        ("after=not-a-cursor", "after"),
        ("before=%00%00", "before"),
        ("since=" + "9" * 100, "since"),
        ("since=%00", "since"),
    ],
)
def test_invalid_parameters_get_a_400_naming_them(client, viewer, mixed_runs, query, parameter):
    response = client.get(reverse("runs:run_list") + "?" + query)
    assert response.status_code == 400
    html = response.content.decode()
    assert f"<code>{parameter}</code>" in html
    # the error page never lists runs (no silently widened result)
    assert "top-ok" not in html


def test_after_and_before_together_are_refused(client, viewer, mixed_runs):
    cursor = cursors.encode(BASE, "x")
    response = client.get(reverse("runs:run_list"), {"after": cursor, "before": cursor})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00%2B01:00", "9999-12-31T23:59:59-05:00", "0001-01-01", "9999-12-31"],
)
def test_extreme_dates_are_clamped_or_refused_never_a_500(client, viewer, mixed_runs, value):
    for name in ("since", "until"):
        response = client.get(reverse("runs:run_list") + f"?{name}={value}")
        assert response.status_code in (200, 400)


def test_extreme_dates_do_not_widen(client, viewer, mixed_runs):
    assert ids_on(client.get(reverse("runs:run_list") + "?since=9999-12-31")) == []
    assert ids_on(client.get(reverse("runs:run_list") + "?until=0001-01-01")) == []


# --- paging and count ----------------------------------------------------------------


@pytest.fixture
def many_runs(db):
    # Two runs share each start time, so the id tie-break decides the order.
    for i in range(PAGE_SIZE * 2 + 10):
        record_run(f"run-{i:04d}", minutes=i // 2, skill=f"s{i % 3}")
    return [f"run-{i:04d}" for i in range(PAGE_SIZE * 2 + 10)]


def test_keyset_pages_walk_every_run_once_in_order(client, viewer, many_runs):
    expected = sorted(many_runs, key=lambda r: (int(r[4:]) // 2, r), reverse=True)
    seen, url = [], reverse("runs:run_list")
    pages = 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += ids_on(response)
        pages += 1
        match = re.search(r'rel="next" href="([^"]+)"', response.content.decode())
        url = reverse("runs:run_list") + match.group(1).replace("&amp;", "&") if match else None
    assert pages == 3
    assert seen == expected
    # and back: the newer link of the last page gives the page before it
    last = client.get(
        reverse("runs:run_list"),
        {
            "after": cursors.encode(
                SkillRun.objects.get(pk=expected[2 * PAGE_SIZE - 1]).started_at,
                expected[2 * PAGE_SIZE - 1],
            )
        },
    )
    assert ids_on(last) == expected[2 * PAGE_SIZE :]
    newer = re.search(r'rel="prev" href="([^"]+)"', last.content.decode()).group(1)
    back = client.get(reverse("runs:run_list") + newer.replace("&amp;", "&"))
    assert ids_on(back) == expected[PAGE_SIZE : 2 * PAGE_SIZE]


def test_paging_keeps_the_filters(client, viewer, many_runs):
    response = client.get(reverse("runs:run_list"), {"skill": "s1"})
    link = re.search(r'rel="next" href="([^"]+)"', response.content.decode())
    skill_runs = [r for r in many_runs if int(r[4:]) % 3 == 1]
    if len(skill_runs) > PAGE_SIZE:
        assert "skill=s1" in link.group(1)
    else:
        assert link is None


def test_first_page_has_no_newer_link(client, viewer, many_runs):
    html = client.get(reverse("runs:run_list")).content.decode()
    assert 'rel="prev"' not in html
    assert 'rel="next"' in html


def test_count_is_exact_when_small_and_capped_when_large(client, viewer, many_runs, monkeypatch):
    html = client.get(reverse("runs:run_list")).content.decode()
    assert f"{len(many_runs)} runs" in html
    monkeypatch.setattr("runs.web.views.COUNT_CAP", 20)
    html = client.get(reverse("runs:run_list")).content.decode()
    assert "more than 20 runs" in html
    assert COUNT_CAP >= 1000


def test_list_queries_are_constant_and_skip_big_columns(client, viewer, django_user_model):
    def queries_for_list():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("runs:run_list")).status_code == 200
        return ctx.captured_queries

    # More than a page, so that both lists ask for the count.
    for i in range(PAGE_SIZE + 1):
        record_run(f"few-{i}", minutes=i, output="o" * 10_000, inputs={"big": "i" * 10_000})
    queries_for_list()  # the price table is read once, then kept (runs.pricing)
    few = queries_for_list()
    for i in range(60):
        record_run(f"many-{i}", minutes=100 + i, output="o" * 10_000)
        record_run(f"kid-{i}", minutes=100 + i, parent=f"many-{i}")
    many = queries_for_list()
    assert len(few) == len(many)
    # session, user, the user's and its groups' permissions, the page, has-children, the
    # page's usage rows, the bounded count (no price table: kept per process)
    assert len(many) == 8
    assert not any('"model_prices"' in q["sql"] for q in many)
    run_queries = [q["sql"] for q in many if "skill_runs" in q["sql"]]
    assert run_queries
    for sql in run_queries:
        assert '"skill_runs"."inputs"' not in sql
        # only as the argument of the database's SUBSTR for the preview
        assert not re.search(r'(?<!\()"skill_runs"\."(output|error)"', sql)


def test_a_list_that_fits_on_its_first_page_is_counted_without_a_query(client, viewer, many_runs):
    def count_queries(query):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse("runs:run_list"), query)
        return response, [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"]]

    response, counts = count_queries({"skill": "s1"})
    assert len(ids_on(response)) == 37 and "37 runs" in response.content.decode()
    assert counts == []
    response, counts = count_queries({})
    assert f"{len(many_runs)} runs" in response.content.decode() and len(counts) == 1
    # the last page (a cursor, fewer rows than a page) still counts every matching run
    last_row = sorted(many_runs, key=lambda r: (int(r[4:]) // 2, r), reverse=True)[-11]
    cursor = cursors.encode(SkillRun.objects.get(pk=last_row).started_at, last_row)
    response, counts = count_queries({"after": cursor})
    assert len(ids_on(response)) == 10 and len(counts) == 1
    assert f"{len(many_runs)} runs" in response.content.decode()


def test_list_links_filter_by_skill_caller_and_channel(client, viewer, mixed_runs):
    html = client.get(reverse("runs:run_list") + "?include_nested=1").content.decode()
    assert 'href="?include_nested=1&amp;skill=lookup"' in html
    assert 'href="?include_nested=1&amp;caller=bob"' in html
    assert 'href="?include_nested=1&amp;channel=ops"' in html


def test_filter_links_keep_the_other_filters_in_place_and_encode_the_value(client, viewer):
    record_run("odd", skill="a&b <i>", caller="c d", channel="ops")
    record_run("plain", skill="lookup", caller="c d", channel="ops", minutes=1)
    html = client.get(reverse("runs:run_list"), {"caller": "c d", "channel": "ops"}).content
    html = html.decode()
    # a new filter goes last; one that replaces a filter keeps its place
    assert 'href="?caller=c+d&amp;channel=ops&amp;skill=a%26b+%3Ci%3E"' in html
    assert 'href="?caller=c+d&amp;channel=ops&amp;skill=lookup"' in html
    # each row's caller and channel links are the current query itself
    assert html.count('href="?caller=c+d&amp;channel=ops"') == 4
    assert ">a&amp;b &lt;i&gt;</a>" in html


def test_status_filter_shows_the_status_chosen(client, viewer, mixed_runs):
    html = client.get(reverse("runs:run_list"), {"status": "error"}).content.decode()
    assert '<option value="error" selected>error</option>' in html
    assert html.count(" selected>") == 2  # the status and the page size (50)
    assert '<option value="" selected>50</option>' in html  # the default: left out
    # A list of statuses the select does not offer stays chosen.
    html = client.get(reverse("runs:run_list"), {"status": "error,timeout"}).content.decode()
    assert '<option value="error,timeout" selected>error,timeout</option>' in html


def test_list_marks_nested_runs_and_runs_with_children(client, viewer, mixed_runs):
    html = client.get(reverse("runs:run_list") + "?include_nested=1").content.decode()
    row_child = html.split('href="/runs/child/"')[1].split("</tr>")[0]
    row_parent = html.split('href="/runs/top-ok/"')[1].split("</tr>")[0]
    assert ">nested<" in row_child
    assert reverse("runs:run_tree", args=["top-ok"]) in row_parent


def tree_links_on(response) -> dict[str, bool]:
    """Each row's run id -> whether the row links to the call tree (it has children)."""
    html = response.content.decode()
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    marked = {}
    for row in body.split("<tr>")[1:]:
        run_id = re.search(r'<td class="time"><a href="/runs/([^"]+)/">', row).group(1)
        marked[run_id] = f'href="/runs/{run_id}/tree/"' in row
    return marked


def test_tree_links_mark_exactly_the_runs_with_children_on_every_page(client, viewer):
    runs = [f"run-{i:04d}" for i in range(PAGE_SIZE + 10)]
    for i, run_id in enumerate(runs):
        record_run(run_id, minutes=i)
    # Newest first: run-0010 is the last row of the first page, run-0009 the first of the
    # second; each has one child, newer than every top-level run (listed only with nested).
    with_children = {"run-0010", "run-0009", "run-0030"}
    for parent in with_children:
        record_run(f"kid-of-{parent}", minutes=1000, parent=parent)
    first = client.get(reverse("runs:run_list"))
    older = re.search(r'rel="next" href="([^"]+)"', first.content.decode()).group(1)
    second = client.get(reverse("runs:run_list") + older.replace("&amp;", "&"))
    marked = tree_links_on(first)
    assert list(marked)[-1] == "run-0010"
    assert list(tree_links_on(second))[0] == "run-0009"
    marked.update(tree_links_on(second))
    assert marked == {run_id: run_id in with_children for run_id in runs}
    nested = tree_links_on(client.get(reverse("runs:run_list") + "?include_nested=1"))
    assert {run_id for run_id, has in nested.items() if has} == with_children & set(nested)
    assert not any(has for run_id, has in nested.items() if run_id.startswith("kid-of-"))


# --- run page ------------------------------------------------------------------------


def test_run_page_shows_everything_about_a_run(client, viewer):
    record_run("root", skill="planner")
    record_run(
        "mid",
        skill="researcher",
        parent="root",
        minutes=1,
        inputs={"question": "why?", "nested": {"k": [1, 2]}},
        output="the answer",
        tokens=(120, 45, 7),
        events=[
            ("step", {"text": "thinking", "usage": {"input_tokens": 120}}),
            ("tool_call", {"tool": "search", "call_id": "c1", "arguments": {"q": "x"}}),
            ("tool_result", {"tool": "search", "call_id": "c1", "result": {"hits": 2}}),
            ("error", {"message": "rate limited"}),
        ],
    )
    record_run("leaf", skill="fetcher", parent="mid", minutes=2)
    html = client.get(reverse("runs:run_detail", args=["mid"])).content.decode()
    assert "researcher" in html and "the answer" in html
    assert "&quot;question&quot;: &quot;why?&quot;" in html  # pretty-printed inputs
    assert "120" in html and "45" in html
    # breadcrumbs: the parent chain, root first
    crumbs = html.split('class="crumbs"')[1].split("</nav>")[0]
    assert crumbs.index("/runs/root/") < crumbs.index("researcher")
    # children
    assert reverse("runs:run_detail", args=["leaf"]) in html
    # timeline: tool call paired with its result, error event marked
    assert "result #3" in html and "result of call #2" in html
    assert 'class="event error failed"' in html
    # the header names the failure and links to it
    assert "1 error event" in html and 'href="#event-4"' in html
    assert reverse("admin:runs_skillrun_change", args=["mid"]) in html


def test_run_page_folds_long_output_and_cuts_huge_output(client, viewer, monkeypatch):
    monkeypatch.setattr("runs.selectors.TEXT_PAGE_CHARS", 5000)
    record_run("long", output="line\n" * 3000, error="E" * 100)
    html = client.get(reverse("runs:run_detail", args=["long"])).content.decode()
    assert "show all" in html
    assert reverse("runs:run_raw", args=["long", "output"]) in html
    assert html.count("line\n") <= 1000
    raw = client.get(reverse("runs:run_raw", args=["long", "output"]))
    assert raw["Content-Type"].startswith("text/plain")
    assert raw.content.decode() == "line\n" * 3000


def test_events_are_paged(client, viewer):
    events = [("step", {"i": i}) for i in range(EVENTS_PAGE_SIZE + 20)]
    record_run("chatty", events=events)
    html = client.get(reverse("runs:run_detail", args=["chatty"])).content.decode()
    assert html.count('class="event ') == EVENTS_PAGE_SIZE
    assert f"?events_after={EVENTS_PAGE_SIZE}" in html
    page2 = client.get(
        reverse("runs:run_detail", args=["chatty"]), {"events_after": EVENTS_PAGE_SIZE}
    )
    assert page2.content.decode().count('class="event ') == 20
    bad = client.get(reverse("runs:run_detail", args=["chatty"]), {"events_after": "-1"})
    assert bad.status_code == 400 and b"events_after" in bad.content


def test_big_payloads_show_a_preview_and_a_raw_link(client, viewer):
    record_run("big", events=[("tool_result", {"result": "x" * 200_000}), ("step", {"ok": True})])
    response = client.get(reverse("runs:run_detail", args=["big"]))
    html = response.content.decode()
    assert len(response.content) < 60_000
    assert reverse("runs:event_raw", args=["big", 1]) in html
    raw = client.get(reverse("runs:event_raw", args=["big", 1]))
    assert raw["Content-Type"] == "application/json"
    assert len(raw.content) > 200_000


def test_run_page_queries_do_not_grow_with_events_or_children(client, viewer):
    def count_queries(run_id):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("runs:run_detail", args=[run_id])).status_code == 200
        return len(ctx.captured_queries)

    record_run("small", events=[("step", {})] * 2)
    record_run("kid-small", parent="small")
    record_run("large", events=[("step", {}), ("tool_call", {"tool": "t"})] * 60)
    for i in range(30):
        record_run(f"kid-large-{i}", parent="large", minutes=i)
    count_queries("small")  # the price table is read once, then kept (runs.pricing)
    assert count_queries("small") == count_queries("large")


def test_unknown_run_is_a_404(client, viewer):
    assert client.get(reverse("runs:run_detail", args=["nope"])).status_code == 404
    assert client.get(reverse("runs:run_tree", args=["nope"])).status_code == 404
    assert client.get(reverse("runs:run_raw", args=["nope", "output"])).status_code == 404
    assert client.get(reverse("runs:run_raw", args=["x", "password"])).status_code == 404


def test_stale_notice(client, viewer):
    record_run("stuck", status="running", started_at=timezone.now() - timedelta(hours=3))
    html = client.get(reverse("runs:run_detail", args=["stuck"])).content.decode()
    assert "probably crashed" in html


def test_deeply_nested_inputs_get_a_placeholder(client, viewer):
    # SQLite refuses JSON deeper than about 1000 levels; PostgreSQL stores 3000.
    depth = 3000 if connection.vendor == "postgresql" else 990
    record_run("deep")
    # written as another program would: straight into the column, not through the contract
    SkillRun.objects.filter(pk="deep").update(inputs=_as_json_text(depth))
    response = client.get(reverse("runs:run_detail", args=["deep"]))
    assert response.status_code == 200
    if depth > 1000:
        assert b"nested too deeply" in response.content
    assert client.get(reverse("runs:run_list")).status_code == 200
    assert client.get(reverse("runs:run_tree", args=["deep"])).status_code == 200


def _as_json_text(depth: int):
    from django.db.models import JSONField, Value
    from django.db.models.functions import Cast

    return Cast(Value('{"d":' * depth + "{}" + "}" * depth), JSONField())


# --- tree ----------------------------------------------------------------------------


def test_tree_shows_the_whole_tree_from_the_root_with_the_run_highlighted(client, viewer):
    record_run("r", skill="root-skill")
    record_run("a", skill="a-skill", parent="r", minutes=1)
    record_run("b", skill="b-skill", parent="r", minutes=2)
    record_run("a1", skill="a1-skill", parent="a", minutes=3)
    page = client.get(reverse("runs:run_tree", args=["a1"])).content.decode()
    assert "4 runs" in page
    html = '<ul class="tree">' + page.split('<ul class="tree">', 1)[1]
    for skill in ("root-skill", "a-skill", "b-skill", "a1-skill"):
        assert skill in html
    assert (
        html.index("root-skill")
        < html.index("a-skill")
        < html.index("a1-skill")
        < html.index("b-skill")
    )
    assert 'class="current"' in html.split("a1-skill")[0].rsplit("<li", 1)[1]
    assert html.count("<ul") == html.count("</ul>")
    assert html.count("<details") == html.count("</details>")


def test_tree_queries_grow_with_depth_not_with_nodes(client, viewer):
    def count_queries(run_id):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("runs:run_tree", args=[run_id])).status_code == 200
        return len(ctx.captured_queries)

    record_run("small-root")
    record_run("small-kid", parent="small-root")
    record_run("big-root")
    for i in range(40):
        record_run(f"big-kid-{i}", parent="big-root", minutes=i)
    count_queries("small-root")  # the price table is read once, then kept (runs.pricing)
    assert count_queries("small-root") == count_queries("big-root")


def test_tree_is_safe_on_cycles_and_purged_parents(client, viewer):
    record_run("x", parent="y")
    record_run("y", parent="x", minutes=1)
    record_run("orphan", parent="purged-long-ago")
    assert client.get(reverse("runs:run_tree", args=["x"])).status_code == 200
    html = client.get(reverse("runs:run_tree", args=["orphan"])).content.decode()
    assert "no longer stored" in html


def test_tree_cap(client, viewer, monkeypatch):
    monkeypatch.setattr("runs.selectors.TREE_NODE_CAP", 5)
    record_run("root")
    for i in range(10):
        record_run(f"k{i}", parent="root", minutes=i)
    html = client.get(reverse("runs:run_tree", args=["root"])).content.decode()
    assert "only the first part is shown" in html
    assert html.count('class="node"') == 5


# --- skills --------------------------------------------------------------------------


def test_skills_overview(client, viewer):
    now = timezone.now()
    record_run("s1", skill="good", started_at=now - timedelta(hours=2))
    record_run("s2", skill="good", status="error", started_at=now - timedelta(hours=1))
    record_run("s3", skill="broken", status="error", started_at=now - timedelta(days=2))
    record_run("s4", skill="idle", started_at=now - timedelta(days=30))
    response = client.get(reverse("runs:skills"))
    html = response.content.decode()
    rows = {
        name: html.split(f">{name}</a>")[1].split("</tr>")[0] for name in ("good", "broken", "idle")
    }
    assert "never succeeded" in rows["broken"] and "never succeeded" not in rows["good"]
    assert "no run finished in" in rows["idle"] and "no run finished" not in rows["good"]
    assert html.index(">good<") < html.index(">broken<") < html.index(">idle<")
    assert "?skill=good&amp;status=error&amp;include_nested=1" in html


def test_skills_queries_are_constant(client, viewer):
    def count_queries():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("runs:skills")).status_code == 200
        return len(ctx.captured_queries)

    record_run("one", skill="only")
    count_queries()  # the price table is read once, then kept (runs.pricing)
    few = count_queries()
    for i in range(30):
        record_run(f"more-{i}", skill=f"skill-{i}", minutes=i)
    assert count_queries() == few


# --- health --------------------------------------------------------------------------


def test_healthz_answers_anonymous_users(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "up"


def test_admin_link_survives_ids_the_admin_escapes(client, viewer):
    record_run("a_2Fb/c:d")
    html = client.get(reverse("runs:run_detail", args=["a_2Fb/c:d"])).content.decode()
    link = re.search(r'href="(/admin/runs/skillrun/[^"]+/change/)"', html).group(1)
    response = client.get(link)
    # the viewer has only the view permission: the admin shows the run read-only
    assert response.status_code == 200
    assert "a_2Fb/c:d" in response.content.decode()


def test_run_ids_with_newlines_slashes_and_suffix_words_open(client, viewer):
    for run_id in ("line\nbreak", "a/b/c", "ends/tree", "x?y#z %20"):
        record_run(run_id)
        response = client.get(reverse("runs:run_detail", args=[run_id]))
        assert response.status_code == 200, run_id
        assert client.get(reverse("runs:run_tree", args=[run_id])).status_code == 200, run_id
