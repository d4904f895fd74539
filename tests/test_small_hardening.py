"""The small ones. A dashboard 403 logs one line, not a traceback; the
production settings refuse Host: testserver and make HSTS includeSubDomains and preload
opt-in; a POST to an unknown /api/ path is the API's JSON 404, not the CSRF page."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dashboard_data import make_viewer

ROOT = Path(__file__).resolve().parent.parent
# The production settings module, in a process of its own (the test settings and the
# test runner add "testserver" themselves), answering requests through the test client.
PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.test import Client
client = Client()
print(json.dumps({
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "testserver": client.get("/healthz").status_code,
    "localhost": client.get("/healthz", HTTP_HOST="localhost").status_code,
    "hsts": client.get("/healthz", HTTP_HOST="localhost", secure=True).get(
        "Strict-Transport-Security"
    ),
}))
"""


def probe(tmp_path, **env) -> dict:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skillaudit_site.settings",
        "SECRET_KEY": "small-hardening-test-key-0123456789-0123456789",
        "SKILLAUDIT_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "",
        **env,
    }
    for name in ("ALLOWED_HOSTS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD"):
        if name not in env:
            environment.pop(name, None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=environment, check=True
    )
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environment,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_production_settings_refuse_host_testserver(tmp_path):
    answered = probe(tmp_path)
    assert "testserver" not in answered["allowed_hosts"]
    assert answered["testserver"] == 400
    assert answered["localhost"] == 200


def test_hsts_subdomains_and_preload_are_opt_in(tmp_path):
    https = {"SKILLAUDIT_HTTPS": "1", "SECURE_SSL_REDIRECT": "0"}
    assert probe(tmp_path, **https)["hsts"] == "max-age=31536000"
    opted = probe(tmp_path, **https, SECURE_HSTS_INCLUDE_SUBDOMAINS="1", SECURE_HSTS_PRELOAD="1")
    assert opted["hsts"] == "max-age=31536000; includeSubDomains; preload"


@pytest.mark.django_db
def test_a_dashboard_403_logs_no_traceback(client, django_user_model, caplog):
    client.force_login(make_viewer(django_user_model, permission=False))
    with caplog.at_level(logging.WARNING, logger="django.request"):
        for path in ("/runs/", "/skills/", "/runs/some-run/"):
            assert client.get(path).status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert len(records) == 3
    assert all(r.exc_info is None for r in records)
