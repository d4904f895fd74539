#!/usr/bin/env python
"""Where the JSON Lines export waits: its batch reads against the encoding, in the three ways
the export could read (runs.services.export._read_ahead, RunTransfer.run_batches).

    .venv/bin/python bench/export_reader.py --database-url postgres://…/sa_bench_100k

Exports every run as JSON Lines without events (bytes counted and dropped), ``--rounds``
times in each mode, the modes in turns:

- ``serial``: no read-ahead, each batch read then encoded, one after the other;
- ``read-ahead``: a reader thread reads batch N+1 (the query and psycopg turning its rows
  into tuples) while the caller encodes batch N; the next query waits for the conversion;
- ``pipelined`` (what the export does on PostgreSQL): the reader only waits on PostgreSQL
  and sends the next query as soon as a result arrives; the caller converts and encodes.

Per run it prints wall time, the time spent inside the batch reads (``run_batches``'s
next()) with that thread's own CPU, the caller's CPU and the PostgreSQL backend's CPU
(from /proc). If the reads take nearly the whole wall time, the reader is the critical
path (bench/RESULTS.md, issue 19). Read-only: nothing is written to the database or to
bench/results.
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

MODES = ("serial", "read-ahead", "pipelined")


def export_once(mode: str) -> dict:
    from django.db import connection

    from runs.managers import PendingRows, RunTransfer
    from runs.models import SkillRun
    from runs.services import export

    reads = {"wall": 0.0, "cpu": 0.0, "batches": 0}
    original = RunTransfer.run_batches
    read_ahead = mode != "serial"

    def timed_batches(self, *args, **kwargs):
        kwargs["pending"] = mode == "pipelined"
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
        export._read_ahead = lambda batches, using: (
            batch.fetch() if isinstance(batch, PendingRows) else batch for batch in batches
        )
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
        "mode": mode,
        "wall_s": round(wall, 2),
        "batch_reads_wall_s": round(reads["wall"], 2),
        "batch_reads_cpu_s": round(reads["cpu"], 2),
        "caller_cpu_s": round(main_cpu - (0 if read_ahead else reads["cpu"]), 2),
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
        for mode in MODES:
            print(export_once(mode), flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
