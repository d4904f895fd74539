"""Failure roll-ups on skill_runs, kept by triggers for every writer.

``failed_tools``: how many of the run's events are failed tool results (contract.
tool_result_failed: a tool_result whose payload has "is_error": true). ``failed_descendants``:
how many runs below it in the call tree (children, their children...) have a failed status
(contract.FAILED_STATUSES). Both are plain columns with a database default of 0, so the Go
executor's INSERT, which names its own columns only, still works; the triggers below are
their only writers, in the writing transaction, whoever writes.

failed_tools is a counter: +1/-1 per failed tool result inserted, deleted or edited.

failed_descendants is recounted, not counted up and down: a statement that makes a run
failed (or not), moves it to another parent, or inserts a run that already has children
(a parent re-inserted after its children, an OTLP trace re-derived in one COPY) recounts
the failed runs under each of the run's ancestors (a walk down the runs_children index).
Recounting stays exact when a statement writes a parent and its children together, which
PostgreSQL's statement-level triggers see at once; the walks are UNIONs, so a cycle in the
parent links (another writer's corrupt data) ends the walk instead of looping. Statements
that change no failure (most inserts, every finish with a good status) do nothing: the
WHEN clauses (SQLite) and the start-set queries (PostgreSQL) skip them before any walk.

On PostgreSQL the ancestors are locked (in id order) before they are recounted, in a
separate statement, so the recount's snapshot already holds every committed change of a
concurrent writer that locked them first: two children of one parent failing at once
leave the parent at 2, not 1.

The two partial indexes serve the list's failed=1 filter newest first (all runs, and
top-level runs): SkillRunQuerySet.failed() writes the same condition with the same literal
text, which SQLite needs to match a query to a partial index.
"""

from django.db import migrations, models

FAILED = "('error', 'timeout', 'budget_exceeded')"  # contract.FAILED_STATUSES
FAILED_RUN = f"(status IN {FAILED} OR failed_tools > 0 OR failed_descendants > 0)"
INDEXES = [
    # status last: the list's bounded count (status <> dry_run) and status=failed are
    # answered from the index alone
    f"CREATE INDEX runs_failed ON skill_runs (started_at DESC, id DESC, status) WHERE {FAILED_RUN}",
    "CREATE INDEX runs_toplevel_failed ON skill_runs (started_at DESC, id DESC, status) "
    f"WHERE parent_run_id = '' AND {FAILED_RUN}",
    # failed=1 with a skill: that skill's failed runs in list order, not all its runs
    "CREATE INDEX runs_toplevel_failed_skill ON skill_runs "
    f"(skill_id, started_at DESC, id DESC, status) WHERE parent_run_id = '' AND {FAILED_RUN}",
]
DROP_INDEXES = [
    "DROP INDEX IF EXISTS runs_failed",
    "DROP INDEX IF EXISTS runs_toplevel_failed",
    "DROP INDEX IF EXISTS runs_toplevel_failed_skill",
]


def recount(seeds: str) -> str:
    """One UPDATE: every existing ancestor of the seed ids (and the seeds) gets the number of
    failed runs under it. ``seeds``: a SELECT of ids (empty strings are ignored)."""
    return f"""
        UPDATE skill_runs SET failed_descendants = counted.n FROM (
            WITH RECURSIVE anc(id) AS (
                SELECT seed.id FROM ({seeds}) seed WHERE seed.id <> ''
                UNION
                SELECT r.parent_run_id FROM anc JOIN skill_runs r ON r.id = anc.id
                WHERE NOT (r.parent_run_id = '')
            ), sub(top, id) AS (
                SELECT c.parent_run_id, c.id FROM skill_runs c
                WHERE c.parent_run_id IN (SELECT id FROM anc) AND NOT (c.parent_run_id = '')
                UNION
                SELECT sub.top, c.id FROM sub JOIN skill_runs c ON c.parent_run_id = sub.id
                WHERE NOT (c.parent_run_id = '')
            )
            SELECT anc.id AS id, COALESCE(k.n, 0) AS n FROM anc LEFT JOIN (
                SELECT sub.top AS top, COUNT(*) AS n FROM sub JOIN skill_runs d ON d.id = sub.id
                WHERE d.id <> sub.top AND d.status IN {FAILED}
                GROUP BY sub.top
            ) k ON k.top = anc.id
        ) counted
        WHERE skill_runs.id = counted.id AND skill_runs.failed_descendants <> counted.n
    """


