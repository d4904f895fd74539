"""API tokens are stored hashed and shown once; logins lock out
after repeated failures (per user and per address); the API is throttled per user, per
anonymous address and per address sending wrong tokens, with 429 and Retry-After."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import RequestFactory
from rest_framework.test import APIClient
from rest_framework.throttling import UserRateThrottle

from runs.access.models import ApiToken

pytestmark = pytest.mark.django_db


def api_user(name="executor") -> User:
    user = User.objects.create_user(name, password="pw-123456")
    user.user_permissions.set(Permission.objects.filter(codename="view_skillrun"))
    return user


def client_with(key: str, address: str = "127.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def stored_text() -> str:
    """Every column of every token row, as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM api_tokens")
        return repr(cursor.fetchall())


# --- hashed tokens ---------------------------------------------------------------------


def test_a_token_is_stored_as_a_salted_digest_and_still_works():
    token = ApiToken.objects.create(user=api_user())
    assert len(token.key) == 40
    assert token.key not in stored_text()
    assert token.prefix == token.key[:8]
    assert client_with(token.key).get("/api/runs/").status_code == 200
    assert client_with(token.key[:-1] + "x").get("/api/runs/").status_code == 401
    # Two tokens never share a salt, so equal keys would not share a digest either.
    other = ApiToken.objects.create(user=api_user("second"))
    assert other.salt != ApiToken.objects.get(pk=token.pk).salt


@pytest.mark.parametrize("key", ["", "a" * 7, "a" * 129, "abc\x00defghij", "abcdefgh ij"])
def test_malformed_keys_are_a_401(key):
    header = f"Token {key}".encode("latin-1").decode("latin-1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/runs/").status_code == 401


def test_create_api_token_prints_the_key_once(capsys):
    user = api_user()
    call_command("create_api_token", "executor")
    key = capsys.readouterr().out.strip()
    assert key not in stored_text()
    assert client_with(key).get("/api/runs/").status_code == 200
    with pytest.raises(CommandError, match="cannot be shown again"):
        call_command("create_api_token", "executor")
    call_command("create_api_token", "executor", "--rotate")
    rotated = capsys.readouterr().out.strip()
    assert rotated != key and ApiToken.objects.filter(user=user).count() == 1
    assert client_with(key).get("/api/runs/").status_code == 401
    assert client_with(rotated).get("/api/runs/").status_code == 200


def test_the_admin_shows_the_key_once_then_only_its_prefix(admin_client):
    user = api_user()
    response = admin_client.post("/admin/access/apitoken/add/", {"user": user.pk})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=user)
    key = response.context["key"]
    assert key in response.content.decode() and key.startswith(token.prefix)
    assert key not in stored_text()
    assert client_with(key).get("/api/runs/").status_code == 200
    listing = admin_client.get("/admin/access/apitoken/").content.decode()
    assert f"{token.prefix}…" in listing and key not in listing
    change = admin_client.get(f"/admin/access/apitoken/{token.pk}/change/").content.decode()
    assert token.prefix in change and key not in change
    # One token per user: a second one is a form error, not a 500.
    again = admin_client.post("/admin/access/apitoken/add/", {"user": user.pk})
    assert again.status_code == 200 and "already exists" in again.content.decode()
    assert admin_client.get("/admin/access/apitoken/?digest=x").status_code == 400
    assert admin_client.get("/admin/access/apitoken/1%002/change/").status_code == 302


def test_drf_plain_tokens_are_hashed_in_place_by_the_migration(transactional_db):
    """Migrating access from zero over a database that still has DRF's authtoken_token:
    the keys keep working, and the plain table is gone."""
    user = api_user()
    plain = "0123456789abcdef0123456789abcdef01234567"
    call_command("migrate", "access", "zero", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp with time zone NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [plain, "2025-01-02 03:04:05+00:00", user.pk],
        )
    call_command("migrate", "access", verbosity=0)
    assert "authtoken_token" not in connection.introspection.table_names()
    token = ApiToken.objects.get(user=user)
    assert token.prefix == plain[:8] and token.created.year == 2025
    assert plain not in stored_text()
    assert client_with(plain).get("/api/runs/").status_code == 200


# --- API throttles ---------------------------------------------------------------------


