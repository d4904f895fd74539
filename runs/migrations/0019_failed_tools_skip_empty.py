"""failed_tools (PostgreSQL): no UPDATE of skill_runs when no failed tool result changed.

Migration 0010's statement trigger on skill_run_logs ran its grouped UPDATE of skill_runs
for every statement, also when the statement held no failed tool result (nearly always:
an OTLP export, an API batch). That UPDATE changed no row but was still planned (dynamic
SQL) and still fired the four statement triggers of skill_runs (run counts, stats,
summaries, failed_descendants), each planning its own dynamic SQL over empty transition
tables. Measured with EXPLAIN ANALYZE on a PostgreSQL database of ~100k runs, per
statement that inserts events: 7.4 ms -> 0.06 ms for this trigger (one OTLP export of
512 spans is one such statement, plus two more when a trace split over exports is
re-derived). The trigger now first looks for a failed tool result in the transition
table(s) and ends when there is none; the counts it keeps are the same (the UPDATE it
skips changed nothing).

SQLite: nothing (its row triggers already test the row in their WHEN clause).
"""

from importlib import import_module

from django.db import migrations

# 0010's condition: the same rows count as failed tool results.
PG_TOOL_FAILED = import_module("runs.migrations.0010_failure_rollups").PG_TOOL_FAILED

FUNCTION = f"""
CREATE OR REPLACE FUNCTION skill_run_failed_tools_apply() RETURNS trigger LANGUAGE plpgsql
AS $body$
DECLARE
    changes text;
BEGIN
    -- Static queries (plans kept by the session): most statements end here.
    IF TG_OP = 'INSERT' THEN
        IF NOT EXISTS (SELECT 1 FROM new_logs WHERE {PG_TOOL_FAILED}) THEN
            RETURN NULL;
        END IF;
        changes := $q$SELECT run_id, 1 AS delta FROM new_logs WHERE {PG_TOOL_FAILED}$q$;
    ELSIF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT 1 FROM old_logs WHERE {PG_TOOL_FAILED}) THEN
            RETURN NULL;
        END IF;
        changes := $q$SELECT run_id, -1 AS delta FROM old_logs WHERE {PG_TOOL_FAILED}$q$;
    ELSE
        IF NOT EXISTS (SELECT 1 FROM new_logs WHERE {PG_TOOL_FAILED})
           AND NOT EXISTS (SELECT 1 FROM old_logs WHERE {PG_TOOL_FAILED}) THEN
            RETURN NULL;
        END IF;
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
"""


def _previous() -> str:
    statement = import_module("runs.migrations.0010_failure_rollups").POSTGRESQL_FUNCTIONS[0]
    if "CREATE FUNCTION skill_run_failed_tools_apply()" not in statement:
        raise RuntimeError("0010's failed_tools function changed: 0019 cannot restore it")
    return statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_previous(), params=None)


class Migration(migrations.Migration):
    dependencies = [("runs", "0017_failed_descendants_seeds")]

    operations = [migrations.RunPython(install, uninstall)]
