"""What the browser tests share: launching Debian's Chromium, the demo data, page watchers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction

from runs import contract
from runs.recorder import Sink
from runs.storage import DjangoStorage

# Debian's package (`make browser`); SKILLAUDIT_CHROMIUM names another build.
CHROMIUM = os.environ.get("SKILLAUDIT_CHROMIUM", "/usr/bin/chromium")
# Playwright cannot download its own browser here; Debian's package is used instead.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}
# Sub-pixel rounding may add a pixel or two to the document's width.
OVERFLOW_TOLERANCE_PX = 2

HOSTILE_IMG = '<img src=x onerror="window.__xss=1">'
HOSTILE_SCRIPT = "<script>window.__xss=1</script>"

BULK_SKILLS = ("summarize-thread", "triage-ticket", "deploy-check")
BULK_STATUSES = (
    contract.STATUS_OK,
    contract.STATUS_OK,
    contract.STATUS_ERROR,
    contract.STATUS_OK,
    contract.STATUS_TIMEOUT,
    contract.STATUS_BUDGET_EXCEEDED,
)
BULK_RUNS = 62
# Larger than presentation.PRETTY_PAYLOAD_MAX_CHARS: shown as a preview with a raw link.
BIG_PAYLOAD_CHARS = 70_000
LONG_OUTPUT_LINES = 400


def chromium_missing_message() -> str:
    return (
        f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
        "(`make browser`, or `apt-get install -y chromium`)"
    )


def launched_chromium():
    """One headless Chromium, for a module-scoped ``browser`` fixture (tests/conftest.py).

    A missing Chromium fails the tests: it never skips them. Playwright's sync API keeps an
    event loop in this thread, which makes Django refuse ORM calls from it unless told they
    are safe (as pytest-django documents).
    """
    import pytest
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(chromium_missing_message())
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Clock:
    """A clock the Sink reads: each run and event gets a distinct, chosen time."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass
class Seeded:
    """The ids of the runs the tests look for, and what the default list should show."""

    root: str = ""
    # root -> child -> grandchild -> great-grandchild, plus a second child of the root.
    chain: list[str] = field(default_factory=list)
    sibling: str = ""
    dry: str = ""
    stale: str = ""
    big_payload: str = ""
    long_output: str = ""
    hostile: str = ""
    top_level_shown: list[str] = field(default_factory=list)  # newest first
    statuses: dict[str, str] = field(default_factory=dict)  # top-level, non-dry runs
    skills: dict[str, str] = field(default_factory=dict)  # top-level, non-dry runs
    folded_event: int = 0  # a sequence of the root's events whose payload is folded
    big_event: int = 0


def seed(now: datetime) -> Seeded:
    """Record the dashboard's test data through the Sink, as an executor would."""
    # One transaction: a commit per write would make every test's set-up seconds long.
    with transaction.atomic():
        return _seed(now)


