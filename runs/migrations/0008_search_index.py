"""The search index, kept by the database itself for every writer.

What is searchable: a run's id, error, output and inputs, and each event's payload (JSON:
keys and values, strings decoded). Each text is cut at a fixed length (below), so a
tsvector never reaches PostgreSQL's 1 MB limit and a writer's insert can never fail on it.

PostgreSQL: expression GIN indexes, no trigger and no copy of the text. The index entries
are made by the INSERT or UPDATE itself, whoever issues it (the Go executor's plain SQL, the
API, COPY); a DELETE costs nothing more (VACUUM removes dead entries with the rows), so the
purge is as fast as before. Words: ``to_tsvector('simple', ...)`` (no stemming, any
language) over the text with the ASCII punctuation turned into spaces and JSON escapes
removed, so ``ORD-2231-X`` is the words ord 2231 x on both databases, as FTS5's unicode61
cuts it. Scripts without spaces: a pg_trgm GIN index over the same text, partial: only rows
whose text has such a letter are in it.

SQLite: FTS5 tables, contentless (the text is not stored twice), kept by row triggers on
skill_runs and skill_run_logs. Words: ``unicode61`` (diacritics kept, as PostgreSQL keeps
them; letters, marks, digits and private-use characters are word characters). Scripts without
spaces: a ``trigram`` table with only the rows whose text has such a letter. Event rows use
the log id as rowid; runs have no stable integer key (VACUUM may renumber a rowid table's
rowids), so skill_run_search_keys gives each run one. The fts5vocab tables let the search
estimate how many rows hold a word, to choose its plan (runs.managers).

The SQL here is also what ``SkillRun.objects.rebuild_search_index()`` runs; changing a text
expression needs a new migration that rebuilds the index.
"""

from django.db import migrations

# Longest text indexed per field (characters): a tsvector of 100,000 characters stays
# well below PostgreSQL's 1 MB limit whatever the script.
RUN_ID_CHARS, ERROR_CHARS, OUTPUT_CHARS, INPUTS_CHARS = 255, 20_000, 40_000, 40_000
PAYLOAD_CHARS = 100_000

# Letters of scripts written without spaces (runs/search.py SPACELESS_RANGES).
SPACELESS_RANGES = (
    (0x0E00, 0x0EFF),
    (0x1000, 0x109F),
    (0x1780, 0x17FF),
    (0x3040, 0x30FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFF9F),
)
SPACELESS_CLASS = "[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in SPACELESS_RANGES) + "]"

# --- PostgreSQL ---------------------------------------------------------------------------

# The characters PostgreSQL's default text-search parser reads as part of a bigger token
# (an e-mail, host, URL, path, file, version, signed or decimal number, hyphenated word,
# XML tag, entity): made spaces, so every engine cuts a text at the same places (FTS5's
# unicode61 separates at every punctuation character). The other ASCII punctuation already
# separates words in that parser. Chained replace() is used, not translate() or a regex:
# on 300-byte payloads it cost ~16 us a row against ~115 us (translate, which is slow on
# UTF-8) and ~50 us (regexp_replace), when to_tsvector itself costs ~40 us.
PG_SEPARATORS = ("-", ".", "@", "/", ":", "<", ">", "&", "+")
# JSON escapes as stored in jsonb's text: an escaped backslash first, so the path C:\new
# (stored as C:\\new) keeps its "new"; then the escapes of a newline, tab, carriage return
# and quote (else an "n" would stick to the next word).
PG_JSON_ESCAPES = ("\\\\", "\\n", "\\t", "\\r", '\\"')


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _replaced(expression: str, needles) -> str:
    for needle in needles:
        expression = f"replace({expression}, {_literal(needle)}, ' ')"
    return expression


def _pg_json_text(column: str, chars: int) -> str:
    return _replaced(f"left({column}::text, {chars})", PG_JSON_ESCAPES)


