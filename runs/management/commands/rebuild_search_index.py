"""Rebuild the run search's index from the stored runs and events.

    manage.py rebuild_search_index

The database keeps the index for every writer (SQLite: triggers; PostgreSQL: expression
indexes), so this is for rows written with triggers off on SQLite (a restore, a bulk load
that disabled them); on PostgreSQL it REINDEXes, which also sheds bloat. Writers wait
while it runs.
"""

import time

from django.core.management.base import BaseCommand

from runs.models import SkillRun


class Command(BaseCommand):
    help = "Rebuild the run search index from the stored runs and events."

    def handle(self, *args, **options):
        started = time.monotonic()
        SkillRun.objects.rebuild_search_index()
        if options["verbosity"]:
            self.stdout.write(f"Rebuilt the search index in {time.monotonic() - started:.1f} s.")
