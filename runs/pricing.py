"""What runs cost: the per-run usage by model (runs.selectors) priced by the price table
(runs.costs over ModelPrice), for every face that shows a cost (run page, tree, list,
/skills/, the admin and the API).

Computed when read, never stored: an edited price applies to every run at once. A run's
usage is priced at its start (``started_at``): the per-run usage rows are sums over its
steps, so a run spanning a price change is priced at the price of its start. Each call reads
the price table once and the usage rows of the runs asked for in one query; a page of runs
costs two queries, never one per row.

Tokens a run counts (its ``total_*`` columns) but no step attributes to a model (a writer
that sets totals without step events) are unpriced, never 0: they are added as usage of no
model, so the cost says "partly unpriced".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from . import costs, selectors
from .models import ModelPrice


def price_table() -> costs.PriceTable:
    return ModelPrice.objects.price_table()


def run_costs(runs: Sequence, table: costs.PriceTable | None = None) -> dict[str, costs.Cost]:
    """{run id: Cost} of these runs (summary rows or SkillRun objects: ``id``,
    ``started_at`` and the ``total_*`` token columns). Two queries: prices and usage."""
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
    totals = {
        "input_tokens": int(getattr(run, "total_input_tokens", 0) or 0),
        "output_tokens": int(getattr(run, "total_output_tokens", 0) or 0),
        "thinking_tokens": int(getattr(run, "total_thinking_tokens", 0) or 0),
    }
    missing = {
        name: max(total - sum(getattr(row, name) for row in rows), 0)
        for name, total in totals.items()
    }
    if not any(missing.values()):
        return None
    return costs.Usage(model="", at=run.started_at, steps=0, **missing)


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
    """Set ``cost`` on each run row (a page of the run list): two queries for the page."""
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
