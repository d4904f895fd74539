#!/usr/bin/env python
"""Fill a database with the reference history the benchmarks run on, fast.

    .venv/bin/python bench/generate.py --size reference --replace \
        --database-url postgres://postgres@127.0.0.1:5432/sa_bench_1m

The schema comes from the project's own migrations (``manage.py migrate`` runs first); rows
are then bulk-loaded, not created through the ORM: PostgreSQL takes them through COPY (into
tables truncated in the same transaction, with the secondary indexes and constraints dropped
and rebuilt afterwards), SQLite through executemany in big transactions with the journal off.

The triggers on skill_runs and skill_run_logs (run counts, failure roll-ups, the SQLite
search index, and every derived table added since) are off while the rows load -- fired row
by row with the indexes dropped they made a 1M-run load crawl -- and the tables they keep are
then recounted whole by runs.managers.rebuild_derived(), the project's own rebuilds, before
the triggers are back. ``--with-triggers`` loads with every trigger firing and every index in
place instead: slow, the reference the recount is tested against (tests/test_generate.py).

The history is runs.services.history.History (the project's one generator), deterministic
for a seed and an end time; this script is its fast loading path.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runs import contract  # noqa: E402 (after the path is set)
from runs.services.history import History  # noqa: E402

SIZES = {
    "small": (10_000, 100_000),
    "medium": (100_000, 1_000_000),
    "reference": (1_000_000, 10_000_000),
}
RUN_COLUMNS = contract.RUN_FIELDS
LOG_COLUMNS = ("id", "run_id", "sequence", "event_type", "payload", "created_at")


class TimeFormat:
    """µs since the epoch -> the text each database stores (strftime is too slow for 10M)."""

    CLOCK = [f" {h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]

    def __init__(self, suffix: str):
        self.suffix = suffix
        self.days: dict[int, str] = {}

    def __call__(self, us: int) -> str:
        second, fraction = divmod(us, 1_000_000)
        day, clock = divmod(second, 86_400)
        date = self.days.get(day)
        if date is None:
            date = self.days[day] = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")
        # Django writes str(datetime): no fraction when it is zero.
        if fraction:
            return f"{date}{self.CLOCK[clock]}.{fraction:06d}{self.suffix}"
        return f"{date}{self.CLOCK[clock]}{self.suffix}"


def copy_escape(text: str) -> str:
    """A value in PostgreSQL's COPY text format."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


# --- loaders ---------------------------------------------------------------------------


MIGRATE_TO = """
import sys
import django
django.setup()
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
executor = MigrationExecutor(connection)
target = sys.argv[1]
targets = [node for node in executor.loader.graph.leaf_nodes() if node[0] != "runs"]
migration = executor.loader.get_migration_by_prefix("runs", target)
targets.append((migration.app_label, migration.name))
executor.migrate(targets)
"""


