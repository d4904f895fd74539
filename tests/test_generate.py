"""bench/generate.py loads with the triggers off and recounts every derived table through
runs.managers.rebuild_derived(); a load with every trigger firing is the reference. The
two must leave every table equal: the run counts, the failure roll-ups, the search index
(SQLite's FTS5, read through its vocabulary tables), and whatever derived table is added
later, without this test naming it; also when the fast load replaces another history.

The generator runs as a script (it sets Django up on the database it loads), on databases
of its own: SQLite files under tmp_path, or, with DATABASE_URL on PostgreSQL, two databases
named after the test database's, dropped at the end.
"""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import dj_database_url
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The smallest history the generator makes (its fixtures: a 1,000-run tree, a run of
# 10,000 events); about 20 s a load.
RUNS, EVENTS = 2000, 15000
END = "2026-11-30T12:00:00"
LOADED = ("skill_runs", "skill_run_logs")
# Applied-at times differ between two databases migrated apart; statistics are not data.
SKIPPED = {"django_migrations", "sqlite_sequence", "sqlite_stat1", "sqlite_stat4"}


def generate(url: str, *extra: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "generate.py"), "--runs", str(RUNS)]
        + ["--events", str(EVENTS), "--end", END, "--no-record", "--database-url", url]
        + list(extra),
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )


def comparable(rows) -> list:
    return sorted(rows, key=repr)


def sqlite_tables(path: str) -> dict[str, list]:
    """Every table's rows, sorted; FTS5 tables by their fts5vocab tables (the terms, the
    documents and places holding them), not their segment layout, which depends on the
    order rows were indexed in."""
    conn = sqlite3.connect(path)
    try:
        tables = conn.execute(
            "SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'table'"
        ).fetchall()
        fts = [name for name, sql in tables if "USING fts5(" in sql.replace(" (", "(")]
        shadow = {f"{name}_{part}" for name in fts for part in ("data", "idx", "content")}
        shadow |= {f"{name}_{part}" for name in fts for part in ("docsize", "config")}
        dumped = {}
        for name, _sql in tables:
            if name in SKIPPED or name in fts or name in shadow:
                continue
            columns = [row[1] for row in conn.execute(f'PRAGMA table_xinfo("{name}")')]
            if name not in LOADED:
                # A surrogate key numbers rows in the order they were written.
                columns = [c for c in columns if c != "id"]
            select = ", ".join(f'"{c}"' for c in columns)
            rows = conn.execute(f'SELECT {select} FROM "{name}"').fetchall()
            dumped[name] = (columns, comparable(rows))
        return dumped
    finally:
        conn.close()


def postgresql_tables(url: str) -> dict[str, list]:
    import psycopg

    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        ).fetchall()
        dumped = {}
        for (name,) in tables:
            if name in SKIPPED:
                continue
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                    [name],
                )
            ]
            if name not in LOADED:
                columns = [c for c in columns if c != "id"]
            select = ", ".join(f'"{c}"' for c in columns)
            rows = conn.execute(f'SELECT {select} FROM "{name}"').fetchall()
            dumped[name] = (columns, comparable(rows))
        return dumped


@pytest.fixture
def two_databases(tmp_path):
    """(url of the fast load, url of the reference load, the function dumping one)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        fast, reference = tmp_path / "fast.sqlite3", tmp_path / "triggers.sqlite3"
        yield f"sqlite:///{fast}", f"sqlite:///{reference}", lambda u: sqlite_tables(u[10:])
        return
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    server = f"postgres://{config['USER'] or 'postgres'}@{config['HOST']}:{config['PORT'] or 5432}"
    names = [f"{config['NAME']}_gen_fast", f"{config['NAME']}_gen_triggers"]

    def drop():
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    drop()
    urls = [f"{server}/{name}" for name in names]
    yield urls[0], urls[1], postgresql_tables
    drop()


def test_fast_load_leaves_every_table_as_the_triggers_do(two_databases):
    fast, reference, dump = two_databases
    # Over another history first: --replace must leave nothing of it in a derived table.
    generate(fast, "--seed", "7")
    generate(fast, "--replace")
    generate(reference, "--with-triggers")
    fast_tables, reference_tables = dump(fast), dump(reference)
    assert sorted(fast_tables) == sorted(reference_tables)
    # The load itself and the derived data are there (not two empty databases).
    assert len(fast_tables["skill_runs"][1]) == RUNS
    assert len(fast_tables["skill_run_logs"][1]) == EVENTS
    assert fast_tables["skill_run_counts"][1]
    columns, runs = fast_tables["skill_runs"]
    for rollup in ("failed_tools", "failed_descendants"):
        assert any(run[columns.index(rollup)] for run in runs), rollup
    differing = [name for name in fast_tables if fast_tables[name] != reference_tables[name]]
    assert differing == []
