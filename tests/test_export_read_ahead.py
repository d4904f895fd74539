"""The exports without events read the next batch of runs in a thread while the caller
encodes the one before (runs.services.export._read_ahead): the same bytes in the same
order, inside the caller's transaction, the reader gone when the consumer stops early, and
a reader's error raised in the caller."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from runs import contract
from runs.managers import PendingRows, RunTransfer
from runs.models import SkillRun
from runs.services import export
from runs.storage import DjangoStorage

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RUNS = 11


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "export-reader" and t.is_alive()]


@pytest.fixture
def eleven_runs(db, monkeypatch):
    """Eleven runs (in this test's transaction, uncommitted), read three per batch."""
    storage = DjangoStorage()
    for n in range(RUNS):
        storage.start_run(
            contract.SkillRun(
                id=f"ahead-{n:02d}",
                skill_id="read-ahead",
                caller_id="tests",
                channel_id="c",
                inputs={"n": n},
                started_at=T0 + timedelta(minutes=n),
                status="running",
            )
        )
    monkeypatch.setattr(export, "BATCH_SIZE", 3)
    monkeypatch.setattr(export, "CHUNK_CHARS", 10)
    return [f"ahead-{n:02d}" for n in reversed(range(RUNS))]  # newest first


def test_jsonl_and_csv_hold_every_run_newest_first_read_in_the_callers_transaction(
    eleven_runs,
):
    lines = b"".join(export.jsonl_chunks(SkillRun.objects.all())).decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == eleven_runs
    assert [json.loads(line)["inputs"] for line in lines] == [
        {"n": int(run_id[-2:])} for run_id in eleven_runs
    ]
    text = b"".join(export.csv_chunks(SkillRun.objects.all())).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["id"] for row in rows] == eleven_runs
    assert readers() == []
    assert not connection.allow_thread_sharing


def test_a_consumer_stopping_early_stops_the_reader(eleven_runs):
    chunks = export.csv_chunks(SkillRun.objects.all())
    first = next(chunks)
    assert first.decode("utf-8-sig").startswith("id,")
    assert readers()  # reading ahead meanwhile
    chunks.close()
    assert readers() == []
    assert not connection.allow_thread_sharing
    # The connection is the caller's again: it still reads the uncommitted runs.
    assert SkillRun.objects.filter(skill_id="read-ahead").count() == RUNS


@pytest.mark.django_db
def test_an_error_while_reading_is_raised_in_the_caller_after_the_batches_before_it():
    def batches():
        yield [("first",)]
        raise ConnectionError("the database went away")

    got = []
    with pytest.raises(ConnectionError, match="went away"):
        for batch in export._read_ahead(batches(), "default"):
            got.append(batch)
    assert got == [[("first",)]]
    assert readers() == []
    assert not connection.allow_thread_sharing


@pytest.mark.parametrize("full", [True, False])
def test_pending_batches_hold_the_rows_of_plain_batches_across_equal_start_times(eleven_runs, full):
    """On PostgreSQL the export reads PendingRows (the next query sent before this batch's
    rows are converted, its key read from the received result); the rows, their column
    order and the keyset's walk over equal start times must be those of plain batches. 12
    runs in batches of 3: the last query finds nothing."""
    DjangoStorage().start_run(
        contract.SkillRun(
            id="ahead-tie",
            skill_id="read-ahead",
            caller_id="tests",
            channel_id="c",
            inputs={"tie": True},
            started_at=T0 + timedelta(minutes=8),  # the same instant as ahead-08
            status="running",
        )
    )
    transfer = RunTransfer()
    matching = SkillRun.objects.all()
    plain = list(transfer.run_batches(matching, 3, full=full, iso_times=True))
    pending = list(transfer.run_batches(matching, 3, full=full, iso_times=True, pending=True))
    assert all(isinstance(b, PendingRows) == (connection.vendor == "postgresql") for b in pending)
    fetched = [b.fetch() if isinstance(b, PendingRows) else b for b in pending]
    assert fetched == plain
    assert [len(batch) for batch in fetched] == [3, 3, 3, 3]
    ids = [row[0] for batch in fetched for row in batch]
    assert sorted(ids) == sorted([*eleven_runs, "ahead-tie"])
    assert len(set(ids)) == len(ids)
