#!/usr/bin/env python
"""Time the retention purge against Django's plain ``QuerySet.delete()``.

    .venv/bin/python bench/purge.py --source postgres://postgres@127.0.0.1:5432/sa_bench_1m

Every measurement runs on a fresh copy of a generated database (PostgreSQL: ``CREATE
DATABASE ... TEMPLATE <source>``; SQLite: a copy of the file), in a child process, so that
its peak memory (``ru_maxrss``) belongs to that one deletion. Scenarios:

- ``runs.services.purge.purge_started_before(t)`` (what ``manage.py purge_runs`` calls) for the
  oldest 10% and the oldest 50% of the runs: the rate, and whether memory grows with the
  amount deleted;
- both methods on the same oldest N runs (default 50,000): ``QuerySet.delete()`` loads every
  run it deletes, so it is capped at that share of the data;
- the oldest 10% and 50% with ``--workers`` connections at once (default 2: the
  machine's cores), what ``manage.py purge_runs --workers 2`` does;
- optionally the oldest 50% again with a bigger batch (``--big-batch N`` runs per
  transaction), to show what the batch size is worth.

Besides wall-clock time, each row has the CPU time of the child and of its PostgreSQL
backend (read from /proc): on a machine shared with other work, rows per CPU second is
the steadier figure. With several workers the backends come and go with their
connections, so those rows count the whole machine's CPU time instead (/proc/stat).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
COPY_NAME = "sa_bench_purge"


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def backend_cpu_s(connection) -> float:
    """CPU seconds used so far by this connection's PostgreSQL backend (same machine)."""
    if connection.vendor != "postgresql":
        return 0.0
    pid = connection.connection.info.backend_pid
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> float:
    """CPU seconds used so far by everything on the machine (all cores, /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(
    method: str,
    share: float | None,
    runs: int | None,
    batch_size: int | None,
    workers: int,
    cutoff_text: str | None = None,
) -> dict:
    """Runs in the child process: one deletion on the copy, timed, with its peak memory."""
    os.environ.setdefault("SECRET_KEY", "bench-purge")
    os.environ["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    import django

    django.setup()
    from django.db import connection

    from runs.models import SkillRun, SkillRunLog
    from runs.services import purge

    total = SkillRun.objects.count()
    total_logs = SkillRunLog.objects.count()
    if cutoff_text:
        cutoff = datetime.fromisoformat(cutoff_text)
    else:
        doomed = runs if runs is not None else int(total * share)
        # The started_at of the first run to keep: everything older goes.
        cutoff = SkillRun.objects.oldest_first().values_list("started_at", flat=True)[doomed]
    expected_runs, expected_logs = SkillRun.objects.count_started_before(cutoff)
    baseline = rss_kb()
    cpu_began, backend_began = own_cpu_s(), backend_cpu_s(connection)
    machine_began = machine_cpu_s()
    began = time.perf_counter()
    extra = {}
    if method == "month partitions":
        # What purge_started_before does on a partitioned database, its two phases timed
        # apart: whole months dropped, then the runs (and the boundary month) in batches.
        from runs.managers import LogPartitions

        dropped = LogPartitions().drop_months_before(cutoff)
        extra["drop_s"] = round(time.perf_counter() - began, 2)
        extra["months_dropped"] = len(dropped)
        extra["logs_in_dropped_months"] = sum(rows for _name, rows in dropped)
        deleted_runs, deleted_logs = purge.purge_started_before(cutoff, workers=workers)
        deleted_logs += extra["logs_in_dropped_months"]
    elif method == "purge_started_before":
        options = {"batch_size": batch_size} if batch_size else {}
        options["workers"] = workers
        deleted_runs, deleted_logs = purge.purge_started_before(cutoff, **options)
    else:
        _total, per_model = SkillRun.objects.filter(started_at__lt=cutoff).delete()
        deleted_runs = per_model.get("runs.SkillRun", 0)
        deleted_logs = per_model.get("runs.SkillRunLog", 0)
    seconds = time.perf_counter() - began
    cpu = own_cpu_s() - cpu_began
    backend = backend_cpu_s(connection) - backend_began
    machine = machine_cpu_s() - machine_began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if (deleted_runs, deleted_logs) != (expected_runs, expected_logs):
        raise SystemExit(
            f"deleted {deleted_runs} runs / {deleted_logs} logs, expected "
            f"{expected_runs} / {expected_logs}"
        )
    left = SkillRun.objects.started_before(cutoff).exists()
    if left:
        raise SystemExit("runs older than the cutoff are left")
    return extra | {
        "total_runs": total,
        "total_logs": total_logs,
        "runs_deleted": deleted_runs,
        "logs_deleted": deleted_logs,
        "seconds": round(seconds, 2),
        "rows_per_s": round((deleted_runs + deleted_logs) / seconds),
        "process_cpu_s": round(cpu, 2),
        "backend_cpu_s": round(backend, 2),
        "machine_cpu_s": round(machine, 2),
        "workers": workers,
        # Without contention the two would take about their CPU time, one after the other.
        # Several workers: their backends are gone by now; the whole machine's CPU instead.
        "rows_per_cpu_s": round(
            (deleted_runs + deleted_logs) / max(cpu + backend if workers == 1 else machine, 1e-6)
        ),
        "baseline_rss_mb": round(baseline / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_growth_mb": round((peak - baseline) / 1024, 1),
    }


def fresh_copy(source: str) -> str:
    """A new copy of the source database; returns its URL."""
    import dj_database_url

    config = dj_database_url.parse(source)
    if config["ENGINE"].endswith("sqlite3"):
        target = Path(config["NAME"]).with_name("bench_purge.sqlite3")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(config["NAME"], target)
        return f"sqlite:///{target}"
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(source)
    template = info["dbname"]
    info["dbname"] = "postgres"
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(COPY_NAME)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(COPY_NAME), sql.Identifier(template)
            )
        )
    info["dbname"] = COPY_NAME
    return source.rsplit("/", 1)[0] + "/" + COPY_NAME


def drop_copy(url: str) -> None:
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = "postgres"
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(COPY_NAME)))


def scenario(
    source: str,
    method: str,
    share: float | None,
    runs: int | None,
    batch_size: int | None = None,
    workers: int = 1,
    cutoff: str | None = None,
) -> dict:
    began = time.perf_counter()
    url = fresh_copy(source)
    copy_s = time.perf_counter() - began
    env = dict(os.environ, DATABASE_URL=url, SECRET_KEY="bench-purge", DEBUG="0")
    convert = {}
    try:
        if method == "month partitions":
            began = time.perf_counter()
            converted = subprocess.run(
                [sys.executable, "manage.py", "partition_history"],
                env=env, cwd=ROOT, capture_output=True, text=True,
            )  # fmt: skip
            if converted.returncode:
                raise SystemExit(f"partition_history failed:\n{converted.stderr[-3000:]}")
            convert["convert_s"] = round(time.perf_counter() - began, 1)
        args = [sys.executable, __file__, "--child", method]
        if cutoff:
            args += ["--cutoff", cutoff]
        elif share is not None:
            args += ["--share", str(share)]
        else:
            args += ["--runs", str(runs)]
        args += ["--batch-size", str(batch_size)] if batch_size else []
        args += ["--workers", str(workers)]
        done = subprocess.run(args, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
        row = json.loads(done.stdout.strip().splitlines()[-1]) | convert
    finally:
        drop_copy(url)
    if batch_size:
        method = f"{method} (batch_size={batch_size:,})"
    if workers > 1:
        method = f"{method} (workers={workers})"
    row.update(
        method=method,
        share=f"before {cutoff}"
        if cutoff
        else (f"{share:.0%}" if share is not None else f"oldest {runs:,}"),
        copy_s=round(copy_s, 1),
    )
    if "drop_s" in row:
        print(
            f"  month partitions: converted in {row.get('convert_s')} s; "
            f"{row['months_dropped']} month(s) holding {row['logs_in_dropped_months']:,} logs "
            f"dropped in {row['drop_s']} s",
            flush=True,
        )
    print(
        f"  {method:36} {row['share']:>14}: {row['runs_deleted']:,} runs + "
        f"{row['logs_deleted']:,} logs in {row['seconds']:.1f} s = {row['rows_per_s']:,} rows/s, "
        f"peak RSS {row['peak_rss_mb']} MB (+{row['rss_growth_mb']} MB); CPU "
        f"{row['process_cpu_s']} s here + {row['backend_cpu_s']} s in PostgreSQL "
        f"({row['machine_cpu_s']} s machine-wide) = "
        f"{row['rows_per_cpu_s']:,} rows per CPU second",
        flush=True,
    )
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        default=os.environ.get("DATABASE_URL"),
        help="a database made by bench/generate.py (copied, never changed)",
    )
    parser.add_argument(
        "--plain-runs",
        type=int,
        default=50_000,
        help="runs deleted by QuerySet.delete() (and by the purge beside it)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--share", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--big-batch",
        type=int,
        default=0,
        help="also purge the oldest 50%% with this batch size (0: skip)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="workers of the parallel scenarios (PostgreSQL; 1: skip them)",
    )
    parser.add_argument("--cutoff", help=argparse.SUPPRESS)
    parser.add_argument(
        "--month-cutoff",
        help="PostgreSQL: also purge everything before this month start (2026-11-01T00:00:00Z)"
        " twice, as today and on a copy converted to month partitions (partition_history)",
    )
    parser.add_argument(
        "--month-methods",
        default="purge_started_before,month partitions",
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--only-months",
        action="store_true",
        help="with --month-cutoff: run only those two scenarios",
    )
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        print(
            json.dumps(
                child(args.child, args.share, args.runs, args.batch_size, args.workers, args.cutoff)
            )
        )
        return
    if not args.source:
        parser.error("--source (or DATABASE_URL) is required")
    import dj_database_url

    engine = dj_database_url.parse(args.source)["ENGINE"].rsplit(".", 1)[-1]
    started = datetime.now(UTC)
    print(f"purge benchmark on copies of {args.source}", flush=True)
    rows = []
    if args.month_cutoff and engine == "postgresql":
        for method in args.month_methods.split(","):
            rows.append(scenario(args.source, method, None, None, cutoff=args.month_cutoff))
    if not args.only_months:
        rows += [
            scenario(args.source, "purge_started_before", 0.10, None),
            scenario(args.source, "purge_started_before", 0.50, None),
            scenario(args.source, "purge_started_before", None, args.plain_runs),
            scenario(args.source, "QuerySet.delete()", None, args.plain_runs),
        ]
    if args.workers > 1 and engine == "postgresql" and not args.only_months:
        rows.append(scenario(args.source, "purge_started_before", 0.10, None, workers=args.workers))
        rows.append(scenario(args.source, "purge_started_before", 0.50, None, workers=args.workers))
    if args.big_batch and not args.only_months:
        rows.append(scenario(args.source, "purge_started_before", 0.50, None, args.big_batch))
    total_runs = rows[0]["total_runs"]
    record = {
        "engine": engine,
        "source": args.source.rsplit("/", 1)[-1],
        "runs": total_runs,
        "events": rows[0]["total_logs"],
        "date": started.isoformat(timespec="seconds"),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
        "notes": (
            f"`QuerySet.delete()` was capped at the oldest {args.plain_runs:,} runs: it loads "
            "every run it deletes (all columns), so its memory grows with the amount; the purge "
            "deleted the same runs beside it. Each copy: "
            + ", ".join(f"{r['copy_s']} s" for r in rows)
            + " to make."
        ),
    }
    from bench import report

    path = report.save(f"purge-{engine}-{total_runs}", record)
    print(f"wrote {path.relative_to(ROOT)}")
    if not args.no_report:
        report.write()


if __name__ == "__main__":
    main()
