"""skill_summaries: the triggers keep one row per skill exact under every kind of write
(compared with counting the runs in Python after each), and the skills page pages through
it in each sort order, with the page's chips counted for its skills only."""

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from runs import contract
from runs.models import SkillRun, SkillSummary
from runs.services import export, importer, purge
from runs.storage import DjangoStorage

T0 = datetime(2026, 3, 10, 13, 47, 12, 500_000, tzinfo=UTC)
NOT_FINISHED = {contract.STATUS_DRY_RUN, contract.STATUS_RUNNING}


def expected_summaries() -> dict[str, tuple]:
    """(runs, newest finished, newest ok, newest failed) per skill, counted in Python."""
    summaries: dict[str, list] = {}
    for skill_id, status, started_at in SkillRun.objects.values_list(
        "skill_id", "status", "started_at"
    ):
        row = summaries.setdefault(skill_id, [0, None, None, None])
        row[0] += 1
        for column, counts in (
            (1, status not in NOT_FINISHED),
            (2, status == contract.STATUS_OK),
            (3, status in contract.FAILED_STATUSES),
        ):
            if counts and (row[column] is None or started_at > row[column]):
                row[column] = started_at
    return {skill: tuple(row) for skill, row in summaries.items()}


def stored_summaries() -> dict[str, tuple]:
    return {
        s.skill_id: (s.runs, s.last_run_at, s.last_ok_at, s.last_failed_at)
        for s in SkillSummary.objects.all()
    }


def assert_summaries_exact():
    assert stored_summaries() == expected_summaries()


def new_run(run_id, started_at, skill_id="skill-a", status=contract.STATUS_RUNNING):
    return SkillRun(id=run_id, skill_id=skill_id, started_at=started_at, status=status)


def plain_sql(sql: str, params: list) -> None:
    """A writer outside Django (the Go executor's own SQL)."""
    with connection.cursor() as cursor:
        cursor.execute(sql.replace("{table}", SkillRun._meta.db_table), params)


def plain_insert(run_id: str, skill_id: str, status: str, started_at: datetime) -> None:
    plain_sql(
        "INSERT INTO {table} (id, skill_id, caller_id, channel_id, inputs, started_at, "
        "status, output, error, tool_calls_count, runtime_seconds, parent_run_id, "
        "total_input_tokens, total_output_tokens, total_thinking_tokens) VALUES "
        "(%s, %s, '', '', '{}', %s, %s, '', '', 0, 0, '', 0, 0, 0)",
        [run_id, skill_id, connection.ops.adapt_datetimefield_value(started_at), status],
    )


