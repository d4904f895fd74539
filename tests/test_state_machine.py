"""MemoryStorage and DjangoStorage agree on random operation sequences (Hypothesis).

Each step runs one contract call on both storages and compares the results, or the types
of the exceptions raised. Writes draw from small pools of ids, skills, callers, channels
and statuses (with NUL, surrogates, too-long values and case variants in them) so that
duplicates, ties, cycles and purges happen often, and time bounds are mostly the exact
times of stored runs (or one microsecond off) so that every boundary is hit. "Now" is a
clock that the machine moves, so finished_at and the default times are the same in both
storages and are compared exactly.

Every example starts from empty tables: the machine deletes all rows when it is built.
All examples of the test run inside pytest-django's test transaction, rolled back at the
end; each Django call runs in a savepoint, so a failing statement undoes only itself, as
it would in autocommit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from runs import contract
from runs.contract import (
    EVENT_TYPES,
    KNOWN_STATUSES,
    RunFilter,
    RunStats,
    SkillRun,
    SkillRunLog,
)
from runs.memory import MemoryStorage
from runs.models import SkillRun as SkillRunModel
from runs.models import SkillRunLog as SkillRunLogModel
from runs.storage import DjangoStorage

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
NAIVE = datetime(2024, 5, 1, 12, 0, 10)

# Small pools, so that repeats are common; with values that clean to the same text
# ("r\x00" and "r\ufffd"), differ only in case, sit on or over a length limit, or are empty.
RUN_IDS = [*(f"r{i}" for i in range(8)), "R1", "r\x00", "r\ufffd", "x" * 64]
BAD_RUN_IDS = ["y" * 65, ""]
SKILLS = ["alpha", "beta", "Beta", "s\x00", "s\ud800", ""]
CALLERS = ["u1", "u2", "u\udfff", ""]
CHANNELS = ["c1", "c2", ""]
STATUSES = [*KNOWN_STATUSES, "", "odd\x00"]
EVENTS = [*EVENT_TYPES, ""]
LIMITS = [-1, 0, 1, 2, 3, 5, 50, 500, 501, 2**63]


def mostly(common, rare, one_in=10):
    """Draws from `common`, and from `rare` about once in `one_in` draws."""
    return st.integers(1, one_in).flatmap(lambda n: rare if n == 1 else common)


text = st.text(
    alphabet=st.sampled_from(["a", "Z", " ", "\x00", "\ud800", "\udfff", "\u00e9", "\U0001f600"]),
    max_size=6,
)
# Seconds around T0 with microsecond neighbours, in several zones: many ties.
instants = st.builds(
    lambda seconds, micros, zone: (T0 + timedelta(seconds=seconds, microseconds=micros)).astimezone(
        zone
    ),
    st.integers(-3, 40),
    st.sampled_from([0, 0, 0, 1, -1]),
    st.sampled_from(ZONES),
)
times = mostly(instants, st.just(NAIVE))
# Terminal statuses the rules care most about come up more often than the others.
statuses = mostly(st.sampled_from(["ok", "dry_run", "error"]), st.sampled_from(STATUSES), 2)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    # jsonb prints numbers in full, so a float of 1e16 or more would come back as an int.
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
    | text
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(text, json_values, max_size=3) | st.none()
json_objects_or_nan = mostly(json_objects, st.just({"bad": [float("nan")]}))
offsets = mostly(st.sampled_from([-1, 0, 0, 1, 2]), st.sampled_from([3, 7, 2**62, 2**63]), 4)
limits = st.sampled_from(LIMITS)
# Small, then anything a column holds, then rarely beyond it (refused with ValueError).
counts = mostly(st.integers(0, 5) | st.integers(-(2**63), 2**63 - 1), st.integers(-(2**70), 2**70))

seed_runs = st.lists(
    st.fixed_dictionaries(
        {
            "run_id": st.sampled_from(RUN_IDS),
            "skill": st.sampled_from(SKILLS),
            "caller": st.sampled_from(CALLERS),
            "channel": st.sampled_from(CHANNELS),
            "started_at": instants,
            # Half top-level; the others share a few parents (children lists, cycles).
            "parent": mostly(st.just(""), st.sampled_from(["ghost", *RUN_IDS[:4]]), one_in=2),
            "status": st.none() | statuses,
            # Repeats on purpose: a repeated sequence is a Conflict.
            "log_sequences": st.lists(st.integers(0, 3), max_size=4),
        }
    ),
    min_size=4,
    max_size=12,
)


class Clock:
    """The "now" of both storages while the machine runs."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


