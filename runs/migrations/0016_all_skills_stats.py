"""The stats buckets of all skills together (issue 18: /stats/ at 1M runs).

Three tables (see their models): all_skills_run_stats, all_skills_runtimes and
all_skills_model_usage_stats, skill_run_stats, skill_run_runtimes and
skill_model_usage_stats summed over the skills. /stats/'s series and totals read ~30 day
rows per status, bin or model for 30 days instead of every skill's (~360,000 runtime rows
at 1M runs: most of its 412-462 ms p95).

The stats triggers (runs.managers.StatsSql, installed by migration 0012) are dropped and
reinstalled to keep these tables in the same statements; the tables are filled from the
per-skill buckets (a grouped read of those, not of the runs), then analyzed. An index of
skill_run_runtimes by skill serves the per-skill charts' first 20 skills.
"""

from django.db import migrations, models

from runs.managers import StatsSql


def install(apps, schema_editor):
    sql = StatsSql(schema_editor.connection.vendor)
    if sql.pg:
        # The backfill reads every bucket row: on a big database it can outlast the
        # site's statement_timeout.
        schema_editor.execute("SET LOCAL statement_timeout = 0")
        for table in (
            "all_skills_run_stats",
            "all_skills_runtimes",
            "all_skills_model_usage_stats",
        ):
            # Every writer updates these few rows: free space keeps the updates HOT.
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = 50)")
        # No write between the fill and the new triggers (the per-skill tables are read).
        schema_editor.execute("LOCK TABLE skill_runs, skill_run_logs IN SHARE MODE")
    for statement in sql.drop():
        schema_editor.execute(statement, params=None)
    for statement in sql.recount_all_skills():
        schema_editor.execute(statement, params=None)
    for statement in sql.install():
        schema_editor.execute(statement, params=None)
    for table in ("all_skills_run_stats", "all_skills_runtimes", "all_skills_model_usage_stats"):
        schema_editor.execute(f"ANALYZE {table}")


def uninstall(apps, schema_editor):
    before = StatsSql(schema_editor.connection.vendor, all_skills=False)
    for statement in before.drop() + before.install():
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
    dependencies = [("runs", "0015_usage_stats_by_skill")]

    operations = [
        migrations.CreateModel(
            name="AllSkillsRunStat",
            fields=[
                *BUCKET,
                ("status", models.CharField(max_length=32)),
                ("runs", models.BigIntegerField()),
                ("input_tokens", models.BigIntegerField()),
                ("output_tokens", models.BigIntegerField()),
                ("thinking_tokens", models.BigIntegerField()),
            ],
            options={
                "db_table": "all_skills_run_stats",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("span", "period_start", "top_level", "status"),
                        name="all_skills_run_stats_bucket",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="AllSkillsRuntime",
            fields=[*BUCKET, ("bin", models.IntegerField()), ("runs", models.BigIntegerField())],
            options={
                "db_table": "all_skills_runtimes",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("span", "period_start", "top_level", "bin"),
                        name="all_skills_runtimes_bucket",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="AllSkillsModelUsage",
            fields=[
                *BUCKET,
                ("model", models.CharField(max_length=255)),
                ("runs", models.BigIntegerField()),
                *USAGE,
            ],
            options={
                "db_table": "all_skills_model_usage_stats",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("span", "period_start", "top_level", "model"),
                        name="all_skills_model_usage_bucket",
                    )
                ],
            },
        ),
        migrations.AddIndex(
            model_name="skillrunruntime",
            index=models.Index(
                fields=["skill_id", "span", "period_start"], name="run_runtimes_skill"
            ),
        ),
        migrations.RunPython(install, uninstall),
    ]
