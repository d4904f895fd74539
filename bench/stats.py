#!/usr/bin/env python
"""/stats/ and GET /api/stats/ on existing data sets: p50/p95 per read and the growth from a
small data set to a large one.

    .venv/bin/python bench/stats.py \\
        postgres://postgres@127.0.0.1:5432/sa_bench_100k \\
        postgres://postgres@127.0.0.1:5432/sa_bench_1m

Each database must already hold a history and be migrated (0012: the stats buckets). Nothing
is written to it: the reads run in process, as an active superuser that is never saved (no
login row), through selectors.stats_series (what the /stats/ view reads), the /stats/ view
itself when it is routed, and GET /api/stats/ (DRF's test client, no network). Windows end
at the newest run's start, so a data set generated hours ago reads as full as a fresh one.
`--ingest-overhead 10 URL` instead measures the triggers' cost on ingest (rolled back).
Per read: --repeat timed calls after two warm-ups; wall-clock p50/p95 and the CPU time of
this process and of the database backend (PostgreSQL: /proc/<backend pid>/stat, the same
machine) per call. Results: bench/results/stats-<database>.json, and a table to paste into
bench/RESULTS.md. Targets (issue 18): /stats/ for 30 days <= 50 ms p95 at 1M runs on
PostgreSQL; p95 growth from 100k to 1M <= 1.2x.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_P95_MS = 50.0
TARGET_GROWTH = 1.2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu_ms(connection) -> float:
    """CPU time (user + system) of this connection's PostgreSQL backend so far, in ms."""
    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLOCK_TICKS


def measure(call, repeat: int, connection) -> dict:
    from bench.measure import percentile

    for _ in range(2):
        call()
    wall, cpu, db_cpu = [], [], []
    for _ in range(repeat):
        db_before = backend_cpu_ms(connection)
        cpu_before = time.process_time()
        began = time.perf_counter()
        call()
        wall.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - cpu_before) * 1000)
        db_cpu.append(backend_cpu_ms(connection) - db_before)
    return {
        "n": repeat,
        "p50_ms": round(percentile(wall, 0.5), 2),
        "p95_ms": round(percentile(wall, 0.95), 2),
        "cpu_p50_ms": round(percentile(cpu, 0.5), 2),
        "db_cpu_mean_ms": round(sum(db_cpu) / repeat, 2),
    }


