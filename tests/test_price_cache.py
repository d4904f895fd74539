"""The price table kept per process (runs.pricing.PriceTableCache, issue 17): read once
between writes, and never a stale price after a write through Django (the admin,
load_prices, ORM writes, bulk updates), a rolled-back write, another process's write
(the shared stamp) or the TTL. The caching paths run outside a transaction, so these tests
use the transactional database (a test's own transaction turns the cache off for it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from runs import costs, pricing
from runs.models import ModelPrice
from tests.dashboard_data import record_run

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "cache-model"
STARTED = datetime(2025, 6, 1, tzinfo=UTC)


def price_reads(call) -> int:
    with CaptureQueriesContext(connection) as captured:
        call()
    return sum('FROM "model_prices"' in q["sql"] for q in captured.captured_queries)


def input_price() -> Decimal | None:
    found = pricing.price_table().price_for(MODEL, STARTED + timedelta(days=1))
    return None if found is None else found.input_per_million


@pytest.fixture
def price():
    pricing._cache.drop()
    return ModelPrice.objects.create(
        model=MODEL,
        input_per_million=Decimal("1"),
        output_per_million=Decimal("2"),
        valid_from=STARTED,
    )


def test_the_table_is_read_once_between_writes(price):
    assert price_reads(pricing.price_table) == 1
    assert price_reads(pricing.price_table) == 0
    assert input_price() == Decimal("1")


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(
            lambda p: ModelPrice.objects.filter(pk=p.pk).update(input_per_million=7), id="update"
        ),
        pytest.param(
            lambda p: (setattr(p, "input_per_million", Decimal("7")), p.save()), id="save"
        ),
        pytest.param(
            lambda p: ModelPrice.objects.bulk_update(
                [setattr(p, "input_per_million", Decimal("7")) or p], ["input_per_million"]
            ),
            id="bulk_update",
        ),
        pytest.param(lambda p: ModelPrice.objects.filter(pk=p.pk).delete(), id="delete"),
        pytest.param(lambda p: p.delete(), id="instance delete"),
        pytest.param(
            lambda p: ModelPrice.objects.upsert(
                [
                    costs.Price(
                        model=MODEL,
                        valid_from=STARTED,
                        input_per_million=Decimal("7"),
                        output_per_million=Decimal("2"),
                    )
                ]
            ),
            id="upsert (load_prices)",
        ),
    ],
)
def test_a_write_through_django_is_seen_at_once(price, write):
    assert input_price() == Decimal("1")  # cached now
    write(price)
    assert input_price() in (Decimal("7"), None)  # None: deleted
    assert input_price() == (None if not ModelPrice.objects.exists() else Decimal("7"))


def test_an_admin_edit_is_seen_by_the_next_page(price, admin_client):
    record_run(
        "cached-run",
        started_at=STARTED + timedelta(days=1),
        events=[("step", {"model": MODEL, "usage": {"input_tokens": 1_000_000}})],
        tokens=(1_000_000, 0, 0),
    )
    url = reverse("runs:run_list")
    assert "1.00 USD" in admin_client.get(url).content.decode()
    with CaptureQueriesContext(connection) as cached:
        admin_client.get(url)
    assert not any('FROM "model_prices"' in q["sql"] for q in cached.captured_queries)
    form = {
        "model": MODEL,
        "provider": "",
        "input_per_million": "3",
        "output_per_million": "2",
        "cached_input_per_million": "",
        "thinking_per_million": "",
        "currency": "USD",
        "valid_from_0": "2025-06-01",
        "valid_from_1": "00:00:00",
        "note": "",
    }
    response = admin_client.post(f"/admin/runs/modelprice/{price.pk}/change/", form)
    assert response.status_code == 302
    html = admin_client.get(url).content.decode()
    assert "3.00 USD" in html and "1.00 USD" not in html


def test_a_rolled_back_write_is_not_kept(price):
    assert input_price() == Decimal("1")
    with transaction.atomic():
        ModelPrice.objects.filter(pk=price.pk).update(input_per_million=9)
        assert input_price() == Decimal("9")  # read inside, uncached
        assert input_price() == Decimal("9")
        transaction.set_rollback(True)
    assert input_price() == Decimal("1")


def test_a_read_inside_a_rolled_back_transaction_is_not_kept(price):
    assert input_price() == Decimal("1")
    with transaction.atomic():
        price.input_per_million = Decimal("9")
        price.save()
        pricing.price_table()
        transaction.set_rollback(True)
    assert price_reads(pricing.price_table) == 1
    assert input_price() == Decimal("1")


def test_another_process_write_is_seen_through_the_shared_stamp(price):
    assert input_price() == Decimal("1")
    # Another process (load_prices, another worker's admin) writes and replaces the stamp;
    # this process's signals never fire.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE model_prices SET input_per_million = 5")
    assert input_price() == Decimal("1")  # nothing told this process yet
    cache.set(pricing.PRICE_STAMP_KEY, "another process wrote")
    assert input_price() == Decimal("5")


def test_a_write_outside_django_is_seen_after_the_ttl(price, monkeypatch):
    assert input_price() == Decimal("1")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE model_prices SET input_per_million = 6")
    monkeypatch.setattr(pricing._cache, "ttl", 0.0)
    assert input_price() == Decimal("6")
    assert pricing.PRICE_TABLE_TTL_SECONDS <= 60


def test_a_cache_that_fails_never_serves_the_table(price, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("cache down")

    monkeypatch.setattr(pricing.cache, "get", broken)
    assert price_reads(pricing.price_table) == 1
    assert price_reads(pricing.price_table) == 1


def test_the_list_page_reads_no_price_row_once_cached(price, admin_client):
    url = reverse("runs:run_list")
    record_run("r1", events=[("step", {"model": MODEL, "usage": {"input_tokens": 10}})])
    admin_client.get(url)
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get(url)
    assert page.status_code == 200
    tables = [re.findall(r'FROM "?(\w+)"?', q["sql"])[:1] for q in captured.captured_queries]
    assert ["model_prices"] not in tables
    # session, user, the page, has-children, the page's usage rows
    assert len(captured.captured_queries) == 5