@pytest.mark.django_db
def test_every_kind_of_write_keeps_the_summaries_exact():
    storage = DjangoStorage()
    # Through the contract: start, then finish with a new status.
    for i in range(3):
        storage.start_run(contract.SkillRun(id=f"contract-{i}", skill_id="skill-a", started_at=T0))
    assert_summaries_exact()
    storage.finish_run("contract-0", contract.RunStats(status=contract.STATUS_OK))
    storage.finish_run("contract-1", contract.RunStats(status=contract.STATUS_ERROR))
    assert_summaries_exact()
    # Bulk inserts over several skills, every status, out of time order.
    statuses = [*contract.KNOWN_STATUSES, "other-writers-status"]
    SkillRun.objects.bulk_create(
        [
            new_run(
                f"bulk-{i}",
                T0 - timedelta(minutes=(37 * i) % 5000),
                skill_id=f"skill-{i % 4}",
                status=statuses[i % len(statuses)],
            )
            for i in range(120)
        ]
    )
    assert_summaries_exact()
    # The admin's save: a run moved to another skill, status and time.
    run = SkillRun.objects.get(pk="bulk-5")
    run.skill_id, run.status, run.started_at = "skill-moved", "timeout", T0 + timedelta(days=1)
    run.save()
    assert_summaries_exact()
    # A save that changes nothing counted (output only) changes no summary.
    before = stored_summaries()
    SkillRun.objects.filter(skill_id="skill-1").update(output="more output")
    assert stored_summaries() == before
    # The newest run of each kind leaves: each column is looked up again.
    for skill in ("skill-0", "skill-2"):
        newest = SkillRun.objects.filter(skill_id=skill).order_by("-started_at").first()
        SkillRun.objects.filter(pk=newest.pk).update(started_at=T0 - timedelta(days=30))
        assert_summaries_exact()
        newest_ok = (
            SkillRun.objects.filter(skill_id=skill, status="ok").order_by("-started_at").first()
        )
        SkillRun.objects.filter(pk=newest_ok.pk).update(status="error")
        assert_summaries_exact()
    SkillRun.objects.filter(pk__startswith="bulk-1").close_running(contract.STATUS_ERROR, T0)
    assert_summaries_exact()
    SkillRun.objects.shift_times([f"bulk-{i}" for i in range(20, 40)], timedelta(hours=50))
    assert_summaries_exact()
    SkillRun.objects.delete_with_logs(["bulk-2", "bulk-3", "contract-2", "bulk-5"])
    assert_summaries_exact()
    assert "skill-moved" not in stored_summaries()  # its only run went: so did its row
    purge.purge_started_before(T0 - timedelta(hours=30), batch_size=7)
    assert_summaries_exact()
    SkillRun.objects.filter(skill_id="skill-1").delete()
    assert_summaries_exact()
    # Several statements in one transaction, one rolled back.
    with transaction.atomic():
        SkillRun.objects.bulk_create([new_run("tx-1", T0, skill_id="skill-tx", status="ok")])
        SkillRun.objects.filter(skill_id="skill-0").update(skill_id="skill-tx")
    assert_summaries_exact()
    with pytest.raises(RuntimeError), transaction.atomic():
        SkillRun.objects.filter(skill_id="skill-tx").delete()
        raise RuntimeError("roll back")
    assert_summaries_exact()
    SkillRun.objects.all().delete()
    assert stored_summaries() == {} == expected_summaries()


@pytest.mark.django_db
def test_a_writer_outside_django_is_counted_too():
    """The Go executor writes skill_runs with its own SQL: insert, finish, edit, delete."""
    plain_insert("go-1", "go-skill", contract.STATUS_RUNNING, T0)
    plain_insert("go-2", "go-skill", contract.STATUS_OK, T0 - timedelta(hours=1))
    assert stored_summaries() == {
        "go-skill": (2, T0 - timedelta(hours=1), T0 - timedelta(hours=1), None)
    }
    assert_summaries_exact()
    plain_sql("UPDATE {table} SET status = %s WHERE id = %s", ["error", "go-1"])
    assert stored_summaries() == {"go-skill": (2, T0, T0 - timedelta(hours=1), T0)}
    plain_sql("UPDATE {table} SET skill_id = %s WHERE id = %s", ["go-other", "go-2"])
    assert_summaries_exact()
    plain_sql("DELETE FROM {table} WHERE id = %s", ["go-1"])
    assert stored_summaries() == expected_summaries()
    assert set(stored_summaries()) == {"go-other"}


@pytest.mark.django_db
def test_an_import_and_a_replacing_import_are_counted():
    SkillRun.objects.bulk_create(
        [new_run(f"imp-{i}", T0 - timedelta(hours=i), f"imported-{i % 2}", "ok") for i in range(6)]
    )
    exported = b"".join(export.jsonl_chunks(SkillRun.objects.all(), True))
    right = stored_summaries()
    SkillRun.objects.delete_with_logs(list(SkillRun.objects.values_list("pk", flat=True)))
    assert stored_summaries() == {}
    importer.import_stream(io.BytesIO(exported))
    assert stored_summaries() == right == expected_summaries()
    importer.import_stream(io.BytesIO(exported), replace=True)
    assert stored_summaries() == right == expected_summaries()


@pytest.mark.django_db
def test_rebuild_recounts_what_was_written_with_the_triggers_off():
    SkillRun.objects.bulk_create(
        [new_run(f"r-{i}", T0 - timedelta(hours=i), f"s-{i % 3}", "ok") for i in range(9)]
    )
    right = stored_summaries()
    SkillSummary.objects.all().delete()  # rows lost as a restore without triggers would
    SkillSummary.objects.create(skill_id="stale", runs=4)
    out = io.StringIO()
    call_command("rebuild_run_counts", stdout=out)
    assert stored_summaries() == right == expected_summaries()
    assert "3 skill summaries" in out.getvalue()


