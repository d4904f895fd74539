"""GET /api/stats/: the issue's shape, numbers equal to counting the runs in Python (from the
buckets and from the exact path), cost priced at read time, strict parameters, and nothing
for anonymous or permissionless callers."""

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from runs import contract, selectors
from runs.filters import STATS_MAX_BUCKETS, StatsParameters
from runs.models import ModelPrice, SkillRun, SkillRunLog, SkillRunStat
from tests.test_api import make_user, token_client

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 5, 4, tzinfo=UTC)
STATUSES = ["ok", "ok", "ok", "error", "timeout", "running"]


@pytest.fixture
def reader(django_user_model):
    return token_client(make_user(django_user_model, "stats-reader", ["view_skillrun"]))


@pytest.fixture
def runs(db):
    """Three days of runs of two skills, callers, nested runs; steps with and without a
    model; one model priced."""
    rows, logs = [], []
    for i in range(90):
        started = DAY + timedelta(minutes=47 * i)
        run = SkillRun(
            id=f"run-{i:03}",
            skill_id=f"skill-{i % 2}",
            caller_id="alice" if i % 3 else "bob",
            started_at=started,
            status=STATUSES[i % len(STATUSES)],
            runtime_seconds=0.5 + (i * 7 % 23),
            total_input_tokens=100 + i,
            total_output_tokens=10 + i,
            total_thinking_tokens=i % 4,
            parent_run_id="run-000" if i % 10 == 5 else "",
        )
        rows.append(run)
        for seq, model in enumerate(("gpt-4o", "" if i % 4 == 0 else "gpt-4o"), start=1):
            logs.append(
                SkillRunLog(
                    run_id=run.id,
                    sequence=seq,
                    event_type="step",
                    payload={"model": model, "usage": {"input_tokens": 1000, "output_tokens": 500}}
                    if model
                    else {"usage": {"input_tokens": 7}},
                    created_at=started,
                )
            )
    SkillRun.objects.bulk_create(rows)
    SkillRunLog.objects.bulk_create(logs)
    ModelPrice.objects.create(
        model="gpt-4o",
        input_per_million=Decimal("2.50"),
        output_per_million=Decimal("10"),
        valid_from=DAY - timedelta(days=30),
    )
    return rows


def get(client, **params):
    return client.get("/api/stats/", params)


def expected_series(rows, since, until, bucket, keep=lambda r: r.parent_run_id == ""):
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    points = {}
    moment = since
    while moment < until:
        points[moment] = {"runs": Counter(), "runtimes": [], "tokens": [0, 0, 0], "usage": []}
        moment += step
    for r in rows:
        if not (since <= r.started_at < until) or not keep(r):
            continue
        start = r.started_at.replace(minute=0, second=0, microsecond=0)
        if bucket == "day":
            start = start.replace(hour=0)
        p = points[start]
        p["runs"][r.status] += 1
        if r.status != "running":
            p["runtimes"].append(r.runtime_seconds)
        for n, t in enumerate(("input", "output", "thinking")):
            p["tokens"][n] += getattr(r, f"total_{t}_tokens")
    return points


