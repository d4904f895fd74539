"""Partition skill_run_logs by month of its run's start (PostgreSQL, opt-in).

    manage.py partition_history                  # convert, moving rows in batches
    manage.py partition_history --status         # the layout and its partitions
    manage.py partition_history --max-batches 50 # move at most 50 batches, then stop
    manage.py partition_history --months-ahead 6 # also create the next 6 months

The layout is runs.managers.LogPartitions. The conversion first creates the partitioned
table and puts a view in its place (one short transaction: the site and executors keep
reading and writing throughout), then moves the old rows over in batches of --batch-size,
one transaction each, and finally drops the emptied old table. Killed (or stopped by
--max-batches) at any moment, it is resumed by running it again: each row is in exactly one
of the two tables. A command, not a setting read by the migrations: the conversion of a big
database takes hours of batches that must be resumable, which a migration is not.
"""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from runs.managers import LogPartitions

PROGRESS_EVERY = 5.0


class Command(BaseCommand):
    help = (
        "Partition skill_run_logs by month of the run's start (PostgreSQL): converts in "
        "batches, resumable; with --status, shows the layout."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--status", action="store_true", help="Show the layout; change nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=20_000,
            help="Log rows moved per transaction (1,000 to 1,000,000; default 20,000).",
        )
        parser.add_argument(
            "--max-batches",
            type=int,
            default=None,
            help="Stop after this many batches (run the command again to go on).",
        )
        parser.add_argument(
            "--months-ahead",
            type=int,
            default=3,
            help="Create the partitions of this many coming months too (0 to 24; default 3).",
        )
        parser.add_argument(
            "--months-back",
            type=int,
            default=0,
            help="Also create the past months' partitions, runs or not (0 to 120).",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")

    def handle(
        self, *args, status, batch_size, max_batches, months_ahead, months_back, database, **options
    ):
        if connections[database].vendor != "postgresql":
            raise CommandError("month partitions need PostgreSQL; this database is not one")
        if not 1_000 <= batch_size <= 1_000_000:
            raise CommandError("--batch-size must be between 1,000 and 1,000,000")
        if max_batches is not None and max_batches < 1:
            raise CommandError("--max-batches must be at least 1")
        if not 0 <= months_ahead <= 24:
            raise CommandError("--months-ahead must be between 0 and 24")
        if not 0 <= months_back <= 120:
            raise CommandError("--months-back must be between 0 and 120")
        partitions = LogPartitions(database)
        state = partitions.state()
        if status:
            self.show(partitions, state)
            return
        if state == "plain":
            partitions.setup(months_ahead)
            self.stdout.write("Created skill_run_logs_by_month; moving the rows over.")
        elif state == "partitioned":
            partitions.refresh()
        moved = batches = 0
        started = last = time.monotonic()
        while max_batches is None or batches < max_batches:
            count = partitions.move_batch(batch_size)
            if not count:
                break
            moved += count
            batches += 1
            now = time.monotonic()
            if options["verbosity"] >= 2 or now - last >= PROGRESS_EVERY:
                last = now
                rate = moved / max(now - started, 1e-9)
                self.stdout.write(f"... {moved:,} rows moved ({rate:,.0f}/s)")
                self.stdout.flush()
        if partitions.rows_to_move():
            self.stdout.write(
                f"Moved {moved:,} rows in {batches} batches; about "
                f"{partitions.remaining():,} left. Run the command again to go on."
            )
            return
        if partitions.state() == "migrating":
            partitions.finish()
        created = partitions.ensure_months(months_ahead, months_back=months_back)
        self.stdout.write(
            self.style.SUCCESS(
                f"skill_run_logs is partitioned by month ({moved:,} rows moved in "
                f"{time.monotonic() - started:.1f} s"
                + (f"; created {', '.join(created)}" if created else "")
                + ")."
            )
        )

    def show(self, partitions: LogPartitions, state: str) -> None:
        self.stdout.write(f"layout: {state}")
        if state == "plain":
            return
        if state == "migrating":
            self.stdout.write(f"rows left to move: about {partitions.remaining():,}")
        for name, start, end, estimate in partitions.partitions():
            span = f"{start:%Y-%m-%d} .. {end:%Y-%m-%d}" if start else "DEFAULT (other months)"
            self.stdout.write(f"{name}  {span}  ~{estimate:,} rows")
