#!/usr/bin/env python
"""Where the JSON Lines export waits: its batch reads against the encoding, with and without
the read-ahead (runs.services.export._read_ahead).

    .venv/bin/python bench/export_reader.py --database-url postgres://…/sa_bench_100k

Exports every run as JSON Lines without events (bytes counted and dropped), alternating a run
with the read-ahead and one without it, ``--rounds`` times each, and prints per run: wall
time, the time spent inside the batch reads (``RunTransfer.run_batches``: the keyset query
on the database and psycopg turning its rows into tuples) with that thread's own CPU, the
encoding thread's CPU, and the PostgreSQL backend's CPU (from /proc). If the reads take
nearly the whole wall time, the reader is the critical path (bench/RESULTS.md, issue 19).
Read-only: nothing is written to the database or to bench/results.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.export import proc_cpu_s  # noqa: E402


def export_once(read_ahead: bool) -> dict:
    from django.db import connection

    from runs.managers import RunTransfer
    from runs.models import SkillRun
    from runs.services import export

    reads = {"wall": 0.0, "cpu": 0.0, "batches": 0}
    original = RunTransfer.run_batches

    def timed_batches(self, *args, **kwargs):
        batches = original(self, *args, **kwargs)
        while True:
            began, cpu_began = time.perf_counter(), time.thread_time()
            try:
                batch = next(batches)
            except StopIteration:
                return
            reads["wall"] += time.perf_counter() - began
            reads["cpu"] += time.thread_time() - cpu_began
            reads["batches"] += 1
            yield batch

    saved_read_ahead = export._read_ahead
    RunTransfer.run_batches = timed_batches
    if not read_ahead:
        export._read_ahead = lambda batches, using: batches
    try:
        connection.ensure_connection()
        backend = connection.connection.info.backend_pid if connection.vendor == "postgresql" else 0
        backend_began = proc_cpu_s(backend) if backend else 0.0
        main_cpu_began = time.thread_time()
        began = time.perf_counter()
        size = sum(len(chunk) for chunk in export.jsonl_chunks(SkillRun.objects.all()))
        wall = time.perf_counter() - began
        main_cpu = time.thread_time() - main_cpu_began
    finally:
        RunTransfer.run_batches = original
        export._read_ahead = saved_read_ahead
    return {
        "read_ahead": read_ahead,
        "wall_s": round(wall, 2),
        "batch_reads_wall_s": round(reads["wall"], 2),
        "batch_reads_cpu_s": round(reads["cpu"], 2),
        "encoding_thread_cpu_s": round(main_cpu - (0 if read_ahead else reads["cpu"]), 2),
        "backend_cpu_s": round(proc_cpu_s(backend) - backend_began, 2) if backend else None,
        "batches": reads["batches"],
        "mb": round(size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1 to 10")
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skillaudit_site.settings")
    os.environ.setdefault("SECRET_KEY", "bench-export-reader-" + "x" * 40)
    import django

    django.setup()
    print(f"load average {os.getloadavg()[0]:.2f}")
    for _ in range(args.rounds):
        for read_ahead in (False, True):
            print(export_once(read_ahead), flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
