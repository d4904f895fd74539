import pytest

from runs.memory import MemoryStorage
from runs.storage import DjangoStorage


@pytest.fixture(params=["memory", "django"])
def storage(request):
    """Each Storage implementation in turn; the Django one on the test database."""
    if request.param == "memory":
        return MemoryStorage()
    request.getfixturevalue("db")
    return DjangoStorage()
