"""The Django admin for runs and logs: columns, filters, search, bounded queries, editing,
actions, deleting, permissions and hostile text."""

import re
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs import admin as runs_admin
from runs import contract, jsontext
from runs.models import SkillRun, SkillRunLog

CHANGELIST = reverse("admin:runs_skillrun_changelist")
LOG_CHANGELIST = reverse("admin:runs_skillrunlog_changelist")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# The payload column itself in a SELECT list (functions of it, like previews, are fine).
LOADS_PAYLOAD = re.compile(r'(SELECT |, )"skill_run_logs"\."payload"(,| FROM)')
HOSTILE = '<script>alert("x")</script>\'"><img src=x onerror=alert(1)>'


def change_url(run_id: str) -> str:
    return reverse("admin:runs_skillrun_change", args=[quote(run_id)])


def delete_url(run_id: str) -> str:
    return reverse("admin:runs_skillrun_delete", args=[quote(run_id)])


def make_run(run_id: str, started_at=T0, **fields) -> SkillRun:
    fields.setdefault("skill_id", "summarise")
    fields.setdefault("status", contract.STATUS_OK)
    return SkillRun.objects.create(id=run_id, started_at=started_at, **fields)


def add_logs(run_id: str, count: int, payload=None, event_type=contract.EVENT_STEP):
    SkillRunLog.objects.bulk_create(
        [
            SkillRunLog(
                run_id=run_id,
                sequence=n,
                event_type=event_type,
                payload={"n": n} if payload is None else payload,
                created_at=T0 + timedelta(seconds=n),
            )
            for n in range(1, count + 1)
        ]
    )


def staff_user(username: str, *codenames: str, is_staff=True) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=is_staff)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def viewer_client(client, db):
    client.force_login(staff_user("viewer", "view_skillrun", "view_skillrunlog"))
    return client


def shown_ids(response) -> list[str]:
    return [run.id for run in response.context["cl"].result_list]


def run_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if '"skill_runs"' in q["sql"]]


# --- the list ------------------------------------------------------------------------


def test_list_shows_the_columns_newest_first_with_the_id_as_tie_break(admin_client):
    make_run("run-old", T0 - timedelta(days=1))
    for run_id in ("tie-a", "tie-c", "tie-b"):
        make_run(run_id, T0)
    make_run(
        "run-finished",
        T0 + timedelta(hours=1),
        caller_id="alice",
        channel_id="#ops",
        finished_at=T0 + timedelta(hours=1, seconds=90),
        runtime_seconds=90,
        total_input_tokens=1200,
        total_output_tokens=34,
        total_thinking_tokens=5,
    )
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert shown_ids(response) == ["run-finished", "tie-c", "tie-b", "tie-a", "run-old"]
    html = response.content.decode()
    for header in ("skill", "caller", "channel", "status", "started", "duration", "tokens"):
        assert f">{header}" in html.lower() or header in html.lower()
    assert "1m 30s" in html
    assert "1,200/34/5" in html
    assert "5 skill runs" in html


def test_list_queries_skip_big_columns_and_never_count_or_distinct_the_table(admin_client):
    for i in range(3):
        make_run(f"r{i}", T0 + timedelta(minutes=i), inputs={"big": "x" * 1000}, output="o" * 1000)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST, {"status": "ok"})
    assert response.status_code == 200
    sql = run_queries(queries)
    assert sql, "the list ran no query on skill_runs"
    for statement in sql:
        for column in ("inputs", "output", "error"):
            assert f'"skill_runs"."{column}"' not in statement
        assert "DISTINCT" not in statement.upper()
        if "COUNT(" in statement.upper():
            assert "LIMIT" in statement.upper(), statement


