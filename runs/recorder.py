"""The executor side: Sink starts runs, RunRecorder writes their events and closes them.

An audit failure must never break the agent it records: every storage error is logged
and counted on the recorder (and its sink), never raised into the caller.

``Sink(storage, buffered=True)`` (or ``Sink(BufferedStorage(storage, ...))``) records in
the background (runs.buffered): the agent's thread only checks and queues each write.
What the storage then refuses is counted in ``failures`` as unbuffered, when the writer
gets to it; what the buffer drops (full queue, storage down too long) in ``dropped``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import contract
from .buffered import BufferedStorage
from .contract import RunStats, SkillRun, SkillRunLog, Storage

logger = logging.getLogger(__name__)


class Sink:
    """Adapts a Storage to the executor. ``Sink(None)`` records nothing.

    ``clock`` (an aware datetime per call) replaces the wall clock for a replay or a demo
    that simulates time: it then stamps starts and events and measures runtimes. By
    default the wall clock stamps and a monotonic timer measures, so a clock step (NTP)
    cannot make a runtime negative.

    ``buffered=True`` wraps the storage in a BufferedStorage with its defaults, which the
    sink then owns: ``close()`` (and ``with`` exit) flushes and stops it. A BufferedStorage
    passed in is flushed by ``close()``, not stopped: other sinks may share it.
    """

    def __init__(
        self,
        storage: Storage | None,
        clock: Callable[[], datetime] | None = None,
        *,
        buffered: bool = False,
    ) -> None:
        self._owns_buffer = False
        if buffered and storage is not None and not isinstance(storage, BufferedStorage):
            storage = BufferedStorage(storage)
            self._owns_buffer = True
        self.storage = storage
        self.buffer = storage if isinstance(storage, BufferedStorage) else None
        self.clock = clock
        self._lock = threading.Lock()
        self.failures = 0
        self.dropped = 0

    def start_run(
        self,
        *,
        skill_id: str,
        caller_id: str = "",
        channel_id: str = "",
        inputs: dict[str, Any] | None = None,
        parent_run_id: str = "",
        run_id: str | None = None,
    ) -> RunRecorder:
        recorder = RunRecorder(self, run_id or uuid.uuid4().hex)
        recorder._write_start(
            lambda storage: storage.start_run(
                SkillRun(
                    id=recorder.run_id,
                    skill_id=skill_id,
                    caller_id=caller_id,
                    channel_id=channel_id,
                    inputs=inputs or {},
                    parent_run_id=parent_run_id,
                    started_at=recorder.started_at,
                ),
                **recorder._owner,
            ),
        )
        return recorder

    def now(self) -> datetime:
        return self.clock() if self.clock is not None else contract.utcnow()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until what was recorded so far is stored (a no-op unbuffered); False if
        ``timeout`` seconds passed first."""
        return self.buffer.flush(timeout) if self.buffer is not None else True

    def close(self, timeout: float | None = None) -> bool:
        """Flush; stop the buffer if this sink made it. False if ``timeout`` passed first
        (what was left is then dropped and counted)."""
        if self.buffer is None:
            return True
        if self._owns_buffer:
            return self.buffer.close(timeout)
        return self.buffer.flush(timeout if timeout is not None else self.buffer.close_timeout)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return False

    def _count_failure(self) -> None:
        with self._lock:
            self.failures += 1

    def _count_dropped(self) -> None:
        with self._lock:
            self.dropped += 1


