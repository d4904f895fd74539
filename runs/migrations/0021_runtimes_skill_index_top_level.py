"""The per-skill runtime histogram index gains top_level as its last column.

/stats/ reads the runtime histograms of the skills it shows over the window's day blocks
(SkillRunStatManager._bucket_reads), top-level runs only unless nested runs are included.
With (skill_id, span, period_start) the nested runs' rows were fetched from the table and
then filtered out: on a 30-day page at 100k runs, 7,243 rows fetched from ~1,000 table
pages to keep 4,398 (EXPLAIN ANALYZE: 10.4-13.0 ms for the histogram statement). With
top_level in the key they are skipped in the index: 6.4-6.6 ms. It is the last column, so
a page that includes nested runs (no top_level condition) still reads only the window's
blocks. The rows' counts are not in the index (an INCLUDE of runs measured the same and
would end the HOT updates of every count the triggers keep).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("runs", "0018_stats_day_blocks")]

    operations = [
        migrations.RemoveIndex(model_name="skillrunruntime", name="run_runtimes_skill"),
        migrations.AddIndex(
            model_name="skillrunruntime",
            index=models.Index(
                fields=["skill_id", "span", "period_start", "top_level"],
                name="run_runtimes_skill_window",
            ),
        ),
    ]
