"""The dashboard in a real browser: Debian's Chromium driven by Playwright, on a live server.

Every page a test opens is watched: a console error or warning, a script error, a failed
request or an error status fails the test (see the ``watched`` fixture). With
SKILLAUDIT_SCREENSHOTS=<folder>, the width test saves each page at desktop and phone width.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from runs import contract

from .browser_support import (
    BIG_PAYLOAD_CHARS,
    DESKTOP,
    HOSTILE_IMG,
    HOSTILE_SCRIPT,
    LONG_OUTPUT_LINES,
    OVERFLOW_TOLERANCE_PX,
    PHONE,
    PageWatch,
    screenshot_dir,
    seed,
)

pytestmark = pytest.mark.browser

PASSWORD = "correct-horse-battery-staple"
PAGE_SIZE = 50
# The reader's time zone in these tests: far from UTC, with a half-hour offset.
READER_TZ = "Asia/Kolkata"


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def user(live_server):
    """Staff with the view permission only: what a reviewer is given, not a superuser."""
    reviewer = User.objects.create_user("reviewer", password=PASSWORD, is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="view_skillrun"))
    return reviewer


@pytest.fixture
def data(live_server):
    return seed(timezone.now())


def new_context(browser, live_server):
    return browser.new_context(
        base_url=live_server.url, viewport=DESKTOP, locale="en-US", timezone_id=READER_TZ
    )


@pytest.fixture
def context(browser, live_server, user):
    """A browser context logged in as the reviewer (the login form has its own test)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    ctx = new_context(browser, live_server)
    ctx.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
    )
    yield ctx
    ctx.close()


@pytest.fixture
def watched(context):
    tab = context.new_page()
    watch = PageWatch(tab)
    yield tab, watch
    assert watch.problems == [], "the pages had errors:\n" + "\n".join(watch.problems)


@pytest.fixture
def page(watched):
    return watched[0]


@pytest.fixture
def watch(watched):
    return watched[1]


# --- helpers -----------------------------------------------------------------------------


def follow(page, locator):
    """Click a link or button and wait for the page it leads to."""
    with page.expect_navigation():
        locator.click()


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query, keep_blank_values=True)


def path(page) -> str:
    return unquote(urlsplit(page.url).path)


def listed_ids(page) -> list[str]:
    """The run ids of the list's rows, top to bottom, read from their links."""
    hrefs = page.locator("table.runs tbody td.time a").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    return [unquote(re.fullmatch(r"/runs/(.+)/", href).group(1)) for href in hrefs]


def row(page, run_id):
    return page.locator("table.runs tbody tr").filter(
        has=page.locator(f'td.time a[href="/runs/{run_id}/"]')
    )


def apply_filters(page):
    follow(page, page.get_by_role("button", name="Apply"))


# --- tests -------------------------------------------------------------------------------


def test_anonymous_reader_logs_in_through_the_dashboards_own_form(browser, live_server, user, data):
    ctx = new_context(browser, live_server)
    tab = ctx.new_page()
    watch = PageWatch(tab)
    tab.goto("/runs/?status=error")
    assert path(tab) == "/login/"
    assert query(tab) == {"next": ["/runs/?status=error"]}
    expect(tab.locator("h1")).to_have_text("Log in to skillaudit")
    tab.fill("#id_username", "reviewer")
    tab.fill("#id_password", PASSWORD)
    follow(tab, tab.locator("form.login-form button[type=submit]"))
    assert path(tab) == "/runs/"
    assert query(tab) == {"status": ["error"]}
    expect(tab.locator("h1")).to_have_text("Runs")
    expect(tab.locator("header .who")).to_contain_text("reviewer")
    assert listed_ids(tab) == [
        r for r in data.top_level_shown if data.statuses[r] == contract.STATUS_ERROR
    ]
    ctx.close()
    assert watch.problems == []


def test_the_list_shows_top_level_runs_newest_first_without_dry_runs(page, data):
    page.goto("/runs/")
    assert len(data.top_level_shown) > PAGE_SIZE
    assert listed_ids(page) == data.top_level_shown[:PAGE_SIZE]
    expect(page.locator("#run-count")).to_contain_text(f"{len(data.top_level_shown)} runs")
    expect(page.locator("#run-count")).to_contain_text("top-level, dry runs hidden")
    expect(page.locator("table.runs .mark", has_text="nested")).to_have_count(0)
    # The root has sub-runs: a marker links to its call tree.
    tree_mark = row(page, data.root).locator("a.mark")
    expect(tree_mark).to_have_text("tree")
    assert tree_mark.get_attribute("href") == f"/runs/{data.root}/tree/"
    # Two hours without a finish: shown as stale, by word as well as colour.
    expect(row(page, data.stale).locator(".badge")).to_have_text("stale running")
    expect(row(page, data.root).locator(".badge")).to_have_text("error")