PG_RUN_TEXT = (
    f"(left(id, {RUN_ID_CHARS}) || ' ' || left(error, {ERROR_CHARS}) || ' ' || "
    f"left(output, {OUTPUT_CHARS}) || ' ' || {_pg_json_text('inputs', INPUTS_CHARS)})"
)
PG_LOG_TEXT = f"({_pg_json_text('payload', PAYLOAD_CHARS)})"
# What decides whether a row is in the trigram index: its raw text (jsonb's text has
# every non-ASCII character as itself), cheaper than the text above.
PG_RUN_RAW = (
    f"(left(error, {ERROR_CHARS}) || left(output, {OUTPUT_CHARS}) || "
    f"left(inputs::text, {INPUTS_CHARS}))"
)
PG_LOG_RAW = f"left(payload::text, {PAYLOAD_CHARS})"


def pg_words(text: str) -> str:
    return f"to_tsvector('simple'::regconfig, {_replaced(text, PG_SEPARATORS)})"


def pg_has_spaceless(raw: str) -> str:
    return f"({raw} ~ {_literal(SPACELESS_CLASS)})"


PG_INDEXES = {
    "skill_runs_search_words": ("skill_runs", f"USING gin (({pg_words(PG_RUN_TEXT)}))"),
    "skill_runs_search_chars": (
        "skill_runs",
        f"USING gin ({PG_RUN_TEXT} gin_trgm_ops) WHERE {pg_has_spaceless(PG_RUN_RAW)}",
    ),
    "skill_run_logs_search_words": ("skill_run_logs", f"USING gin (({pg_words(PG_LOG_TEXT)}))"),
    "skill_run_logs_search_chars": (
        "skill_run_logs",
        f"USING gin ({PG_LOG_TEXT} gin_trgm_ops) WHERE {pg_has_spaceless(PG_LOG_RAW)}",
    ),
}

# --- SQLite -------------------------------------------------------------------------------

WORDS_TOKENIZER = "unicode61 remove_diacritics 0 categories 'L* M* N* Co'"
SQLITE_GLOB = f"'*{SPACELESS_CLASS}*'"


def sqlite_json_text(expression: str) -> str:
    """Keys and scalar values of a JSON text, decoded, in document order (what PostgreSQL's
    jsonb text holds); the text itself when it is not JSON (another writer's)."""
    return (
        f"(CASE WHEN json_valid({expression}) THEN coalesce((SELECT group_concat("
        "CASE WHEN typeof(key) = 'text' THEN key || ' ' ELSE '' END || "
        "CASE type WHEN 'object' THEN '' WHEN 'array' THEN '' WHEN 'true' THEN 'true' "
        "WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE atom END, ' ') "
        f"FROM json_tree({expression})), '') ELSE {expression} END)"
    )


def sqlite_run_text(row: str) -> str:
    return (
        f"(substr({row}.id, 1, {RUN_ID_CHARS}) || ' ' || substr({row}.error, 1, {ERROR_CHARS})"
        f" || ' ' || substr({row}.output, 1, {OUTPUT_CHARS}) || ' ' || "
        f"substr({sqlite_json_text(f'{row}.inputs')}, 1, {INPUTS_CHARS}))"
    )


def sqlite_log_text(row: str) -> str:
    return f"substr({sqlite_json_text(f'{row}.payload')}, 1, {PAYLOAD_CHARS})"


