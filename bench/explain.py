"""Print the query plan of every contract query on a database, with a verdict for each.

    DATABASE_URL=postgres://user@host/db .venv/bin/python bench/explain.py
    .venv/bin/python bench/explain.py              # the SQLite file under var/
    .venv/bin/python bench/explain.py -k last_run  # only the queries whose name matches
    .venv/bin/python bench/explain.py --read-only  # skip finish_run, append_log, purge

The queries, their arguments (read from the data: the busiest skill, a nested run, ...) and
the verdicts are the ones tests/test_query_plans.py checks (bench/query_catalog.py). Each
query runs in a transaction that is rolled back, the purge included (on a live database,
--read-only skips the three that lock rows while they run). The database needs
some history, and its statistics (ANALYZE) for PostgreSQL to plan as it will in production.
Exits 1 when a plan scans or sorts a whole table.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--only", default="", help="queries whose name contains this")
    parser.add_argument("--no-sql", action="store_true", help="plans only, not the statements")
    parser.add_argument(
        "--read-only", action="store_true", help="skip the queries that write (rolled back)"
    )
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skillaudit_site.settings")
    # Reading plans needs no secret; the settings refuse to start without one.
    os.environ.setdefault("SECRET_KEY", "bench-explain-reads-plans-only")
    import django

    django.setup()
    from django.db import connection

    from bench.query_catalog import QUERIES, Sample, explain

    sample = Sample.from_database()
    print(f"# {connection.vendor} {connection.settings_dict['NAME']}")
    for field, value in vars(sample).items():
        shown = f"{len(value)} skills" if field == "skill_ids" else value
        print(f"# {field}: {shown}")
    print()
    failed = []
    for query in QUERIES:
        if args.only not in query.name or (args.read_only and query.writes):
            continue
        statements = explain(query, sample)
        verdict = "OK" if not any(s.problems for s in statements) else "FULL SCAN OR SORT"
        print(f"== {query.name}: {verdict}")
        for statement in statements:
            if not args.no_sql:
                print(f"-- {' '.join(statement.sql.split())}")
                print(f"-- params: {statement.params}")
            print(statement.plan)
            for problem in statement.problems:
                print(f"!! {problem}")
        print()
        if verdict != "OK":
            failed.append(query.name)
    if failed:
        print(f"{len(failed)} plan(s) scan or sort a whole table: {', '.join(failed)}")
        return 1
    print("every plan is an index scan")
    return 0


if __name__ == "__main__":
    sys.exit(main())
