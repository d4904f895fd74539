"""failed_tools and failed_descendants (migration 0010): the triggers keep them equal to
counting in Python under every kind of write, purge and concurrent writers, on SQLite and
PostgreSQL, and the list's failed=1 reads them from its partial indexes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction

from runs import contract
from runs.models import SkillRun, SkillRunLog
from runs.services import purge
from runs.storage import DjangoStorage

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
ERROR = contract.STATUS_ERROR


def expected() -> dict[str, tuple[int, int]]:
    """{run id: (failed tools, failed descendants)} counted in Python from the rows."""
    runs = dict(SkillRun.objects.values_list("id", "parent_run_id"))
    statuses = dict(SkillRun.objects.values_list("id", "status"))
    tools = dict.fromkeys(runs, 0)
    for run_id, event_type, payload in SkillRunLog.objects.values_list(
        "run_id", "event_type", "payload"
    ):
        if contract.tool_result_failed(event_type, payload):
            tools[run_id] += 1
    below = dict.fromkeys(runs, 0)
    for run_id, status in statuses.items():
        if status not in contract.FAILED_STATUSES:
            continue
        seen = {run_id}
        parent = runs[run_id]
        while parent and parent in runs and parent not in seen:
            below[parent] += 1
            seen.add(parent)
            parent = runs[parent]
    return {run_id: (tools[run_id], below[run_id]) for run_id in runs}


def stored() -> dict[str, tuple[int, int]]:
    return {
        run_id: (tools, below)
        for run_id, tools, below in SkillRun.objects.values_list(
            "id", "failed_tools", "failed_descendants"
        )
    }


def assert_exact():
    assert stored() == expected()


def run(run_id, parent="", status=contract.STATUS_RUNNING, minutes=0, skill="s"):
    return SkillRun(
        id=run_id,
        skill_id=skill,
        parent_run_id=parent,
        status=status,
        started_at=T0 + timedelta(minutes=minutes),
    )


def log(run_id, sequence, failed=True, event_type=contract.EVENT_TOOL_RESULT, payload=None):
    if payload is None:
        payload = {"tool": "fetch", contract.TOOL_ERROR_KEY: failed}
    return SkillRunLog(
        run_id=run_id, sequence=sequence, event_type=event_type, payload=payload, created_at=T0
    )


@pytest.mark.django_db
def test_contract_writes_roll_up_failed_tools_and_failed_sub_runs():
    storage = DjangoStorage()
    storage.start_run(contract.SkillRun(id="root", skill_id="a", started_at=T0))
    storage.start_run(contract.SkillRun(id="mid", skill_id="b", parent_run_id="root"))
    storage.start_run(contract.SkillRun(id="leaf", skill_id="c", parent_run_id="mid"))
    storage.append_log(
        contract.SkillRunLog("leaf", 1, "tool_result", {"tool": "x", "is_error": True})
    )
    # Not failures: false, the string "true", 1, another event type, a nested key.
    for seq, (etype, payload) in enumerate(
        [
            ("tool_result", {"is_error": False}),
            ("tool_result", {"is_error": "true"}),
            ("tool_result", {"is_error": 1}),
            ("tool_call", {"is_error": True}),
            ("tool_result", {"result": {"is_error": True}}),
        ],
        start=2,
    ):
        storage.append_log(contract.SkillRunLog("leaf", seq, etype, payload))
    storage.finish_run("leaf", contract.RunStats(status=contract.STATUS_TIMEOUT))
    storage.finish_run("mid", contract.RunStats(status=ERROR))
    storage.finish_run("root", contract.RunStats(status=contract.STATUS_OK))
    assert stored() == {"root": (0, 2), "mid": (0, 1), "leaf": (1, 0)}
    assert_exact()
    # A retry that succeeds lowers the counts again.
    storage.finish_run("leaf", contract.RunStats(status=contract.STATUS_OK))
    assert stored() == {"root": (0, 1), "mid": (0, 0), "leaf": (1, 0)}


@pytest.mark.django_db
def test_every_kind_of_write_keeps_the_rollups_exact():
    # Children before their parents (an import, an OTLP trace in any order), in one statement.
    SkillRun.objects.bulk_create(
        [run(f"c{i}", parent=f"p{i % 4}", status=ERROR if i % 3 else "ok") for i in range(12)]
        + [run(f"g{i}", parent=f"c{i}", status=contract.STATUS_BUDGET_EXCEEDED) for i in range(6)]
    )
    assert_exact()
    SkillRun.objects.bulk_create([run(f"p{i}", parent="top" if i < 2 else "") for i in range(4)])
    SkillRun.objects.bulk_create([run("top")])
    assert_exact()
    assert stored()["top"][1] > 0
    # Events in batches, one by one, edited and deleted.
    SkillRunLog.objects.bulk_create(
        [log(f"c{i}", s, failed=s % 2 == 0) for i in range(12) for s in range(1, 5)]
    )
    assert_exact()
    SkillRunLog.objects.filter(run_id="c1", sequence=1).update(payload={"is_error": True})
    SkillRunLog.objects.filter(run_id="c2", sequence=2).update(event_type="step")
    SkillRunLog.objects.filter(run_id="c3", sequence=2).update(run_id="c4", sequence=9)
    assert_exact()
    SkillRunLog.objects.filter(run_id="c5").delete_rows()
    assert_exact()
    # Status changes both ways, re-parenting, closing the stale ones, a time shift.
    SkillRun.objects.filter(pk__in=["c1", "c2"]).update(status=contract.STATUS_OK)
    SkillRun.objects.filter(pk="c0").update(status=ERROR)
    SkillRun.objects.filter(pk="c6").update(parent_run_id="p3")
    SkillRun.objects.filter(pk="p1").update(parent_run_id="")
    assert_exact()
    SkillRun.objects.filter(pk__in=["p0", "p2"]).close_running(contract.STATUS_TIMEOUT, T0)
    SkillRun.objects.shift_times(["c7", "c8"], timedelta(hours=2))
    assert_exact()
    # The admin's save: an edit form loaded before a child failed must not put back its
    # old counts.
    stale_copy = SkillRun.objects.get(pk="top")
    SkillRun.objects.filter(pk="g1").update(status=contract.STATUS_OK)
    stale_copy.output = "edited"
    stale_copy.save()
    assert_exact()
    # Deleting a middle run cuts its subtree off its ancestors; deleting leaves.
    SkillRun.objects.delete_with_logs(["p3", "g0"])
    assert_exact()
    purge.purge_started_before(T0 + timedelta(minutes=1), batch_size=3)
    assert stored() == {} or assert_exact() is None


@pytest.mark.django_db
def test_a_writer_outside_django_is_counted_too():
    """The Go executor's plain SQL: INSERTs that do not name the roll-up columns."""
    runs, logs = SkillRun._meta.db_table, SkillRunLog._meta.db_table
    started = connection.ops.adapt_datetimefield_value(T0)
    insert_run = (
        f"INSERT INTO {runs} (id, skill_id, caller_id, channel_id, inputs, started_at, "
        "status, output, error, tool_calls_count, runtime_seconds, parent_run_id, "
        "total_input_tokens, total_output_tokens, total_thinking_tokens) VALUES "
        "(%s, 'go', '', '', '{}', %s, %s, '', '', 0, 0, %s, 0, 0, 0)"
    )
    with connection.cursor() as cursor:
        cursor.execute(insert_run, ["go-root", started, "running", ""])
        cursor.execute(insert_run, ["go-child", started, "running", "go-root"])
        cursor.execute(
            f"INSERT INTO {logs} (run_id, sequence, event_type, payload, created_at) "
            "VALUES (%s, 1, 'tool_result', %s, %s)",
            ["go-child", '{"tool": "x", "is_error": true}', started],
        )
        cursor.execute(f"UPDATE {runs} SET status = 'error' WHERE id = %s", ["go-child"])
    assert stored() == {"go-root": (0, 1), "go-child": (1, 0)}
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {logs} WHERE run_id = %s", ["go-child"])
        cursor.execute(f"DELETE FROM {runs} WHERE id = %s", ["go-child"])
    assert stored() == {"go-root": (0, 0)}


