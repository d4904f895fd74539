"""The model price table: load_prices, the database's constraints, the admin, and the faces
that show a cost (run page, call tree, run list, /skills/, the API), model names escaped."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
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


# --- the faces ---------------------------------------------------------------------------

HOSTILE_MODEL = '<img src=x onerror=alert(1)>"gpt'
IN_PRICE, OUT_PRICE, CACHED_PRICE = Decimal("2.50"), Decimal("10.00"), Decimal("1.25")


def step(model, inp, out, cached=0):
    payload = {"usage": {"input_tokens": inp, "output_tokens": out}, "text": "…"}
    payload["usage"]["cached_input_tokens"] = cached
    if model is not None:
        payload["model"] = model
    return ("step", payload)


def by_hand(inp, out, cached=0) -> Decimal:
    """What gpt-4o costs at the test's prices, computed apart from runs.costs."""
    return ((inp - cached) * IN_PRICE + cached * CACHED_PRICE + out * OUT_PRICE) / 10**6


@pytest.fixture
def priced(db):
    from tests.dashboard_data import record_run

    ModelPrice.objects.create(
        model="gpt-4o*",
        provider="openai",
        input_per_million=IN_PRICE,
        output_per_million=OUT_PRICE,
        cached_input_per_million=CACHED_PRICE,
        valid_from=datetime(2024, 1, 1, tzinfo=UTC),
    )
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    record_run(
        "root",
        skill="summarise",
        started_at=started,
        events=[step("gpt-4o", 1000, 200, cached=400), step(HOSTILE_MODEL, 50, 5)],
        tokens=(1050, 205, 0),
    )
    record_run(
        "child",
        skill="lookup",
        parent="root",
        started_at=started + timedelta(seconds=1),
        events=[step("gpt-4o-2024-08-06", 2000, 100)],
        tokens=(2000, 100, 0),
    )
    record_run(
        "plain",
        skill="lookup",
        started_at=started + timedelta(seconds=2),
        events=[step("gpt-4o", 3000, 300), step(None, 7, 0)],
        tokens=(3007, 300, 0),
    )
    record_run("no-model-usage", skill="lookup", started_at=started + timedelta(seconds=3))
    return {
        "root": by_hand(1000, 200, cached=400),
        "child": by_hand(2000, 100),
        "plain": by_hand(3000, 300),
    }


@pytest.fixture
def viewer(client, django_user_model):
    from tests.dashboard_data import make_viewer

    client.force_login(make_viewer(django_user_model))
    return client


def test_the_run_page_shows_the_cost_partly_unpriced_with_the_model_escaped(viewer, priced):
    from django.urls import reverse

    html = viewer.get(reverse("runs:run_detail", args=["root"])).content.decode()
    fact = html.split('id="fact-cost"', 1)[1].split("</dd>", 1)[0]
    assert f"{costs.money(priced['root'])} USD (partly unpriced)" in fact
    assert "cost unpriced" in fact
    assert "&lt;img src=x onerror=alert(1)&gt;&quot;gpt" in fact
    assert HOSTILE_MODEL not in html


def test_the_run_list_has_a_cost_column_read_in_one_batch(viewer, priced):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    url = reverse("runs:run_list") + "?include_nested=1"
    html = viewer.get(url).content.decode()
    cells = re.findall(r'<td class="num tokens">(.*?)</td>', html)
    assert len(cells) == 4
    assert any(f"{costs.money(priced['plain'])} USD (partly unpriced)" in c for c in cells)
    assert any(f">{costs.money(priced['child'])} USD<" in c for c in cells)
    assert sum('class="cost' in c for c in cells) == 3  # not the run with no model usage
    assert HOSTILE_MODEL not in html
    with CaptureQueriesContext(connection) as few:
        viewer.get(url)
    from tests.dashboard_data import record_run

    for n in range(20):
        record_run(f"more-{n}", events=[step("gpt-4o", 10, 1)], tokens=(10, 1, 0), minutes=n)
    with CaptureQueriesContext(connection) as many:
        viewer.get(url)
    assert len(many) == len(few)
    usage_reads = [q["sql"] for q in many.captured_queries if "model_usage" in q["sql"]]
    assert len(usage_reads) == 1
    assert all(
        '"inputs"' not in q["sql"] for q in many.captured_queries if "skill_runs" in q["sql"]
    )


def test_the_call_tree_sums_costs_over_subtrees(viewer, priced):
    from django.urls import reverse

    html = viewer.get(reverse("runs:run_tree", args=["child"])).content.decode()
    subtree = priced["root"] + priced["child"]
    header = html.split('id="tree-cost"', 1)[1].split("</span>", 1)[0]
    assert f"{costs.money(subtree)} USD (partly unpriced)" in header
    sub = html.split('<span class="sub"', 1)[1].split("</span></span>", 1)[0]
    assert f"{costs.money(subtree)} USD (partly unpriced)" in sub
    assert f"{costs.money(priced['child'])} USD" in html
    assert HOSTILE_MODEL not in html