def nearest_rank(values, percent):
    """The exact nearest-rank percentile: the value at rank ceil(percent * n / 100)."""
    ordered = sorted(values)
    return ordered[max(1, -(-percent * len(ordered) // 100)) - 1] if ordered else None


def assert_series_match(body, rows, since, until, bucket, keep=lambda r: r.parent_run_id == ""):
    expected = expected_series(rows, since, until, bucket, keep)
    assert [p["start"] for p in body["series"]] == [
        s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in expected
    ]
    for point, want in zip(body["series"], expected.values(), strict=True):
        assert point["runs"] == dict(want["runs"])
        assert [point["input_tokens"], point["output_tokens"], point["thinking_tokens"]] == want[
            "tokens"
        ]
        for key, percent in (("runtime_p50", 50), ("runtime_p95", 95)):
            exact = nearest_rank(want["runtimes"], percent)
            if exact is None:
                assert point[key] is None
            else:
                assert abs(point[key] - exact) / exact <= 0.049


def test_the_series_has_the_issues_shape_and_the_runs_numbers(reader, runs):
    response = get(reader, since="2026-05-04", until="2026-05-06", bucket="day")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"bucket", "since", "until", "series"}
    assert body["bucket"] == "day" and len(body["series"]) == 3
    point = body["series"][0]
    assert set(point) == {
        "start",
        "runs",
        "runtime_p50",
        "runtime_p95",
        "input_tokens",
        "output_tokens",
        "thinking_tokens",
        "cost",
    }
    assert_series_match(body, runs, DAY, DAY + timedelta(days=3), "day")


def test_hours_nested_runs_and_a_skill(reader, runs):
    body = get(
        reader, since="2026-05-04T10:30:00Z", until="2026-05-05T02:00:00Z", include_nested="1"
    ).json()
    assert body["bucket"] == "hour"
    since, until = DAY + timedelta(hours=10), DAY + timedelta(hours=26)
    assert_series_match(body, runs, since, until, "hour", keep=lambda r: True)
    body = get(reader, since="2026-05-04", until="2026-05-06", skill="skill-1").json()
    assert_series_match(
        body,
        runs,
        DAY,
        DAY + timedelta(days=3),
        "day",
        keep=lambda r: r.parent_run_id == "" and r.skill_id == "skill-1",
    )


@pytest.mark.parametrize(
    "params,keep",
    [
        ({"caller": "bob"}, lambda r: r.caller_id == "bob"),
        ({"status": "failed"}, lambda r: r.status in contract.FAILED_STATUSES),
        (
            {"status": "ok", "caller": "alice"},
            lambda r: r.status == "ok" and r.caller_id == "alice",
        ),
    ],
)
def test_filters_the_buckets_do_not_key_use_the_exact_path(reader, runs, params, keep):
    body = get(reader, since="2026-05-04", until="2026-05-06", bucket="day", **params).json()
    assert_series_match(
        body,
        runs,
        DAY,
        DAY + timedelta(days=3),
        "day",
        keep=lambda r: r.parent_run_id == "" and keep(r),
    )


def test_cost_is_priced_at_read_time_and_unpriced_runs_are_counted(reader, runs):
    body = get(reader, since="2026-05-04", until="2026-05-05", bucket="day").json()
    point = body["series"][0]
    day_runs = [r for r in runs if r.started_at < DAY + timedelta(days=1) and not r.parent_run_id]
    priced_steps = sum(1 if int(r.id[4:]) % 4 == 0 else 2 for r in day_runs)
    # 1000 input at 2.50/M and 500 output at 10/M per priced step
    want = Decimal(priced_steps) * (Decimal("0.0025") + Decimal("0.005"))
    assert Decimal(point["cost"]["amount"]) == want
    assert point["cost"]["currency"] == "USD"
    assert point["cost"]["unpriced_runs"] == sum(1 for r in day_runs if int(r.id[4:]) % 4 == 0)
    # a price edit applies at once
    ModelPrice.objects.update(input_per_million=Decimal("5"))
    again = get(reader, since="2026-05-04", until="2026-05-05", bucket="day").json()
    assert Decimal(again["series"][0]["cost"]["amount"]) > want


@pytest.mark.parametrize(
    "query,parameter",
    [
        ("nonsense=1", "nonsense"),
        ("skill=a&skill=b", "skill"),
        ("window=1y", "window"),
        ("window=7d&since=2026-01-01", "window"),
        ("bucket=minute", "bucket"),
        ("since=2020-01-01&until=2026-01-01&bucket=hour", "bucket"),
        ("since=2026-01-02&until=2026-01-01", "until"),
        ("since=yesterday", "since"),
        ("status=stale", "status"),
        ("status=happy", "status"),
        ("include_nested=perhaps", "include_nested"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(reader, query, parameter):
    response = reader.get("/api/stats/?" + query)
    assert response.status_code == 400
    assert parameter in response.json()


def test_the_bucket_limit(reader):
    ok = get(
        reader,
        since="2026-01-01T00:00:00Z",
        bucket="hour",
        until=(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=STATS_MAX_BUCKETS)).isoformat(),
    )
    assert ok.status_code == 200 and len(ok.json()["series"]) == STATS_MAX_BUCKETS
    over = get(
        reader,
        since="2026-01-01T00:00:00Z",
        bucket="hour",
        until=(
            datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=STATS_MAX_BUCKETS + 1)
        ).isoformat(),
    )
    assert over.status_code == 400 and "bucket" in over.json()


def test_windows_default_to_the_last_seven_days_by_day(reader):
    body = get(reader).json()
    assert body["bucket"] == "day" and len(body["series"]) in (7, 8)
    assert get(reader, window="24h").json()["bucket"] == "hour"


def test_anonymous_and_permissionless_callers_get_nothing(runs, django_user_model):
    anonymous = APIClient().get("/api/stats/")
    assert anonymous.status_code == 401 and "series" not in anonymous.json()
    nobody = token_client(make_user(django_user_model, "stats-nobody", []))
    refused = nobody.get("/api/stats/?since=2026-05-04&until=2026-05-06")
    assert refused.status_code == 403 and "series" not in refused.json()


def test_the_schema_documents_the_endpoint(reader):
    schema = reader.get("/api/schema/").json()
    operation = schema["paths"]["/api/stats/"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"window", "since", "until", "bucket", "skill", "caller", "status"} <= names
    assert "Stats" in schema["components"]["schemas"]


def test_usage_by_run_for_the_cost_column(runs):
    usage = selectors.usage_by_run(["run-000", "run-001", "missing"])
    assert set(usage) == {"run-000", "run-001"}
    assert usage["run-000"] == (
        selectors.ModelUsage("", 1, 1, 7, 0, 0, 0),
        selectors.ModelUsage("gpt-4o", 1, 1, 1000, 500, 0, 0),
    )
    assert usage["run-001"] == (selectors.ModelUsage("gpt-4o", 1, 2, 2000, 1000, 0, 0),)


@pytest.mark.parametrize("params", [{}, {"caller": "alice"}, {"hours": True}])
def test_per_skill_numbers_over_the_window_match_the_runs(runs, params):
    since, until, bucket = DAY, DAY + timedelta(days=3), "day"
    if params.get("hours"):
        # ragged ends: hour rows there, day rows for the whole day between (_skill_window)
        since, until, bucket = DAY + timedelta(hours=10), DAY + timedelta(days=2, hours=5), "hour"
    parsed = selectors.StatsQuery(
        since=since, until=until, bucket=bucket, caller_id=params.get("caller", "")
    )
    series = selectors.stats_series(parsed)
    keep = [
        r
        for r in runs
        if not r.parent_run_id
        and r.caller_id == params.get("caller", r.caller_id)
        and since <= r.started_at < until
    ]
    by_skill = {s.skill_id: s for s in series.skills}
    assert set(by_skill) == {r.skill_id for r in keep}
    for skill_id, got in by_skill.items():
        mine = [r for r in keep if r.skill_id == skill_id]
        assert got.runs == dict(Counter(r.status for r in mine))
        assert got.input_tokens == sum(r.total_input_tokens for r in mine)
        finished = [r.runtime_seconds for r in mine if r.status != "running"]
        exact = nearest_rank(finished, 95)
        assert abs(got.runtime_p95 - exact) / exact <= 0.049
        assert sum(u.steps for u in got.usage) == 2 * len(mine)  # two steps per run
    assert series.totals.total_runs == len(keep)


@pytest.mark.parametrize("caller", ["", "alice"])
def test_per_skill_cost_with_a_price_change_inside_the_window_equals_pricing_each_bucket(
    runs, caller
):
    from runs import costs

    ModelPrice.objects.create(
        model="gpt-4o",
        input_per_million=Decimal("7"),
        output_per_million=Decimal("30"),
        valid_from=DAY + timedelta(days=1, hours=5, minutes=30),
    )
    table = ModelPrice.objects.price_table()
    for bucket in ("day", "hour"):
        query = selectors.StatsQuery(
            since=DAY, until=DAY + timedelta(days=3), bucket=bucket, caller_id=caller
        )
        series = selectors.stats_series(query)
        for skill in series.skills:
            segmented = sum(
                (table.cost_at(rows, start) for start, rows in skill.usage_by_bucket),
                costs.Cost(),
            )
            per_bucket = costs.Cost()
            for point in selectors.stats_series(
                selectors.StatsQuery(**{**query.__dict__, "skill_id": skill.skill_id})
            ).points:
                per_bucket = per_bucket + table.cost_at(point.usage, point.start)
            assert segmented.amounts == per_bucket.amounts
            assert len(skill.usage_by_bucket) == 2


@pytest.mark.parametrize(
    "params", [{}, {"caller": "alice"}, {"include_nested": "1"}, {"skill": "skill-1"}]
)
def test_a_skill_limit_keeps_the_first_skills_numbers_and_counts_the_others(runs, params):
    """/stats/ reads the runtimes and usage of its first skills only (issue 18): their
    numbers, the series and the totals are those of the unlimited read."""
    parsed = StatsParameters(
        QueryDict(urlencode({"since": "2026-05-04", "until": "2026-05-06", **params}))
    )
    assert parsed.is_valid(), parsed.error_messages
    query = parsed.query()
    full = selectors.stats_series(query)
    for limit in (0, 1, 2, 50):
        limited = selectors.stats_series(query, skill_limit=limit)
        assert limited.skills == full.skills[:limit]
        assert limited.more_skills == max(0, len(full.skills) - limit)
        assert (limited.points, limited.totals) == (full.points, full.totals)
    none = selectors.stats_series(query, per_skill=False)
    assert (none.skills, none.more_skills) == ([], 0)
    assert (none.points, none.totals) == (full.points, full.totals)


@pytest.fixture
def long_history(db):
    """45 days of runs of three skills (one every ~5 h), nested ones, each with a step of
    a priced model and one naming none; a price change inside."""
    rows, logs = [], []
    start = datetime(2026, 3, 29, 3, tzinfo=UTC)
    for i in range(220):
        started = start + timedelta(minutes=293 * i)
        run = SkillRun(
            id=f"long-{i:03}",
            skill_id=f"skill-{i % 3}",
            started_at=started,
            status=STATUSES[i % len(STATUSES)],
            runtime_seconds=0.2 + (i * 13 % 31),
            total_input_tokens=10 * i,
            total_output_tokens=i,
            total_thinking_tokens=i % 5,
            parent_run_id="long-000" if i % 9 == 4 else "",
        )
        rows.append(run)
        for seq, payload in enumerate(
            (
                {"model": "gpt-4o", "usage": {"input_tokens": 100 + i, "output_tokens": 7}},
                {"usage": {"input_tokens": 3}},
            ),
            start=1,
        ):
            logs.append(
                SkillRunLog(
                    run_id=run.id,
                    sequence=seq,
                    event_type="step",
                    payload=payload,
                    created_at=started,
                )
            )
    SkillRun.objects.bulk_create(rows)
    SkillRunLog.objects.bulk_create(logs)
    for valid_from, price in (
        (start - timedelta(days=9), "2.50"),
        (start + timedelta(days=20, hours=7), "9"),
    ):
        ModelPrice.objects.create(
            model="gpt-4o",
            input_per_million=Decimal(price),
            output_per_million=Decimal("10"),
            valid_from=valid_from,
        )
    return rows


@pytest.mark.parametrize(
    "since, until, bucket",
    [
        # 37 days from a day that starts no block (the d16 and d4 blocks inside)
        (datetime(2026, 3, 30, tzinfo=UTC), datetime(2026, 5, 6, tzinfo=UTC), "day"),
        (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), "day"),
        # ragged hours at both ends, 11 whole days between (a price change on one)
        (
            datetime(2026, 4, 12, 10, tzinfo=UTC),
            datetime(2026, 4, 24, 5, tzinfo=UTC),
            "hour",
        ),
    ],
)
@pytest.mark.parametrize("top_level_only", [True, False])
def test_per_skill_numbers_from_day_blocks_equal_counting_the_runs(
    long_history, since, until, bucket, top_level_only
):
    """Per skill, a window's whole days are read as aligned 16- and 4-day blocks
    (migration 0018): the skills' runs, tokens, percentiles, usage and usage per price
    segment equal the exact path's, which counts the runs themselves (every status
    asked for), with and without the page's skill limit."""
    query = selectors.StatsQuery(
        since=since, until=until, bucket=bucket, top_level_only=top_level_only
    )
    exact = selectors.stats_series(
        selectors.StatsQuery(**{**query.__dict__, "statuses": tuple(contract.KNOWN_STATUSES)})
    )
    assert exact.skills
    for limit in (None, 2):
        buckets = selectors.stats_series(query, skill_limit=limit)
        assert buckets.skills == exact.skills[:limit]
        assert buckets.more_skills == (0 if limit is None else len(exact.skills) - limit)
    segments = selectors.price_segments(query)
    if bucket == "hour":
        assert segments  # a price starts inside: that day is read as hours
    where, params = SkillRunStat.objects._skill_window(bucket, since, until, segments, True)
    assert "d16" in params or "d4" in params


def test_day_blocks_cover_the_days_once_with_aligned_blocks():
    """_day_blocks: the fewest aligned blocks (16, 4, 1 days) covering [since, until)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = datetime(2026, 3, 1, tzinfo=UTC)
    sizes = {"d16": 16, "d4": 4, "day": 1}
    for offset in range(0, 40, 3):
        for length in (1, 3, 7, 30, 31, 90):
            since = first + timedelta(days=offset)
            until = since + timedelta(days=length)
            ranges = SkillRunStat.objects._day_blocks(since, until)
            days = []
            for span, a, b in ranges:
                n = sizes[span]
                assert (a - epoch).days % n == 0 and (b - a).days % n == 0
                days += [a + timedelta(days=d) for d in range((b - a).days)]
            assert days == [since + timedelta(days=d) for d in range(length)]
            if length == 30:
                blocks = sum((b - a).days // sizes[span] for span, a, b in ranges)
                assert blocks <= 12


def test_the_databases_ranking_breaks_ties_as_pythons_sort_of_the_names(db):
    """The database ranks the skills for skill_limit (SkillRunStatManager._ranked_skill_runs):
    skills with as many runs go by their names' code points, as the unlimited read's Python
    sort does, whatever the database's collation ("B" before "a", "a-b" before "a_b" before
    "ab", "z" before "é")."""
    names = ["é", "ab", "a_b", "B", "a-b", "z", "Zz", "b"]
    rows = [
        SkillRun(
            id=f"tie-{i}-{k}",
            skill_id=name,
            started_at=DAY + timedelta(hours=i, minutes=k),
            status=("ok", "error")[k % 2],
            runtime_seconds=1.0 + i,
        )
        for i, name in enumerate(names)
        for k in range(2 if name != "b" else 3)
    ]
    SkillRun.objects.bulk_create(rows)
    query = selectors.StatsQuery(since=DAY, until=DAY + timedelta(days=1), bucket="day")
    full = selectors.stats_series(query)
    assert [s.skill_id for s in full.skills] == ["b", *sorted(n for n in names if n != "b")]
    for limit in (0, 1, 3, 8, 9):
        limited = selectors.stats_series(query, skill_limit=limit)
        assert limited.skills == full.skills[:limit]
        assert limited.more_skills == max(0, len(names) - limit)


def test_the_api_reads_no_per_skill_bucket(reader, runs):
    """The answer has no per-skill numbers: it reads the all-skills buckets only."""
    with CaptureQueriesContext(connection) as captured:
        response = get(reader, since="2026-05-04", until="2026-05-06", bucket="day")
    assert response.status_code == 200
    sql = " ".join(q["sql"] for q in captured.captured_queries)
    assert "all_skills_runtimes" in sql
    for table in ("skill_run_stats", "skill_run_runtimes", "skill_model_usage_stats"):
        assert not re.search(rf"\b{table}\b", sql), table
