#!/usr/bin/env python
"""Growth, paired: the same pages on a smaller and a bigger database, timed in turns.

    .venv/bin/python bench/growth.py \\
        --small postgres://postgres@127.0.0.1:5432/sa_bench_100k \\
        --big postgres://postgres@127.0.0.1:5432/sa_bench_1m

Two separate bench/run.py runs compare pages measured minutes apart; on a shared 2-core
machine a 10 ms page moves by a third between runs, which is the whole 1.5x margin. Here
two child processes, one per database, each with Django's test Client logged in, take
turns: for every page, round after round, one request on each (the order alternates), so
both see the same machine. Each child times its own request (wall clock and thread CPU),
as bench/run.py does. The ratio of the medians is the growth; results go to
results/growth-<vendor>.json and RESULTS.md uses them for the growth target.

The pages are bench/run.py's list, deep and pages sections, by name; a page whose case
returns different work on the two databases (a "rare" value with fewer than a page of
runs on the smaller one) is marked, since its growth is more output, not a slower index.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = ROOT / "var" / "bench"
DEEP_OFFSET = 10_000


def child(database_url: str) -> None:
    """Serve timed requests: read a page name per line, answer one JSON line."""
    from bench.served import bench_env

    site_dir = WORK / "site"
    site_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(bench_env(database_url, secrets.token_urlsafe(40), site_dir))
    os.environ["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.cases import Dataset, deep_cursor, list_cases, page_cases, url

    user, _ = get_user_model().objects.get_or_create(username="bench")
    user.is_staff = user.is_superuser = user.is_active = True
    user.save()
    client = Client()
    client.force_login(user)
    data = Dataset.read()
    pages = {f"list: {name}": url("/runs/", q) for name, q in list_cases(data)}
    pages["deep: first page"] = "/runs/"
    cursor = deep_cursor(DEEP_OFFSET)
    if cursor is not None:
        pages[f"deep: after {DEEP_OFFSET:,} rows (keyset)"] = url("/runs/", {"after": cursor})
    pages |= {f"pages: {name}": path for name, path in page_cases()}
    print(json.dumps(sorted(pages)), flush=True)
    for line in sys.stdin:
        name = line.strip()
        path = pages[name]
        cpu_began, began = time.thread_time(), time.perf_counter()
        response = client.get(path)
        wall = (time.perf_counter() - began) * 1000
        cpu = (time.thread_time() - cpu_began) * 1000
        if response.status_code != 200:
            raise SystemExit(f"GET {path} answered {response.status_code}")
        with CaptureQueriesContext(connection) as queries:
            client.get(path)
        answer = {
            "ms": wall,
            "cpu_ms": cpu,
            "bytes": len(response.content),
            "queries": len(queries),
        }
        print(json.dumps(answer), flush=True)


class Child:
    """A child process timing pages; ``root`` is the checkout whose code it runs (another
    commit's worktree for bench/versions.py)."""

    def __init__(self, database_url: str, root: Path = ROOT):
        self.process = subprocess.Popen(
            [sys.executable, str(root / "bench" / "growth.py"), "--child", database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        self.pages = set(json.loads(self.process.stdout.readline()))

    def time(self, name: str) -> dict:
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the child timing {name!r} stopped")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", help="the smaller database (e.g. 100k runs)")
    parser.add_argument("--big", help="the bigger database (e.g. 1M runs)")
    parser.add_argument("--repeat", type=int, default=30, help="rounds per page")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--only", help="time only the pages whose name contains this (no report)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    if not (args.small and args.big):
        parser.error("--small and --big are required")
    import dj_database_url

    vendor = dj_database_url.parse(args.small)["ENGINE"].rsplit(".", 1)[-1]
    vendor = "postgresql" if vendor == "postgresql" else "sqlite"
    from bench.served import bench_env, collect_static

    site_dir = WORK / "site"
    site_dir.mkdir(parents=True, exist_ok=True)
    collect_static(bench_env(args.small, secrets.token_urlsafe(40), site_dir))
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    small, big = Child(args.small), Child(args.big)
    rows = []
    try:
        for name in sorted(small.pages & big.pages):
            if args.only and args.only not in name:
                continue
            samples: dict[str, list[dict]] = {"small": [], "big": []}
            for _ in range(2):  # warm-up
                small.time(name), big.time(name)
            for round_ in range(args.repeat):
                order = [("small", small), ("big", big)]
                for label, side in order if round_ % 2 == 0 else order[::-1]:
                    samples[label].append(side.time(name))
            row = {"name": name}
            for label in ("small", "big"):
                wall = statistics.median(s["ms"] for s in samples[label])
                row[f"{label}_median_ms"] = round(wall, 3)
                row[f"{label}_cpu_median_ms"] = round(
                    statistics.median(s["cpu_ms"] for s in samples[label]), 3
                )
                row[f"{label}_bytes"] = samples[label][-1]["bytes"]
                row[f"{label}_queries"] = samples[label][-1]["queries"]
            row["ratio"] = round(row["big_median_ms"] / row["small_median_ms"], 3)
            row["cpu_ratio"] = round(row["big_cpu_median_ms"] / row["small_cpu_median_ms"], 3)
            # Not the same work: fewer rows (or a skipped count) on the smaller database.
            row["same_work"] = (
                row["small_queries"] == row["big_queries"]
                and abs(row["small_bytes"] - row["big_bytes"]) <= 0.2 * row["big_bytes"]
            )
            rows.append(row)
            print(
                f"  {name:45} {row['small_median_ms']:7.2f} -> {row['big_median_ms']:7.2f} ms "
                f"= {row['ratio']:.2f}x (CPU {row['cpu_ratio']:.2f}x)"
                f"{'' if row['same_work'] else '  (different work)'}",
                flush=True,
            )
    finally:
        small.close()
        big.close()
    record = {
        "vendor": vendor,
        "small": args.small.rsplit("/", 1)[-1],
        "big": args.big.rsplit("/", 1)[-1],
        "repeat": args.repeat,
        "date": started.isoformat(timespec="seconds"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    if args.only:  # a partial run is not a result
        return
    from bench import report

    path = report.save(f"growth-{vendor}", record)
    print(f"wrote {path.relative_to(ROOT)}")
    if not args.no_report:
        report.write()


if __name__ == "__main__":
    main()