def test_the_skills_page_shows_each_skills_cost_over_seven_days(viewer, priced):
    from django.urls import reverse

    html = viewer.get(reverse("runs:skills")).content.decode()
    rows = {
        name: row
        for row in html.split("<tr>")
        for name in ("summarise", "lookup")
        if f">{name}</a></td>" in row
    }
    assert f"{costs.money(priced['root'])} USD (partly unpriced)" in rows["summarise"]
    assert (
        f"{costs.money(priced['child'] + priced['plain'])} USD (partly unpriced)" in rows["lookup"]
    )


def test_an_edited_price_applies_at_once(viewer, priced):
    from django.urls import reverse

    ModelPrice.objects.filter(model="gpt-4o*").update(output_per_million=OUT_PRICE * 2)
    html = viewer.get(reverse("runs:run_detail", args=["child"])).content.decode()
    fact = html.split('id="fact-cost"', 1)[1].split("</dd>", 1)[0]
    assert costs.money((2000 * IN_PRICE + 100 * OUT_PRICE * 2) / 10**6) in fact


def test_runs_before_any_price_are_unpriced_not_free(viewer, priced):
    from django.urls import reverse

    ModelPrice.objects.update(valid_from=datetime.now(UTC) + timedelta(days=1))
    html = viewer.get(reverse("runs:run_detail", args=["child"])).content.decode()
    fact = html.split('id="fact-cost"', 1)[1].split("</dd>", 1)[0]
    assert "unpriced" in fact and "USD" not in fact


def test_the_api_gives_each_run_resource_a_cost_object(priced, django_user_model):
    from tests.test_api import VIEW, make_user, token_client

    api = token_client(make_user(django_user_model, "reader", VIEW))
    one = api.get("/api/runs/child/").json()["cost"]
    assert one == {
        "amount": costs.decimal_text(priced["child"]),
        "currency": "USD",
        "unpriced": False,
        "unpriced_steps": 0,
        "unpriced_models": [],
    }
    assert Decimal(one["amount"]) == priced["child"]
    listed = {r["id"]: r["cost"] for r in api.get("/api/runs/?include_nested=1").json()["results"]}
    assert Decimal(listed["plain"]["amount"]) == priced["plain"]
    assert listed["plain"]["unpriced"] is True and listed["plain"]["unpriced_models"] == [""]
    assert listed["root"]["unpriced_models"] == [HOSTILE_MODEL]
    assert listed["no-model-usage"]["amount"] == "0" and not listed["no-model-usage"]["unpriced"]
    tree = {n["id"]: n for n in api.get("/api/runs/child/tree/").json()["nodes"]}
    assert Decimal(tree["root"]["subtree_cost"]["amount"]) == priced["root"] + priced["child"]
    assert Decimal(tree["root"]["cost"]["amount"]) == priced["root"]
    children = api.get("/api/runs/root/children/?full=1").json()["results"]
    assert Decimal(children[0]["cost"]["amount"]) == priced["child"]


def test_without_the_view_permission_the_api_shows_no_cost(priced, django_user_model):
    from tests.test_api import make_user, token_client

    api = token_client(make_user(django_user_model, "nobody", []))
    response = api.get("/api/runs/child/")
    assert response.status_code == 403
    assert b"cost" not in response.content


# --- the admin -----------------------------------------------------------------------------


def test_the_price_admin_lists_searches_and_filters(admin_client):
    call_command("load_prices", str(SHIPPED), verbosity=0)
    page = admin_client.get("/admin/runs/modelprice/", {"q": "gpt-4o-mini"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "gpt-4o-mini" in html and "claude" not in html
    page = admin_client.get("/admin/runs/modelprice/", {"provider": "anthropic"})
    html = page.content.decode()
    assert "claude-sonnet-4*" in html and "gemini" not in html.split("result_list", 1)[1]


def test_the_price_admin_refuses_a_negative_price_and_a_bad_currency(admin_client):
    form = {
        "model": "my-model",
        "provider": "",
        "input_per_million": "-1",
        "output_per_million": "2",
        "cached_input_per_million": "",
        "thinking_per_million": "",
        "currency": "usd",
        "valid_from_0": "2025-01-01",
        "valid_from_1": "00:00:00",
        "note": "",
    }
    response = admin_client.post("/admin/runs/modelprice/add/", form)
    assert response.status_code == 200
    assert ModelPrice.objects.count() == 0
    response = admin_client.post(
        "/admin/runs/modelprice/add/", {**form, "input_per_million": "1.5", "currency": "EUR"}
    )
    assert response.status_code == 302
    assert ModelPrice.objects.get().input_per_million == Decimal("1.5")


def test_the_price_admin_is_staff_only(client, django_user_model):
    from tests.dashboard_data import make_viewer

    client.force_login(make_viewer(django_user_model, staff=False))
    assert client.get("/admin/runs/modelprice/").status_code == 302


def test_the_run_admin_shows_the_cost_read_only_and_escaped(admin_client, priced):
    from runs.web.rendering import admin_pk

    html = admin_client.get(f"/admin/runs/skillrun/{admin_pk('root')}/change/").content.decode()
    assert f"{costs.money(priced['root'])} USD (partly unpriced)" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert HOSTILE_MODEL not in html
