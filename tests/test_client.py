"""HttpStorage (runs/client.py) against a live server, beyond the conformance suite.

The conformance suite in tests/contract/ runs against HttpStorage too (the "http" param of
the `storage` fixture in tests/conftest.py); these tests cover what only the HTTP client
has: ids a URL path must carry, paging behind one contract call, HTTP errors.
"""

from __future__ import annotations

import socket
import urllib.error
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission

from runs import contract
from runs.access.models import ApiToken as Token
from runs.api import contract_methods
from runs.client import ApiError, HttpStorage
from runs.contract import Conflict, NotFound, RunStats, SkillRun, SkillRunLog
from runs.storage import DjangoStorage

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_it_is_a_storage(http_storage):
    assert isinstance(http_storage, contract.Storage)


@pytest.mark.parametrize(
    "run_id",
    ["a/b", "a/b/", "/lead", ".", "..", "x/../y", "100%", "q?x=1#f", "new\nline", " sp ", "é🧪"],
)
def test_any_run_id_round_trips(http_storage, run_id):
    storage = http_storage
    storage.start_run(SkillRun(id=run_id, skill_id="s", started_at=T0))
    storage.start_run(SkillRun(id="kid", skill_id="s", started_at=at(1), parent_run_id=run_id))
    storage.append_log(SkillRunLog(run_id=run_id, sequence=1, event_type="step", created_at=T0))
    storage.finish_run(run_id, RunStats(status="ok", output="done"))
    run = storage.get_run(run_id)
    assert (run.id, run.status, run.output) == (run_id, "ok", "done")
    assert [log.run_id for log in storage.list_logs_by_run(run_id)] == [run_id]
    assert [r.id for r in storage.walk_parent_chain("kid")] == [run_id, "kid"]
    assert [r.id for r in storage.list_children_by_parent(run_id)] == ["kid"]


def test_ids_ending_like_a_route_are_not_confused(http_storage):
    storage = http_storage
    for run_id in ["x", "x/logs", "x/tree", "x/finish", "x/children", "x/chain"]:
        storage.start_run(SkillRun(id=run_id, skill_id=f"skill {run_id}", started_at=T0))
    for run_id in ["x", "x/logs", "x/tree", "x/finish", "x/children", "x/chain"]:
        assert storage.get_run(run_id).skill_id == f"skill {run_id}"
        storage.append_log(SkillRunLog(run_id=run_id, sequence=1, created_at=T0))
        storage.finish_run(run_id, RunStats(status="ok", output=run_id))
    stored = DjangoStorage()
    for run_id in ["x", "x/logs", "x/tree", "x/finish", "x/children", "x/chain"]:
        assert stored.get_run(run_id).output == run_id
        assert [log.sequence for log in stored.list_logs_by_run(run_id)] == [1]


def test_logs_beyond_one_page_come_back_whole_and_in_order(http_storage):
    storage = http_storage
    storage.start_run(SkillRun(id="long", started_at=T0))
    sequences = list(range(2500, 0, -1))  # sent newest first: the order comes from sequence
    for start in range(0, len(sequences), 1000):
        storage.append_logs(
            [
                SkillRunLog(run_id="long", sequence=n, event_type="step", payload={"n": n})
                for n in sequences[start : start + 1000]
            ]
        )
    logs = storage.list_logs_by_run("long")
    assert [log.sequence for log in logs] == list(range(1, 2501))
    assert logs[-1].payload == {"n": 2500}


