#!/usr/bin/env python
"""Fill a database with the reference history the benchmarks run on, fast.

    .venv/bin/python bench/generate.py --size reference --replace \
        --database-url postgres://postgres@127.0.0.1:5432/sa_bench_1m

The schema comes from the project's own migrations (``manage.py migrate`` runs first); rows
are then bulk-loaded, not created through the ORM: PostgreSQL takes them through COPY (into
tables truncated in the same transaction, with the secondary indexes and constraints dropped
and rebuilt afterwards), SQLite through executemany in big transactions with the journal off.

The history is deterministic for a seed and an end time: 90 days of runs, ~200 skills with a
Zipf-like popularity, thousands of callers, hundreds of channels, 3% dry runs, a third of the
runs nested in call trees up to 6 levels deep, 1% stale ``running`` rows, outputs from a few
bytes to 10 KB, a skewed number of events per run, and fixtures with known ids:
``bench-events-10``, ``bench-events-1000``, ``bench-events-10000`` (runs with exactly that
many events) and ``bench-tree-1000-root`` (the root of a call tree of exactly 1,000 runs).
"""

from __future__ import annotations

import argparse
import array
import bisect
import json
import math
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {
    "small": (10_000, 100_000),
    "medium": (100_000, 1_000_000),
    "reference": (1_000_000, 10_000_000),
}
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

    def __init__(self, runs: int, events: int, seed: int, end: datetime):
        if runs < 2000:
            raise SystemExit("--runs must be at least 2000 (the fixtures alone are 1,003 runs)")
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
        fixture_runs = len(EVENT_FIXTURES) + sum(TREE_LEVELS)
        fixture_events = sum(EVENT_FIXTURES.values()) + sum(TREE_LEVELS) * TREE_EVENTS_PER_NODE
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


RUN_COLUMNS = (
    "id",
    "skill_id",
    "caller_id",
    "channel_id",
    "inputs",
    "started_at",
    "finished_at",
    "status",
    "output",
    "error",
    "tool_calls_count",
    "runtime_seconds",
    "parent_run_id",
    "total_input_tokens",
    "total_output_tokens",
    "total_thinking_tokens",
)
LOG_COLUMNS = ("id", "run_id", "sequence", "event_type", "payload", "created_at")


def _accumulate(values):
    total = 0.0
    for value in values:
        total += value
        yield total


def _geometric(rng: random.Random, mean: float) -> int:
    """0, 1, 2, ... with the given mean."""
    p = 1 / (1 + mean)
    return int(math.log(1 - rng.random()) / math.log(1 - p))


