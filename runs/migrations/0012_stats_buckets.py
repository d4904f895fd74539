"""Placeholder, filled in by the work on the stats buckets and per-run model usage (issue 18)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("runs", "0011_skill_summaries")]

    operations = []