@pytest.mark.django_db
def test_a_cycle_in_the_parent_links_ends_the_walk():
    SkillRun.objects.bulk_create([run("x", parent="y", status=ERROR), run("y", parent="x")])
    SkillRun.objects.bulk_create([run("z", parent="z", status=ERROR)])
    assert stored() == {"x": (0, 0), "y": (0, 1), "z": (0, 0)}
    SkillRun.objects.filter(pk="y").update(status=ERROR)
    assert stored() == {"x": (0, 1), "y": (0, 1), "z": (0, 0)}
    assert_exact()


@pytest.mark.django_db
def test_recount_repairs_what_was_written_with_the_triggers_off():
    SkillRun.objects.bulk_create([run("a"), run("b", parent="a", status=ERROR)])
    SkillRunLog.objects.bulk_create([log("b", 1)])
    # What a restore with triggers disabled leaves: wrong counts.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {SkillRun._meta.db_table} SET failed_tools = 7, failed_descendants = 9"
        )
    assert SkillRun.objects.recount_failure_rollups() == 4  # two columns of two runs
    assert stored() == {"a": (0, 1), "b": (1, 0)}


@pytest.mark.django_db
def test_failed_filter_matches_counting_in_python():
    SkillRun.objects.bulk_create(
        [run("ok-root", minutes=1), run("bad-root", status=ERROR, minutes=2)]
        + [run("tool-root", minutes=3), run("deep-root", minutes=4)]
        + [
            run("sub", parent="deep-root", minutes=5),
            run("subsub", parent="sub", status=ERROR, minutes=6),
        ]
    )
    SkillRunLog.objects.bulk_create([log("tool-root", 1), log("ok-root", 1, failed=False)])
    failed = list(SkillRun.objects.failed().newest_first().values_list("id", flat=True))
    assert failed == ["subsub", "sub", "deep-root", "tool-root", "bad-root"]
    top = SkillRun.objects.failed().top_level().newest_first().values_list("id", flat=True)
    assert list(top) == ["deep-root", "tool-root", "bad-root"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_leave_the_rollups_exact():
    """Children of one parent fail in parallel transactions while events arrive and a
    purge with two workers deletes old trees."""
    SkillRun.objects.bulk_create(
        [run("parent", minutes=100)]
        + [run(f"kid-{i:03d}", parent="parent", minutes=101) for i in range(60)]
        + [
            run(
                f"old-{i:04d}",
                minutes=-i,
                parent=f"old-{i - 1:04d}" if i % 4 else "",
                status=ERROR if i % 3 == 0 else "ok",
            )
            for i in range(1, 800)
        ]
    )
    assert_exact()
    errors = []

    def fail_kids(start):
        try:
            for i in range(start, 60, 3):
                with transaction.atomic():
                    SkillRun.objects.filter(pk=f"kid-{i:03d}").update(status=ERROR)
                    SkillRunLog.objects.bulk_create([log(f"kid-{i:03d}", 1)])
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fail_kids, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    purge.purge_started_before(T0 - timedelta(minutes=300), batch_size=40, workers=2)
    for thread in threads:
        thread.join()
    assert errors == []
    assert stored()["parent"] == (0, 60)
    assert_exact()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="statement triggers: PostgreSQL")
