"""Every link to a run opens that run, whatever dots and slashes its id
holds. Links are resolved as a browser resolves them (WHATWG URL: "." and ".." segments,
and their %2e spellings, are removed) and then followed."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import unquote, urlsplit

import pytest

from runs.admin import dashboard_url
from tests.dashboard_data import make_viewer, record_run

pytestmark = pytest.mark.django_db

VICTIM = "victim-run"
TRICKY = [
    "q/../victim-run",
    "../victim-run",
    "victim-run/..",
    "a/./b",
    "x/..",
    "q/%2e%2e/victim-run",
    "q/.%2E/victim-run",
    "q/..%2F..%2Fvictim-run",
    "...",
]
DOT_SEGMENTS = {".", "%2e"}
DOUBLE_DOT_SEGMENTS = {"..", ".%2e", "%2e.", "%2e%2e"}


def browser_path(href: str) -> str:
    """The path a browser requests for this href (on this site), dot segments resolved."""
    path = urlsplit(href).path
    out: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        lowered = segment.lower()
        if lowered in DOUBLE_DOT_SEGMENTS:
            if out:
                out.pop()
            if last:
                out.append("")
        elif lowered in DOT_SEGMENTS:
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def run_links(html: str) -> list[str]:
    hrefs = (unescape(h) for h in re.findall(r'href="([^"]+)"', html))
    return [h for h in hrefs if re.fullmatch(r"/runs/.+/", urlsplit(h).path)]


def opened_run(client, href: str) -> str | None:
    response = client.get(browser_path(href))
    if response.status_code != 200 or response.context is None:
        return None
    run = response.context.get("run")
    return getattr(run, "id", None)


@pytest.fixture
def viewer(client, django_user_model):
    client.force_login(make_viewer(django_user_model))
    record_run(VICTIM, minutes=0)
    for minute, run_id in enumerate(TRICKY, start=1):
        record_run(run_id, minutes=minute, parent=VICTIM if minute % 2 else "")
    return client


def intended(href: str) -> str:
    """The run id a link names, before any browser resolves it (the server decodes once)."""
    path = urlsplit(href).path[len("/runs/") : -1]
    for suffix in ("/tree", "/live", "/export"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return unquote(path)


def check_links(client, html: str) -> int:
    checked = 0
    for href in run_links(html):
        run_id = intended(href)
        if run_id not in TRICKY + [VICTIM]:
            continue
        assert browser_path(href).startswith("/runs/"), href
        if urlsplit(href).path.endswith(("/tree/", "/export/", "/live/")):
            continue
        assert opened_run(client, href) == run_id, href
        checked += 1
    return checked


def test_run_list_links_open_their_own_run(viewer):
    html = viewer.get("/runs/?include_nested=1").content.decode()
    assert check_links(viewer, html) >= len(TRICKY) + 1


@pytest.mark.parametrize("run_id", TRICKY)
def test_detail_and_tree_pages_link_to_their_own_runs(viewer, run_id):
    detail_href = [h for h in run_links(viewer.get("/runs/?include_nested=1").content.decode())]
    own = next(h for h in detail_href if intended(h) == run_id)
    page = viewer.get(browser_path(own))
    assert page.context["run"].id == run_id
    html = page.content.decode()
    check_links(viewer, html)
    tree = next(h for h in run_links(html) if urlsplit(h).path.endswith("/tree/"))
    assert intended(tree) == run_id
    tree_page = viewer.get(browser_path(tree))
    assert tree_page.status_code == 200 and tree_page.context["run"].id == run_id
    assert check_links(viewer, tree_page.content.decode()) >= 1


@pytest.mark.parametrize("run_id", TRICKY)
def test_the_admin_links_to_the_dashboard_page_of_the_same_run(viewer, run_id):
    assert opened_run(viewer, dashboard_url(run_id)) == run_id


DOT_IDS = [".", "..", "~.", "~~..", "~"]


@pytest.fixture
def dot_viewer(client, django_user_model):
    client.force_login(make_viewer(django_user_model))
    record_run(VICTIM, minutes=0)
    for minute, run_id in enumerate(DOT_IDS, start=1):
        record_run(run_id, minutes=minute, parent=VICTIM if minute % 2 else "")
    return client


@pytest.mark.parametrize("page", ["/runs/?include_nested=1", "/runs/victim-run/"])
def test_runs_named_only_by_dots_are_linked_to_themselves(dot_viewer, page):
    """The id "." quoted as "%2E" is still a dot segment to a browser: /runs/%2E/ opened the run
    list. The link must survive a browser's resolution (urljoin against the page's URL for
    literal dots, browser_path for the %2e spellings) and resolve to the same id."""
    from urllib.parse import urljoin

    from django.urls import resolve

    html = dot_viewer.get(page).content.decode()
    found = {}
    for href in run_links(html):
        joined = urlsplit(urljoin("http://testserver" + page, href)).path
        assert joined == urlsplit(href).path, href
        assert browser_path(href) == joined, href
        match = resolve(unquote(joined))
        if match.url_name == "run_detail":
            found[match.kwargs["run_id"]] = href
    for run_id in DOT_IDS:
        if page == "/runs/victim-run/" and DOT_IDS.index(run_id) % 2:
            continue  # the run page lists its children: the ids at odd positions are top-level
        assert run_id in found, (run_id, sorted(found))
        assert opened_run(dot_viewer, found[run_id]) == run_id


@pytest.mark.parametrize("run_id", DOT_IDS)
def test_reverse_and_the_admin_link_open_runs_named_only_by_dots(dot_viewer, run_id):
    from django.urls import reverse

    from runs.web.rendering import run_url

    for href in (dashboard_url(run_id), run_url("run_detail", run_id)):
        assert browser_path(href) == urlsplit(href).path, href
        assert opened_run(dot_viewer, href) == run_id
    tree = reverse("runs:run_tree", args=[run_id])
    assert browser_path(tree) == tree
    page = dot_viewer.get(tree)
    assert page.status_code == 200 and page.context["run"].id == run_id
