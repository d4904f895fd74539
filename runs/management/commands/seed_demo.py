"""manage.py seed_demo: record the demo history (runs.services.demo) through the recorder."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from runs.models import SkillRun
from runs.services import demo


class Command(BaseCommand):
    help = "Record demo history (runs, call trees, events) through the recorder."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=400, help="runs to record (400)")
        parser.add_argument("--days", type=float, default=7, help="days of history (7)")
        parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing when any run is stored"
        )

    def handle(self, *args, runs, days, seed, if_empty, **options):
        if runs < 1 or days <= 0:
            raise CommandError("--runs must be at least 1 and --days above 0")
        if if_empty and SkillRun.objects.exists():
            self.stdout.write("seed_demo: runs already stored; nothing recorded")
            return
        began = time.monotonic()
        try:
            done = demo.record_demo(runs, days, seed)
        except demo.RecordingFailed as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"seed_demo: recorded {done.runs} runs ({done.top_level} top-level, trees up to "
            f"{done.depth} levels) with {done.events} events over {days:g} days, statuses "
            f"{', '.join(sorted(done.statuses))}, seed {seed}, in {time.monotonic() - began:.1f} s"
        )
