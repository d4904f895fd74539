"""The storage contract for skill runs: a port of the Go executor's ``storage.go``.

The Go executor defines a Storage interface (17 methods over two tables, skill_runs and
skill_run_logs); this module is that interface in Python, with the rules the Go text
leaves open written down in the docstrings and functions below. It imports nothing from
Django so that an executor can depend on it alone. Every Storage implementation (memory,
Django, HTTP) follows these rules; ``tests/contract/`` checks them all with one suite.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

MAX_PARENT_CHAIN_DEPTH = 32
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Offsets beyond this can only return nothing; clamping keeps them inside a signed
# 64-bit integer so neither database overflows.
MAX_OFFSET = 2**62

ID_MAX_LENGTH = 64
NAME_MAX_LENGTH = 255
STATUS_MAX_LENGTH = 32
EVENT_TYPE_MAX_LENGTH = 32

STATUS_RUNNING = "running"
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_TIMEOUT = "timeout"
STATUS_BUDGET_EXCEEDED = "budget_exceeded"
STATUS_DRY_RUN = "dry_run"
STATUS_PREEMPTED = "preempted"
STATUS_LANE_BUSY = "lane_busy"

# Every status the Go executor writes (its LastRunBySkills names the last two).
KNOWN_STATUSES = (
    STATUS_RUNNING,
    STATUS_OK,
    STATUS_ERROR,
    STATUS_TIMEOUT,
    STATUS_BUDGET_EXCEEDED,
    STATUS_DRY_RUN,
    STATUS_PREEMPTED,
    STATUS_LANE_BUSY,
)
TERMINAL_STATUSES = tuple(s for s in KNOWN_STATUSES if s != STATUS_RUNNING)

EVENT_STEP = "step"
EVENT_TOOL_CALL = "tool_call"
EVENT_TOOL_RESULT = "tool_result"
EVENT_ERROR = "error"
EVENT_TYPES = (EVENT_STEP, EVENT_TOOL_CALL, EVENT_TOOL_RESULT, EVENT_ERROR)


# A tool_result event whose payload carries this key set to JSON true records a failed
# tool call (the recorder's tool_result(is_error=True), OTLP ingest's failed tool spans).
# Every face and every roll-up (database triggers included) uses this one rule.
TOOL_ERROR_KEY = "is_error"


def tool_result_failed(event_type: str, payload: Any) -> bool:
    """Whether an event is a failed tool result (see TOOL_ERROR_KEY)."""
    return (
        event_type == EVENT_TOOL_RESULT
        and isinstance(payload, dict)
        and payload.get(TOOL_ERROR_KEY) is True
    )


FAILED_STATUSES = (STATUS_ERROR, STATUS_TIMEOUT, STATUS_BUDGET_EXCEEDED)


class NotFound(LookupError):
    """A run lookup failed (Go: ErrNotFound)."""


class Conflict(ValueError):
    """A run id or a (run_id, sequence) pair is already stored; nothing was changed."""


class InvalidInput(ValueError):
    """An argument the contract refuses (naive time, too long an id, not JSON...).

    A ValueError, so callers that caught ValueError keep working; the API maps only this
    one to 400, so a ValueError from a bug stays a server error.
    """


@dataclasses.dataclass
class SkillRun:
    id: str
    skill_id: str = ""
    caller_id: str = ""
    channel_id: str = ""
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    status: str = ""
    output: str = ""
    error: str = ""
    tool_calls_count: int = 0
    runtime_seconds: float = 0.0
    parent_run_id: str = ""
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_thinking_tokens: int = 0


# Every field of a run, in the dataclass's (and the table's) order: what a writer that copies
# whole rows (the benchmark's loader, OTLP ingest's COPY, DjangoStorage) writes and reads.
RUN_FIELDS = tuple(field.name for field in dataclasses.fields(SkillRun))


@dataclasses.dataclass
class RunStats:
    status: str = ""
    output: str = ""
    error: str = ""
    tool_calls: int = 0
    runtime_seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0


@dataclasses.dataclass
class SkillRunLog:
    run_id: str
    sequence: int
    event_type: str = ""
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)
    created_at: datetime | None = None


@dataclasses.dataclass
class RunFilter:
    status: str = ""
    skill_id: str = ""
    caller_id: str = ""
    channel_id: str = ""
    top_level_only: bool = False
    include_dry_run: bool = False
    since: datetime | None = None
    until: datetime | None = None


@runtime_checkable
class Storage(Protocol):
    def initialize(self) -> None: ...
    def start_run(self, run: SkillRun) -> None: ...
    def finish_run(self, run_id: str, stats: RunStats) -> None: ...
    def append_log(self, log: SkillRunLog) -> None: ...
    def get_run(self, run_id: str) -> SkillRun: ...
    def list_logs_by_run(self, run_id: str) -> list[SkillRunLog]: ...
    def list_runs_by_skill(self, skill_id: str, limit: int) -> list[SkillRun]: ...
    def list_runs_by_skill_paginated(
        self, skill_id: str, offset: int, limit: int, include_dry_run: bool
    ) -> list[SkillRun]: ...
    def count_runs_by_skill(self, skill_id: str, include_dry_run: bool) -> int: ...
    def list_runs_by_caller(self, caller_id: str, limit: int) -> list[SkillRun]: ...
    def list_runs_filtered(self, f: RunFilter, offset: int, limit: int) -> list[SkillRun]: ...
    def count_runs_filtered(self, f: RunFilter) -> int: ...
    def purge_older_than(self, t: datetime) -> int: ...
    def list_children_by_parent(self, parent_run_id: str) -> list[SkillRun]: ...
    def walk_parent_chain(self, run_id: str) -> list[SkillRun]: ...
    def list_finished_runs_before(self, cutoff: datetime, limit: int) -> list[SkillRun]: ...
    def last_run_by_skills(
        self, skill_ids: Sequence[str], include_failed: bool
    ) -> dict[str, datetime]: ...


# --- rules shared by every implementation -------------------------------------------

# NUL and every surrogate code point: PostgreSQL cannot store them and UTF-8 cannot
# encode the surrogates, so every implementation replaces them the same way.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean_text(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"expected a string, got {type(value).__name__}")
    return _UNSTORABLE.sub(REPLACEMENT, value)


def clean_json(value: Any) -> Any:
    """A copy of a JSON value with every string (keys too) cleaned.

    Refuses what JSON cannot carry (NaN, infinities, non-string keys, other types) with
    ValueError, so that the databases and the memory storage agree on what is stored.
    """
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput("JSON cannot hold NaN or infinite numbers")
        return value
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"JSON object keys must be strings, got {type(key).__name__}")
            cleaned[clean_text(key)] = clean_json(item)
        return cleaned
    if isinstance(value, list | tuple):
        return [clean_json(item) for item in value]
    raise InvalidInput(f"not a JSON value: {type(value).__name__}")


def clean_object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return clean_json(value)


def require_aware(value: datetime, what: str) -> datetime:
    """The datetime in UTC; a naive one is refused: an instant must be unambiguous."""
    if not isinstance(value, datetime):
        raise InvalidInput(f"{what} must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


def optional_aware(value: datetime | None, what: str) -> datetime | None:
    return None if value is None else require_aware(value, what)


def clamp_limit(limit: int) -> int:
    """Limits <= 0 or above MAX_LIMIT become DEFAULT_LIMIT (Go: 'to bound admin scans')."""
    limit = int(limit)
    if limit <= 0 or limit > MAX_LIMIT:
        return DEFAULT_LIMIT
    return limit


def clamp_offset(offset: int) -> int:
    return min(max(int(offset), 0), MAX_OFFSET)


def _bounded(value: str, what: str, max_length: int) -> str:
    value = clean_text(value)
    if len(value) > max_length:
        raise InvalidInput(f"{what} is longer than {max_length} characters")
    return value


def _integer(value: Any, what: str) -> int:
    # Every integer column is 64-bit (BigIntegerField); PostgreSQL refuses more.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer")
    if not -(2**63) <= value < 2**63:
        raise InvalidInput(f"{what} does not fit in 64 bits")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{what} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidInput(f"{what} must be finite")
    return value


def clean_id(value: str) -> str:
    """A lookup argument cleaned like stored ids are."""
    return clean_text(value)


# A whole segment of dots is a dot segment even percent-encoded ("%2E" is "." to a browser,
# WHATWG URL), so ids made only of one or two dots, after any number of "~", get one more
# "~" in front in a URL; run_id_from_segment takes it off again (a one-to-one mapping).
_DOTS_ONLY = re.compile(r"~*\.{1,2}")


def run_id_segment(run_id: str) -> str:
    """A run id as one URL path segment: every character quoted, "/" and "." too, so no
    client, proxy or browser reads a dot segment ("..") in it and opens another run; the ids
    "." and ".." (and "~."...) get a "~" in front, undone by run_id_from_segment."""
    return quote(escape_dot_id(clean_id(run_id)), safe="").replace(".", "%2E")


def escape_dot_id(run_id: str) -> str:
    """The id with a "~" in front when it is only dots ("." or "..") after any "~"."""
    return "~" + run_id if _DOTS_ONLY.fullmatch(run_id) else run_id


def run_id_from_segment(segment: str) -> str:
    """The run id a decoded URL segment names: the inverse of escape_dot_id."""
    if segment.startswith("~") and _DOTS_ONLY.fullmatch(segment):
        return segment[1:]
    return segment


def new_run(run: SkillRun, now: datetime) -> SkillRun:
    """The run as start_run stores it: status running, no finish time, text cleaned."""
    run_id = _bounded(run.id, "id", ID_MAX_LENGTH)
    if not run_id:
        raise InvalidInput("id must not be empty")
    started_at = require_aware(run.started_at, "started_at") if run.started_at else now
    return SkillRun(
        id=run_id,
        skill_id=_bounded(run.skill_id, "skill_id", NAME_MAX_LENGTH),
        caller_id=_bounded(run.caller_id, "caller_id", NAME_MAX_LENGTH),
        channel_id=_bounded(run.channel_id, "channel_id", NAME_MAX_LENGTH),
        inputs=clean_object(run.inputs, "inputs"),
        started_at=started_at,
        finished_at=None,
        status=STATUS_RUNNING,
        output=clean_text(run.output),
        error=clean_text(run.error),
        tool_calls_count=_integer(run.tool_calls_count, "tool_calls_count"),
        runtime_seconds=_number(run.runtime_seconds, "runtime_seconds"),
        parent_run_id=_bounded(run.parent_run_id, "parent_run_id", ID_MAX_LENGTH),
        total_input_tokens=_integer(run.total_input_tokens, "total_input_tokens"),
        total_output_tokens=_integer(run.total_output_tokens, "total_output_tokens"),
        total_thinking_tokens=_integer(run.total_thinking_tokens, "total_thinking_tokens"),
    )


def clean_stats(stats: RunStats) -> RunStats:
    return RunStats(
        status=_bounded(stats.status, "status", STATUS_MAX_LENGTH),
        output=clean_text(stats.output),
        error=clean_text(stats.error),
        tool_calls=_integer(stats.tool_calls, "tool_calls"),
        runtime_seconds=_number(stats.runtime_seconds, "runtime_seconds"),
        input_tokens=_integer(stats.input_tokens, "input_tokens"),
        output_tokens=_integer(stats.output_tokens, "output_tokens"),
        thinking_tokens=_integer(stats.thinking_tokens, "thinking_tokens"),
    )


def new_log(log: SkillRunLog, now: datetime) -> SkillRunLog:
    """The log as append_log stores it: created_at defaulted, text cleaned."""
    return SkillRunLog(
        run_id=clean_id(log.run_id),
        sequence=_integer(log.sequence, "sequence"),
        event_type=_bounded(log.event_type, "event_type", EVENT_TYPE_MAX_LENGTH),
        payload=clean_object(log.payload, "payload"),
        created_at=require_aware(log.created_at, "created_at") if log.created_at else now,
    )


def clean_filter(f: RunFilter) -> RunFilter:
    return RunFilter(
        status=clean_text(f.status),
        skill_id=clean_text(f.skill_id),
        caller_id=clean_text(f.caller_id),
        channel_id=clean_text(f.channel_id),
        top_level_only=bool(f.top_level_only),
        include_dry_run=bool(f.include_dry_run),
        since=optional_aware(f.since, "since"),
        until=optional_aware(f.until, "until"),
    )


def unique_ids(skill_ids: Sequence[str]) -> list[str]:
    """Cleaned ids, duplicates dropped, first-seen order kept."""
    if isinstance(skill_ids, str):
        raise InvalidInput("skill_ids must be a sequence of strings, not one string")
    return list(dict.fromkeys(clean_id(s) for s in skill_ids))


def utcnow() -> datetime:
    return datetime.now(UTC)