def test_the_count_is_capped_and_the_page_says_more_than(admin_client, monkeypatch):
    monkeypatch.setattr(runs_admin.CappedCountPaginator, "cap", 5)
    monkeypatch.setattr(runs_admin.SkillRunAdmin, "list_per_page", 2)
    for i in range(12):
        make_run(f"r{i:02d}", T0 + timedelta(minutes=i))
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST)
    html = response.content.decode()
    assert "more than 5 skill runs" in html
    assert "12 skill runs" not in html
    # No "select all" across a list whose size is unknown.
    assert 'class="question' not in html and "Select all 6" not in html
    counts = [s for s in run_queries(queries) if "COUNT(" in s.upper()]
    assert len(counts) == 1 and "LIMIT 6" in counts[0]
    # Pages up to the cap stay reachable.
    assert shown_ids(admin_client.get(CHANGELIST, {"p": "3"})) == ["r07", "r06"]


def test_a_small_list_shows_its_exact_count(admin_client):
    for i in range(3):
        make_run(f"r{i}", T0 + timedelta(minutes=i))
    html = admin_client.get(CHANGELIST).content.decode()
    assert "3 skill runs" in html
    assert "more than" not in html


def test_status_filter_offers_the_fixed_list_and_filters(admin_client):
    make_run("ok-1", status="ok")
    make_run("err-1", status="error", started_at=T0 + timedelta(seconds=1))
    make_run("odd-1", status="paused_by_go", started_at=T0 + timedelta(seconds=2))
    response = admin_client.get(CHANGELIST)
    spec = next(s for s in response.context["cl"].filter_specs if s.parameter_name == "status")
    assert [value for value, _ in spec.lookup_choices] == list(contract.KNOWN_STATUSES)
    assert shown_ids(admin_client.get(CHANGELIST, {"status": "error"})) == ["err-1"]
    assert shown_ids(admin_client.get(CHANGELIST, {"status": "dry_run"})) == []
    # A status another writer stored is not offered but can still be filtered on.
    assert shown_ids(admin_client.get(CHANGELIST, {"status": "paused_by_go"})) == ["odd-1"]


def test_start_date_filter(admin_client):
    now = timezone.now()
    make_run("recent", now - timedelta(days=2))
    make_run("old", now - timedelta(days=30))
    response = admin_client.get(CHANGELIST)
    spec = next(s for s in response.context["cl"].filter_specs if s.title == "started at")
    past_7_days = dict((title, params) for title, params in spec.links)["Past 7 days"]
    assert shown_ids(admin_client.get(CHANGELIST, past_7_days)) == ["recent"]


@pytest.mark.parametrize(
    "term, expected",
    [
        ("run-42", ["run-42"]),
        ("classify", ["run-7"]),
        ("bob", ["run-7"]),
        ("#support", ["run-42"]),
        ("  run-42  ", ["run-42"]),
        # Exact, not prefix or substring (see SkillRunQuerySet.named for why).
        ("run-4", []),
        ("classif", []),
        ("CLASSIFY", []),
        # NUL is cleaned as stored ids are (to U+FFFD), not refused (which would show all).
        ("nul\x00byte", []),
        ("run\x00nul", ["run\ufffdnul"]),
    ],
)
def test_search_is_an_exact_match_on_id_skill_caller_or_channel(admin_client, term, expected):
    make_run("run-42", skill_id="summarise", caller_id="alice", channel_id="#support")
    make_run("run\ufffdnul", T0 - timedelta(seconds=1))
    make_run(
        "run-7",
        T0 + timedelta(seconds=1),
        skill_id="classify",
        caller_id="bob",
        channel_id="#ops",
    )
    response = admin_client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    assert shown_ids(response) == expected


def test_search_queries_use_no_like(admin_client):
    make_run("run-1")
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(CHANGELIST, {"q": "summarise"})
    for statement in run_queries(queries):
        assert " LIKE " not in statement.upper()
        assert "UPPER(" not in statement.upper()


