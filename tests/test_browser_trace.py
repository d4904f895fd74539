"""The run page and the call tree in a real browser: failures first, one time
axis, paging and filters, the JSON viewer, markdown, copy buttons, the keyboard, time zones
and a live run, at desktop and phone widths, in light and dark.

Debian's Chromium driven by Playwright on a live server; every page a test opens is
watched (tests/browser_support.PageWatch): a console error, a script error, a failed
request or an error status fails the test.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from runs import contract
from runs.models import SkillRun, SkillRunLog
from runs.recorder import Sink
from runs.storage import DjangoStorage
from runs.web.trace import EVENTS_PAGE_SIZE

from .browser_support import (
    HOSTILE_IMG,
    HOSTILE_SCRIPT,
    OVERFLOW_TOLERANCE_PX,
    Clock,
    PageWatch,
)

pytestmark = pytest.mark.browser

PASSWORD = "correct-horse-battery-staple"
READER_TZ = "Asia/Kolkata"  # far from UTC, with a half-hour offset
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
# Each interaction runs at both widths and in both schemes, two combinations a test; the
# layout tests take all four.
LOOKS = [
    pytest.param((DESKTOP, "light"), id="desktop-light"),
    pytest.param((PHONE, "dark"), id="phone-dark"),
]
ALL_LOOKS = [
    pytest.param((DESKTOP, "light"), id="desktop-light"),
    pytest.param((DESKTOP, "dark"), id="desktop-dark"),
    pytest.param((PHONE, "light"), id="phone-light"),
    pytest.param((PHONE, "dark"), id="phone-dark"),
]

RUN = "trace-run"
CHILD_OK = "trace-child-ok"
CHILD_FAILED = "trace-child-failed"
GRANDCHILD_FAILED = "trace-grandchild-failed"
TRACEBACK = 'Traceback (most recent call last):\n  File "agent.py", line 3\nToolError: 503'
MARKDOWN = (
    "# Answer heading\n\nSome **bold** text and a [link](https://example.test/page).\n\n"
    "- first\n- second\n\n![tracking pixel](https://tracker.example/pixel.png)\n\n"
    f"{HOSTILE_SCRIPT} {HOSTILE_IMG}\n"
)
# Sequences in the seeded run (see seed_trace).
CROSS_CALL = EVENTS_PAGE_SIZE  # the last event of page one: a call...
CROSS_RESULT = EVENTS_PAGE_SIZE + 1  # ...whose result opens page two
EVENT_TOTAL = 2 * EVENTS_PAGE_SIZE + 30


class Seeded:
    failed_result = 0
    failed_call = 0
    error_event = 0
    nested_event = 0
    markdown_event = 0
    late_failed_result = 0


def seed_trace(now: datetime) -> Seeded:
    """A finished run with 230 events: steps with usage and latency, paired tool calls, a
    failed tool result with a traceback, an error event, markdown, a nested payload, a call
    whose result is on the next page; an ok sub-run whose own sub-run failed, and a failed
    sub-run."""
    seeded = Seeded()
    with transaction.atomic():
        clock = Clock(now - timedelta(minutes=30))
        sink = Sink(DjangoStorage(), clock=clock)
        run = sink.start_run(skill_id="trace-skill", caller_id="member-1", run_id=RUN)
        n = 0

        def tick(seconds=0.5):
            clock.advance(seconds)

        tick()
        run.step(text=MARKDOWN, input_tokens=16342, output_tokens=3866, thinking_tokens=9475)
        n += 1
        seeded.markdown_event = n
        tick()
        run.tool_call("kb.search", {"query": "refund", "filters": {"lang": ["en", "fr"]}}, "k1")
        n += 1
        tick(1.2)
        run.tool_result(
            "kb.search",
            {"hits": [{"id": i, "text": f"line one\nline two {i}"} for i in range(3)]},
            call_id="k1",
        )
        n += 1
        seeded.nested_event = n
        tick()
        run.tool_call("tickets.get", {"id": "TCK-1"}, call_id="t1")
        n += 1
        seeded.failed_call = n
        tick(0.8)
        run.tool_result(
            "tickets.get",
            {"error": "HTTP 503 Service Unavailable", "traceback": TRACEBACK},
            call_id="t1",
            is_error=True,
        )
        n += 1
        seeded.failed_result = n
        tick()
        run.error("rate limited by the model provider", traceback=TRACEBACK)
        n += 1
        seeded.error_event = n
        while n < CROSS_CALL - 1:
            tick(0.2)
            run.step(text=f"thinking {n}", input_tokens=10, output_tokens=2)
            n += 1
        tick(0.2)
        run.tool_call("discord.fetch_messages", {"page": 2}, call_id="cross")
        n += 1
        assert n == CROSS_CALL
        tick(0.7)
        run.tool_result("discord.fetch_messages", {"messages": 100}, call_id="cross")
        n += 1
        assert n == CROSS_RESULT
        children_at = clock.current
        while n < EVENT_TOTAL - 2:
            tick(0.1)
            run.step(text=f"later {n}", input_tokens=5, output_tokens=1)
            n += 1
        tick()
        run.tool_call("tickets.update", {"id": "TCK-1"}, call_id="u1")
        n += 1
        tick()
        run.tool_result("tickets.update", "HTTP 409", call_id="u1", is_error=True)
        n += 1
        seeded.late_failed_result = n
        end = clock.current
        # Sub-runs, inside the run's time.
        clock.current = children_at
        ok = sink.start_run(skill_id="child-ok", parent_run_id=RUN, run_id=CHILD_OK)
        tick(1)
        ok.step(text="ok", input_tokens=100, output_tokens=10)
        grand = sink.start_run(
            skill_id="grandchild-fails", parent_run_id=CHILD_OK, run_id=GRANDCHILD_FAILED
        )
        tick(1)
        grand.close(contract.STATUS_TIMEOUT, error="deadline")
        tick(1)
        ok.close(contract.STATUS_OK, output="fine")
        failed = sink.start_run(skill_id="child-fails", parent_run_id=RUN, run_id=CHILD_FAILED)
        tick(2)
        failed.close(contract.STATUS_ERROR, error="boom")
        clock.current = end + timedelta(seconds=1)
        run.close(contract.STATUS_OK, output=MARKDOWN)
        assert sink.failures == 0
    return seeded


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def user(live_server):
    reviewer = User.objects.create_user("reviewer", password=PASSWORD, is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="view_skillrun"))
    return reviewer


@pytest.fixture
def data(live_server):
    return seed_trace(timezone.now())


def open_context(browser, live_server, user, look):
    viewport, scheme = look
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    ctx = browser.new_context(
        base_url=live_server.url,
        viewport=viewport,
        locale="en-US",
        timezone_id=READER_TZ,
        color_scheme=scheme,
        has_touch=viewport is PHONE,
    )
    ctx.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
    )
    return ctx


@pytest.fixture(params=LOOKS)
def look(request):
    return request.param


@pytest.fixture
def context(browser, live_server, user, look):
    ctx = open_context(browser, live_server, user, look)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    tab = context.new_page()
    watch = PageWatch(tab)
    yield tab
    assert watch.problems == [], "the pages had errors:\n" + "\n".join(watch.problems)


def run_url(run_id: str = RUN, query: str = "") -> str:
    return f"/runs/{run_id}/{query}"


def event(page, sequence: int):
    return page.locator(f"#event-{sequence}")


def shown_sequences(page) -> list[int]:
    return [
        int(s) for s in page.locator("li.event").evaluate_all("ls => ls.map(l => l.dataset.seq)")
    ]


def follow(page, link) -> None:
    """Click a link or button that loads a new page and wait until that page has loaded.

    Reading the list right after a bare click raced the navigation: CI once read the
    half-parsed next document (its URL committed, no events yet) and saw an empty page.
    """
    with page.expect_navigation(wait_until="load"):
        link.click()


def assert_no_overflow(page):
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= OVERFLOW_TOLERANCE_PX, f"the page is {overflow}px wider than the window"


# --- failures first ----------------------------------------------------------------------


def test_failures_header_counts_and_links_each_failure(page, data):
    page.goto(run_url())
    header = page.locator("#failures")
    expect(header).to_contain_text("2 tool calls failed")
    expect(header).to_contain_text("1 error event")
    expect(header).to_contain_text("2 sub-runs failed")
    expect(page.locator("#fact-failures")).to_have_text("3")
    # A failed tool result is drawn as a failure: its own class, label and red bar.
    result = event(page, data.failed_result)
    expect(result).to_have_class(re.compile(r"\bfailed\b"))
    expect(result.locator(".fail-mark")).to_have_text("⚠ failed")
    assert "fail" in result.locator(".track rect").get_attribute("class")
    # its call's bar is red too
    assert "fail" in event(page, data.failed_call).locator(".track rect").get_attribute("class")
    color = result.locator(".etype").evaluate("e => getComputedStyle(e).color")
    ok_color = (
        event(page, data.nested_event).locator(".etype").evaluate("e => getComputedStyle(e).color")
    )
    assert color != ok_color
    # Each failure named in the header leads to its event.
    header.locator("a.failure-link", has_text=f"#{data.failed_result} ").click()
    expect(page).to_have_url(re.compile(rf"#event-{data.failed_result}$"))
    expect(result).to_be_in_viewport()
    # The late failure lies on another page: its link opens that page at the event.
    header.locator("a.failure-link", has_text=f"#{data.late_failed_result} ").click()
    expect(page).to_have_url(re.compile(rf"events_after={data.late_failed_result - 1}"))
    expect(event(page, data.late_failed_result)).to_have_class(re.compile(r"\bfailed\b"))
    # Failed sub-runs at any depth, linked.
    page.goto(run_url())
    expect(header.locator("a.failed-run")).to_have_count(2)
    header.locator("a.failed-run", has_text="grandchild-fails").click()
    expect(page).to_have_url(re.compile(rf"/runs/{GRANDCHILD_FAILED}/$"))
    # The Error section's error event link (a failed sub-run has none: it has no events).
    page.goto(run_url(CHILD_FAILED))
    expect(page.locator("#error-section")).to_contain_text("boom")


def test_errors_only_shows_the_failing_events_with_their_calls(page, data):
    page.goto(run_url())
    page.locator("#errors-only").check()
    follow(page, page.locator("form.event-filter button[type=submit]"))
    expect(page).to_have_url(re.compile(r"\?errors=1"))
    expected = sorted(
        {data.failed_call, data.failed_result, data.error_event}
        | {data.late_failed_result - 1, data.late_failed_result}
    )
    assert shown_sequences(page) == expected
    for sequence in (data.failed_result, data.error_event, data.late_failed_result):
        expect(event(page, sequence)).to_have_class(re.compile(r"\bfailed\b"))
    # the calls come along, marked as context
    expect(event(page, data.failed_call)).to_have_class(re.compile(r"\bcontext\b"))
    # and the filter can be left
    follow(page, page.locator("#clear-filters"))
    assert len(shown_sequences(page)) == EVENTS_PAGE_SIZE


def test_filters_by_event_type_and_by_tool(page, data):
    page.goto(run_url())
    page.locator("#event-type").select_option("tool_call")
    follow(page, page.locator("form.event-filter button[type=submit]"))
    expect(page).to_have_url(re.compile(r"\?type=tool_call(#|$)"))
    types = page.locator("li.event").evaluate_all("ls => ls.map(l => l.dataset.type)")
    assert types and set(types) == {"tool_call"}
    # the tool select keeps "every tool" out of the URL
    page.locator("#event-type").select_option("")
    page.locator("#event-tool").select_option("tickets.get")
    follow(page, page.locator("form.event-filter button[type=submit]"))
    expect(page).to_have_url(re.compile(r"\?tool=tickets\.get(#|$)"))
    assert shown_sequences(page) == [data.failed_call, data.failed_result]
    # a bad filter value is a 400 naming the parameter, not a 500
    response = page.request.get(run_url(query="?errors=maybe"))
    assert response.status == 400 and "errors" in response.text()
    response = page.request.get(run_url(query="?type=step&type=error"))
    assert response.status == 400 and "more than once" in response.text()


def test_pages_previous_next_first_last(page, data):
    page.goto(run_url())
    first_page = shown_sequences(page)
    assert first_page == list(range(1, EVENTS_PAGE_SIZE + 1))
    pager = page.locator("nav.event-pager").first
    expect(pager.locator("[data-page=prev]")).to_have_count(0)
    follow(page, pager.locator("[data-page=next]"))
    assert shown_sequences(page) == list(range(EVENTS_PAGE_SIZE + 1, 2 * EVENTS_PAGE_SIZE + 1))
    follow(page, pager.locator("[data-page=last]"))
    last_page = shown_sequences(page)
    assert last_page[-1] == EVENT_TOTAL and len(last_page) == EVENTS_PAGE_SIZE
    expect(pager.locator("[data-page=next]")).to_have_count(0)
    follow(page, pager.locator("[data-page=prev]"))
    assert shown_sequences(page)[-1] == last_page[0] - 1
    follow(page, pager.locator("[data-page=first]"))
    assert shown_sequences(page) == first_page


def test_jump_to_the_first_and_the_next_error(page, data):
    page.goto(run_url(query="?events_after=10"))
    # The next error after this page is the late failure on the last page.
    page.locator("nav.event-pager a.next-error").first.click()
    expect(event(page, data.late_failed_result)).to_be_in_viewport()
    page.locator("#first-error-link").click()
    expect(event(page, data.failed_result)).to_be_in_viewport()


def test_a_result_on_another_page_is_linked(page, data):
    page.goto(run_url())
    link = event(page, CROSS_CALL).locator("a.pair")
    expect(link).to_have_text(f"result #{CROSS_RESULT} (another page)")
    link.click()
    expect(page).to_have_url(re.compile(rf"events_after={CROSS_CALL}#event-{CROSS_RESULT}$"))
    back = event(page, CROSS_RESULT).locator("a.pair")
    expect(back).to_have_text(f"result of call #{CROSS_CALL} (another page)")
    back.click()
    expect(event(page, CROSS_CALL)).to_be_visible()


def test_json_viewer_folds_per_node_and_shows_line_breaks(page, data):
    page.goto(run_url())
    payload = event(page, data.nested_event)
    viewer = payload.locator(".jv")
    expect(viewer).to_be_visible()
    # the raw text stays in the page for copying, hidden while the tree shows
    expect(payload.locator("pre.payload")).to_be_hidden()
    hits = viewer.locator("details.jv-node", has_text='"hits"').first
    expect(hits).to_have_attribute("open", "")
    hits.locator("> summary").click()
    expect(hits).not_to_have_attribute("open", "")
    hits.locator("> summary").click()
    string = viewer.locator(".jv-str", has_text="line one").first
    expect(string).to_be_visible()
    # The string's line break is a line break, not a literal \n.
    assert "\n" in string.inner_text() and "\\n" not in string.inner_text()
    assert string.evaluate("e => e.getClientRects().length") >= 2  # drawn on two lines
    # the traceback of the failed result, on several lines
    traceback = event(page, data.failed_result).locator(".jv-str", has_text="Traceback")
    assert traceback.inner_text().count("\n") == TRACEBACK.count("\n")
    # text view on request
    payload.locator("button.jv-toggle").click()
    expect(payload.locator("pre.payload")).to_be_visible()
    expect(viewer).to_be_hidden()


def test_markdown_is_rendered_safely(page, data):
    page.goto(run_url())
    answer = event(page, data.markdown_event).locator(".md")
    # a model's "# heading" is an h4 under the page's own headings
    expect(answer.locator("h4")).to_have_text("Answer heading")
    expect(answer.locator("strong")).to_have_text("bold")
    link = answer.locator("a", has_text="link")
    assert set(link.get_attribute("rel").split()) >= {"nofollow", "noopener"}
    # The image is a link to click, never loaded; raw HTML stays text.
    expect(answer.locator("img")).to_have_count(0)
    expect(answer.locator("a.md-img")).to_have_attribute(
        "href", "https://tracker.example/pixel.png"
    )
    expect(answer).to_contain_text(HOSTILE_SCRIPT)
    expect(page.locator("main script")).to_have_count(1)  # trace.js only
    assert page.evaluate("window.__xss") is None
    # the run's output too
    expect(page.locator("#run-output-md h4")).to_have_text("Answer heading")


def test_copy_buttons_copy_ids_and_payloads(page, context, data):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(run_url())
    button = page.locator("dd button.copy")
    button.click()
    expect(button).to_have_text("copied")
    assert page.evaluate("navigator.clipboard.readText()") == RUN
    event(page, data.nested_event).locator("button.copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert '"hits"' in copied and copied.startswith("{")


def test_keyboard_moves_opens_jumps_and_helps(page, data):
    page.goto(run_url())
    page.locator(".heading h1").click()
    page.keyboard.press("j")
    expect(event(page, 1)).to_be_focused()
    page.keyboard.press("j")
    expect(event(page, 2)).to_be_focused()
    page.keyboard.press("k")
    expect(event(page, 1)).to_be_focused()
    details = event(page, 1).locator("details.json")
    was_open = details.evaluate("d => d.open")
    page.keyboard.press("Enter")
    assert details.evaluate("d => d.open") != was_open
    page.keyboard.press("e")
    expect(event(page, data.failed_result)).to_be_focused()
    page.keyboard.press("e")
    expect(event(page, data.error_event)).to_be_focused()
    # no error left on this page: e follows the pager's next-error link
    page.keyboard.press("e")
    expect(page).to_have_url(re.compile(rf"#event-{data.late_failed_result}$"))
    page.keyboard.press("/")
    expect(page.locator("#event-type")).to_be_focused()
    page.locator(".heading h1").click()
    page.keyboard.press("?")
    expect(page.locator("#keys-help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#keys-help")).to_be_hidden()


def test_times_say_their_zone_with_utc_in_titles(page, data):
    page.goto(run_url())
    started = page.locator("dl.facts time").first
    text = started.inner_text().replace("\u202f", " ")
    assert "GMT+5:30" in text, text
    title = started.get_attribute("title")
    stamp = started.get_attribute("datetime")
    utc = datetime.fromisoformat(stamp).astimezone(UTC)
    assert title == f"{utc:%Y-%m-%d %H:%M:%S} UTC"
    offset = event(page, 1).locator(".offset")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", offset.get_attribute("title"))
    # bars say start, duration and name on hover and on focus
    track = event(page, data.failed_call).locator(".track")
    track.hover()
    tip = track.locator(".tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("tool_call tickets.get")
    expect(tip).to_contain_text("lasts 800 ms")
    expect(tip).to_contain_text("UTC")
    page.mouse.move(0, 0)
    event(page, data.nested_event).locator(".track").focus()
    expect(event(page, data.nested_event).locator(".tip")).to_be_visible()


# --- one time axis -------------------------------------------------------------------------


@pytest.mark.parametrize("look", ALL_LOOKS, indirect=True)
def test_bars_share_one_axis_at_every_width_and_scheme(page, data, look):
    page.goto(run_url())
    assert_no_overflow(page)
    boxes = page.locator("li.event .track").evaluate_all(
        "ts => ts.map(t => { const r = t.getBoundingClientRect(); return [r.left, r.width]; })"
    )
    axis = page.locator("svg.axis").bounding_box()
    assert boxes
    for left, width in boxes:
        assert abs(left - axis["x"]) < 1.5 and abs(width - axis["width"]) < 1.5
    assert page.locator("svg.axis text").count() >= 3
    # The track shows against the page in either scheme.
    colors = page.locator("li.event svg.bar").first.evaluate(
        "s => [s, document.body].map(e => getComputedStyle(e).backgroundColor)"
    )
    assert colors[0] != colors[1]
    # A bar's x is its offset on the run's axis: later events start further right.
    xs = [
        float(x.rstrip("%"))
        for x in page.locator("li.event .track rect").evaluate_all(
            "rs => rs.map(r => r.getAttribute('x'))"
        )
    ]
    assert xs == sorted(xs)
    # the tree
    page.goto(f"/runs/{RUN}/tree/")
    assert_no_overflow(page)
    boxes = page.locator(".tree .track").evaluate_all(
        "ts => ts.map(t => { const r = t.getBoundingClientRect(); return [r.left, r.width]; })"
    )
    axis = page.locator("svg.axis").bounding_box()
    assert len(boxes) == 4
    for left, width in boxes:
        assert abs(left - axis["x"]) < 1.5 and abs(width - axis["width"]) < 1.5


def test_tree_rolls_up_subtrees_and_marks_failed_descendants(page, data):
    page.goto(f"/runs/{RUN}/tree/")
    expect(page.locator("#tree-failures")).to_contain_text("2 runs in this tree failed")
    root = page.locator("#node-0")
    stored = SkillRun.objects.get(pk=RUN)
    own_in, own_out = stored.total_input_tokens, stored.total_output_tokens
    assert own_in > 16342  # the first step's 16,342 and the rest
    expect(root.locator(".own")).to_contain_text(f"{own_in:,} in · {own_out:,} out")
    expect(root.locator(".own")).to_contain_text("9,475 thinking")
    # subtree: the root's tokens plus its sub-runs' (100 in, 10 out from child-ok)
    expect(root.locator(".sub")).to_contain_text(f"{own_in + 100:,} in · {own_out + 10:,} out")
    expect(root.locator(".sub")).to_contain_text("3 sub-runs")
    flag = root.locator("a.flag.below")
    expect(flag).to_have_text("2 failed sub-runs")
    # child-ok is ok but a run below it failed: marked too
    child = page.locator(".node", has=page.locator("a.id", has_text="child-ok"))
    expect(child.locator(".flag.below")).to_have_text("1 failed sub-run")
    flag.click()
    expect(page).to_have_url(re.compile(r"#node-\d+$"))
    # failed bars in the error colour
    failed = page.locator(".node.failed .track rect")
    expect(failed).to_have_count(2)
    for index in range(2):
        assert "fail" in failed.nth(index).get_attribute("class")
    # keyboard on the tree: j moves, e goes to the next failed run, / finds, Enter opens
    page.locator(".heading h1").click()
    page.keyboard.press("j")
    expect(root).to_be_focused()
    page.keyboard.press("e")
    expect(page.locator(".node.failed").first).to_be_focused()
    page.keyboard.press("/")
    expect(page.locator("#tree-filter")).to_be_focused()
    page.keyboard.type("grandchild")
    expect(page.locator(".node:not(.dim)")).to_have_count(1)
    page.keyboard.press("Enter")  # to the first match
    page.keyboard.press("Enter")  # opens it
    expect(page).to_have_url(re.compile(rf"/runs/{GRANDCHILD_FAILED}/$"))


def test_demo_failing_tool_shows_as_a_failure(page, live_server):
    call_command("seed_demo", runs=60, seed=7, stdout=open(os.devnull, "w"))
    failed = [
        row
        for row in SkillRunLog.objects.filter(event_type=contract.EVENT_TOOL_RESULT).values(
            "run_id", "sequence", "payload"
        )
        if contract.tool_result_failed(contract.EVENT_TOOL_RESULT, row["payload"])
    ]
    assert failed, "the demo data has no failing tool"
    row = next(r for r in failed if r["payload"]["result"].get("error", "").startswith("HTTP"))
    response = page.goto(f"/runs/{row['run_id']}/?events_after={row['sequence'] - 1}")
    assert response.status == 200
    shown = event(page, row["sequence"])
    expect(shown).to_have_class(re.compile(r"\bfailed\b"))
    expect(shown).to_contain_text("HTTP 503 Service Unavailable")
    expect(page.locator("#failures")).to_contain_text("tool call")
    expect(page.locator("#failures")).to_contain_text("failed")


# --- live --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_running_run_gains_events_and_finishes_while_its_page_is_open(page, live_server):
    sink = Sink(DjangoStorage())
    run = sink.start_run(skill_id="live-skill", run_id="live-run")
    run.step(text="first thought", input_tokens=100, output_tokens=10)
    run.tool_call("kb.search", {"q": "x"}, call_id="c1")
    page.goto("/runs/live-run/")
    expect(page.locator("#live-notice")).to_contain_text("still running")
    expect(page.locator("#fact-tokens")).to_have_text("100 in · 10 out")
    expect(page.locator("#fact-tool-calls")).to_have_text("1")
    expect(page.locator("li.event")).to_have_count(2)
    expect(event(page, 2).locator(".pair.pending")).to_have_text("no result yet")
    # Events recorded while the page is open appear without a reload.
    run.tool_result("kb.search", {"error": "HTTP 503"}, call_id="c1", is_error=True)
    run.step(text="# Retrying\n\n**now**", input_tokens=50, output_tokens=5)
    expect(page.locator("li.event")).to_have_count(4, timeout=15_000)
    expect(event(page, 3)).to_have_class(re.compile(r"\bfailed\b"))
    expect(event(page, 2).locator("a.pair")).to_have_text("result #3")
    expect(event(page, 4).locator(".md h4")).to_have_text("Retrying")
    expect(page.locator("#fact-tokens")).to_have_text("150 in · 15 out")
    expect(page.locator("#fact-failures")).to_have_text("1")
    expect(page.locator("#event-count")).to_have_text("4")
    duration = page.locator("#fact-duration")
    expect(duration).to_contain_text("so far")
    # The run finishes: status, figures and result appear, polling stops.
    run.close(contract.STATUS_ERROR, output="partial answer", error="gave up after a 503")
    expect(page.locator("#run-status .badge")).to_have_text("error", timeout=15_000)
    expect(page.locator("#live-notice")).to_contain_text("finished")
    expect(page.locator("#run-output")).to_have_text("partial answer")
    expect(page.locator("#run-error")).to_have_text("gave up after a 503")
    expect(page.locator("#fact-finished time")).to_contain_text("GMT+5:30")
    expect(duration).not_to_contain_text("so far")
    polls = []
    page.on("request", lambda r: polls.append(r.url) if "/live/" in r.url else None)
    page.wait_for_timeout(5_000)
    assert polls == []


@pytest.mark.django_db(transaction=True)
def test_live_endpoint_needs_login_permission_and_strict_parameters(live_server, user):
    Sink(DjangoStorage()).start_run(skill_id="s", run_id="live-2")
    anonymous = Client()
    assert anonymous.get("/runs/live-2/live/?after=0").status_code == 302
    nobody = User.objects.create_user("nobody", password=PASSWORD, is_staff=True)
    outsider = Client()
    outsider.force_login(nobody)
    assert outsider.get("/runs/live-2/live/?after=0").status_code == 403
    reviewer = Client()
    reviewer.force_login(user)
    ok = reviewer.get("/runs/live-2/live/?after=0")
    assert ok.status_code == 200 and ok.json()["running"] is True
    for query, name in (("", "after"), ("?after=-1", "after"), ("?after=0&x=1", "x")):
        bad = reviewer.get(f"/runs/live-2/live/{query}")
        assert bad.status_code == 400 and name in bad.json()["errors"], query
    assert reviewer.get("/runs/live-2/live/?after=0&after=1").status_code == 400
    assert reviewer.get("/runs/nope/live/?after=0").status_code == 404
