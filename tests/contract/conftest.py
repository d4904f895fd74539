"""The conformance suite once more through runs.buffered.BufferedStorage.

Every implementation that tests/conftest.py's ``storage`` fixture yields is also wrapped
in a BufferedStorage whose writes are each followed by flush(): the contract then holds
as written, errors included (the storage's refusals reach the writer thread; the wrapper
below raises them in the caller's). What the buffer adds beyond the contract (batching,
bounds, outages) is tested in tests/test_buffered_recorder.py.
"""

from __future__ import annotations

import pytest

from runs.buffered import BufferedStorage

FLUSH_TIMEOUT_S = 60


class FlushedAfterEachWrite:
    """A BufferedStorage that waits for its writer after each write and raises what the
    storage refused, so that it can be held to the synchronous contract."""

    def __init__(self, storage) -> None:
        self.refused: list[BaseException] = []
        self.buffer = BufferedStorage(
            storage, on_refused=lambda what, run_id, error: self.refused.append(error)
        )

    def _settle(self) -> None:
        assert self.buffer.flush(FLUSH_TIMEOUT_S), "the writer did not finish in time"
        assert self.buffer.dropped == 0
        if self.refused:
            error = self.refused.pop(0)
            self.refused.clear()
            raise error

    def start_run(self, run) -> None:
        self.buffer.start_run(run)
        self._settle()

    def append_log(self, log) -> None:
        self.buffer.append_log(log)
        self._settle()

    def finish_run(self, run_id, stats) -> None:
        self.buffer.finish_run(run_id, stats)
        self._settle()

    def __getattr__(self, name):
        return getattr(self.buffer, name)


@pytest.fixture(params=["direct", "buffered"])
def storage_mode(request) -> str:
    return request.param


@pytest.fixture
def storage(storage, storage_mode):
    """tests/conftest.py's storage, as is or behind a BufferedStorage."""
    if storage_mode == "direct":
        yield storage
        return
    wrapped = FlushedAfterEachWrite(storage)
    yield wrapped
    assert wrapped.buffer.close(FLUSH_TIMEOUT_S)


def pytest_collection_modifyitems(items) -> None:
    # The buffer's writer thread has its own database connection: it cannot see, nor
    # wait behind, a test's uncommitted transaction (SQLite's IMMEDIATE one holds the
    # write lock), so buffered Django tests run in transactional mode.
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("storage_mode") == "buffered" and params.get("storage") == "django":
            item.add_marker(pytest.mark.django_db(transaction=True), append=False)
