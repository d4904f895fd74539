"""What runs cost: the per-run usage by model (runs.selectors) priced by the price table
(runs.costs over ModelPrice), for every face that shows a cost (run page, tree, list,
/skills/, the admin and the API).

Computed when read, never stored: an edited price applies to every run at once. A run's
usage is priced at its start (``started_at``): the per-run usage rows are sums over its
steps, so a run spanning a price change is priced at the price of its start. Each call reads
the usage rows of the runs asked for in one query (never one per row) and the price table,
kept per process between price writes (PriceTableCache): a page of runs costs one query,
two when the table is read again.

Tokens a run counts (its ``total_*`` columns) but no step attributes to a model (a writer
that sets totals without step events) are unpriced, never 0: they are added as usage of no
model, so the cost says "partly unpriced".
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.models.signals import post_delete, post_save

from . import costs, selectors
from .managers import model_prices_written
from .models import ModelPrice

logger = logging.getLogger(__name__)
# How long a process keeps the price table it read before reading it again, whatever
# else it knows. Writes through Django (the admin, load_prices, the API, any ORM write of
# ModelPrice) are seen at once: in the writing process by the signals below, in every other
# process on the next page by the shared stamp. Only a write that bypasses Django (psql,
# another program's SQL) waits for this, at most.
PRICE_TABLE_TTL_SECONDS = 30.0
# A token in Django's cache (files under the data folder: shared by every worker of the
# machine), replaced after each committed price write: a process whose table was read
# under another token reads the table again. Missing or unreadable counts as a change.
PRICE_STAMP_KEY = "runs:model_prices:stamp"


class PriceTableCache:
    """The price table, read once per process and kept until a price write, a new stamp
    or PRICE_TABLE_TTL_SECONDS: every list page read it whole (one query, ~1 ms of CPU at
    1M runs: bench/RESULTS.md, issue 17), and it changes a few times a year.

    Never stale after a write this process makes: a write drops the table at once; inside
    a transaction the writing thread reads the table uncached until that transaction ends
    (committed: the stamp is replaced; rolled back: the table is dropped again, since a
    read in between may have seen the rows that were undone). Only the primary's reads
    are kept: a replica may be behind, and a table read there under a new stamp would
    keep an old price for the whole TTL.
    """

    def __init__(self, ttl: float = PRICE_TABLE_TTL_SECONDS):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._table: costs.PriceTable | None = None
        self._stamp: object = None
        self._read_at = 0.0
        self._generation = 0
        self._thread = threading.local()  # aliases with a price write in an open transaction

    def _pending(self) -> set[str]:
        pending = getattr(self._thread, "pending", None)
        if pending is None:
            pending = self._thread.pending = set()
        return pending

    def get(self) -> costs.PriceTable:
        alias = router.db_for_read(ModelPrice)
        if alias != DEFAULT_DB_ALIAS:
            return ModelPrice.objects.using(alias).price_table()
        pending = self._pending()
        if alias in pending:
            if connections[alias].in_atomic_block:
                return ModelPrice.objects.using(alias).price_table()
            pending.discard(alias)  # that transaction rolled back (a commit clears it)
            self.drop()
        stamp = _shared_stamp()
        now = time.monotonic()
        with self._lock:
            if (
                self._table is not None
                and self._stamp == stamp
                and stamp is not None
                and now - self._read_at < self.ttl
            ):
                return self._table
            generation = self._generation
        table = ModelPrice.objects.using(alias).price_table()
        with self._lock:
            if generation == self._generation:  # no write dropped it while reading
                self._table, self._stamp, self._read_at = table, stamp, now
        return table

    def drop(self) -> None:
        with self._lock:
            self._table = None
            self._generation += 1

    def reset(self) -> None:
        """Forget everything, this thread's pending writes too (tests: a test's transaction
        is rolled back without on_commit, so a price write there would otherwise leave the
        next tests of the process reading the table uncached)."""
        self._pending().clear()
        self.drop()

    def written(self, using: str | None = None) -> None:
        """A price write on ``using``: drop the table now; once committed, a new stamp
        for the other processes."""
        using = using or DEFAULT_DB_ALIAS
        self.drop()
        connection = connections[using]
        if connection.in_atomic_block:
            self._pending().add(using)
        transaction.on_commit(lambda: self._committed(using), using=using)

    def _committed(self, using: str) -> None:
        self._pending().discard(using)
        self.drop()
        try:
            cache.set(PRICE_STAMP_KEY, uuid.uuid4().hex, None)
        except Exception:  # noqa: BLE001 - a cache that fails leaves the TTL as the bound
            logger.warning("price table stamp not replaced; other processes wait the TTL")


def _shared_stamp() -> object:
    try:
        return cache.get(PRICE_STAMP_KEY, _NO_STAMP)
    except Exception:  # noqa: BLE001 - unreadable: never trusted, the table is read
        return None


_NO_STAMP = "none"
_cache = PriceTableCache()


def _price_rows_written(sender=None, using=None, **kwargs) -> None:
    _cache.written(using)


post_save.connect(_price_rows_written, sender=ModelPrice, dispatch_uid="runs.pricing.save")
post_delete.connect(_price_rows_written, sender=ModelPrice, dispatch_uid="runs.pricing.delete")
model_prices_written.connect(
    _price_rows_written, sender=ModelPrice, dispatch_uid="runs.pricing.bulk"
)


def price_table() -> costs.PriceTable:
    """The price table (PriceTableCache: kept per process between price writes)."""
    return _cache.get()


def run_costs(runs: Sequence, table: costs.PriceTable | None = None) -> dict[str, costs.Cost]:
    """{run id: Cost} of these runs (summary rows or SkillRun objects: ``id``,
    ``started_at`` and the ``total_*`` token columns). The usage rows in one query; the
    price table from PriceTableCache (a query only when it is read again)."""
    runs = list(runs)
    if not runs:
        return {}
    table = table if table is not None else price_table()
    usage = selectors.usage_by_run([run.id for run in runs])
    return {run.id: run_cost(run, usage.get(run.id, ()), table) for run in runs}


def run_cost(run, usage: Iterable, table: costs.PriceTable) -> costs.Cost:
    """One run's cost from its usage rows (ModelUsage), priced at its start."""
    rows = [costs.usage_from(row, run.started_at) for row in usage]
    unattributed = _unattributed(run, rows)
    if unattributed is not None:
        rows.append(unattributed)
    return table.cost(rows)