def test_an_address_sending_wrong_tokens_gets_429_with_retry_after():
    good = ApiToken.objects.create(user=api_user()).key
    statuses = [client_with("f" * 40).get("/api/runs/").status_code for _ in range(25)]
    assert statuses[:19] == [401] * 19
    assert set(statuses[19:]) == {429}
    refused = client_with("f" * 40).get("/api/runs/")
    assert 1 <= int(refused["Retry-After"]) <= 60
    # The address is held back, right token or not; another address is not.
    assert client_with(good).get("/api/runs/").status_code == 429
    assert client_with(good, "10.1.2.3").get("/api/runs/").status_code == 200


def test_anonymous_requests_are_throttled_per_address():
    statuses = [APIClient().get("/api/runs/").status_code for _ in range(61)]
    assert statuses[:60] == [401] * 60 and statuses[60] == 429
    refused = APIClient().get("/api/runs/")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert APIClient(REMOTE_ADDR="10.9.9.9").get("/api/runs/").status_code == 401


def test_forged_forwarded_for_does_not_dodge_the_throttle():
    for n in range(60):
        APIClient(HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").get("/api/runs/")
    assert APIClient(HTTP_X_FORWARDED_FOR="10.0.1.1").get("/api/runs/").status_code == 429


def test_behind_the_proxy_the_address_it_saw_counts(settings):
    settings.SKILLAUDIT_BEHIND_PROXY = True
    for _ in range(60):
        APIClient(HTTP_X_FORWARDED_FOR="1.1.1.1, 10.0.0.5").get("/api/runs/")
    assert APIClient(HTTP_X_FORWARDED_FOR="10.0.0.5").get("/api/runs/").status_code == 429
    assert APIClient(HTTP_X_FORWARDED_FOR="10.0.0.5, 10.0.0.6").get("/api/runs/").status_code == 401


def test_each_user_is_throttled_at_its_rate(monkeypatch, settings):
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["user"] == "1200/min"
    monkeypatch.setitem(UserRateThrottle.THROTTLE_RATES, "user", "5/min")
    busy = client_with(ApiToken.objects.create(user=api_user()).key)
    statuses = [busy.get("/api/runs/").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    refused = busy.get("/api/runs/")
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 60
    other = client_with(ApiToken.objects.create(user=api_user("other")).key)
    assert other.get("/api/runs/").status_code == 200


# --- login lockout ---------------------------------------------------------------------


def admin_login(client, username, password, address="127.0.0.1"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


def test_repeated_wrong_admin_passwords_lock_the_user_out(client, settings):
    User.objects.create_superuser("boss", password="right-password-1")
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 10
    statuses = [
        admin_login(client, "boss", f"wrong-{n}", f"10.0.0.{n}").status_code for n in range(30)
    ]
    assert statuses[: limit - 1] == [200] * (limit - 1)  # the form again, with an error
    assert set(statuses[limit - 1 :]) == {429}
    locked = admin_login(client, "boss", "right-password-1", "10.0.9.9")
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


def test_repeated_failures_from_one_address_lock_that_address_out(client):
    User.objects.create_superuser("boss", password="right-password-1")
    for n in range(10):
        admin_login(client, f"guess-{n}", "wrong", "10.0.0.7")
    assert admin_login(client, "boss", "right-password-1", "10.0.0.7").status_code == 429
    assert admin_login(client, "boss", "right-password-1", "10.0.0.8").status_code == 302


def test_a_success_before_the_limit_resets_the_count(client):
    User.objects.create_superuser("boss", password="right-password-1")
    for _ in range(2):
        for n in range(9):
            assert admin_login(client, "boss", f"wrong-{n}").status_code == 200
        assert admin_login(client, "boss", "right-password-1").status_code == 302
        client.logout()


def test_every_authenticate_call_is_covered():
    """Not only the admin's form: whatever calls authenticate() with the request."""
    User.objects.create_user("someone", password="right-password-1")
    request = RequestFactory().post("/login/", REMOTE_ADDR="10.3.3.3")
    for _ in range(10):
        assert authenticate(request, username="someone", password="wrong") is None
    fresh = RequestFactory().post("/login/", REMOTE_ADDR="10.3.3.4")
    assert authenticate(fresh, username="someone", password="right-password-1") is None
