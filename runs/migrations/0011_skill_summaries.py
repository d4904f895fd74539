"""skill_summaries: one row per skill (its runs, newest finished, ok and failed run), kept by
triggers on skill_runs in the writing transaction, and the indexes the skills page's sort
orders read (one range of an index per page instead of a pass over every skill's runs),
and run_counts_skill: a page's skills' hour and day buckets, a range per skill.

The newest-run columns only grow on INSERT (greatest of the old and the new). When a run
leaves a skill (DELETE, or an UPDATE of its skill, status or start) and it could have been
the newest of a column (its start is not older than the stored value), that column is
looked up again: one probe of runs_skill_status / runs_skill_started for the skill. A purge
removes old runs, so it rarely needs any. A row whose count reaches zero is deleted.
"""

from django.db import migrations, models

FAILED = ("error", "timeout", "budget_exceeded")  # contract.FAILED_STATUSES, frozen here
NOT_FINISHED = ("dry_run", "running")


def _quoted(statuses) -> str:
    return ", ".join(f"'{s}'" for s in statuses)


# What each newest-run column takes from a run, as a condition on its status.
COLUMNS = {
    "last_run_at": f"status NOT IN ({_quoted(NOT_FINISHED)})",
    "last_ok_at": "status = 'ok'",
    "last_failed_at": f"status IN ({_quoted(FAILED)})",
}


def _probe(column: str, skill: str) -> str:
    """The newest start of a column's runs of one skill, looked up in skill_runs."""
    return (
        f"(SELECT r.started_at FROM skill_runs r WHERE r.skill_id = {skill} "
        f"AND r.{COLUMNS[column]} ORDER BY r.started_at DESC LIMIT 1)"
    )


# PostgreSQL: statement-level, like skill_run_counts (0006): a batch of 2,000 runs is one
# grouped upsert. An UPDATE counts only the rows whose skill, status or start changed (the
# rows of old_runs and new_runs that differ), so saving a run's output touches nothing and
# finishing one only its skill's last_run_at. Transition tables are visible only in the
# trigger's own function, so both steps are EXECUTEd here. Rows are taken in skill order,
# so two writers lock shared skills in the same order and cannot deadlock on them.
POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION skill_summaries_apply() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    added text;
    removed text;
    emptied text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        added := 'SELECT skill_id, status, started_at FROM new_runs';
    ELSIF TG_OP = 'DELETE' THEN
        removed := 'SELECT skill_id, status, started_at FROM old_runs';
    ELSE
        added := 'SELECT skill_id, status, started_at FROM new_runs '
                 'EXCEPT ALL SELECT skill_id, status, started_at FROM old_runs';
        removed := 'SELECT skill_id, status, started_at FROM old_runs '
                   'EXCEPT ALL SELECT skill_id, status, started_at FROM new_runs';
    END IF;
    IF added IS NOT NULL THEN
        EXECUTE format($sql$
            INSERT INTO skill_summaries
                (skill_id, runs, last_run_at, last_ok_at, last_failed_at)
            SELECT skill_id, COUNT(*),
                   MAX(started_at) FILTER (WHERE {COLUMNS["last_run_at"]}),
                   MAX(started_at) FILTER (WHERE {COLUMNS["last_ok_at"]}),
                   MAX(started_at) FILTER (WHERE {COLUMNS["last_failed_at"]})
            FROM (%s) c GROUP BY skill_id ORDER BY skill_id
            ON CONFLICT (skill_id) DO UPDATE SET
                runs = skill_summaries.runs + EXCLUDED.runs,
                last_run_at = GREATEST(skill_summaries.last_run_at, EXCLUDED.last_run_at),
                last_ok_at = GREATEST(skill_summaries.last_ok_at, EXCLUDED.last_ok_at),
                last_failed_at =
                    GREATEST(skill_summaries.last_failed_at, EXCLUDED.last_failed_at)
        $sql$, added);
    END IF;
    IF removed IS NOT NULL THEN
        -- After the step above: a probe reads skill_runs as this statement left it.
        EXECUTE format($sql$
            WITH gone AS (
                SELECT skill_id, COUNT(*) AS runs,
                       MAX(started_at) FILTER (WHERE {COLUMNS["last_run_at"]}) AS run_at,
                       MAX(started_at) FILTER (WHERE {COLUMNS["last_ok_at"]}) AS ok_at,
                       MAX(started_at) FILTER (WHERE {COLUMNS["last_failed_at"]}) AS failed_at
                FROM (%s) c GROUP BY skill_id
            ), lowered AS (
                SELECT s.skill_id, s.runs - g.runs AS runs,
                       s.last_run_at, s.last_ok_at, s.last_failed_at,
                       g.run_at >= s.last_run_at AS probe_run,
                       g.ok_at >= s.last_ok_at AS probe_ok,
                       g.failed_at >= s.last_failed_at AS probe_failed
                FROM skill_summaries s JOIN gone g USING (skill_id)
                ORDER BY s.skill_id
                FOR UPDATE OF s
            )
            , changed AS (
            UPDATE skill_summaries s SET
                runs = l.runs,
                last_run_at = CASE WHEN l.probe_run
                    THEN {_probe("last_run_at", "l.skill_id")} ELSE l.last_run_at END,
                last_ok_at = CASE WHEN l.probe_ok
                    THEN {_probe("last_ok_at", "l.skill_id")} ELSE l.last_ok_at END,
                last_failed_at = CASE WHEN l.probe_failed
                    THEN {_probe("last_failed_at", "l.skill_id")} ELSE l.last_failed_at END
            FROM lowered l WHERE s.skill_id = l.skill_id
            RETURNING s.skill_id, s.runs
            )
            SELECT array_agg(skill_id) FROM changed WHERE runs <= 0
        $sql$, removed) INTO emptied;
        IF emptied IS NOT NULL THEN
            DELETE FROM skill_summaries WHERE skill_id = ANY (emptied);
        END IF;
    END IF;
    RETURN NULL;
