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

A month of N events (``--fill-month N``, PostgreSQL): one calendar month (October 2026) of
N events and N/10 runs, written by SQL straight into a database converted to month
partitions (``partition_history`` on an empty database, then ``INSERT ... SELECT`` from
generate_series with the triggers off, then VACUUM ANALYZE, as autovacuum leaves a
finished month), plus 1% more in November; then ``purge_started_before(2026-11-01)``
on it in place: October's log partition dropped whole, its runs deleted in batches, each
phase timed. bench/generate.py's history spans 90 days and a generated database must be
converted row by row (~2,800 rows/s under load: an hour for 10M events), so the month is
made here. Its payloads are small (few words: the search indexes' cost per event grows
with the text, and a DROP never reads it): ~270 bytes an event with its indexes, half
what generated events take (~540).

    .venv/bin/python bench/purge.py --fill-month 10000000 \
        --source postgres://postgres@127.0.0.1:5432/sa_part_10m   # made, measured, dropped

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

        backend_drop = backend_cpu_s(connection)
        dropped = LogPartitions().drop_months_before(cutoff)
        extra["drop_s"] = round(time.perf_counter() - began, 3)
        extra["drop_backend_cpu_s"] = round(backend_cpu_s(connection) - backend_drop, 3)
        extra["months_dropped"] = len(dropped)
        # The planner's estimate (a dropped month is never read); checked below.
        extra["logs_in_dropped_months"] = sum(rows for _name, rows in dropped)
        deleted_runs, deleted_logs = purge.purge_started_before(cutoff, workers=workers)
        extra["runs_phase_s"] = round(time.perf_counter() - began - extra["drop_s"], 2)
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
    if method == "month partitions":
        # Dropped months report their estimated rows: the exact check is what is left.
        extra["logs_estimate_error"] = deleted_logs - expected_logs
        if SkillRunLog.objects.count() != total_logs - expected_logs:
            raise SystemExit("logs of runs before the cutoff are left, or others went")
        deleted_logs = expected_logs
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


FILL_MONTH = datetime(2026, 10, 1, tzinfo=UTC)
FILL_NEXT = datetime(2026, 11, 1, tzinfo=UTC)
FILL_CHUNK_RUNS = 50_000  # logs written per statement: 500,000 events