# --- SQLite: row-level triggers (rows are processed one by one) -------------------------

SQLITE_TOOL_FAILED = (
    "({row}.event_type = 'tool_result' AND (CASE WHEN json_valid({row}.payload) "
    "THEN json_type({row}.payload, '$.is_error') END) = 'true')"
)


def _tool_failed(row: str) -> str:
    return SQLITE_TOOL_FAILED.format(row=row)


SQLITE_TRIGGERS = [
    # failed_tools
    "CREATE TRIGGER skill_run_failed_tools_insert AFTER INSERT ON skill_run_logs "
    f"WHEN {_tool_failed('NEW')} BEGIN "
    "UPDATE skill_runs SET failed_tools = failed_tools + 1 WHERE id = NEW.run_id; END",
    "CREATE TRIGGER skill_run_failed_tools_delete AFTER DELETE ON skill_run_logs "
    f"WHEN {_tool_failed('OLD')} BEGIN "
    "UPDATE skill_runs SET failed_tools = failed_tools - 1 WHERE id = OLD.run_id; END",
    "CREATE TRIGGER skill_run_failed_tools_update AFTER UPDATE OF run_id, event_type, payload "
    f"ON skill_run_logs WHEN {_tool_failed('OLD')} OR {_tool_failed('NEW')} BEGIN "
    f"UPDATE skill_runs SET failed_tools = failed_tools - 1 WHERE id = OLD.run_id "
    f"AND {_tool_failed('OLD')}; "
    f"UPDATE skill_runs SET failed_tools = failed_tools + 1 WHERE id = NEW.run_id "
    f"AND {_tool_failed('NEW')}; END",
    # failed_descendants
    "CREATE TRIGGER skill_run_failed_descendants_insert AFTER INSERT ON skill_runs "
    f"WHEN NEW.status IN {FAILED} OR EXISTS (SELECT 1 FROM skill_runs c "
    "WHERE c.parent_run_id = NEW.id AND NOT (c.parent_run_id = '')) "
    f"BEGIN {recount('SELECT NEW.id AS id UNION ALL SELECT NEW.parent_run_id')}; END",
    "CREATE TRIGGER skill_run_failed_descendants_delete AFTER DELETE ON skill_runs "
    f"WHEN OLD.status IN {FAILED} OR OLD.failed_descendants > 0 "
    f"BEGIN {recount('SELECT OLD.parent_run_id AS id')}; END",
    "CREATE TRIGGER skill_run_failed_descendants_update AFTER UPDATE OF id, parent_run_id, "
    "status ON skill_runs WHEN OLD.id IS NOT NEW.id OR OLD.parent_run_id IS NOT "
    f"NEW.parent_run_id OR (OLD.status IN {FAILED}) IS NOT (NEW.status IN {FAILED}) BEGIN "
    + recount(
        "SELECT NEW.id AS id UNION ALL SELECT NEW.parent_run_id UNION ALL SELECT OLD.parent_run_id"
    )
    + "; END",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "skill_run_failed_tools_insert",
        "skill_run_failed_tools_delete",
        "skill_run_failed_tools_update",
        "skill_run_failed_descendants_insert",
        "skill_run_failed_descendants_delete",
        "skill_run_failed_descendants_update",
    )
]

# --- PostgreSQL: statement-level triggers over the transition tables --------------------

PG_TOOL_FAILED = (
    "(event_type = 'tool_result' AND jsonb_typeof(payload) = 'object' "
    "AND payload -> 'is_error' = 'true'::jsonb)"
)

