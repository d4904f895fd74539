"""HttpStorage: the Storage contract over the JSON API, with the standard library only.

An executor in another process records runs through a skillaudit server with it:

    storage = HttpStorage("https://audit.example.com", token="...")
    sink = Sink(storage)

It imports nothing from Django (only runs.contract, itself dependency-free). HTTP errors
map back to the contract: 404 NotFound, 409 Conflict, 400/413 ValueError; anything else
raises ApiError. Datetimes travel as ISO 8601 with their offset; the server refuses naive
ones, as every implementation does.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from . import contract
from .contract import RunFilter, RunStats, SkillRun, SkillRunLog

# The suffixes of the per-run routes: a run id ending in "/<one of these>" would be read as
# that route's id, so get_run asks for such ids by body instead of by path.
_RUN_SUBROUTES = {"logs", "finish", "chain", "children", "tree", "export"}
# Paths of their own under /api/runs/: a run with one of these ids is read by body too.
_RUN_LIST_ROUTES = {"export", "import"}
# gunicorn refuses request lines over 4094 bytes: last-run queries are sent in chunks.
_MAX_QUERY_CHARS = 3000
_LOG_PAGE = 1000
_CHILDREN_PAGE = 500


class ApiError(RuntimeError):
    """The API answered with a status the contract has no error for (401, 403, 5xx...)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def _iso(value: datetime | None) -> str | None:
    # A naive datetime goes out without an offset and the server refuses it (400).
    return None if value is None else value.isoformat()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _run(data: dict[str, Any]) -> SkillRun:
    return SkillRun(
        id=data["id"],
        skill_id=data["skill_id"],
        caller_id=data["caller_id"],
        channel_id=data["channel_id"],
        # null: the server could not serve the stored JSON (written by another program).
        inputs=data["inputs"] if data["inputs"] is not None else {},
        started_at=_time(data["started_at"]),
        finished_at=_time(data["finished_at"]),
        status=data["status"],
        output=data["output"],
        error=data["error"],
        tool_calls_count=data["tool_calls_count"],
        runtime_seconds=float(data["runtime_seconds"]),
        parent_run_id=data["parent_run_id"],
        total_input_tokens=data["total_input_tokens"],
        total_output_tokens=data["total_output_tokens"],
        total_thinking_tokens=data["total_thinking_tokens"],
    )


def _log(data: dict[str, Any]) -> SkillRunLog:
    return SkillRunLog(
        run_id=data["run_id"],
        sequence=data["sequence"],
        event_type=data["event_type"],
        payload=data["payload"] if data["payload"] is not None else {},
        created_at=_time(data["created_at"]),
    )


def _filter(f: RunFilter) -> dict[str, Any]:
    return {
        "status": f.status,
        "skill_id": f.skill_id,
        "caller_id": f.caller_id,
        "channel_id": f.channel_id,
        "top_level_only": bool(f.top_level_only),
        "include_dry_run": bool(f.include_dry_run),
        "since": _iso(f.since),
        "until": _iso(f.until),
    }


def _event(log: SkillRunLog) -> dict[str, Any]:
    return {
        "sequence": log.sequence,
        "event_type": log.event_type,
        "payload": contract.clean_object(log.payload, "payload"),
        "created_at": _iso(log.created_at),
    }