class TimeFormat:
    """µs since the epoch -> the text each database stores (strftime is too slow for 10M)."""

    CLOCK = [f" {h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]

    def __init__(self, suffix: str):
        self.suffix = suffix
        self.days: dict[int, str] = {}

    def __call__(self, us: int) -> str:
        second, fraction = divmod(us, 1_000_000)
        day, clock = divmod(second, 86_400)
        date = self.days.get(day)
        if date is None:
            date = self.days[day] = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")
        # Django writes str(datetime): no fraction when it is zero.
        if fraction:
            return f"{date}{self.CLOCK[clock]}.{fraction:06d}{self.suffix}"
        return f"{date}{self.CLOCK[clock]}{self.suffix}"


def copy_escape(text: str) -> str:
    """A value in PostgreSQL's COPY text format."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


# --- loaders ---------------------------------------------------------------------------


def migrate(database_url: str) -> None:
    env = dict(os.environ, DATABASE_URL=database_url, SECRET_KEY="bench-generate", DEBUG="0")
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"],
        env=env,
        check=True,
        cwd=ROOT,
    )


class Progress:
    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, total, 0
        self.started = self.last = time.perf_counter()

    def add(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last > 10:
            self.last = now
            rate = self.done / (now - self.started)
            print(f"  {self.label}: {self.done:,}/{self.total:,} ({rate:,.0f} rows/s)", flush=True)

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.started, 1e-9)


CHUNK = 5000


def load_postgresql(url: str, history: History, replace: bool) -> dict:
    import psycopg

    create_database(url)
    migrate(url)
    timings: dict[str, float] = {}
    pools = history.pools
    outputs = [copy_escape(text) for text in pools.outputs]
    errors = [copy_escape(text) for text in pools.errors]
    inputs = [copy_escape(text) for text in pools.inputs]
    payloads = {kind: [copy_escape(t) for t in items] for kind, items in pools.payloads.items()}
    stamp = TimeFormat("+00")
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT EXISTS (SELECT 1 FROM skill_runs)")
            if cur.fetchone()[0] and not replace:
                raise SystemExit("skill_runs is not empty: pass --replace to overwrite it")
            cur.execute("SET maintenance_work_mem = '1GB'")
            cur.execute("SET max_parallel_maintenance_workers = 2")
            rebuild = drop_postgresql_indexes(cur)
            # Truncated in this transaction, so COPY FREEZE writes rows already all-visible.
            # TRUNCATE fires no trigger: the run counts are emptied with the runs, and the
            # COPY's insert trigger counts the new runs (migration 0006).
            cur.execute("TRUNCATE skill_run_logs, skill_runs, skill_run_counts")
            began = time.perf_counter()
            progress = Progress("runs", history.total_runs)
            columns = ", ".join(RUN_COLUMNS)
            with cur.copy(f"COPY skill_runs ({columns}) FROM STDIN WITH (FREEZE)") as copy:
                lines = []
                for row in history.runs():
                    (
                        run_id,
                        skill,
                        caller,
                        channel,
                        inp,
                        started,
                        finished,
                        status,
                        output,
                        error,
                        calls,
                        runtime,
                        parent,
                        t_in,
                        t_out,
                        t_think,
                    ) = row
                    lines.append(
                        f"{run_id}\t{skill}\t{caller}\t{channel}\t{inputs[inp]}\t{stamp(started)}\t"
                        f"{stamp(finished) if finished is not None else chr(92) + 'N'}\t{status}\t"
                        f"{outputs[output] if output >= 0 else ''}\t"
                        f"{errors[error] if error >= 0 else ''}\t{calls}\t{runtime}\t{parent}\t"
                        f"{t_in}\t{t_out}\t{t_think}\n"
                    )
                    if len(lines) >= CHUNK:
                        copy.write("".join(lines))
                        progress.add(len(lines))
                        lines = []
                copy.write("".join(lines))
                progress.add(len(lines))
            timings["runs_copy_s"] = time.perf_counter() - began
            began = time.perf_counter()
            progress = Progress("events", history.total_events)
            columns = ", ".join(LOG_COLUMNS)
            with cur.copy(f"COPY skill_run_logs ({columns}) FROM STDIN WITH (FREEZE)") as copy:
                lines = []
                for log_id, run_id, sequence, kind, payload, created in history.events():
                    lines.append(
                        f"{log_id}\t{run_id}\t{sequence}\t{kind}\t{payloads[kind][payload]}\t"
                        f"{stamp(created)}\n"
                    )
                    if len(lines) >= CHUNK:
                        copy.write("".join(lines))
                        progress.add(len(lines))
                        lines = []
                copy.write("".join(lines))
                progress.add(len(lines))
            timings["events_copy_s"] = time.perf_counter() - began
            began = time.perf_counter()
            for statement in rebuild:
                cur.execute(statement)
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('skill_run_logs', 'id'), "
                "(SELECT coalesce(max(id), 1) FROM skill_run_logs))"
            )
            timings["indexes_s"] = time.perf_counter() - began
        conn.commit()
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) skill_runs")
        conn.execute("VACUUM (ANALYZE) skill_run_logs")
        conn.execute("VACUUM (ANALYZE) skill_run_counts")
    timings["analyze_s"] = time.perf_counter() - began
    return timings


def create_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(url)
    name = info.pop("dbname")
    info["dbname"] = "postgres"
    with psycopg.connect(**info, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_postgresql_indexes(cur) -> list[str]:
    """Drop the audit tables' constraints and indexes; returns the statements rebuilding them.

    Building an index once over loaded rows is several times faster than keeping it up to
    date row by row. The definitions come from the catalog, so they are whatever the
    migrations made.
    """
    tables = ("skill_runs", "skill_run_logs")
    cur.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype
        FROM pg_constraint c
        WHERE c.conrelid::regclass::text = ANY(%s) AND c.contype IN ('p', 'u', 'f')
        """,
        [list(tables)],
    )
    constraints = cur.fetchall()
    cur.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid::regclass::text = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        [list(tables)],
    )
    indexes = cur.fetchall()
    order = {"f": 0, "u": 1, "p": 2}
    for table, name, _definition, _kind in sorted(constraints, key=lambda c: order[c[3]]):
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cur.execute(f"DROP INDEX {name}")
    rebuild = [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
        for table, name, definition, _kind in sorted(constraints, key=lambda c: -order[c[3]])
    ]
    rebuild += [definition for _name, definition in indexes]
    return rebuild