class RunRecorder:
    """One run in progress: numbered events, roll-ups of tool calls and tokens, runtime."""

    def __init__(self, sink: Sink, run_id: str) -> None:
        self.sink = sink
        self.run_id = run_id
        self.failures = 0
        self.dropped = 0
        self.tool_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.thinking_tokens = 0
        self.closed = False
        # False once start_run failed: the run id may belong to another run (a duplicate
        # id), whose log and summary this recorder must not write into.
        self.recording = True
        # True once a buffer dropped the start: the run's later writes are lost too.
        self._start_lost = False
        # Buffered writes name their recorder, which the writer reports outcomes to.
        self._owner = {"owner": self} if sink.buffer is not None else {}
        self._sequence = 0
        self._lock = threading.Lock()
        self.started_at = sink.now()
        self._started = time.monotonic()

    # --- events --------------------------------------------------------------------

    def step(
        self,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        thinking_tokens: int = 0,
        model: str = "",
        cached_input_tokens: int = 0,
        **content: Any,
    ) -> None:
        """A model completion; its token usage is added to the run's totals.

        ``model`` (the model that answered, e.g. "gpt-4o-2024-08-06") prices the step: the
        stats and cost read it from the payload's ``model``; a step without one is counted
        as unpriced. ``cached_input_tokens``: the part of input_tokens read from the
        provider's prompt cache (priced at the cached-input price); it stays inside
        input_tokens in the run's totals.
        """
        with self._lock:
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            self.thinking_tokens += thinking_tokens
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "thinking_tokens": thinking_tokens,
        }
        if cached_input_tokens:
            usage["cached_input_tokens"] = cached_input_tokens
        if model:
            content = {"model": model, **content}
        self._event(contract.EVENT_STEP, {**content, "usage": usage})

    def tool_call(self, tool: str, arguments: Any = None, call_id: str = "") -> None:
        with self._lock:
            self.tool_calls += 1
        self._event(
            contract.EVENT_TOOL_CALL,
            {
                "tool": tool,
                "call_id": call_id,
                "arguments": arguments if arguments is not None else {},
            },
        )

    def tool_result(
        self, tool: str, result: Any, call_id: str = "", is_error: bool = False
    ) -> None:
        self._event(
            contract.EVENT_TOOL_RESULT,
            {"tool": tool, "call_id": call_id, "result": result, "is_error": is_error},
        )

    def error(self, message: str, **details: Any) -> None:
        self._event(contract.EVENT_ERROR, {**details, "message": message})

    def close(self, status: str = contract.STATUS_OK, output: str = "", error: str = "") -> None:
        """Finish the run with the roll-ups; only the first close writes."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            stats = RunStats(
                status=status,
                output=output,
                error=error,
                tool_calls=self.tool_calls,
                runtime_seconds=self.runtime_seconds,
                input_tokens=self.input_tokens,
                output_tokens=self.output_tokens,
                thinking_tokens=self.thinking_tokens,
            )
        self._write(
            "finish_run", lambda storage: storage.finish_run(self.run_id, stats, **self._owner)
        )

    @property
    def runtime_seconds(self) -> float:
        if self.sink.clock is not None:
            return (self.sink.clock() - self.started_at).total_seconds()
        return time.monotonic() - self._started

    @property
    def sequence(self) -> int:
        """The sequence number of the last event written (0 before the first)."""
        return self._sequence

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.close(contract.STATUS_OK)
        else:
            self.close(contract.STATUS_ERROR, error=f"{exc_type.__name__}: {exc}")
        return False  # the agent's exception propagates

    # --- plumbing ------------------------------------------------------------------

    def _event(self, event_type: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        log = SkillRunLog(
            run_id=self.run_id,
            sequence=sequence,
            event_type=event_type,
            payload=payload,
            created_at=self.sink.now(),
        )
        self._write(event_type, lambda storage: storage.append_log(log, **self._owner))

    def _write_start(self, call) -> None:
        if not self._write("start_run", call):
            self.recording = False

    def _write(self, what: str, call) -> bool:
        """Run one storage call; False (logged and counted) when it failed."""
        storage = self.sink.storage
        if storage is None:
            return True
        if not self.recording:
            if self._start_lost:
                self._count_dropped()
            return True
        try:
            call(storage)
        except Exception:
            with self._lock:
                self.failures += 1
            self.sink._count_failure()
            logger.exception("skillaudit: %s failed for run %s", what, self.run_id)
            return False
        return True

    def _count_dropped(self) -> None:
        with self._lock:
            self.dropped += 1
        self.sink._count_dropped()

    # --- what a BufferedStorage's writer reports (in its thread) -------------------

    def _buffer_refused(self, what: str) -> None:
        """The storage refused one of this run's writes (the buffer logged it)."""
        if what == "start_run":
            self.recording = False
        with self._lock:
            self.failures += 1
        self.sink._count_failure()

    def _buffer_lost(self, what: str) -> None:
        """The buffer dropped one of this run's writes (queue full, storage down)."""
        if what == "start_run":
            self._start_lost = True
            self.recording = False
        self._count_dropped()