def _unattributed(run, rows: list[costs.Usage]) -> costs.Usage | None:
    """The run's counted tokens that its steps do not account for, as usage of no model."""
    # One pass over the rows (this runs for every row of every list page).
    missing_in = int(getattr(run, "total_input_tokens", 0) or 0)
    missing_out = int(getattr(run, "total_output_tokens", 0) or 0)
    missing_thinking = int(getattr(run, "total_thinking_tokens", 0) or 0)
    for row in rows:
        missing_in -= row.input_tokens
        missing_out -= row.output_tokens
        missing_thinking -= row.thinking_tokens
    if missing_in <= 0 and missing_out <= 0 and missing_thinking <= 0:
        return None
    return costs.Usage(
        model="",
        at=run.started_at,
        steps=0,
        input_tokens=max(missing_in, 0),
        output_tokens=max(missing_out, 0),
        thinking_tokens=max(missing_thinking, 0),
    )


def subtree_costs(nodes, table: costs.PriceTable | None = None) -> None:
    """Set ``own_cost`` and ``subtree_cost`` on call-tree nodes (selectors.TreeNode, in
    pre-order: parents before children, as presentation.flatten_tree returns them)."""
    nodes = list(nodes)
    own = run_costs([node.run for node in nodes], table)
    for node in nodes:
        node.own_cost = own.get(node.run.id, costs.Cost())
    for node in reversed(nodes):
        total = node.own_cost
        for child in node.children:
            total = total + getattr(child, "subtree_cost", child.own_cost)
        node.subtree_cost = total


def with_costs(rows: Sequence, table: costs.PriceTable | None = None) -> Sequence:
    """Set ``cost`` on each run row (a page of the run list): one query for the page
    (two when the price table is read again)."""
    found = run_costs(rows, table)
    for row in rows:
        row.cost = found.get(row.id, costs.Cost())
    return rows


def skill_costs(
    skill_ids: Sequence[str], since, until, table: costs.PriceTable | None = None
) -> dict[str, costs.Cost]:
    """{skill: Cost} of the runs (nested ones too) started in whole UTC days [since,
    until), from the trigger-kept usage buckets of these skills only
    (selectors.skill_usage), each price segment priced at its start."""
    if not skill_ids:
        return {}
    table = table if table is not None else price_table()
    return {
        skill_id: sum((table.cost_at(rows, start) for start, rows in usage), costs.Cost())
        for skill_id, usage in selectors.skill_usage(skill_ids, since, until).items()
    }
