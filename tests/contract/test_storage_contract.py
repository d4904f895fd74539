"""The storage conformance suite: every Storage method and every rule of runs/contract.py.

It runs once per implementation that the `storage` fixture (tests/conftest.py) yields and
uses nothing but the contract, so a new implementation joins by becoming a fixture param.
Times are fixed (helpers.T0) except where a rule is about "now"; the `clock` fixture pins
"now" where a rule needs two runs to finish at the same instant.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from runs import contract
from runs.contract import (
    MAX_PARENT_CHAIN_DEPTH,
    TERMINAL_STATUSES,
    Conflict,
    NotFound,
    RunFilter,
    RunStats,
    SkillRun,
    SkillRunLog,
)

from .helpers import (
    BULK,
    IST,
    PST,
    T0,
    US,
    assert_utc,
    at,
    everything,
    finish,
    ids,
    log,
    no_database_queries,
    seed_bulk,
    start,
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now


@pytest.fixture
def clock(monkeypatch):
    """Pins the "now" that every implementation reads through contract.utcnow()."""
    pinned = Clock(at(10_000))
    monkeypatch.setattr(contract, "utcnow", lambda: pinned.now)
    return pinned


# --- initialize --------------------------------------------------------------------------


def test_initialize_is_repeatable_and_keeps_data(storage):
    storage.initialize()
    start(storage, "r1")
    storage.initialize()
    assert storage.get_run("r1").id == "r1"


# --- start_run ---------------------------------------------------------------------------


def test_start_run_stores_every_field_as_given(storage):
    run = SkillRun(
        id="run-1",
        skill_id="summarise",
        caller_id="user-7",
        channel_id="chan-9",
        inputs={"q": "hi", "n": 3, "nested": {"list": [1, 2.5, None, True, "x"]}},
        started_at=datetime(2024, 5, 1, 17, 30, 0, 123456, tzinfo=IST),
        output="partial",
        error="warning",
        tool_calls_count=4,
        runtime_seconds=1.25,
        parent_run_id="root-0",
        total_input_tokens=2**40,
        total_output_tokens=7,
        total_thinking_tokens=9,
    )
    storage.start_run(run)
    stored = storage.get_run("run-1")
    assert stored == dataclasses.replace(run, status="running", finished_at=None)
    assert stored.started_at == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert_utc(stored.started_at)


def test_start_run_forces_status_running_and_no_finished_at(storage):
    start(storage, "r1", status="ok", finished_at=at(5))
    stored = storage.get_run("r1")
    assert stored.status == "running"
    assert stored.finished_at is None
    assert storage.list_finished_runs_before(at(10**6), 10) == []


def test_start_run_defaults_started_at_to_now_and_inputs_to_empty(storage):
    before = datetime.now(UTC)
    storage.start_run(SkillRun(id="r1", skill_id="s"))
    after = datetime.now(UTC)
    stored = storage.get_run("r1")
    assert before <= stored.started_at <= after
    assert_utc(stored.started_at)
    assert stored == SkillRun(
        id="r1", skill_id="s", started_at=stored.started_at, status="running", inputs={}
    )


def test_start_run_with_inputs_none_stores_an_empty_object(storage):
    storage.start_run(SkillRun(id="r1", started_at=T0, inputs=None))
    assert storage.get_run("r1").inputs == {}


def test_start_run_duplicate_id_conflicts_and_changes_nothing(storage):
    start(storage, "r1", 0, skill="first", inputs={"v": 1})
    finish(storage, "r1", "ok", output="done")
    before = everything(storage)
    with pytest.raises(Conflict):
        start(storage, "r1", 99, skill="second", inputs={"v": 2}, output="again")
    assert everything(storage) == before
    assert storage.get_run("r1").status == "ok"


def test_start_run_duplicate_of_a_running_run_conflicts(storage):
    start(storage, "r1", 0, skill="first")
    storage.append_log(log("r1", 1))
    before = everything(storage)
    with pytest.raises(Conflict):
        start(storage, "r1", 1, skill="first")
    assert everything(storage) == before


def test_ids_that_clean_to_the_same_text_conflict(storage):
    start(storage, "r\x00")
    with pytest.raises(Conflict):
        start(storage, "r\ud800", skill="other")
    assert storage.get_run("r\ufffd").skill_id == "skill-a"


@pytest.mark.parametrize(
    "field,limit",
    [
        ("id", 64),
        ("parent_run_id", 64),
        ("skill_id", 255),
        ("caller_id", 255),
        ("channel_id", 255),
    ],
)
def test_too_long_ids_are_refused(storage, field, limit):
    def run_with(run_id, value):
        fields = {"id": run_id, "started_at": T0, field: value}
        return SkillRun(**fields)

    # Characters count, not bytes: four-byte characters up to the limit are fine.
    storage.start_run(run_with("fits", "\U0001f9ea" * limit))
    before = everything(storage)
    with pytest.raises(ValueError):
        storage.start_run(run_with("too-long", "y" * (limit + 1)))
    assert everything(storage) == before


def test_empty_id_is_refused(storage):
    with pytest.raises(ValueError):
        storage.start_run(SkillRun(id="", started_at=T0))
    assert everything(storage) == []


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_in_inputs_is_refused(storage, bad):
    with pytest.raises(ValueError):
        storage.start_run(SkillRun(id="r1", started_at=T0, inputs={"deep": [{"x": bad}]}))
    with pytest.raises(NotFound):
        storage.get_run("r1")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_in_a_log_payload_is_refused(storage, bad):
    start(storage, "r1")
    with pytest.raises(ValueError):
        storage.append_log(log("r1", 1, payload={"scores": [1.0, bad]}))
    assert storage.list_logs_by_run("r1") == []


def test_nan_runtime_is_refused(storage):
    with pytest.raises(ValueError):
        start(storage, "r1", runtime_seconds=float("nan"))
    start(storage, "r2")
    before = everything(storage)
    with pytest.raises(ValueError):
        storage.finish_run("r2", RunStats(status="ok", runtime_seconds=float("nan")))
    assert everything(storage) == before


# Field of SkillRun, field of RunStats: every one a 64-bit column.
INTEGER_FIELDS = [
    ("tool_calls_count", "tool_calls"),
    ("total_input_tokens", "input_tokens"),
    ("total_output_tokens", "output_tokens"),
    ("total_thinking_tokens", "thinking_tokens"),
]


@pytest.mark.parametrize("run_field,stats_field", INTEGER_FIELDS)
def test_integers_beyond_64_bits_are_refused(storage, run_field, stats_field, request):
    low, high = -(2**63), 2**63 - 1
    # The API refuses negative counts in a finish; the contract takes them.
    finished_low = 0 if over_http(request) else low
    for run_id, value, finished in [("low", low, finished_low), ("high", high, high)]:
        start(storage, run_id, **{run_field: value})
        assert getattr(storage.get_run(run_id), run_field) == value
        storage.finish_run(run_id, RunStats(status="ok", **{stats_field: finished}))
        assert getattr(storage.get_run(run_id), run_field) == finished
    before = everything(storage)
    for bad in [low - 1, high + 1, True, 1.0]:
        with pytest.raises(ValueError):
            start(storage, "bad", **{run_field: bad})
        with pytest.raises(ValueError):
            storage.finish_run("low", RunStats(status="error", **{stats_field: bad}))
    assert everything(storage) == before


def over_http(request) -> bool:
    """The API refuses event sequences below 1 (stored, they were never shown);
    the contract itself, and the other storages, take any 64-bit sequence."""
    return request.node.callspec.params.get("storage") == "http"


def test_log_sequences_out_of_64_bits_are_refused(storage, request):
    lowest = 1 if over_http(request) else -(2**63)
    start(storage, "r1")
    storage.append_log(log("r1", 2**63 - 1, created_at=T0))
    storage.append_log(log("r1", lowest, created_at=T0))
    for bad in [2**63, -(2**63) - 1, True, 1.0]:
        with pytest.raises(ValueError):
            storage.append_log(log("r1", bad, created_at=T0))
    if over_http(request):
        for bad in [0, -1, -(2**63)]:
            with pytest.raises(ValueError):
                storage.append_log(log("r1", bad, created_at=T0))
    assert [entry.sequence for entry in storage.list_logs_by_run("r1")] == [lowest, 2**63 - 1]


NAIVE = datetime(2024, 5, 2, 12, 0)  # a day after T0, without a zone

NAIVE_CALLS = {
    "start_run.started_at": lambda s: s.start_run(SkillRun(id="new", started_at=NAIVE)),
    "append_log.created_at": lambda s: s.append_log(log("base", 2, created_at=NAIVE)),
    "list_runs_filtered.since": lambda s: s.list_runs_filtered(RunFilter(since=NAIVE), 0, 10),
    "list_runs_filtered.until": lambda s: s.list_runs_filtered(RunFilter(until=NAIVE), 0, 10),
    "count_runs_filtered.since": lambda s: s.count_runs_filtered(RunFilter(since=NAIVE)),
    "count_runs_filtered.until": lambda s: s.count_runs_filtered(RunFilter(until=NAIVE)),
    "purge_older_than": lambda s: s.purge_older_than(NAIVE),
    "list_finished_runs_before": lambda s: s.list_finished_runs_before(NAIVE, 10),
}


@pytest.mark.parametrize("call", NAIVE_CALLS.values(), ids=NAIVE_CALLS.keys())
def test_naive_datetimes_are_refused(storage, call):
    start(storage, "base", 0)
    storage.append_log(log("base", 1))
    finish(storage, "base")
    before = everything(storage)
    with pytest.raises(ValueError):
        call(storage)
    assert everything(storage) == before


# --- finish_run --------------------------------------------------------------------------


def test_finish_run_sets_every_stat_and_finished_at_now(storage):
    start(storage, "r1", 0, inputs={"k": "v"}, parent="p", output="partial", tool_calls_count=9)
    before = datetime.now(UTC)
    storage.finish_run(
        "r1",
        RunStats(
            status="timeout",
            output="out",
            error="err",
            tool_calls=3,
            runtime_seconds=12.5,
            input_tokens=100,
            output_tokens=2**40,
            thinking_tokens=7,
        ),
    )
    after = datetime.now(UTC)
    run = storage.get_run("r1")
    assert before <= run.finished_at <= after
    assert_utc(run.finished_at)
    assert run == SkillRun(
        id="r1",
        skill_id="skill-a",
        caller_id="caller-1",
        channel_id="chan-1",
        inputs={"k": "v"},
        started_at=T0,
        finished_at=run.finished_at,
        status="timeout",
        output="out",
        error="err",
        tool_calls_count=3,
        runtime_seconds=12.5,
        parent_run_id="p",
        total_input_tokens=100,
        total_output_tokens=2**40,
        total_thinking_tokens=7,
    )


def test_finish_run_writes_zero_values_too(storage):
    start(
        storage,
        "r1",
        output="partial",
        error="e",
        tool_calls_count=5,
        runtime_seconds=2.0,
        total_input_tokens=5,
        total_output_tokens=5,
        total_thinking_tokens=5,
    )
    storage.finish_run("r1", RunStats(status="ok"))
    run = storage.get_run("r1")
    assert (
        run.output,
        run.error,
        run.tool_calls_count,
        run.runtime_seconds,
        run.total_input_tokens,
        run.total_output_tokens,
        run.total_thinking_tokens,
    ) == ("", "", 0, 0.0, 0, 0, 0)


def test_finish_run_twice_last_write_wins(storage):
    start(storage, "r1")
    finish(storage, "r1", "ok", output="first", tool_calls=1, input_tokens=10)
    first = storage.get_run("r1")
    second_stats = RunStats(status="error", error="second", tool_calls=2, thinking_tokens=4)
    storage.finish_run("r1", second_stats)
    second = storage.get_run("r1")
    assert second.finished_at >= first.finished_at
    assert (second.status, second.output, second.error) == ("error", "", "second")
    assert (second.tool_calls_count, second.total_input_tokens) == (2, 0)
    assert second.total_thinking_tokens == 4
    storage.finish_run("r1", second_stats)
    third = storage.get_run("r1")
    assert dataclasses.replace(third, finished_at=None) == dataclasses.replace(
        second, finished_at=None
    )


def test_finish_run_of_an_unknown_id_is_not_found(storage):
    start(storage, "r1")
    with pytest.raises(NotFound):
        finish(storage, "ghost")
    with pytest.raises(NotFound):
        storage.get_run("ghost")
    assert storage.get_run("r1").status == "running"


# --- append_log / list_logs_by_run -------------------------------------------------------


def test_append_log_defaults_created_at_to_now(storage):
    start(storage, "r1")
    before = datetime.now(UTC)
    storage.append_log(log("r1", 1, "tool_call", {"tool": "search"}))
    after = datetime.now(UTC)
    [stored] = storage.list_logs_by_run("r1")
    assert before <= stored.created_at <= after
    assert_utc(stored.created_at)
    assert stored == SkillRunLog("r1", 1, "tool_call", {"tool": "search"}, stored.created_at)


def test_append_log_keeps_a_given_created_at_in_utc(storage):
    start(storage, "r1")
    created = datetime(2024, 5, 1, 4, 0, 0, 999999, tzinfo=PST)
    storage.append_log(log("r1", 1, created_at=created))
    [stored] = storage.list_logs_by_run("r1")
    assert stored.created_at == datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=UTC)
    assert_utc(stored.created_at)


def test_append_log_payload_defaults_to_an_empty_object(storage):
    start(storage, "r1")
    storage.append_log(SkillRunLog(run_id="r1", sequence=1, payload=None, created_at=T0))
    assert storage.list_logs_by_run("r1") == [SkillRunLog("r1", 1, "", {}, T0)]


def test_append_log_duplicate_sequence_conflicts_and_keeps_the_stored_log(storage):
    start(storage, "r1")
    start(storage, "r2")
    original = log("r1", 1, "tool_call", {"tool": "search"}, at(1))
    storage.append_log(original)
    with pytest.raises(Conflict):
        storage.append_log(log("r1", 1, "error", {"other": True}, at(2)))
    assert storage.list_logs_by_run("r1") == [original]
    # The same sequence in another run is no duplicate.
    storage.append_log(log("r2", 1, "step", {}, at(3)))
    assert storage.list_logs_by_run("r2") == [log("r2", 1, "step", {}, at(3))]


def test_append_log_to_an_unknown_run_is_not_found(storage):
    start(storage, "r1")
    with pytest.raises(NotFound):
        storage.append_log(log("ghost", 1, created_at=T0))
    assert storage.list_logs_by_run("ghost") == []
    start(storage, "ghost", 1)
    assert storage.list_logs_by_run("ghost") == []


def test_list_logs_by_run_is_in_sequence_order(storage, request):
    start(storage, "r1")
    start(storage, "r2")
    # Created in reverse of sequence order: the order comes from the sequence alone.
    lowest = 4 if over_http(request) else 0  # the API takes sequences from 1
    for sequence in [10, 2, lowest, 2**40, 1, 3]:
        created = at(-min(sequence, 10**6))
        storage.append_log(log("r1", sequence, f"e{sequence}", {"n": sequence}, created))
    storage.append_log(log("r2", 5, created_at=T0))
    logs = storage.list_logs_by_run("r1")
    expected = sorted([10, 2, lowest, 2**40, 1, 3])
    assert [entry.sequence for entry in logs] == expected
    assert [entry.event_type for entry in logs] == [f"e{n}" for n in expected]
    assert {entry.run_id for entry in logs} == {"r1"}
    for entry in logs:
        assert entry.payload == {"n": entry.sequence}
        assert entry.created_at == at(-min(entry.sequence, 10**6))
        assert_utc(entry.created_at)


def test_list_logs_of_an_unknown_run_is_empty(storage):
    assert storage.list_logs_by_run("ghost") == []


# --- get_run ---------------------------------------------------------------------------


def test_get_run_of_an_unknown_id_is_not_found(storage):
    start(storage, "r1")
    for unknown in ["r2", "", "R1", "r1 "]:
        with pytest.raises(NotFound):
            storage.get_run(unknown)


def test_returned_runs_are_copies(storage):
    run = SkillRun(id="r1", started_at=T0, inputs={"k": ["v"]})
    storage.start_run(run)
    run.inputs["k"].append("changed by the caller")
    got = storage.get_run("r1")
    got.inputs["k"].append("changed by a reader")
    got.status = "ok"
    assert storage.get_run("r1").inputs == {"k": ["v"]}
    assert storage.get_run("r1").status == "running"


# --- ordering ----------------------------------------------------------------------------

# Started at the same instant, inserted in this (unsorted) order.
TIED = ["b", "a", "B", "c", "a-1", "ab"]


def seed_tied(storage, parent=""):
    start(storage, "early", 1 - 0.000001, parent=parent)
    start(storage, "late", 1 + 0.000001, parent=parent)
    for run_id in TIED:
        start(storage, run_id, 1, parent=parent)


NEWEST_FIRST = ["late", "c", "b", "ab", "a-1", "a", "B", "early"]


def test_newest_first_breaks_ties_by_id_descending(storage):
    seed_tied(storage)
    assert ids(storage.list_runs_by_skill("skill-a", 50)) == NEWEST_FIRST
    assert ids(storage.list_runs_by_skill_paginated("skill-a", 0, 50, False)) == NEWEST_FIRST
    assert ids(storage.list_runs_by_skill_paginated("skill-a", 0, 50, True)) == NEWEST_FIRST
    assert ids(storage.list_runs_by_caller("caller-1", 50)) == NEWEST_FIRST
    assert ids(storage.list_runs_filtered(RunFilter(), 0, 50)) == NEWEST_FIRST


def test_pages_through_ties_without_gaps_or_repeats(storage):
    seed_tied(storage)
    by_skill = [
        storage.list_runs_by_skill_paginated("skill-a", offset, 1, False)[0].id
        for offset in range(len(NEWEST_FIRST))
    ]
    filtered = [storage.list_runs_filtered(RunFilter(), offset, 3) for offset in range(0, 8, 3)]
    assert by_skill == NEWEST_FIRST
    assert [run.id for page in filtered for run in page] == NEWEST_FIRST


def test_children_are_oldest_first_with_ties_by_id_ascending(storage):
    start(storage, "p", 0)
    start(storage, "other-parent", 0)
    seed_tied(storage, parent="p")
    start(storage, "grandchild", 2, parent="b")
    start(storage, "cousin", 2, parent="other-parent")
    expected = ["early", "B", "a", "a-1", "ab", "b", "c", "late"]
    assert ids(storage.list_children_by_parent("p")) == expected


# --- limits and offsets -----------------------------------------------------------------

LIMITED = {
    "list_runs_by_skill": lambda s, limit: s.list_runs_by_skill("skill-a", limit),
    "list_runs_by_skill_paginated": lambda s, limit: s.list_runs_by_skill_paginated(
        "skill-a", 0, limit, False
    ),
    "list_runs_by_caller": lambda s, limit: s.list_runs_by_caller("caller-1", limit),
    "list_runs_filtered": lambda s, limit: s.list_runs_filtered(RunFilter(), 0, limit),
}


@pytest.mark.parametrize("method", LIMITED.values(), ids=LIMITED.keys())
def test_limits_outside_1_to_500_become_50(storage, method):
    newest_first = seed_bulk(storage)
    for limit, size in [
        (0, 50),
        (-1, 50),
        (-(2**63), 50),
        (501, 50),
        (2**63, 50),
        (1, 1),
        (49, 49),
        (50, 50),
        (51, 51),
        (500, BULK),
    ]:
        assert ids(method(storage, limit)) == newest_first[:size], f"limit {limit}"


PAGED = {
    "list_runs_by_skill_paginated": lambda s, offset, limit: s.list_runs_by_skill_paginated(
        "skill-a", offset, limit, False
    ),
    "list_runs_filtered": lambda s, offset, limit: s.list_runs_filtered(RunFilter(), offset, limit),
}


@pytest.mark.parametrize("method", PAGED.values(), ids=PAGED.keys())
def test_offsets(storage, method):
    newest_first = seed_bulk(storage)
    for offset, limit, expected in [
        (0, 5, newest_first[:5]),
        (10, 5, newest_first[10:15]),
        (BULK - 1, 5, newest_first[-1:]),
        (BULK, 5, []),
        (-1, 5, newest_first[:5]),
        (-(2**63), 5, newest_first[:5]),
        (2**62, 50, []),
        (2**63, 50, []),
        (2**64, 500, []),
        (10**30, 0, []),
    ]:
        assert ids(method(storage, offset, limit)) == expected, f"offset {offset}"


def test_finished_runs_before_limit_is_a_plain_cap(storage, clock):
    oldest_first = list(reversed(seed_bulk(storage, finished=True)))
    cutoff = clock.now + US
    assert storage.list_finished_runs_before(cutoff, 0) == []
    assert storage.list_finished_runs_before(cutoff, -1) == []
    assert storage.list_finished_runs_before(cutoff, -(2**63)) == []
    assert ids(storage.list_finished_runs_before(cutoff, 2)) == oldest_first[:2]
    # Not clamped to 50 like the other lists.
    assert ids(storage.list_finished_runs_before(cutoff, 501)) == oldest_first
    assert ids(storage.list_finished_runs_before(cutoff, 2**63)) == oldest_first


# --- filters, dry runs, since/until -------------------------------------------------------


def seed_filter_data(storage):
    # id, started (s), skill, caller, channel, parent, final status (None: still running)
    for run_id, seconds, skill, caller, channel, parent, status in [
        ("r01", 0, "A", "u1", "c1", "", "ok"),
        ("r02", 10, "A", "u2", "c1", "", "error"),
        ("r03", 20, "B", "u1", "c2", "", "dry_run"),
        ("r04", 30, "B", "u2", "c2", "r01", "ok"),
        ("r05", 40, "A", "u1", "c2", "r02", None),
        ("r06", 50, "A", "u1", "c1", "", "dry_run"),
        ("r07", 60, "B", "u1", "c1", "", "timeout"),
    ]:
        start(storage, run_id, seconds, skill=skill, caller=caller, channel=channel, parent=parent)
        if status:
            finish(storage, run_id, status)


FILTER_CASES = [
    (RunFilter(), ["r07", "r05", "r04", "r02", "r01"]),
    (RunFilter(include_dry_run=True), ["r07", "r06", "r05", "r04", "r03", "r02", "r01"]),
    (RunFilter(status="dry_run"), ["r06", "r03"]),
    (RunFilter(status="dry_run", include_dry_run=True), ["r06", "r03"]),
    (RunFilter(status="ok", include_dry_run=True), ["r04", "r01"]),
    (RunFilter(status="running"), ["r05"]),
    (RunFilter(status="preempted"), []),
    (RunFilter(skill_id="A"), ["r05", "r02", "r01"]),
    (RunFilter(skill_id="A", include_dry_run=True), ["r06", "r05", "r02", "r01"]),
    (RunFilter(skill_id="a"), []),
    (RunFilter(caller_id="u1"), ["r07", "r05", "r01"]),
    (RunFilter(channel_id="c2"), ["r05", "r04"]),
    (RunFilter(top_level_only=True), ["r07", "r02", "r01"]),
    (RunFilter(top_level_only=True, include_dry_run=True), ["r07", "r06", "r03", "r02", "r01"]),
    (
        RunFilter(skill_id="A", caller_id="u1", channel_id="c1", include_dry_run=True),
        ["r06", "r01"],
    ),
    (RunFilter(status="ok", skill_id="B", channel_id="c2"), ["r04"]),
    (RunFilter(since=at(10)), ["r07", "r05", "r04", "r02"]),
    (RunFilter(since=at(10) + US), ["r07", "r05", "r04"]),
    (RunFilter(until=at(40)), ["r04", "r02", "r01"]),
    (RunFilter(until=at(40) + US), ["r05", "r04", "r02", "r01"]),
    (RunFilter(since=at(10), until=at(40)), ["r04", "r02"]),
    (RunFilter(since=at(10).astimezone(IST), until=at(40).astimezone(PST)), ["r04", "r02"]),
    (RunFilter(since=at(40), until=at(40)), []),
    (RunFilter(since=at(50), until=at(10)), []),
    (RunFilter(since=None, until=None, include_dry_run=True, status="dry_run"), ["r06", "r03"]),
    (RunFilter(since=at(-(10**6)), until=at(10**6)), ["r07", "r05", "r04", "r02", "r01"]),
]


@pytest.mark.parametrize("f,expected", FILTER_CASES, ids=[repr(c[0]) for c in FILTER_CASES])
def test_list_and_count_runs_filtered(storage, f, expected):
    seed_filter_data(storage)
    assert ids(storage.list_runs_filtered(f, 0, 50)) == expected
    assert storage.count_runs_filtered(f) == len(expected)


def test_since_is_inclusive_and_until_exclusive_to_the_microsecond(storage):
    for run_id, when in [("before", T0 - US), ("exact", T0), ("after", T0 + US)]:
        storage.start_run(SkillRun(id=run_id, skill_id="s", started_at=when))

    def listed(**bounds):
        f = RunFilter(**bounds)
        runs = ids(storage.list_runs_filtered(f, 0, 50))
        assert storage.count_runs_filtered(f) == len(runs)
        return runs

    assert listed(since=T0) == ["after", "exact"]
    assert listed(until=T0) == ["before"]
    assert listed(since=T0, until=T0 + US) == ["exact"]
    assert listed(since=T0.astimezone(PST), until=(T0 + US).astimezone(IST)) == ["exact"]
    assert listed(since=T0, until=T0) == []
    assert listed() == ["after", "exact", "before"]


def seed_dry_runs(storage):
    start(storage, "ok-1", 1, skill="s", caller="u")
    finish(storage, "ok-1", "ok")
    start(storage, "dry-1", 2, skill="s", caller="u")
    finish(storage, "dry-1", "dry_run")
    start(storage, "run-1", 3, skill="s", caller="u")
    start(storage, "dry-2", 4, skill="s", caller="u")
    finish(storage, "dry-2", "dry_run")
    start(storage, "other-dry", 5, skill="t", caller="u")
    finish(storage, "other-dry", "dry_run")


def test_dry_runs_are_hidden_from_skill_lists_and_counts_unless_asked_for(storage):
    seed_dry_runs(storage)
    assert ids(storage.list_runs_by_skill("s", 50)) == ["run-1", "ok-1"]
    assert ids(storage.list_runs_by_skill_paginated("s", 0, 50, False)) == ["run-1", "ok-1"]
    assert ids(storage.list_runs_by_skill_paginated("s", 0, 50, True)) == [
        "dry-2",
        "run-1",
        "dry-1",
        "ok-1",
    ]
    assert ids(storage.list_runs_by_skill_paginated("s", 1, 2, True)) == ["run-1", "dry-1"]
    assert storage.count_runs_by_skill("s", False) == 2
    assert storage.count_runs_by_skill("s", True) == 4
    assert storage.count_runs_by_skill("t", False) == 0
    assert storage.count_runs_by_skill("t", True) == 1


def test_dry_runs_are_hidden_from_caller_lists(storage):
    seed_dry_runs(storage)
    assert ids(storage.list_runs_by_caller("u", 50)) == ["run-1", "ok-1"]


def test_lists_by_skill_and_caller_select_exactly_that_value(storage):
    start(storage, "a1", 1, skill="alpha", caller="u1")
    start(storage, "a2", 2, skill="alpha", caller="u2")
    start(storage, "b1", 3, skill="beta", caller="u1")
    start(storage, "A1", 4, skill="Alpha", caller="U1")
    assert ids(storage.list_runs_by_skill("alpha", 50)) == ["a2", "a1"]
    assert storage.count_runs_by_skill("alpha", False) == 2
    assert ids(storage.list_runs_by_caller("u1", 50)) == ["b1", "a1"]
    assert storage.list_runs_by_skill("", 50) == []
    assert storage.list_runs_by_caller("nobody", 50) == []
    assert storage.count_runs_by_skill("nobody", True) == 0


# --- purge_older_than -------------------------------------------------------------------


def test_purge_deletes_runs_started_before_t_with_their_logs(storage):
    for run_id, seconds, status in [
        ("old", -0.000001, "ok"),
        ("older", -3600, None),
        ("dry", -10, "dry_run"),
        ("err", -5, "error"),
        ("edge", 0, "ok"),
        ("new", 1, None),
    ]:
        start(storage, run_id, seconds)
        storage.append_log(log(run_id, 1, created_at=at(seconds)))
        if status:
            finish(storage, run_id, status)
    assert storage.purge_older_than(T0) == 4
    assert ids(everything_runs(storage)) == ["new", "edge"]
    for gone in ["old", "older", "dry", "err"]:
        with pytest.raises(NotFound):
            storage.get_run(gone)
        assert storage.list_logs_by_run(gone) == []
        with pytest.raises(NotFound):
            finish(storage, gone)
        with pytest.raises(NotFound):
            storage.append_log(log(gone, 2))
    assert [entry.run_id for entry in storage.list_logs_by_run("edge")] == ["edge"]
    assert storage.purge_older_than(T0) == 0
    # The logs are gone, not hidden: a new run with a purged id starts without any.
    start(storage, "old", 2)
    assert storage.list_logs_by_run("old") == []


def everything_runs(storage):
    return storage.list_runs_filtered(RunFilter(include_dry_run=True), 0, 500)


def test_purge_takes_any_time_zone_and_returns_the_count(storage):
    assert storage.purge_older_than(T0) == 0
    seed_bulk(storage)
    assert storage.purge_older_than(at(10).astimezone(PST)) == 10
    assert storage.purge_older_than(at(10).astimezone(IST)) == 0
    assert storage.purge_older_than(at(10**6).astimezone(IST)) == BULK - 10
    assert everything_runs(storage) == []


# --- the call tree ----------------------------------------------------------------------


def test_children_of_the_empty_parent_id_are_none(storage):
    start(storage, "top-1", 0)
    start(storage, "top-2", 1)
    start(storage, "child", 2, parent="top-1")
    # Corrupted rows: a self-parent and a two-run cycle.
    start(storage, "self", 3, parent="self")
    start(storage, "x", 4, parent="y")
    start(storage, "y", 5, parent="x")
    assert storage.list_children_by_parent("") == []
    assert ids(storage.list_children_by_parent("top-1")) == ["child"]
    assert ids(storage.list_children_by_parent("self")) == ["self"]
    assert ids(storage.list_children_by_parent("x")) == ["y"]
    assert storage.list_children_by_parent("ghost") == []


def test_children_outlive_a_purged_parent(storage):
    start(storage, "parent", 0)
    start(storage, "kid-2", 20, parent="parent")
    start(storage, "kid-1", 10, parent="parent")
    storage.purge_older_than(at(5))
    assert ids(storage.list_children_by_parent("parent")) == ["kid-1", "kid-2"]
    assert ids(storage.walk_parent_chain("kid-2")) == ["kid-2"]


def test_walk_parent_chain_is_root_first_and_self_last(storage):
    start(storage, "root", 0)
    start(storage, "mid", 1, parent="root")
    start(storage, "leaf", 2, parent="mid")
    start(storage, "sibling", 3, parent="mid")
    finish(storage, "mid", "error", error="boom")
    chain = storage.walk_parent_chain("leaf")
    assert chain == [storage.get_run(run_id) for run_id in ["root", "mid", "leaf"]]
    assert ids(storage.walk_parent_chain("mid")) == ["root", "mid"]
    assert ids(storage.walk_parent_chain("root")) == ["root"]


def seed_chain(storage, length):
    start(storage, "n00", 0)
    for i in range(1, length):
        start(storage, f"n{i:02d}", i, parent=f"n{i - 1:02d}")


def test_walk_parent_chain_is_capped_at_32(storage):
    assert MAX_PARENT_CHAIN_DEPTH == 32
    seed_chain(storage, 40)
    chain = ids(storage.walk_parent_chain("n39"))
    assert chain == [f"n{i:02d}" for i in range(8, 40)]
    assert ids(storage.walk_parent_chain("n31")) == [f"n{i:02d}" for i in range(32)]
    assert ids(storage.walk_parent_chain("n32")) == [f"n{i:02d}" for i in range(1, 33)]
    assert ids(storage.walk_parent_chain("n30")) == [f"n{i:02d}" for i in range(31)]


def test_walk_parent_chain_stops_at_a_missing_parent(storage):
    start(storage, "root", 0)
    start(storage, "mid", 10, parent="root")
    start(storage, "leaf", 20, parent="mid")
    start(storage, "orphan", 30, parent="never-existed")
    assert storage.purge_older_than(at(5)) == 1
    assert ids(storage.walk_parent_chain("leaf")) == ["mid", "leaf"]
    assert ids(storage.walk_parent_chain("orphan")) == ["orphan"]


def test_walk_parent_chain_stops_at_a_cycle(storage):
    # Corrupted data: each run names a parent started later.
    start(storage, "a", 0, parent="b")
    start(storage, "b", 1, parent="a")
    start(storage, "self", 2, parent="self")
    start(storage, "x", 3, parent="a")
    start(storage, "r1", 4, parent="r3")
    start(storage, "r2", 5, parent="r1")
    start(storage, "r3", 6, parent="r2")
    assert ids(storage.walk_parent_chain("a")) == ["b", "a"]
    assert ids(storage.walk_parent_chain("b")) == ["a", "b"]
    assert ids(storage.walk_parent_chain("self")) == ["self"]
    assert ids(storage.walk_parent_chain("x")) == ["b", "a", "x"]
    assert ids(storage.walk_parent_chain("r1")) == ["r2", "r3", "r1"]


def test_walk_parent_chain_of_a_long_cycle_is_capped(storage):
    start(storage, "n00", 0, parent="n39")
    for i in range(1, 40):
        start(storage, f"n{i:02d}", i, parent=f"n{i - 1:02d}")
    chain = ids(storage.walk_parent_chain("n05"))
    assert len(chain) == 32 and len(set(chain)) == 32
    assert chain[-6:] == ["n00", "n01", "n02", "n03", "n04", "n05"]
    assert chain[0] == "n14"


def test_walk_parent_chain_of_an_unknown_run_is_not_found(storage):
    start(storage, "r1", 0, parent="ghost")
    for unknown in ["ghost", "", "R1"]:
        with pytest.raises(NotFound):
            storage.walk_parent_chain(unknown)


# --- list_finished_runs_before ---------------------------------------------------------


def test_finished_runs_before_boundaries(storage, clock):
    start(storage, "running", 0)
    start(storage, "a", 1)
    start(storage, "b", 2)
    start(storage, "c", 3)
    clock.now = at(100)
    finish(storage, "c", "ok")
    clock.now = at(200)
    finish(storage, "a", "error")
    clock.now = at(300)
    finish(storage, "b", "dry_run")
    clock.now = at(400)
    assert storage.list_finished_runs_before(at(100), 10) == []
    assert ids(storage.list_finished_runs_before(at(200), 10)) == ["c"]
    assert ids(storage.list_finished_runs_before(at(200) + US, 10)) == ["c", "a"]
    # Oldest finished first (not oldest started), dry runs in, running rows never.
    everything_finished = storage.list_finished_runs_before(at(10**6), 10)
    assert ids(everything_finished) == ["c", "a", "b"]
    assert [run.finished_at for run in everything_finished] == [at(100), at(200), at(300)]
    for run in everything_finished:
        assert_utc(run.finished_at)
    assert ids(storage.list_finished_runs_before(at(300).astimezone(PST), 10)) == ["c", "a"]


def test_finished_runs_before_include_every_terminal_status(storage, clock):
    for i, status in enumerate(TERMINAL_STATUSES):
        start(storage, f"z-{status}", -i)
        clock.now = at(100 + i)
        finish(storage, f"z-{status}", status)
    got = storage.list_finished_runs_before(at(10**6), 100)
    assert [run.status for run in got] == list(TERMINAL_STATUSES)


def test_finished_runs_before_never_include_running_rows(storage, clock):
    start(storage, "never-finished", 0)
    start(storage, "finished-as-running", 1)
    try:
        finish(storage, "finished-as-running", "running")
    except ValueError:
        pass  # the API refuses it: the run then stays running, unfinished
    start(storage, "finished", 2)
    finish(storage, "finished", "ok")
    assert ids(storage.list_finished_runs_before(at(10**7), 10)) == ["finished"]


def test_finished_runs_before_break_ties_by_id(storage, clock):
    start(storage, "first", 9)
    clock.now = at(100)
    finish(storage, "first", "ok")
    clock.now = at(200)
    for run_id in ["b", "c", "a", "B"]:
        start(storage, run_id, 0)
        finish(storage, run_id, "ok")
    assert ids(storage.list_finished_runs_before(at(201), 10)) == ["first", "B", "a", "b", "c"]


# --- last_run_by_skills -------------------------------------------------------------------


def test_last_run_by_skills_of_no_ids_is_empty_without_touching_the_database(storage, request):
    start(storage, "r1", skill="alpha")
    finish(storage, "r1", "ok")
    with no_database_queries(storage, request):
        assert storage.last_run_by_skills([], False) == {}
        assert storage.last_run_by_skills([], True) == {}
        assert storage.last_run_by_skills((), True) == {}


def seed_last_runs(storage):
    for run_id, seconds, skill, status in [
        ("a-ok", 10, "alpha", "ok"),
        ("a-err", 20, "alpha", "error"),
        ("a-running", 30, "alpha", None),
        ("a-dry", 40, "alpha", "dry_run"),
        ("a-old-ok", 5, "alpha", "ok"),
        ("b-err", 7, "beta", "timeout"),
        ("g-running", 50, "gamma", None),
        ("g-dry", 60, "gamma", "dry_run"),
        ("o-ok", 99, "omega", "ok"),
    ]:
        start(storage, run_id, seconds, skill=skill)
        if status:
            finish(storage, run_id, status)


def test_last_run_by_skills_counts_ok_only_unless_failed_are_included(storage):
    seed_last_runs(storage)
    wanted = ["alpha", "beta", "gamma", "delta"]
    assert storage.last_run_by_skills(wanted, False) == {"alpha": at(10)}
    assert storage.last_run_by_skills(wanted, True) == {"alpha": at(20), "beta": at(7)}
    for value in storage.last_run_by_skills(wanted, True).values():
        assert_utc(value)


def test_last_run_by_skills_takes_duplicate_ids(storage):
    seed_last_runs(storage)
    assert storage.last_run_by_skills(["alpha", "alpha", "beta", "alpha"], True) == {
        "alpha": at(20),
        "beta": at(7),
    }
    assert storage.last_run_by_skills(["beta", "beta"], False) == {}


@pytest.mark.parametrize("status", [s for s in TERMINAL_STATUSES if s not in ("ok", "dry_run")])
def test_last_run_by_skills_counts_every_failed_status_when_asked(storage, status):
    start(storage, "ok", 0, skill="s")
    finish(storage, "ok", "ok")
    start(storage, "failed", 1, skill="s")
    finish(storage, "failed", status)
    start(storage, "running", 2, skill="s")
    start(storage, "dry", 3, skill="s")
    finish(storage, "dry", "dry_run")
    assert storage.last_run_by_skills(["s"], True) == {"s": at(1)}
    assert storage.last_run_by_skills(["s"], False) == {"s": at(0)}


def test_last_run_by_skills_for_hundreds_of_skills(storage):
    # More than SQLite's 500 terms of a compound SELECT, and ids that quoting could break.
    names = [f"skill-{i}" for i in range(1200)]
    names[7] = "sk\"ill\\ \u00fcn\u00efcode \u2028 '); --"
    with_runs = [0, 7, 199, 200, 201, 399, 400, 449, 501, 1199]
    for i in with_runs:
        start(storage, f"r{i}", i, skill=names[i])
        finish(storage, f"r{i}", "ok")
    assert storage.last_run_by_skills(names, False) == {names[i]: at(i) for i in with_runs}


# --- text normalisation ------------------------------------------------------------------

DIRTY = "a\x00b\ud800c\udfffd"
# The same text with the unstorable code points in other places and of other kinds.
DIRTY_OTHER = "a\udfffb\x00c\ud800d"
CLEAN = "a\ufffdb\ufffdc\ufffdd"


def test_nul_and_surrogates_are_replaced_in_every_run_field(storage):
    storage.start_run(
        SkillRun(
            id="id" + DIRTY,
            skill_id="s" + DIRTY,
            caller_id="u" + DIRTY,
            channel_id="c" + DIRTY,
            inputs={"k" + DIRTY: ["v" + DIRTY, {"n" + DIRTY: "x" + DIRTY}], "plain": DIRTY},
            started_at=T0,
            output="o" + DIRTY,
            error="e" + DIRTY,
            parent_run_id="p" + DIRTY,
        )
    )
    assert storage.get_run("id" + CLEAN) == SkillRun(
        id="id" + CLEAN,
        skill_id="s" + CLEAN,
        caller_id="u" + CLEAN,
        channel_id="c" + CLEAN,
        inputs={"k" + CLEAN: ["v" + CLEAN, {"n" + CLEAN: "x" + CLEAN}], "plain": CLEAN},
        started_at=T0,
        status="running",
        output="o" + CLEAN,
        error="e" + CLEAN,
        parent_run_id="p" + CLEAN,
    )


def test_nul_and_surrogates_are_replaced_in_stats_and_logs(storage):
    start(storage, "r1")
    storage.finish_run("r1", RunStats(status="st" + DIRTY, output="o" + DIRTY, error=DIRTY))
    run = storage.get_run("r1")
    assert (run.status, run.output, run.error) == ("st" + CLEAN, "o" + CLEAN, CLEAN)
    storage.append_log(log("r1", 1, "ev" + DIRTY, {DIRTY: {"inner" + DIRTY: [DIRTY, 1, None]}}, T0))
    assert storage.list_logs_by_run("r1") == [
        SkillRunLog("r1", 1, "ev" + CLEAN, {CLEAN: {"inner" + CLEAN: [CLEAN, 1, None]}}, T0)
    ]


def test_lookup_arguments_are_cleaned_the_same_way(storage):
    storage.start_run(
        SkillRun(
            id="id" + DIRTY,
            skill_id="s" + DIRTY,
            caller_id="u" + DIRTY,
            channel_id="c" + DIRTY,
            started_at=T0,
        )
    )
    start(storage, "child", 1, parent="id" + DIRTY)
    storage.append_log(log("id" + DIRTY_OTHER, 1, created_at=T0))
    storage.finish_run("id" + DIRTY_OTHER, RunStats(status="ok" + DIRTY))
    run_id = "id" + CLEAN

    assert storage.get_run("id" + DIRTY_OTHER).id == run_id
    assert [entry.run_id for entry in storage.list_logs_by_run("id" + DIRTY_OTHER)] == [run_id]
    assert ids(storage.list_runs_by_skill("s" + DIRTY_OTHER, 50)) == [run_id]
    assert ids(storage.list_runs_by_skill_paginated("s" + DIRTY_OTHER, 0, 50, False)) == [run_id]
    assert storage.count_runs_by_skill("s" + DIRTY_OTHER, False) == 1
    assert ids(storage.list_runs_by_caller("u" + DIRTY_OTHER, 50)) == [run_id]
    f = RunFilter(
        status="ok" + DIRTY_OTHER,
        skill_id="s" + DIRTY_OTHER,
        caller_id="u" + DIRTY_OTHER,
        channel_id="c" + DIRTY_OTHER,
    )
    assert ids(storage.list_runs_filtered(f, 0, 50)) == [run_id]
    assert storage.count_runs_filtered(f) == 1
    assert ids(storage.list_children_by_parent("id" + DIRTY_OTHER)) == ["child"]
    assert ids(storage.walk_parent_chain("child")) == [run_id, "child"]
    assert ids(storage.walk_parent_chain("id" + DIRTY_OTHER)) == [run_id]
    finish(storage, "id" + DIRTY_OTHER, "ok")
    assert storage.last_run_by_skills(["s" + DIRTY_OTHER], False) == {"s" + CLEAN: T0}


def test_get_run_with_a_nul_finds_the_run_stored_with_the_replacement(storage):
    start(storage, "x\ufffd")
    assert storage.get_run("x\x00").id == "x\ufffd"
    assert storage.get_run("x\ud800").id == "x\ufffd"
    assert ids(storage.walk_parent_chain("x\udfff")) == ["x\ufffd"]


UNICODE = [
    "مرحبا بالعالم",  # right to left
    "\u202eevil\u202c",  # bidi override
    "\U0001f9ea\U0001f469\u200d\U0001f4bb\U0001f3f3\ufe0f\u200d\U0001f308",  # emoji, ZWJ
    "e\u0301",  # combining accent, not normalised
    "\u4e2d\u6587",
    "\ufeffbom",
    "\U0010fffd",
    "\ufffd",
    "'\"<script>alert(1)</script>&amp;",
    "line\nbreak\ttab\r",
    "",
]


def test_unicode_round_trips_unchanged(storage):
    text = " | ".join(UNICODE)
    inputs = {value: [value, {value: value}] for value in UNICODE}
    run = SkillRun(
        id="run-\U0001f9ea-\u0645\u0631\u062d",
        skill_id=text[:255],
        caller_id=UNICODE[0],
        channel_id=UNICODE[2],
        inputs=inputs,
        started_at=T0,
        output=text,
        error=text[::-1],
        parent_run_id="\u202eparent",
    )
    storage.start_run(run)
    stored = storage.get_run(run.id)
    assert stored == dataclasses.replace(run, status="running")
    storage.finish_run(run.id, RunStats(status="ok", output=text, error=UNICODE[1]))
    finished = storage.get_run(run.id)
    assert (finished.output, finished.error) == (text, UNICODE[1])
    storage.append_log(log(run.id, 1, "step", inputs, T0))
    assert storage.list_logs_by_run(run.id) == [SkillRunLog(run.id, 1, "step", inputs, T0)]
    assert ids(storage.list_runs_by_caller(UNICODE[0], 50)) == [run.id]


def nested(depth):
    value = {"leaf": [1, "two", None]}
    for level in range(depth):
        value = {f"level-{level}": [value, level, {"empty": {}, "list": []}]}
    return value


def test_nested_json_round_trips_unchanged(storage):
    inputs = {
        "deep": nested(30),
        "mixed": [1, -7, 2**53 + 1, -0.5, 1.5e-10, 123456.789, True, False, None, "", [], {}],
        "": "the empty key",
        "unicode \U0001f9ea": {"\u0645": "\u202e"},
    }
    start(storage, "r1", inputs=inputs)
    assert storage.get_run("r1").inputs == inputs
    storage.append_log(log("r1", 1, payload=inputs, created_at=T0))
    assert storage.list_logs_by_run("r1")[0].payload == inputs
