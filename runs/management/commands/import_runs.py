"""Import runs exported by export_runs, the API or the dashboard.

    manage.py import_runs runs.jsonl.gz more.csv bug-1234.json
    manage.py import_runs --replace runs.jsonl      # overwrite runs that differ
    export_runs ... | manage.py import_runs -       # from stdin

The work is runs.services.importer: batches checked whole before they are written, one
transaction per batch, trees (runs linked by parent_run_id) written or skipped whole.
The exit status is 1 when a run conflicted (it differs from the stored run of that id)
or a record was malformed; the summary says what was imported before.
"""

import os
import sys

from django.core.management.base import BaseCommand, CommandError

from runs.services import importer

from ._progress import Progress

MAX_BATCH_SIZE = 10_000
CONFLICTS_SHOWN = 50


class Command(BaseCommand):
    help = (
        "Import runs from JSON Lines, call-tree documents or CSV files written by "
        "export_runs (gzipped too). Runs already stored unchanged are skipped; a run that "
        "differs is a conflict (its tree is skipped, exit status 1) unless --replace."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE", help="a file, or - for stdin")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="overwrite stored runs that differ (and their events, when the file has them)",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=importer.BATCH_SIZE,
            help=f"runs per transaction (1 to {MAX_BATCH_SIZE}; default {importer.BATCH_SIZE})",
        )

    def handle(self, *args, **options):
        batch_size = options["batch_size"]
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
        for name in options["files"]:
            if name != "-" and not os.path.isfile(name):
                raise CommandError(f"{name}: no such file")
        work = importer.Importer(replace=options["replace"])
        progress = Progress(sys.stderr, "runs")
        for name in options["files"]:
            if work.summary.error:
                break
            self.import_file(work, name, batch_size, progress)
        progress.finish()
        summary = work.summary
        self.stdout.write(summary.text() + ".")
        for conflict in summary.conflicts[:CONFLICTS_SHOWN]:
            self.stdout.write(f"Conflict: {conflict}; its tree was skipped.")
        if len(summary.conflicts) > CONFLICTS_SHOWN:
            self.stdout.write(f"... and {len(summary.conflicts) - CONFLICTS_SHOWN} more.")
        if summary.error:
            raise CommandError(f"Stopped at a malformed record: {summary.error}")
        if summary.conflicts:
            raise CommandError(
                f"{len(summary.conflicts)} run(s) differ from the stored runs of the same id; "
                "their trees were skipped. Use --replace to overwrite them."
            )

    def import_file(self, work, name: str, batch_size: int, progress: Progress) -> None:
        def on_batch(summary) -> None:
            progress.set(summary.runs_read, f"({name})")

        try:
            if name == "-":
                importer.import_stream(
                    sys.stdin.buffer,
                    source="stdin",
                    batch_size=batch_size,
                    on_batch=on_batch,
                    importer=work,
                )
                return
            with open(name, "rb") as stream:
                importer.import_stream(
                    stream,
                    source=name,
                    batch_size=batch_size,
                    on_batch=on_batch,
                    importer=work,
                )
        except (OSError, EOFError) as exc:
            # A truncated or corrupt gzip file, or a read error: what came before stays.
            self.stdout.write(work.summary.text() + ".")
            raise CommandError(f"{name}: {getattr(exc, 'strerror', None) or exc}") from None