def test_search_and_list_are_index_scans(admin_client):
    """The search's four equality arms each probe an index: no scan of the whole table."""
    runs = [
        SkillRun(
            id=f"r{i:05d}",
            skill_id=f"skill-{i % 40}",
            caller_id=f"caller-{i % 300}",
            channel_id=f"#ch-{i % 70}",
            status=contract.KNOWN_STATUSES[i % len(contract.KNOWN_STATUSES)],
            started_at=T0 + timedelta(seconds=i),
        )
        for i in range(3000)
    ]
    SkillRun.objects.bulk_create(runs, batch_size=1000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE skill_runs")
    model_admin = runs_admin.SkillRunAdmin(SkillRun, runs_admin.admin.site)
    qs, _ = model_admin.get_search_results(None, SkillRun.objects.all(), "skill-7")
    plan = qs.newest_first()[:50].explain()
    assert "Seq Scan on skill_runs" not in plan
    assert "SCAN skill_runs" not in plan
    assert "r02967" in [run.id for run in qs.newest_first()[:1]]


# --- the change page -----------------------------------------------------------------


def post_data(run: SkillRun, **changes) -> dict:
    data = {
        "status": run.status,
        "finished_at_0": "",
        "finished_at_1": "",
        "output": run.output,
        "error": run.error,
        "tool_calls_count": run.tool_calls_count,
        "runtime_seconds": run.runtime_seconds,
        "total_input_tokens": run.total_input_tokens,
        "total_output_tokens": run.total_output_tokens,
        "total_thinking_tokens": run.total_thinking_tokens,
        "inputs": '{"q": 1}',
    }
    data.update(changes)
    return data


def test_change_page_links_to_the_dashboard_and_shows_read_only_fields(admin_client):
    make_run("parent-1")
    make_run("child-1", T0 + timedelta(seconds=5), parent_run_id="parent-1")
    response = admin_client.get(change_url("child-1"))
    assert response.status_code == 200
    html = response.content.decode()
    dashboard = reverse("runs:run_detail", args=["child-1"])
    assert f'<a href="{dashboard}">View in dashboard</a>' in html
    assert f'href="{change_url("parent-1")}"' in html
    form = response.context["adminform"].form
    assert set(form.fields) == {
        "status",
        "finished_at",
        "output",
        "error",
        "tool_calls_count",
        "runtime_seconds",
        "total_input_tokens",
        "total_output_tokens",
        "total_thinking_tokens",
        "inputs",
    }
    # Runs are recorded by executors, never added by hand.
    assert admin_client.get(reverse("admin:runs_skillrun_add")).status_code == 403


def test_staff_can_fix_a_run(admin_client):
    run = make_run("stuck", status="running", inputs={"a": 1})
    response = admin_client.post(
        change_url("stuck"),
        post_data(
            run,
            status="error",
            finished_at_0="2025-03-01",
            finished_at_1="12:30:00",
            output="partial",
            error="killed by the OOM killer",
            total_input_tokens="10",
            total_output_tokens="20",
            total_thinking_tokens="30",
            inputs='{"a": 2, "note": "fixed\\u0000"}',
            # Read-only fields posted anyway are ignored.
            id="forged",
            started_at="2000-01-01",
            parent_run_id="forged-parent",
            skill_id="forged-skill",
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    run.refresh_from_db()
    assert run.status == "error"
    assert run.finished_at == datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    assert (run.output, run.error) == ("partial", "killed by the OOM killer")
    assert (run.total_input_tokens, run.total_output_tokens, run.total_thinking_tokens) == (
        10,
        20,
        30,
    )
    # NUL is normalised as the contract does, so PostgreSQL can store it.
    assert run.inputs == {"a": 2, "note": "fixed\ufffd"}
    assert (run.started_at, run.parent_run_id, run.skill_id) == (T0, "", "summarise")
    assert not SkillRun.objects.filter(pk="forged").exists()


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"inputs": "{not json"}, "inputs", "Enter a valid JSON."),
        ({"inputs": "[1, 2]"}, "inputs", "must be a JSON object"),
        ({"inputs": '"text"'}, "inputs", "must be a JSON object"),
        ({"inputs": "[" * 100_000 + "]" * 100_000}, "inputs", "nested too deeply"),
        # Parses, but too deep to write back safely.
        ({"inputs": '{"a":' * 900 + "1" + "}" * 900}, "inputs", "nested too deeply"),
        ({"inputs": '{"a":' * 201 + "1" + "}" * 201}, "inputs", "more than 200 levels"),
        ({"inputs": '{"x": NaN}'}, "inputs", "NaN"),
        (
            {"finished_at_0": "2025-03-01", "finished_at_1": "11:00:00"},
            "finished_at",
            "cannot finish before it started",
        ),
        ({"total_input_tokens": "-1"}, "total_input_tokens", "greater than or equal to 0"),
        ({"total_output_tokens": str(2**63)}, "total_output_tokens", "less than or equal"),
        ({"runtime_seconds": "inf"}, "runtime_seconds", "Enter a number."),
        ({"status": "made_up"}, "status", "Select a valid choice"),
        ({"output": "nul\x00"}, "output", "Null characters are not allowed."),
    ],
)
def test_bad_values_are_form_errors_not_500s(admin_client, changes, field, message):
    run = make_run("r1", inputs={"keep": True})
    response = admin_client.post(change_url("r1"), post_data(run, **changes))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    run.refresh_from_db()
    assert run.inputs == {"keep": True}