def migrate(database_url: str, runs_migration: str | None = None) -> None:
    """``manage.py migrate``; with ``runs_migration`` (a prefix: "0010"), the runs app only
    up to that migration and every other app to its latest: a data set migrated to the
    last migration really written, so later ones still run their backfills on it."""
    env = dict(os.environ, DATABASE_URL=database_url, SECRET_KEY="bench-generate", DEBUG="0")
    env.setdefault("DJANGO_SETTINGS_MODULE", "skillaudit_site.settings")
    if runs_migration:
        command = [sys.executable, "-c", MIGRATE_TO, runs_migration]
    else:
        command = [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"]
    subprocess.run(command, env=env, check=True, cwd=ROOT)


class Progress:
    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, total, 0
        self.started = self.last = time.perf_counter()

    def add(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last > 10:
            self.last = now
            rate = self.done / (now - self.started)
            print(f"  {self.label}: {self.done:,}/{self.total:,} ({rate:,.0f} rows/s)", flush=True)

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.started, 1e-9)


CHUNK = 5000


LOADED_TABLES = ("skill_runs", "skill_run_logs")


def django_for(database_url: str):
    """Django set up on this database (once per process: the generator loads one)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skillaudit_site.settings")
    os.environ.setdefault("SECRET_KEY", "bench-generate")
    import django

    django.setup()


def rebuild_derived_then(database_url: str, finish) -> dict[str, float]:
    """runs.managers.rebuild_derived() and then ``finish(cursor)`` (the triggers back on),
    in one transaction of Django's own connection: the triggers never come back over
    derived tables that were not recounted. Returns the seconds of each recount."""
    django_for(database_url)
    from django.db import connection, transaction

    from runs.managers import rebuild_derived

    with transaction.atomic():
        # Every index was just built: the PostgreSQL search index needs no REINDEX.
        took = rebuild_derived(reindex=False)
        with connection.cursor() as cursor:
            finish(cursor)
    connection.close()
    return took


def load_postgresql(
    url: str, history: History, replace: bool, runs_migration=None, with_triggers=False
) -> dict:
    import psycopg

    create_database(url)
    migrate(url, runs_migration)
    timings: dict[str, float] = {}
    pools = history.pools
    outputs = [copy_escape(text) for text in pools.outputs]
    errors = [copy_escape(text) for text in pools.errors]
    inputs = [copy_escape(text) for text in pools.inputs]
    payloads = {kind: [copy_escape(t) for t in items] for kind, items in pools.payloads.items()}
    stamp = TimeFormat("+00")
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT EXISTS (SELECT 1 FROM skill_runs)")
            if cur.fetchone()[0] and not replace:
                raise SystemExit("skill_runs is not empty: pass --replace to overwrite it")
            cur.execute("SET maintenance_work_mem = '1GB'")
            cur.execute("SET max_parallel_maintenance_workers = 2")
            cur.execute("SET statement_timeout = 0")
            if with_triggers:
                # The reference load: the triggers see every row go and come.
                rebuild, triggers = [], []
                cur.execute("DELETE FROM skill_run_logs")
                cur.execute("DELETE FROM skill_runs")
            else:
                rebuild = drop_postgresql_indexes(cur)
                triggers = disable_postgresql_triggers(cur)
                # Truncated in this transaction, so COPY FREEZE writes rows already
                # all-visible. TRUNCATE fires no trigger; the derived tables are recounted
                # after the load (the run counts are emptied here: less to delete then).
                cur.execute("TRUNCATE skill_run_logs, skill_runs, skill_run_counts")
            began = time.perf_counter()
            # FREEZE needs the table truncated in this transaction.
            freeze = "" if with_triggers else "WITH (FREEZE)"
            progress = Progress("runs", history.total_runs)
            columns = ", ".join(RUN_COLUMNS)
            with cur.copy(f"COPY skill_runs ({columns}) FROM STDIN {freeze}") as copy:
                lines = []
                for row in history.runs():
                    (
                        run_id,
                        skill,
                        caller,
                        channel,
                        inp,
                        started,
                        finished,
                        status,
                        output,
                        error,
                        calls,
                        runtime,
                        parent,
                        t_in,
                        t_out,
                        t_think,
                    ) = row
                    lines.append(
                        f"{run_id}\t{skill}\t{caller}\t{channel}\t{inputs[inp]}\t{stamp(started)}\t"
                        f"{stamp(finished) if finished is not None else chr(92) + 'N'}\t{status}\t"
                        f"{outputs[output] if output >= 0 else ''}\t"
                        f"{errors[error] if error >= 0 else ''}\t{calls}\t{runtime}\t{parent}\t"
                        f"{t_in}\t{t_out}\t{t_think}\n"
                    )
                    if len(lines) >= CHUNK:
                        copy.write("".join(lines))
                        progress.add(len(lines))
                        lines = []
                copy.write("".join(lines))
                progress.add(len(lines))
            timings["runs_copy_s"] = time.perf_counter() - began
            began = time.perf_counter()
            progress = Progress("events", history.total_events)
            columns = ", ".join(LOG_COLUMNS)
            with cur.copy(f"COPY skill_run_logs ({columns}) FROM STDIN {freeze}") as copy:
                lines = []
                for log_id, run_id, sequence, kind, payload, created in history.events():
                    lines.append(
                        f"{log_id}\t{run_id}\t{sequence}\t{kind}\t{payloads[kind][payload]}\t"
                        f"{stamp(created)}\n"
                    )
                    if len(lines) >= CHUNK:
                        copy.write("".join(lines))
                        progress.add(len(lines))
                        lines = []
                copy.write("".join(lines))
                progress.add(len(lines))
            timings["events_copy_s"] = time.perf_counter() - began
            began = time.perf_counter()
            for statement in rebuild:
                cur.execute(statement)
            timings["indexes_s"] = time.perf_counter() - began
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('skill_run_logs', 'id'), "
                "(SELECT coalesce(max(id), 1) FROM skill_run_logs))"
            )
        conn.commit()
    if not with_triggers:
        # Committed with the triggers off: a load interrupted from here on leaves them off
        # (generate again); the recount and the triggers' return commit together.
        began = time.perf_counter()

        def enable(cursor):
            for table, name in triggers:
                cursor.execute(f'ALTER TABLE {table} ENABLE TRIGGER "{name}"')

        timings["derived"] = rebuild_derived_then(url, enable)
        timings["derived_s"] = time.perf_counter() - began
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        # The whole database: the derived tables were rewritten too.
        conn.execute("VACUUM (ANALYZE)")
    timings["analyze_s"] = time.perf_counter() - began
    return timings


def disable_postgresql_triggers(cur) -> list[tuple[str, str]]:
    """Disable the enabled user triggers of the loaded tables (in the caller's transaction);
    returns (table, trigger) of each, to enable them again. By name, not ``DISABLE TRIGGER
    USER``: a trigger someone had disabled stays disabled."""
    cur.execute(
        """
        SELECT t.tgrelid::regclass::text, t.tgname FROM pg_trigger t
        WHERE t.tgrelid::regclass::text = ANY(%s) AND NOT t.tgisinternal
          AND t.tgenabled <> 'D' AND t.tgparentid = 0
        ORDER BY 1, 2
        """,
        [list(LOADED_TABLES)],
    )
    triggers = cur.fetchall()
    for table, name in triggers:
        cur.execute(f'ALTER TABLE {table} DISABLE TRIGGER "{name}"')
    return triggers


def create_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(url)
    name = info.pop("dbname")
    info["dbname"] = "postgres"
    with psycopg.connect(**info, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_postgresql_indexes(cur) -> list[str]:
    """Drop the audit tables' constraints and indexes; returns the statements rebuilding them.

    Building an index once over loaded rows is several times faster than keeping it up to
    date row by row. The definitions come from the catalog, so they are whatever the
    migrations made.
    """
    tables = LOADED_TABLES
    cur.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype
        FROM pg_constraint c
        WHERE c.conrelid::regclass::text = ANY(%s) AND c.contype IN ('p', 'u', 'f')
        """,
        [list(tables)],
    )
    constraints = cur.fetchall()
    cur.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid::regclass::text = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        [list(tables)],
    )
    indexes = cur.fetchall()
    order = {"f": 0, "u": 1, "p": 2}
    for table, name, _definition, _kind in sorted(constraints, key=lambda c: order[c[3]]):
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cur.execute(f"DROP INDEX {name}")
    rebuild = [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
        for table, name, definition, _kind in sorted(constraints, key=lambda c: -order[c[3]])
    ]
    rebuild += [definition for _name, definition in indexes]
    return rebuild