CLOCK = Clock()


def assert_utc_everywhere(value) -> None:
    if isinstance(value, datetime):
        assert value.utcoffset() == timedelta(0), value
    elif isinstance(value, list | tuple):
        for item in value:
            assert_utc_everywhere(item)
    elif isinstance(value, dict):
        for item in value.values():
            assert_utc_everywhere(item)
    elif isinstance(value, SkillRun | SkillRunLog):
        for name in ("started_at", "finished_at", "created_at"):
            assert_utc_everywhere(getattr(value, name, None))


def everything(storage):
    """The whole state: every run, dry runs too, with its logs."""
    runs = storage.list_runs_filtered(RunFilter(include_dry_run=True), 0, 500)
    return [(run, storage.list_logs_by_run(run.id)) for run in runs]


class StorageComparison(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        SkillRunLogModel.objects.all().delete()
        SkillRunModel.objects.all().delete()
        CLOCK.now = T0 + timedelta(seconds=10)
        self.memory = MemoryStorage()
        self.django = DjangoStorage()
        # Cleaned ids that start_run accepted: lookups and parents are drawn from these too.
        self.started: set[str] = set()

    def both(self, call):
        """call(storage) on each storage: the same result or the same exception type."""
        outcomes = []
        for storage in (self.memory, self.django):
            try:
                if storage is self.django:
                    with transaction.atomic():
                        result = call(storage)
                else:
                    result = call(storage)
            except Exception as exc:  # noqa: BLE001 - the type is what is compared
                outcomes.append(("raised", type(exc)))
            else:
                assert_utc_everywhere(result)
                outcomes.append(("returned", result))
        memory, django = outcomes
        assert django == memory, f"memory: {memory!r}\ndjango: {django!r}"
        return memory

    def start(self, run: SkillRun) -> None:
        kind, _ = self.both(lambda s: s.start_run(run))
        if kind == "returned":
            self.started.add(contract.clean_id(run.id))

    def run_id(self, data) -> str:
        """Mostly a started run, sometimes any id of the pool, rarely an invalid one."""
        pool = st.sampled_from(RUN_IDS)
        if self.started:
            pool = mostly(st.sampled_from(sorted(self.started)), pool, one_in=4)
        return data.draw(mostly(pool, st.sampled_from(BAD_RUN_IDS)), label="run_id")

    def bound(self, data, field: str, oldest_half: bool = False) -> datetime:
        """Mostly a time a stored run has in `field` (or 1 µs off), in some zone."""
        runs = self.memory.list_runs_filtered(RunFilter(include_dry_run=True), 0, 500)
        stored = sorted({getattr(run, field) for run in runs} - {None})
        if oldest_half:
            stored = stored[: (len(stored) + 1) // 2]
        if not stored:
            return data.draw(times, label=field)
        exact = st.builds(
            lambda value, nudge, zone: (value + nudge).astimezone(zone),
            st.sampled_from(stored),
            st.sampled_from([timedelta(0), timedelta(0), timedelta(0), US, -US]),
            st.sampled_from(ZONES),
        )
        return data.draw(mostly(exact, times, one_in=4), label=field)

    def run_filter(self, data) -> RunFilter:
        """A filter on a few fields (most filters with many fields would match nothing)."""
        fields = {
            "status": lambda: data.draw(statuses),
            "skill_id": lambda: data.draw(st.sampled_from(SKILLS)),
            "caller_id": lambda: data.draw(st.sampled_from(CALLERS)),
            "channel_id": lambda: data.draw(st.sampled_from(CHANNELS)),
            "top_level_only": lambda: True,
            "since": lambda: self.bound(data, "started_at"),
            "until": lambda: self.bound(data, "started_at"),
        }
        how_many = data.draw(st.sampled_from([0, 1, 1, 2, 2, 3]))
        chosen = data.draw(st.permutations(sorted(fields)))[:how_many]
        values = {name: fields[name]() for name in chosen}
        return RunFilter(include_dry_run=data.draw(st.booleans()), **values)

    # --- writes and time -------------------------------------------------------------

    @initialize(runs=seed_runs)
    def seed(self, runs):
        """Some runs, with logs, a few finished, so that the reads find rows from step one."""
        for number, spec in enumerate(runs):
            run = SkillRun(
                id=spec["run_id"],
                skill_id=spec["skill"],
                caller_id=spec["caller"],
                channel_id=spec["channel"],
                inputs={"number": number},
                started_at=spec["started_at"],
                parent_run_id=spec["parent"],
            )
            self.start(run)
            for sequence in spec["log_sequences"]:
                entry = SkillRunLog(run.id, sequence, "step", {"sequence": sequence})
                self.both(lambda s, entry=entry: s.append_log(entry))
            if spec["status"] is not None:
                stats = RunStats(status=spec["status"], tool_calls=number)
                self.both(lambda s, run_id=run.id, stats=stats: s.finish_run(run_id, stats))
                CLOCK.now += timedelta(seconds=number % 3)

    @rule(
        data=st.data(),
        # Unlike the other rules, mostly ids that may be new.
        run_id=mostly(st.sampled_from(RUN_IDS), st.sampled_from(BAD_RUN_IDS)),
        skill=st.sampled_from(SKILLS),
        caller=st.sampled_from(CALLERS),
        channel=st.sampled_from(CHANNELS),
        started_at=st.none() | times,
        status=st.sampled_from(STATUSES),
        finished_at=st.none() | instants,
        inputs=json_objects_or_nan,
        output=text,
        tool_calls=counts,
        input_tokens=counts,
    )
    def start_run(
        self,
        data,
        run_id,
        skill,
        caller,
        channel,
        started_at,
        status,
        finished_at,
        inputs,
        output,
        tool_calls,
        input_tokens,
    ):
        # Parents may be unknown or started later: that is how cycles get in.
        parent = data.draw(st.sampled_from(["", "ghost", *RUN_IDS[:4], *sorted(self.started)]))
        run = SkillRun(
            id=run_id,
            skill_id=skill,
            caller_id=caller,
            channel_id=channel,
            inputs=inputs,
            started_at=started_at,
            finished_at=finished_at,
            status=status,
            output=output,
            error=output[::-1],
            tool_calls_count=tool_calls,
            runtime_seconds=float(tool_calls) / 8,
            parent_run_id=parent,
            total_input_tokens=input_tokens,
            total_output_tokens=tool_calls,
            total_thinking_tokens=0,
        )
        self.start(run)

    @rule(
        data=st.data(),
        status=statuses,
        output=text,
        error=text,
        tool_calls=counts,
        runtime=mostly(st.floats(min_value=0, max_value=1e6), st.just(float("nan"))),
        input_tokens=counts,
        output_tokens=counts,
        thinking_tokens=counts,
    )
    def finish_run(
        self,
        data,
        status,
        output,
        error,
        tool_calls,
        runtime,
        input_tokens,
        output_tokens,
        thinking_tokens,
    ):
        stats = RunStats(
            status=status,
            output=output,
            error=error,
            tool_calls=tool_calls,
            runtime_seconds=runtime,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            thinking_tokens=thinking_tokens,
        )
        run_id = self.run_id(data)
        self.both(lambda s: s.finish_run(run_id, stats))

    @rule(
        data=st.data(),
        sequence=mostly(st.integers(0, 3), st.integers(-(2**63), 2**63 - 1)),
        event_type=mostly(st.sampled_from(EVENTS), st.just("e" * 33)),
        payload=json_objects_or_nan,
        created_at=st.none() | times,
    )
    def append_log(self, data, sequence, event_type, payload, created_at):
        entry = SkillRunLog(
            run_id=self.run_id(data),
            sequence=sequence,
            event_type=event_type,
            payload=payload,
            created_at=created_at,
        )
        self.both(lambda s: s.append_log(entry))

    @rule(data=st.data())
    def purge_older_than(self, data):
        # On the boundaries of the older runs, so that the newer stay for the reads.
        t = self.bound(data, "started_at", oldest_half=True)
        self.both(lambda s: s.purge_older_than(t))

    @rule(step=st.sampled_from([timedelta(0), US, timedelta(seconds=3)]))
    def tick(self, step):
        CLOCK.now += step

    # --- reads ---------------------------------------------------------------------

    @rule(data=st.data())
    def get_run(self, data):
        run_id = self.run_id(data)
        self.both(lambda s: s.get_run(run_id))

    @rule(data=st.data())
    def list_logs_by_run(self, data):
        run_id = self.run_id(data)
        self.both(lambda s: s.list_logs_by_run(run_id))

    @rule(skill=st.sampled_from(SKILLS), limit=limits)
    def list_runs_by_skill(self, skill, limit):
        self.both(lambda s: s.list_runs_by_skill(skill, limit))

    @rule(skill=st.sampled_from(SKILLS), offset=offsets, limit=limits, dry=st.booleans())
    def list_runs_by_skill_paginated(self, skill, offset, limit, dry):
        self.both(lambda s: s.list_runs_by_skill_paginated(skill, offset, limit, dry))

    @rule(skill=st.sampled_from(SKILLS), include_dry_run=st.booleans())
    def count_runs_by_skill(self, skill, include_dry_run):
        self.both(lambda s: s.count_runs_by_skill(skill, include_dry_run))

    @rule(caller=st.sampled_from(CALLERS), limit=limits)
    def list_runs_by_caller(self, caller, limit):
        self.both(lambda s: s.list_runs_by_caller(caller, limit))

    @rule(data=st.data(), offset=offsets, limit=limits)
    def list_runs_filtered(self, data, offset, limit):
        f = self.run_filter(data)
        self.both(lambda s: s.list_runs_filtered(f, offset, limit))

    @rule(data=st.data())
    def count_runs_filtered(self, data):
        f = self.run_filter(data)
        self.both(lambda s: s.count_runs_filtered(f))

    @rule(data=st.data())
    def list_children_by_parent(self, data):
        runs = self.memory.list_runs_filtered(RunFilter(include_dry_run=True), 0, 500)
        parents = sorted({run.parent_run_id for run in runs} - {""})
        pool = st.sampled_from(["", "ghost", *RUN_IDS])
        if parents:
            # Mostly a parent that has children.
            pool = mostly(st.sampled_from(parents), pool, one_in=3)
        parent = data.draw(pool)
        self.both(lambda s: s.list_children_by_parent(parent))

    @rule(data=st.data())
    def walk_parent_chain(self, data):
        run_id = self.run_id(data)
        self.both(lambda s: s.walk_parent_chain(run_id))

    @rule(data=st.data(), limit=limits)
    def list_finished_runs_before(self, data, limit):
        cutoff = self.bound(data, "finished_at")
        self.both(lambda s: s.list_finished_runs_before(cutoff, limit))

    @rule(
        skills=st.lists(st.sampled_from([*SKILLS, "never-run"]), max_size=4),
        include_failed=st.booleans(),
    )
    def last_run_by_skills(self, skills, include_failed):
        self.both(lambda s: s.last_run_by_skills(skills, include_failed))

    @rule()
    def compare_everything(self):
        self.both(everything)

    def teardown(self):
        self.compare_everything()


# Measured on the 2-core machines under load: about 25 s on SQLite, 45 s on PostgreSQL.
MACHINE_SETTINGS = settings(
    max_examples=120,
    stateful_step_count=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.django_db
def test_memory_and_django_storage_agree(monkeypatch):
    monkeypatch.setattr(contract, "utcnow", CLOCK)
    run_state_machine_as_test(StorageComparison, settings=MACHINE_SETTINGS)