POSTGRESQL_FUNCTIONS = [
    # failed_tools: one grouped UPDATE per statement (a batch of 1,000 events is one).
    f"""
CREATE FUNCTION skill_run_failed_tools_apply() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    changes text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        changes := $q$SELECT run_id, 1 AS delta FROM new_logs WHERE {PG_TOOL_FAILED}$q$;
    ELSIF TG_OP = 'DELETE' THEN
        changes := $q$SELECT run_id, -1 AS delta FROM old_logs WHERE {PG_TOOL_FAILED}$q$;
    ELSE
        changes := $q$SELECT run_id, 1 AS delta FROM new_logs WHERE {PG_TOOL_FAILED}
                   UNION ALL SELECT run_id, -1 FROM old_logs WHERE {PG_TOOL_FAILED}$q$;
    END IF;
    EXECUTE format($sql$
        UPDATE skill_runs r SET failed_tools = r.failed_tools + d.delta
        FROM (SELECT run_id, SUM(delta) AS delta FROM (%s) c GROUP BY run_id) d
        WHERE r.id = d.run_id AND d.delta <> 0
    $sql$, changes);
    RETURN NULL;
END
$body$
""",
    # failed_descendants: lock the ancestors of the seeds in id order, then recount them.
    f"""
CREATE FUNCTION skill_run_failures_recount(seeds text[]) RETURNS void LANGUAGE plpgsql
AS $body$
DECLARE
    affected text[];
BEGIN
    WITH RECURSIVE anc(id) AS (
        SELECT s FROM unnest(seeds) s WHERE s <> ''
        UNION
        SELECT r.parent_run_id FROM anc JOIN skill_runs r ON r.id = anc.id
        WHERE NOT (r.parent_run_id = '')
    )
    SELECT array_agg(id ORDER BY id) INTO affected FROM anc;
    IF affected IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM skill_runs WHERE id = ANY (affected) ORDER BY id FOR UPDATE;
    {recount("SELECT unnest(affected) AS id")};
END
$body$
""",
    f"""
CREATE FUNCTION skill_run_failed_descendants_apply() RETURNS trigger LANGUAGE plpgsql
AS $body$
DECLARE
    seeds text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE $sql$
            SELECT array_agg(s) FROM (
                SELECT n.id AS s FROM new_runs n WHERE n.status IN {FAILED} OR EXISTS (
                    SELECT 1 FROM skill_runs c
                    WHERE c.parent_run_id = n.id AND NOT (c.parent_run_id = ''))
                UNION ALL
                SELECT n.parent_run_id FROM new_runs n WHERE n.status IN {FAILED}
            ) seeds
        $sql$ INTO seeds;
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE $sql$
            SELECT array_agg(o.parent_run_id) FROM old_runs o
            WHERE o.status IN {FAILED} OR o.failed_descendants > 0
        $sql$ INTO seeds;
    ELSE
        -- Rows whose id, parent or failed-ness changed (a recount's own UPDATE changes
        -- none of them, so it ends here).
        EXECUTE $sql$
            SELECT array_agg(s) FROM (
                SELECT unnest(ARRAY[n.id, n.parent_run_id]) AS s FROM new_runs n
                WHERE NOT EXISTS (
                    SELECT 1 FROM old_runs o WHERE o.id = n.id
                    AND o.parent_run_id = n.parent_run_id
                    AND (o.status IN {FAILED}) = (n.status IN {FAILED}))
                UNION ALL
                SELECT o.parent_run_id FROM old_runs o
                WHERE NOT EXISTS (
                    SELECT 1 FROM new_runs n WHERE o.id = n.id
                    AND o.parent_run_id = n.parent_run_id
                    AND (o.status IN {FAILED}) = (n.status IN {FAILED}))
            ) seeds
        $sql$ INTO seeds;
    END IF;
    IF seeds IS NOT NULL THEN
        PERFORM skill_run_failures_recount(seeds);
    END IF;
    RETURN NULL;
END
$body$
""",
]
POSTGRESQL_TRIGGERS = [
    *POSTGRESQL_FUNCTIONS,
    "CREATE TRIGGER skill_run_failed_tools_insert AFTER INSERT ON skill_run_logs "
    "REFERENCING NEW TABLE AS new_logs "
    "FOR EACH STATEMENT EXECUTE FUNCTION skill_run_failed_tools_apply()",
    "CREATE TRIGGER skill_run_failed_tools_update AFTER UPDATE ON skill_run_logs "
    "REFERENCING OLD TABLE AS old_logs NEW TABLE AS new_logs "
    "FOR EACH STATEMENT EXECUTE FUNCTION skill_run_failed_tools_apply()",
    "CREATE TRIGGER skill_run_failed_tools_delete AFTER DELETE ON skill_run_logs "
    "REFERENCING OLD TABLE AS old_logs "
    "FOR EACH STATEMENT EXECUTE FUNCTION skill_run_failed_tools_apply()",
    "CREATE TRIGGER skill_run_failed_descendants_insert AFTER INSERT ON skill_runs "
    "REFERENCING NEW TABLE AS new_runs "
    "FOR EACH STATEMENT EXECUTE FUNCTION skill_run_failed_descendants_apply()",
    "CREATE TRIGGER skill_run_failed_descendants_update AFTER UPDATE ON skill_runs "
    "REFERENCING OLD TABLE AS old_runs NEW TABLE AS new_runs "
    "FOR EACH STATEMENT EXECUTE FUNCTION skill_run_failed_descendants_apply()",
    "CREATE TRIGGER skill_run_failed_descendants_delete AFTER DELETE ON skill_runs "
    "REFERENCING OLD TABLE AS old_runs "
    "FOR EACH STATEMENT EXECUTE FUNCTION skill_run_failed_descendants_apply()",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS skill_run_failed_tools_insert ON skill_run_logs",
    "DROP TRIGGER IF EXISTS skill_run_failed_tools_update ON skill_run_logs",
    "DROP TRIGGER IF EXISTS skill_run_failed_tools_delete ON skill_run_logs",
    "DROP TRIGGER IF EXISTS skill_run_failed_descendants_insert ON skill_runs",
    "DROP TRIGGER IF EXISTS skill_run_failed_descendants_update ON skill_runs",
    "DROP TRIGGER IF EXISTS skill_run_failed_descendants_delete ON skill_runs",
    "DROP FUNCTION IF EXISTS skill_run_failed_tools_apply()",
    "DROP FUNCTION IF EXISTS skill_run_failed_descendants_apply()",
    "DROP FUNCTION IF EXISTS skill_run_failures_recount(text[])",
]


