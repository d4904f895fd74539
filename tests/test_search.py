"""Search inside traces: the query language, the index kept by the databases,
the list's q filter on /runs/ and /api/runs/, snippets and their escaping.

The corpus test asserts one table of expected run ids; CI runs this file on SQLite and on
PostgreSQL, so both databases give the same ids for the same data.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.http import QueryDict
from django.urls import reverse

from runs import managers, search
from runs.filters import RunFilterSet
from runs.models import SkillRun
from runs.services.purge import purge_started_before
from runs.web.views import PAGE_SIZE
from tests.dashboard_data import BASE, make_viewer, record_run

# --- the query language (no database) --------------------------------------------------


def clauses(q):
    return [(c.parts, c.negated, c.substring) for c in search.parse(q).clauses]


def test_words_are_lower_cased_clauses_that_all_must_match():
    assert clauses("Hello  WORLD") == [(("hello",), False, False), (("world",), False, False)]


def test_a_quoted_phrase_is_one_clause_of_adjacent_words():
    assert clauses('"line two" three') == [
        (("line", "two"), False, False),
        (("three",), False, False),
    ]


def test_a_minus_excludes_a_word_or_a_phrase():
    assert clauses('keep -drop -"not this"') == [
        (("keep",), False, False),
        (("drop",), True, False),
        (("not", "this"), True, False),
    ]


def test_a_minus_inside_a_word_is_a_separator_not_an_exclusion():
    assert clauses("ORD-2231-X") == [(("ord", "2231", "x"), False, False)]


@pytest.mark.parametrize(
    "q, parts",
    [
        ("call_f5a04b56813c", ("call", "f5a04b56813c")),
        ("jane.doe@example.com", ("jane", "doe", "example", "com")),
        ("/var/log/app/error.log", ("var", "log", "app", "error", "log")),
        ("Zürich", ("zürich",)),
        ("ПРИВЕТ", ("привет",)),
    ],
)
def test_identifiers_are_phrases_of_their_parts(q, parts):
    assert clauses(q) == [(parts, False, False)]


def test_spaceless_scripts_are_substrings_from_three_characters():
    assert clauses("東京都 会議") == [(("東京都",), False, True), (("会議",), False, False)]
    # a phrase with such text: each part on its own
    assert clauses('"東京都庁 tower"') == [(("東京都庁",), False, True), (("tower",), False, False)]


def test_an_unterminated_quote_runs_to_the_end():
    assert clauses('"open phrase') == [(("open", "phrase"), False, False)]


def test_blank_is_no_search():
    assert search.parse("") is None
    assert search.parse("   \t") is None
    assert search.parse(None) is None


@pytest.mark.parametrize(
    "q, message",
    [
        ("!!!", "no word"),
        ('"" - -- * ^ ( )', "no word"),
        ("-only -exclusions", "not only exclusions"),
        ("x" * (search.MAX_QUERY_CHARS + 1), "too long"),
        (" ".join(f"w{i}" for i in range(search.MAX_CLAUSES + 1)), "too many"),
    ],
)
def test_unsearchable_queries_are_errors(q, message):
    with pytest.raises(search.SearchError, match=message):
        search.parse(q)


def test_fts_operators_are_plain_words():
    w = lambda *parts: (parts, False, False)  # noqa: E731
    assert clauses("a AND b OR NEAR(c d) col:e f* ^g {h i}") == [
        w("a"), w("and"), w("b"), w("or"), w("near", "c"), w("d"), w("col", "e"),
        w("f"), w("g"), w("h"), w("i"),
    ]  # fmt: skip


def test_nul_is_a_separator_and_repeated_clauses_count_once():
    assert clauses("a\x00b a a\x00b") == [(("a", "b"), False, False), (("a",), False, False)]


def test_the_highlight_pattern_marks_whole_words_and_substrings():
    pattern = search.parse("log 会議は").highlight_pattern()
    segments = search.marked_segments("catalog log 東京の会議は", pattern)
    assert [text for text, marked in segments if marked] == ["log", "会議は"]


# --- the corpus: the same ids on SQLite and PostgreSQL ---------------------------------

CORPUS = {
    "latin": dict(output="Le café est fermé à Zürich", inputs={"city": "Zürich"}),
    "cyrillic": dict(events=[("step", {"text": "Привет, мир! Заказ оформлен."})]),
    "japanese": dict(events=[("tool_result", {"reply": "東京都庁の会議は明日です"})]),
    "chinese": dict(output="我们的订单已经发货了"),
    "ident": dict(
        events=[
            (
                "tool_call",
                {"tool": "lookup", "call_id": "call_f5a04b56813c", "order": "ORD-2231-X"},
            ),
            ("tool_result", {"email": "jane.doe@example.com", "path": "/var/log/app/error.log"}),
        ]
    ),
    "json": dict(
        inputs={"nested": {"deep": ["alpha", {"beta": "gamma delta"}]}, "flag": True, "n": 42}
    ),
    "split": dict(events=[("step", {"text": "apple pie"}), ("step", {"text": "banana"})]),
    "escaped": dict(output='<script>alert("x")</script> &amp; line1\nline2 C:\\new'),
    "failed": dict(status="error", error="TimeoutError: upstream timed out"),
    "child": dict(parent="latin", output="childword"),
    "dry": dict(status="dry_run", output="dryword"),
}

EXPECTED = [
    ("café", {"latin"}),
    ("CAFÉ", {"latin"}),
    ("cafe", set()),
    ("zürich fermé", {"latin"}),
    ("привет", {"cyrillic"}),
    ("МИР", {"cyrillic"}),
    ("заказ оформлен", {"cyrillic"}),
    ('"заказ оформлен"', {"cyrillic"}),
    ('"оформлен заказ"', set()),
    ("東京都", {"japanese"}),
    ("会議は明日", {"japanese"}),
    ("都庁の会", {"japanese"}),
    ("订单已", {"chinese"}),
    ("订单", set()),  # two characters: a whole word only
    ("call_f5a04b56813c", {"ident"}),
    ("f5a04b56813c", {"ident"}),
    ("ORD-2231-X", {"ident"}),
    ("ord 2231", {"ident"}),
    ("2231-x", {"ident"}),
    ("jane.doe@example.com", {"ident"}),
    ("example.com", {"ident"}),
    ("doe", {"ident"}),
    ("/var/log/app/error.log", {"ident"}),
    ("error.log", {"ident"}),
    ("lookup", {"ident"}),
    ("gamma delta", {"json"}),
    ('"gamma delta"', {"json"}),
    ('"delta gamma"', set()),
    ("beta", {"json"}),
    ("42", {"json"}),
    ("alpha -gamma", set()),
    ("apple banana", {"split"}),
    ('"apple pie"', {"split"}),
    ('"pie banana"', set()),
    ("apple -banana", set()),
    ("apple -cherry", {"split"}),
    ("line1 line2", {"escaped"}),
    ("nline2", set()),
    ("new", {"escaped"}),
    ("script alert", {"escaped"}),
    ("amp", {"escaped"}),
    ("timed out", {"failed"}),
    ("timeouterror", {"failed"}),
    ("childword", set()),  # nested: hidden by default
    ("dryword", set()),  # dry run: hidden by default
    ("nothingmatchesthis", set()),
]


@pytest.fixture
def corpus(db):
    for minutes, (name, fields) in enumerate(CORPUS.items()):
        record_run(name, minutes=minutes, **fields)


def search_ids(q: str, **params) -> set[str]:
    data = QueryDict(mutable=True)
    data.update({"q": q, **params})
    filterset = RunFilterSet(data, queryset=SkillRun.objects.all())
    assert filterset.is_valid(), filterset.error_messages
    return set(filterset.qs.values_list("id", flat=True))


@pytest.mark.django_db
def test_the_corpus_gives_the_expected_ids(corpus):
    found = {q: search_ids(q) for q, _ in EXPECTED}
    assert found == dict(EXPECTED), connection.vendor


@pytest.mark.django_db
def test_probing_each_run_gives_the_same_ids(corpus, monkeypatch):
    """Every clause tested run by run (the plan of a common word: the list walked newest
    first), where PostgreSQL first tests the text's containment of the parts: the same
    ids as the table, so that cheap test never drops a match (case, accents, JSON
    escapes, identifiers, phrases)."""
    monkeypatch.setattr(managers, "SEARCH_SET_LIMIT", -1)
    found = {q: search_ids(q) for q, _ in EXPECTED}
    assert found == dict(EXPECTED), connection.vendor


def test_the_containment_pattern_holds_the_parts_in_order():
    def pattern(q):
        return [c.containment_pattern for c in search.parse(q).clauses]

    assert pattern('"Token Expired" ORD-2231-X café') == [
        "%token%expired%",
        "%ord%2231%x%",
        "%café%",
    ]
    # Spaceless substrings have their own index test; marks and other scripts' digits
    # may be split by PostgreSQL's parser, so those clauses are not pre-tested.
    assert pattern("東京都庁 नमस्ते ١٢٣") == [None, None, None]


@pytest.mark.django_db
def test_nested_and_dry_runs_are_found_when_asked_for(corpus):
    assert search_ids("childword", include_nested="1") == {"child"}
    assert search_ids("dryword", include_dry_run="1") == {"dry"}
    assert search_ids("dryword", status="dry_run") == {"dry"}


# --- the index follows every writer ----------------------------------------------------


@pytest.mark.django_db
def test_rows_written_by_plain_sql_are_found_at_once(db):
    """The Go executor writes with plain SQL: no Django code runs for its rows."""
    record_run("go-run", output="")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO skill_run_logs (run_id, sequence, event_type, payload, created_at) "
            "VALUES (%s, 1, 'step', %s, %s)",
            ["go-run", '{"text": "written by gopherword"}', BASE],
        )
        cursor.execute("UPDATE skill_runs SET output = %s WHERE id = %s", ["finalword", "go-run"])
    assert search_ids("gopherword") == {"go-run"}
    assert search_ids("finalword") == {"go-run"}
    with connection.cursor() as cursor:
        cursor.execute("UPDATE skill_runs SET output = %s WHERE id = %s", ["other", "go-run"])
        cursor.execute(
            "UPDATE skill_run_logs SET payload = %s WHERE run_id = %s", ['{"a": "b"}', "go-run"]
        )
    assert search_ids("finalword") == set()
    assert search_ids("gopherword") == set()


@pytest.mark.django_db
def test_a_purged_run_is_not_found(db):
    record_run("old", minutes=0, output="purgeword", events=[("step", {"t": "eventword"})])
    record_run("admin-deleted", minutes=5, events=[("step", {"t": "eventword"})])
    record_run("new", minutes=60, output="keepword")
    assert search_ids("purgeword") == {"old"}
    assert search_ids("eventword") == {"old", "admin-deleted"}
    purge_started_before(BASE + timedelta(minutes=1))
    SkillRun.objects.delete_with_logs(["admin-deleted"])
    assert search_ids("purgeword") == set()
    assert search_ids("eventword") == set()
    assert search_ids("keepword") == {"new"}
    if connection.vendor == "sqlite":
        # no stale entry left behind in the FTS tables
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM skill_run_search_keys")
            assert cursor.fetchone()[0] == 1
            cursor.execute(
                "SELECT count(*) FROM skill_run_search_logs WHERE skill_run_search_logs "
                "MATCH '\"eventword\"'"
            )
            assert cursor.fetchone()[0] == 0


@pytest.mark.django_db
def test_rebuild_search_index_restores_the_index(corpus):
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:  # as after a restore with triggers off
            cursor.execute(
                "INSERT INTO skill_run_search_logs (skill_run_search_logs) VALUES ('delete-all')"
            )
        assert search_ids("привет") == set()
    call_command("rebuild_search_index", verbosity=0)
    assert search_ids("привет") == {"cyrillic"}
    assert search_ids("café") == {"latin"}


# --- search with every filter ----------------------------------------------------------


@pytest.fixture
def filtered_runs(db):
    shapes = [
        ("f-a", dict(skill="alpha", caller="ann", channel="ops")),
        ("f-b", dict(skill="beta", caller="bob", channel="ops", status="error")),
        ("f-c", dict(skill="alpha", caller="bob", channel="web", status="timeout")),
        ("f-d", dict(skill="beta", caller="ann", channel="web", parent="f-a")),
        ("f-e", dict(skill="alpha", caller="ann", channel="web", status="dry_run")),
        ("f-f", dict(skill="alpha", caller="ann", channel="ops", status="running")),
        ("f-g", dict(skill="beta", caller="ann", channel="ops", inputs={"t": "no common word"})),
    ]
    for minutes, (name, fields) in enumerate(shapes):
        fields.setdefault("inputs", {"t": "sharedword here"})
        record_run(name, minutes=minutes * 10, **fields)


FILTERS = [
    {"skill": "alpha"},
    {"caller": "bob"},
    {"channel": "web"},
    {"status": "error"},
    {"status": "stale"},
    {"status": "dry_run"},
    {"since": (BASE + timedelta(minutes=15)).isoformat()},
    {"until": (BASE + timedelta(minutes=25)).isoformat()},
    {"include_nested": "1"},
    {"include_dry_run": "1"},
    {"skill": "beta", "include_nested": "1", "channel": "web"},
]


@pytest.mark.django_db
@pytest.mark.parametrize("params", FILTERS, ids=lambda p: "&".join(p))
def test_search_combines_with_each_filter(filtered_runs, params):
    everything = search_ids("sharedword", include_nested="1", include_dry_run="1")
    assert "f-g" not in everything and len(everything) == 6
    data = QueryDict(mutable=True)
    data.update(params)
    filterset = RunFilterSet(data, queryset=SkillRun.objects.all())
    assert filterset.is_valid()
    filtered = set(filterset.qs.values_list("id", flat=True))
    expected = filtered & everything
    assert expected, "each filter keeps some matches"
    assert expected != everything or params == {"include_nested": "1", "include_dry_run": "1"}
    assert search_ids("sharedword", **params) == expected


# --- the pages --------------------------------------------------------------------------


@pytest.fixture
def viewer(client, django_user_model):
    client.force_login(make_viewer(django_user_model))
    return client


@pytest.fixture
def reader(django_user_model):
    from django.contrib.auth.models import Permission
    from rest_framework.test import APIClient

    from runs.access.models import ApiToken as Token

    user = django_user_model.objects.create_user("reader", password="pw-123456")
    user.user_permissions.set(Permission.objects.filter(codename="view_skillrun"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def list_ids(response) -> list[str]:
    body = response.content.decode().split("<tbody>", 1)[-1].split("</tbody>", 1)[0]
    return re.findall(r'<td class="time"><a href="/runs/([^"#]+)/(?:#[^"]*)?">', body)


@pytest.mark.django_db
def test_list_page_shows_matches_with_marked_snippets(viewer, corpus):
    response = viewer.get(reverse("runs:run_list"), {"q": "ORD-2231-X"})
    assert response.status_code == 200
    assert list_ids(response) == ["ident"]
    html = response.content.decode()
    assert '<span class="where">event #1</span>' in html
    assert "<mark>ORD</mark>-<mark>2231</mark>-<mark>X</mark>" in html
    # the run page link carries the words for the highlight script
    assert 'href="/runs/ident/#q=ORD-2231-X"' in html
    assert 'name="q" value="ORD-2231-X"' in html


@pytest.mark.django_db
def test_the_highlight_never_unescapes_stored_text(viewer, db):
    record_run(
        "hostile",
        output='<b onmouseover="x()">bold</b> &lt;mark&gt; hostileword <script>alert(1)</script>',
    )
    for q in ("hostileword", "mark", "lt", "script", "b"):
        html = viewer.get(reverse("runs:run_list"), {"q": q}).content.decode()
        snippet = html.split('<span class="snippet">', 1)[1].split("</td>", 1)[0]
        assert "<b " not in snippet and "<script>" not in snippet, q
        assert "&lt;mark&gt;" not in snippet.replace("&amp;lt;mark&amp;gt;", ""), q
        # the only tags in a snippet are ours
        assert set(re.findall(r"</?([a-z]+)", snippet)) <= {"span", "mark"}, q
    html = viewer.get(reverse("runs:run_list"), {"q": "mark"}).content.decode()
    assert "&amp;lt;<mark>mark</mark>&amp;gt;" in html
    html = viewer.get(reverse("runs:run_list"), {"q": "script"}).content.decode()
    assert "&lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt;" in html


@pytest.mark.django_db
def test_search_pages_newest_first_with_keyset_cursors(viewer, db):
    for i in range(PAGE_SIZE + 7):
        record_run(f"p-{i:03d}", minutes=i, output=f"pageword {i}")
    record_run("other", minutes=500, output="unrelated")
    first = viewer.get(reverse("runs:run_list"), {"q": "pageword"})
    ids = list_ids(first)
    assert ids == [f"p-{i:03d}" for i in range(PAGE_SIZE + 6, 6, -1)]
    assert f"more than {PAGE_SIZE} runs" in first.content.decode()  # never counted further
    older = re.search(r'<a rel="next" href="\?([^"]+)"', first.content.decode()).group(1)
    second = viewer.get(reverse("runs:run_list") + "?" + older.replace("&amp;", "&"))
    assert list_ids(second) == [f"p-{i:03d}" for i in range(6, -1, -1)]
    newer = re.search(r'<a rel="prev" href="\?([^"]+)"', second.content.decode()).group(1)
    back = viewer.get(reverse("runs:run_list") + "?" + newer.replace("&amp;", "&"))
    assert list_ids(back) == ids


@pytest.mark.django_db
def test_api_list_searches_with_the_same_filter(reader, corpus):
    response = reader.get("/api/runs/", {"q": "привет"})
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == ["cyrillic"]
    response = reader.get("/api/runs/", {"q": "café", "skill": "summarise"})
    assert [row["id"] for row in response.json()["results"]] == ["latin"]
    response = reader.get("/api/runs/", {"q": "?!"})
    assert response.status_code == 400
    assert "q" in response.json()


HOSTILE = [
    "AND OR NOT",
    "NEAR(a b, 3)",
    '"',
    '"""',
    '" OR "1"="1',
    "a* ^b col:c {d e}:f",
    "'; DROP TABLE skill_runs; --",
    "\x00",
    "a\x00b",
    "x" * 10_000,
    "word " * 2_000,
    "!!!",
    "- -- ---",
    "\\",
    "%_%",
    "🙂",
    "東" * 50,
    "<script>alert(1)</script>",
    "-café",
]


