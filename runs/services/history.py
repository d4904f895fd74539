"""The synthetic history every generator of the project draws from: one, deterministic.

``History(runs, events, seed, end)`` plans a history ending at ``end``: 90 days of runs,
~200 skills with a Zipf-like popularity, thousands of callers, hundreds of channels, 3% dry
runs, a third of the runs nested in call trees up to 6 levels deep, 1% stale ``running``
rows, outputs from a few bytes to 10 KB, a skewed number of events per run, and (unless
``fixtures=False``) runs with known ids: ``bench-events-10``, ``bench-events-1000``,
``bench-events-10000`` (exactly that many events) and ``bench-tree-1000-root`` (the root of
a call tree of exactly 1,000 runs).

It streams in two passes (runs, then their events) as tuples whose texts are indices into
``History.pools``, so 1M runs / 10M events fit in a few hundred MB. Who loads it:
``bench/generate.py`` (COPY into PostgreSQL, executemany into SQLite: the fast path for
benchmark data sets), ``load()`` below (the ORM, for tests that need a realistic history:
the query-plan tests) and ``manage.py seed_demo --volume`` (recorded through the recorder).
Nothing here imports Django at module level: bench/generate.py runs without it.
"""

from __future__ import annotations

import array
import bisect
import json
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

DAYS = 90
SKILLS = 200
CALLERS = 5000
CHANNELS = 300
DRY_RUN_SHARE = 0.03
STALE_SHARE = 0.01
# A root grows a call tree with this chance, and then has 1 + Geometric(mean 1.5) nested runs:
# 0.2 * 2.5 = 0.5 nested runs per root, so a third of all runs are nested.
TREE_CHANCE = 0.2
NESTED_MEAN = 2.5
MAX_DEPTH = 5  # root at depth 0: six levels
MEAN_EVENTS_SIGMA = 1.2  # log-normal spread of events per run
MAX_EVENTS_PER_RUN = 3000

EVENT_FIXTURES = {"bench-events-10": 10, "bench-events-1000": 1000, "bench-events-10000": 10_000}
TREE_ROOT = "bench-tree-1000-root"
TREE_LEVELS = (1, 4, 16, 64, 256, 659)  # 1,000 runs over six levels
TREE_EVENTS_PER_NODE = 3

VERBS = (
    "triage",
    "summarize",
    "review",
    "deploy",
    "refactor",
    "translate",
    "classify",
    "draft",
    "search",
    "plan",
    "fix",
    "test",
    "index",
    "audit",
    "migrate",
    "explain",
    "label",
    "merge",
    "monitor",
    "extract",
)
NOUNS = (
    "issue",
    "pr",
    "ticket",
    "doc",
    "incident",
    "query",
    "invoice",
    "email",
    "log",
    "release",
)
TOOLS = (
    "web_search",
    "read_file",
    "write_file",
    "run_shell",
    "http_get",
    "sql_query",
    "grep",
    "git_diff",
    "send_message",
    "calendar_lookup",
)
WORDS = (
    "the agent checked repository config failed because token expired retried request with "
    "backoff then parsed response found three matching records summary of changes includes new "
    "index on table user asked for deployment plan but budget was reached before tool returned "
    "error code timeout while waiting for lane lock upstream service answered slowly cache miss "
    "rate limit exceeded validation passed all tests green except flaky integration suite about "
    "payment gateway which needs manual review before merge queue accepts it next step open "
    "ticket assign owner notify channel attach logs and trace ids for follow up"
).split()


def skill_name(rank: int) -> str:
    """The skill of popularity rank ``rank`` (0 = most runs)."""
    return f"{VERBS[rank % len(VERBS)]}-{NOUNS[rank // len(VERBS) % len(NOUNS)]}"


def caller_name(rank: int) -> str:
    return f"caller-{rank:05d}"


def channel_name(rank: int) -> str:
    return f"channel-{rank:04d}"


def zipf_cumulative(n: int, s: float) -> list[float]:
    total, cumulative = 0.0, []
    for rank in range(1, n + 1):
        total += 1 / rank**s
        cumulative.append(total)
    return [c / total for c in cumulative]


STATUS_WEIGHTS = (  # of finished, non-dry runs
    ("ok", 0.885),
    ("error", 0.06),
    ("timeout", 0.02),
    ("budget_exceeded", 0.015),
    ("preempted", 0.01),
    ("lane_busy", 0.01),
)
FAILED = {"error", "timeout", "budget_exceeded", "preempted", "lane_busy"}