def run_one(url: str, repeat: int) -> dict:
    os.environ.update(
        DATABASE_URL=url,
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        DEBUG="0",
        SKILLAUDIT_DATA_DIR=tempfile.mkdtemp(prefix="sa-stats-bench-"),
        DJANGO_SETTINGS_MODULE="skillaudit_site.settings",
        LOG_LEVEL="ERROR",
    )
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import RequestFactory
    from django.test.utils import setup_test_environment
    from django.urls import Resolver404, resolve
    from rest_framework.test import APIClient

    from runs import filters, selectors
    from runs.models import SkillRun

    setup_test_environment()
    # The page's template asks for the stylesheet by name; no collected manifest here.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    newest = SkillRun.objects.newest_first().values_list("started_at", flat=True).first()
    if newest is None:
        raise SystemExit(f"{url}: no runs")
    runs = SkillRun.objects.count()
    until = newest + timedelta(seconds=1)
    reads = {
        "30 days by day": {"since": until - timedelta(days=30), "bucket": "day"},
        "7 days by hour": {"since": until - timedelta(days=7), "bucket": "hour"},
        "24 h by hour": {"since": until - timedelta(hours=24), "bucket": "hour"},
    }
    caller = (
        SkillRun.objects.filter(started_at__gte=until - timedelta(days=30), parent_run_id="")
        .values_list("caller_id", flat=True)
        .first()
    )
    reads["30 days by day, caller (from the runs)"] = {
        "since": until - timedelta(days=30),
        "bucket": "day",
        "caller": caller,
    }
    viewer = User(username="bench-viewer", is_superuser=True, is_active=True)
    api = APIClient()
    api.force_authenticate(viewer)
    try:
        page_view = resolve("/stats/").func
    except Resolver404:
        page_view = None
    factory = RequestFactory()
    from runs.web import stats_views

    shown = getattr(stats_views, "SKILLS_SHOWN", None)
    page_read = {} if shown is None else {"skill_limit": shown}
    figures: dict = {"database": urlparse(url).path.lstrip("/"), "runs": runs, "reads": {}}
    for name, window in reads.items():
        params = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in window.items()}
        params["until"] = until.isoformat()
        parsed = filters.StatsParameters(params)
        assert parsed.is_valid(), parsed.error_messages
        query = parsed.query()
        # what the /stats/ view reads (its skill_limit, when it has one)
        read = functools.partial(selectors.stats_series, query, **page_read)
        row = {"selector": measure(read, repeat, connection)}
        path = "/api/stats/?" + urlencode(params)

        def api_get(path=path):
            response = api.get(path)
            assert response.status_code == 200, (path, response.status_code)

        row["GET /api/stats/"] = measure(api_get, repeat, connection)
        if page_view is not None:

            def page_get(params=params):
                request = factory.get("/stats/", params)
                request.user = viewer
                request.csp_nonce = "bench"
                response = page_view(request)
                assert response.status_code == 200, response.status_code

            try:
                row["GET /stats/"] = measure(page_get, repeat, connection)
            except Exception as exc:  # noqa: BLE001 (the page is another module's: reported)
                row["GET /stats/"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        figures["reads"][name] = row
        print(f"{figures['database']} ({runs:,} runs) {name}: {json.dumps(row)}", flush=True)
    return figures


def ingest_overhead(url: str, turns: int) -> dict:
    """The stats triggers' cost on ingest: the same writes (runs started, 1,000-event
    batches with a third of them steps naming a model, runs finished) with the triggers and
    without them (dropped inside the transaction), in alternating turns, each rolled back,
    so the database is left as it was. PostgreSQL only (DDL in a transaction)."""
    os.environ.update(
        DATABASE_URL=url,
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        DEBUG="0",
        SKILLAUDIT_DATA_DIR=tempfile.mkdtemp(prefix="sa-stats-bench-"),
        DJANGO_SETTINGS_MODULE="skillaudit_site.settings",
        LOG_LEVEL="ERROR",
    )
    import django

    django.setup()
    from datetime import UTC, datetime

    from django.db import connection, transaction

    from runs.managers import StatsSql
    from runs.models import SkillRun, SkillRunLog

    class Rollback(Exception):
        pass

    now = datetime.now(UTC)
    runs_per_turn, events_per_run = 20, 500

    def write(turn: int) -> None:
        ids = [f"bench-ingest-{turn}-{i}" for i in range(runs_per_turn)]
        SkillRun.objects.bulk_create(
            SkillRun(id=i, skill_id=f"bench-skill-{n % 5}", started_at=now, status="running")
            for n, i in enumerate(ids)
        )
        logs = []
        for run_id in ids:
            for seq in range(1, events_per_run + 1):
                step = seq % 3 == 0
                payload = (
                    {"model": "gpt-4o", "usage": {"input_tokens": 900, "output_tokens": 80}}
                    if step
                    else {"tool": "search", "arguments": {"q": "x" * 200}}
                )
                logs.append(
                    SkillRunLog(
                        run_id=run_id,
                        sequence=seq,
                        event_type="step" if step else "tool_call",
                        payload=payload,
                        created_at=now,
                    )
                )
        for start in range(0, len(logs), 1000):
            SkillRunLog.objects.bulk_create(logs[start : start + 1000])
        for run_id in ids:
            SkillRun.objects.filter(pk=run_id).update(status="ok", runtime_seconds=2.5)

    samples: dict[str, list[tuple[float, float, float]]] = {"with": [], "without": []}
    sql = StatsSql(connection.vendor)
    for turn in range(turns):
        for mode in ("with", "without") if turn % 2 == 0 else ("without", "with"):
            try:
                with transaction.atomic():
                    if mode == "without":
                        with connection.cursor() as cursor:
                            for statement in sql.drop():
                                cursor.execute(statement)
                    db_before = backend_cpu_ms(connection)
                    cpu_before = time.process_time()
                    began = time.perf_counter()
                    write(turn)
                    samples[mode].append(
                        (
                            (time.perf_counter() - began) * 1000,
                            (time.process_time() - cpu_before) * 1000,
                            backend_cpu_ms(connection) - db_before,
                        )
                    )
                    raise Rollback
            except Rollback:
                pass
    events = runs_per_turn * events_per_run
    out = {"events_per_turn": events, "runs_per_turn": runs_per_turn, "turns": turns}
    for mode, rows in samples.items():
        rows.sort()
        wall, cpu, db = (sorted(x[k] for x in rows) for k in range(3))
        out[mode] = {
            "wall_median_ms": round(wall[len(wall) // 2], 1),
            "process_cpu_median_ms": round(cpu[len(cpu) // 2], 1),
            "db_cpu_median_ms": round(db[len(db) // 2], 1),
        }
    out["db_cpu_ratio"] = round(
        out["with"]["db_cpu_median_ms"] / out["without"]["db_cpu_median_ms"], 3
    )
    total = lambda m: out[m]["process_cpu_median_ms"] + out[m]["db_cpu_median_ms"]  # noqa: E731
    out["total_cpu_ratio"] = round(total("with") / total("without"), 3)
    out["load_average"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+", help="database URLs, smallest first")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--ingest-overhead",
        type=int,
        metavar="TURNS",
        help="instead: the triggers' cost on ingest in the first database (rolled back)",
    )
    args = parser.parse_args()
    if args.ingest_overhead:
        print(json.dumps(ingest_overhead(args.urls[0], args.ingest_overhead), indent=2))
        return
    if args.one:
        figures = run_one(args.urls[0], args.repeat)
        print("FIGURES " + json.dumps(figures))
        return
    results = []
    for url in args.urls:
        # One process per database: Django is configured once per process.
        import subprocess

        command = [sys.executable, __file__, url, "--one", "--repeat", str(args.repeat)]
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        sys.stderr.write(out.stderr[-3000:])
        lines = [line for line in out.stdout.splitlines() if line.startswith("FIGURES ")]
        if not lines:
            raise SystemExit(f"{url}: failed\n{out.stdout[-2000:]}")
        figures = json.loads(lines[-1][len("FIGURES ") :])
        figures["load_average"] = os.getloadavg()
        results.append(figures)
        if not args.no_save:
            target = ROOT / "bench" / "results" / f"stats-{figures['database']}.json"
            target.write_text(json.dumps(figures, indent=2) + "\n")
    print("\n| database | runs | read | what | p50 ms | p95 ms | CPU p50 ms | DB CPU ms |")
    print("|---|---|---|---|---|---|---|---|")
    for figures in results:
        for name, row in figures["reads"].items():
            for what, m in row.items():
                if "error" in m:
                    print(
                        f"| {figures['database']} | {figures['runs']:,} | {name} | {what} | "
                        f"{m['error']} | | | |"
                    )
                    continue
                print(
                    f"| {figures['database']} | {figures['runs']:,} | {name} | {what} | "
                    f"{m['p50_ms']} | {m['p95_ms']} | {m['cpu_p50_ms']} | {m['db_cpu_mean_ms']} |"
                )
    if len(results) >= 2:
        small, large = results[0], results[-1]
        print(
            f"\ngrowth {small['runs']:,} -> {large['runs']:,} runs (p95 ratio; target "
            f"<= {TARGET_GROWTH}):"
        )
        for name, row in large["reads"].items():
            for what, m in row.items():
                base = small["reads"].get(name, {}).get(what, {})
                if "p95_ms" in m and base.get("p95_ms"):
                    print(f"  {name} / {what}: {m['p95_ms'] / base['p95_ms']:.2f}x")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
