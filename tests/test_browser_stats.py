"""The /stats/ page in a real browser (Debian's Chromium through Playwright, on a live
server): light and dark at 1,440 px and at a 390 px phone, with the dashboard's test data
(tests/browser_support.seed, hostile skill names included). Any console error, script
error, failed request or error status fails a test (PageWatch)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from .browser_support import OVERFLOW_TOLERANCE_PX, PageWatch, screenshot_dir, seed

pytestmark = pytest.mark.browser

WIDE = {"width": 1440, "height": 900}
PHONE_390 = {"width": 390, "height": 844}
LOOKS = [(WIDE, "light"), (WIDE, "dark"), (PHONE_390, "light"), (PHONE_390, "dark")]
CHARTS = 7
# The page's background in each scheme (static/runs/dashboard.css: --bg).
BACKGROUND = {"light": "rgb(255, 255, 255)", "dark": "rgb(20, 23, 28)"}


@pytest.fixture
def user(live_server):
    reviewer = User.objects.create_user("reviewer", password="correct-horse-battery-staple")
    reviewer.user_permissions.add(Permission.objects.get(codename="view_skillrun"))
    return reviewer


@pytest.fixture
def data(live_server):
    return seed(timezone.now())


@pytest.fixture(params=LOOKS, ids=["1440-light", "1440-dark", "390-light", "390-dark"])
def look(request):
    return request.param


@pytest.fixture
def page(browser, live_server, user, look):
    viewport, scheme = look
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context = browser.new_context(
        base_url=live_server.url, viewport=viewport, locale="en-US", color_scheme=scheme
    )
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
    )
    tab = context.new_page()
    watch = PageWatch(tab)
    yield tab
    context.close()
    assert watch.problems == [], "the pages had errors:\n" + "\n".join(watch.problems)


def follow(page, link) -> None:
    with page.expect_navigation(wait_until="load"):
        link.click()


def assert_no_overflow(page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width + OVERFLOW_TOLERANCE_PX, f"the page is {scroll}px wide"


def test_the_charts_are_drawn_in_each_look_without_overflow(page, data, look):
    viewport, scheme = look
    page.goto("/stats/?window=24h")
    assert_no_overflow(page, viewport["width"])
    expect(page.locator("figure.chart")).to_have_count(CHARTS)
    charts = page.locator("svg.chart")
    assert charts.count() == CHARTS
    for index in range(CHARTS):
        box = charts.nth(index).bounding_box()
        assert box["width"] > 0.6 * min(viewport["width"], 560), index
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] + 1, index
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUND[scheme]
    # Bars take their colours from the stylesheet's variables, so the scheme recolours them.
    colours = page.evaluate(
        """() => {
          const rect = document.querySelector('#chart-runs svg.chart rect.k-ok');
          const text = document.querySelector('#chart-runs svg.chart text.tick');
          const root = getComputedStyle(document.documentElement);
          return [getComputedStyle(rect).fill, getComputedStyle(text).fill,
                  root.getPropertyValue('--ok').trim(), root.getPropertyValue('--muted').trim()];
        }"""
    )
    fill, text_fill, ok, muted = colours
    assert fill == _rgb(ok) and text_fill == _rgb(muted), colours
    # Hostile skill names are text: nothing they hold ran.
    assert page.evaluate("window.__xss") is None
    expect(page.locator("#chart-skill-cost svg.chart text.clabel").first).to_be_visible()
    # The numbers beneath a chart open, inside the page's width.
    page.locator("#chart-runs details.numbers summary").click()
    expect(page.locator("#chart-runs-data")).to_be_visible()
    assert_no_overflow(page, viewport["width"])
    folder = screenshot_dir()
    if folder:
        page.screenshot(path=f"{folder}/stats-{viewport['width']}-{scheme}.png", full_page=True)


def _rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgb({red}, {green}, {blue})"


def test_a_bar_opens_the_list_filtered_to_its_runs(page, data, look):
    page.goto("/stats/?window=24h")
    segments = page.locator('#chart-runs svg.chart a[href*="status="]')
    labels = segments.evaluate_all("as => as.map(a => a.querySelector('title').textContent)")
    assert labels
    # The biggest segment: a status in an hour, with its count at the end of its label.
    numbers = [int(label.rsplit(" ", 1)[1].replace("\u2009", "")) for label in labels]
    index = numbers.index(max(numbers))
    status = labels[index].split(": ", 1)[1].rsplit(" ", 1)[0]
    follow(page, segments.nth(index))
    assert urlsplit(page.url).path == "/runs/"
    got = parse_qs(urlsplit(page.url).query)
    assert got["status"] == [status] and got["include_dry_run"] == ["1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", got["since"][0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", got["until"][0])
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == numbers[index]
    badges = set(page.locator("table.runs td.status .badge").all_inner_texts())
    assert badges == {status}
