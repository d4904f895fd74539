"""The replica router on the test database (runs/routing.py).

The "replica" here is a second connection to the test database (what Django's TEST MIRROR
does), so what is checked is where each query goes, not replication itself:
tests/system/replicas.py runs a real streaming standby. A dead replica is a real one too:
a PostgreSQL port nothing listens on, or a SQLite file that cannot be opened.
"""

from __future__ import annotations

import socket

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.test.utils import CaptureQueriesContext

from runs import routing
from runs.models import SkillRun
from runs.recorder import Sink
from runs.storage import DjangoStorage
from tests.dashboard_data import make_viewer, record_run
from tests.test_api import VIEW, WRITE, make_user, post_json, run_url, token_client

ALIAS = "replica_test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dead_target(settings_dict: dict) -> dict:
    dead = dict(settings_dict)
    if dead["ENGINE"].endswith("postgresql"):
        dead["HOST"], dead["PORT"] = "127.0.0.1", str(_free_port())
        dead["OPTIONS"] = dict(dead["OPTIONS"], connect_timeout=2)
    else:
        dead["NAME"] = "/nonexistent-folder-for-a-dead-replica/db.sqlite3"
    return dead


def _add_alias(alias: str, settings_dict: dict) -> None:
    # Made, then taken out of the settings: Django's test isolation lets such "dynamically
    # created" connections through (it refuses the aliases that DATABASES declares).
    connections.settings[alias] = settings_dict
    assert connections[alias].alias == alias  # creates the connection
    del connections.settings[alias]


def _drop_alias(alias: str) -> None:
    try:
        connections[alias].close()
    finally:
        del connections[alias]


@pytest.fixture
def replica(transactional_db, settings):
    """A replica alias on the test database, the only replica configured."""
    _add_alias(ALIAS, dict(connections[DEFAULT_DB_ALIAS].settings_dict))
    settings.SKILLAUDIT_REPLICAS = [ALIAS]
    routing.forget_health()
    yield ALIAS
    _drop_alias(ALIAS)
    routing.forget_health()


@pytest.fixture
def dead_replica(transactional_db, settings):
    _add_alias(ALIAS, _dead_target(connections[DEFAULT_DB_ALIAS].settings_dict))
    settings.SKILLAUDIT_REPLICAS = [ALIAS]
    routing.forget_health()
    yield ALIAS
    _drop_alias(ALIAS)
    routing.forget_health()


@pytest.fixture
def viewer_client(client, django_user_model):
    client.force_login(make_viewer(django_user_model))
    return client


def run_reads(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if '"skill_runs"' in q["sql"]]


def test_without_replicas_every_read_goes_to_the_primary(transactional_db, viewer_client):
    record_run("r1")
    assert routing.replica_aliases() == []
    with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary:
        response = viewer_client.get("/runs/")
    assert response.status_code == 200 and b"/runs/r1/" in response.content
    assert run_reads(primary)


def test_dashboard_and_api_reads_go_to_the_replica(replica, viewer_client, django_user_model):
    record_run("r1")
    reader = token_client(make_user(django_user_model, "reader", VIEW))
    for client, path in ((viewer_client, "/runs/"), (reader, "/api/runs/")):
        with (
            CaptureQueriesContext(connections[replica]) as on_replica,
            CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as on_primary,
        ):
            response = client.get(path)
        assert response.status_code == 200 and b"r1" in response.content
        assert run_reads(on_replica), path
        assert not run_reads(on_primary), path
    # The detail page and the skills page read there too.
    with CaptureQueriesContext(connections[replica]) as on_replica:
        assert viewer_client.get("/runs/r1/").status_code == 200
        assert viewer_client.get("/skills/").status_code == 200
    assert run_reads(on_replica)