def test_inputs_nested_200_deep_are_accepted(admin_client):
    run = make_run("r1")
    nested = '{"a":' * 199 + "[1]" + "}" * 199
    assert admin_client.post(change_url("r1"), post_data(run, inputs=nested)).status_code == 302
    run.refresh_from_db()
    assert not jsontext.depth_exceeds(run.inputs, 200)
    assert jsontext.depth_exceeds(run.inputs, 199)


def test_a_status_another_writer_stored_can_be_kept(admin_client):
    run = make_run("r1", status="paused_by_go")
    response = admin_client.get(change_url("r1"))
    assert "paused_by_go (not a known status)" in response.content.decode()
    response = admin_client.post(change_url("r1"), post_data(run, output="annotated"))
    assert response.status_code == 302
    run.refresh_from_db()
    assert (run.status, run.output) == ("paused_by_go", "annotated")


def test_inputs_too_deep_to_parse_open_without_them_and_stay_unchanged(admin_client):
    deep = {}
    for _ in range(1900):  # past Python's parser, within SQLite's JSON limit of 2000
        deep = {"a": deep}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        run = make_run("deep", inputs=deep)
    finally:
        sys.setrecursionlimit(limit)
    response = admin_client.get(change_url("deep"))
    assert response.status_code == 200
    assert "Nested too deeply to parse" in response.content.decode()
    data = post_data(run, output="looked at it")
    del data["inputs"]
    assert admin_client.post(change_url("deep"), data).status_code == 302
    assert SkillRun.objects.without_big_columns().get(pk="deep").status == "ok"
    assert SkillRun.objects.filter(pk="deep", output="looked at it").exists()
    sys.setrecursionlimit(20_000)
    try:
        assert SkillRun.objects.get(pk="deep").inputs == deep
    finally:
        sys.setrecursionlimit(limit)


def test_change_page_shows_the_latest_events_bounded_without_loading_payloads(admin_client):
    make_run("busy")
    add_logs("busy", 120, payload={"blob": "y" * 5000})
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(change_url("busy"))
    html = response.content.decode()
    assert "The latest 50 of 120 events, newest first." in html
    dashboard = reverse("runs:run_detail", args=["busy"])
    assert f'<a href="{dashboard}">All 120 events in the dashboard timeline</a>' in html
    assert "<td>120</td>" in html and "<td>71</td>" in html and "<td>70</td>" not in html
    assert html.index("<td>120</td>") < html.index("<td>71</td>")
    log_queries = [q["sql"] for q in queries if '"skill_run_logs"' in q["sql"]]
    assert len(log_queries) == 2
    for statement in log_queries:
        assert not LOADS_PAYLOAD.search(statement), statement
    # The previews are cut in the database, and cut again for the table.
    assert "y" * 300 not in html