class Pools:
    """Pre-built texts and JSON documents, picked at random per row (building each is slow)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.outputs = [self.text(self._log_uniform(5, 10_240)) for _ in range(3000)]
        self.errors = [self.error_text() for _ in range(500)]
        self.inputs = [json.dumps(self.input_doc()) for _ in range(4000)]
        self.payloads = {
            "step": [json.dumps(self.step_doc()) for _ in range(4000)],
            "tool_call": [json.dumps(self.call_doc()) for _ in range(4000)],
            "tool_result": [json.dumps(self.result_doc()) for _ in range(4000)],
            "error": [json.dumps(self.error_doc()) for _ in range(500)],
        }

    def _log_uniform(self, low: int, high: int) -> int:
        return int(math.exp(self.rng.uniform(math.log(low), math.log(high))))

    def text(self, length: int) -> str:
        words, size = [], 0
        while size < length:
            word = self.rng.choice(WORDS)
            if self.rng.random() < 0.04:
                word += ".\n"
            words.append(word)
            size += len(word) + 1
        return " ".join(words)[:length]

    def error_text(self) -> str:
        head = self.rng.choice(
            ["TimeoutError", "ToolError", "BudgetExceeded", "HTTPError 503", "ValueError"]
        )
        return f"{head}: {self.text(self._log_uniform(20, 2000))}"

    def input_doc(self) -> dict:
        return {
            "prompt": self.text(self._log_uniform(20, 400)),
            "repo": f"org/repo-{self.rng.randrange(300)}",
            "ticket": self.rng.randrange(1, 99_999),
            "options": {"temperature": round(self.rng.random(), 2), "max_steps": 20},
        }

    def step_doc(self) -> dict:
        return {
            "thought": self.text(self._log_uniform(30, 400)),
            "usage": {
                "input_tokens": self.rng.randrange(200, 8000),
                "output_tokens": self.rng.randrange(10, 1500),
                "thinking_tokens": self.rng.randrange(0, 3000),
            },
        }

    def call_doc(self) -> dict:
        return {
            "tool": self.rng.choice(TOOLS),
            "call_id": f"call_{self.rng.getrandbits(40):010x}",
            "arguments": {"query": self.text(self._log_uniform(5, 200)), "limit": 10},
        }

    def result_doc(self) -> dict:
        return {
            "tool": self.rng.choice(TOOLS),
            "call_id": f"call_{self.rng.getrandbits(40):010x}",
            "result": self.text(self._log_uniform(20, 2000)),
            "is_error": self.rng.random() < 0.05,
        }

    def error_doc(self) -> dict:
        return {"message": self.error_text(), "retryable": self.rng.random() < 0.5}


class History:
    """The deterministic history: runs (pass 1) and then their events (pass 2).

    Pass 1 keeps, per run, only what pass 2 needs (id, times, event count, status), in
    compact arrays, so memory stays small at 1M runs.
    """

    def __init__(self, runs: int, events: int, seed: int, end: datetime, fixtures: bool = True):
        if fixtures and runs < 2000:
            raise ValueError("runs must be at least 2000 (the fixtures alone are 1,003 runs)")
        self.fixtures = fixtures
        self.total_runs = runs
        self.total_events = events
        self.seed = seed
        self.end_us = int(end.timestamp() * 1_000_000)
        self.start_us = self.end_us - DAYS * 86_400_000_000
        self.rng = random.Random(seed)
        self.pools = Pools(random.Random(seed + 1))
        self.skill_cum = zipf_cumulative(SKILLS, 1.07)
        self.caller_cum = zipf_cumulative(CALLERS, 1.0)
        self.channel_cum = zipf_cumulative(CHANNELS, 1.1)
        self.status_names = [name for name, _ in STATUS_WEIGHTS]
        self.status_cum = list(_accumulate(w for _, w in STATUS_WEIGHTS))
        fixture_runs = len(EVENT_FIXTURES) + sum(TREE_LEVELS) if fixtures else 0
        fixture_events = (
            sum(EVENT_FIXTURES.values()) + sum(TREE_LEVELS) * TREE_EVENTS_PER_NODE
            if fixtures
            else 0
        )
        self.random_runs = runs - fixture_runs
        self.event_counts = self._event_counts(self.random_runs, events - fixture_events)
        # filled by pass 1, read by pass 2
        self.ids: list[str] = []
        self.started = array.array("q")
        self.finished = array.array("q")  # -1: not finished
        self.counts = array.array("l")
        self.failed = bytearray()

    def _event_counts(self, runs: int, events: int) -> array.array:
        """A skewed count per run (most runs few events) that sums to exactly ``events``."""
        rng = random.Random(self.seed + 2)
        mean = max(events / runs, 0.01)
        mu = math.log(mean) - MEAN_EVENTS_SIGMA**2 / 2
        raw = [
            min(rng.lognormvariate(mu, MEAN_EVENTS_SIGMA), MAX_EVENTS_PER_RUN) for _ in range(runs)
        ]
        scale = events / sum(raw)
        counts, carry = array.array("l"), 0.0
        for value in raw:
            wanted = value * scale + carry
            whole = int(wanted)
            carry = wanted - whole
            counts.append(whole)
        counts[-1] += events - sum(counts)
        return counts

    def _pick(self, cumulative: list[float]) -> int:
        return bisect.bisect_left(cumulative, self.rng.random())

    def _run_id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def runs(self):
        """Pass 1: yields one tuple per run (see RUN_COLUMNS) with pool indices for texts."""
        if self.fixtures:
            yield from self._fixture_runs()
        end = self.end_us
        span = end - self.start_us - 120_000_000
        emitted = 0
        while emitted < self.random_runs:
            position = (emitted + self.rng.random()) / self.random_runs
            root_start = self.start_us + int(span * position)
            size = 1
            if self.rng.random() < TREE_CHANCE:
                size += _geometric(self.rng, NESTED_MEAN - 1)
            size = min(size, self.random_runs - emitted)
            dry = self.rng.random() < DRY_RUN_SHARE
            skill = self._pick(self.skill_cum)
            caller = caller_name(self._pick(self.caller_cum))
            channel = channel_name(self._pick(self.channel_cum))
            # (id, depth, started, planned end)
            nodes: list[tuple[str, int, int, int]] = []
            for position in range(size):
                if position == 0:
                    parent, depth = "", 0
                    started = root_start
                    duration = int(min(self.rng.lognormvariate(16.5, 1.3), 7_200_000_000))
                else:
                    parent_id, parent_depth, parent_start, parent_end = self.rng.choice(
                        [n for n in nodes if n[1] < MAX_DEPTH]
                    )
                    parent, depth = parent_id, parent_depth + 1
                    room = max(min(parent_end, end - 2000) - parent_start, 2000)
                    started = parent_start + 1000 + int(self.rng.random() * room * 0.5)
                    duration = int(self.rng.random() * max(parent_end - started, 1000)) + 500
                    if self.rng.random() < 0.3:  # a nested run of another skill
                        skill = self._pick(self.skill_cum)
                run_id = self._run_id()
                nodes.append((run_id, depth, started, started + duration))
                yield self._run_row(
                    run_id,
                    skill_name(skill),
                    caller,
                    channel,
                    started,
                    duration,
                    parent,
                    dry,
                    self.event_counts[emitted + position],
                )
            emitted += size

    def _run_row(
        self, run_id, skill, caller, channel, started, duration, parent, dry, events, status=None
    ):
        rand, pools = self.rng.random, self.pools
        finished = started + duration
        if status is None:
            if dry:
                status = "dry_run"
            elif finished > self.end_us:
                status = "running"  # still going at the end of the history
            elif started < self.end_us - 3_600_000_000 and rand() < STALE_SHARE / 0.97:
                status = "running"  # stale: its executor died
            else:
                status = self.status_names[bisect.bisect_left(self.status_cum, rand())]
        failed = status in FAILED
        running = status == "running"
        output = -1 if running or (failed and rand() < 0.5) else int(rand() * len(pools.outputs))
        error = int(rand() * len(pools.errors)) if failed else -1
        calls = (max(events - 1 if failed else events, 0) + 1) // 3
        steps = (events + 2) // 3
        tokens_in = steps * (500 + int(rand() * 5500))
        tokens_out = steps * (20 + int(rand() * 880))
        tokens_think = steps * int(rand() * 2000) if rand() < 0.6 else 0
        self.ids.append(run_id)
        self.started.append(started)
        self.finished.append(-1 if running else finished)
        self.counts.append(events)
        self.failed.append(1 if failed else 0)
        return (
            run_id,
            skill,
            caller,
            channel,
            int(rand() * len(pools.inputs)),
            started,
            None if running else finished,
            status,
            output,
            error,
            calls,
            0.0 if running else duration / 1e6,
            parent,
            tokens_in,
            tokens_out,
            tokens_think,
        )

    def _fixture_runs(self):
        hot = skill_name(0)
        start = self.end_us - 3 * 3_600_000_000
        for offset, (run_id, events) in enumerate(EVENT_FIXTURES.items()):
            yield self._run_row(
                run_id,
                hot,
                caller_name(0),
                channel_name(0),
                start + offset * 1_000_000,
                600_000_000,
                "",
                False,
                events,
                status="ok",
            )
        tree_start = self.end_us - 2 * 3_600_000_000
        previous = [(TREE_ROOT, tree_start)]
        yield self._run_row(
            TREE_ROOT,
            skill_name(1),
            caller_name(1),
            channel_name(1),
            tree_start,
            1_800_000_000,
            "",
            False,
            TREE_EVENTS_PER_NODE,
            status="ok",
        )
        number = 0
        for level, width in enumerate(TREE_LEVELS[1:], start=1):
            current = []
            for _ in range(width):
                number += 1
                parent_id, parent_start = self.rng.choice(previous)
                run_id = f"bench-tree-1000-{number:04d}"
                started = parent_start + self.rng.randrange(1000, 60_000_000)
                current.append((run_id, started))
                yield self._run_row(
                    run_id,
                    skill_name(level + 1),
                    caller_name(1),
                    channel_name(1),
                    started,
                    int(300_000_000 / level),
                    parent_id,
                    False,
                    TREE_EVENTS_PER_NODE,
                    status="ok",
                )
            previous = current

    def events(self):
        """Pass 2: yields (log id, run id, sequence, event type, payload index, created µs)."""
        rng = random.Random(self.seed + 3)
        rand = rng.random
        pools = self.pools.payloads
        sizes = {kind: len(items) for kind, items in pools.items()}
        cycle = ("step", "tool_call", "tool_result")
        log_id = 0
        for index, run_id in enumerate(self.ids):
            count = self.counts[index]
            if not count:
                continue
            started = self.started[index]
            finished = self.finished[index]
            length = finished if finished >= 0 else min(self.end_us, started + 600_000_000)
            step = max(length - started, 1000) / (count + 1)
            failed = self.failed[index]
            for sequence in range(1, count + 1):
                kind = "error" if failed and sequence == count else cycle[(sequence - 1) % 3]
                log_id += 1
                yield (
                    log_id,
                    run_id,
                    sequence,
                    kind,
                    int(rand() * sizes[kind]),
                    started + int(step * sequence),
                )


def _accumulate(values):
    total = 0.0
    for value in values:
        total += value
        yield total


def _geometric(rng: random.Random, mean: float) -> int:
    """0, 1, 2, ... with the given mean."""
    p = 1 / (1 + mean)
    return int(math.log(1 - rng.random()) / math.log(1 - p))


# --- materialised rows ----------------------------------------------------------------


def _utc(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def run_records(history: History, rows=None) -> Iterator[dict]:
    """Pass 1 as column values ({field: value}), texts and JSON resolved from the pools."""
    pools = history.pools
    for row in rows if rows is not None else history.runs():
        (run_id, skill, caller, channel, inputs, started, finished, status, output, error,
         calls, runtime, parent, t_in, t_out, t_think) = row  # fmt: skip
        yield {
            "id": run_id,
            "skill_id": skill,
            "caller_id": caller,
            "channel_id": channel,
            "inputs": json.loads(pools.inputs[inputs]),
            "started_at": _utc(started),
            "finished_at": None if finished is None else _utc(finished),
            "status": status,
            "output": "" if output < 0 else pools.outputs[output],
            "error": "" if error < 0 else pools.errors[error],
            "tool_calls_count": calls,
            "runtime_seconds": runtime,
            "parent_run_id": parent,
            "total_input_tokens": t_in,
            "total_output_tokens": t_out,
            "total_thinking_tokens": t_think,
        }


def event_records(history: History) -> Iterator[dict]:
    """Pass 2 as column values; call after run_records() has been consumed."""
    payloads = history.pools.payloads
    for _log_id, run_id, sequence, kind, payload, created in history.events():
        yield {
            "run_id": run_id,
            "sequence": sequence,
            "event_type": kind,
            "payload": json.loads(payloads[kind][payload]),
            "created_at": _utc(created),
        }


def load(history: History, using: str = "default", batch_size: int = 2000) -> tuple[int, int]:
    """Store the history through the ORM (bulk_create in batches); returns (runs, events).

    For tests and small data sets; the run-count triggers count the rows as they land.
    """
    from django.db import transaction

    from ..models import SkillRun, SkillRunLog

    with transaction.atomic(using=using):
        runs = _bulk_create(SkillRun, run_records(history), using, batch_size)
        events = _bulk_create(SkillRunLog, event_records(history), using, batch_size)
    return runs, events


def _bulk_create(model, records, using: str, batch_size: int) -> int:
    """bulk_create in batches from an iterator, so a big history never sits in memory."""
    manager, stored, batch = model.objects.db_manager(using), 0, []
    for record in records:
        batch.append(model(**record))
        if len(batch) >= batch_size:
            manager.bulk_create(batch)
            stored, batch = stored + len(batch), []
    manager.bulk_create(batch)
    return stored + len(batch)
