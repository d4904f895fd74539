"""Reads that more than one face needs: keyset pages, has-children, the call tree, text heads.

The dashboard (runs/web/) and the API (runs/api/) both call these, so a page of runs, a
tree or a run's head is built one way. Each function reads through the managers; none
renders anything or knows about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from django.db.models import TextField
from django.db.models.functions import Cast, Length, Substr

from . import contract, search
from .models import SkillRun

TREE_NODE_CAP = 2000
TREE_DEPTH_CAP = 64
# Output and error longer than this are cut on the run page, with a link to the whole text.
TEXT_PAGE_CHARS = 100_000


# --- keyset pages -------------------------------------------------------------------------


@dataclass
class Page:
    """One page of rows in the order asked for, and whether rows lie on either side."""

    rows: list
    has_older: bool
    has_newer: bool


def newest_first_page(
    matching,
    size: int,
    after: tuple[datetime, str] | None = None,
    before: tuple[datetime, str] | None = None,
) -> Page:
    """A page of ``matching`` (a SkillRun queryset) newest first, as summaries.

    ``after`` is the position of the last row of the page before (older rows follow);
    ``before`` is the first row of the page after (the newer rows, read oldest first
    from the position and turned around). Keyset, not OFFSET: as fast at any depth.
    One row more than the page is read to know whether there is another page.
    """
    if after is not None and before is not None:
        raise ValueError("after and before cannot be combined")
    if before is not None:
        rows = list(matching.newer_than(*before).oldest_first().summaries()[: size + 1])
        return Page(rows=rows[:size][::-1], has_older=True, has_newer=len(rows) > size)
    if after is not None:
        matching = matching.older_than(*after)
    rows = list(matching.newest_first().summaries()[: size + 1])
    return Page(rows=rows[:size], has_older=len(rows) > size, has_newer=after is not None)


def oldest_first_page(matching, size: int, after: tuple[datetime, str] | None = None, full=False):
    """A page of ``matching`` oldest first (children of a run), after a position.

    Summaries, or whole runs with ``inputs_text`` when ``full``. Returns (rows, more).
    """
    if after is not None:
        matching = matching.newer_than(*after)
    matching = matching.oldest_first()
    rows = list((matching.with_inputs_text() if full else matching.summaries())[: size + 1])
    return rows[:size], len(rows) > size


def with_has_children(rows):
    """Set ``has_children`` on summary rows: one query for the page, not a probe per row
    inside the list's own query (see SkillRunQuerySet.summaries)."""
    parents = SkillRun.objects.ids_with_children([run.id for run in rows])
    for run in rows:
        run.has_children = run.id in parents
    return rows


def with_search_snippets(rows, query):
    """Set ``search_snippet`` on summary rows (a runs.search.Snippet of the first text of
    each run that matches ``query``, or None): a page's rows only, never every match."""
    sources = SkillRun.objects.search_sources([run.id for run in rows], query)
    pattern = query.highlight_pattern()
    for run in rows:
        where, text = sources.get(run.id, ("", ""))
        run.search_snippet = search.snippet(where, text, pattern)
    return rows


# --- one run ------------------------------------------------------------------------------


def run_with_text_heads(run_id: str):
    """The run without its big columns whole, or None: inputs as JSON text (parsed by the
    caller under a depth guard), output and error cut to TEXT_PAGE_CHARS, with sizes."""
    chars = TEXT_PAGE_CHARS
    return (
        SkillRun.objects.defer("inputs", "output", "error")
        .annotate(
            inputs_text=Cast("inputs", TextField()),
            output_head=Substr("output", 1, chars),
            output_size=Length("output"),
            error_head=Substr("error", 1, chars),
            error_size=Length("error"),
        )
        .filter(pk=contract.clean_id(run_id))
        .first()
    )


# --- the call tree ------------------------------------------------------------------------


@dataclass
class TreeNode:
    """A run in a call tree; the dashboard adds its drawing (bar, closes) to it."""

    run: object
    depth: int
    children: list[TreeNode] = field(default_factory=list)
    closes: int = 0
    bar: object = None


@dataclass
class CallTree:
    root: TreeNode
    size: int
    capped: bool
    # The root's own parent is no longer stored (purged): the tree starts below it.
    root_is_orphan: bool

    def preorder(self):
        """Every node, depth-first, children oldest first."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def call_tree(run_id: str) -> CallTree:
    """The call tree around a run from its root, capped: three queries whatever its size.

    Cycles in corrupted data are cut where a run repeats; at most TREE_NODE_CAP runs and
    TREE_DEPTH_CAP levels. NotFound for an unknown run.
    """
    chain = SkillRun.objects.parent_chain(run_id, summaries=True)
    root = chain[0]
    rows = [
        SimpleNamespace(**row)
        for row in SkillRun.objects.call_tree(root.id, TREE_NODE_CAP, TREE_DEPTH_CAP)
    ]
    rows.sort(key=lambda row: (row.started_at, row.id))  # children oldest first
    children: dict[str, list] = {}
    for row in rows:
        if row.id != root.id:
            children.setdefault(row.parent_run_id, []).append(row)
    root_node = TreeNode(run=root, depth=0)
    seen = {root.id}
    level = [root_node]
    capped = len(rows) > TREE_NODE_CAP
    while level:
        next_level = []
        for node in level:
            for kid in children.get(node.run.id, ()):
                if kid.id in seen or len(seen) >= TREE_NODE_CAP:
                    capped = capped or kid.id not in seen
                    continue
                if node.depth + 1 > TREE_DEPTH_CAP:
                    capped = True
                    continue
                seen.add(kid.id)
                child = TreeNode(run=kid, depth=node.depth + 1)
                node.children.append(child)
                next_level.append(child)
        level = next_level
    return CallTree(
        root=root_node, size=len(seen), capped=capped, root_is_orphan=root.parent_run_id != ""
    )