END
$body$
"""

POSTGRESQL_TRIGGERS = [
    POSTGRESQL_FUNCTION,
    "CREATE TRIGGER skill_summaries_insert AFTER INSERT ON skill_runs "
    "REFERENCING NEW TABLE AS new_runs "
    "FOR EACH STATEMENT EXECUTE FUNCTION skill_summaries_apply()",
    "CREATE TRIGGER skill_summaries_update AFTER UPDATE ON skill_runs "
    "REFERENCING OLD TABLE AS old_runs NEW TABLE AS new_runs "
    "FOR EACH STATEMENT EXECUTE FUNCTION skill_summaries_apply()",
    "CREATE TRIGGER skill_summaries_delete AFTER DELETE ON skill_runs "
    "REFERENCING OLD TABLE AS old_runs "
    "FOR EACH STATEMENT EXECUTE FUNCTION skill_summaries_apply()",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS skill_summaries_insert ON skill_runs",
    "DROP TRIGGER IF EXISTS skill_summaries_update ON skill_runs",
    "DROP TRIGGER IF EXISTS skill_summaries_delete ON skill_runs",
    "DROP FUNCTION IF EXISTS skill_summaries_apply()",
]


# SQLite: row-level. NULL-safe greatest: SQLite's max(a, NULL) is NULL.
def _sqlite_greatest(column: str, row: str) -> str:
    return (
        f"{column} = CASE WHEN {row}.{COLUMNS[column]} AND ({column} IS NULL "
        f"OR {row}.started_at > {column}) THEN {row}.started_at ELSE {column} END"
    )


def _sqlite_add(row: str) -> str:
    values = ", ".join(
        f"CASE WHEN {row}.{condition} THEN {row}.started_at END" for condition in COLUMNS.values()
    )
    updates = ", ".join(_sqlite_greatest(column, "excluded_row") for column in COLUMNS)
    updates = updates.replace("excluded_row", row)
    return (
        "INSERT INTO skill_summaries (skill_id, runs, last_run_at, last_ok_at, last_failed_at) "
        f"VALUES ({row}.skill_id, 1, {values}) ON CONFLICT (skill_id) "
        f"DO UPDATE SET runs = runs + 1, {updates};"
    )


def _sqlite_remove(row: str) -> str:
    probes = ", ".join(
        f"{column} = CASE WHEN {row}.{condition} AND {row}.started_at >= {column} "
        f"THEN {_probe(column, f'{row}.skill_id')} ELSE {column} END"
        for column, condition in COLUMNS.items()
    )
    return (
        f"UPDATE skill_summaries SET runs = runs - 1, {probes} WHERE skill_id = {row}.skill_id; "
        f"DELETE FROM skill_summaries WHERE skill_id = {row}.skill_id AND runs <= 0;"
    )


SQLITE_TRIGGERS = [
    f"CREATE TRIGGER skill_summaries_insert AFTER INSERT ON skill_runs "
    f"BEGIN {_sqlite_add('NEW')} END",
    "CREATE TRIGGER skill_summaries_update AFTER UPDATE OF skill_id, status, started_at "
    "ON skill_runs WHEN OLD.skill_id IS NOT NEW.skill_id OR OLD.status IS NOT NEW.status "
    "OR OLD.started_at IS NOT NEW.started_at "
    f"BEGIN {_sqlite_remove('OLD')} {_sqlite_add('NEW')} END",
    f"CREATE TRIGGER skill_summaries_delete AFTER DELETE ON skill_runs "
    f"BEGIN {_sqlite_remove('OLD')} END",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS skill_summaries_insert",
    "DROP TRIGGER IF EXISTS skill_summaries_update",
    "DROP TRIGGER IF EXISTS skill_summaries_delete",
]

# One index per sort order of the skills page (the name sort is the primary key). Each
# is (newest DESC, skill_id): PostgreSQL says NULLS LAST (its DESC puts NULLs first);
# SQLite's DESC already puts them last and its CREATE INDEX has no NULLS clause.
SORT_INDEXES = {
    "postgresql": [
        "CREATE INDEX skill_summaries_last_run ON skill_summaries "
        "(last_run_at DESC NULLS LAST, skill_id)",
        "CREATE INDEX skill_summaries_last_failed ON skill_summaries "
        "(last_failed_at DESC NULLS LAST, skill_id)",
    ],
    "sqlite": [
        "CREATE INDEX skill_summaries_last_run ON skill_summaries (last_run_at DESC, skill_id)",
        "CREATE INDEX skill_summaries_last_failed ON skill_summaries "
        "(last_failed_at DESC, skill_id)",
    ],
}

# The summaries of the runs already stored: one pass over skill_runs.
BACKFILL = (
    "INSERT INTO skill_summaries (skill_id, runs, last_run_at, last_ok_at, last_failed_at) "
    "SELECT skill_id, COUNT(*), "
    + ", ".join(f"MAX(CASE WHEN {condition} THEN started_at END)" for condition in COLUMNS.values())
    + " FROM skill_runs GROUP BY skill_id ORDER BY skill_id"
)


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in SORT_INDEXES:
        raise RuntimeError(f"skill_summaries has no triggers for {vendor}")
    if vendor == "postgresql":
        # A backfill over every run: the server's statement timeout must not cut it.
        schema_editor.execute("SET LOCAL statement_timeout = 0")
        # Writers wait for the backfill, so no run is counted twice or missed.
        schema_editor.execute("LOCK TABLE skill_runs IN SHARE MODE")
    schema_editor.execute(BACKFILL, params=None)
    for statement in SORT_INDEXES[vendor]:
        schema_editor.execute(statement)
    for statement in POSTGRESQL_TRIGGERS if vendor == "postgresql" else SQLITE_TRIGGERS:
        # params=None: the function's body holds format()'s %s, not a query parameter.
        schema_editor.execute(statement, params=None)
    # The planner's statistics of the filled table now, not at autovacuum's next pass (a
    # table it believes empty is read whole instead of through its indexes).
    schema_editor.execute("ANALYZE skill_summaries")


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in POSTGRESQL_DROP if vendor == "postgresql" else SQLITE_DROP:
        schema_editor.execute(statement)
    for name in ("skill_summaries_last_run", "skill_summaries_last_failed"):
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("runs", "0010_failure_rollups")]

    operations = [
        migrations.CreateModel(
            name="SkillSummary",
            fields=[
                (
                    "skill_id",
                    models.CharField(max_length=255, primary_key=True, serialize=False),
                ),
                ("runs", models.BigIntegerField()),
                ("last_run_at", models.DateTimeField(null=True)),
                ("last_ok_at", models.DateTimeField(null=True)),
                ("last_failed_at", models.DateTimeField(null=True)),
            ],
            options={"db_table": "skill_summaries"},
        ),
        migrations.AddIndex(
            model_name="skillruncount",
            index=models.Index(
                fields=["skill_id", "span", "period_start"], name="run_counts_skill"
            ),
        ),
        migrations.RunPython(install, uninstall),
    ]
