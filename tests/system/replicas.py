"""A real primary and streaming standby under gunicorn (run by .ci/run, not by pytest).

Builds both servers with PostgreSQL's own tools in a temporary folder, on free loopback
ports, as the ``postgres`` user (``initdb``, ``pg_basebackup -R``, ``pg_ctl``); the
machine's own cluster is never touched. Then, with the site configured with
``DATABASE_REPLICA_URLS`` pointing at the standby:

1. runs recorded on the primary are read through the dashboard and the API;
2. the reads come from the standby: with its replay paused, a run written on the primary
   is a 404 for a reader and missing from its list, while the client that wrote it reads
   it at once (read-your-writes), and the list page says its data is old;
3. once the paused standby lags past SKILLAUDIT_REPLICA_MAX_LAG_SECONDS the primary serves
   (the reader now finds the run); replay resumed, the standby serves again, and still does
   after the primary stays idle for longer than that limit (a quiet night is not lag);
4. the standby is stopped while clients load the site: not one failed request; started
   again, it catches up and serves reads again (proved as in 2).

Usage: .venv/bin/python tests/system/replicas.py   (as root: it runs the servers as postgres)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.served import Client, Gunicorn, bench_env, free_port  # noqa: E402

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
DB = "skillaudit"
MAX_LAG = 8  # seconds: short, so that step 3 does not wait long
NOTICE = 2


def as_postgres(*command: str, **kwargs) -> subprocess.CompletedProcess:
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(run_as + list(command), check=True, **kwargs)


class Server:
    """One PostgreSQL server in its own data folder, on its own loopback port."""

    def __init__(self, root: Path, name: str):
        self.data = root / name
        self.socket_dir = root
        self.port = free_port()
        self.log = root / f"{name}.log"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.socket_dir} -c fsync=off"
        )
        as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start", stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop",
            stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def sql(self, query: str, database: str = DB) -> str:
        result = subprocess.run(
            [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database, "-AtqX", "-v", "ON_ERROR_STOP=1", "-c", query],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return result.stdout.strip()

    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DB}"


def build(root: Path) -> tuple[Server, Server]:
    primary, standby = Server(root, "primary"), Server(root, "standby")
    as_postgres(
        str(PG_BIN / "initdb"), "-D", str(primary.data), "-U", "postgres", "--auth=trust",
        "--no-sync", stdout=subprocess.DEVNULL,
    )  # fmt: skip
    primary.start()
    primary.sql(f"CREATE DATABASE {DB}", database="postgres")
    as_postgres(
        str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U",
        "postgres", "-D", str(standby.data), "-R", "-X", "stream", "--no-sync",
    )  # fmt: skip
    standby.start()
    assert standby.sql("SELECT pg_is_in_recovery()") == "t", "the standby is not in recovery"
    return primary, standby


def wait_caught_up(primary: Server, standby: Server, seconds: float = 60) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    target = primary.sql("SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if standby.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") == "t":
                return
        except subprocess.CalledProcessError:
            pass  # still starting
        time.sleep(0.2)
    raise SystemExit("the standby did not catch up within 60 s")


class Site:
    """The reader (a logged-in browser session) and the writer (an API token)."""

    def __init__(self, port: int, password: str, token: str):
        self.port = port
        self.reader = Client(port)
        self.reader.login("admin", password)
        self.writer = Client(port)
        self.token = token

    def write_run(self, run_id: str) -> int:
        body = json.dumps({"id": run_id, "skill_id": "replica-check", "caller_id": "ci"})
        status, _ = self.writer.request(
            "POST", "/api/runs/", body,
            {"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )  # fmt: skip
        return status

    def writer_get(self, path: str):
        return self.writer.request("GET", path, None, {"Authorization": f"Token {self.token}"})


def main() -> int:
    failures: list[str] = []

    started = time.monotonic()

    def expect(condition: bool, message: str) -> None:
        elapsed = f"[{time.monotonic() - started:5.1f} s] "
        print(elapsed + ("ok   " if condition else "FAIL ") + message, flush=True)
        if not condition:
            failures.append(message)

    root = Path(tempfile.mkdtemp(prefix="sa-replicas-"))
    shutil.chown(root, "postgres", "postgres") if os.geteuid() == 0 else None
    primary = standby = None
    try:
        primary, standby = build(root)
        site_dir = root / "site"
        site_dir.mkdir()
        password = secrets.token_urlsafe(12)
        env = bench_env(primary.url(), secrets.token_urlsafe(50), site_dir)
        env.update(
            DJANGO_SUPERUSER_PASSWORD=password,
            DATABASE_REPLICA_URLS=standby.url(),
            SKILLAUDIT_REPLICA_MAX_LAG_SECONDS=str(MAX_LAG),
            SKILLAUDIT_REPLICA_CHECK_SECONDS="1",
            SKILLAUDIT_REPLICA_NOTICE_SECONDS=str(NOTICE),
        )
        manage = [str(ROOT / ".venv/bin/python"), "manage.py"]
        for command in (
            ["migrate", "--noinput", "-v0"],
            ["collectstatic", "--noinput", "-v0"],
            ["seed_demo", "--runs", "40"],
            ["ensure_admin"],
        ):
            subprocess.run(
                manage + command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
            )
        token = subprocess.run(
            manage + ["create_api_token", "admin"],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().split()[-1]  # fmt: skip
        seeded = primary.sql("SELECT id FROM skill_runs WHERE parent_run_id = '' LIMIT 1")
        server = Gunicorn(env, site_dir / "gunicorn.log")
        server.env["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
        with server:
            site = Site(server.port, password, token)
            wait_caught_up(primary, standby)

            # 1. what the primary recorded, read through the dashboard and the API
            status, page = site.reader.get("/runs/")
            expect(status == 200 and b"/runs/" + seeded.encode() in page, "1. list page reads")
            status, body = site.reader.get("/api/runs/?page_size=500")
            expect(status == 200 and seeded in body.decode(), "1. API list reads")

            # 2. the reads come from the standby, and a writer reads its own writes
            proof_of_standby(site, primary, standby, "after-pause", expect)
            time.sleep(NOTICE + 1.5)
            status, page = site.reader.get("/runs/")
            expect(status == 200 and b'id="replica-lag"' in page, "2. the list says it is old")

            # 3. past the lag limit the primary serves; resumed, the standby again
            deadline = time.monotonic() + MAX_LAG + 20
            found = False
            while time.monotonic() < deadline and not found:
                found = site.reader.get("/api/runs/after-pause/")[0] == 200
                time.sleep(0.5)
            expect(found, f"3. a standby lagging past {MAX_LAG} s is skipped: the primary serves")
            status, page = site.reader.get("/runs/")
            expect(b'id="replica-lag"' not in page, "3. no notice when the primary serves")
            standby.sql("SELECT pg_wal_replay_resume()")
            wait_caught_up(primary, standby)
            time.sleep(1.5)  # one health check interval
            proof_of_standby(site, primary, standby, "after-resume", expect)
            standby.sql("SELECT pg_wal_replay_resume()")
            wait_caught_up(primary, standby)

            # 3b. a quiet night: a caught-up standby of an idle primary is not lagging, however
            # old its last replayed transaction; it keeps serving (its own scan counters grow)
            time.sleep(MAX_LAG + 3)
            before = standby_scans(standby)
            for path in ("/runs/", "/api/runs/", "/skills/"):
                expect(site.reader.get(path)[0] == 200, f"3b. {path} after {MAX_LAG + 3} s idle")
            after = standby_scans(standby)
            expect(after > before, f"3b. the idle standby served them (last query {after:.1f})")

            # 4. the standby stopped under load: no failed request
            load_failures, counts = under_load(site, lambda: standby.stop())
            expect(
                not load_failures, f"4. {counts} requests while the standby stopped, none failed"
            )
            for failure in load_failures[:10]:
                print("   ", failure)
            standby.start()
            wait_caught_up(primary, standby)
            time.sleep(1.5)
            proof_of_standby(site, primary, standby, "after-restart", expect)
            standby.sql("SELECT pg_wal_replay_resume()")
        log = (site_dir / "gunicorn.log").read_text(errors="replace")
        print(
            f"gunicorn log: {log.count('failed mid-request')} replica failures mid-request "
            f"answered again from the primary, {log.count('unavailable:')} failed replica checks, "
            f"{log.count('lags ')} lag skips"
        )
    finally:
        for node in (standby, primary):
            if node is not None:
                try:
                    node.stop()
                except subprocess.CalledProcessError:
                    pass
        shutil.rmtree(root, ignore_errors=True)
    print("replicas:", "ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


def standby_scans(standby: Server) -> float:
    """When the standby last started a query for a page (pg_stat_activity is live; table
    statistics are flushed only after 10 s idle). Any client query but this one and the
    site's health check (routing.LAG_SQL) counts: a backend shows only its last query, and
    a page's last query on the standby may read a table whose name says nothing of runs
    (the price table), which made a filter on the query's text miss pages the standby
    served."""
    return float(
        standby.sql(
            "SELECT coalesce(max(extract(epoch FROM query_start)), 0) FROM pg_stat_activity "
            f"WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' "
            f"AND datname = '{DB}' AND query NOT ILIKE '%pg_is_in_recovery%'"
        )
    )


def proof_of_standby(site: Site, primary: Server, standby: Server, run_id: str, expect) -> None:
    """With replay paused, a run written now exists on the primary only: a reader who
    cannot see it reads from the standby; the writer who wrote it sees it."""
    primary.sql("SELECT pg_switch_wal(), txid_current()")  # a fresh replayed transaction
    wait_caught_up(primary, standby)
    standby.sql("SELECT pg_wal_replay_pause()")
    expect(site.write_run(run_id) == 201, f"{run_id}: the writer records a run on the primary")
    expect(primary.sql(f"SELECT count(*) FROM skill_runs WHERE id = '{run_id}'") == "1",
           f"{run_id}: the primary has it")  # fmt: skip
    status, _ = site.reader.get(f"/api/runs/{run_id}/")
    expect(status == 404, f"{run_id}: a reader's API GET is answered by the standby (404)")
    status, page = site.reader.get("/runs/?skill=replica-check")
    expect(status == 200 and f"/runs/{run_id}/".encode() not in page,
           f"{run_id}: the reader's list page comes from the standby (run missing)")  # fmt: skip
    status, _ = site.writer_get(f"/api/runs/{run_id}/")
    expect(status == 200, f"{run_id}: the writer reads its own write at once (primary)")


def under_load(site: Site, action, clients: int = 3, requests: int = 150):
    """``clients`` readers make ``requests`` requests each; ``action`` runs after a third."""
    failures: list[str] = []
    done = [0]
    lock = threading.Lock()
    paths = ("/runs/", "/api/runs/", "/skills/", "/runs/?status=error")

    def reader() -> None:
        client = Client(site.port)
        client.cookies = dict(site.reader.cookies)
        for number in range(requests):
            path = paths[number % len(paths)]
            try:
                status, body = client.get(path)
            except OSError as exc:
                status, body = 0, str(exc).encode()
            with lock:
                done[0] += 1
                if status != 200:
                    failures.append(f"{path}: {status} {body[:120]!r}")

    threads = [threading.Thread(target=reader) for _ in range(clients)]
    for thread in threads:
        thread.start()
    while done[0] < clients * requests // 3 and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    action()
    for thread in threads:
        thread.join(timeout=300)
    return failures, done[0]


if __name__ == "__main__":
    raise SystemExit(main())