def test_a_run_without_events_says_so(admin_client):
    make_run("quiet")
    assert "No events recorded." in admin_client.get(change_url("quiet")).content.decode()


# --- actions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action, status",
    [("mark_running_as_error", "error"), ("mark_running_as_timeout", "timeout")],
)
def test_marking_stale_runs_changes_only_the_selected_running_ones(admin_client, action, status):
    make_run("stale-1", status="running")
    make_run("stale-2", status="running", started_at=T0 + timedelta(seconds=1))
    make_run("not-selected", status="running", started_at=T0 + timedelta(seconds=2))
    done = make_run(
        "done", status="ok", finished_at=T0 + timedelta(minutes=1), started_at=T0 + timedelta(3)
    )
    before = timezone.now()
    response = admin_client.post(
        CHANGELIST,
        {"action": action, "_selected_action": ["stale-1", "stale-2", "done"], "index": "0"},
        follow=True,
    )
    assert response.status_code == 200
    assert f"Marked 2 running run(s) as {status}" in response.content.decode()
    for run_id in ("stale-1", "stale-2"):
        run = SkillRun.objects.get(pk=run_id)
        assert run.status == status
        assert run.finished_at >= before
    assert SkillRun.objects.get(pk="not-selected").status == "running"
    assert SkillRun.objects.get(pk="not-selected").finished_at is None
    unchanged = SkillRun.objects.get(pk="done")
    assert (unchanged.status, unchanged.finished_at) == ("ok", done.finished_at)


def test_close_running_refuses_a_non_terminal_status(db):
    make_run("r", status="running")
    with pytest.raises(ValueError):
        SkillRun.objects.all().close_running("running", timezone.now())


# --- deleting ------------------------------------------------------------------------


def test_delete_confirmation_counts_the_logs_without_loading_them(admin_client):
    make_run("doomed")
    add_logs("doomed", 300)
    make_run("bystander", T0 + timedelta(seconds=1))
    add_logs("bystander", 4)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(delete_url("doomed"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Skill run logs: 300" in html
    assert "300 log event(s) of these runs (not listed one by one)" in html
    log_queries = [q["sql"] for q in queries if '"skill_run_logs"' in q["sql"]]
    assert len(log_queries) == 1 and "COUNT(" in log_queries[0].upper()

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.post(delete_url("doomed"), {"post": "yes"})
    assert response.status_code == 302
    assert not SkillRun.objects.filter(pk="doomed").exists()
    assert not SkillRunLog.objects.filter(run_id="doomed").exists()
    assert SkillRunLog.objects.filter(run_id="bystander").count() == 4
    # The logs went in one statement, not loaded and deleted one by one.
    log_queries = [q["sql"].upper() for q in queries if '"skill_run_logs"' in q["sql"]]
    assert [s.split()[0] for s in log_queries] == ["SELECT", "DELETE"]
    assert log_queries[0].startswith("SELECT COUNT(")


def test_delete_selected_runs_takes_their_logs(admin_client):
    for i in range(3):
        make_run(f"r{i}", T0 + timedelta(seconds=i))
        add_logs(f"r{i}", 5)
    selection = {"action": "delete_selected_runs", "_selected_action": ["r0", "r1"], "index": 0}
    response = admin_client.post(CHANGELIST, selection)
    html = response.content.decode()
    assert "Skill runs: 2" in html and "Skill run logs: 10" in html
    response = admin_client.post(CHANGELIST, {**selection, "post": "yes"}, follow=True)
    assert "Successfully deleted 2 skill runs." in response.content.decode()
    assert set(SkillRun.objects.values_list("pk", flat=True)) == {"r2"}
    assert set(SkillRunLog.objects.values_list("run_id", flat=True)) == {"r2"}


def test_deleting_too_many_runs_at_once_is_refused(admin_client, monkeypatch):
    monkeypatch.setattr(runs_admin, "MAX_DELETE", 2)
    for i in range(3):
        make_run(f"r{i}", T0 + timedelta(seconds=i))
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "delete_selected_runs",
            "_selected_action": ["r0", "r1", "r2"],
            "index": 0,
            "post": "yes",
        },
        follow=True,
    )
    assert "Select at most 2 runs to delete here" in response.content.decode()
    assert SkillRun.objects.count() == 3


