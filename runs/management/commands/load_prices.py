"""Load model prices (per million tokens) into the price table the costs are computed from.

    manage.py load_prices runs/data/model_prices.json     # the shipped list prices
    manage.py load_prices my_prices.json

The file is a JSON list of entries, or an object with a ``prices`` list beside ``as_of`` and
``source`` (see runs/data/model_prices.json). An entry is keyed by model, provider and
valid_from: a new key is added, a changed one updated, an equal one left alone, so loading a
file twice changes nothing and rows edited in the admin under other keys are kept. The
whole file is checked before anything is written; a bad entry stops it with its number.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from runs import costs
from runs.models import ModelPrice

MAX_FILE_BYTES = 5 * 1024 * 1024


class Command(BaseCommand):
    help = "Load model prices from a JSON file (idempotent: keyed by model, provider, valid_from)."

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE", help="a JSON price file")

    def handle(self, *args, **options):
        path = Path(options["file"])
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise CommandError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as problem:
            raise CommandError(f"{path}: {problem}") from problem
        try:
            prices = costs.load_price_text(text)
        except costs.PriceError as problem:
            raise CommandError(f"{path}: {problem}") from problem
        created, updated, unchanged = ModelPrice.objects.upsert(prices)
        if options["verbosity"]:
            self.stdout.write(
                f"{path}: {created} prices added, {updated} updated, {unchanged} unchanged."
            )
