"""Faults with real processes and real databases: concurrent SQLite writers, a full disk,
a PostgreSQL statement that runs past its time limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.urls import reverse

from tests.dashboard_data import make_viewer, record_run

ROOT = Path(__file__).resolve().parent.parent

WRITER = r"""
import json, os, sys
import django
django.setup()
from runs.recorder import Sink
from runs.storage import DjangoStorage
sink = Sink(DjangoStorage())
worker = sys.argv[1]
for i in range(int(sys.argv[2])):
    with sink.start_run(skill_id="load", caller_id=worker, run_id=f"{worker}-{i}") as run:
        for j in range(5):
            run.step(input_tokens=j, text="x" * 200)
        run.tool_call("t", {"i": i})
        run.tool_result("t", {"ok": True})
print(json.dumps({"failures": sink.failures}))
"""

DISK_FULL = r"""
import json
import django
django.setup()
from django.db import connection
from runs.contract import SkillRun, SkillRunLog
from runs.models import SkillRun as Row
from runs.recorder import Sink
from runs.storage import DjangoStorage
storage = DjangoStorage()
storage.start_run(SkillRun(id="before-full", skill_id="s", inputs={"k": "v"}))
with connection.cursor() as cursor:
    cursor.execute("PRAGMA page_count")
    pages = cursor.fetchone()[0]
    cursor.execute(f"PRAGMA max_page_count = {pages + 4}")
errors = []
for i in range(50):
    try:
        storage.start_run(SkillRun(id=f"big-{i}", skill_id="s", inputs={"blob": "x" * 20000}))
    except Exception as exc:
        errors.append(type(exc).__name__ + ": " + str(exc))
        break
sink = Sink(storage)
recorder = sink.start_run(skill_id="s", inputs={"blob": "y" * 50000})
recorder.close("ok")
with connection.cursor() as cursor:
    cursor.execute("PRAGMA integrity_check")
    integrity = cursor.fetchone()[0]
print(json.dumps({
    "errors": errors,
    "recorder_failures": sink.failures,
    "integrity": integrity,
    "before_full_readable": storage.get_run("before-full").inputs == {"k": "v"},
    "rows": Row.objects.count(),
}))
"""


def _env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="skillaudit_site.settings_test",
        DATABASE_URL=database_url,
        PYTHONPATH=str(ROOT),
    )
    return env


def _migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'faults.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=_env(url) | {"DJANGO_SETTINGS_MODULE": "skillaudit_site.settings_test"},
        check=True,
    )
    return url


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's locking is what is tested")
def test_four_sqlite_writer_processes_never_see_database_is_locked(tmp_path):
    url = _migrated_sqlite(tmp_path)
    runs_each = 40
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, f"w{n}", str(runs_each)],
            cwd=ROOT,
            env=_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    results = [w.communicate(timeout=300) for w in workers]
    for worker, (out, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err
        assert "database is locked" not in err
        assert json.loads(out.strip().splitlines()[-1]) == {"failures": 0}
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup();"
            "from runs.models import SkillRun, SkillRunLog;"
            "print(SkillRun.objects.filter(status='ok').count(), SkillRunLog.objects.count())",
        ],
        cwd=ROOT,
        env=_env(url),
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.split() == [str(4 * runs_each), str(4 * runs_each * 7)]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="max_page_count is SQLite's")
def test_sqlite_disk_full_is_a_clean_error_and_keeps_earlier_data(tmp_path):
    url = _migrated_sqlite(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", DISK_FULL], cwd=ROOT, env=_env(url), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] and "full" in result["errors"][0]
    assert result["recorder_failures"] >= 1  # counted, not raised into the agent
    assert result["integrity"] == "ok"
    assert result["before_full_readable"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="statement_timeout is PostgreSQL's")
def test_a_query_past_the_statement_timeout_gets_a_clean_503(client, django_user_model):
    client.force_login(make_viewer(django_user_model))
    record_run("r1")
    settings = connection.settings_dict
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        with psycopg.connect(
            dbname=settings["NAME"],
            user=settings["USER"],
            host=settings["HOST"],
            port=settings["PORT"] or 5432,
            password=settings["PASSWORD"] or None,
        ) as other:
            with other.transaction():
                other.execute("LOCK TABLE skill_runs IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '300ms'")
        response = client.get(reverse("runs:run_list"))
        assert response.status_code == 503
        assert b"Traceback" not in response.content
    finally:
        release.set()
        holder.join()
        connection.close()
    assert client.get(reverse("runs:run_list")).status_code == 200