def test_filtering_by_status_through_the_form(page, data):
    page.goto("/runs/")
    page.select_option("select[name=status]", "error")
    apply_filters(page)
    # Empty fields and unchecked boxes stay out of the URL; the filter stays in it.
    assert query(page) == {"status": ["error"]}
    expected = [r for r in data.top_level_shown if data.statuses[r] == contract.STATUS_ERROR]
    assert 1 < len(expected) < len(data.top_level_shown)
    assert listed_ids(page) == expected
    badges = page.locator("table.runs tbody .badge").all_inner_texts()
    assert badges == ["error"] * len(expected)
    expect(page.locator("select[name=status]")).to_have_value("error")
    expect(page.locator("#run-count")).to_contain_text(f"{len(expected)} run")

    page.select_option("select[name=status]", "stale")
    apply_filters(page)
    assert query(page) == {"status": ["stale"]}
    assert listed_ids(page) == [data.stale]

    # Dry runs are hidden by default, but asking for their status shows them.
    page.select_option("select[name=status]", "dry_run")
    apply_filters(page)
    assert query(page) == {"status": ["dry_run"]}
    assert listed_ids(page) == [data.dry]


def test_nested_and_dry_runs_are_shown_when_asked(page, data):
    page.goto("/runs/")
    nested = data.chain[1:] + [data.sibling]
    page.check("input[name=include_nested]")
    apply_filters(page)
    assert query(page) == {"include_nested": ["1"]}
    shown = listed_ids(page)
    assert set(nested) <= set(shown)
    assert data.dry not in shown
    for run_id in nested:
        expect(row(page, run_id).locator(".mark", has_text="nested")).to_have_count(1)
    expect(row(page, data.root).locator(".mark", has_text="nested")).to_have_count(0)
    expect(page.locator("input[name=include_nested]")).to_be_checked()

    page.check("input[name=include_dry_run]")
    apply_filters(page)
    assert query(page) == {"include_nested": ["1"], "include_dry_run": ["1"]}
    shown = listed_ids(page)
    assert data.dry in shown and set(nested) <= set(shown)
    expect(row(page, data.dry).locator(".badge")).to_have_text("dry_run")

    page.uncheck("input[name=include_nested]")
    apply_filters(page)
    assert query(page) == {"include_dry_run": ["1"]}
    shown = listed_ids(page)
    assert data.dry in shown
    assert not set(nested) & set(shown)


def test_a_skill_link_in_a_row_filters_the_list_by_that_skill(page, data):
    page.goto("/runs/")
    follow(page, page.locator("table.runs td.id a", has_text="triage-ticket").first)
    assert query(page) == {"skill": ["triage-ticket"]}
    expected = [r for r in data.top_level_shown if data.skills[r] == "triage-ticket"]
    assert listed_ids(page) == expected
    expect(page.locator("input[name=skill]")).to_have_value("triage-ticket")


def test_paging_older_then_newer(page, data):
    page.goto("/runs/")
    first_page = listed_ids(page)
    assert first_page == data.top_level_shown[:PAGE_SIZE]
    expect(page.get_by_role("link", name="← Newer")).to_have_count(0)

    follow(page, page.get_by_role("link", name="Older →"))
    assert set(query(page)) == {"after"}
    assert listed_ids(page) == data.top_level_shown[PAGE_SIZE:]
    expect(page.get_by_role("link", name="Older →")).to_have_count(0)

    follow(page, page.get_by_role("link", name="← Newer"))
    assert set(query(page)) == {"before"}
    assert listed_ids(page) == first_page

    follow(page, page.get_by_role("link", name="Newest"))
    assert query(page) == {}
    assert listed_ids(page) == first_page


def test_paging_keeps_the_filters(page, data):
    page.goto("/runs/?include_nested=1&include_dry_run=1")
    follow(page, page.get_by_role("link", name="Older →"))
    assert query(page)["include_nested"] == ["1"]
    assert query(page)["include_dry_run"] == ["1"]
    expect(page.locator("input[name=include_dry_run]")).to_be_checked()


