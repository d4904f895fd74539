"""The run list and the skills page in a real browser (Debian's Chromium through
Playwright, on a live server), at 1,440 px and at a 390 px phone: the run cards, the time
presets, the suggestions and the skills page's 24-hour chips. As in tests/test_browser.py,
any console error, script error, failed request or error status fails the test."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from runs import contract

from .browser_support import OVERFLOW_TOLERANCE_PX
from .test_browser import (  # noqa: F401 (fixtures)
    context,
    data,
    follow,
    listed_ids,
    page,
    query,
    user,
    watch,
    watched,
)

pytestmark = pytest.mark.browser

WIDE = {"width": 1440, "height": 900}
PHONE_390 = {"width": 390, "height": 844}


def no_sideways_scroll(tab, width):
    scroll = tab.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width + OVERFLOW_TOLERANCE_PX, scroll


def test_phone_shows_one_card_per_run_with_nothing_clipped(page, data):  # noqa: F811 (fixtures imported above)
    page.set_viewport_size(PHONE_390)
    page.goto("/runs/?include_nested=1")
    no_sideways_scroll(page, PHONE_390["width"])
    cards = page.locator("table.runs tbody tr")
    assert cards.count() > 10
    for i in range(8):
        card = cards.nth(i)
        box = card.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE_390["width"] + 1
        for part in ("td.status .badge", "td.skill", "td.time", "td.dur", "td.fails"):
            cell = card.locator(part).first
            expect(cell).to_be_visible()
            inner = cell.bounding_box()
            assert inner["x"] >= box["x"] - 1, part
            assert inner["x"] + inner["width"] <= box["x"] + box["width"] + 1, part
        # A badge shows its whole status name: nothing cut off.
        badge = card.locator("td.status .badge")
        sizes = badge.evaluate("b => [b.scrollWidth, b.clientWidth]")
        assert sizes[0] <= sizes[1] + 1, sizes
    # Two cards never share a row: each starts below the one before.
    tops = [cards.nth(i).bounding_box()["y"] for i in range(5)]
    assert tops == sorted(tops) and len(set(tops)) == 5
    # The status names are the filter's names.
    names = page.locator("table.runs .badge").all_inner_texts()
    options = page.locator("select[name=status] option").evaluate_all(
        "os => os.map(o => o.textContent)"
    )
    for name in {n.removeprefix("stale ") for n in names}:
        assert name in options, name
    for url in ("/skills/", "/runs/?status=failed", "/login/"):
        page.goto(url)
        no_sideways_scroll(page, PHONE_390["width"])


def test_failures_and_the_presets_at_desktop_width(page, data):  # noqa: F811 (fixtures imported above)
    page.set_viewport_size(WIDE)
    page.goto("/runs/")
    no_sideways_scroll(page, WIDE["width"])
    # The root failed and so did runs below it: the row says both.
    root = page.locator("table.runs tbody tr").filter(
        has=page.locator(f'td.time a[href="/runs/{data.root}/"]')
    )
    expect(root.locator("td.fails")).to_contain_text("sub-run")
    follow(page, page.get_by_role("link", name="last 24 h"))
    assert query(page) == {"since": ["-24h"]}
    expect(page.get_by_role("link", name="last 24 h")).to_have_attribute("aria-current", "true")
    shown_24h = listed_ids(page)
    assert data.root in shown_24h
    follow(page, page.get_by_role("link", name="any failure"))
    assert query(page) == {"since": ["-24h"], "failed": ["1"]}
    failed = listed_ids(page)
    assert data.root in failed
    # Every row shown failed itself, or says which of its tools or sub-runs did.
    rows = page.locator("table.runs tbody tr")
    for i in range(rows.count()):
        badge = rows.nth(i).locator("td.status .badge").inner_text()
        fails = rows.nth(i).locator("td.fails").inner_text()
        assert badge in contract.FAILED_STATUSES or fails != "none", (badge, fails)
    # The form keeps both, and the page size is a choice.
    expect(page.locator("input[name=since]")).to_have_value("-24h")
    expect(page.locator("input[name=failed]")).to_be_checked()
    page.select_option("select[name=page_size]", "25")
    follow(page, page.get_by_role("button", name="Apply"))
    assert query(page)["page_size"] == ["25"]
    assert len(listed_ids(page)) <= 25


def test_suggestions_offer_known_skills_as_you_type(page, data):  # noqa: F811 (fixtures imported above)
    page.set_viewport_size(WIDE)
    page.goto("/runs/")
    skill = page.locator("input[name=skill]")
    with page.expect_response(re.compile(r"/suggest/skill/\?prefix=tri")) as answer:
        skill.press_sequentially("tri", delay=30)
    assert answer.value.status == 200
    options = page.locator("#skill-values option")
    expect(options.first).to_have_attribute("value", re.compile("^tri"))
    values = options.evaluate_all("os => os.map(o => o.value)")
    assert "triage-ticket" in values and all(v.startswith("tri") for v in values)
    # skill stays exact: the chosen suggestion filters by that very skill.
    skill.fill("triage-ticket")
    follow(page, page.get_by_role("button", name="Apply"))
    assert query(page) == {"skill": ["triage-ticket"]}


@pytest.mark.parametrize("viewport", [WIDE, PHONE_390], ids=["1440", "390"])
def test_a_24_hour_chip_opens_the_runs_it_counts(page, data, viewport):  # noqa: F811 (fixtures imported above)
    page.set_viewport_size(viewport)
    page.goto("/skills/?sort=name")
    no_sideways_scroll(page, viewport["width"])
    expect(page.locator("svg.spark").first).to_be_visible()
    chip = page.locator("td.counts.day a").first
    status = chip.locator(".badge").inner_text()
    number = int(chip.inner_text().split()[-1])
    follow(page, chip)
    got = query(page)
    assert got["since"] == ["-24h"] and got["status"] == [status]
    assert status in contract.KNOWN_STATUSES
    assert len(listed_ids(page)) == number


def test_the_admin_changelist_fits_1440_px_with_dashboard_dates(page, data):  # noqa: F811
    page.set_viewport_size(WIDE)
    page.goto("/admin/runs/skillrun/")
    no_sideways_scroll(page, WIDE["width"])
    table, box = page.locator("#result_list").evaluate(
        "t => [t.getBoundingClientRect().right,"
        " t.closest('#changelist').getBoundingClientRect().right]"
    )
    assert table <= box + 1, (table, box)
    started = page.locator("#result_list td.field-started time").first
    expect(started).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