def load_sqlite(path: str, url: str, history: History, replace: bool) -> dict:
    import sqlite3

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    migrate(url)
    timings: dict[str, float] = {}
    pools = history.pools
    stamp = TimeFormat("")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-2000000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    if conn.execute("SELECT EXISTS (SELECT 1 FROM skill_runs)").fetchone()[0] and not replace:
        raise SystemExit("skill_runs is not empty: pass --replace to overwrite it")
    conn.execute("BEGIN")
    conn.execute("DELETE FROM skill_run_logs")
    # The counts first: the delete trigger then finds no bucket to lower. The insert
    # trigger counts the new runs as they are loaded (migration 0006).
    conn.execute("DELETE FROM skill_run_counts")
    conn.execute("DELETE FROM skill_runs")
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('skill_runs', 'skill_run_logs')"
    ).fetchall()
    for name, _sql in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("COMMIT")

    def batches(rows, size=50_000):
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def run_rows():
        for row in history.runs():
            (
                run_id,
                skill,
                caller,
                channel,
                inp,
                started,
                finished,
                status,
                output,
                error,
                calls,
                runtime,
                parent,
                t_in,
                t_out,
                t_think,
            ) = row
            yield (
                run_id,
                skill,
                caller,
                channel,
                pools.inputs[inp],
                stamp(started),
                stamp(finished) if finished is not None else None,
                status,
                pools.outputs[output] if output >= 0 else "",
                pools.errors[error] if error >= 0 else "",
                calls,
                runtime,
                parent,
                t_in,
                t_out,
                t_think,
            )

    def log_rows():
        payloads = pools.payloads
        for log_id, run_id, sequence, kind, payload, created in history.events():
            yield log_id, run_id, sequence, kind, payloads[kind][payload], stamp(created)

    began = time.perf_counter()
    insert = (
        f"INSERT INTO skill_runs ({', '.join(RUN_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
    )
    progress = Progress("runs", history.total_runs)
    for batch in batches(run_rows()):
        conn.execute("BEGIN")
        conn.executemany(insert, batch)
        conn.execute("COMMIT")
        progress.add(len(batch))
    timings["runs_copy_s"] = time.perf_counter() - began
    began = time.perf_counter()
    insert = (
        f"INSERT INTO skill_run_logs ({', '.join(LOG_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(LOG_COLUMNS))})"
    )
    progress = Progress("events", history.total_events)
    for batch in batches(log_rows(), 100_000):
        conn.execute("BEGIN")
        conn.executemany(insert, batch)
        conn.execute("COMMIT")
        progress.add(len(batch))
    timings["events_copy_s"] = time.perf_counter() - began
    began = time.perf_counter()
    for _name, sql in indexes:
        conn.execute(sql)
    timings["indexes_s"] = time.perf_counter() - began
    began = time.perf_counter()
    conn.execute("ANALYZE")
    timings["analyze_s"] = time.perf_counter() - began
    conn.execute("PRAGMA locking_mode=NORMAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return timings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), required=False)
    parser.add_argument("--size", choices=sorted(SIZES), help="a preset for --runs/--events")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument(
        "--end",
        help="the end of the history (ISO 8601, UTC); default: now, to the minute. The same "
        "seed and end give the same data.",
    )
    parser.add_argument("--replace", action="store_true", help="overwrite existing runs")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or DATABASE_URL) is required")
    runs, events = SIZES[args.size or "small"]
    runs = args.runs or runs
    events = args.events if args.events is not None else events
    if args.end:
        end = datetime.fromisoformat(args.end)
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
    else:
        end = datetime.now(UTC).replace(second=0, microsecond=0)

    import dj_database_url

    config = dj_database_url.parse(args.database_url)
    engine = config["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"generating {runs:,} runs and {events:,} events into {engine} ({config['NAME']}), "
        f"history ending {end.isoformat()}",
        flush=True,
    )
    began = time.perf_counter()
    history = History(runs, events, args.seed, end)
    if engine == "postgresql":
        timings = load_postgresql(args.database_url, history, args.replace)
    elif engine == "sqlite3":
        timings = load_sqlite(config["NAME"], args.database_url, history, args.replace)
    else:
        raise SystemExit(f"unsupported database engine {engine}")
    total = time.perf_counter() - began
    rows = runs + events
    load = timings["runs_copy_s"] + timings["events_copy_s"]
    record = {
        "engine": engine,
        "runs": runs,
        "events": events,
        "seed": args.seed,
        "end": end.isoformat(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "total_s": round(total, 1),
        "load_rows_per_s": round(rows / load),
        "overall_rows_per_s": round(rows / total),
        **{name: round(value, 1) for name, value in timings.items()},
    }
    from bench import report

    report.save(f"generate-{engine}-{runs}", record)
    print(
        f"done in {total:.1f} s: {rows:,} rows; load {load:.1f} s ({rows / load:,.0f} rows/s: "
        f"runs {runs / timings['runs_copy_s']:,.0f}/s, events "
        f"{events / max(timings['events_copy_s'], 1e-9):,.0f}/s), indexes "
        f"{timings['indexes_s']:.1f} s, analyze {timings['analyze_s']:.1f} s; overall "
        f"{rows / total:,.0f} rows/s",
        flush=True,
    )


if __name__ == "__main__":
    main()
