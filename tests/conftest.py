import os

import pytest

from runs.memory import MemoryStorage
from runs.storage import DjangoStorage

if os.environ.get("SKILLAUDIT_TEST_PARTITIONED"):

    @pytest.fixture(scope="session")
    def django_db_setup(django_db_setup, django_db_blocker):
        """SKILLAUDIT_TEST_PARTITIONED=1 (PostgreSQL): the suite on month-partitioned logs
        (manage.py partition_history run on the migrated test database)."""
        from django.core.management import call_command

        with django_db_blocker.unblock():
            # Months back too, so that the tests' fixed dates land in month partitions.
            call_command("partition_history", months_back=18, verbosity=0)


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """API throttle counts (Django's cache) start empty in every test, and no price table
    kept by runs.pricing outlives the test that read it (a flush sends no signal)."""
    from django.core.cache import cache

    from runs import pricing

    cache.clear()
    pricing._cache.reset()


# The mark (not only the `db` fixture below) tells pytest-django to create the test
# database: it plans that from marks and static fixture names before any test runs.
@pytest.fixture(
    params=[
        "memory",
        pytest.param("django", marks=pytest.mark.django_db),
        pytest.param("http", marks=pytest.mark.django_db(transaction=True)),
    ]
)
def storage(request):
    """Each Storage implementation in turn; the Django one on the test database, the HTTP
    one through the API of a live server on it."""
    if request.param == "memory":
        return MemoryStorage()
    if request.param == "http":
        return request.getfixturevalue("http_storage")
    request.getfixturevalue("db")
    return DjangoStorage()


@pytest.fixture
def http_storage(request, transactional_db, django_user_model):
    """HttpStorage on a live server, as a token user with the run permissions only."""
    from django.contrib.auth.models import Permission

    from runs.access.models import ApiToken as Token
    from runs.client import HttpStorage

    server = request.getfixturevalue("live_server")
    if "live_server" not in request.node.fixturenames:
        # pytest-django's helper does this only for tests that name live_server.
        server._live_server_modified_settings.enable()
        request.addfinalizer(server._live_server_modified_settings.disable)
    user = django_user_model.objects.create_user("api-client")
    codenames = ["view_skillrun", "add_skillrun", "change_skillrun", "delete_skillrun"]
    codenames += ["add_skillrunlog", "delete_skillrunlog"]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="runs", codename__in=codenames)
    )
    return HttpStorage(server.url, Token.objects.create(user=user).key, timeout=60)


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module (tests/browser_support.py)."""
    from .browser_support import launched_chromium

    yield from launched_chromium()
