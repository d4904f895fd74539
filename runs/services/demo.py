"""The demo history: a curated scenario, recorded through the recorder as an executor would.

Where ``history.py`` is random volume (benchmarks, query plans), this is a script of what an
operator should meet on a first visit: every status (stale and live running rows too), a
call tree four levels deep with every sub-skill, sub-skill invocations as tool calls,
failing tools, dry runs, a 2,000-event run, long outputs and hostile text everywhere.
``manage.py seed_demo`` calls ``record_demo``.

How times are made: the demo is planned first (every run, event and duration, from the
seed), then each run is replayed through ``Sink(DjangoStorage(), clock=...)``. The
injected clock stamps the start, every event and the runtime with simulated time, but
``finish_run`` stamps ``finished_at`` with the storage's own now (the contract). So each
run is replayed on a clock that ends at the real now, then moved to its place in history
with ``SkillRun.objects.shift_times`` (one UPDATE per table). ``finished_at`` therefore
lands within the replay's real time (milliseconds) of ``started_at + runtime``.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from .. import contract
from ..models import SkillRun
from ..recorder import Sink
from ..storage import DjangoStorage

MAX_DEPTH = 4  # levels of a call tree, the root being level 1

# skill -> the sub-skills it may invoke
SKILLS: dict[str, tuple[str, ...]] = {
    "triage-ticket": ("classify-intent", "search-knowledge-base", "draft-reply"),
    "draft-reply": ("search-knowledge-base", "translate-message"),
    "search-knowledge-base": ("summarise-thread",),
    "summarise-thread": ("moderate-content",),
    "classify-intent": (),
    "translate-message": (),
    "moderate-content": (),
    "schedule-reminder": (),
}
TOP_LEVEL_WEIGHTS = {
    "summarise-thread": 25,
    "triage-ticket": 20,
    "draft-reply": 10,
    "search-knowledge-base": 10,
    "translate-message": 10,
    "schedule-reminder": 10,
    "classify-intent": 8,
    "moderate-content": 7,
}
TOOLS: dict[str, tuple[str, ...]] = {
    "triage-ticket": ("tickets.get", "tickets.update"),
    "draft-reply": ("tickets.get", "discord.send_message"),
    "search-knowledge-base": ("kb.search", "kb.get_document"),
    "summarise-thread": ("discord.fetch_messages",),
    "classify-intent": ("embeddings.nearest",),
    "translate-message": ("translate.detect_language",),
    "moderate-content": ("moderation.check", "discord.delete_message"),
    "schedule-reminder": ("calendar.create_event", "discord.send_message"),
}
STATUS_WEIGHTS = {
    contract.STATUS_OK: 70,
    contract.STATUS_ERROR: 8,
    contract.STATUS_TIMEOUT: 5,
    contract.STATUS_DRY_RUN: 5,
    contract.STATUS_BUDGET_EXCEEDED: 4,
    contract.STATUS_LANE_BUSY: 4,
    contract.STATUS_PREEMPTED: 3,
    contract.STATUS_RUNNING: 1,  # stale: started hours ago, never finished
}
MODELS = (("claude-sonnet-4", True), ("gpt-4.1-mini", False), ("llama-3.1-70b", False))

# Untrusted text as LLMs and users write it; the dashboard must show it inert.
HOSTILE = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'; DROP TABLE skill_runs; --",
    "{{ 7*7 }}",
    "\u202eexe.txt\u202c مرحبا بالعالم שלום עולם",
    "🤖🔥 emoji 👩\u200d💻",
    "nul\x00byte",
)

WORDS = (
    "the bot member channel thread refund ticket order invoice server role moderator "
    "message reply user account login password reset billing plan upgrade error timeout "
    "webhook integration reminder meeting schedule summary question answer docs guide "
    "release bug fix report feedback feature request support queue priority urgent "
    "customer payment card subscription cancel renew deploy status outage latency api "
    "token limit quota translation language french german spanish review approve"
).split()
LANGUAGES = ("fr", "de", "es", "ja", "pt-BR", "ar", "he")


@dataclasses.dataclass
class PlannedEvent:
    at: float  # seconds after the run started
    method: str  # the RunRecorder method that records it
    kwargs: dict[str, Any]


@dataclasses.dataclass
class PlannedRun:
    run_id: str
    skill_id: str
    caller_id: str
    channel_id: str
    inputs: dict[str, Any]
    parent_run_id: str = ""
    offset: float = 0.0  # seconds after the parent started
    status: str | None = None  # None: never closed (a `running` row)
    output: str = ""
    error: str = ""
    duration: float = 0.0
    events: list[PlannedEvent] = dataclasses.field(default_factory=list)
    children: list[PlannedRun] = dataclasses.field(default_factory=list)

    def emit(self, method: str, **kwargs: Any) -> None:
        self.events.append(PlannedEvent(self.duration, method, kwargs))

    def wait(self, seconds: float) -> None:
        self.duration += seconds

    def walk(self, started_at: datetime):
        """(run, started_at) for the run and its descendants, parents first."""
        yield self, started_at
        for child in self.children:
            yield from child.walk(started_at + timedelta(seconds=child.offset))


class Planner:
    """Plans the demo from one seed; every random choice is made here."""

    def __init__(self, seed: int, runs: int, days: float, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.remaining = runs
        self.days = days
        self.now = now
        self.members = [str(self.rng.randrange(10**17, 10**18)) for _ in range(12)]
        self.channels = [str(self.rng.randrange(10**17, 10**18)) for _ in range(6)]

    # --- the whole demo ---------------------------------------------------------------

    def plan(self) -> list[tuple[PlannedRun, datetime]]:
        """Top-level runs with their start times: showcases first, then random history."""
        trees: list[tuple[PlannedRun, datetime]] = []

        def add(tree: PlannedRun | None, hours_ago: float) -> None:
            if tree is not None:
                trees.append((tree, self._start(tree, hours_ago)))

        # A full tree four levels deep, every status, a long run and a hostile tree land
        # in the last hours, so the first page of the dashboard shows each of them.
        add(self._run("triage-ticket", contract.STATUS_OK, every_child=True), 0.5)
        add(self._hostile_tree(), 0.2)
        showcase = [s for s in STATUS_WEIGHTS if s not in (contract.STATUS_OK,)]
        for n, status in enumerate(showcase):
            add(self._run(self._top_skill(), status), 1 + n * 0.4)
        add(self._running_now(), 0)
        add(self._long_run(), 5)
        while self.remaining > 0:
            status = self._pick(STATUS_WEIGHTS)
            tree = self._run(self._top_skill(), status)
            earliest = 2.0 if status == contract.STATUS_RUNNING else 10 / 60
            add(tree, self.rng.uniform(earliest, self.days * 24))
        return trees

    def _start(self, tree: PlannedRun, hours_ago: float) -> datetime:
        start = self.now - timedelta(hours=hours_ago)
        if tree.status is not None:  # a finished tree ends at least a minute ago
            start = min(start, self.now - timedelta(seconds=tree.duration + 60))
        elif hours_ago:  # a stale `running` row: started more than an hour ago
            start = min(start, self.now - timedelta(hours=1, minutes=5))
        else:  # still running: started a few minutes ago, its last event is in the past
            start = self.now - timedelta(seconds=tree.duration + 30)
        return start

    # --- one run ----------------------------------------------------------------------

    def _new(self, skill: str, parent: PlannedRun | None, **fields: Any) -> PlannedRun | None:
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        caller = parent.caller_id if parent else self.rng.choice(self.members)
        channel = parent.channel_id if parent else self.rng.choice(self.channels)
        if skill == "schedule-reminder" and not parent and self.rng.random() < 0.5:
            caller = "system:cron"
        if "inputs" not in fields:
            fields["inputs"] = self._inputs(skill)
        if self.rng.random() < 0.05:  # untrusted text turns up anywhere
            fields["inputs"]["note"] = self.rng.choice(HOSTILE)
        return PlannedRun(
            run_id=fields.pop("run_id", None) or self._id(),
            skill_id=skill,
            caller_id=fields.pop("caller_id", caller),
            channel_id=fields.pop("channel_id", channel),
            parent_run_id=parent.run_id if parent else "",
            **fields,
        )

    def _run(
        self,
        skill: str,
        status: str,
        parent: PlannedRun | None = None,
        depth: int = 1,
        every_child: bool = False,
    ) -> PlannedRun | None:
        run = self._new(skill, parent)
        if run is None:
            return None
        if status == contract.STATUS_LANE_BUSY:
            run.wait(self.rng.uniform(0.01, 0.3))
            run.status = status
            run.error = f"lane busy: channel {run.channel_id} already runs {skill}"
            return run
        dry = status == contract.STATUS_DRY_RUN
        model, thinks = self.rng.choice(MODELS)
        self._step(run, model, thinks, text=f"Plan: {self._sentence()}")
        for _ in range(self.rng.randint(1, 3)):
            self._tool_use(run, self.rng.choice(TOOLS[skill]), dry)
            self._step(run, model, thinks, text=self._sentence())
        if status == contract.STATUS_RUNNING:
            run.emit("tool_call", tool=TOOLS[skill][0], arguments={"page": 2}, call_id=self._call())
            run.wait(self.rng.uniform(1, 20))
            return run  # never closed
        if depth < MAX_DEPTH:
            for child_skill in SKILLS[skill]:
                if every_child or self.rng.random() < 0.35:
                    self._invoke(run, child_skill, status, depth, every_child)
        self._finish(run, status, model, thinks)
        return run

    def _invoke(
        self, run: PlannedRun, skill: str, status: str, depth: int, every_child: bool
    ) -> None:
        """A sub-skill: a skills.invoke call in the parent, the child run, its result."""
        if status == contract.STATUS_DRY_RUN:
            child_status = status
        elif every_child:
            child_status = contract.STATUS_OK
        else:
            child_status = self._pick(
                {contract.STATUS_OK: 90, contract.STATUS_ERROR: 6, contract.STATUS_TIMEOUT: 4}
            )
        child = self._run(skill, child_status, run, depth + 1, every_child)
        if child is not None:
            self._nest(run, child)

    def _nest(self, run: PlannedRun, child: PlannedRun) -> None:
        """The planned child runs now, inside run: a skills.invoke call, then its result."""
        call_id = self._call()
        run.wait(self.rng.uniform(0.005, 0.05))
        run.emit(
            "tool_call",
            tool="skills.invoke",
            arguments={"skill": child.skill_id, "run_id": child.run_id, "inputs": child.inputs},
            call_id=call_id,
        )
        child.offset = run.duration + self.rng.uniform(0.01, 0.2)
        run.children.append(child)
        run.wait(child.offset - run.duration + child.duration + self.rng.uniform(0.01, 0.2))
        run.emit(
            "tool_result",
            tool="skills.invoke",
            result={"run_id": child.run_id, "status": child.status, "output": child.output[:200]},
            call_id=call_id,
            is_error=child.status not in (contract.STATUS_OK, contract.STATUS_DRY_RUN),
        )

    def _finish(self, run: PlannedRun, status: str, model: str, thinks: bool) -> None:
        run.status = status
        rng = self.rng
        if status in (contract.STATUS_OK, contract.STATUS_DRY_RUN):
            run.output = self._output(run.skill_id)
            if status == contract.STATUS_DRY_RUN:
                run.output = "DRY RUN: nothing was sent or changed.\n" + run.output
            self._step(run, model, thinks, text=run.output[:500])
        elif status == contract.STATUS_ERROR:
            tool = rng.choice(TOOLS[run.skill_id])
            run.error = f"ToolError: {tool} returned HTTP {rng.choice([403, 404, 429, 500, 502])}"
            run.emit(
                "error",
                message=run.error,
                tool=tool,
                traceback=f"Traceback (most recent call last):\n  ...\n{run.error}",
            )
        elif status == contract.STATUS_TIMEOUT:
            tool = rng.choice(TOOLS[run.skill_id])
            run.emit("tool_call", tool=tool, arguments={"retry": 3}, call_id=self._call())
            run.wait(rng.uniform(30, 120))
            run.error = f"timeout: deadline of 120 s exceeded while waiting for {tool}"
            run.emit("error", message=run.error, deadline_seconds=120)
        elif status == contract.STATUS_BUDGET_EXCEEDED:
            for _ in range(rng.randint(2, 4)):
                self._step(run, model, thinks, text=self._sentence(), heavy=True)
            run.error = f"budget_exceeded: {rng.randint(200_001, 260_000)} tokens used of 200000"
            run.emit("error", message=run.error, budget_tokens=200_000)
        elif status == contract.STATUS_PREEMPTED:
            run.error = f"preempted by a higher-priority run in channel {run.channel_id}"
            run.emit("error", message=run.error, preempted_by=self._id())
        run.wait(rng.uniform(0.01, 0.3))

    def _step(self, run: PlannedRun, model: str, thinks: bool, heavy: bool = False, **content):
        run.wait(self.rng.uniform(0.8, 6.0))
        scale = 20 if heavy else 1
        input_tokens = self.rng.randint(400, 6000) * scale
        answer_tokens = self.rng.randint(40, 1200)
        thinking_tokens = self.rng.randint(200, 4000) if thinks else 0
        # As providers report them: output counts the thinking too (runs/costs.py prices
        # thinking as a part of output).
        run.emit(
            "step",
            model=model,
            input_tokens=input_tokens,
            output_tokens=answer_tokens + thinking_tokens,
            thinking_tokens=thinking_tokens,
            **content,
        )

    def _tool_use(self, run: PlannedRun, tool: str, dry: bool) -> None:
        arguments, result = self._tool_io(run, tool)
        if dry:
            arguments["dry_run"] = True
            if tool in ("discord.send_message", "tickets.update", "discord.delete_message"):
                result = {"dry_run": True, "would": f"{tool} with {sorted(arguments)}"}
        call_id = self._call()
        run.wait(self.rng.uniform(0.005, 0.05))
        run.emit("tool_call", tool=tool, arguments=arguments, call_id=call_id)
        run.wait(self.rng.uniform(0.05, 3.0))
        failed = self.rng.random() < 0.05
        if failed:
            result = {"error": "HTTP 503 Service Unavailable", "retry_after": 2}
        run.emit("tool_result", tool=tool, result=result, call_id=call_id, is_error=failed)

    # --- special runs -----------------------------------------------------------------

    def _running_now(self) -> PlannedRun | None:
        """A run in progress: started minutes ago, not finished, not stale."""
        return self._run("summarise-thread", contract.STATUS_RUNNING)

    def _long_run(self) -> PlannedRun | None:
        """A summary of a huge thread, paged 666 times: about 2,000 events."""
        run = self._new("summarise-thread", None)
        if run is None:
            return None
        run.inputs = {"thread_id": self._snowflake(), "max_words": 800, "style": "report"}
        model, thinks = MODELS[0]
        self._step(run, model, thinks, text="Plan: page through the whole thread.")
        cursor = self._snowflake()
        for page in range(666):
            call_id = self._call()
            run.emit(
                "tool_call",
                tool="discord.fetch_messages",
                arguments={"channel_id": run.channel_id, "before": cursor, "limit": 100},
                call_id=call_id,
            )
            run.wait(self.rng.uniform(0.1, 0.6))
            cursor = self._snowflake()
            run.emit(
                "tool_result",
                tool="discord.fetch_messages",
                result={"page": page + 1, "messages": 100, "next_before": cursor},
                call_id=call_id,
                is_error=False,
            )
            run.wait(self.rng.uniform(1.0, 3.0))
            run.emit("step", model=model, input_tokens=900, output_tokens=60, text=f"page {page}")
        run.output = self._long_text(self.rng.randint(30_000, 50_000))
        self._step(run, model, thinks, text=run.output[:500])
        run.status = contract.STATUS_OK
        return run

    def _hostile_tree(self) -> PlannedRun | None:
        """Four nested runs whose ids, names, inputs, outputs and payloads are hostile."""
        suffix = f" {self.rng.getrandbits(16):04x}"  # another seed gets other ids
        levels = [
            (HOSTILE[1], HOSTILE[0], contract.STATUS_ERROR),
            (HOSTILE[2], HOSTILE[3], contract.STATUS_OK),
            (HOSTILE[0], HOSTILE[4], contract.STATUS_OK),
            (HOSTILE[4] + HOSTILE[6], HOSTILE[5], contract.STATUS_OK),
        ]
        runs: list[PlannedRun] = []
        for level, (run_id, skill, status) in enumerate(levels):
            parent = runs[-1] if runs else None
            run = self._new(
                skill,
                parent,
                run_id=(run_id + suffix)[: contract.ID_MAX_LENGTH],
                caller_id=HOSTILE[2] if parent is None else parent.caller_id,
                channel_id=HOSTILE[4] if parent is None else parent.channel_id,
                inputs={h: HOSTILE[(i + 1) % len(HOSTILE)] for i, h in enumerate(HOSTILE)},
            )
            if run is None:
                break
            runs.append(run)
            run.status = status
            self._step(run, MODELS[0][0], True, **{HOSTILE[level]: HOSTILE[level + 1]})
            call_id = self._call()
            run.emit("tool_call", tool=HOSTILE[0], arguments={HOSTILE[3]: HOSTILE}, call_id=call_id)
            run.wait(0.4)
            run.emit("tool_result", tool=HOSTILE[0], result=list(HOSTILE), call_id=call_id)
            run.output = "\n".join(HOSTILE) + "\n" + self._long_text(2_000)
        # A child runs inside its parent, so the innermost is completed and nested first.
        for level in reversed(range(len(runs))):
            run = runs[level]
            if run.status == contract.STATUS_ERROR:
                run.error = "ToolError: " + " | ".join(HOSTILE)
                run.emit("error", message=run.error, **{h: h for h in HOSTILE})
            run.wait(0.05)
            if level:
                self._nest(runs[level - 1], run)
        return runs[0] if runs else None

    # --- text and values --------------------------------------------------------------

    def _inputs(self, skill: str) -> dict[str, Any]:
        rng = self.rng
        if skill == "summarise-thread":
            return {"thread_id": self._snowflake(), "max_words": rng.choice([100, 200, 400])}
        if skill == "triage-ticket":
            return {
                "ticket_id": f"TCK-{rng.randint(1000, 9999)}",
                "subject": self._sentence(),
                "body": self._paragraph(),
            }
        if skill == "draft-reply":
            return {"ticket_id": f"TCK-{rng.randint(1000, 9999)}", "tone": "friendly"}
        if skill == "search-knowledge-base":
            return {"query": " ".join(rng.sample(WORDS, 4)), "top_k": 5}
        if skill == "translate-message":
            return {"text": self._sentence(), "target_language": rng.choice(LANGUAGES)}
        if skill == "classify-intent":
            return {"message": self._sentence(), "labels": ["billing", "bug", "question"]}
        if skill == "moderate-content":
            return {"message_id": self._snowflake(), "text": self._sentence()}
        return {"delay_minutes": rng.randint(5, 4320), "text": self._sentence()}

    def _tool_io(self, run: PlannedRun, tool: str) -> tuple[dict[str, Any], Any]:
        rng = self.rng
        if tool == "discord.fetch_messages":
            messages = [
                {"id": self._snowflake(), "author": rng.choice(self.members), "content": c}
                for c in (self._sentence() for _ in range(rng.randint(3, 12)))
            ]
            if rng.random() < 0.08:  # a busy thread: a big result
                messages.append({"id": self._snowflake(), "content": self._long_text(25_000)})
            return {"channel_id": run.channel_id, "limit": 100}, {"messages": messages}
        if tool == "kb.search":
            hits = [
                {"doc_id": f"kb-{rng.randint(1, 500)}", "score": round(rng.random(), 3)}
                for _ in range(5)
            ]
            return {"query": " ".join(rng.sample(WORDS, 3)), "top_k": 5}, {"hits": hits}
        if tool == "kb.get_document":
            doc_id = f"kb-{rng.randint(1, 500)}"
            return {"doc_id": doc_id}, {"title": self._sentence(), "body": self._paragraph()}
        if tool in ("tickets.get", "tickets.update"):
            ticket = run.inputs.get("ticket_id", f"TCK-{rng.randint(1000, 9999)}")
            if tool == "tickets.update":
                args = {"ticket_id": ticket, "priority": rng.choice(["low", "normal", "urgent"])}
                return args, {"updated": True}
            return {"ticket_id": ticket}, {"subject": self._sentence(), "state": "open"}
        if tool in ("discord.send_message", "discord.delete_message"):
            args = {"channel_id": run.channel_id, "content": self._sentence()}
            return args, {"message_id": self._snowflake()}
        if tool == "moderation.check":
            flagged = rng.random() < 0.2
            return {"text": self._sentence()}, {"flagged": flagged, "categories": {"spam": 0.1}}
        if tool == "calendar.create_event":
            args = {"title": self._sentence(), "delay_minutes": run.inputs.get("delay_minutes")}
            return args, {"event_id": self._snowflake()}
        if tool == "translate.detect_language":
            return {"text": self._sentence()}, {"language": "en", "confidence": 0.98}
        return {"text": self._sentence()}, {"neighbours": rng.sample(WORDS, 3)}

    def _output(self, skill: str) -> str:
        if skill == "summarise-thread" and self.rng.random() < 0.15:
            return self._long_text(self.rng.randint(20_000, 50_000))
        bullets = "\n".join(f"- {self._sentence()}" for _ in range(self.rng.randint(2, 6)))
        return f"## {skill}\n{bullets}"

    def _sentence(self) -> str:
        words = self.rng.choices(WORDS, k=self.rng.randint(5, 16))
        return " ".join(words).capitalize() + "."

    def _paragraph(self) -> str:
        return " ".join(self._sentence() for _ in range(self.rng.randint(2, 6)))

    def _long_text(self, size: int) -> str:
        parts: list[str] = []
        length = 0
        while length < size:
            parts.append(self._paragraph())
            length += len(parts[-1]) + 2
        return "\n\n".join(parts)[:size]

    def _id(self) -> str:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4).hex

    def _call(self) -> str:
        return f"call_{self.rng.getrandbits(48):012x}"

    def _snowflake(self) -> str:
        return str(self.rng.randrange(10**17, 10**19))

    def _top_skill(self) -> str:
        return self._pick(TOP_LEVEL_WEIGHTS)

    def _pick(self, weights: dict[str, int]) -> str:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]


class BatchedStorage(DjangoStorage):
    """DjangoStorage that keeps a run's events until flush(), then stores them in one batch.

    Only for the demo: an event per transaction costs 1-3 ms, and the 2,000-event run
    alone would take seconds. The events still pass through the recorder (numbering,
    roll-ups) and the contract's checks; a failed flush raises and stops the seed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[contract.SkillRunLog] = []

    def append_log(self, log: contract.SkillRunLog) -> None:
        self.pending.append(log)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        self.append_logs(pending)