# --- permissions ---------------------------------------------------------------------


def test_view_only_staff_can_look_but_not_change_or_delete(viewer_client):
    run = make_run("r1", status="running")
    add_logs("r1", 3)
    response = viewer_client.get(CHANGELIST)
    assert response.status_code == 200
    assert shown_ids(response) == ["r1"]
    # No action is offered: both need a permission the viewer lacks.
    assert response.context["action_form"] is None

    response = viewer_client.get(change_url("r1"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="output"' not in html and 'name="_save"' not in html
    assert "View in dashboard" in html and "The latest 3 of 3 events" in html

    assert viewer_client.post(change_url("r1"), post_data(run, status="error")).status_code == 403
    assert viewer_client.get(delete_url("r1")).status_code == 403
    assert viewer_client.post(delete_url("r1"), {"post": "yes"}).status_code == 403
    viewer_client.post(
        CHANGELIST,
        {"action": "mark_running_as_error", "_selected_action": ["r1"], "index": 0},
    )
    viewer_client.post(
        CHANGELIST,
        {"action": "delete_selected_runs", "_selected_action": ["r1"], "index": 0, "post": "yes"},
    )
    assert SkillRun.objects.get(pk="r1").status == "running"
    assert SkillRunLog.objects.filter(run_id="r1").count() == 3
    assert viewer_client.get(LOG_CHANGELIST).status_code == 200


def test_staff_with_the_change_permission_but_not_delete_cannot_delete(client, db):
    client.force_login(staff_user("editor", "view_skillrun", "change_skillrun"))
    run = make_run("r1", status="running")
    assert client.post(change_url("r1"), post_data(run, status="error")).status_code == 302
    assert SkillRun.objects.get(pk="r1").status == "error"
    assert client.get(delete_url("r1")).status_code == 403
    # Without view_skillrunlog the logs admin is closed; the run page still shows events.
    assert client.get(LOG_CHANGELIST).status_code == 403


@pytest.mark.parametrize("who", ["anonymous", "non-staff"])
def test_anonymous_and_non_staff_users_get_nothing(client, db, who):
    make_run("r1")
    if who == "non-staff":
        client.force_login(
            staff_user("outsider", "view_skillrun", "change_skillrun", is_staff=False)
        )
    for url in (CHANGELIST, change_url("r1"), delete_url("r1"), LOG_CHANGELIST):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    response = client.post(change_url("r1"), {"status": "error"})
    assert response.status_code == 302
    assert SkillRun.objects.get(pk="r1").status == "ok"


# --- the logs admin ------------------------------------------------------------------


def test_logs_are_read_only_even_for_superusers(admin_client):
    make_run("r1")
    add_logs("r1", 2)
    log = SkillRunLog.objects.get(run_id="r1", sequence=1)
    response = admin_client.get(LOG_CHANGELIST)
    assert response.status_code == 200
    assert "delete_selected" not in response.content.decode()
    url = reverse("admin:runs_skillrunlog_change", args=[log.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()
    assert admin_client.post(url, {"event_type": "error"}).status_code == 403
    assert admin_client.get(reverse("admin:runs_skillrunlog_add")).status_code == 403
    delete = reverse("admin:runs_skillrunlog_delete", args=[log.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert SkillRunLog.objects.filter(run_id="r1").count() == 2


def test_logs_by_run_and_event_type(admin_client):
    make_run("r1")
    add_logs("r1", 3)
    make_run("r2", T0 + timedelta(seconds=1))
    add_logs("r2", 2, event_type=contract.EVENT_TOOL_CALL)

    def shown(params):
        response = admin_client.get(LOG_CHANGELIST, params)
        assert response.status_code == 200
        return [(log.run_id, log.sequence) for log in response.context["cl"].result_list]

    assert shown({"q": "r1"}) == [("r1", 3), ("r1", 2), ("r1", 1)]
    assert shown({"q": "r"}) == []
    assert shown({"event_type": "tool_call"}) == [("r2", 2), ("r2", 1)]
    assert shown({"event_type": "tool_call", "q": "r1"}) == []
    # Newest inserted first when no run is asked for.
    assert shown({}) == [("r2", 2), ("r2", 1), ("r1", 3), ("r1", 2), ("r1", 1)]
    spec = admin_client.get(LOG_CHANGELIST).context["cl"].filter_specs[0]
    assert [value for value, _ in spec.lookup_choices] == list(contract.EVENT_TYPES)


def test_log_list_and_page_never_load_a_payload_whole(admin_client):
    make_run("r1")
    add_logs("r1", 1, payload={"blob": "z" * 100_000})
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(LOG_CHANGELIST)
    html = response.content.decode()
    assert "z" * 300 not in html
    log = SkillRunLog.objects.get(run_id="r1")
    with CaptureQueriesContext(connection) as more:
        response = admin_client.get(reverse("admin:runs_skillrunlog_change", args=[log.pk]))
    html = response.content.decode()
    assert "The first 2000 of 100012 characters." in html
    assert reverse("runs:run_detail", args=["r1"]) in html
    assert "z" * 3000 not in html
    for q in [*queries, *more]:
        assert not LOADS_PAYLOAD.search(q["sql"]), q["sql"]
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"]]
    # The capped count selects keys only: no preview is computed for the rows it counts.
    assert counts and all('"payload"' not in count for count in counts)


def test_a_small_payload_is_pretty_printed(admin_client):
    make_run("r1")
    add_logs("r1", 1, payload={"tool": "search", "args": {"q": "x"}})
    log = SkillRunLog.objects.get(run_id="r1")
    html = admin_client.get(reverse("admin:runs_skillrunlog_change", args=[log.pk])).content
    assert "&quot;tool&quot;: &quot;search&quot;" in html.decode()
    assert "\n  &quot;args&quot;: {" in html.decode()


# --- hostile text --------------------------------------------------------------------


def test_hostile_strings_in_every_field_render_as_text(admin_client):
    run_id = HOSTILE[:64]
    make_run(
        run_id,
        skill_id=HOSTILE,
        caller_id=HOSTILE,
        channel_id=HOSTILE,
        status=HOSTILE[:32],
        output=HOSTILE,
        error=HOSTILE,
        parent_run_id=HOSTILE[:64],
        inputs={HOSTILE: HOSTILE, "nested": [HOSTILE]},
    )
    SkillRunLog.objects.create(
        run_id=run_id,
        sequence=1,
        event_type=HOSTILE[:32],
        payload={HOSTILE: HOSTILE},
        created_at=T0,
    )
    log = SkillRunLog.objects.get(run_id=run_id)
    pages = {
        "run list": CHANGELIST,
        "run list searched": f"{CHANGELIST}?{urlencode({'q': HOSTILE})}",
        "change page": change_url(run_id),
        "delete page": delete_url(run_id),
        "log list": LOG_CHANGELIST,
        "log page": reverse("admin:runs_skillrunlog_change", args=[log.pk]),
        "history": reverse("admin:runs_skillrun_history", args=[quote(run_id)]),
    }
    for name, url in pages.items():
        response = admin_client.get(url)
        assert response.status_code == 200, name
        html = response.content.decode()
        assert "<script>alert" not in html, name
        assert "<img src=x" not in html, name
        assert "&lt;script&gt;alert" in html or "\\u003Cscript" in html, name
    # The search still finds the run by its hostile skill.
    response = admin_client.get(CHANGELIST, {"q": HOSTILE})
    assert shown_ids(response) == [run_id]
