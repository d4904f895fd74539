"""Placeholder, filled in by the work on the per-skill summary table (issue 13 item 12)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("runs", "0010_failure_rollups")]

    operations = []
