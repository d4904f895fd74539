#!/usr/bin/env python
"""The run page and the call tree, second version: their times on a generated
history (bench/generate.py), in process.

    .venv/bin/python bench/trace_pages.py --database-url postgres://postgres@127.0.0.1:5432/sa_bench_100k

Times, with Django's test Client (DEBUG off, a logged-in superuser), the run page of the
fixtures with 1,000 and 10,000 events (the first view, the last page, errors only, a type
filter), the live endpoint a running page polls, and the tree of 1,000 runs. For each: the
median and p95 (nearest rank) of ``--repeat`` calls after two warm-ups, this thread's CPU
time, the database's own time for the page's statements (EXPLAIN ANALYZE on PostgreSQL) and
the number of queries. The verdict is on the estimate (CPU p95 + database time), which the
machine's other load does not inflate; the wall-clock figures are shown beside it.

Targets (at 1M runs on PostgreSQL): run page with 1,000 events p95 <= 60 ms,
first view of 10,000 events <= 100 ms, tree of 1,000 runs <= 150 ms. The pages read a run's
events by (run_id, sequence) and its tree by the children index, so what matters is the
events per run and the tree's size, not the number of runs; the data set is stated with the
figures.

Results go to bench/results/trace-pages-<database>-<runs>.json (rendered into RESULTS.md by
bench/report.py) and are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORK = ROOT / "var" / "bench"

# (name, path, target p95 ms or None)
CASES = [
    ("run page, 1,000 events", "/runs/bench-events-1000/", 60),
    ("run page, 10,000 events: first view", "/runs/bench-events-10000/", 100),
    ("run page, 10,000 events: last page", "/runs/bench-events-10000/?last=1", None),
    ("run page, 10,000 events: errors only", "/runs/bench-events-10000/?errors=1", None),
    ("run page, 10,000 events: tool calls", "/runs/bench-events-10000/?type=tool_call", None),
    (
        "live poll, 10,000 events: 100 new",
        "/runs/bench-events-10000/live/?after=9900&append=1",
        None,
    ),
    ("tree page, 1,000 runs", "/runs/bench-tree-1000-root/tree/", 150),
]


def django_setup(database_url: str) -> None:
    from bench.served import bench_env, collect_static

    env = bench_env(database_url, os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50), WORK)
    env.update(STATEMENT_TIMEOUT_MS="0")
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    collect_static(env)
    import django

    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or DATABASE_URL) is required")
    django_setup(args.database_url)

    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from bench import report
    from bench.measure import captured_queries, explain_ms, is_read, sample, summary
    from runs.models import SkillRun, SkillRunLog

    user, _ = User.objects.get_or_create(
        username="bench-trace", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    figures = {}
    for name, path, target in CASES:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        cpu: list[float] = []
        times = sample(lambda path=path: client.get(path), args.repeat, cpu=cpu)
        row = summary(times, cpu)
        statements = captured_queries(lambda path=path: client.get(path))
        row["queries"] = len(statements)
        row["bytes"] = len(response.content)
        # Server time without the machine's other load: this thread's CPU time plus the
        # database's own execution time of the page's statements (EXPLAIN ANALYZE, the
        # median of five), as bench/report.py estimates run.py's pages.
        reads = [sql for sql in statements if is_read(sql) and "django_session" not in sql]
        db = [sum(explain_ms(sql) or 0.0 for sql in reads) for _ in range(5)]
        row["db_ms"] = round(statistics.median(db), 3)
        row["estimate_p95_ms"] = round(row["cpu_p95_ms"] + row["db_ms"], 3)
        if target is not None:
            row["target_p95_ms"] = target
            row["verdict"] = "pass" if row["estimate_p95_ms"] <= target else "FAIL"
        figures[name] = row
        print(f"{name}: {json.dumps(row)}", flush=True)
    runs, events = SkillRun.objects.count(), SkillRunLog.objects.count()
    load = [round(x, 2) for x in os.getloadavg()]
    result = {
        "script": "bench/trace_pages.py",
        "command": " ".join(["bench/trace_pages.py", *sys.argv[1:]]),
        # other_section() shows the script, this and the date: the size and the load go here.
        "database": (
            f"{connection.vendor} ({connection.settings_dict['NAME']}), {runs:,} runs / "
            f"{events:,} events, {platform.machine()} {os.cpu_count()} CPUs, "
            f"load average {load[0]}"
        ),
        "runs": runs,
        "events": events,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": load,
        "figures": figures,
    }
    path = report.save(f"trace-pages-{connection.vendor}-{result['runs']}", result)
    print(f"written to {path.relative_to(ROOT)}")
    began = time.perf_counter()
    report.write()
    print(f"RESULTS.md rewritten in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