class HttpStorage:
    """The Storage contract over a skillaudit server's /api/ (token authentication).

    Thread-safe: every call is one or more independent HTTP requests.
    """

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {
            "Authorization": f"Token {token}",
            "Accept": "application/json",
        }

    # --- transport ---------------------------------------------------------------------

    def _call(self, method: str, path: str, query=None, body=None) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urlencode(query, doseq=True)
        headers = dict(self._headers)
        data = None
        if body is not None:
            # allow_nan=False: NaN and infinities are refused here, as the contract does.
            data = json.dumps(body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise self._error(exc) from None

    @staticmethod
    def _error(exc: urllib.error.HTTPError) -> Exception:
        raw = exc.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")[:500]
        detail = body.get("detail", body) if isinstance(body, dict) else body
        text = detail if isinstance(detail, str) else json.dumps(detail)[:2000]
        if exc.code == 404:
            return contract.NotFound(text)
        if exc.code == 409:
            return contract.Conflict(text)
        if exc.code in (400, 413):
            return contract.InvalidInput(text)
        return ApiError(exc.code, text)

    def _contract(self, method: str, **arguments) -> Any:
        return self._call("POST", f"/api/contract/{method}/", body=arguments)

    def _runs(self, method: str, **arguments) -> list[SkillRun]:
        """The runs of an offset method, following ``next_offset`` where the server cut a
        response at its byte budget."""
        page = self._contract(method, **arguments)
        found = [_run(data) for data in page["runs"]]
        if page.get("next_offset") is not None:
            # Go on from the storage's own reading of the arguments (limit 0 is 50...).
            arguments = {
                **arguments,
                "offset": contract.clamp_offset(arguments["offset"]),
                "limit": contract.clamp_limit(arguments["limit"]),
            }
        while page.get("next_offset") is not None:
            moved = int(page["next_offset"]) - arguments["offset"]
            if moved <= 0:
                raise RuntimeError(f"{method}: next_offset does not move on")
            arguments = {
                **arguments,
                "offset": arguments["offset"] + moved,
                "limit": arguments["limit"] - moved,
            }
            page = self._contract(method, **arguments)
            found.extend(_run(data) for data in page["runs"])
        return found

    # --- writes ------------------------------------------------------------------------

    def initialize(self) -> None:
        """Check that the server answers, the token works and the tables exist."""
        self._contract("initialize")

    def start_run(self, run: SkillRun) -> None:
        body = {
            "id": run.id,
            "skill_id": run.skill_id,
            "caller_id": run.caller_id,
            "channel_id": run.channel_id,
            # Checked here too: JSON would turn non-string keys into strings silently.
            "inputs": contract.clean_object(run.inputs, "inputs"),
            "started_at": _iso(run.started_at),
            "output": run.output,
            "error": run.error,
            "tool_calls_count": run.tool_calls_count,
            "runtime_seconds": run.runtime_seconds,
            "parent_run_id": run.parent_run_id,
            "total_input_tokens": run.total_input_tokens,
            "total_output_tokens": run.total_output_tokens,
            "total_thinking_tokens": run.total_thinking_tokens,
        }
        # status and finished_at are not sent: start_run stores running and unfinished.
        self._call("POST", "/api/runs/", body=body)

    def finish_run(self, run_id: str, stats: RunStats) -> None:
        if not contract.clean_id(run_id):
            raise contract.NotFound(run_id)
        body = dataclasses.asdict(stats)
        self._call("POST", f"/api/runs/{contract.run_id_segment(run_id)}/finish/", body=body)

    def append_log(self, log: SkillRunLog) -> None:
        if not contract.clean_id(log.run_id):
            raise contract.NotFound(log.run_id)
        self._call(
            "POST", f"/api/runs/{contract.run_id_segment(log.run_id)}/logs/", body=_event(log)
        )

    def append_logs(self, logs: Sequence[SkillRunLog]) -> None:
        """Events of one run in one request and one transaction: all stored or none."""
        if not logs:
            return
        run_ids = {contract.clean_id(log.run_id) for log in logs}
        if len(run_ids) != 1:
            raise contract.InvalidInput("append_logs takes the events of one run")
        run_id = logs[0].run_id
        if not contract.clean_id(run_id):
            raise contract.NotFound(run_id)
        body = {"events": [_event(log) for log in logs]}
        self._call("POST", f"/api/runs/{contract.run_id_segment(run_id)}/logs/", body=body)

    def purge_older_than(self, t: datetime) -> int:
        return self._contract("purge_older_than", t=_iso(t))["deleted"]

    # --- reads -------------------------------------------------------------------------

    def get_run(self, run_id: str) -> SkillRun:
        if not contract.clean_id(run_id):
            raise contract.NotFound(run_id)
        if (run_id.rsplit("/", 1)[-1] in _RUN_SUBROUTES and "/" in run_id) or (
            run_id in _RUN_LIST_ROUTES
        ):
            return _run(self._contract("get_run", id=run_id))
        return _run(self._call("GET", f"/api/runs/{contract.run_id_segment(run_id)}/"))

    def list_logs_by_run(self, run_id: str) -> list[SkillRunLog]:
        if not contract.clean_id(run_id):
            return []
        path = f"/api/runs/{contract.run_id_segment(run_id)}/logs/"
        logs: list[SkillRunLog] = []
        query: dict[str, Any] = {"limit": _LOG_PAGE}
        while True:
            try:
                page = self._call("GET", path, query)
            except contract.NotFound:
                return []
            logs.extend(_log(data) for data in page["results"])
            if page["next_after"] is None:
                return logs
            query["after"] = page["next_after"]

    def list_runs_by_skill(self, skill_id: str, limit: int) -> list[SkillRun]:
        return self._runs("list_runs_by_skill", skill_id=skill_id, offset=0, limit=int(limit))

    def list_runs_by_skill_paginated(
        self, skill_id: str, offset: int, limit: int, include_dry_run: bool
    ) -> list[SkillRun]:
        return self._runs(
            "list_runs_by_skill_paginated",
            skill_id=skill_id,
            offset=int(offset),
            limit=int(limit),
            include_dry_run=bool(include_dry_run),
        )

    def count_runs_by_skill(self, skill_id: str, include_dry_run: bool) -> int:
        result = self._contract(
            "count_runs_by_skill", skill_id=skill_id, include_dry_run=bool(include_dry_run)
        )
        return result["count"]

    def list_runs_by_caller(self, caller_id: str, limit: int) -> list[SkillRun]:
        return self._runs("list_runs_by_caller", caller_id=caller_id, offset=0, limit=int(limit))

    def list_runs_filtered(self, f: RunFilter, offset: int, limit: int) -> list[SkillRun]:
        return self._runs(
            "list_runs_filtered", filter=_filter(f), offset=int(offset), limit=int(limit)
        )

    def count_runs_filtered(self, f: RunFilter) -> int:
        return self._contract("count_runs_filtered", filter=_filter(f))["count"]

    def list_children_by_parent(self, parent_run_id: str) -> list[SkillRun]:
        if not contract.clean_id(parent_run_id):
            return []
        path = f"/api/runs/{contract.run_id_segment(parent_run_id)}/children/"
        query: dict[str, Any] = {"full": 1, "page_size": _CHILDREN_PAGE}
        children: list[SkillRun] = []
        while True:
            page = self._call("GET", path, query)
            children.extend(_run(data) for data in page["results"])
            if page["next_cursor"] is None:
                return children
            query["cursor"] = page["next_cursor"]

    def walk_parent_chain(self, run_id: str) -> list[SkillRun]:
        if not contract.clean_id(run_id):
            raise contract.NotFound(run_id)
        page = self._call("GET", f"/api/runs/{contract.run_id_segment(run_id)}/chain/", {"full": 1})
        return [_run(data) for data in page["results"]]

    def list_finished_runs_before(self, cutoff: datetime, limit: int) -> list[SkillRun]:
        limit = int(limit)
        found: list[SkillRun] = []
        after = None
        while True:
            page = self._contract(
                "list_finished_runs_before",
                cutoff=_iso(cutoff),
                limit=limit - len(found),
                after=after,
            )
            found.extend(_run(data) for data in page["runs"])
            after = page["next"]
            if after is None or len(found) >= limit:
                return found

    def last_run_by_skills(
        self, skill_ids: Sequence[str], include_failed: bool
    ) -> dict[str, datetime]:
        ids = contract.unique_ids(skill_ids)
        if not ids:
            return {}
        latest: dict[str, datetime] = {}
        for chunk in _chunks(ids):
            query = [("skill", skill_id) for skill_id in chunk]
            query.append(("include_failed", "1" if include_failed else "0"))
            result = self._call("GET", "/api/skills/last-run/", query)["last_run"]
            latest.update({skill: _time(started) for skill, started in result.items()})
        return latest


def _chunks(ids: list[str]):
    """Skill ids in groups whose query string stays short enough for any server."""
    chunk: list[str] = []
    size = 0
    for skill_id in ids:
        cost = len(quote(skill_id, safe="")) + 7
        if chunk and size + cost > _MAX_QUERY_CHARS:
            yield chunk
            chunk, size = [], 0
        chunk.append(skill_id)
        size += cost
    if chunk:
        yield chunk
