"""Recount the stats buckets (runs, runtimes, model usage) from skill_runs and
skill_run_logs: only needed after writes made with the triggers off."""

from django.core.management.base import BaseCommand

from runs.models import SkillRunStat


class Command(BaseCommand):
    help = (
        "Recount the /stats/ buckets and each run's model usage from the runs and their "
        "step events (after a restore with triggers disabled). Writers wait meanwhile."
    )

    def handle(self, *args, **options):
        rows = SkillRunStat.objects.rebuild()
        self.stdout.write(f"{rows} run bucket rows recounted (and the runtime and usage tables)")