def test_opening_a_run_and_unfolding_a_folded_payload(page, data):
    page.goto("/runs/")
    follow(page, row(page, data.root).locator("td.time a"))
    assert path(page) == f"/runs/{data.root}/"
    expect(page.locator("h1")).to_contain_text("plan-trip")
    expect(page.locator("h1 .badge")).to_have_text("error")
    facts = page.locator("dl.facts")
    expect(facts.locator("div", has_text="Run id").locator("dd #run-id")).to_have_text(data.root)
    tokens = facts.locator("div", has_text="Tokens").locator("dd")
    expect(tokens).to_have_text("1,200 in · 300 out · 50 thinking")
    inputs = page.locator("section[aria-labelledby=inputs-h] details")
    expect(inputs).to_have_attribute("open", "")
    expect(inputs.locator("pre")).to_contain_text('"destination": "Lisbon"')
    children = page.locator("ul.children li")
    expect(children).to_have_count(2)
    expect(children.nth(0)).to_contain_text("search-flights")
    expect(children.nth(1)).to_contain_text("book-hotel")

    # The tool call is paired with its result.
    call = page.locator(f"#event-{data.folded_event - 1}")
    expect(call.locator("a.pair")).to_contain_text(f"result #{data.folded_event}")
    expect(page.locator("li.event.error .etype")).to_contain_text("error")

    event = page.locator(f"#event-{data.folded_event}")
    details = event.locator("details.json")
    assert details.evaluate("d => d.open") is False
    expect(details.locator("pre")).to_be_hidden()
    details.locator("> summary").click()
    assert details.evaluate("d => d.open") is True
    # unfolded, it shows as a folding JSON viewer (static/runs/trace.js), the text a click away
    expect(details.locator(".jv")).to_be_visible()
    expect(details.locator(".jv")).to_contain_text("flight option 39")
    details.locator("button.jv-toggle").click()
    expect(details.locator("pre.payload")).to_be_visible()
    expect(details.locator("pre.payload")).to_contain_text('"flight option 39"')

    follow(page, page.locator("ul.children a", has_text="book-hotel"))
    assert path(page) == f"/runs/{data.sibling}/"
    expect(page.locator("nav.crumbs")).to_contain_text("plan-trip")
    expect(page.locator("section[aria-labelledby=error-h] pre")).to_have_text("no rooms left")


def test_a_big_payload_shows_a_preview_and_a_link_to_the_raw_json(page, data):
    page.goto(f"/runs/{data.big_payload}/")
    event = page.locator(f"#event-{data.big_event}")
    # Paired with its call although its payload is too big to load.
    expect(event.locator("a.pair")).to_have_text(f"result of call #{data.big_event - 1}")
    summary = event.locator("details summary")
    expect(summary).to_contain_text("preview")
    summary.click()
    preview = event.locator("details pre").inner_text()
    assert "RRRR" in preview
    assert len(preview) < 5_000
    follow(page, event.get_by_role("link", name="Open the whole payload as JSON"))
    assert path(page) == f"/runs/{data.big_payload}/events/{data.big_event}/raw/"
    payload = json.loads(page.locator("body").inner_text())
    assert payload["result"] == "R" * BIG_PAYLOAD_CHARS
    assert payload["tool"] == "http_get"


def test_a_long_output_is_folded_until_shown_in_full(page, data):
    page.goto(f"/runs/{data.long_output}/")
    output = page.locator("section[aria-labelledby=output-h] details")
    expect(output.locator("summary")).to_contain_text("show all")
    last_line = f"essay line {LONG_OUTPUT_LINES:04d}"
    expect(output.get_by_text(last_line)).to_be_hidden()
    output.locator("summary").click()
    expect(output.locator("pre")).to_contain_text(last_line)
    assert output.locator("pre").inner_text().count("\n") == LONG_OUTPUT_LINES - 1


