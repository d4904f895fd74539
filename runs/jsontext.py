"""JSON as stored text: depth checks, safe loading and pretty-printing, for every face.

Inputs and payloads are written by LLMs and by other programs, so a stored JSON value can
be nested thousands deep or not be an object at all. Every face (the API, the dashboard,
the admin) reads and checks it through these functions, so the limits agree everywhere.
Nothing here imports Django.
"""

from __future__ import annotations

import json

# Deepest JSON value (inputs, payload) a writer of ours accepts; 1 is a flat object.
# Recursive code (cleaning, encoding, the database drivers, Python's json on the admin's
# save path) must stay far from Python's recursion limit.
MAX_JSON_DEPTH = 200
# Deepest stored value served back: another writer may have stored deeper ones.
MAX_SERVED_DEPTH = 400


def depth_exceeds(value, limit: int) -> bool:
    """Whether containers nest deeper than ``limit``: level by level, no recursion."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, dict | list):
                    below.append(child)
        level = below
    return False


def load_object(text: str | None) -> dict | None:
    """A stored JSON object from its text; None when it cannot be served as one.

    Only data written by another program can be refused here: too deep to parse or to
    encode again, not an object, or not JSON.
    """
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (RecursionError, ValueError):
        return None
    if not isinstance(value, dict) or depth_exceeds(value, MAX_SERVED_DEPTH):
        return None
    return value


def pretty(value) -> str | None:
    """Indented JSON, or None when it is too deeply nested to print."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (RecursionError, ValueError, TypeError):
        return None


def pretty_text(text: str | None) -> tuple[str | None, str]:
    """(pretty text or None, the raw text) for JSON read as text from the database."""
    if text is None:
        return None, ""
    try:
        return pretty(json.loads(text)), text
    except (RecursionError, ValueError):
        return None, text
