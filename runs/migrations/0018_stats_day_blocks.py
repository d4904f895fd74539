"""Per-skill day blocks in the stats buckets (issue 18: /stats/ at 1M runs).

The per-skill tables (skill_run_stats, skill_run_runtimes, skill_model_usage_stats) also
hold rows of 4 and 16 whole UTC days (span 'd4' and 'd16', aligned on 1970-01-01; see
runs.managers.STATS_BLOCK_DAYS), each the sum of its days' rows, kept by the same
triggers in the same statements. /stats/'s per-skill numbers (the ranking of the skills,
the shown skills' runtime histograms and usage) read a 30-day window as ~8 aligned blocks
per skill instead of 30 day rows. The all-skills tables have none (their series reads
every bucket anyway).

The stats triggers (runs.managers.StatsSql) are dropped and reinstalled; the blocks are
summed from the day rows (a grouped read of those, not of the runs), then analyzed. No
schema change: the span column (4 characters) holds the new spans.
"""

from django.db import migrations

from runs.managers import StatsSql

TABLES = ("skill_run_stats", "skill_run_runtimes", "skill_model_usage_stats")


def install(apps, schema_editor):
    sql = StatsSql(schema_editor.connection.vendor)
    if sql.pg:
        # The fill reads every day row: on a big database it can outlast the site's
        # statement_timeout.
        schema_editor.execute("SET LOCAL statement_timeout = 0")
        # No write between the fill and the new triggers (the day rows are read).
        schema_editor.execute("LOCK TABLE skill_runs, skill_run_logs IN SHARE MODE")
    for statement in sql.drop() + sql.recount_blocks() + sql.install():
        schema_editor.execute(statement, params=None)
    if sql.pg:
        for table in TABLES:
            schema_editor.execute(f"ANALYZE {table}")


def uninstall(apps, schema_editor):
    before = StatsSql(schema_editor.connection.vendor, blocks=False)
    for statement in before.drop():
        schema_editor.execute(statement, params=None)
    for table in TABLES:
        schema_editor.execute(f"DELETE FROM {table} WHERE span NOT IN ('hour', 'day')")
    for statement in before.install():
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    # 0019 was committed first, also after 0017: one line of migrations, 0019 then 0018.
    dependencies = [("runs", "0019_failed_tools_skip_empty")]

    operations = [migrations.RunPython(install, uninstall)]