def load_sqlite(
    path: str, url: str, history: History, replace: bool, runs_migration=None, with_triggers=False
) -> dict:
    import sqlite3

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    migrate(url, runs_migration)
    timings: dict[str, float] = {}
    pools = history.pools
    stamp = TimeFormat("")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-2000000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    if conn.execute("SELECT EXISTS (SELECT 1 FROM skill_runs)").fetchone()[0] and not replace:
        raise SystemExit("skill_runs is not empty: pass --replace to overwrite it")
    conn.execute("BEGIN")
    indexes, triggers = [], []
    if not with_triggers:
        # Dropped first, so the deletes below fire nothing; recreated from this same SQL
        # after the derived tables are recounted.
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name IN ('skill_runs', 'skill_run_logs') ORDER BY name"
        ).fetchall()
        for name, _sql in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN ('skill_runs', 'skill_run_logs')"
        ).fetchall()
        for name, _sql in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        # Emptied here: less for the recount to delete.
        conn.execute("DELETE FROM skill_run_counts")
    conn.execute("DELETE FROM skill_run_logs")
    conn.execute("DELETE FROM skill_runs")
    conn.execute("COMMIT")

    def batches(rows, size=50_000):
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def run_rows():
        for row in history.runs():
            (
                run_id,
                skill,
                caller,
                channel,
                inp,
                started,
                finished,
                status,
                output,
                error,
                calls,
                runtime,
                parent,
                t_in,
                t_out,
                t_think,
            ) = row
            yield (
                run_id,
                skill,
                caller,
                channel,
                pools.inputs[inp],
                stamp(started),
                stamp(finished) if finished is not None else None,
                status,
                pools.outputs[output] if output >= 0 else "",
                pools.errors[error] if error >= 0 else "",
                calls,
                runtime,
                parent,
                t_in,
                t_out,
                t_think,
            )

    def log_rows():
        payloads = pools.payloads
        for log_id, run_id, sequence, kind, payload, created in history.events():
            yield log_id, run_id, sequence, kind, payloads[kind][payload], stamp(created)

    began = time.perf_counter()
    insert = (
        f"INSERT INTO skill_runs ({', '.join(RUN_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
    )
    progress = Progress("runs", history.total_runs)
    for batch in batches(run_rows()):
        conn.execute("BEGIN")
        conn.executemany(insert, batch)
        conn.execute("COMMIT")
        progress.add(len(batch))
    timings["runs_copy_s"] = time.perf_counter() - began
    began = time.perf_counter()
    insert = (
        f"INSERT INTO skill_run_logs ({', '.join(LOG_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(LOG_COLUMNS))})"
    )
    progress = Progress("events", history.total_events)
    for batch in batches(log_rows(), 100_000):
        conn.execute("BEGIN")
        conn.executemany(insert, batch)
        conn.execute("COMMIT")
        progress.add(len(batch))
    timings["events_copy_s"] = time.perf_counter() - began
    began = time.perf_counter()
    for _name, sql in indexes:
        conn.execute(sql)
    timings["indexes_s"] = time.perf_counter() - began
    conn.execute("PRAGMA locking_mode=NORMAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    if not with_triggers:
        # The triggers were dropped in a committed transaction: a load interrupted from
        # here on leaves them missing (generate again); recount and recreation commit together.
        began = time.perf_counter()

        def recreate(cursor):
            for _name, sql in triggers:
                cursor.execute(sql)

        timings["derived"] = rebuild_derived_then(url, recreate)
        timings["derived_s"] = time.perf_counter() - began
    began = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ANALYZE")
    conn.close()
    timings["analyze_s"] = time.perf_counter() - began
    return timings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), required=False)
    parser.add_argument("--size", choices=sorted(SIZES), help="a preset for --runs/--events")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument(
        "--end",
        help="the end of the history (ISO 8601, UTC); default: now, to the minute. The same "
        "seed and end give the same data.",
    )
    parser.add_argument("--replace", action="store_true", help="overwrite existing runs")
    parser.add_argument(
        "--with-triggers",
        action="store_true",
        help="load with every trigger firing and every index in place (slow: the reference "
        "the recount of the derived tables is compared with)",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="write no results file (tests, trial loads)"
    )
    parser.add_argument(
        "--migrate-to",
        metavar="PREFIX",
        help="migrate the runs app only up to this migration (e.g. 0010; default: the latest)",
    )
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or DATABASE_URL) is required")
    runs, events = SIZES[args.size or "small"]
    runs = args.runs or runs
    events = args.events if args.events is not None else events
    if args.end:
        end = datetime.fromisoformat(args.end)
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
    else:
        end = datetime.now(UTC).replace(second=0, microsecond=0)

    import dj_database_url

    config = dj_database_url.parse(args.database_url)
    engine = config["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"generating {runs:,} runs and {events:,} events into {engine} ({config['NAME']}), "
        f"history ending {end.isoformat()}",
        flush=True,
    )
    began = time.perf_counter()
    try:
        history = History(runs, events, args.seed, end)
    except ValueError as exc:
        parser.error(str(exc))
    if engine == "postgresql":
        timings = load_postgresql(
            args.database_url, history, args.replace, args.migrate_to, args.with_triggers
        )
    elif engine == "sqlite3":
        timings = load_sqlite(
            config["NAME"],
            args.database_url,
            history,
            args.replace,
            args.migrate_to,
            args.with_triggers,
        )
    else:
        raise SystemExit(f"unsupported database engine {engine}")
    total = time.perf_counter() - began
    rows = runs + events
    load = timings["runs_copy_s"] + timings["events_copy_s"]
    record = {
        "engine": engine,
        "runs": runs,
        "events": events,
        "seed": args.seed,
        "end": end.isoformat(),
        "migrated_to": args.migrate_to or "latest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "total_s": round(total, 1),
        "load_rows_per_s": round(rows / load),
        "overall_rows_per_s": round(rows / total),
        "with_triggers": args.with_triggers,
        **{
            name: round(value, 1)
            if isinstance(value, float)
            else {part: round(s, 1) for part, s in value.items()}
            for name, value in timings.items()
        },
    }
    if not args.no_record:
        from bench import report

        report.save(f"generate-{engine}-{runs}", record)
    print(
        f"done in {total:.1f} s: {rows:,} rows; load {load:.1f} s ({rows / load:,.0f} rows/s: "
        f"runs {runs / timings['runs_copy_s']:,.0f}/s, events "
        f"{events / max(timings['events_copy_s'], 1e-9):,.0f}/s), indexes "
        f"{timings['indexes_s']:.1f} s, derived tables {timings.get('derived_s', 0):.1f} s "
        f"{ {part: round(s, 1) for part, s in timings.get('derived', {}).items()} }, analyze "
        f"{timings['analyze_s']:.1f} s; overall "
        f"{rows / total:,.0f} rows/s",
        flush=True,
    )


if __name__ == "__main__":
    main()
