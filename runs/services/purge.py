"""Retention: delete the runs started before a cutoff, with their logs, in batches.

The unit of work is SkillRunManager.purge_batch (one transaction: lock a batch of the
oldest runs, delete their logs, then them). This module is the workflow around it: the
loop, the started_at ranges for parallel workers, and the running totals reported to the
caller. The contract's purge_older_than (DjangoStorage), `manage.py purge_runs`, the
benchmarks and the tests all purge through ``purge_started_before``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connections

from ..managers import LogPartitions
from ..models import SkillRun

DEFAULT_BATCH_SIZE = 2000


def check_workers(workers: int, using: str = DEFAULT_DB_ALIAS) -> None:
    """ValueError unless this database can purge with ``workers`` connections."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    vendor = connections[using].vendor
    if workers > 1 and vendor != "postgresql":
        raise ValueError(
            f"parallel purge workers need PostgreSQL: {vendor} allows one writer at a "
            "time, so they would only wait for each other"
        )


def purge_started_before(
    t: datetime,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int, int], None] | None = None,
    workers: int = 1,
    using: str = DEFAULT_DB_ALIAS,
) -> tuple[int, int]:
    """Delete runs started before t and their logs; returns (runs, logs) deleted (with
    month partitions, the logs of whole months dropped are PostgreSQL's estimate).

    Works in id batches, one transaction per batch (logs first, then their runs), so
    memory stays flat, a kill at any moment leaves no orphaned logs, and running it
    again finishes the job. Rows are never loaded: big JSON is never parsed.

    ``workers`` > 1 (PostgreSQL only) splits the runs into that many started_at ranges
    of equal size and purges them at once, each on its own connection: one PostgreSQL
    backend deleting is CPU-bound (about 200k rows per CPU second), and the work
    parallelises cleanly since the ranges share no run. ``on_batch`` gets the running
    totals of all workers after each batch's commit.
    """
    check_workers(workers, using)
    totals = _RunningTotals(on_batch)
    _drop_whole_months(t, totals, using)
    ranges = purge_ranges(t, workers, batch_size, using) if workers > 1 else [(None, t)]
    if len(ranges) == 1:
        _purge_range(None, t, batch_size, totals.add, using)
    else:
        _purge_in_parallel(ranges, batch_size, totals.add, using)
    return totals.runs, totals.logs


def _drop_whole_months(t: datetime, totals: _RunningTotals, using: str) -> None:
    """With month partitions (manage.py partition_history): the months of logs that end
    before t go whole, a DROP TABLE each, never read (their rows are PostgreSQL's estimate,
    see LogPartitions.drop_months_before; bench/RESULTS.md, "Month partitions"); the
    batches below then delete those months' runs, finding no logs left, and the boundary
    month's runs and logs as before. The dropped rows join the totals that the first
    batch's on_batch reports (a dropped month always has runs left to delete, so a batch
    follows): on_batch stays "after each batch's commit". Killed between the two, runs of
    a dropped month are left without their logs until the purge runs again."""
    partitions = LogPartitions(using)
    if partitions.state() != "partitioned":
        return
    for _name, rows in partitions.drop_months_before(t):
        totals.add(0, rows, report=False)


def ensure_months(months_ahead: int = 3, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The coming months' log partitions, created ahead of time (purge_runs does this on
    each run, from the same cron line); [] unless the database is partitioned."""
    partitions = LogPartitions(using)
    if partitions.state() != "partitioned":
        return []
    return partitions.ensure_months(months_ahead)


def purge_ranges(t: datetime, workers: int, batch_size: int, using: str = DEFAULT_DB_ALIAS):
    """[lo, hi) started_at ranges holding about the same number of runs each.

    Counting and finding the boundaries walks the started_at index once (a few hundred
    ms for 500,000 runs), small beside deleting them. Too few runs for more than a batch
    per worker: one range.
    """
    doomed = SkillRun.objects.db_manager(using).started_before(t)
    count = doomed.count()
    workers = min(workers, count // batch_size)
    if workers <= 1:
        return [(None, t)]
    oldest_first = doomed.order_by("started_at").values_list("started_at", flat=True)
    bounds = sorted({oldest_first[count * k // workers] for k in range(1, workers)})
    edges = [None, *bounds, t]
    return list(zip(edges, edges[1:], strict=False))


def _purge_range(lo, hi, batch_size, on_batch, using, stop: threading.Event | None = None):
    """Purge the runs started in [lo, hi) batch by batch, until none is left or stop."""
    runs = SkillRun.objects.db_manager(using)
    while stop is None or not stop.is_set():
        deleted = runs.purge_batch(hi, lo, batch_size)
        if deleted == (0, 0):
            break
        on_batch(*deleted)


def _purge_in_parallel(ranges, batch_size, on_batch, using) -> None:
    """One thread (and database connection) per range; the first error stops all."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(lo, hi) -> None:
        try:
            _purge_range(lo, hi, batch_size, on_batch, using, stop=stop)
        except BaseException as exc:  # re-raised in the calling thread below
            errors.append(exc)
            stop.set()
        finally:
            connections[using].close()

    threads = [threading.Thread(target=worker, args=bounds) for bounds in ranges]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        # Ctrl-C: let each worker commit or roll back the batch it is in, then stop.
        stop.set()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]


class _RunningTotals:
    """Runs and logs a purge has deleted so far, over all its workers; each added batch is
    passed on, as the new totals, to the caller's on_batch (one at a time)."""

    def __init__(self, on_batch: Callable[[int, int], None] | None):
        self.runs = self.logs = 0
        self.on_batch = on_batch
        self.lock = threading.Lock()

    def add(self, runs: int, logs: int, report: bool = True) -> None:
        with self.lock:
            self.runs += runs
            self.logs += logs
            if report and self.on_batch is not None:
                self.on_batch(self.runs, self.logs)
