#!/usr/bin/env python
"""/skills/ at 20,000 skills: time per page and bytes.

    .venv/bin/python bench/skills_page.py                  # SQLite under var/bench/
    .venv/bin/python bench/skills_page.py --database-url postgres://postgres@127.0.0.1:5432/sa_bench_skills

The database is emptied (PostgreSQL: dropped and created; SQLite: the file replaced) and
migrated, then filled with --skills skills of --runs-per-skill runs each (every status,
started over the last 10 days; the count triggers fill skill_run_counts as they would for
any writer). The page is asked in process through Django's test client as a logged-in
viewer (the dashboard's own time, no network), for each sort, on the first and the last
page, --repeat times each after one warm-up, with the CPU time of this process and of the
PostgreSQL backend (from /proc) per request beside the wall clock. Results go to
bench/results/skills-page-<database>.json (bench/RESULTS.md is edited by hand).

Target: under 100 ms per page at 20,000 skills.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_MS = 100.0
STATUSES = ("ok", "ok", "ok", "error", "timeout", "running", "budget_exceeded")


def fresh_database(url: str | None) -> str:
    if url is None:
        path = ROOT / "var" / "bench" / "skills.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob("skills.sqlite3*"):
            stale.unlink()
        return f"sqlite:///{path}"
    name = urlparse(url).path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    for sql in (f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", admin, "-qc", sql], check=True)
    return url


def fill(skills: int, per_skill: int) -> int:
    from runs.models import SkillRun

    now = datetime.now(UTC)
    batch, made = [], 0
    for s in range(skills):
        for r in range(per_skill):
            n = s * per_skill + r
            started = now - timedelta(minutes=(n * 7919) % (10 * 24 * 60))
            status = STATUSES[n % len(STATUSES)]
            batch.append(
                SkillRun(
                    id=f"run-{n:08d}",
                    skill_id=f"skill-{s:05d}",
                    caller_id=f"caller-{n % 50}",
                    channel_id="bench",
                    status=status,
                    started_at=started,
                    finished_at=None if status == "running" else started + timedelta(seconds=3),
                    runtime_seconds=3.0,
                    inputs={},
                )
            )
            if len(batch) == 5000:
                SkillRun.objects.bulk_create(batch)
                made += len(batch)
                batch = []
    if batch:
        SkillRun.objects.bulk_create(batch)
        made += len(batch)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--skills", type=int, default=20_000)
    parser.add_argument("--runs-per-skill", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    url = fresh_database(args.database_url)
    os.environ.update(
        DATABASE_URL=url,
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="0",
        SKILLAUDIT_DATA_DIR=tempfile.mkdtemp(prefix="sa-skills-bench-"),
        DJANGO_SETTINGS_MODULE="skillaudit_site.settings",
        LOG_LEVEL="ERROR",
    )
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import Permission, User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from bench import report
    from bench.measure import summary

    setup_test_environment()  # the test client's host name, in-memory e-mail; no test DB
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("migrate", verbosity=0)
    started = time.monotonic()
    runs = fill(args.skills, args.runs_per_skill)
    print(f"filled {args.skills:,} skills / {runs:,} runs in {time.monotonic() - started:.0f} s")
    user = User.objects.create_user("bench-viewer", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_skillrun"))
    client = Client()
    client.force_login(user)

    def backend_cpu() -> float:
        """CPU seconds of the PostgreSQL backend serving this connection (0 on SQLite:
        the database runs in this process, so process_time() counts it)."""
        if connection.vendor != "postgresql":
            return 0.0
        fields = Path(f"/proc/{backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    connection.ensure_connection()
    backend_pid = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend_pid = cursor.fetchone()[0]
    figures = {}
    first = client.get("/skills/")
    assert first.status_code == 200, first.status_code
    pages = first.context["pages"]
    for sort in ("last_run", "name", "failures"):
        for page in sorted({1, pages}):
            path = f"/skills/?sort={sort}&page={page}"
            client.get(path)  # warm-up
            samples, cpu, size = [], [], 0
            for _ in range(args.repeat):
                c0, b0 = time.process_time(), backend_cpu()
                t0 = time.perf_counter()
                response = client.get(path)
                samples.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0 + backend_cpu() - b0) * 1000)
                assert response.status_code == 200, (path, response.status_code)
                size = len(response.content)
            stats = summary(samples)
            figures[f"GET {path}"] = {
                "median_ms": round(stats["median_ms"], 1),
                "p95_ms": round(stats["p95_ms"], 1),
                "cpu_median_ms": round(summary(cpu)["median_ms"], 1),
                "bytes": size,
                "under_100_ms": "yes" if stats["p95_ms"] < TARGET_MS else "NO",
            }
            print(
                f"{path:40} median {stats['median_ms']:7.1f} ms  "
                f"p95 {stats['p95_ms']:7.1f} ms  cpu {summary(cpu)['median_ms']:6.1f} ms  "
                f"{size:,} bytes"
            )
    vendor = connection.vendor
    load = os.getloadavg()
    figures["data and machine"] = {
        "skills": args.skills,
        "runs": runs,
        "pages": pages,
        "load_avg_1m": round(load[0], 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    record = {
        "script": "bench/skills_page.py",
        "database": vendor,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/skills_page.py", *sys.argv[1:]]),
        "figures": figures,
    }
    if args.no_save:
        return
    path = report.save(f"skills-page-{vendor}", record)
    print(f"wrote {path.relative_to(ROOT)} (bench/RESULTS.md is edited by hand)")


if __name__ == "__main__":
    main()