def test_the_call_tree_highlights_the_run_and_folds(page, data):
    current = data.chain[2]
    page.goto(f"/runs/{current}/")
    follow(page, page.get_by_role("link", name="Call tree"))
    assert path(page) == f"/runs/{current}/tree/"
    tree = page.locator("ul.tree")
    expect(tree.locator("a.id")).to_have_count(len(data.chain) + 1)
    expect(tree.locator("li.current")).to_have_count(1)
    highlighted = tree.locator("li.current a.id").first
    expect(highlighted).to_have_text("query-airline")
    expect(highlighted).to_have_attribute("aria-current", "true")
    # The great-grandchild is three levels below the root.
    deepest = tree.locator("ul ul ul a.id", has_text="parse-fares")
    expect(deepest).to_have_count(1)
    expect(page.locator(".heading .count")).to_contain_text(f"{len(data.chain) + 1} runs")
    root_link = tree.locator("a.id", has_text="plan-trip")

    page.get_by_role("button", name="Fold all", exact=True).click()
    assert tree.locator("details").evaluate_all("ds => ds.map(d => d.open)") == [False] * 3
    expect(deepest).to_be_hidden()
    expect(root_link).to_be_visible()
    page.get_by_role("button", name="Unfold all", exact=True).click()
    assert tree.locator("details").evaluate_all("ds => ds.map(d => d.open)") == [True] * 3
    expect(deepest).to_be_visible()

    follow(page, deepest)
    assert path(page) == f"/runs/{data.chain[3]}/"
    page.go_back()
    assert path(page) == f"/runs/{current}/tree/"
    page.go_back()
    assert path(page) == f"/runs/{current}/"


def test_the_skills_page_lists_every_skill(page, data):
    page.goto("/runs/")
    follow(page, page.locator("header nav").get_by_role("link", name="Skills"))
    assert path(page) == "/skills/"
    names = page.locator("table.skills tbody td.id a").all_inner_texts()
    every_skill = set(data.skills.values()) | {
        "search-flights",
        "query-airline",
        "parse-fares",
        "book-hotel",
    }
    assert sorted(names) == sorted(every_skill)
    hotel = page.locator("table.skills tbody tr", has_text="book-hotel")
    expect(hotel.locator(".flag.bad")).to_have_text("never succeeded")
    follow(page, hotel.locator("td.id a"))
    assert query(page) == {"skill": ["book-hotel"], "include_nested": ["1"]}
    assert listed_ids(page) == [data.sibling]


def dashboard_pages(data) -> dict[str, str]:
    return {
        "list": "/runs/",
        "list-nested": "/runs/?include_nested=1&include_dry_run=1",
        "detail": f"/runs/{data.root}/",
        "detail-big-payload": f"/runs/{data.big_payload}/",
        "detail-long-output": f"/runs/{data.long_output}/",
        "detail-hostile": f"/runs/{data.hostile}/",
        "tree": f"/runs/{data.chain[2]}/tree/",
        "skills": "/skills/",
        "bad-request": "/runs/?status=nonsense",
    }


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_no_page_is_wider_than_the_screen(page, watch, data, viewport):
    """At phone width only tables may scroll, inside their wrapper; the page itself never."""
    page.set_viewport_size(viewport)
    folder = screenshot_dir()
    for name, url in dashboard_pages(data).items():
        expected_status = 400 if name == "bad-request" else 200
        watch.expect_status(expected_status)
        response = page.goto(url)
        assert response.status == expected_status, url
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"] + OVERFLOW_TOLERANCE_PX, (name, width)
        # [scrollWidth, clientWidth] of each table's wrapper: at desktop width nothing is
        # cut off; on a phone the wrapper scrolls sideways, so every column stays reachable.
        wrappers = page.locator(".table-wrap").evaluate_all(
            "ws => ws.map(w => [w.scrollWidth, w.clientWidth, getComputedStyle(w).overflowX])"
        )
        for scroll_width, client_width, overflow in wrappers:
            if viewport == DESKTOP or name in ("list", "list-nested", "skills"):
                # The list and the skills page become cards on a phone: nothing scrolls.
                assert scroll_width <= client_width + OVERFLOW_TOLERANCE_PX, (name, scroll_width)
            else:
                assert overflow == "auto", name
        if folder:
            label = "phone" if viewport == PHONE else "desktop"
            height = min(page.evaluate("document.documentElement.scrollHeight"), 2000)
            page.screenshot(
                path=os.path.join(folder, f"{name}-{label}.png"),
                full_page=True,
                clip={"x": 0, "y": 0, "width": viewport["width"], "height": height},
            )
    watch.expect_status(200)


