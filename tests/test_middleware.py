"""Database outages give a clean 503, and the site recovers when the database is back."""

from contextlib import contextmanager

import pytest
from django.db import connection
from django.urls import reverse

from tests.dashboard_data import make_viewer, record_run

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def database_unreachable():
    """Point the real connection at a database that cannot be opened, then restore it."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict["PORT"] = "1"  # nothing listens there
    else:
        connection.settings_dict["NAME"] = "/nonexistent-dir/skillaudit.sqlite3"
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def test_pages_answer_503_without_a_traceback_and_recover(client, django_user_model):
    client.force_login(make_viewer(django_user_model))
    record_run("r1")
    with database_unreachable():
        response = client.get(reverse("runs:run_list"))
        assert response.status_code == 503
        assert response["Retry-After"]
        html = response.content.decode()
        assert "database is not answering" in html
        assert "Traceback" not in html and "OperationalError" not in html
        api_like = client.get(reverse("runs:run_list"), HTTP_ACCEPT="application/json")
        assert api_like.status_code == 503
        assert api_like["Content-Type"] == "application/json"
    assert client.get(reverse("runs:run_list")).status_code == 200


def test_healthz_reports_the_database(client):
    assert client.get("/healthz").status_code == 200
    with database_unreachable():
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["database"] == "down"
    assert client.get("/healthz").status_code == 200
