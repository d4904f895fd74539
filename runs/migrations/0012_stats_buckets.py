"""Trends and cost: the stats buckets, kept by triggers for every writer.

Four tables (see their models): skill_run_stats (runs and token totals per span, period,
skill, top-level, status), skill_run_runtimes (a log-scale runtime histogram per span,
period, skill, top-level), skill_run_model_usage (each run's step usage by model) and
skill_model_usage_stats (that usage per span, period, skill, top-level, model). Periods are
the run's started_at truncated to the UTC hour or day.

The triggers and the backfill are runs.managers.StatsSql's (one definition, shared with
SkillRunStat.objects.rebuild()); this migration installs them as they are at this commit.
A later change to them needs a migration of its own that drops and reinstalls them.
"""

from django.db import migrations, models

from runs.managers import StatsSql


def install(apps, schema_editor):
    # As at this commit: the all-skills tables (migration 0016) do not exist yet.
    sql = StatsSql(schema_editor.connection.vendor, all_skills=False)
    if sql.pg:
        # The backfill reads every run and every event: on a big database it outlasts the
        # site's statement_timeout, which would cancel the migration halfway.
        schema_editor.execute("SET LOCAL statement_timeout = 0")
        for table in ("skill_run_stats", "skill_run_runtimes", "skill_model_usage_stats"):
            # Free space on every page: the triggers' updates stay HOT (see migration 0006).
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = 50)")
    for statement in sql.recount():
        schema_editor.execute(statement, params=None)
    for statement in sql.install():
        schema_editor.execute(statement, params=None)
    # The planner's statistics of the filled tables now, not at autovacuum's next pass: at
    # 1M runs, before it came, the list's cost column read all 950,888 usage rows (a hash
    # join, 421 ms) instead of probing 50 keys (5 ms).
    for table in (
        "skill_run_stats",
        "skill_run_runtimes",
        "skill_run_model_usage",
        "skill_model_usage_stats",
    ):
        schema_editor.execute(f"ANALYZE {table}")


def uninstall(apps, schema_editor):
    for statement in StatsSql(schema_editor.connection.vendor).drop():
        schema_editor.execute(statement, params=None)


BUCKET = [
    (
        "id",
        models.BigAutoField(
            auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
        ),
    ),
    ("span", models.CharField(choices=[("hour", "Hour"), ("day", "Day")], max_length=4)),
    ("period_start", models.DateTimeField()),
    ("skill_id", models.CharField(max_length=255)),
    ("top_level", models.BooleanField()),
]
USAGE = [
    ("steps", models.BigIntegerField()),
    ("input_tokens", models.BigIntegerField()),
    ("output_tokens", models.BigIntegerField()),
    ("cached_input_tokens", models.BigIntegerField()),
    ("thinking_tokens", models.BigIntegerField()),
]


class Migration(migrations.Migration):
    dependencies = [("runs", "0011_skill_summaries")]

    operations = [
        migrations.CreateModel(
            name="SkillRunStat",
            fields=[
                *BUCKET,
                ("status", models.CharField(max_length=32)),
                ("runs", models.BigIntegerField()),
                ("input_tokens", models.BigIntegerField()),
                ("output_tokens", models.BigIntegerField()),
                ("thinking_tokens", models.BigIntegerField()),
            ],
            options={
                "db_table": "skill_run_stats",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("span", "period_start", "skill_id", "top_level", "status"),
                        name="run_stats_bucket",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SkillRunRuntime",
            fields=[*BUCKET, ("bin", models.IntegerField()), ("runs", models.BigIntegerField())],
            options={
                "db_table": "skill_run_runtimes",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("span", "period_start", "skill_id", "top_level", "bin"),
                        name="run_runtimes_bucket",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="RunModelUsage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("run_id", models.CharField(max_length=64)),
                ("model", models.CharField(max_length=255)),
                *USAGE,
            ],
            options={
                "db_table": "skill_run_model_usage",
                "constraints": [
                    models.UniqueConstraint(fields=("run_id", "model"), name="run_model_usage_key")
                ],
            },
        ),
        migrations.CreateModel(
            name="ModelUsageStat",
            fields=[
                *BUCKET,
                ("model", models.CharField(max_length=255)),
                ("runs", models.BigIntegerField()),
                *USAGE,
            ],
            options={
                "db_table": "skill_model_usage_stats",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("span", "period_start", "skill_id", "top_level", "model"),
                        name="model_usage_stats_bucket",
                    )
                ],
            },
        ),
        migrations.RunPython(install, uninstall),
    ]