def test_keyboard_reaches_the_filters_and_links_with_a_visible_focus(page, data):
    page.goto("/runs/")
    focused = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused.append(
            page.evaluate(
                """() => {
                  const el = document.activeElement;
                  const style = getComputedStyle(el);
                  const box = el.getBoundingClientRect();
                  return {
                    tag: el.tagName.toLowerCase(),
                    name: el.getAttribute("name") || "",
                    text: el.innerText.trim(),
                    href: el.getAttribute("href") || "",
                    outline: style.outlineStyle !== "none" ? parseFloat(style.outlineWidth) : 0,
                    visible: box.width > 0 && box.height > 0 && box.right > 0 && box.bottom > 0,
                    inTable: !!el.closest("table.runs"),
                  };
                }"""
            )
        )
    assert focused[0]["text"] == "Skip to content" and focused[0]["visible"]
    for element in focused:
        assert element["visible"], element
        assert element["outline"] >= 2, element
    names = [e["name"] for e in focused]
    for field in ("status", "skill", "caller", "channel", "since", "until"):
        assert field in names
    assert "include_nested" in names and "include_dry_run" in names
    assert any(e["tag"] == "button" and e["text"] == "Apply" for e in focused)
    assert any(e["tag"] == "a" and e["inTable"] for e in focused)

    # The skip link moves past the header; a filter can be typed and sent with Enter.
    page.goto("/runs/")
    page.keyboard.press("Tab")
    # Waits, not a bare read: on a busy machine the key events land a moment later.
    page.wait_for_function("document.activeElement && document.activeElement.matches('a.skip')")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"#main$"))
    assert urlsplit(page.url).fragment == "main"
    page.locator("input[name=skill]").focus()
    page.keyboard.type("deploy-check")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert query(page) == {"skill": ["deploy-check"]}
    assert listed_ids(page) == [r for r in data.top_level_shown if data.skills[r] == "deploy-check"]


def assert_inert(page):
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("img").count() == 0
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0


def test_hostile_strings_show_as_text_and_never_run(page, data):
    hostile_skill = HOSTILE_IMG + HOSTILE_SCRIPT
    page.goto("/runs/")
    assert_inert(page)
    expect(row(page, data.hostile).locator("td.id").first).to_contain_text(hostile_skill)
    expect(row(page, data.hostile).locator("td.preview")).to_have_text(HOSTILE_IMG)

    follow(page, row(page, data.hostile).locator("td.id a").first)
    assert query(page) == {"skill": [hostile_skill]}
    assert listed_ids(page) == [data.hostile]
    expect(page.locator("input[name=skill]")).to_have_value(hostile_skill)
    assert_inert(page)

    follow(page, row(page, data.hostile).locator("td.time a"))
    assert path(page) == f"/runs/{data.hostile}/"
    assert_inert(page)
    expect(page.locator("h1 .id")).to_have_text(hostile_skill)
    expect(page.locator("section[aria-labelledby=output-h] pre")).to_have_text(HOSTILE_SCRIPT)
    expect(page.locator("section[aria-labelledby=error-h] pre")).to_have_text(HOSTILE_IMG)
    expect(page.locator("section[aria-labelledby=inputs-h] pre")).to_contain_text(HOSTILE_SCRIPT)
    timeline = page.locator("ol.timeline")
    expect(timeline.locator(".tool")).to_have_text(HOSTILE_IMG)
    expect(timeline).to_contain_text(json.dumps(HOSTILE_SCRIPT))
    expect(page.locator("dl.facts")).to_contain_text(HOSTILE_SCRIPT)

    follow(page, page.get_by_role("link", name="Call tree"))
    assert_inert(page)
    expect(page.locator("ul.tree a.id")).to_have_text(hostile_skill)
    page.goto("/skills/")
    assert_inert(page)
    expect(page.locator("table.skills")).to_contain_text(hostile_skill)


def expected_local_text(utc: datetime) -> str:
    """What toLocaleString gives in en-US for the options dashboard.js passes."""
    local = utc.astimezone(ZoneInfo(READER_TZ))
    return f"{local:%b} {local.day}, {local.year}, {local:%I:%M:%S %p}"


def test_times_are_shown_in_the_readers_time_zone_with_utc_on_hover(page, data):
    for url in ("/runs/", f"/runs/{data.root}/", "/skills/"):
        page.goto(url)
        times = page.locator("time[datetime]").evaluate_all(
            "ts => ts.map(t => [t.getAttribute('datetime'), t.title, t.textContent])"
        )
        assert times, url
        for stamp, title, text in times:
            utc = datetime.fromisoformat(stamp).astimezone(UTC)
            assert title == f"{utc:%Y-%m-%d %H:%M:%S} UTC"
            # Chromium separates "PM" with a narrow no-break space.
            shown = text.replace("\u202f", " ").replace("\u00a0", " ")
            assert shown.startswith(expected_local_text(utc)), (shown, utc)
    page.goto("/runs/")
    root_time = row(page, data.root).locator("time").inner_text()
    assert re.search(r"\((10|11) min ago\)$", root_time), root_time