class ReplayClock:
    """The clock the recorder reads: set by the replay before each write."""

    def __init__(self) -> None:
        self.now = contract.utcnow()

    def __call__(self) -> datetime:
        return self.now


def replay(
    sink: Sink, storage: BatchedStorage, clock: ReplayClock, run: PlannedRun, started_at: datetime
) -> None:
    """Record one planned run through the recorder, then move it to started_at."""
    anchor = contract.utcnow() - timedelta(seconds=run.duration)
    clock.now = anchor
    recorder = sink.start_run(
        skill_id=run.skill_id,
        caller_id=run.caller_id,
        channel_id=run.channel_id,
        inputs=run.inputs,
        parent_run_id=run.parent_run_id,
        run_id=run.run_id,
    )
    for event in run.events:
        clock.now = anchor + timedelta(seconds=event.at)
        getattr(recorder, event.method)(**event.kwargs)
    storage.flush()
    if run.status is not None:
        clock.now = anchor + timedelta(seconds=run.duration)
        recorder.close(run.status, output=run.output, error=run.error)
    SkillRun.objects.shift_times([contract.clean_id(run.run_id)], started_at - anchor)


def _depth(run: PlannedRun) -> int:
    return 1 + max((_depth(child) for child in run.children), default=0)


class RecordingFailed(RuntimeError):
    """A run could not be recorded (the seed was recorded before?); nothing was stored."""