def test_children_beyond_one_page_come_back_whole(http_storage):
    local = DjangoStorage()  # fast set-up; the server sees it (transactional test)
    local.start_run(SkillRun(id="parent", started_at=T0))
    for i in range(1203):
        local.start_run(SkillRun(id=f"kid-{i:04d}", started_at=at(i // 2), parent_run_id="parent"))
    children = http_storage.list_children_by_parent("parent")
    assert [run.id for run in children] == [f"kid-{i:04d}" for i in range(1203)]


def test_finished_runs_before_pages_behind_one_call(http_storage, monkeypatch):
    monkeypatch.setattr(contract_methods, "FINISHED_PAGE", 4)
    local = DjangoStorage()
    for i in range(11):
        local.start_run(SkillRun(id=f"f{i:02d}", started_at=at(i)))
        local.finish_run(f"f{i:02d}", RunStats(status="ok"))
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    expected = [run.id for run in local.list_finished_runs_before(cutoff, 100)]
    assert len(expected) == 11
    for limit in (1, 4, 5, 8, 11, 12, 2**63):
        got = http_storage.list_finished_runs_before(cutoff, limit)
        assert [run.id for run in got] == expected[:limit], limit


def test_last_run_for_many_long_skill_ids_is_sent_in_chunks(http_storage):
    local = DjangoStorage()
    skills = [f"{i:03d}" + "\U0001f9ea" * 250 for i in range(40)]
    for i, skill in enumerate(skills[::3]):
        local.start_run(SkillRun(id=f"r{i}", skill_id=skill, started_at=at(i)))
        local.finish_run(f"r{i}", RunStats(status="ok"))
    latest = http_storage.last_run_by_skills(skills, include_failed=False)
    assert latest == {skill: at(i) for i, skill in enumerate(skills[::3])}


def test_a_batch_is_all_or_nothing(http_storage):
    storage = http_storage
    storage.start_run(SkillRun(id="r1", started_at=T0))
    storage.append_log(SkillRunLog(run_id="r1", sequence=2, payload={"original": 1}))
    with pytest.raises(Conflict):
        storage.append_logs([SkillRunLog(run_id="r1", sequence=n) for n in (1, 2, 3)])
    assert [(log.sequence, log.payload) for log in storage.list_logs_by_run("r1")] == [
        (2, {"original": 1})
    ]
    with pytest.raises(NotFound):
        storage.append_logs([SkillRunLog(run_id="ghost", sequence=1)])
    with pytest.raises(ValueError):
        storage.append_logs([SkillRunLog(run_id="r1", sequence=5), SkillRunLog("r2", 6)])
    storage.append_logs([])


def test_values_json_cannot_carry_are_refused_before_sending():
    # No server at all: the refusal happens in the client.
    storage = HttpStorage("http://127.0.0.1:9", token="unused", timeout=1)
    for inputs in ({"x": float("nan")}, {1: "int key"}, {"s": {1, 2}}):
        with pytest.raises(ValueError):
            storage.start_run(SkillRun(id="r1", inputs=inputs))
    with pytest.raises(ValueError):
        storage.finish_run("r1", RunStats(status="ok", runtime_seconds=float("inf")))
    with pytest.raises(NotFound):
        storage.get_run("")
    assert storage.list_logs_by_run("") == []
    assert storage.list_children_by_parent("") == []
    assert storage.last_run_by_skills([], True) == {}


def test_http_errors_without_a_contract_meaning_raise_api_error(http_storage, live_server):
    wrong = HttpStorage(live_server.url, token="0" * 40)
    with pytest.raises(ApiError) as caught:
        wrong.initialize()
    assert caught.value.status == 401
    with pytest.raises(ApiError) as caught:
        wrong.get_run("anything")
    assert caught.value.status == 401


def test_a_read_only_token_cannot_write(http_storage, live_server, django_user_model):
    user = django_user_model.objects.create_user("read-only")
    user.user_permissions.add(Permission.objects.get(codename="view_skillrun"))
    reader = HttpStorage(live_server.url, Token.objects.create(user=user).key)
    http_storage.start_run(SkillRun(id="r1", started_at=T0))
    assert reader.get_run("r1").id == "r1"
    for write in (
        lambda: reader.start_run(SkillRun(id="r2")),
        lambda: reader.finish_run("r1", RunStats(status="ok")),
        lambda: reader.append_log(SkillRunLog(run_id="r1", sequence=1)),
        lambda: reader.purge_older_than(datetime.now(UTC)),
    ):
        with pytest.raises(ApiError) as caught:
            write()
        assert caught.value.status == 403
    assert http_storage.get_run("r1").status == "running"


def test_an_unreachable_server_raises_the_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        storage = HttpStorage(f"http://127.0.0.1:{port}", token="x", timeout=2)
        with pytest.raises(urllib.error.URLError):
            storage.initialize()