def _seed(now: datetime) -> Seeded:
    clock = Clock(now - timedelta(hours=5))
    sink = Sink(DjangoStorage(), clock=clock)
    seeded = Seeded()
    top_level: list[tuple[datetime, str]] = []

    def record_top_level(recorder, status: str, skill: str) -> None:
        top_level.append((recorder.started_at, recorder.run_id))
        seeded.statuses[recorder.run_id] = status
        seeded.skills[recorder.run_id] = skill

    for index in range(BULK_RUNS):
        skill = BULK_SKILLS[index % len(BULK_SKILLS)]
        status = BULK_STATUSES[index % len(BULK_STATUSES)]
        recorder = sink.start_run(
            skill_id=skill,
            caller_id=f"member-{index % 4}",
            channel_id=f"channel-{index % 2}",
            inputs={"ticket": index},
            run_id=f"bulk-{index:03d}",
        )
        clock.advance(3)
        error = "upstream answered 503" if status != contract.STATUS_OK else ""
        recorder.close(status, output=f"result {index}", error=error)
        record_top_level(recorder, status, skill)
        clock.advance(60)

    # The stale run: started two hours ago, never finished.
    clock.current = now - timedelta(hours=2)
    recorder = sink.start_run(skill_id="nightly-export", caller_id="scheduler", run_id="stale-run")
    seeded.stale = recorder.run_id
    record_top_level(recorder, contract.STATUS_RUNNING, "nightly-export")

    clock.current = now - timedelta(minutes=50)
    recorder = sink.start_run(skill_id="summarize-thread", run_id="dry-run", inputs={"dry": True})
    clock.advance(1)
    recorder.close(contract.STATUS_DRY_RUN, output="would have summarized")
    seeded.dry = recorder.run_id

    # A payload too big to pretty-print, and an output long enough to be folded.
    clock.current = now - timedelta(minutes=40)
    recorder = sink.start_run(skill_id="fetch-report", caller_id="member-1", run_id="big-payload")
    clock.advance(1)
    recorder.tool_call("http_get", {"url": "https://example.test/report"}, call_id="c1")
    clock.advance(3)
    recorder.tool_result("http_get", "R" * BIG_PAYLOAD_CHARS, call_id="c1")
    seeded.big_event = recorder.sequence
    clock.advance(1)
    recorder.close(contract.STATUS_OK, output="report fetched")
    seeded.big_payload = recorder.run_id
    record_top_level(recorder, contract.STATUS_OK, "fetch-report")

    clock.current = now - timedelta(minutes=30)
    recorder = sink.start_run(skill_id="write-essay", run_id="long-output")
    clock.advance(20)
    lines = [f"essay line {n:04d}" for n in range(1, LONG_OUTPUT_LINES + 1)]
    recorder.close(contract.STATUS_OK, output="\n".join(lines))
    seeded.long_output = recorder.run_id
    record_top_level(recorder, contract.STATUS_OK, "write-essay")

    clock.current = now - timedelta(minutes=20)
    hostile_skill = f"{HOSTILE_IMG}{HOSTILE_SCRIPT}"
    recorder = sink.start_run(
        skill_id=hostile_skill,
        caller_id=HOSTILE_SCRIPT,
        channel_id=HOSTILE_IMG,
        inputs={"prompt": HOSTILE_SCRIPT, HOSTILE_IMG: "key"},
        run_id="hostile-run",
    )
    clock.advance(1)
    recorder.tool_call(HOSTILE_IMG, {"html": HOSTILE_SCRIPT})
    clock.advance(1)
    recorder.error(HOSTILE_IMG, detail=HOSTILE_SCRIPT)
    recorder.close(contract.STATUS_ERROR, output=HOSTILE_SCRIPT, error=HOSTILE_IMG)
    seeded.hostile = recorder.run_id
    record_top_level(recorder, contract.STATUS_ERROR, hostile_skill)

    # The call tree, newest: root -> child -> grandchild -> great-grandchild, and a sibling.
    clock.current = now - timedelta(minutes=10)
    root = sink.start_run(
        skill_id="plan-trip",
        caller_id="member-2",
        channel_id="channel-travel",
        inputs={"destination": "Lisbon", "nights": 3},
        run_id="trip-root",
    )
    clock.advance(1)
    root.step(text="planning", input_tokens=1200, output_tokens=300, thinking_tokens=50)
    clock.advance(1)
    root.tool_call("search", {"query": "flights to Lisbon"}, call_id="s1")
    clock.advance(2)
    # Many lines: folded in the timeline until unfolded.
    root.tool_result("search", {"flights": [f"flight option {n}" for n in range(40)]}, call_id="s1")
    seeded.folded_event = root.sequence
    chain = [root]
    for depth, skill in enumerate(("search-flights", "query-airline", "parse-fares"), start=1):
        clock.advance(1)
        child = sink.start_run(
            skill_id=skill,
            caller_id="member-2",
            inputs={"depth": depth},
            parent_run_id=chain[-1].run_id,
            run_id=f"trip-level-{depth}",
        )
        clock.advance(1)
        child.step(text=f"level {depth}", input_tokens=10 * depth, output_tokens=depth)
        chain.append(child)
    for recorder in reversed(chain[1:]):
        clock.advance(2)
        recorder.close(contract.STATUS_OK, output=f"{recorder.run_id} done")
    clock.advance(1)
    sibling = sink.start_run(
        skill_id="book-hotel", inputs={"nights": 3}, parent_run_id=root.run_id, run_id="trip-hotel"
    )
    clock.advance(3)
    sibling.close(contract.STATUS_ERROR, error="no rooms left")
    clock.advance(1)
    root.error("hotel booking failed", run=sibling.run_id)
    clock.advance(1)
    root.close(contract.STATUS_ERROR, output="flights only", error="hotel booking failed")
    seeded.root = root.run_id
    seeded.chain = [r.run_id for r in chain]
    seeded.sibling = sibling.run_id
    record_top_level(root, contract.STATUS_ERROR, "plan-trip")

    assert sink.failures == 0, "recording the test data failed"
    top_level.sort(reverse=True)
    seeded.top_level_shown = [run_id for _, run_id in top_level]
    return seeded


class PageWatch:
    """Collects what should never happen on a page: console errors, script errors,
    requests that failed or answered with an error status."""

    def __init__(self, page) -> None:
        self.page = page
        self.problems: list[str] = []
        self.expected_status = 200
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)

    def expect_status(self, status: int) -> None:
        """The status the next documents answer with (400 for a page showing a bad request)."""
        self.expected_status = status

    def _console(self, message) -> None:
        if message.type not in ("error", "warning"):
            return
        if message.text.startswith("Failed to load resource: the server responded"):
            # Chromium logs every error status; _response judges the page's own requests.
            # Django's admin pages name no icon, so Chromium asks for /favicon.ico (404);
            # the dashboard's pages name theirs.
            url = message.location.get("url", "")
            if self.expected_status >= 400 or (
                url.endswith("/favicon.ico") and "/admin/" in self.page.url
            ):
                return
        self.problems.append(f"console {message.type}: {message.text} {message.location}")

    def _request_failed(self, request) -> None:
        icon = request.url.rsplit("/", 1)[-1].startswith("favicon.")
        if icon and "ERR_ABORTED" in (request.failure or ""):
            # Chromium fetches the icon after the page and cancels it when a test navigates
            # on at once: the page's own icon request was dropped, nothing failed.
            return
        if "/suggest/" in request.url and "ERR_ABORTED" in (request.failure or ""):
            # A suggestion asked for while typing, dropped when the form is submitted at
            # once (static/runs/list.js): the page moved on, nothing failed.
            return
        self.problems.append(f"request failed: {request.url} ({request.failure})")

    def _response(self, response) -> None:
        expected = self.expected_status if response.request.resource_type == "document" else 200
        if response.status >= 400 and response.status != expected:
            self.problems.append(f"HTTP {response.status}: {response.url}")


def screenshot_dir() -> str | None:
    """Where to save screenshots of each page, when SKILLAUDIT_SCREENSHOTS names a folder."""
    folder = os.environ.get("SKILLAUDIT_SCREENSHOTS", "")
    if folder:
        os.makedirs(folder, exist_ok=True)
    return folder or None
