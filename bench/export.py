#!/usr/bin/env python
"""Export throughput and memory: runs per second, and a worker's memory at any size.

    .venv/bin/python bench/generate.py --runs 1000000 --events 3000000 --replace \
        --database-url postgres://postgres@127.0.0.1:5432/sa_i19_bench_1m
    .venv/bin/python bench/export.py --database-url postgres://postgres@127.0.0.1:5432/sa_i19_bench_1m

Every run of the database is exported (nested and dry runs included), and the bytes are
counted and dropped:

- in process, each scenario in a child process of its own so that its peak memory
  (``ru_maxrss``) belongs to that export alone: JSON Lines without events, CSV, and JSON Lines
  with events for the newest share of the runs; the peak is also read after the first tenth
  of the runs, so memory that grew with the size would show;
- over HTTP: ``GET /api/runs/export/`` from gunicorn (one sync worker, GUNICORN_TIMEOUT
  raised so the worker may stream for minutes), the worker's peak RSS (VmHWM) read after an
  export of a tenth of the runs and again after the whole table.

Besides wall-clock time each row has the CPU seconds of the exporting process and of its
PostgreSQL backend: on a shared machine, runs per CPU second is the steadier figure. Results
go to bench/results/export-<database>-<runs>.json and into RESULTS.md.

Target: at least 20,000 runs/s without events on PostgreSQL at 1M runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = str(ROOT / ".venv" / "bin" / "python")
TICKS = os.sysconf("SC_CLK_TCK")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- in process (child) --------------------------------------------------------------------


def child(scenario: str, share: float) -> dict:
    import django

    django.setup()
    from django.db import connection

    from runs.models import SkillRun
    from runs.services import export

    everything = SkillRun.objects.all()
    total = everything.count()
    if share < 1:
        # The newest share of the runs: everything started at or after the cut.
        cut = everything.newest_first().values_list("started_at", flat=True)[int(total * share)]
        everything = everything.filter(started_at__gte=cut)
        total = everything.count()
    connection.ensure_connection()
    backend = connection.connection.info.backend_pid if connection.vendor == "postgresql" else 0
    backend_began = proc_cpu_s(backend) if backend else 0.0
    runs_done = 0
    tenth = {"peak_mb": None}

    def on_runs(n: int) -> None:
        nonlocal runs_done
        runs_done += n
        if tenth["peak_mb"] is None and runs_done >= total / 10:
            tenth["peak_mb"] = round(peak_mb(), 1)

    if scenario == "csv":
        chunks = export.csv_chunks(everything, on_runs=on_runs)
    else:
        chunks = export.jsonl_chunks(everything, scenario == "jsonl+events", on_runs=on_runs)
    cpu_began = own_cpu_s()
    began = time.perf_counter()
    size = 0
    for chunk in chunks:
        size += len(chunk)
    seconds = time.perf_counter() - began
    cpu = own_cpu_s() - cpu_began
    backend_cpu = (proc_cpu_s(backend) - backend_began) if backend else 0.0
    events = None
    if scenario == "jsonl+events":
        from runs.models import SkillRunLog

        events = SkillRunLog.objects.filter(run__in=everything.values("pk")).count()
    return {
        "scenario": scenario,
        "runs": runs_done,
        "events": events,
        "seconds": round(seconds, 2),
        "runs_per_s": round(runs_done / seconds),
        "mb": round(size / 2**20, 1),
        "mb_per_s": round(size / 2**20 / seconds, 1),
        "process_cpu_s": round(cpu, 2),
        "backend_cpu_s": round(backend_cpu, 2),
        "runs_per_cpu_s": round(runs_done / max(cpu + backend_cpu, 1e-6)),
        "peak_rss_mb_after_a_tenth": tenth["peak_mb"],
        "peak_rss_mb": round(peak_mb(), 1),
    }


def in_child(env: dict, scenario: str, share: float) -> dict:
    out = subprocess.run(
        [PY, __file__, "--child", scenario, "--share", str(share)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- over HTTP -----------------------------------------------------------------------------


def make_token(env: dict) -> str:
    script = (
        "from django.contrib.auth.models import Permission, User\n"
        "user, _ = User.objects.get_or_create(username='bench-exporter')\n"
        "user.user_permissions.set(Permission.objects.filter(codename='view_skillrun'))\n"
    )
    subprocess.run(
        [PY, "manage.py", "shell", "-v", "0", "-c", script], cwd=ROOT, env=env, check=True
    )
    out = subprocess.run(
        [PY, "manage.py", "create_api_token", "--rotate", "bench-exporter"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def over_http(env: dict, since: str) -> list[dict]:
    from bench.served import Gunicorn

    token = make_token(env)
    log = ROOT / "var" / "bench" / "export-gunicorn.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    server_env = dict(env, GUNICORN_TIMEOUT="900", GUNICORN_ACCESSLOG="/dev/null")
    with Gunicorn(server_env, log, workers=1) as server:
        (worker,) = server.worker_pids()
        for label, query in (
            ("a tenth of the runs", f"&since={since}"),
            ("every run", ""),
        ):
            url = (
                f"http://127.0.0.1:{server.port}/api/runs/export/?format=jsonl"
                f"&include_nested=1&include_dry_run=1{query}"
            )
            request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
            worker_began = proc_cpu_s(worker)
            began = time.perf_counter()
            size = lines = 0
            with urllib.request.urlopen(request, timeout=900) as response:
                while True:
                    block = response.read(1 << 20)
                    if not block:
                        break
                    size += len(block)
                    lines += block.count(b"\n")
            seconds = time.perf_counter() - began
            rows.append(
                {
                    "scenario": f"HTTP, jsonl, {label}",
                    "runs": lines,
                    "seconds": round(seconds, 2),
                    "runs_per_s": round(lines / seconds),
                    "mb": round(size / 2**20, 1),
                    "worker_cpu_s": round(proc_cpu_s(worker) - worker_began, 2),
                    "worker_peak_rss_mb": round(vm_hwm_mb(worker), 1),
                }
            )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument(
        "--events-share",
        type=float,
        default=0.1,
        help="the newest share of the runs exported with events (default 0.1)",
    )
    parser.add_argument("--no-http", action="store_true", help="skip the gunicorn scenario")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--share", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skillaudit_site.settings")
        print(json.dumps(child(args.child, args.share)))
        return
    if not args.database_url:
        parser.error("--database-url (or DATABASE_URL) is required")
    env = dict(
        os.environ,
        DATABASE_URL=args.database_url,
        DEBUG="0",
        DJANGO_SETTINGS_MODULE="skillaudit_site.settings",
    )
    env.setdefault("SECRET_KEY", "bench-export-" + "x" * 50)
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for scenario, share in (("jsonl", 1.0), ("csv", 1.0), ("jsonl+events", args.events_share)):
        row = in_child(env, scenario, share)
        row["scenario"] = {
            "jsonl": "in process, jsonl, every run",
            "csv": "in process, csv, every run",
            "jsonl+events": f"in process, jsonl with events, newest {share:.0%} of the runs",
        }[scenario]
        row["load_1m_after"] = round(os.getloadavg()[0], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    total = rows[0]["runs"]
    vendor = "postgresql" if args.database_url.startswith("postgres") else "sqlite"
    if not args.no_http:
        cut = (
            subprocess.run(
                [
                    PY,
                    "manage.py",
                    "shell",
                    "-v",
                    "0",
                    "-c",
                    "from runs.models import SkillRun\n"
                    f"print(SkillRun.objects.newest_first().values_list('started_at', flat=True)"
                    f"[{total // 10}].isoformat())",
                ],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        for row in over_http(env, cut.replace("+00:00", "Z")):
            row["load_1m_after"] = round(os.getloadavg()[0], 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
    figures = {row.pop("scenario"): row for row in rows}
    record = {
        "script": "bench/export.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "database": f"{vendor}, {total:,} runs",
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "figures": figures,
    }
    from bench import report

    path = report.save(f"export-{vendor}-{total}", record)
    report.write()
    print(f"wrote {path} and bench/RESULTS.md")


if __name__ == "__main__":
    main()
