"""SQLite: the search triggers test for a spaceless letter with a byte count, not a GLOB.

The triggers of 0008 add a row to the trigram tables only when its text may hold a letter of
a script written without spaces; that first test was a GLOB with a character class over the
whole stored text (``'*[...]*'``), which SQLite matches by trying the class at every
position: 52 us per 300-byte event, more than the rest of the trigger (cutting the words),
on every insert, update and delete. It is replaced by what the GLOB implied: every such
letter is outside ASCII, so the text either holds a character of more than one byte (its
length in characters differs from its length in bytes) or, as Django writes JSON, a
``\\u`` escape: 2 us. The GLOB on the decoded text still decides (0008), so which rows are
in the trigram tables does not change and nothing is rebuilt. Measured on 10,000 events
(10k-run history): 520 -> 20 ms for the test; the purge's rows/s, bench/RESULTS.md.

PostgreSQL: nothing (its index is kept by the writes themselves).
"""

import importlib

from django.db import migrations

search_index = importlib.import_module("runs.migrations.0008_search_index")


def may_be_spaceless(raw: str) -> str:
    """True for every text holding a spaceless letter (raw, or escaped as \\uXXXX)."""
    return f"(instr({raw}, '\\u') > 0 OR length({raw}) <> length(CAST({raw} AS BLOB)))"


# The texts 0008's triggers test (search_index._sqlite_run_entries / _sqlite_log_entries).
_RAW_TEXTS = [f"{row}.error || {row}.output || {row}.inputs" for row in ("NEW", "OLD")] + [
    f"{row}.payload" for row in ("NEW", "OLD")
]


def _faster(statement: str) -> str:
    for raw in _RAW_TEXTS:
        statement = statement.replace(search_index._may_be_spaceless(raw), may_be_spaceless(raw))
    return statement


SQLITE_TRIGGERS = [_faster(statement) for statement in search_index.SQLITE_TRIGGERS]
if sum("CAST(" in statement for statement in SQLITE_TRIGGERS) != len(SQLITE_TRIGGERS):
    raise RuntimeError("0008's spaceless test changed: 0014 no longer replaces it")


def install(apps, schema_editor):
    """Replace the search triggers (SQLite; also what bench/search.py installs)."""
    if schema_editor.connection.vendor != "sqlite":
        return
    for name in search_index.SQLITE_TRIGGER_NAMES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
    for statement in SQLITE_TRIGGERS:
        schema_editor.execute(statement, params=None)


def uninstall(apps, schema_editor):
    """Back to 0008's triggers."""
    if schema_editor.connection.vendor != "sqlite":
        return
    for name in search_index.SQLITE_TRIGGER_NAMES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
    for statement in search_index.SQLITE_TRIGGERS:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("runs", "0013_model_prices")]

    operations = [migrations.RunPython(install, uninstall)]
