"""Placeholder, filled in by the work on the model price table (issue 18)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("runs", "0012_stats_buckets")]

    operations = []
