"""Search in a real browser: the list's marked snippets, then the run page opened
from a search highlighting the words with "next match" (static/runs/search.js), under the
site's CSP, on hostile stored text. Debian's Chromium through Playwright, as in
tests/test_browser.py; every console error, script error or failed request fails the test.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client
from playwright.sync_api import expect

from tests.dashboard_data import record_run

from .browser_support import (
    DESKTOP,
    HOSTILE_IMG,
    HOSTILE_SCRIPT,
    PageWatch,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser, live_server):
    reviewer = User.objects.create_user("reviewer", password="pw-123456", is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="view_skillrun"))
    client = Client()
    client.force_login(reviewer)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP, locale="en-US")
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
    )
    tab = context.new_page()
    watch = PageWatch(tab)
    yield tab
    context.close()
    assert watch.problems == [], "the pages had errors:\n" + "\n".join(watch.problems)


def test_search_marks_snippets_and_the_run_page_walks_the_matches(page, live_server):
    record_run(
        "hostile-run",
        output=f"{HOSTILE_IMG} the needle is here {HOSTILE_SCRIPT}\n" + "filler line\n" * 60,
        inputs={"ask": "find the Needle"},
        events=[
            ("tool_call", {"tool": "grep", "pattern": "needle"}),
            ("tool_result", {"text": "東京都庁 needle 会議"}),
        ],
    )
    record_run("other-run", minutes=5, output="nothing to see")

    page.goto("/runs/?q=needle")
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator(".snippet mark").first).to_have_text("needle")
    # the stored markup is text in the snippet, never elements
    assert rows.locator(".snippet img, .snippet script").count() == 0
    expect(rows.locator(".snippet")).to_contain_text("<img src=x")

    rows.locator("td.time a").click()
    page.wait_for_url("**/runs/hostile-run/#q=needle")
    bar = page.locator(".search-bar")
    expect(bar).to_be_visible()
    marks = page.locator("mark.search-hit")
    count = marks.count()
    assert count >= 4  # output, inputs, both events
    expect(bar.locator(".search-status")).to_have_text(f"{count} matches")
    for text in marks.all_text_contents():
        assert text.lower() == "needle"

    next_button = bar.get_by_role("button", name="Next match")
    next_button.click()
    expect(marks.nth(0)).to_have_class("search-hit current")
    expect(marks.nth(0)).to_be_in_viewport()
    next_button.click()
    expect(marks.nth(1)).to_have_class("search-hit current")
    expect(marks.nth(0)).to_have_class("search-hit")
    expect(bar.locator(".search-status")).to_have_text(f"match 2 of {count}")
    for _ in range(count - 1):
        next_button.click()
    expect(marks.nth(0)).to_have_class("search-hit current")  # wraps around
    bar.get_by_role("button", name="Previous").click()
    expect(marks.nth(count - 1)).to_have_class("search-hit current")
    expect(marks.nth(count - 1)).to_be_in_viewport()

    # no stored markup became live, and none of ours broke the page's text
    assert page.evaluate("window.__xss") is None
    assert page.locator("#main img[src='x']").count() == 0
    expect(page.locator("#main")).to_contain_text("<img src=x")


def test_a_spaceless_search_marks_substrings_and_excluded_words_are_not_marked(page):
    # "pears" is not the excluded word "pear": the run matches, and nothing marks it
    events = [("step", {"t": "pears"})]
    record_run("jp-run", output="会議は東京都庁で明日 and apples", events=events)
    page.goto("/runs/?q=" + "東京都 -pear apples")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    page.locator("table.runs tbody td.time a").click()
    marks = page.locator("mark.search-hit").first
    expect(marks).to_be_attached()
    texts = page.locator("mark.search-hit").all_text_contents()
    assert set(texts) == {"東京都", "apples"} and texts.count("東京都") == texts.count("apples")
