#!/usr/bin/env python
"""Events recorded per second: the API's batch endpoint, the recorder over HttpStorage, and
the recorder over DjangoStorage in process, on the same database.

    .venv/bin/python bench/api_ingest.py --database-url postgres://postgres@127.0.0.1:5432/sa_bench_api
    .venv/bin/python bench/api_ingest.py --database-url sqlite:////work/main/var/bench/api.sqlite3

The database is emptied (PostgreSQL: dropped and created; SQLite: the file replaced) and
migrated first. gunicorn serves the site as in production (2 sync workers). Every event is
a realistic tool-call payload of about 300 bytes. Results go to
bench/results/api-ingest-<database>.json and are printed as a table.

Target: at least 10,000 events/s through batches on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.served import Gunicorn  # noqa: E402
from runs.client import HttpStorage  # noqa: E402
from runs.contract import SkillRun, SkillRunLog  # noqa: E402
from runs.recorder import Sink  # noqa: E402

WORK = ROOT / "var" / "bench"
PY = str(ROOT / ".venv" / "bin" / "python")


def payload(n: int) -> dict:
    return {
        "tool": "web_search",
        "call_id": f"call-{n:08d}",
        "arguments": {
            "query": "retention policy for agent audit trails " + "x" * 80,
            "max_results": 10,
            "filters": {"site": ["docs.example.com", "wiki.example.com"], "recent": True},
        },
    }


def prepare_database(url: str, env: dict[str, str]) -> None:
    parsed = urlparse(url)
    if parsed.scheme.startswith("postgres"):
        name = parsed.path.lstrip("/")
        if not name.startswith("sa_bench_"):
            raise SystemExit("use a database named sa_bench_* (it is dropped and recreated)")
        admin = url.rsplit("/", 1)[0] + "/postgres"
        import psycopg

        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
    else:
        path = Path(parsed.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )


def make_token(env: dict[str, str]) -> str:
    script = (
        "from django.contrib.auth.models import Permission, User\n"
        "user, _ = User.objects.get_or_create(username='bench-executor')\n"
        "user.user_permissions.set(Permission.objects.filter(content_type__app_label='runs'))\n"
    )
    subprocess.run(
        [PY, "manage.py", "shell", "-v", "0", "-c", script], cwd=ROOT, env=env, check=True
    )
    out = subprocess.run(
        [PY, "manage.py", "create_api_token", "bench-executor"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids) -> float:
    """user + system CPU time of these processes (from /proc), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


class CpuMeter:
    """CPU spent by the gunicorn workers, the PostgreSQL backends and this process.

    The machine may be busy with other work; CPU time per event is what the code costs,
    whatever else runs beside it.
    """

    def __init__(self, server: Gunicorn, database_url: str):
        self.server = server
        self.database_url = database_url

    def _backends(self) -> list[int]:
        if not self.database_url.startswith("postgres"):
            return []
        import psycopg

        name = urlparse(self.database_url).path.lstrip("/")
        with psycopg.connect(self.database_url.rsplit("/", 1)[0] + "/postgres") as connection:
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", [name]
            ).fetchall()
        return [row[0] for row in rows]

    def snapshot(self) -> dict[str, float]:
        return {
            "server": cpu_seconds(self.server.worker_pids()),
            "database": cpu_seconds(self._backends()),
            "client": time.process_time(),
        }


def batch_endpoint(
    storage: HttpStorage,
    clients: int,
    runs: int,
    batches: int,
    size: int,
    tag: str,
    meter: CpuMeter | None = None,
) -> dict:
    """``clients`` threads, each recording ``runs`` runs of ``batches`` batches of ``size``."""
    for c in range(clients):
        for r in range(runs):
            storage.start_run(SkillRun(id=f"{tag}-{c}-{r}", skill_id="bench"))
    errors: list[BaseException] = []

    def work(c: int) -> None:
        try:
            for r in range(runs):
                run_id = f"{tag}-{c}-{r}"
                for b in range(batches):
                    storage.append_logs(
                        [
                            SkillRunLog(
                                run_id=run_id,
                                sequence=b * size + i,
                                event_type="tool_call",
                                payload=payload(i),
                            )
                            for i in range(1, size + 1)
                        ]
                    )
        except BaseException as exc:  # reported below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    before = meter.snapshot() if meter else None
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    events = clients * runs * batches * size
    figure = rate(events, elapsed)
    if meter:
        after = meter.snapshot()
        cpu = {key: after[key] - before[key] for key in after}
        figure["cpu_ms_per_1000_events"] = {
            key: round(value / events * 1e6, 1) for key, value in cpu.items()
        }
        # What two otherwise idle cores would sustain at this CPU cost per event.
        figure["events_per_s_on_2_idle_cores"] = round(2 * events / sum(cpu.values()))
    return figure


