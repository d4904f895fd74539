"""Export runs: the list's filters as options, JSON Lines or CSV, or one call tree.

    manage.py export_runs --skill triage --since 2026-11-01 --events --output runs.jsonl.gz
    manage.py export_runs --format csv --include-nested --output runs.csv
    manage.py export_runs --tree RUN_ID --output bug-1234.json

The writing is runs.services.export (the same bytes as the API and the dashboard); this
command parses the options through the list's RunFilterSet, so they mean exactly what the
parameters of /runs/ mean, and shows a progress bar when stderr is a terminal.
"""

import gzip
import sys

from django.core.management.base import BaseCommand, CommandError

from runs import contract
from runs.filters import RunFilterSet
from runs.models import SkillRun
from runs.services import export

from ._progress import Progress

# option name -> the list's parameter
FILTER_OPTIONS = {
    "status": "status",
    "skill": "skill",
    "caller": "caller",
    "channel": "channel",
    "since": "since",
    "until": "until",
}


class Command(BaseCommand):
    help = (
        "Export runs as JSON Lines (one run a line; --events adds each run's events) or CSV "
        "(summary columns), filtered like /runs/; or one call tree (--tree) as one JSON "
        "document. Writes to stdout unless --output is given (gzip when it ends in .gz)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--status", help="a status, or stale")
        parser.add_argument("--skill", help="exact skill id")
        parser.add_argument("--caller", help="exact caller id")
        parser.add_argument("--channel", help="exact channel id")
        parser.add_argument("--since", help="started at or after (ISO 8601; no offset: UTC)")
        parser.add_argument("--until", help="started before (ISO 8601; no offset: UTC)")
        parser.add_argument(
            "--include-nested", action="store_true", help="nested runs too (default: top-level)"
        )
        parser.add_argument(
            "--include-dry-run", action="store_true", help="dry runs too (default: hidden)"
        )
        parser.add_argument("--events", action="store_true", help="JSON Lines: add events")
        parser.add_argument(
            "--format",
            choices=["jsonl", "csv"],
            help="jsonl (default) or csv; default csv for an --output ending in .csv(.gz)",
        )
        parser.add_argument("--tree", metavar="RUN_ID", help="export this run's call tree")
        parser.add_argument("--output", "-o", metavar="FILE", help="default: stdout")

    def handle(self, *args, **options):
        output = options["output"]
        fmt = options["format"] or (
            "csv" if output and output.removesuffix(".gz").endswith(".csv") else "jsonl"
        )
        if options["tree"] is not None:
            chunks, total = self.tree(options), None
        else:
            chunks, total = self.runs(options, fmt)
        self.write(chunks, output, total)

    def runs(self, options, fmt):
        data = {
            param: options[option]
            for option, param in FILTER_OPTIONS.items()
            if options[option] not in (None, "")
        }
        if options["include_nested"]:
            data["include_nested"] = "1"
        if options["include_dry_run"]:
            data["include_dry_run"] = "1"
        filterset = RunFilterSet(data, queryset=SkillRun.objects.all())
        if not filterset.is_valid():
            problems = "; ".join(
                f"--{name.replace('_', '-')}: {' '.join(messages)}"
                for name, messages in filterset.error_messages.items()
            )
            raise CommandError(problems)
        if fmt == "csv" and options["events"]:
            raise CommandError("--events needs --format jsonl (CSV has the summary columns)")
        matching = filterset.qs
        self.progress = Progress(sys.stderr, "runs")
        total = matching.count() if self.progress.enabled else None
        if fmt == "csv":
            return export.csv_chunks(matching, on_runs=self.progress.add), total
        return export.jsonl_chunks(matching, options["events"], on_runs=self.progress.add), total

    def tree(self, options):
        for name in (*FILTER_OPTIONS, "include_nested", "include_dry_run", "events"):
            if options[name]:
                raise CommandError(f"--tree takes no --{name.replace('_', '-')}")
        if options["format"] == "csv":
            raise CommandError("--tree writes one JSON document; --format csv cannot be used")
        self.progress = Progress(None, "runs")
        try:
            plan = export.tree_export(options["tree"])
        except contract.NotFound:
            raise CommandError(f"no run {options['tree']!r}") from None
        except export.TreeTooLarge as exc:
            raise CommandError(str(exc)) from None
        self.progress.done = len(plan.run_ids)
        return plan.chunks()

    def write(self, chunks, output, total) -> None:
        self.progress.start(total)
        if output in (None, "-"):
            target = sys.stdout.buffer
            for chunk in chunks:
                target.write(chunk)
            target.flush()
        else:
            opener = (
                (lambda: gzip.open(output, "wb", compresslevel=6))
                if output.endswith(".gz")
                else (lambda: open(output, "wb"))
            )
            try:
                with opener() as target:
                    for chunk in chunks:
                        target.write(chunk)
            except OSError as exc:
                raise CommandError(f"--output {output}: {exc.strerror or exc}") from None
        runs = self.progress.finish()
        if output not in (None, "-"):
            self.stderr.write(f"Exported {runs} run(s) to {output}.")