SQLITE_TABLES = [
    "CREATE TABLE skill_run_search_keys "
    "(key INTEGER PRIMARY KEY, run_id varchar(255) NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE skill_run_search_runs USING fts5"
    f'(body, content="", tokenize="{WORDS_TOKENIZER}")',
    "CREATE VIRTUAL TABLE skill_run_search_runs_trigram USING fts5"
    "(body, content='', tokenize='trigram')",
    "CREATE VIRTUAL TABLE skill_run_search_logs USING fts5"
    f'(body, content="", tokenize="{WORDS_TOKENIZER}")',
    "CREATE VIRTUAL TABLE skill_run_search_logs_trigram USING fts5"
    "(body, content='', tokenize='trigram')",
    "CREATE VIRTUAL TABLE skill_run_search_runs_vocab "
    "USING fts5vocab(skill_run_search_runs, 'row')",
    "CREATE VIRTUAL TABLE skill_run_search_logs_vocab "
    "USING fts5vocab(skill_run_search_logs, 'row')",
    "CREATE VIRTUAL TABLE skill_run_search_runs_trigram_vocab "
    "USING fts5vocab(skill_run_search_runs_trigram, 'row')",
    "CREATE VIRTUAL TABLE skill_run_search_logs_trigram_vocab "
    "USING fts5vocab(skill_run_search_logs_trigram, 'row')",
]
SQLITE_TABLE_NAMES = [
    "skill_run_search_runs_vocab",
    "skill_run_search_logs_vocab",
    "skill_run_search_runs_trigram_vocab",
    "skill_run_search_logs_trigram_vocab",
    "skill_run_search_runs",
    "skill_run_search_runs_trigram",
    "skill_run_search_logs",
    "skill_run_search_logs_trigram",
    "skill_run_search_keys",
]


def _may_be_spaceless(raw: str) -> str:
    """A cheap test on the stored text before its JSON is decoded a second time for the
    trigram table: only text with such a letter, or a \\u escape (Django writes JSON
    with non-ASCII escaped), can hold one. Implied by the GLOB on the decoded text, so
    which rows are in the table does not change."""
    return f"({raw} GLOB {SQLITE_GLOB} OR instr({raw}, '\\u') > 0)"


def _run_key(row: str) -> str:
    return f"(SELECT key FROM skill_run_search_keys WHERE run_id = {row}.id)"


def _sqlite_run_entries(row: str, delete: bool) -> str:
    """Add (or, given the same text, delete) the entries of the run ``row``."""
    command = "'delete', " if delete else ""
    words = "skill_run_search_runs, " if delete else ""
    chars = "skill_run_search_runs_trigram, " if delete else ""
    return (
        f"INSERT INTO skill_run_search_runs ({words}rowid, body) "
        f"SELECT {command}{_run_key(row)}, {sqlite_run_text(row)}; "
        f"INSERT INTO skill_run_search_runs_trigram ({chars}rowid, body) "
        f"SELECT {command}k, t FROM (SELECT {_run_key(row)} AS k, {sqlite_run_text(row)} AS t "
        f"WHERE {_may_be_spaceless(f'{row}.error || {row}.output || {row}.inputs')}) "
        f"WHERE t GLOB {SQLITE_GLOB};"
    )


def _sqlite_log_entries(row: str, delete: bool) -> str:
    command = "'delete', " if delete else ""
    words = "skill_run_search_logs, " if delete else ""
    chars = "skill_run_search_logs_trigram, " if delete else ""
    return (
        f"INSERT INTO skill_run_search_logs ({words}rowid, body) "
        f"SELECT {command}{row}.id, {sqlite_log_text(row)}; "
        f"INSERT INTO skill_run_search_logs_trigram ({chars}rowid, body) "
        f"SELECT {command}k, t FROM (SELECT {row}.id AS k, {sqlite_log_text(row)} AS t "
        f"WHERE {_may_be_spaceless(f'{row}.payload')}) "
        f"WHERE t GLOB {SQLITE_GLOB};"
    )


