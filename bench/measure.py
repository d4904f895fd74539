"""Timing helpers: samples, median / p95, and the raw-SQL floor of what a call ran.

The floor of a call is the time its SELECT statements take when run again directly on the
DB-API cursor (no ORM, no template), and, on PostgreSQL, the execution time EXPLAIN ANALYZE
reports for them (the time spent in the database itself).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable

from django.db import connection
from django.test.utils import CaptureQueriesContext


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile (p95 of 30 samples is the 29th smallest)."""
    ordered = sorted(samples)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def summary(samples: list[float], cpu: list[float] | None = None) -> dict:
    """Wall-clock figures, and the median CPU time of this thread (robust to contention)."""
    out = {
        "n": len(samples),
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(percentile(samples, 0.95), 3),
        "min_ms": round(min(samples), 3),
        "max_ms": round(max(samples), 3),
    }
    if cpu:
        out["cpu_median_ms"] = round(statistics.median(cpu), 3)
        out["cpu_p95_ms"] = round(percentile(cpu, 0.95), 3)
    return out


def sample(
    call: Callable[[], object],
    repeat: int,
    warmup: int = 2,
    setup: Callable[[int], None] | None = None,
    cpu: list[float] | None = None,
) -> list[float]:
    """Wall-clock milliseconds per call; ``setup(i)`` runs untimed before the i-th call.

    When ``cpu`` is a list, the CPU time of this thread per call is appended to it.
    """
    for i in range(warmup):
        if setup is not None:
            setup(-1 - i)
        call()
    times = []
    for i in range(repeat):
        if setup is not None:
            setup(i)
        cpu_began = time.thread_time()
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
        if cpu is not None:
            cpu.append((time.thread_time() - cpu_began) * 1000)
    return times


def captured_queries(call: Callable[[], object]) -> list[str]:
    """The SQL statements one call runs (on the default connection)."""
    with CaptureQueriesContext(connection) as context:
        call()
    return [query["sql"] for query in context.captured_queries]


def is_read(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    return head in {"SELECT", "WITH"} and "FOR UPDATE" not in sql.upper()


def raw_ms(sql: str) -> float:
    """One statement run directly on the driver's cursor, rows fetched: milliseconds."""
    cursor = connection.connection.cursor()
    try:
        began = time.perf_counter()
        cursor.execute(sql)
        cursor.fetchall()
        return (time.perf_counter() - began) * 1000
    finally:
        cursor.close()


def explain_ms(sql: str) -> float | None:
    """PostgreSQL's own execution time for a statement (EXPLAIN ANALYZE, timing off)."""
    if connection.vendor != "postgresql":
        return None
    cursor = connection.connection.cursor()
    try:
        cursor.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return plan[0]["Execution Time"]
    finally:
        cursor.close()


def plan_text(sql: str) -> str:
    """The plan, for a report: EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on SQLite."""
    cursor = connection.connection.cursor()
    try:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            return "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return "\n".join(f"{row[0]:>4} {row[1]:>4} {row[3]}" for row in cursor.fetchall())
    finally:
        cursor.close()


def floor(queries: list[str], repeat: int = 5) -> dict:
    """Raw and in-database time of the read statements of a call (medians of ``repeat``)."""
    reads = [sql for sql in queries if is_read(sql)]
    if not reads:
        return {
            "floor_ms": None,
            "db_ms": None,
            "slowest_sql": None,
            "slowest_raw_ms": None,
            "slowest_plan": None,
        }
    per_query = {sql: [] for sql in reads}
    for _ in range(repeat):
        for sql in reads:
            per_query[sql].append(raw_ms(sql))
    medians = {sql: statistics.median(times) for sql, times in per_query.items()}
    db = [explain_ms(sql) for sql in reads]
    slowest = max(medians, key=medians.get)
    return {
        "floor_ms": round(sum(medians[sql] for sql in reads), 3),
        "db_ms": round(sum(db), 3) if None not in db else None,
        "slowest_sql": slowest,
        "slowest_raw_ms": round(medians[slowest], 3),
        "slowest_plan": plan_text(slowest),
    }