# --- the page --------------------------------------------------------------------------


@pytest.fixture
def viewer_client(client):
    user = User.objects.create_user("viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_skillrun"))
    client.force_login(user)
    return client


def page_skills(client, **query) -> list[str]:
    response = client.get(reverse("runs:skills"), query)
    assert response.status_code == 200
    return re.findall(r'<td class="id"><a href="[^"]*">([^<]*)</a>', response.content.decode())


@pytest.mark.django_db
def test_pages_follow_each_sort_order_through_every_skill(viewer_client, monkeypatch):
    from runs.web import views

    monkeypatch.setattr(views, "SKILLS_PAGE_SIZE", 4)
    now = timezone.now()
    runs = []
    for i in range(10):
        status = ["ok", "error", "running", "dry_run", "timeout"][i % 5]
        runs.append(new_run(f"p-{i}", now - timedelta(hours=3 * i + 1), f"skill-{i:02d}", status))
        runs.append(new_run(f"q-{i}", now - timedelta(days=i % 4), f"skill-{i:02d}", "ok"))
    runs.append(new_run("never", now, "skill-never-finished", "running"))
    SkillRun.objects.bulk_create(runs)
    expected = expected_summaries()
    orders = {
        "name": sorted(expected),
        "last_run": sorted(
            sorted(expected),
            key=lambda s: (expected[s][1] is None, -(expected[s][1] or now).timestamp()),
        ),
        "failures": sorted(
            sorted(expected),
            key=lambda s: (expected[s][3] is None, -(expected[s][3] or now).timestamp()),
        ),
    }
    for sort, order in orders.items():
        shown = []
        for page in (1, 2, 3):
            shown += page_skills(viewer_client, sort=sort, page=page)
        assert shown == order, sort
        assert page_skills(viewer_client, sort=sort, page=99) == order[8:]  # the last page


@pytest.mark.django_db
def test_a_pages_chips_count_its_own_skills_runs(viewer_client, monkeypatch):
    from runs.web import views

    monkeypatch.setattr(views, "SKILLS_PAGE_SIZE", 1)
    now = timezone.now()
    SkillRun.objects.bulk_create(
        [
            new_run("a-1", now - timedelta(hours=2), "alpha", "error"),
            new_run("a-2", now - timedelta(days=3), "alpha", "error"),
            new_run("a-3", now - timedelta(days=3), "alpha", "ok"),
            new_run("b-1", now - timedelta(hours=1), "beta", "ok"),
        ]
    )
    response = viewer_client.get(reverse("runs:skills"), {"sort": "name"})
    skills = response.context["skills"]
    assert [s["id"] for s in skills] == ["alpha"]
    assert skills[0]["day_total"] == 1 and skills[0]["week_total"] == 3
    assert dict((st, n) for st, n, _ in skills[0]["week"]) == {"error": 2, "ok": 1}
    assert sum(n for _, counts in skills[0]["days"] for _, n in counts) == 3


@pytest.mark.django_db
def test_the_page_reads_a_constant_number_of_rows_whatever_the_skill_count(viewer_client):
    """The page's queries do not grow with the skills (the old page read every skill)."""
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    def queries():
        with CaptureQueriesContext(conn) as ctx:
            assert viewer_client.get(reverse("runs:skills")).status_code == 200
        return len(ctx.captured_queries)

    SkillRun.objects.bulk_create([new_run("one", T0, "only", "ok")])
    queries()  # the process's first page reads the price table (kept per process: pricing)
    few = queries()
    SkillRun.objects.bulk_create([new_run(f"m-{i}", T0, f"s-{i:03d}", "ok") for i in range(250)])
    assert queries() == few


@pytest.mark.django_db
def test_others_get_nothing(client):
    SkillRun.objects.bulk_create([new_run("secret", T0, "secret-skill", "ok")])
    assert client.get(reverse("runs:skills")).status_code == 302
    client.force_login(User.objects.create_user("nobody"))
    response = client.get(reverse("runs:skills"))
    assert response.status_code == 403
    assert b"secret-skill" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("query", [{"sort": "cost"}, {"page": "0"}, {"extra": "1"}])
def test_bad_parameters_are_a_400(viewer_client, query):
    assert viewer_client.get(reverse("runs:skills"), query).status_code == 400