def test_admin_healthz_and_code_outside_requests_use_the_primary(replica, admin_client):
    record_run("r1")
    with CaptureQueriesContext(connections[replica]) as on_replica:
        assert admin_client.get("/admin/runs/skillrun/").status_code == 200
        assert admin_client.get("/healthz").status_code == 200
        # The recorder, commands and services run outside a routed request.
        assert SkillRun.objects.all().db == DEFAULT_DB_ALIAS
        with Sink(DjangoStorage()).start_run(skill_id="s", caller_id="c") as run:
            run.step(input_tokens=1, output_tokens=1)
        assert DjangoStorage().get_run(run.run_id).skill_id == "s"
    assert on_replica.captured_queries == []


def test_a_write_pins_the_rest_of_the_request_to_the_primary(replica):
    token = routing._route.set(routing.RequestRoute(replica=replica))
    try:
        assert SkillRun.objects.all().db == replica
        record_run("written")  # writes: from here on, the primary
        assert SkillRun.objects.all().db == DEFAULT_DB_ALIAS
        assert routing.current_route().pinned
    finally:
        routing._route.reset(token)


def test_a_client_that_wrote_reads_its_writes_from_the_primary(replica, django_user_model):
    writer = token_client(make_user(django_user_model, "writer", WRITE))
    reader = token_client(make_user(django_user_model, "reader", VIEW))
    with CaptureQueriesContext(connections[replica]) as on_replica:
        created = post_json(writer, "/api/runs/", {"id": "mine", "skill_id": "s"})
    assert created.status_code == 201
    assert not run_reads(on_replica)  # the POST itself never touches the replica
    with CaptureQueriesContext(connections[replica]) as on_replica:
        assert writer.get(run_url("mine")).status_code == 200
    assert not run_reads(on_replica)  # pinned for SKILLAUDIT_REPLICA_MAX_LAG_SECONDS
    with CaptureQueriesContext(connections[replica]) as on_replica:
        assert reader.get(run_url("mine")).status_code == 200
    assert run_reads(on_replica)  # another client still reads from the replica


def test_a_dead_replica_is_skipped_and_the_primary_serves(dead_replica, viewer_client):
    record_run("r1")
    response = viewer_client.get("/runs/")
    assert response.status_code == 200 and b"/runs/r1/" in response.content
    health = routing.replica_health(dead_replica)
    assert not health.usable
    assert b"replica-lag" not in response.content


def test_a_replica_dying_mid_request_is_answered_by_the_primary(replica, viewer_client):
    record_run("r1")
    assert routing.replica_health(replica).usable  # checked and remembered as healthy
    connections[replica].close()
    connections[replica].settings_dict.update(_dead_target(connections[replica].settings_dict))
    response = viewer_client.get("/runs/")
    assert response.status_code == 200 and b"/runs/r1/" in response.content
    assert not routing.replica_health(replica).usable  # marked down until the next check


def test_a_replica_past_the_lag_limit_is_skipped(replica, viewer_client, settings):
    # A mirror's lag is 0; a limit below 0 makes it "too far behind" through the same path.
    settings.SKILLAUDIT_REPLICA_MAX_LAG_SECONDS = -1
    record_run("r1")
    with CaptureQueriesContext(connections[replica]) as on_replica:
        assert viewer_client.get("/runs/").status_code == 200
    assert not run_reads(on_replica)


def test_the_list_page_says_when_its_data_may_be_old(replica, viewer_client, settings):
    record_run("r1")
    assert b'id="replica-lag"' not in viewer_client.get("/runs/").content  # lag 0
    settings.SKILLAUDIT_REPLICA_NOTICE_SECONDS = -1  # any lag is worth a notice now
    page = viewer_client.get("/runs/").content.decode()
    assert 'id="replica-lag"' in page and "about 1 s behind" in page


def test_replicas_are_never_migrated(settings):
    settings.SKILLAUDIT_REPLICAS = ["replica_1"]
    router = routing.ReplicaRouter()
    assert router.allow_migrate(DEFAULT_DB_ALIAS, "runs")
    assert not router.allow_migrate("replica_1", "runs")
