"""Delete old runs and their logs: the retention job cron runs.

    manage.py purge_runs                      # older than SKILLAUDIT_RETENTION_DAYS
    manage.py purge_runs --older-than 30d     # or 12h, 90m, 2w
    manage.py purge_runs --before 2025-01-01T00:00:00Z
    manage.py purge_runs --dry-run            # counts only
    manage.py purge_runs --noinput            # for cron
    manage.py purge_runs --workers 2          # PostgreSQL: purge on 2 connections at once

The deleting is runs.services.purge.purge_started_before, the code behind the contract's
purge_older_than: batches of runs, one transaction each, so a kill at any moment leaves
whole runs (never logs without their run) and running the command again finishes the job.
With --workers N (PostgreSQL) the runs are split into N started_at ranges purged at once.
"""

import sys
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from runs import contract
from runs.durations import parse_duration
from runs.models import SkillRun
from runs.services import purge

DEFAULT_BATCH_SIZE = 2000
# SQLite allows 32,766 parameters in one statement; a batch's ids are one IN list.
MAX_BATCH_SIZE = 30_000
MAX_WORKERS = 16
# Seconds between progress lines at normal verbosity (every batch at -v 2).
PROGRESS_EVERY = 5.0


class Command(BaseCommand):
    help = (
        "Delete the runs started before a cutoff, with all their log events, in batches. "
        "The cutoff is --older-than, --before, or SKILLAUDIT_RETENTION_DAYS days ago."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        cutoff = parser.add_mutually_exclusive_group()
        cutoff.add_argument(
            "--older-than",
            metavar="DURATION",
            help="Delete runs started more than this long ago: 30d, 12h, 90m, 2w, 45s.",
        )
        cutoff.add_argument(
            "--before",
            metavar="DATETIME",
            help=(
                "Delete runs started before this ISO 8601 time, with a time zone "
                "(2025-01-31T00:00:00Z or +02:00). Times without a zone are refused."
            ),
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print how many runs and log events would be deleted; delete nothing.",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation (for cron).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Runs deleted per transaction (1 to {MAX_BATCH_SIZE}; default "
            f"{DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help=(
                "PostgreSQL only: purge on this many connections at once, each a share of "
                f"the runs (1 to {MAX_WORKERS}; default 1). One deleting backend keeps one "
                "core busy: use up to the database server's idle cores."
            ),
        )

    def handle(self, *args, **options):
        now = timezone.now()
        cutoff, described = self.cutoff(options["older_than"], options["before"], now)
        batch_size = options["batch_size"]
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
        workers = options["workers"]
        if not 1 <= workers <= MAX_WORKERS:
            raise CommandError(f"--workers must be between 1 and {MAX_WORKERS}")
        try:
            purge.check_workers(workers)
        except ValueError as exc:
            raise CommandError(f"--workers {workers}: {exc}. Leave it at 1.") from None
        when = f"started before {cutoff.isoformat()} ({described})"

        if options["dry_run"] or options["interactive"]:
            runs, logs = SkillRun.objects.count_started_before(cutoff)
            if options["dry_run"]:
                self.stdout.write(
                    f"Dry run: would delete {runs} run(s) and {logs} log event(s) {when}. "
                    "Nothing was deleted."
                )
                return
            if not runs:
                self.stdout.write(f"No runs {when}. Nothing to delete.")
                return
            if not self.confirmed(
                f"This deletes {runs} run(s) and {logs} log event(s) {when}, for good.",
                options.get("stdin") or sys.stdin,
            ):
                self.stdout.write("Purge cancelled; nothing was deleted.")
                return

        self.purge(cutoff, when, batch_size, workers, options["verbosity"])

    def cutoff(self, older_than, before, now: datetime) -> tuple[datetime, str]:
        """The cutoff in UTC and how it was chosen; CommandError for anything doubtful."""
        if before is not None:
            cutoff = self.parse_before(before)
            if cutoff > now:
                raise CommandError(
                    f"--before {before} is in the future: that would delete runs still being "
                    "recorded. Give a past time, or --before with the current time to delete "
                    "everything recorded so far."
                )
            return cutoff, f"--before {before}"
        if older_than is not None:
            try:
                age = parse_duration(older_than)
            except ValueError as exc:
                raise CommandError(f"--older-than: {exc}") from None
            described = f"--older-than {older_than}"
        else:
            days = settings.SKILLAUDIT_RETENTION_DAYS
            if days <= 0:
                raise CommandError(
                    f"SKILLAUDIT_RETENTION_DAYS is {days}; it must be at least 1 day "
                    "(or pass --older-than / --before)."
                )
            age = timedelta(days=days)
            described = f"SKILLAUDIT_RETENTION_DAYS={days}"
        try:
            return now - age, described
        except OverflowError:
            raise CommandError(f"{described} reaches back before the year 1") from None

    def parse_before(self, text: str) -> datetime:
        try:
            if parse_date(text.strip()) is not None:
                raise CommandError(
                    f"--before {text!r} has no time and no time zone; write it in full, "
                    f"e.g. {text.strip()}T00:00:00Z for midnight UTC."
                )
            value = parse_datetime(text.strip())
        except ValueError as exc:
            raise CommandError(f"--before {text!r} is not a valid date-time: {exc}") from None
        if value is None:
            raise CommandError(
                f"--before {text!r} is not an ISO 8601 date-time "
                "(e.g. 2025-01-31T00:00:00Z or 2025-01-31T00:00:00+02:00)."
            )
        if timezone.is_naive(value):
            # A purge is irreversible: guessing the zone could delete hours more than meant.
            raise CommandError(
                f"--before {text!r} has no time zone; add one, e.g. {text.strip()}Z for UTC "
                "or +02:00."
            )
        try:
            return contract.require_aware(value, "--before")
        except OverflowError:
            raise CommandError(f"--before {text!r} is out of range") from None

    def confirmed(self, question: str, stdin) -> bool:
        self.stdout.write(question)
        self.stdout.write("Type 'yes' to continue, anything else to cancel: ", ending="")
        self.stdout.flush()
        answer = stdin.readline()
        return answer.strip().lower() == "yes"

    def purge(
        self, cutoff: datetime, when: str, batch_size: int, workers: int, verbosity: int
    ) -> None:
        started = last_report = time.monotonic()

        def progress(runs: int, logs: int) -> None:
            nonlocal last_report
            now = time.monotonic()
            if verbosity >= 2 or (verbosity >= 1 and now - last_report >= PROGRESS_EVERY):
                last_report = now
                rate = runs / max(now - started, 1e-9)
                self.stdout.write(
                    f"... {runs} run(s) and {logs} log event(s) deleted so far ({rate:,.0f} runs/s)"
                )
                self.stdout.flush()

        deleted = [0, 0]

        def on_batch(runs: int, logs: int) -> None:
            deleted[:] = [runs, logs]
            progress(runs, logs)

        try:
            runs, logs = purge.purge_started_before(
                cutoff, batch_size=batch_size, on_batch=on_batch, workers=workers
            )
        except KeyboardInterrupt:
            raise CommandError(
                f"Interrupted after deleting {deleted[0]} run(s) and {deleted[1]} log "
                "event(s); every deleted run went with all its logs. Run the command again "
                "to finish."
            ) from None
        seconds = time.monotonic() - started
        if verbosity >= 1:
            if runs:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Deleted {runs} run(s) and {logs} log event(s) {when} in {seconds:.1f} s."
                    )
                )
            else:
                self.stdout.write(f"No runs {when}. Nothing to delete.")
        # Month partitions (manage.py partition_history): the coming months, ahead of time.
        created = purge.ensure_months()
        if created and verbosity >= 1:
            self.stdout.write(f"Created log partitions ahead of time: {', '.join(created)}.")
