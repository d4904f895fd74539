"""Every JSON answer that can hold whole runs or events is cut at the byte budget (at least
one row) and says where to go on: list_runs_by_skill and list_runs_by_caller (`next_offset`),
children/?full=1 (`next_cursor`), logs/ (`next_after`). HttpStorage follows each, so a
caller gets exactly what the storage holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runs import contract
from runs.api import contract_methods, views
from runs.storage import DjangoStorage

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET = 20_000  # bytes: a run below is ~6 kB serialized, an event ~2 kB
RUNS = 13
EVENTS = 60
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def stored(monkeypatch):
    monkeypatch.setattr(views, "RESPONSE_BUDGET", BUDGET)
    monkeypatch.setattr(contract_methods, "RESPONSE_BUDGET", BUDGET)
    monkeypatch.setattr(contract_methods, "BUDGET_BATCH", 2)
    monkeypatch.setattr(views, "BUDGET_BATCH", 2)
    monkeypatch.setattr(views, "LOG_BUDGET_BATCH", 7)
    storage = DjangoStorage()
    storage.start_run(contract.SkillRun(id="parent", skill_id="root", started_at=T0))
    for n in range(RUNS):
        run_id = f"run-{n:02d}"
        storage.start_run(
            contract.SkillRun(
                id=run_id,
                skill_id="big",
                caller_id="caller-1",
                parent_run_id="parent",
                inputs={"blob": "x" * 6000, "n": n},
                started_at=T0 + timedelta(minutes=n),
            )
        )
        storage.finish_run(run_id, contract.RunStats(status="ok", runtime_seconds=1.0))
    # One run alone over the budget: still answered, on its own.
    storage.start_run(
        contract.SkillRun(
            id="huge",
            skill_id="big",
            caller_id="caller-1",
            parent_run_id="parent",
            inputs={"blob": "y" * 50_000},
            started_at=T0 + timedelta(hours=1),
        )
    )
    storage.finish_run("huge", contract.RunStats(status="error", runtime_seconds=1.0))
    storage.append_logs(
        [
            contract.SkillRunLog(
                run_id="parent",
                sequence=n + 1,
                event_type="step",
                payload={"text": "e" * (2000 if n != 30 else 30_000)},
            )
            for n in range(EVENTS)
        ]
    )
    return storage


def test_http_storage_gets_every_run_and_event_through_cut_answers(stored, http_storage):
    assert http_storage.list_runs_by_skill("big", 100) == stored.list_runs_by_skill("big", 100)
    assert len(http_storage.list_runs_by_skill("big", 100)) == RUNS + 1
    assert http_storage.list_runs_by_skill("big", 5) == stored.list_runs_by_skill("big", 5)
    assert http_storage.list_runs_by_caller("caller-1", 100) == stored.list_runs_by_caller(
        "caller-1", 100
    )
    assert http_storage.list_children_by_parent("parent") == stored.list_children_by_parent(
        "parent"
    )
    assert http_storage.list_logs_by_run("parent") == stored.list_logs_by_run("parent")
    assert len(http_storage.list_logs_by_run("parent")) == EVENTS


def test_each_answer_is_cut_at_the_budget_and_says_where_to_go_on(stored, http_storage):
    for method, key in (("list_runs_by_skill", "skill_id"), ("list_runs_by_caller", "caller_id")):
        value = "big" if key == "skill_id" else "caller-1"
        # Newest first: the run over the budget comes alone, then the budget's worth.
        page = http_storage._contract(method, **{key: value, "limit": 100})
        assert [r["id"] for r in page["runs"]] == ["huge"], method
        assert page["next_offset"] == 1, method
        rest = http_storage._contract(method, **{key: value, "offset": 1, "limit": 99})
        assert 1 < len(rest["runs"]) < RUNS, method
        assert sum(views.json_size(r) for r in rest["runs"]) <= BUDGET, method
        assert rest["next_offset"] == 1 + len(rest["runs"]), method

    children = http_storage._call("GET", "/api/runs/parent/children/", {"full": 1})
    assert 1 < len(children["results"]) < RUNS  # oldest first: the huge run is last
    assert sum(views.json_size(r) for r in children["results"]) <= BUDGET
    assert children["next_cursor"] and "cursor=" in children["next"]
    summaries = http_storage._call("GET", "/api/runs/parent/children/", {"page_size": 200})
    assert len(summaries["results"]) == RUNS + 1  # summaries are small: not cut

    logs = http_storage._call("GET", "/api/runs/parent/logs/", {"limit": 1000})
    assert 1 < len(logs["results"]) < EVENTS
    assert sum(views.json_size(r) for r in logs["results"]) <= BUDGET
    assert logs["next_after"] == logs["results"][-1]["sequence"]
    # The event over the budget comes alone.
    alone = http_storage._call("GET", "/api/runs/parent/logs/", {"after": 30, "limit": 1000})
    assert [e["sequence"] for e in alone["results"]] == [31]
    assert alone["next_after"] == 31


def test_a_page_under_the_budget_is_whole(stored, http_storage):
    logs = http_storage._call("GET", "/api/runs/parent/logs/", {"limit": 5})
    assert [e["sequence"] for e in logs["results"]] == [1, 2, 3, 4, 5]
    assert logs["next_after"] == 5
    last = http_storage._call("GET", "/api/runs/parent/logs/", {"after": 55, "limit": 1000})
    assert [e["sequence"] for e in last["results"]] == [56, 57, 58, 59, 60]
    assert last["next_after"] is None
    children = http_storage._call("GET", "/api/runs/parent/children/", {"full": 1, "page_size": 2})
    assert len(children["results"]) == 2 and children["next_cursor"]


def test_the_schema_documents_the_cut(stored, http_storage):
    import json
    import urllib.request

    request = urllib.request.Request(
        http_storage.base_url + "/api/schema/",
        headers={**http_storage._headers, "Accept": "application/vnd.oai.openapi+json"},
    )
    with urllib.request.urlopen(request) as response:
        paths = json.loads(response.read())["paths"]
    for route in ("list_runs_by_skill", "list_runs_by_caller"):
        (operation,) = paths[f"/api/contract/{route}/"].values()
        assert "8 MiB" in operation["description"] and "next_offset" in operation["description"]
    for route in ("/api/runs/{run_id}/children/", "/api/runs/{run_id}/logs/"):
        assert "8 MiB" in paths[route]["get"]["description"], route