SQLITE_TRIGGERS = [
    "CREATE TRIGGER skill_run_search_run_insert AFTER INSERT ON skill_runs BEGIN "
    "INSERT INTO skill_run_search_keys (run_id) VALUES (NEW.id); "
    f"{_sqlite_run_entries('NEW', delete=False)} END",
    "CREATE TRIGGER skill_run_search_run_update AFTER UPDATE OF id, inputs, output, error "
    "ON skill_runs WHEN OLD.id IS NOT NEW.id OR OLD.inputs IS NOT NEW.inputs "
    "OR OLD.output IS NOT NEW.output OR OLD.error IS NOT NEW.error BEGIN "
    f"{_sqlite_run_entries('OLD', delete=True)} "
    "UPDATE skill_run_search_keys SET run_id = NEW.id WHERE run_id = OLD.id; "
    f"{_sqlite_run_entries('NEW', delete=False)} END",
    "CREATE TRIGGER skill_run_search_run_delete AFTER DELETE ON skill_runs BEGIN "
    f"{_sqlite_run_entries('OLD', delete=True)} "
    "DELETE FROM skill_run_search_keys WHERE run_id = OLD.id; END",
    "CREATE TRIGGER skill_run_search_log_insert AFTER INSERT ON skill_run_logs BEGIN "
    f"{_sqlite_log_entries('NEW', delete=False)} END",
    "CREATE TRIGGER skill_run_search_log_update AFTER UPDATE OF id, payload ON skill_run_logs "
    "WHEN OLD.id IS NOT NEW.id OR OLD.payload IS NOT NEW.payload BEGIN "
    f"{_sqlite_log_entries('OLD', delete=True)} {_sqlite_log_entries('NEW', delete=False)} END",
    "CREATE TRIGGER skill_run_search_log_delete AFTER DELETE ON skill_run_logs BEGIN "
    f"{_sqlite_log_entries('OLD', delete=True)} END",
]
SQLITE_TRIGGER_NAMES = [
    "skill_run_search_run_insert",
    "skill_run_search_run_update",
    "skill_run_search_run_delete",
    "skill_run_search_log_insert",
    "skill_run_search_log_update",
    "skill_run_search_log_delete",
]

# Every entry from the stored rows (the migration's backfill and the rebuild).
SQLITE_FILL = [
    "INSERT INTO skill_run_search_keys (run_id) SELECT id FROM skill_runs ORDER BY rowid",
    "INSERT INTO skill_run_search_runs (rowid, body) "
    f"SELECT k.key, {sqlite_run_text('r')} FROM skill_runs r "
    "JOIN skill_run_search_keys k ON k.run_id = r.id",
    "INSERT INTO skill_run_search_runs_trigram (rowid, body) SELECT key, t FROM ("
    f"SELECT k.key AS key, {sqlite_run_text('r')} AS t FROM skill_runs r "
    f"JOIN skill_run_search_keys k ON k.run_id = r.id) WHERE t GLOB {SQLITE_GLOB}",
    f"INSERT INTO skill_run_search_logs (rowid, body) SELECT l.id, {sqlite_log_text('l')} "
    "FROM skill_run_logs l",
    "INSERT INTO skill_run_search_logs_trigram (rowid, body) SELECT id, t FROM ("
    f"SELECT l.id AS id, {sqlite_log_text('l')} AS t FROM skill_run_logs l) "
    f"WHERE t GLOB {SQLITE_GLOB}",
]
SQLITE_EMPTY = [
    "INSERT INTO skill_run_search_runs (skill_run_search_runs) VALUES ('delete-all')",
    "INSERT INTO skill_run_search_runs_trigram (skill_run_search_runs_trigram) "
    "VALUES ('delete-all')",
    "INSERT INTO skill_run_search_logs (skill_run_search_logs) VALUES ('delete-all')",
    "INSERT INTO skill_run_search_logs_trigram (skill_run_search_logs_trigram) "
    "VALUES ('delete-all')",
    "DELETE FROM skill_run_search_keys",
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        # Building over millions of stored events takes minutes: no statement timeout
        # (STATEMENT_TIMEOUT_MS is for requests), for this transaction only.
        schema_editor.execute("SET LOCAL statement_timeout = 0")
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, (table, definition) in PG_INDEXES.items():
            schema_editor.execute(f"CREATE INDEX {name} ON {table} {definition}", params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_TABLES + SQLITE_FILL + SQLITE_TRIGGERS:
            schema_editor.execute(statement, params=None)
    else:
        raise RuntimeError(f"the search index has no definition for {vendor}")


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for name in PG_INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
    elif vendor == "sqlite":
        for name in SQLITE_TRIGGER_NAMES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
        for name in SQLITE_TABLE_NAMES:
            schema_editor.execute(f"DROP TABLE IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0007_otlp_spans"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
