"""runs.costs: which price prices a step, and what usage costs, in exact Decimal.

Pure library tests (no database): the precedence rules of the module docstring (validity
dates, exact beats pattern, the longest literal prefix among patterns), unknown and missing
models reported as unpriced (never 0), currencies kept apart, and the price file reader.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from runs import costs
from runs.costs import Cost, Price, PriceError, PriceTable, Usage

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SHIPPED = Path(__file__).resolve().parent.parent / "runs" / "data" / "model_prices.json"


def price(model, inp, out, at=T0, **more):
    return Price(
        model=model,
        valid_from=at,
        input_per_million=Decimal(inp),
        output_per_million=Decimal(out),
        **more,
    )


def test_the_price_valid_at_the_steps_time_is_used_latest_first():
    table = PriceTable(
        [
            price("m", "10", "20", T0),
            price("m", "5", "10", T0 + timedelta(days=30)),
            price("m", "1", "2", T0 + timedelta(days=60)),
        ]
    )
    assert table.price_for("m", T0 - timedelta(seconds=1)) is None
    assert table.price_for("m", T0).input_per_million == Decimal("10")
    assert table.price_for("m", T0 + timedelta(days=30)).input_per_million == Decimal("5")
    assert table.price_for("m", T0 + timedelta(days=59)).input_per_million == Decimal("5")
    assert table.price_for("m", T0 + timedelta(days=400)).input_per_million == Decimal("1")


def test_a_step_before_any_price_is_unpriced_not_zero():
    table = PriceTable([price("m", "10", "20", T0)])
    cost = table.cost([Usage("m", T0 - timedelta(days=1), input_tokens=1000)])
    assert cost.amounts == ()
    assert cost.partly_unpriced
    assert cost.unpriced_steps == 1 and cost.unpriced_tokens == 1000
    assert cost.unpriced_models == {"m"}
    assert costs.display(cost) == "unpriced"


def test_unknown_and_missing_models_make_the_cost_partly_unpriced():
    table = PriceTable([price("known", "1", "2")])
    usages = [
        Usage("known", T0, input_tokens=1_000_000, output_tokens=1_000_000),
        Usage("mystery-model", T0, input_tokens=10, output_tokens=5, steps=3),
        Usage("", T0, input_tokens=7),
    ]
    cost = table.cost(usages)
    assert cost.amount("USD") == Decimal("3")
    assert cost.partly_unpriced
    assert cost.unpriced_steps == 4
    assert cost.unpriced_tokens == 22
    assert cost.unpriced_models == {"mystery-model", ""}
    assert costs.display(cost) == "3.00 USD (partly unpriced)"
    assert cost.as_json()["unpriced"] is True


def test_exact_name_beats_every_pattern():
    table = PriceTable(
        [price("gpt-4o*", "2.5", "10"), price("gpt-4o", "5", "15"), price("gpt*", "9", "9")]
    )
    assert table.price_for("gpt-4o", T0).model == "gpt-4o"
    assert table.price_for("gpt-4o-2024-08-06", T0).model == "gpt-4o*"
    assert table.price_for("gpt-3.5", T0).model == "gpt*"


def test_the_longest_literal_prefix_wins_among_patterns_whatever_the_row_order():
    rows = [
        price("gpt-4o*", "2.5", "10"),
        price("gpt-4o-mini*", "0.15", "0.6"),
        price("*mini*", "7", "7"),
        price("gpt-*", "8", "8"),
    ]
    for ordering in (rows, rows[::-1]):
        table = PriceTable(ordering)
        assert table.price_for("gpt-4o-mini-2024-07-18", T0).model == "gpt-4o-mini*"
        assert table.price_for("gpt-4o-2024-05-13", T0).model == "gpt-4o*"
        assert table.price_for("gpt-5", T0).model == "gpt-*"
        assert table.price_for("o4-mini", T0).model == "*mini*"


def test_equal_prefixes_prefer_more_literal_characters_then_the_name():
    table = PriceTable([price("claude-*", "1", "1"), price("claude-*-sonnet*", "3", "15")])
    assert table.price_for("claude-3-5-sonnet-20241022", T0).model == "claude-*-sonnet*"
    assert table.price_for("claude-3-haiku", T0).model == "claude-*"
    both = PriceTable([price("x*z", "1", "1"), price("x*y*", "2", "2")])
    # both have prefix "x" and two literal characters: the name decides ("x*y*" < "x*z")
    assert both.price_for("xyz", T0).model == "x*y*"


def test_a_specific_pattern_not_yet_valid_falls_back_to_a_valid_general_one():
    table = PriceTable(
        [
            price("claude-opus-4*", "15", "75", T0),
            price("claude-opus-4-5*", "5", "25", T0 + timedelta(days=300)),
        ]
    )
    assert table.price_for("claude-opus-4-5-x", T0 + timedelta(days=1)).model == "claude-opus-4*"
    assert (
        table.price_for("claude-opus-4-5-x", T0 + timedelta(days=300)).model == "claude-opus-4-5*"
    )


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("gpt-4o*", "gpt-4o", True),
        ("gpt-4o*", "gpt-4o-mini", True),
        ("gpt-4o*", "xgpt-4o", False),
        ("*-sonnet", "claude-3-5-sonnet", True),
        ("*-sonnet", "claude-3-5-sonnet-2", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "acb", False),
        ("aa*aa", "aaa", False),
        ("GPT*", "gpt-4o", False),
        ("gpt.4*", "gpt-4o", False),
        ("gpt?4*", "gpt-4o", False),
    ],
)
def test_patterns_treat_only_the_star_as_special(pattern, name, matches):
    assert costs.pattern_matches(pattern, name) is matches


def test_costs_are_exact_decimals_of_each_token_kind():
    table = PriceTable(
        [
            price(
                "m",
                "2.50",
                "10.00",
                cached_input_per_million=Decimal("1.25"),
                thinking_per_million=Decimal("12.5"),
            )
        ]
    )
    usage = Usage(
        "m", T0, input_tokens=1234, cached_input_tokens=234, output_tokens=567, thinking_tokens=67
    )
    # (1000 * 2.50 + 234 * 1.25 + 500 * 10 + 67 * 12.5) / 1e6, by hand
    expected = (
        Decimal(1000) * Decimal("2.50")
        + Decimal(234) * Decimal("1.25")
        + Decimal(500) * Decimal("10.00")
        + Decimal(67) * Decimal("12.5")
    ) / Decimal(1_000_000)
    cost = table.cost([usage])
    assert cost.amount() == expected == Decimal("0.00863")
    assert costs.decimal_text(cost.amount()) == "0.00863"
    assert cost.as_json()["amount"] == "0.00863"


def test_ten_thousand_small_steps_sum_without_float_drift():
    table = PriceTable([price("m", "0.1", "0.3")])
    cost = table.cost(Usage("m", T0, input_tokens=1, output_tokens=1) for _ in range(10_000))
    assert cost.amount() == Decimal("0.004")
    assert isinstance(cost.amount(), Decimal)
    assert costs.decimal_text(cost.amount()) == "0.004"


def test_empty_cached_and_thinking_prices_bill_at_input_and_output_prices():
    table = PriceTable([price("m", "3", "15")])
    with_parts = table.cost(
        [
            Usage(
                "m",
                T0,
                input_tokens=100,
                cached_input_tokens=40,
                output_tokens=50,
                thinking_tokens=20,
            )
        ]
    )
    without = table.cost([Usage("m", T0, input_tokens=100, output_tokens=50)])
    assert with_parts.amount() == without.amount() == Decimal(100 * 3 + 50 * 15) / 1_000_000


def test_parts_larger_than_their_whole_are_capped_never_negative():
    table = PriceTable(
        [
            price(
                "m",
                "3",
                "15",
                cached_input_per_million=Decimal(0),
                thinking_per_million=Decimal(0),
            )
        ]
    )
    cost = table.cost(
        [
            Usage(
                "m", T0, input_tokens=10, cached_input_tokens=50, output_tokens=5, thinking_tokens=9
            )
        ]
    )
    assert cost.amount() == Decimal(0)
    assert not cost.partly_unpriced


def test_without_a_thinking_price_the_thinking_split_never_changes_a_cost():
    table = PriceTable([price("m", "3", "15")])
    counts = [(100, 0), (100, 60), (100, 100), (100, 900)]
    amounts = {
        table.cost([Usage("m", T0, output_tokens=out, thinking_tokens=th)]).amount()
        for out, th in counts
    }
    assert amounts == {Decimal(100 * 15) / 10**6}


def test_currencies_are_kept_apart_and_add_up_separately():
    table = PriceTable(
        [price("us", "1", "1", currency="USD"), price("eu", "2", "2", currency="EUR")]
    )
    a = table.cost([Usage("us", T0, input_tokens=1_000_000)])
    b = table.cost([Usage("eu", T0, input_tokens=500_000), Usage("eu", T0, output_tokens=500_000)])
    total = sum([a, b, Cost()], Cost())
    assert total.amounts == (("EUR", Decimal(2)), ("USD", Decimal(1)))
    assert total.as_json()["amounts"] == [
        {"amount": "2", "currency": "EUR"},
        {"amount": "1", "currency": "USD"},
    ]
    assert costs.display(total) == "2.00 EUR + 1.00 USD"


def test_provider_of_the_usage_breaks_a_tie_between_providers():
    table = PriceTable(
        [price("m", "1", "1", provider="azure"), price("m", "2", "2", provider="openai")]
    )
    assert table.price_for("m", T0, provider="openai").provider == "openai"
    assert table.price_for("m", T0).provider == "azure"


def test_no_usage_is_empty_not_unpriced():
    cost = PriceTable([]).cost([])
    assert cost.is_empty and not cost.partly_unpriced
    assert costs.display(cost) == "—"
    assert cost.as_json() == {
        "amount": "0",
        "currency": "USD",
        "unpriced": False,
        "unpriced_steps": 0,
        "unpriced_models": [],
    }


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("12.345", "12.34"),
        ("1234.5", "1,234.50"),
        ("0.01234", "0.0123"),
        ("0.00004", "<0.0001"),
        ("0", "0"),
    ],
)
def test_money_for_people(amount, text):
    assert costs.money(Decimal(amount)) == text


def test_cost_at_prices_model_usage_rows_at_one_time():
    class Row:
        model = "m"
        steps = 2
        input_tokens = 1_000_000
        output_tokens = 0
        cached_input_tokens = 0
        thinking_tokens = 0

    table = PriceTable([price("m", "1", "1", T0), price("m", "3", "3", T0 + timedelta(days=1))])
    assert table.cost_at([Row()], T0).amount() == Decimal(1)
    assert table.cost_at([Row()], T0 + timedelta(days=2)).amount() == Decimal(3)


# --- price files -------------------------------------------------------------------------


def entry(**more):
    body = {
        "model": "m",
        "input_per_million": "1",
        "output_per_million": "2",
        "valid_from": "2025-01-01",
    }
    body.update(more)
    return body


def test_price_file_reads_numbers_as_decimals_and_dates_as_utc_midnight():
    (p,) = costs.load_price_text(json.dumps([entry(input_per_million=0.1)]))
    assert p.input_per_million == Decimal("0.1")
    assert p.valid_from == datetime(2025, 1, 1, tzinfo=UTC)
    assert p.currency == "USD"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (entry(input_per_million="-1"), "entry 2 (m): input_per_million must not be negative"),
        (entry(output_per_million="abc"), "entry 2 (m): output_per_million must be a number"),
        (entry(currency="usd"), "entry 2 (m): currency must be a three-letter code"),
        (entry(valid_from="yesterday"), "entry 2 (m): valid_from is not an ISO date"),
        (entry(valid_from="2025-01-01T10:00:00"), "entry 2 (m): valid_from needs a time zone"),
        (entry(model=""), "entry 2: model must not be empty"),
        (entry(price="1"), "entry 2 (m): unknown key 'price'"),
        (entry(input_per_million="0.0000001"), "entry 2 (m): input_per_million must have at most"),
        (entry(input_per_million=True), "entry 2 (m): input_per_million must be a number"),
        ({"model": "m"}, "entry 2 (m): input_per_million is missing"),
        ("gpt-4o", "entry 2: must be an object"),
    ],
)
def test_a_bad_entry_is_named_with_its_problem(bad, message):
    good = entry(model="ok")
    with pytest.raises(PriceError) as caught:
        costs.load_price_text(json.dumps([good, bad]))
    assert str(caught.value).startswith(message)


def test_a_repeated_key_is_refused():
    with pytest.raises(
        PriceError, match="entry 2 \\(m\\): same model, provider and valid_from as entry 1"
    ):
        costs.load_price_text(json.dumps({"prices": [entry(), entry(input_per_million="3")]}))


def test_not_json_and_not_a_list_are_refused():
    with pytest.raises(PriceError, match="not JSON"):
        costs.load_price_text("{")
    with pytest.raises(PriceError, match="expected a JSON list"):
        costs.load_price_text('{"as_of": "2025-01-01"}')


def test_the_shipped_file_is_dated_sourced_and_prices_well_known_models():
    document = json.loads(SHIPPED.read_text())
    assert datetime.fromisoformat(document["as_of"])
    assert all(url.startswith("https://") for url in document["source"])
    assert "list prices" in document["note"].lower()
    table = PriceTable(costs.load_price_text(SHIPPED.read_text()))
    after = datetime.fromisoformat(document["as_of"]).replace(tzinfo=UTC)
    for model in (
        "gpt-4o",
        "gpt-4o-mini-2024-07-18",
        "gpt-4.1-2025-04-14",
        "o3-mini",
        "claude-sonnet-4-5-20250929",
        "claude-3-5-haiku-20241022",
        "gemini-2.5-pro",
        "gemini-2.0-flash-001",
    ):
        assert table.price_for(model, after) is not None, model
    # a family member's own row wins over its sibling's pattern
    assert (
        table.price_for("gpt-4o-mini", after).input_per_million
        < table.price_for("gpt-4o", after).input_per_million
    )
    assert table.price_for("gemini-2.5-flash-lite", after).model == "gemini-2.5-flash-lite*"
    assert table.price_for("gpt-5-pro", after) is None


def test_summing_rows_before_charging_equals_charging_each_row():
    """Buckets and skills are priced from summed rows (runs.selectors.ModelUsage): the
    capped parts make the charge linear, so both give the same exact amount."""
    import random

    rng = random.Random(18)
    table = PriceTable(
        [
            price(
                "m",
                "2.5",
                "10",
                cached_input_per_million=Decimal("1.25"),
                thinking_per_million=Decimal("12"),
            )
        ]
    )
    rows = []
    for _ in range(200):
        inp, out = rng.randint(0, 10_000), rng.randint(0, 3_000)
        rows.append(
            Usage(
                "m",
                T0,
                input_tokens=inp,
                output_tokens=out,
                cached_input_tokens=rng.randint(0, inp),
                thinking_tokens=rng.randint(0, out),
            )
        )
    summed = Usage(
        "m",
        T0,
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cached_input_tokens=sum(r.cached_input_tokens for r in rows),
        thinking_tokens=sum(r.thinking_tokens for r in rows),
        steps=len(rows),
    )
    assert table.cost(rows).amount() == table.cost([summed]).amount() > 0
