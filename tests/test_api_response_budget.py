"""A contract answer holds at most RESPONSE_BUDGET bytes of runs (at least
one run) and says where to go on; HttpStorage follows it, so callers get every run asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runs import contract
from runs.api import contract_methods
from runs.storage import DjangoStorage

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET = 20_000  # bytes: each run below is ~6 kB serialized, so three fit, not four
RUNS = 13
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def stored(monkeypatch):
    monkeypatch.setattr(contract_methods, "RESPONSE_BUDGET", BUDGET)
    monkeypatch.setattr(contract_methods, "BUDGET_BATCH", 2)
    storage = DjangoStorage()
    for n in range(RUNS):
        run_id = f"run-{n:02d}"
        storage.start_run(
            contract.SkillRun(
                id=run_id,
                skill_id="big",
                inputs={"blob": "x" * 6000, "n": n},
                started_at=T0 + timedelta(minutes=n),
            )
        )
        storage.finish_run(run_id, contract.RunStats(status="success", runtime_seconds=1.0))
    # one run alone over the budget: still answered, on its own
    storage.start_run(
        contract.SkillRun(id="huge", skill_id="big", inputs={"blob": "y" * 50_000}, started_at=T0)
    )
    storage.finish_run("huge", contract.RunStats(status="failed", runtime_seconds=1.0))
    return storage


def ids(runs):
    return [r.id for r in runs]


def test_http_storage_gets_every_run_through_cut_answers(stored, http_storage):
    f = contract.RunFilter(skill_id="big")
    assert ids(http_storage.list_runs_filtered(f, 0, 100)) == ids(
        stored.list_runs_filtered(f, 0, 100)
    )
    assert len(http_storage.list_runs_filtered(f, 0, 100)) == RUNS + 1
    assert ids(http_storage.list_runs_filtered(f, 2, 7)) == ids(stored.list_runs_filtered(f, 2, 7))
    assert ids(http_storage.list_runs_by_skill_paginated("big", 1, 50, False)) == ids(
        stored.list_runs_by_skill_paginated("big", 1, 50, False)
    )
    cutoff = T0 + timedelta(days=365 * 10)
    assert ids(http_storage.list_finished_runs_before(cutoff, 100)) == ids(
        stored.list_finished_runs_before(cutoff, 100)
    )
    assert http_storage.list_runs_filtered(f, 0, 100)[0].inputs == stored.get_run("run-12").inputs


def test_an_answer_is_cut_at_the_budget_and_says_where_to_go_on(stored, http_storage):
    f = {"skill_id": "big"}
    page = http_storage._contract("list_runs_filtered", filter=f, offset=0, limit=100)
    assert 1 <= len(page["runs"]) < RUNS and page["next_offset"] == len(page["runs"])
    sizes = sum(contract_methods._row_size(r) for r in page["runs"])
    assert sizes <= BUDGET
    rest = http_storage._contract(
        "list_runs_filtered", filter=f, offset=page["next_offset"], limit=100
    )
    assert rest["runs"][0]["id"] != page["runs"][-1]["id"]
    whole = http_storage._contract("list_runs_filtered", filter=f, offset=RUNS - 1, limit=1)
    assert whole["next_offset"] is None and len(whole["runs"]) == 1
    # the huge run is the oldest: alone over the budget, it still comes, one per answer
    last = http_storage._contract("list_runs_filtered", filter=f, offset=RUNS - 1, limit=5)
    assert [r["id"] for r in last["runs"]] == ["run-00"] and last["next_offset"] == RUNS
    huge = http_storage._contract("list_runs_filtered", filter=f, offset=RUNS, limit=5)
    assert [r["id"] for r in huge["runs"]] == ["huge"] and huge["next_offset"] is None
    cutoff = (T0 + timedelta(days=3650)).isoformat()
    first = http_storage._contract(
        "list_finished_runs_before", cutoff=cutoff, limit=100, after=None
    )
    assert 1 <= len(first["runs"]) < RUNS
    assert sum(contract_methods._row_size(r) for r in first["runs"]) <= BUDGET
    assert first["next"]["id"] == first["runs"][-1]["id"]
    # "huge" finished last: alone over the budget, it still comes
    after = first
    while after["next"] is not None:
        after = http_storage._contract(
            "list_finished_runs_before", cutoff=cutoff, limit=100, after=after["next"]
        )
    assert after["runs"][-1]["id"] == "huge"
