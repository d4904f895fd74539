"""Tell PostgreSQL's planner how many distinct runs the log table holds.

ANALYZE samples 30,000 rows and estimated ~50,000 distinct run_id values in a 10M-row log
table that holds ~1M runs; with that, a purge batch of 10,000 ids planned a full scan of the
log table instead of the (run_id, sequence) index. n_distinct = -0.1 says "a tenth of the row
count" (about ten events per run), which keeps those plans on the index at any size.
"""

from django.db import migrations

SET = "ALTER TABLE skill_run_logs ALTER COLUMN run_id SET (n_distinct = -0.1)"
RESET = "ALTER TABLE skill_run_logs ALTER COLUMN run_id RESET (n_distinct)"


def set_n_distinct(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SET)


def reset_n_distinct(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(RESET)


class Migration(migrations.Migration):
    dependencies = [("runs", "0003_tool_calls_count_64_bits")]

    operations = [migrations.RunPython(set_n_distinct, reset_n_distinct)]