@pytest.mark.django_db
@pytest.mark.parametrize("q", HOSTILE, ids=lambda q: repr(q[:20]))
def test_hostile_queries_give_a_page_or_a_400_naming_q(viewer, reader, corpus, q):
    page = viewer.get(reverse("runs:run_list"), {"q": q})
    assert page.status_code in (200, 400), q
    if page.status_code == 400:
        assert re.search(r"\bq\b", page.content.decode())
    api = reader.get("/api/runs/", {"q": q})
    assert api.status_code == page.status_code
    if api.status_code == 400:
        assert set(api.json()) == {"q"}


@pytest.mark.django_db
def test_a_blank_q_is_no_search(viewer, reader, corpus):
    everything = list_ids(viewer.get(reverse("runs:run_list")))
    assert list_ids(viewer.get(reverse("runs:run_list"), {"q": "  "})) == everything
    assert len(reader.get("/api/runs/", {"q": ""}).json()["results"]) == len(everything)


@pytest.mark.django_db
def test_search_needs_the_permission(client, django_user_model, corpus):
    client.force_login(make_viewer(django_user_model, "noperm", permission=False))
    assert client.get(reverse("runs:run_list"), {"q": "café"}).status_code == 403
    client.logout()
    assert client.get(reverse("runs:run_list"), {"q": "café"}).status_code == 302


@pytest.mark.django_db
def test_run_page_loads_the_highlight_script(viewer, corpus):
    html = viewer.get(reverse("runs:run_detail", args=["latin"])).content.decode()
    assert "/static/runs/search.js" in html
