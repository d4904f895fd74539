"""Recount skill_run_counts (the skills page's per-hour and per-day run counts),
skill_summaries (its row per skill) and the failure roll-ups (skill_runs.failed_tools,
failed_descendants) from the runs and events.

    manage.py rebuild_run_counts

Triggers keep the counts exact for every writer; this is for rows changed with triggers off:
a pg_restore with --disable-triggers, a TRUNCATE of skill_runs alone, a bulk load that
disabled them. Writers wait while it runs (PostgreSQL locks skill_runs against writes).
"""

from django.core.management.base import BaseCommand

from runs.models import SkillRun, SkillRunCount, SkillSummary


class Command(BaseCommand):
    help = "Recount the skills page's per-hour and per-day run counts from skill_runs."

    def handle(self, *args, **options):
        rows = SkillRunCount.objects.rebuild()
        if options["verbosity"]:
            self.stdout.write(f"Recounted the runs into {rows:,} hour and day buckets.")
        skills = SkillSummary.objects.rebuild()
        if options["verbosity"]:
            self.stdout.write(f"Recounted {skills:,} skill summaries.")
        corrected = SkillRun.objects.recount_failure_rollups()
        if corrected and options["verbosity"]:
            self.stdout.write(f"Corrected {corrected:,} failure roll-up counts.")