@dataclasses.dataclass
class DemoSummary:
    runs: int
    top_level: int
    depth: int
    events: int
    statuses: set[str]


def record_demo(runs: int, days: float, seed: int) -> DemoSummary:
    """Plan ``runs`` runs over ``days`` days from ``seed`` and record them, in one
    transaction (quick on SQLite, and a failed seed leaves nothing behind)."""
    if runs < 1 or days <= 0:
        raise ValueError("--runs must be at least 1 and --days above 0")
    trees = Planner(seed, runs, days, contract.utcnow()).plan()
    clock = ReplayClock()
    storage = BatchedStorage()
    sink = Sink(storage, clock=clock)
    summary = DemoSummary(runs=0, top_level=len(trees), depth=0, events=0, statuses=set())
    with transaction.atomic():
        for tree, started_at in trees:
            for run, run_started_at in tree.walk(started_at):
                replay(sink, storage, clock, run, run_started_at)
                if sink.failures:
                    raise RecordingFailed(
                        f"recording run {run.run_id!r} failed (see the log above); nothing "
                        f"was stored. Was --seed {seed} already recorded here?"
                    )
                summary.runs += 1
                summary.events += len(run.events)
                summary.statuses.add(run.status or contract.STATUS_RUNNING)
            summary.depth = max(summary.depth, _depth(tree))
    return summary
