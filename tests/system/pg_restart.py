"""PostgreSQL restarted and stopped under a serving gunicorn (run by .ci/run, not by pytest).

- restarted: no request fails afterwards (CONN_HEALTH_CHECKS drops the dead connections);
- stopped: pages answer 503 without a traceback, /healthz answers 503;
- started again: everything answers 200.

Usage: .venv/bin/python tests/system/pg_restart.py   (needs root for pg_ctlcluster)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.served import Client, Gunicorn, bench_env  # noqa: E402

DB = "sa_restart_check"
CLUSTER = sorted(os.listdir("/etc/postgresql"))[-1] if os.path.isdir("/etc/postgresql") else ""


def pg(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", CLUSTER, "main", action, "-m", "fast"]
        if action != "start"
        else ["pg_ctlcluster", "--skip-systemctl-redirect", CLUSTER, "main", "start"],
        check=True,
    )


def wait_ready(up: bool = True, seconds: int = 60) -> None:
    for _ in range(seconds * 5):
        ready = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0
        if ready == up:
            return
        time.sleep(0.2)
    raise SystemExit(f"PostgreSQL did not become {'ready' if up else 'unavailable'}")


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)


def main() -> int:
    wait_ready()
    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    data_dir = Path(tempfile.mkdtemp(prefix="sa-restart-"))
    password = secrets.token_urlsafe(12)
    env = bench_env(f"postgres://postgres@127.0.0.1:5432/{DB}", secrets.token_urlsafe(50), data_dir)
    env["DJANGO_SUPERUSER_PASSWORD"] = password
    manage = [str(ROOT / ".venv/bin/python"), "manage.py"]
    setup = (
        ["migrate", "--noinput", "-v0"],
        ["collectstatic", "--noinput", "-v0"],
        ["seed_demo", "--runs", "60"],
        ["ensure_admin"],
    )
    for command in setup:
        subprocess.run(manage + command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    failures: list[str] = []
    server = Gunicorn(env, data_dir / "gunicorn.log")
    server.env["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    with server:
        client = Client(server.port)
        client.login("admin", password)

        def check(expect: int, rounds: int, label: str) -> None:
            for _ in range(rounds):
                for path in ("/runs/", "/skills/", "/healthz"):
                    status, body = client.get(path)
                    if status != expect:
                        failures.append(f"{label}: {path} answered {status}, expected {expect}")
                    if b"Traceback" in body:
                        failures.append(f"{label}: {path} showed a traceback")

        check(200, 10, "before the restart")
        pg("restart")
        wait_ready()
        check(200, 20, "after the restart")
        pg("stop")
        wait_ready(up=False)
        check(503, 3, "while PostgreSQL is down")
        pg("start")
        wait_ready()
        check(200, 10, "after PostgreSQL came back")
    psql(f"DROP DATABASE IF EXISTS {DB}")
    for failure in failures:
        print("FAIL", failure)
    print("pg_restart:", "ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
