"""The model price table: load_prices, the database's constraints, the admin, and the faces
that show a cost (run page, call tree, run list, /skills/, the API), model names escaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction

from runs import costs
from runs.models import ModelPrice

SHIPPED = Path(__file__).resolve().parent.parent / "runs" / "data" / "model_prices.json"

pytestmark = pytest.mark.django_db


def shipped_entries() -> list[dict]:
    return json.loads(SHIPPED.read_text())["prices"]


def test_load_prices_loads_the_shipped_file_once_whatever_the_repeats(capsys):
    call_command("load_prices", str(SHIPPED))
    entries = shipped_entries()
    assert ModelPrice.objects.count() == len(entries)
    assert f"{len(entries)} prices added, 0 updated, 0 unchanged" in capsys.readouterr().out
    call_command("load_prices", str(SHIPPED))
    assert ModelPrice.objects.count() == len(entries)
    assert f"0 prices added, 0 updated, {len(entries)} unchanged" in capsys.readouterr().out
    row = ModelPrice.objects.get(model="gpt-4o-mini", provider="openai")
    assert row.input_per_million == Decimal("0.15")
    assert row.valid_from == datetime(2024, 7, 18, tzinfo=UTC)


def test_load_prices_updates_a_changed_price_and_keeps_rows_it_does_not_name(tmp_path, capsys):
    ModelPrice.objects.create(
        model="in-house",
        input_per_million=Decimal("1"),
        output_per_million=Decimal("1"),
        valid_from=datetime(2025, 1, 1, tzinfo=UTC),
    )
    path = tmp_path / "prices.json"
    entry = {
        "model": "m",
        "input_per_million": "1.5",
        "output_per_million": "2",
        "valid_from": "2025-01-01",
    }
    path.write_text(json.dumps([entry]))
    call_command("load_prices", str(path))
    path.write_text(json.dumps([{**entry, "input_per_million": "1.25"}]))
    call_command("load_prices", str(path))
    assert "0 prices added, 1 updated, 0 unchanged" in capsys.readouterr().out.splitlines()[-1]
    assert ModelPrice.objects.get(model="m").input_per_million == Decimal("1.25")
    assert ModelPrice.objects.filter(model="in-house").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[{"model": "ok", "input_per_million": 1, "output_per_million": 1, '
            '"valid_from": "2025-01-01"}, {"model": "gpt-4o", "input_per_million": -1, '
            '"output_per_million": 1, "valid_from": "2025-01-01"}]',
            "entry 2 (gpt-4o): input_per_million must not be negative",
        ),
        ("{not json", "not JSON"),
        ('{"prices": 3}', 'expected a JSON list of prices or an object with a "prices" list'),
        (b"\xff\xfe", "codec can't decode"),
    ],
)
def test_a_bad_file_is_a_command_error_naming_the_entry_and_writes_nothing(
    tmp_path, content, message
):
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(CommandError) as caught:
        call_command("load_prices", str(path))
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert ModelPrice.objects.count() == 0


def test_a_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("load_prices", str(tmp_path / "absent.json"))


@pytest.mark.parametrize(
    "field",
    ["input_per_million", "output_per_million", "cached_input_per_million", "thinking_per_million"],
)
def test_the_database_refuses_a_negative_price(field):
    values = {
        "model": "m",
        "input_per_million": Decimal("1"),
        "output_per_million": Decimal("1"),
        "valid_from": datetime(2025, 1, 1, tzinfo=UTC),
        field: Decimal("-0.000001"),
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelPrice.objects.create(**values)


def test_the_database_refuses_a_second_row_for_the_same_model_provider_and_date():
    values = {
        "model": "m",
        "provider": "p",
        "input_per_million": Decimal("1"),
        "output_per_million": Decimal("1"),
        "valid_from": datetime(2025, 1, 1, tzinfo=UTC),
    }
    ModelPrice.objects.create(**values)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelPrice.objects.create(**values)
    ModelPrice.objects.create(**{**values, "provider": "q"})


def test_price_table_reads_every_row_as_exact_prices():
    call_command("load_prices", str(SHIPPED), verbosity=0)
    table = ModelPrice.objects.price_table()
    assert len(table) == len(shipped_entries())
    at = datetime(2025, 12, 1, tzinfo=UTC)
    cost = table.cost([costs.Usage("gpt-4o", at, input_tokens=1_000_000, output_tokens=100_000)])
    assert cost.amount() == Decimal("2.50") + Decimal("1.00")
