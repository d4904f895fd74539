"""Export and import: formats, round trips, conflicts, permissions, bad input.

Round trips are compared through MemoryStorage: every run and event read back through
DjangoStorage (the contract, not the export code) before and after.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from runs import contract
from runs.access.models import ApiToken as Token
from runs.managers import RunTransfer
from runs.memory import MemoryStorage
from runs.models import SkillRun, SkillRunCount, SkillRunLog
from runs.services import export, importer
from runs.storage import DjangoStorage

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC)
EVERYTHING = contract.RunFilter(include_dry_run=True)
# Text cells a spreadsheet would run as formulas, and other hostile text.
FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2-2", "@SUM(A1)", "\tTab", "\rCR", "'quoted"]
HOSTILE = [
    'a "quoted", comma\nnew line',
    "\u202eexe.txt\u202c مرحبا שלום",
    "🤖🔥 👩‍💻",
    "nul\x00byte",
    "<script>alert(1)</script>",
]


# --- helpers -----------------------------------------------------------------------------


def store(run: contract.SkillRun, events=()) -> None:
    """Write a run and its events as any writer would (the model, not the importer)."""
    checked = contract.new_run(run, T0)
    SkillRun.objects.create(
        **{name: getattr(checked, name) for name in contract.SkillRun.__dataclass_fields__},
    )
    SkillRun.objects.filter(pk=checked.id).update(
        status=contract.clean_text(run.status),
        finished_at=run.finished_at,
        output=contract.clean_text(run.output),
        error=contract.clean_text(run.error),
    )
    SkillRunLog.objects.bulk_create(
        [
            SkillRunLog(
                run_id=checked.id,
                sequence=event.sequence,
                event_type=event.event_type,
                payload=contract.clean_json(event.payload),
                created_at=event.created_at,
            )
            for event in events
        ]
    )


def event(sequence: int, payload=None, event_type=contract.EVENT_STEP, at=T0):
    return contract.SkillRunLog("", sequence, event_type, payload or {}, at)


def hostile_history() -> None:
    """A tree, runs with hostile text and JSON, a dry run, a running run, a nested orphan."""
    deep: dict = {}
    level = deep
    for _ in range(60):
        level["x"] = {}
        level = level["x"]
    store(
        contract.SkillRun(
            id="root/1",
            skill_id="triage",
            caller_id="alice",
            channel_id="support",
            inputs={"ticket": 42, "text": HOSTILE[1], "deep": deep, "f": [0.1, 1.5e-07, -2.5]},
            started_at=T0,
            finished_at=T0 + timedelta(seconds=3, microseconds=7),
            status="ok",
            output="\n".join(HOSTILE),
            tool_calls_count=2,
            runtime_seconds=3.000007,
            total_input_tokens=2**63 - 1,
            total_output_tokens=-5,
            total_thinking_tokens=7,
        ),
        [
            event(1, {"text": HOSTILE[0], "n": None, "b": True, "i": 1, "f": 1.0}),
            event(2, {"tool": "fetch", "call_id": "c1"}, contract.EVENT_TOOL_CALL),
            event(3, {"tool": "fetch", "result": {"k": [1, "2", {"3": []}]}}, "tool_result"),
        ],
    )
    store(
        contract.SkillRun(
            id="child/2",
            skill_id="search",
            parent_run_id="root/1",
            started_at=T0 + timedelta(seconds=1),
            finished_at=T0 + timedelta(seconds=2),
            status="error",
            error=HOSTILE[3],
        ),
        [event(1, {"x": HOSTILE[2]}, contract.EVENT_ERROR)],
    )
    store(
        contract.SkillRun(
            id="grandchild",
            skill_id="search",
            parent_run_id="child/2",
            started_at=T0 + timedelta(seconds=1, microseconds=1),
            status="running",
        )
    )
    for n, text in enumerate(FORMULAS):
        store(
            contract.SkillRun(
                id=f"formula-{n}{text}",
                skill_id=text,
                caller_id=text,
                channel_id=text,
                started_at=T0 - timedelta(hours=n + 1),
                finished_at=T0,
                status="ok",
                output=text,
                error=text,
            )
        )
    store(
        contract.SkillRun(
            id="dry", skill_id="triage", started_at=T0 - timedelta(days=1), status="dry_run"
        )
    )
    store(
        contract.SkillRun(
            id="orphan",
            skill_id="triage",
            parent_run_id="purged-parent",
            started_at=T0 - timedelta(days=2),
            status="custom-status",
        )
    )


def memory_of(runs, logs) -> MemoryStorage:
    memory = MemoryStorage()
    for run in runs:
        memory._runs[run.id] = run
        memory._logs[run.id] = {log.sequence: log for log in logs[run.id]}
    return memory


def snapshot() -> MemoryStorage:
    """Every run and event of the default database, read through DjangoStorage."""
    storage = DjangoStorage()
    runs: list = []
    while True:
        page = storage.list_runs_filtered(EVERYTHING, len(runs), contract.MAX_LIMIT)
        runs += page
        if len(page) < contract.MAX_LIMIT:
            break
    return memory_of(runs, {run.id: storage.list_logs_by_run(run.id) for run in runs})


def assert_same(a: MemoryStorage, b: MemoryStorage) -> None:
    ids = [run.id for run in a.list_runs_filtered(EVERYTHING, 0, contract.MAX_LIMIT)]
    assert ids == [run.id for run in b.list_runs_filtered(EVERYTHING, 0, contract.MAX_LIMIT)]
    for run_id in ids:
        assert a.get_run(run_id) == b.get_run(run_id), run_id
        assert a.list_logs_by_run(run_id) == b.list_logs_by_run(run_id), run_id


def wipe() -> None:
    SkillRun.objects.delete_with_logs(list(SkillRun.objects.values_list("pk", flat=True)))


def export_all(events: bool = True) -> bytes:
    return b"".join(export.jsonl_chunks(SkillRun.objects.all(), events))


def import_bytes(data: bytes, **options) -> importer.ImportSummary:
    return importer.import_stream(io.BytesIO(data), **options)


def counts() -> list:
    return sorted(
        SkillRunCount.objects.values_list("span", "period_start", "skill_id", "status", "runs")
    )


def user_with(django_user_model, name, codenames, staff=False):
    user = django_user_model.objects.create_user(name, password="pw-123456", is_staff=staff)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="runs", codename__in=codenames)
    )
    return user


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def body(response) -> bytes:
    return b"".join(response.streaming_content)


VIEW = ["view_skillrun"]
IMPORT = ["view_skillrun", "add_skillrun", "change_skillrun", "add_skillrunlog"]


# --- round trips in process --------------------------------------------------------------


@pytest.mark.django_db
def test_jsonl_round_trip_keeps_every_field_and_event_and_a_second_import_changes_nothing():
    hostile_history()
    before, buckets = snapshot(), counts()
    data = export_all()
    assert len(data.splitlines()) == 12
    wipe()
    summary = import_bytes(data)
    assert summary.ok and summary.created == 12 and summary.events_written == 4
    assert_same(before, snapshot())
    assert counts() == buckets  # the run-count triggers saw every insert
    again = import_bytes(data)
    assert (again.created, again.unchanged, again.replaced, again.conflicts) == (0, 12, 0, [])
    assert_same(before, snapshot())
    assert export_all() == data


@pytest.mark.django_db
def test_small_batches_and_events_read_run_by_run_write_the_same_bytes(monkeypatch):
    hostile_history()
    expected = export_all()
    monkeypatch.setattr(export, "EVENTS_BATCH_SIZE", 2)
    monkeypatch.setattr(export, "BATCH_SIZE", 3)
    monkeypatch.setattr(export, "EVENTS_PER_QUERY", 1)  # every batch read run by run
    monkeypatch.setattr(export, "EVENT_CHUNK", 2)
    monkeypatch.setattr(export, "CHUNK_CHARS", 10)
    assert export_all() == expected
    without = b"".join(export.jsonl_chunks(SkillRun.objects.all())).splitlines()
    assert [json.loads(line) for line in without] == [
        {k: v for k, v in json.loads(line).items() if k != "events"}
        for line in expected.splitlines()
    ]


@pytest.mark.django_db
def test_tree_document_holds_the_whole_tree_from_any_of_its_runs(django_user_model):
    hostile_history()
    before = snapshot()
    client = token_client(user_with(django_user_model, "reader", VIEW))
    response = client.get("/api/runs/grandchild/export/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="run-root_1.json"'
    data = body(response)
    document = json.loads(data)
    assert (document["format"], document["version"], document["kind"]) == (
        "skillaudit-runs",
        1,
        "tree",
    )
    assert list(document)[:2] == ["format", "version"]
    assert (document["run_id"], document["root_id"]) == ("grandchild", "root/1")
    assert [run["id"] for run in document["runs"]] == ["root/1", "child/2", "grandchild"]
    root = document["runs"][0]
    assert root["events"][0] == {
        "sequence": 1,
        "event_type": "step",
        "created_at": "2026-11-20T12:00:00.123456Z",
        "payload": {"text": HOSTILE[0], "n": None, "b": True, "i": 1, "f": 1.0},
    }
    assert root["total_input_tokens"] == 2**63 - 1
    assert root["finished_at"] == "2026-11-20T12:00:03.123463Z"
    wipe()
    summary = import_bytes(data)
    assert summary.ok and summary.created == 3
    after = snapshot()
    for run_id in ("root/1", "child/2", "grandchild"):
        assert after.get_run(run_id) == before.get_run(run_id)
        assert after.list_logs_by_run(run_id) == before.list_logs_by_run(run_id)


@pytest.mark.django_db
def test_a_conflict_skips_its_tree_names_the_field_and_replace_overwrites(tmp_path):
    hostile_history()
    before = snapshot()
    path = tmp_path / "runs.jsonl.gz"
    call_command(
        "export_runs",
        "--include-nested",
        "--include-dry-run",
        "--events",
        "--output",
        str(path),
        stderr=io.StringIO(),
    )
    # The stored child now differs; its tree (root, child, grandchild) is not imported.
    SkillRun.objects.filter(pk="child/2").update(status="ok")
    SkillRun.objects.delete_with_logs(["root/1", "dry"])
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 run\\(s\\) differ"):
        call_command("import_runs", str(path), stdout=out)
    assert "run 'child/2' differs in status" in out.getvalue()
    assert not SkillRun.objects.filter(pk="root/1").exists()  # skipped with its tree
    assert SkillRun.objects.filter(pk="dry").exists()  # the rest was imported
    # Events: a changed payload is named by its sequence.
    SkillRunLog.objects.filter(run_id="child/2", sequence=1).update(payload={"x": "changed"})
    summary = importer.import_stream(gzip.open(path))
    assert [c.field for c in summary.conflicts] == ["status"]
    SkillRun.objects.filter(pk="child/2").update(status="error")
    summary = importer.import_stream(gzip.open(path))
    assert [(c.run_id, c.field) for c in summary.conflicts] == [
        ("child/2", "events[sequence 1].payload")
    ]
    out = io.StringIO()
    call_command("import_runs", "--replace", str(path), stdout=out)
    assert "1 replaced" in out.getvalue()
    assert_same(before, snapshot())


@pytest.mark.django_db
def test_a_malformed_line_is_named_and_stops_before_its_batch(tmp_path):
    hostile_history()
    lines = export_all().splitlines()
    wipe()
    lines[4] = b'{"id": "broken", "skill_id": "x"'
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = io.StringIO()
    with pytest.raises(CommandError, match="line 5: not JSON"):
        call_command("import_runs", "--batch-size", "2", str(path), stdout=out)
    assert SkillRun.objects.count() == 4  # the two batches before line 5
    assert "4 run(s) read: 4 created" in out.getvalue()
    for bad, message in [
        (b'{"id": "x", "skill_id": "s", "status": "ok"}', "line 1: missing field 'started_at'"),
        (
            b'{"id": "x", "skill_id": "s", "status": "ok", "started_at": "2026-01-01T00:00:00",'
            b' "z": 1}',
            "line 1: unknown field 'z'",
        ),
        (
            b'{"id": "x", "skill_id": "s", "status": "ok", "started_at": "2026-01-01T00:00:00"}',
            "line 1: started_at has no offset",
        ),
        (
            b'{"id": "x", "skill_id": "s", "status": "ok", "started_at": "2026-01-01T00:00:00Z",'
            b' "events": [{"sequence": 1.5, "event_type": "step", "created_at": '
            b'"2026-01-01T00:00:00Z"}]}',
            "line 1: events[0]: sequence must be an integer",
        ),
        (
            b'{"id": "x", "skill_id": "s", "status": "ok", "started_at": "2026-01-01T00:00:00Z",'
            b' "runtime_seconds": NaN}',
            "line 1: not JSON",
        ),
        (b"[1]", "line 1: a run must be a JSON object"),
    ]:
        summary = import_bytes(bad)
        assert summary.error.startswith(message), summary.error
    assert SkillRun.objects.count() == 4


# --- CSV ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_csv_of_hostile_text_opens_cleanly_and_guards_formulas(django_user_model):
    hostile_history()
    client = token_client(user_with(django_user_model, "reader", VIEW))
    response = client.get("/api/runs/export/?format=csv&include_nested=1&include_dry_run=1")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    data = body(response)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert len(rows) == 12
    assert list(rows[0]) == list(export.CSV_COLUMNS)
    by_id = {row["id"].removeprefix("'"): row for row in rows}
    for n, text in enumerate(FORMULAS):
        row = by_id[f"formula-{n}{text}"]
        for column in ("skill_id", "caller_id", "channel_id", "output_preview", "error_preview"):
            assert row[column] == "'" + text, (column, text)
    root = by_id["root/1"]
    assert root["output_preview"] == "\n".join(HOSTILE).replace("\x00", "\ufffd")[:160]
    assert root["total_input_tokens"] == str(2**63 - 1)
    assert root["started_at"] == "2026-11-20T12:00:00.123456Z"
    assert by_id["grandchild"]["finished_at"] == ""
    # An import of the CSV brings the summary columns back exactly.
    before = snapshot()
    wipe()
    summary = import_bytes(data)
    assert summary.ok and summary.created == 12, summary
    after = snapshot()
    for run_id in before._runs:
        mine, theirs = after.get_run(run_id), before.get_run(run_id)
        for name in export.CSV_COLUMNS[:-2]:
            assert getattr(mine, name) == getattr(theirs, name), (run_id, name)
    assert import_bytes(data).unchanged == 12


# --- Hypothesis --------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None, categories=None), max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)
    | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=12,
)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=45)), timezone(-timedelta(hours=8))]
)
times = st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1), timezones=zones)
generated_run = st.fixed_dictionaries(
    {
        "skill_id": any_text,
        "caller_id": any_text,
        "status": st.sampled_from(contract.KNOWN_STATUSES) | st.text(max_size=32),
        "output": any_text,
        "error": any_text,
        "inputs": st.dictionaries(any_text, json_values, max_size=4),
        "started_at": times,
        "finished_at": st.none() | times,
        "runtime_seconds": st.floats(allow_nan=False, allow_infinity=False, width=64),
        "tool_calls_count": st.integers(-(2**63), 2**63 - 1),
        "payloads": st.lists(st.dictionaries(any_text, json_values, max_size=3), max_size=3),
        "nested": st.booleans(),
    }
)


@pytest.mark.django_db
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(generated_run, min_size=1, max_size=5))
def test_generated_runs_round_trip(runs):
    wipe()
    previous = ""
    for n, data in enumerate(runs):
        run_id = f"gen-{n}-{uuid.uuid4().hex[:6]}"
        store(
            contract.SkillRun(
                id=run_id,
                skill_id=data["skill_id"],
                caller_id=data["caller_id"],
                inputs=data["inputs"],
                started_at=data["started_at"],
                finished_at=data["finished_at"],
                status=data["status"],
                output=data["output"],
                error=data["error"],
                runtime_seconds=data["runtime_seconds"],
                tool_calls_count=data["tool_calls_count"],
                parent_run_id=previous if data["nested"] else "",
            ),
            [
                event(s, payload, at=data["started_at"])
                for s, payload in enumerate(data["payloads"], start=1)
            ],
        )
        previous = run_id
    before = snapshot()
    exported = export_all()
    wipe()
    summary = import_bytes(exported)
    assert summary.ok and summary.created == len(runs), summary
    assert_same(before, snapshot())
    assert import_bytes(exported).unchanged == len(runs)


# --- commands ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_export_command_filters_like_the_list(tmp_path):
    hostile_history()
    path = tmp_path / "triage.jsonl"
    call_command("export_runs", "--skill", "triage", "--output", str(path), stderr=io.StringIO())
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["root/1"]
    path = tmp_path / "triage.csv.gz"
    call_command(
        "export_runs",
        "--skill",
        "triage",
        "--include-dry-run",
        "--output",
        str(path),
        stderr=io.StringIO(),
    )
    rows = list(csv.reader(io.StringIO(gzip.open(path).read().decode("utf-8-sig"))))
    assert [row[0] for row in rows[1:]] == ["root/1", "dry"]
    with pytest.raises(CommandError, match="--since: .*ISO 8601"):
        call_command("export_runs", "--since", "yesterday")
    with pytest.raises(CommandError, match="--status: "):
        call_command("export_runs", "--status", "nope")
    with pytest.raises(CommandError, match="--events needs --format jsonl"):
        call_command("export_runs", "--format", "csv", "--events")
    with pytest.raises(CommandError, match="no run 'nope'"):
        call_command("export_runs", "--tree", "nope")
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_runs", str(tmp_path / "missing.jsonl"))
    tree = tmp_path / "tree.json"
    call_command("export_runs", "--tree", "child/2", "--output", str(tree), stderr=io.StringIO())
    assert json.loads(tree.read_text())["root_id"] == "root/1"


# --- PostgreSQL <-> SQLite -----------------------------------------------------------------

SNAPSHOT_SCRIPT = """
import pickle, sys, django
django.setup()
from runs import contract
from runs.storage import DjangoStorage
storage = DjangoStorage()
runs = []
while True:
    page = storage.list_runs_filtered(contract.RunFilter(include_dry_run=True), len(runs), 500)
    runs += page
    if len(page) < 500:
        break