def backfill(vendor: str) -> list[str]:
    """Both columns counted from scratch (SkillRunManager.recount_failure_rollups does the
    same later). Descendants are counted from the failed runs up: (failed run, ancestor)
    pairs, one per ancestor reached through existing runs."""
    tool_failed = PG_TOOL_FAILED if vendor == "postgresql" else _tool_failed("skill_run_logs")
    return [
        "UPDATE skill_runs SET failed_tools = counted.n FROM ("
        f"SELECT run_id, COUNT(*) AS n FROM skill_run_logs WHERE {tool_failed} GROUP BY run_id"
        ") counted WHERE skill_runs.id = counted.run_id",
        f"""UPDATE skill_runs SET failed_descendants = counted.n FROM (
            WITH RECURSIVE up(d, a) AS (
                SELECT id, parent_run_id FROM skill_runs
                WHERE status IN {FAILED} AND NOT (parent_run_id = '')
                UNION
                SELECT up.d, r.parent_run_id FROM up JOIN skill_runs r ON r.id = up.a
                WHERE NOT (r.parent_run_id = '')
            )
            SELECT a, COUNT(*) AS n FROM up WHERE a <> d GROUP BY a
        ) counted WHERE skill_runs.id = counted.a""",
    ]


# Plain ALTER TABLE (not AddField): Django's SQLite AddField of a NOT NULL column copies
# the table, which would drop the run-count triggers of migration 0006.
ADD_COLUMNS = [
    "ALTER TABLE skill_runs ADD COLUMN failed_tools bigint NOT NULL DEFAULT 0",
    "ALTER TABLE skill_runs ADD COLUMN failed_descendants bigint NOT NULL DEFAULT 0",
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in ("sqlite", "postgresql"):
        raise RuntimeError(f"the failure roll-ups have no triggers for {vendor}")
    if vendor == "postgresql":
        # The backfill and the index builds read every run: on a big database they outlast
        # the site's statement_timeout (settings), which would cancel the migration halfway.
        schema_editor.execute("SET LOCAL statement_timeout = 0")
    for statement in ADD_COLUMNS:
        schema_editor.execute(statement, params=None)
    # The runs already stored (a database the dashboard is pointed at late).
    for statement in backfill(vendor):
        schema_editor.execute(statement, params=None)
    for statement in INDEXES:
        schema_editor.execute(statement, params=None)
    for statement in POSTGRESQL_TRIGGERS if vendor == "postgresql" else SQLITE_TRIGGERS:
        schema_editor.execute(statement, params=None)


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in POSTGRESQL_DROP if vendor == "postgresql" else SQLITE_DROP:
        schema_editor.execute(statement, params=None)
    for statement in DROP_INDEXES:
        schema_editor.execute(statement, params=None)
    for column in ("failed_tools", "failed_descendants"):
        schema_editor.execute(f"ALTER TABLE skill_runs DROP COLUMN {column}", params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0008_search_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="skillrun",
                    name="failed_tools",
                    field=models.BigIntegerField(db_default=0, editable=False),
                ),
                migrations.AddField(
                    model_name="skillrun",
                    name="failed_descendants",
                    field=models.BigIntegerField(db_default=0, editable=False),
                ),
            ],
            database_operations=[migrations.RunPython(install, uninstall)],
        ),
    ]