def rate(events: int, elapsed: float) -> dict:
    return {"events": events, "seconds": round(elapsed, 3), "events_per_s": round(events / elapsed)}


def recorder(storage, events: int, tag: str, meter: CpuMeter | None = None) -> dict:
    """One run recorded through a Sink: tool calls and results, then close."""
    sink = Sink(storage)
    before = meter.snapshot() if meter else None
    started = time.perf_counter()
    run = sink.start_run(skill_id="bench", run_id=f"{tag}-recorder")
    for n in range(events // 2):
        run.tool_call("web_search", payload(n)["arguments"], call_id=f"c{n}")
        run.tool_result("web_search", {"hits": 10}, call_id=f"c{n}")
    run.close("ok", output="done")
    elapsed = time.perf_counter() - started
    if sink.failures or run.failures:
        raise RuntimeError(f"the recorder counted {sink.failures + run.failures} failures")
    figure = rate(events, elapsed)
    if meter:
        after = meter.snapshot()
        figure["cpu_ms_per_event"] = {
            key: round((after[key] - before[key]) / events * 1000, 2) for key in after
        }
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=f"sqlite:///{WORK / 'api_ingest.sqlite3'}")
    parser.add_argument("--batch", type=int, default=1000, help="events per batch (1000)")
    parser.add_argument("--batches", type=int, default=10, help="batches per run (10)")
    parser.add_argument("--runs", type=int, default=5, help="runs per client (5)")
    parser.add_argument("--http-events", type=int, default=2000, help="recorder over HTTP")
    parser.add_argument("--local-events", type=int, default=20000, help="recorder in process")
    args = parser.parse_args()

    env = dict(
        os.environ,
        DATABASE_URL=args.database_url,
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        DEBUG="0",
        SKILLAUDIT_DATA_DIR=str(WORK / "api_ingest_data"),
        GUNICORN_ACCESSLOG="/dev/null",
    )
    WORK.mkdir(parents=True, exist_ok=True)
    prepare_database(args.database_url, env)
    token = make_token(env)
    vendor = "postgresql" if args.database_url.startswith("postgres") else "sqlite"
    figures: dict[str, dict] = {}
    with Gunicorn(env, WORK / "api_ingest_gunicorn.log", workers=2) as server:
        storage = HttpStorage(f"http://127.0.0.1:{server.port}", token, timeout=120)
        storage.initialize()
        meter = CpuMeter(server, args.database_url)
        # warm-up: connections, imports, the token lookup path
        batch_endpoint(storage, 1, 1, 1, 100, "warm")
        for clients in (1, 2):
            figures[f"batch endpoint, {args.batch}/request, {clients} client(s)"] = batch_endpoint(
                storage, clients, args.runs, args.batches, args.batch, f"b{clients}", meter
            )
        figures["recorder over HttpStorage (1 request per event)"] = recorder(
            storage, args.http_events, "http", meter
        )

    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    import django

    django.setup()
    from runs.storage import DjangoStorage

    figures["recorder over DjangoStorage, in process"] = recorder(
        DjangoStorage(), args.local_events, "local"
    )

    result = {
        "script": "bench/api_ingest.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "database": vendor,
        # Other work on the machine slows every figure: the load says how busy it was.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "payload_bytes": len(json.dumps(payload(0))),
        "figures": figures,
    }
    from bench import report

    out = report.save(f"api-ingest-{vendor}", result)
    print(
        f"{vendor}: events recorded per second ({result['payload_bytes']}-byte payloads, "
        f"load average {result['load_average_1m']})"
    )
    print("| path | events | seconds | events/s |")
    print("|---|--:|--:|--:|")
    for name, figure in figures.items():
        events, seconds, rate = figure["events"], figure["seconds"], figure["events_per_s"]
        print(f"| {name} | {events:,} | {seconds} | {rate:,} |")
    for name, figure in figures.items():
        if "cpu_ms_per_1000_events" in figure:
            cpu = ", ".join(f"{k} {v} ms" for k, v in figure["cpu_ms_per_1000_events"].items())
            idle = figure["events_per_s_on_2_idle_cores"]
            print(f"{name}: CPU per 1,000 events: {cpu} -> {idle:,} events/s on 2 idle cores")
        if "cpu_ms_per_event" in figure:
            cpu = ", ".join(f"{k} {v} ms" for k, v in figure["cpu_ms_per_event"].items())
            print(f"{name}: CPU per event: {cpu}")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