sys.stdout.buffer.write(pickle.dumps((runs, {r.id: storage.list_logs_by_run(r.id) for r in runs})))
"""
SEED_SCRIPT = """
import django
django.setup()
import tests.test_export_import as t
t.hostile_history()
"""


def postgres_admin():
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is unreachable: {exc}")


def test_round_trip_sqlite_to_postgresql_and_back(tmp_path):
    import pickle

    admin = postgres_admin()
    name = f"sa_i19_rt_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        urls = {
            "sqlite": f"sqlite:///{tmp_path / 'a.sqlite3'}",
            "postgresql": f"postgres://postgres@127.0.0.1:5432/{name}",
            "sqlite-again": f"sqlite:///{tmp_path / 'c.sqlite3'}",
        }

        def run(url, *args, stdin=None, script=None):
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "SKILLAUDIT_DATA_DIR": str(tmp_path),
                "DEBUG": "1",
                "DJANGO_SETTINGS_MODULE": "skillaudit_site.settings",
            }
            command = (
                [sys.executable, "-c", script]
                if script
                else [sys.executable, str(ROOT / "manage.py"), *args]
            )
            done = subprocess.run(
                command,
                env=env,
                cwd=ROOT,
                input=stdin,
                capture_output=True,
                timeout=600,
                check=True,
            )
            # Not a terminal: no progress line on stderr.
            assert b"\r" not in done.stderr and b"\x1b" not in done.stderr
            return done.stdout

        def snap(url) -> MemoryStorage:
            return memory_of(*pickle.loads(run(url, script=SNAPSHOT_SCRIPT)))

        for url in urls.values():
            run(url, "migrate", "-v0")
        run(urls["sqlite"], script=SEED_SCRIPT)
        run(urls["sqlite"], "seed_demo", "--runs", "30")
        everything = ["--include-nested", "--include-dry-run", "--events"]
        first = tmp_path / "from-sqlite.jsonl.gz"
        run(urls["sqlite"], "export_runs", *everything, "--output", str(first))
        run(urls["postgresql"], "import_runs", str(first))
        source = snap(urls["sqlite"])
        assert len(source._runs) > 40
        assert_same(source, snap(urls["postgresql"]))
        # Again: nothing changes.
        out = run(urls["postgresql"], "import_runs", str(first))
        assert f"{len(source._runs)} already stored".encode() in out
        back = run(urls["postgresql"], "export_runs", *everything)
        run(urls["sqlite-again"], "import_runs", "-", stdin=back)
        assert_same(source, snap(urls["sqlite-again"]))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --- the API and the dashboard: access and parameters --------------------------------------


@pytest.mark.django_db
def test_api_import_is_atomic_per_tree_and_reports_conflicts(django_user_model):
    hostile_history()
    data = export_all()
    client = token_client(user_with(django_user_model, "importer", IMPORT))
    SkillRun.objects.filter(pk="grandchild").update(output="changed")
    SkillRun.objects.delete_with_logs(["root/1", "dry"])
    response = client.generic(
        "POST", "/api/runs/import/", data, content_type="application/x-ndjson"
    )
    assert response.status_code == 409
    summary = response.json()
    assert summary["conflicts"] == [
        {"run_id": "grandchild", "field": "output", "where": summary["conflicts"][0]["where"]}
    ]
    assert summary["skipped"] == 3 and summary["created"] == 1
    assert not SkillRun.objects.filter(pk="root/1").exists()
    # replace needs the permission to delete events as well.
    response = client.generic(
        "POST", "/api/runs/import/?replace=1", data, content_type="application/x-ndjson"
    )
    assert response.status_code == 403
    # A bad line anywhere: 400 naming it, nothing written.
    bad = data.replace(b'"skill_id": "triage"', b'"skill_id": 7', 1)
    SkillRun.objects.delete_with_logs(["dry"])
    response = client.generic("POST", "/api/runs/import/", bad, content_type="application/x-ndjson")
    assert response.status_code == 400 and "skill_id must be a string" in response.json()["detail"]
    assert not SkillRun.objects.filter(pk="dry").exists()
    with override_settings(SKILLAUDIT_IMPORT_MAX_BODY_BYTES=100):
        response = client.generic(
            "POST", "/api/runs/import/", data, content_type="application/x-ndjson"
        )
    assert response.status_code == 413


@pytest.mark.django_db
def test_api_access(django_user_model):
    hostile_history()
    anonymous = APIClient()
    nobody = token_client(user_with(django_user_model, "nobody", []))
    reader = token_client(user_with(django_user_model, "reader", VIEW))
    line = export_all().splitlines()[0]
    for client, expected in ((anonymous, 401), (nobody, 403)):
        assert client.get("/api/runs/export/").status_code == expected
        assert client.get("/api/runs/root%2F1/export/").status_code == expected
        response = client.generic(
            "POST", "/api/runs/import/", line, content_type="application/x-ndjson"
        )
        assert response.status_code == expected
    assert reader.get("/api/runs/root%2F1/export/").status_code == 200
    response = reader.generic(
        "POST", "/api/runs/import/", line, content_type="application/x-ndjson"
    )
    assert response.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, parameter",
    [
        ("format=xml", "format"),
        ("bogus=1", "bogus"),
        ("events=maybe", "events"),
        ("format=csv&events=1", "events"),
        ("skill=a&skill=b", "skill"),
        ("since=yesterday", "since"),
        ("status=nope", "status"),
    ],
)
def test_bad_parameters_are_400s_naming_them(django_user_model, query, parameter):
    reader = token_client(user_with(django_user_model, "reader", VIEW))
    response = reader.get(f"/api/runs/export/?{query}")
    assert response.status_code == 400
    assert parameter in response.json()
    viewer = user_with(django_user_model, "viewer", VIEW, staff=True)
    client = Client()
    client.force_login(viewer)
    response = client.get(f"/runs/export/?{query}")
    assert response.status_code == 400
    assert parameter.encode() in response.content


@pytest.mark.django_db
def test_run_export_refuses_parameters_and_unknown_runs(django_user_model):
    hostile_history()
    reader = token_client(user_with(django_user_model, "reader", VIEW))
    assert reader.get("/api/runs/root%2F1/export/?x=1").status_code == 400
    assert reader.get("/api/runs/missing/export/").status_code == 404
    response = reader.get("/api/runs/root%2F1/export/", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200  # whatever the client accepts
    writer = token_client(user_with(django_user_model, "importer", IMPORT))
    response = writer.generic(
        "POST", "/api/runs/import/", b"  ", content_type="application/x-ndjson"
    )
    assert response.status_code == 400 and response.json() == {"detail": "the body is empty"}


@pytest.mark.django_db
def test_dashboard_downloads(django_user_model):
    hostile_history()
    anonymous = Client()
    for url in ("/runs/export/?format=jsonl", "/runs/root%2F1/export/"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response["Location"]
    no_permission = Client()
    no_permission.force_login(user_with(django_user_model, "staff", [], staff=True))
    assert no_permission.get("/runs/export/?format=jsonl").status_code == 403
    assert no_permission.get("/runs/root%2F1/export/").status_code == 403
    client = Client()
    client.force_login(user_with(django_user_model, "viewer", VIEW, staff=True))
    page = client.get("/runs/?skill=triage&include_dry_run=1").content.decode()
    assert 'href="/runs/export/?skill=triage&amp;include_dry_run=1&amp;format=csv"' in page
    assert "format=jsonl&amp;events=1" in page
    response = client.get("/runs/export/?skill=triage&include_dry_run=1&format=jsonl")
    assert response["Content-Disposition"] == 'attachment; filename="runs.jsonl"'
    assert [json.loads(line)["id"] for line in body(response).splitlines()] == ["root/1", "dry"]
    detail = client.get("/runs/child%2F2/").content.decode()
    assert 'href="/runs/child/2/export/"' in detail or "/export/" in detail
    tree = client.get("/runs/child%2F2/tree/").content.decode()
    assert "/export/" in tree and "Download" in tree
    document = json.loads(body(client.get("/runs/child%2F2/export/")))
    assert document["root_id"] == "root/1" and len(document["runs"]) == 3


@pytest.mark.django_db
def test_a_run_whose_id_is_export_stays_readable(django_user_model):
    store(contract.SkillRun(id="export", skill_id="s", started_at=T0, status="ok"))
    store(contract.SkillRun(id="x/export", skill_id="s", started_at=T0, status="ok"))
    reader = token_client(user_with(django_user_model, "reader", VIEW))
    response = reader.post("/api/contract/get_run/", {"id": "export"}, format="json")
    assert response.status_code == 200 and response.json()["id"] == "export"
    client = Client()
    client.force_login(user_with(django_user_model, "viewer", VIEW, staff=True))
    assert b"Run id" in client.get("/runs/export/").content
    assert b"x/export" in client.get("/runs/x/export/").content
    assert client.get("/runs/export/?format=jsonl")["Content-Disposition"].startswith("attachment")


@pytest.mark.django_db
def test_same_json_compares_values_not_spelling():
    assert importer.same_json({"a": 1e20, "b": [1.0]}, {"b": [1], "a": 10**20})
    assert not importer.same_json(True, 1)
    assert not importer.same_json(1, "1")
    assert not importer.same_json({"a": None}, {})
    assert RunTransfer().stored_runs(["nothing"]) == {}


@pytest.mark.django_db
def test_a_corrupt_gzip_body_is_a_clear_error(django_user_model):
    hostile_history()
    data = gzip.compress(export_all())
    wipe()
    summary = import_bytes(data[: len(data) // 2])
    assert summary.error.startswith("gzip: the compressed data is corrupt or cut short")
    writer = token_client(user_with(django_user_model, "importer", IMPORT))
    response = writer.generic(
        "POST", "/api/runs/import/", b"\x1f\x8bnot gzip", content_type="application/x-ndjson"
    )
    assert response.status_code == 400 and response.json()["detail"].startswith("gzip:")
    response = writer.generic(
        "POST", "/api/runs/import/", data, content_type="application/x-ndjson"
    )
    assert response.status_code == 200 and response.json()["created"] == 12
