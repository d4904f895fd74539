#!/usr/bin/env python
"""Time the dashboard, the stock admin and the Storage contract on a generated database.

    .venv/bin/python bench/run.py --database-url postgres://postgres@127.0.0.1:5432/sa_bench_1m

In process (Django's test Client, a logged-in superuser, queries counted) and through
gunicorn over HTTP; median and p95 of each figure, with the raw-SQL floor of the same
statements. Results go to bench/results/<database>-<runs>.json, and bench/RESULTS.md is
rewritten from every results file there (bench/report.py).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "var" / "bench"
SECRET_KEY = "bench-only-secret-key-" + "x" * 40
SECTIONS = ("list", "deep", "count", "pages", "stock", "contract", "http", "memory")
DEEP_OFFSETS = (10_000, 500_000)
MEMORY_REQUESTS = 10_000
# What --read-only may run: in process, reads only (the contract writes runs; http and
# memory serve from gunicorn, whose connections would not see the uncommitted bench user).
READ_ONLY_SECTIONS = ("list", "deep", "count", "pages", "stock")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--quick", action="store_true", help="few repeats, smaller load test")
    parser.add_argument("--repeat", type=int, help="timed calls per figure (default 30)")
    parser.add_argument(
        "--only", help=f"comma-separated sections: {', '.join(SECTIONS)} (default: all)"
    )
    parser.add_argument("--memory-requests", type=int, help="requests in the memory test")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite RESULTS.md")
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="leave the database as it was (a shared reference data set): the bench user and "
        "its session live in one transaction rolled back at the end; in-process read "
        f"sections only ({', '.join(READ_ONLY_SECTIONS)}); no results file, no report",
    )
    args = parser.parse_args(argv)
    if not args.database_url:
        default = WORK / "bench_100k.sqlite3"
        if not default.exists():
            raise SystemExit(
                f"no --database-url and no {default.relative_to(ROOT)}: generate data first, "
                f"e.g. python bench/generate.py --size medium --database-url sqlite:///{default}"
            )
        args.database_url = f"sqlite:///{default}"
        print(f"no --database-url: using {args.database_url}")
    sections = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.read_only:
        if not args.only:
            sections = READ_ONLY_SECTIONS
        writing = set(sections) - set(READ_ONLY_SECTIONS)
        if writing:
            parser.error(f"--read-only cannot run: {', '.join(sorted(writing))}")
    repeat = args.repeat or (5 if args.quick else 30)
    memory_requests = args.memory_requests or (1000 if args.quick else MEMORY_REQUESTS)

    site_dir = WORK / "site"
    site_dir.mkdir(parents=True, exist_ok=True)
    from bench.served import bench_env, collect_static

    env = bench_env(args.database_url, SECRET_KEY, site_dir)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    collect_static(env)
    import django

    django.setup()
    if args.read_only:
        from django.db import transaction

        # Everything this process writes (the bench user, its last_login, its session) is
        # in this one transaction, rolled back: nothing is ever committed. The pages run
        # inside it as they would in autocommit (they open no transaction of their own).
        with transaction.atomic():
            bench = Bench(repeat=repeat, quick=args.quick, memory_requests=memory_requests, env=env)
            results = bench.run(sections)
            transaction.set_rollback(True)
        print(json.dumps(results, default=str))  # the figures, for whoever ran it
        return
    bench = Bench(repeat=repeat, quick=args.quick, memory_requests=memory_requests, env=env)
    results = bench.run(sections)
    from bench import report

    label = results["meta"]["label"]
    previous = RESULTS / f"{label}.json"
    if previous.exists() and args.only:
        # A partial run updates its sections and keeps the others.
        merged = json.loads(previous.read_text())
        merged["meta"] = results["meta"]
        merged["sections"].update(results["sections"])
        results = merged
    path = report.save(label, results)
    print(f"wrote {path.relative_to(ROOT)}")
    if not args.no_report:
        report.write()
        print("wrote bench/RESULTS.md")


class Bench:
    def __init__(self, repeat: int, quick: bool, memory_requests: int, env: dict[str, str]):
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client

        from bench.cases import Dataset

        self.repeat = repeat
        self.quick = quick
        self.memory_requests = memory_requests
        self.env = env
        self.connection = connection
        self.data = Dataset.read()
        self.password = secrets.token_urlsafe(16)
        user, _ = get_user_model().objects.get_or_create(username="bench")
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(self.password)
        user.save()
        self.client = Client()
        self.client.force_login(user)
        self.sections: dict[str, list[dict]] = {}

    # --- shared helpers -------------------------------------------------------------------

    def get_ok(self, url: str):
        response = self.client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        return response

    def time_page(self, name: str, url: str, repeat: int | None = None, **extra) -> dict:
        from bench import measure

        began = time.perf_counter()
        first = self.get_ok(url)
        first_ms = (time.perf_counter() - began) * 1000
        cpu: list[float] = []
        samples = measure.sample(lambda: self.get_ok(url), repeat or self.repeat, cpu=cpu)
        queries = measure.captured_queries(lambda: self.get_ok(url))
        row = {
            "name": name,
            "url": url,
            "first_ms": round(first_ms, 3),
            **measure.summary(samples, cpu),
            "queries": len(queries),
            "bytes": len(first.content),
            **measure.floor(queries),
            **extra,
        }
        print(
            f"  {name:45} median {row['median_ms']:8.2f} ms  p95 {row['p95_ms']:8.2f} ms  "
            f"{row['queries']:3} queries  floor {row['floor_ms'] or 0:7.2f} ms  "
            f"CPU {row.get('cpu_median_ms') or 0:7.2f} ms",
            flush=True,
        )
        return row

    def time_call(self, name: str, call, setup=None, writes: bool = False) -> dict:
        from bench import measure

        cpu: list[float] = []
        samples = measure.sample(call, self.repeat, setup=setup, cpu=cpu)
        if setup is not None:
            setup(0)
        queries = measure.captured_queries(call)
        row = {"name": name, **measure.summary(samples, cpu), "queries": len(queries)}
        if writes:
            row.update(
                floor_ms=None, db_ms=None, slowest_sql=None, slowest_raw_ms=None, slowest_plan=None
            )
        else:
            row.update(measure.floor(queries))
        print(
            f"  {name:45} median {row['median_ms']:8.3f} ms  p95 {row['p95_ms']:8.3f} ms  "
            f"{row['queries']:3} queries  db {row.get('db_ms') or 0:7.3f} ms",
            flush=True,
        )
        return row

    def run(self, sections) -> dict:
        started = datetime.now(UTC)
        load_before = os.getloadavg()
        self.commit_before = commit()
        for section in sections:
            print(f"[{section}]", flush=True)
            self.sections[section] = getattr(self, f"section_{section}")()
        return {
            "meta": self.meta(started, load_before, os.getloadavg()),
            "sections": self.sections,
        }

    # --- in process -----------------------------------------------------------------------

    def section_list(self) -> list[dict]:
        from bench.cases import list_cases, url

        return [self.time_page(name, url("/runs/", q)) for name, q in list_cases(self.data)]

    def section_deep(self) -> list[dict]:
        from bench.cases import deep_cursor, url

        rows = [self.time_page("first page", "/runs/")]
        offsets = DEEP_OFFSETS[:1] if self.quick else DEEP_OFFSETS
        for offset in offsets:
            began = time.perf_counter()
            cursor = deep_cursor(offset)
            offset_ms = (time.perf_counter() - began) * 1000
            if cursor is None:
                print(f"  (the default list has fewer than {offset:,} rows: skipped)")
                continue
            rows.append(
                self.time_page(
                    f"after {offset:,} rows (keyset)",
                    url("/runs/", {"after": cursor}),
                    offset=offset,
                    offset_query_ms=round(offset_ms, 1),
                )
            )
        return rows

    def section_count(self) -> list[dict]:
        from bench.cases import list_cases, matching

        rows = []
        for name, query in list_cases(self.data):
            qs = matching(query)
            rows.append(self.time_call(f"count: {name}", lambda qs=qs: qs.bounded_count(1000)))
        return rows

    def section_pages(self) -> list[dict]:
        from bench.cases import page_cases

        return [self.time_page(name, path) for name, path in page_cases()]

    def section_stock(self) -> list[dict]:
        from django.test.utils import override_settings

        from bench.cases import list_cases, run_filter, stock_expressible, stock_query, url
        from bench.stock_admin import CHANGELIST

        rows = []
        repeat = max(3, min(self.repeat, 10))
        with override_settings(ROOT_URLCONF="bench.stock_admin"):
            for name, query in list_cases(self.data):
                if not stock_expressible(query):
                    continue
                stock = url(CHANGELIST, stock_query(run_filter(query)))
                rows.append(self.time_page(f"stock admin: {name}", stock, repeat=repeat, case=name))
        return rows

    def section_contract(self) -> list[dict]:
        from bench.cases import ContractCalls
        from runs.storage import DjangoStorage

        calls = ContractCalls(DjangoStorage(), self.data)
        calls.cleanup()  # runs left by an interrupted earlier bench
        try:
            return [
                self.time_call(name, call, setup=setup, writes=writes)
                for name, call, setup, writes in calls.calls()
            ]
        finally:
            removed = calls.cleanup()
            print(f"  (removed the {removed} runs the write benchmarks made)")

    # --- over HTTP --------------------------------------------------------------------------

    def _http_urls(self) -> list[tuple[str, str, int]]:
        from bench.cases import (
            deep_cursor,
            list_cases,
            page_cases,
            run_filter,
            stock_expressible,
            stock_query,
            url,
        )
        from bench.stock_admin import CHANGELIST

        stock_repeat = max(3, min(self.repeat, 10))
        cases = list_cases(self.data)
        urls = [(f"list: {name}", url("/runs/", q), self.repeat) for name, q in cases]
        for offset in DEEP_OFFSETS[:1] if self.quick else DEEP_OFFSETS:
            cursor = deep_cursor(offset)
            if cursor:
                urls.append(
                    (
                        f"after {offset:,} rows (keyset)",
                        url("/runs/", {"after": cursor}),
                        self.repeat,
                    )
                )
        urls += [(name, path, self.repeat) for name, path in page_cases()]
        urls += [
            (f"stock admin: {name}", url(CHANGELIST, stock_query(run_filter(q))), stock_repeat)
            for name, q in list_cases(self.data)
            if stock_expressible(q)
        ]
        return urls

    def section_http(self) -> list[dict]:
        from bench import measure
        from bench.served import Client, Gunicorn

        rows = []
        with Gunicorn(self.env, WORK / "gunicorn.log") as server:
            client = Client(server.port)
            client.login("bench", self.password)

            def fetch(path):
                status, body = client.get(path)
                if status != 200:
                    raise RuntimeError(f"GET {path} answered {status} over HTTP")
                return body

            for name, path, repeat in self._http_urls():
                samples = measure.sample(lambda path=path: fetch(path), repeat)
                row = {"name": name, "url": path, **measure.summary(samples)}
                print(
                    f"  {name:45} median {row['median_ms']:8.2f} ms  p95 {row['p95_ms']:8.2f} ms",
                    flush=True,
                )
                rows.append(row)
        return rows

    def section_memory(self) -> list[dict]:
        from bench.served import Client, Gunicorn

        urls = [path for _name, path, _repeat in self._http_urls() if "stock-admin" not in path]
        total = self.memory_requests
        warmup = max(len(urls) * 5, total // 20)
        checkpoints = []
        with Gunicorn(self.env, WORK / "gunicorn.log") as server:
            login = Client(server.port)
            login.login("bench", self.password)
            counter = {"done": 0, "errors": 0}
            lock = threading.Lock()

            def worker(count: int, offset: int):
                client = Client(server.port)
                client.cookies = dict(login.cookies)
                for i in range(count):
                    status, _ = client.get(urls[(offset + i) % len(urls)])
                    with lock:
                        counter["done"] += 1
                        counter["errors"] += status != 200

            def load(count: int):
                threads = [threading.Thread(target=worker, args=(count // 2, k)) for k in range(2)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()

            load(warmup)
            began = time.perf_counter()
            checkpoints.append({"requests": 0, "rss_kb": server.worker_rss_kb()})
            step = total // 5
            for done in range(step, total + 1, step):
                load(step)
                checkpoints.append({"requests": done, "rss_kb": server.worker_rss_kb()})
                print(
                    f"  after {done:,} requests: worker RSS "
                    f"{sorted(v // 1024 for v in checkpoints[-1]['rss_kb'].values())} MB",
                    flush=True,
                )
            elapsed = time.perf_counter() - began
        return [
            {
                "name": "gunicorn worker RSS",
                "warmup_requests": warmup,
                "requests": total,
                "errors": counter["errors"],
                "requests_per_s": round(total / elapsed, 1),
                "checkpoints": checkpoints,
                "urls": len(urls),
            }
        ]

    # --- the machine and the data ------------------------------------------------------------

    def meta(self, started, load_before, load_after) -> dict:
        import django
        from django.db import connection

        from runs.models import SkillRun, SkillRunLog

        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SHOW server_version")
                version = f"PostgreSQL {cursor.fetchone()[0]}"
                cursor.execute("SHOW shared_buffers")
                version += f" (shared_buffers {cursor.fetchone()[0]})"
            else:
                cursor.execute("SELECT sqlite_version()")
                version = f"SQLite {cursor.fetchone()[0]} (WAL)"
        runs = SkillRun.objects.count()
        events = SkillRunLog.objects.count()
        return {
            "label": f"{connection.vendor}-{runs}",
            "vendor": connection.vendor,
            "database": version,
            "database_name": str(connection.settings_dict["NAME"]),
            "runs": runs,
            "events": events,
            "top_level_runs": SkillRun.objects.filter(parent_run_id="").count(),
            "history_latest": self.data.latest.isoformat(),
            "date": started.isoformat(timespec="seconds"),
            "duration_s": round((datetime.now(UTC) - started).total_seconds()),
            "repeat": self.repeat,
            "quick": self.quick,
            "machine": machine(),
            "python": platform.python_version(),
            "commit": self.commit_before
            if self.commit_before == commit()
            else f"{self.commit_before} → {commit()} (code changed during the run)",
            "django": django.get_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        }


def commit() -> str:
    """The checked-out commit, and whether the code measured differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "runs", "templates", "static", "skillaudit_site"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} + uncommitted changes" if dirty else head


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "cpu_reference_ms": cpu_reference_ms(),
    }


def cpu_reference_ms() -> float:
    """Thread CPU time of a fixed pure-Python loop, the fastest of five: how fast this
    machine runs Python, to compare runs on different machines (the same model name has
    run the same pages twice as slowly on another day)."""
    best = float("inf")
    for _ in range(5):
        began = time.thread_time()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.thread_time() - began)
    return round(best * 1000, 1)


if __name__ == "__main__":
    main()