def fill_month(url: str, events: int, budget_s: float) -> dict:
    """A new database at ``url``, converted to month partitions while empty, holding one
    month (FILL_MONTH) of ``events`` events, 10 per run, and 1% more runs in the month
    after. Written with session_replication_role = replica (no trigger fires: the derived
    tables are not what a DROP of a month reads), every index in place, then VACUUM
    ANALYZE. Logs go in chunks; past ``budget_s`` seconds the filling stops (the month
    then holds fewer events; the record says how many)."""
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(url)
    name = info["dbname"]
    admin = dict(info, dbname="postgres")
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = dict(os.environ, DATABASE_URL=url, SECRET_KEY="bench-purge", DEBUG="0")
    timings: dict[str, float] = {}
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], env=env, cwd=ROOT, check=True
    )
    now = datetime.now(UTC)
    months_back = (now.year - FILL_MONTH.year) * 12 + now.month - FILL_MONTH.month
    subprocess.run(
        [sys.executable, "manage.py", "partition_history", "--months-back", str(months_back)],
        env=env, cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    timings["schema_s"] = time.perf_counter() - began
    runs = events // 10
    later = max(runs // 100, 1)
    month_s = (FILL_NEXT - FILL_MONTH).total_seconds()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        conn.execute("SET session_replication_role = replica")
        began = time.perf_counter()
        conn.execute(
            "INSERT INTO skill_runs (id, skill_id, caller_id, channel_id, inputs, started_at, "
            "finished_at, status, output, error, tool_calls_count, runtime_seconds, "
            "parent_run_id, total_input_tokens, total_output_tokens, total_thinking_tokens) "
            "SELECT format('fill-%%s', lpad(i::text, 9, '0')), 'skill-' || (i %% 40), "
            "'caller-' || (i %% 25), 'channel-' || (i %% 5), '{}'::jsonb, s.at, "
            "s.at + interval '30 seconds', CASE WHEN i %% 20 = 0 THEN 'error' ELSE 'ok' END, "
            "'', '', 3, 30.0, '', 100, 50, 0 FROM generate_series(1, %s) i, LATERAL (SELECT "
            "CASE WHEN i <= %s THEN %s + (i - 1) * %s * interval '1 second' "
            "ELSE %s + (i - %s) * interval '1 second' END AS at) s",
            [runs + later, runs, FILL_MONTH, month_s / runs, FILL_NEXT, runs],
        )
        timings["runs_s"] = time.perf_counter() - began
        began = time.perf_counter()
        written = 0
        for first in range(1, runs + later + 1, FILL_CHUNK_RUNS):
            if time.perf_counter() - began > budget_s:
                print(f"  fill: budget spent, {written:,} events written", flush=True)
                break
            last = first + FILL_CHUNK_RUNS - 1
            # Small payloads of few words: the search GIN indexes cost ~0.2 ms an event under load
            # with 300-byte ones (5x), and a DROP does not read them.
            cur = conn.execute(
                "INSERT INTO skill_run_logs_by_month (run_id, sequence, event_type, payload, "
                "created_at, run_started_at) SELECT r.id, n, 'step', jsonb_build_object("
                "'n', n, 'tool', 'tool-' || (n %% 7), 'args', 'value ' || r.id), "
                "r.started_at + n * interval '1 second', r.started_at FROM skill_runs r, "
                "generate_series(1, 10) n WHERE r.id BETWEEN format('fill-%%s', "
                "lpad(%s::text, 9, '0')) AND format('fill-%%s', lpad(%s::text, 9, '0'))",
                [first, last],
            )
            written += cur.rowcount
            rate = written / (time.perf_counter() - began)
            print(f"  fill: {written:,} events ({rate:,.0f}/s)", flush=True)
        timings["events_s"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute("SET session_replication_role = origin")
        conn.execute("VACUUM ANALYZE skill_runs")
        conn.execute("VACUUM ANALYZE skill_run_logs_by_month")
        timings["vacuum_s"] = time.perf_counter() - began
        october = conn.execute(
            "SELECT pg_total_relation_size('skill_run_logs_m202610')"
        ).fetchone()[0]
    return {
        "fill_runs": runs + later,
        "fill_events": written,
        "october_logs_bytes": october,
        **{k: round(v, 1) for k, v in timings.items()},
    }


def drop_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(url)
    name = info["dbname"]
    with psycopg.connect(**dict(info, dbname="postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def month_in_place(url: str, events: int, budget_s: float, keep: bool) -> dict:
    """--fill-month: fill, then purge everything before FILL_NEXT on it in a child
    process, then drop the database (it is big) unless ``keep``."""
    print(f"filling {url.rsplit('/', 1)[-1]} with a month of {events:,} events", flush=True)
    filled = fill_month(url, events, budget_s)
    print(f"  filled: {filled}", flush=True)
    env = dict(os.environ, DATABASE_URL=url, SECRET_KEY="bench-purge", DEBUG="0")
    try:
        args = [sys.executable, __file__, "--child", "month partitions", "--cutoff"]
        args += [FILL_NEXT.isoformat(), "--workers", "1"]
        done = subprocess.run(args, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    finally:
        if not keep:
            drop_database(url)
    row = json.loads(done.stdout.strip().splitlines()[-1]) | filled
    row.update(method="month partitions", share=f"before {FILL_NEXT:%Y-%m-%d}", copy_s=0)
    events_per_s = row["logs_in_dropped_months"] / max(row["drop_s"], 1e-6)
    print(
        f"  October's partition ({row['logs_in_dropped_months']:,} events by the estimate, "
        f"{row['october_logs_bytes'] / 2**30:.2f} GiB) dropped in {row['drop_s']} s "
        f"= {events_per_s:,.0f} events/s ({row['drop_backend_cpu_s']} s PostgreSQL CPU); "
        f"then {row['runs_deleted']:,} runs in {row['runs_phase_s']} s; all in "
        f"{row['seconds']} s, peak RSS {row['peak_rss_mb']} MB (+{row['rss_growth_mb']} MB); "
        f"estimate off by {row['logs_estimate_error']:,} events",
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
    parser.add_argument(
        "--fill-month",
        type=int,
        default=0,
        help="PostgreSQL: make --source (a new database, dropped after) hold a month of this "
        "many events on month partitions and purge it in place; nothing else runs",
    )
    parser.add_argument(
        "--fill-budget",
        type=float,
        default=1800,
        help="with --fill-month: stop writing events after this many seconds",
    )
    parser.add_argument("--keep", action="store_true", help="with --fill-month: keep the database")
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
    if args.fill_month:
        if engine != "postgresql":
            parser.error("--fill-month needs PostgreSQL")
        row = month_in_place(args.source, args.fill_month, args.fill_budget, args.keep)
        record = {
            "engine": engine,
            "source": args.source.rsplit("/", 1)[-1] + " (filled by --fill-month, then dropped)",
            "runs": row["total_runs"],
            "events": row["total_logs"],
            "date": started.isoformat(timespec="seconds"),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "rows": [row],
            "notes": "One month of events on month partitions, purged in place: October's "
            "partition dropped whole (never read: its rows are the planner's estimate, "
            "checked against a count after), then its runs in batches.",
        }
        from bench import report

        path = report.save(f"purge-month-{engine}-{row['total_logs']}", record)
        print(f"wrote {path.relative_to(ROOT)}")
        return
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