@pytest.mark.django_db
def test_events_without_a_failed_tool_result_do_not_update_the_runs():
    """Migration 0019: a statement of events holding no failed tool result ends in the
    failed_tools trigger, before its UPDATE of skill_runs (which would fire the four
    statement triggers of skill_runs for nothing); one holding some updates once."""
    SkillRun.objects.bulk_create([run("a"), run("b")])
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE runs_updates (n integer)")
        cursor.execute(
            "CREATE FUNCTION pg_temp.count_runs_update() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN INSERT INTO runs_updates VALUES (1); RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER test_count_runs_update AFTER UPDATE ON skill_runs "
            "FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.count_runs_update()"
        )

    def updates() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM runs_updates")
            return cursor.fetchone()[0]

    # Inserted, edited and deleted, with no failed tool result among them.
    SkillRunLog.objects.bulk_create(
        [log("a", 1, failed=False), log("a", 2, event_type="step", payload={"is_error": True})]
        + [log("b", s, failed=False) for s in range(1, 4)]
    )
    SkillRunLog.objects.filter(run_id="b", sequence=1).update(payload={"tool": "x"})
    SkillRunLog.objects.filter(run_id="b").delete_rows()
    assert updates() == 0
    assert_exact()
    # With failed results: one UPDATE per statement, the counts exact.
    SkillRunLog.objects.bulk_create([log("b", 1), log("b", 2), log("a", 3, failed=False)])
    assert updates() == 1
    assert stored() == {"a": (0, 0), "b": (2, 0)}
    SkillRunLog.objects.filter(run_id="b", sequence=1).update(payload={"is_error": False})
    SkillRunLog.objects.filter(run_id="a", sequence=1).update(payload={"is_error": True})
    assert updates() == 3
    SkillRunLog.objects.filter(run_id="b").delete_rows()
    assert updates() == 4
    assert stored() == {"a": (1, 0), "b": (0, 0)}
    assert_exact()
