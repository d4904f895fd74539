import pytest

from runs.memory import MemoryStorage
from runs.storage import DjangoStorage


# The mark (not only the `db` fixture below) tells pytest-django to create the test
# database: it plans that from marks and static fixture names before any test runs.
@pytest.fixture(params=["memory", pytest.param("django", marks=pytest.mark.django_db)])
def storage(request):
    """Each Storage implementation in turn; the Django one on the test database."""
    if request.param == "memory":
        return MemoryStorage()
    request.getfixturevalue("db")
    return DjangoStorage()
