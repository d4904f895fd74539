"""failed_descendants: an inserted run is recounted only when a failure is already below it.

Migration 0010's insert trigger recounted every inserted run that already had a child.
An OTLP trace is stored in one COPY with its runs' children, so every root run of every
trace was recounted: two recursive walks and a locking read of its ancestors per request,
with nothing to change (no failure below). A run can only have failed runs below it if
one of its children is failed or already counts failed runs under it
(``failed_descendants > 0``, exact for every stored run): only then is it recounted now.
A failed child inserted in the same statement seeds itself and its parent, and the
recount walks up from there, as before.

The start-set query also no longer ORs the EXISTS with the status test: PostgreSQL turned
that OR into a hashed subplan reading all of skill_runs per statement (a sequential scan
of the whole table for each 512-span OTLP export); as a separate branch it is a semi-join
probing runs_children. Measured on a 512-span GenAI export (187 runs): the trigger took
260-380 ms of the COPY's 510 ms, ~1 ms after (bench/RESULTS.md, otlp_ingest).

SQLite's row trigger gets the same condition in its WHEN clause.
"""

from django.db import migrations

FAILED = "('error', 'timeout', 'budget_exceeded')"  # contract.FAILED_STATUSES
# A child that is failed or has failed runs under it.
FAILING_CHILD = (
    "SELECT 1 FROM skill_runs c WHERE c.parent_run_id = {id} AND NOT (c.parent_run_id = '') "
    f"AND (c.status IN {FAILED} OR c.failed_descendants > 0)"
)


def _recount_sql(seeds: str) -> str:
    from importlib import import_module

    return import_module("runs.migrations.0010_failure_rollups").recount(seeds)


def _pg_function(insert_seeds: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION skill_run_failed_descendants_apply() RETURNS trigger
LANGUAGE plpgsql AS $body$
DECLARE
    seeds text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE $sql$
            {insert_seeds}
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
"""


OLD_PG_INSERT_SEEDS = f"""SELECT array_agg(s) FROM (
                SELECT n.id AS s FROM new_runs n WHERE n.status IN {FAILED} OR EXISTS (
                    SELECT 1 FROM skill_runs c
                    WHERE c.parent_run_id = n.id AND NOT (c.parent_run_id = ''))
                UNION ALL
                SELECT n.parent_run_id FROM new_runs n WHERE n.status IN {FAILED}
            ) seeds"""
NEW_PG_INSERT_SEEDS = f"""SELECT array_agg(s) FROM (
                SELECT n.id AS s FROM new_runs n WHERE n.status IN {FAILED}
                UNION ALL
                SELECT n.id FROM new_runs n WHERE NOT (n.status IN {FAILED})
                AND EXISTS ({FAILING_CHILD.format(id="n.id")})
                UNION ALL
                SELECT n.parent_run_id FROM new_runs n WHERE n.status IN {FAILED}
            ) seeds"""


def _sqlite_trigger(condition: str) -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS skill_run_failed_descendants_insert",
        "CREATE TRIGGER skill_run_failed_descendants_insert AFTER INSERT ON skill_runs "
        f"WHEN NEW.status IN {FAILED} OR EXISTS ({condition}) "
        f"BEGIN {_recount_sql('SELECT NEW.id AS id UNION ALL SELECT NEW.parent_run_id')}; END",
    ]


OLD_SQLITE_CHILD = (
    "SELECT 1 FROM skill_runs c WHERE c.parent_run_id = NEW.id AND NOT (c.parent_run_id = '')"
)


def _apply(schema_editor, new: bool) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = [_pg_function(NEW_PG_INSERT_SEEDS if new else OLD_PG_INSERT_SEEDS)]
    elif vendor == "sqlite":
        statements = _sqlite_trigger(FAILING_CHILD.format(id="NEW.id") if new else OLD_SQLITE_CHILD)
    else:
        raise RuntimeError(f"the failure roll-ups have no triggers for {vendor}")
    for statement in statements:
        schema_editor.execute(statement, params=None)


def install(apps, schema_editor):
    _apply(schema_editor, new=True)


def uninstall(apps, schema_editor):
    _apply(schema_editor, new=False)


class Migration(migrations.Migration):
    dependencies = [("runs", "0016_all_skills_stats")]

    operations = [migrations.RunPython(install, uninstall)]
