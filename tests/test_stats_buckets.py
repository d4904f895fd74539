"""The stats buckets (migration 0012): exact after every kind of write, rebuilt equal to the
triggers' result, and percentiles read from the runtime histogram within 5% of the exact
value. Expected numbers are recounted in Python from the rows as they are."""

import io
import random
import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from runs import contract, selectors
from runs.managers import STATS_BLOCK_DAYS, USAGE_TOKENS
from runs.models import (
    AllSkillsModelUsage,
    AllSkillsRunStat,
    AllSkillsRuntime,
    ModelUsageStat,
    RunModelUsage,
    SkillRun,
    SkillRunLog,
    SkillRunRuntime,
    SkillRunStat,
)
from runs.recorder import Sink
from runs.services import purge
from runs.storage import DjangoStorage

T0 = datetime(2026, 3, 10, 13, 47, 12, 500_000, tzinfo=UTC)


def nearest_rank(percent: int, n: int) -> int:
    """The 1-based rank of the nearest-rank percentile: ceil(percent * n / 100)."""
    return max(1, -(-percent * n // 100))


# the per-skill spans: hours, days and the day blocks (migration 0018)
SKILL_SPANS = ("hour", "day", *(f"d{n}" for n in STATS_BLOCK_DAYS))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def period(started_at: datetime, span: str) -> datetime:
    at = started_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if span == "hour":
        return at
    day = at.replace(hour=0)
    if span == "day":
        return day
    # an n-day block: aligned on 1970-01-01
    return day - timedelta(days=(day - EPOCH).days % int(span[1:]))


def step_usage(payload) -> tuple[str, dict[str, int]]:
    """A step payload's model and token counts, by the rules of StatsSql's docstring."""
    if not isinstance(payload, dict):
        return "", dict.fromkeys(USAGE_TOKENS, 0)
    model = payload.get("model")
    model = model[:255] if isinstance(model, str) else ""
    source = payload["usage"] if isinstance(payload.get("usage"), dict) else payload
    tokens = {}
    for key in USAGE_TOKENS:
        value = source.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        tokens[key] = int(value) if ok and 0 <= value <= 10**15 else 0
    return model, tokens


def expected() -> dict[str, dict]:
    runs = {r.id: r for r in SkillRun.objects.all()}
    stats, runtimes, per_run, usage = Counter(), Counter(), defaultdict(Counter), Counter()
    for r in runs.values():
        for span in SKILL_SPANS:
            key = (span, period(r.started_at, span), r.skill_id, r.parent_run_id == "")
            stats[(*key, r.status, "runs")] += 1
            for t in ("input_tokens", "output_tokens", "thinking_tokens"):
                stats[(*key, r.status, t)] += getattr(r, f"total_{t}")
            if r.status != contract.STATUS_RUNNING:
                runtimes[(*key, selectors.runtime_bin_of(r.runtime_seconds))] += 1
    for run_id, payload in SkillRunLog.objects.filter(event_type="step").values_list(
        "run_id", "payload"
    ):
        if run_id not in runs:
            continue
        model, tokens = step_usage(payload)
        per_run[(run_id, model)]["steps"] += 1
        per_run[(run_id, model)].update(tokens)
    for (run_id, model), sums in per_run.items():
        r = runs[run_id]
        for span in SKILL_SPANS:
            key = (span, period(r.started_at, span), r.skill_id, r.parent_run_id == "", model)
            usage[(*key, "runs")] += 1
            for name in ("steps", *USAGE_TOKENS):
                usage[(*key, name)] += sums[name]
    return {
        "stats": {k: v for k, v in stats.items() if v},
        "runtimes": dict(runtimes),
        **all_skills(stats, runtimes, usage),
        "per_run": {
            k: {n: v[n] for n in ("steps", *USAGE_TOKENS) if v[n]} for k, v in per_run.items()
        },
        "usage": {k: v for k, v in usage.items() if v},
    }


def all_skills(stats, runtimes, usage) -> dict[str, dict]:
    """The per-skill numbers summed over the skills (the all-skills tables, 0016)."""
    summed = {"all_stats": Counter(), "all_runtimes": Counter(), "all_usage": Counter()}
    for name, counted in (("all_stats", stats), ("all_runtimes", runtimes), ("all_usage", usage)):
        for (span, start, _skill, *rest), v in counted.items():
            if span in ("hour", "day"):  # no day blocks in the all-skills tables
                summed[name][(span, start, *rest)] += v
    return {name: {k: v for k, v in c.items() if v} for name, c in summed.items()}


def stored() -> dict[str, dict]:
    stats, usage = {}, {}
    for s in SkillRunStat.objects.all():
        key = (s.span, s.period_start, s.skill_id, s.top_level, s.status)
        for name in ("runs", "input_tokens", "output_tokens", "thinking_tokens"):
            if getattr(s, name):
                stats[(*key, name)] = getattr(s, name)
    for u in ModelUsageStat.objects.all():
        key = (u.span, u.period_start, u.skill_id, u.top_level, u.model)
        for name in ("runs", "steps", *USAGE_TOKENS):
            if getattr(u, name):
                usage[(*key, name)] = getattr(u, name)
    return {
        "stats": stats,
        "runtimes": {
            (r.span, r.period_start, r.skill_id, r.top_level, r.bin): r.runs
            for r in SkillRunRuntime.objects.all()
        },
        "per_run": {
            (u.run_id, u.model): {
                n: getattr(u, n) for n in ("steps", *USAGE_TOKENS) if getattr(u, n)
            }
            for u in RunModelUsage.objects.all()
        },
        "usage": usage,
        "all_stats": {
            (s.span, s.period_start, s.top_level, s.status, name): getattr(s, name)
            for s in AllSkillsRunStat.objects.all()
            for name in ("runs", "input_tokens", "output_tokens", "thinking_tokens")
            if getattr(s, name)
        },
        "all_runtimes": {
            (r.span, r.period_start, r.top_level, r.bin): r.runs
            for r in AllSkillsRuntime.objects.all()
        },
        "all_usage": {
            (u.span, u.period_start, u.top_level, u.model, name): getattr(u, name)
            for u in AllSkillsModelUsage.objects.all()
            for name in ("runs", "steps", *USAGE_TOKENS)
            if getattr(u, name)
        },
    }


def assert_exact():
    assert stored() == expected()
    # no row left at zero
    assert not SkillRunStat.objects.filter(runs__lte=0).exists()
    assert not SkillRunRuntime.objects.filter(runs__lte=0).exists()
    assert not RunModelUsage.objects.filter(steps__lte=0).exists()
    assert not ModelUsageStat.objects.filter(runs__lte=0).exists()
    assert not AllSkillsRunStat.objects.filter(runs__lte=0).exists()
    assert not AllSkillsRuntime.objects.filter(runs__lte=0).exists()
    assert not AllSkillsModelUsage.objects.filter(runs__lte=0).exists()


def record(storage, run_id, skill_id, steps, status=contract.STATUS_OK, parent=""):
    """A run written through the recorder: its steps name models and usage."""
    recorder = Sink(storage).start_run(skill_id=skill_id, run_id=run_id, parent_run_id=parent)
    for model, inp, out, cached in steps:
        recorder.step(model=model, input_tokens=inp, output_tokens=out, cached_input_tokens=cached)
    recorder.close(status=status)


@pytest.mark.django_db
def test_every_kind_of_write_keeps_the_buckets_exact():
    storage = DjangoStorage()
    record(storage, "rec-1", "skill-a", [("gpt-4o", 100, 20, 5), ("gpt-4o", 50, 10, 0)])
    record(storage, "rec-2", "skill-a", [("claude-x", 7, 3, 0), ("", 1, 1, 0)], parent="rec-1")
    record(storage, "rec-3", "skill-b", [], status=contract.STATUS_ERROR)
    assert_exact()
    assert stored()["per_run"][("rec-1", "gpt-4o")] == {
        "steps": 2,
        "input_tokens": 150,
        "output_tokens": 30,
        "cached_input_tokens": 5,
    }
    # Through the contract: start, events in a batch, finish.
    storage.start_run(contract.SkillRun(id="c-1", skill_id="skill-a", started_at=T0))
    storage.append_logs(
        [
            contract.SkillRunLog(
                run_id="c-1",
                sequence=i,
                event_type=contract.EVENT_STEP,
                payload={"model": "m", "usage": {"input_tokens": i, "output_tokens": "x"}},
                created_at=T0,
            )
            for i in range(1, 6)
        ]
    )
    storage.finish_run(
        "c-1",
        contract.RunStats(status=contract.STATUS_TIMEOUT, input_tokens=15, runtime_seconds=3.5),
    )
    assert_exact()
    # Bulk inserts over hours and days, finished with runtimes.
    SkillRun.objects.bulk_create(
        [
            SkillRun(
                id=f"bulk-{i}",
                skill_id=f"skill-{i % 3}",
                started_at=T0 - timedelta(minutes=37 * i),
                status=contract.STATUS_OK if i % 4 else contract.STATUS_RUNNING,
                runtime_seconds=(i % 7) * 1.7,
                total_input_tokens=i,
                parent_run_id="bulk-0" if i % 5 == 0 and i else "",
            )
            for i in range(60)
        ]
    )
    SkillRunLog.objects.bulk_create(
        [
            SkillRunLog(
                run_id=f"bulk-{i}",
                sequence=1,
                event_type="step",
                payload={"model": f"model-{i % 2}", "input_tokens": i, "thinking_tokens": 2},
                created_at=T0,
            )
            for i in range(0, 60, 3)
        ]
        + [
            SkillRunLog(
                run_id="bulk-1", sequence=2, event_type="step", payload=["odd"], created_at=T0
            ),
            SkillRunLog(
                run_id="bulk-1",
                sequence=3,
                event_type="tool_call",
                payload={"model": "no"},
                created_at=T0,
            ),
        ]
    )
    assert_exact()
    # Admin-like edits: skill, status, start (another day), nesting; an event's payload.
    SkillRun.objects.filter(pk="bulk-3").update(
        skill_id="moved", status=contract.STATUS_ERROR, started_at=T0 - timedelta(days=3)
    )
    SkillRun.objects.filter(pk="bulk-6").update(parent_run_id="bulk-0")
    SkillRun.objects.filter(pk="bulk-9").update(runtime_seconds=0.001, total_output_tokens=9)
    SkillRunLog.objects.filter(run_id="bulk-12").update(
        payload={"model": "model-9", "input_tokens": 1}
    )
    SkillRunLog.objects.filter(run_id="bulk-15").update(event_type="step_note")
    SkillRunLog.objects.filter(run_id="bulk-1", sequence=3).update(event_type="step")
    assert_exact()
    SkillRun.objects.filter(pk__startswith="bulk-1").close_running(contract.STATUS_ERROR, T0)
    SkillRun.objects.shift_times([f"bulk-{i}" for i in range(20, 40)], timedelta(hours=5))
    assert_exact()
    SkillRunLog.objects.filter(run_id="bulk-18").delete()
    SkillRun.objects.delete_with_logs(["bulk-21", "rec-2", "c-1"])
    assert_exact()
    purge.purge_started_before(T0 - timedelta(hours=10), batch_size=7)
    assert_exact()
    SkillRun.objects.filter(skill_id="skill-1").delete()
    assert_exact()


@pytest.mark.django_db
def test_a_writer_outside_django_is_counted_too():
    """The Go executor's plain SQL: INSERT the run, INSERT a step, UPDATE to finish."""
    started = connection.ops.adapt_datetimefield_value(T0)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO skill_runs (id, skill_id, caller_id, channel_id, inputs, started_at, "
            "status, output, error, tool_calls_count, runtime_seconds, parent_run_id, "
            "total_input_tokens, total_output_tokens, total_thinking_tokens) VALUES "
            "(%s, %s, '', '', '{}', %s, 'running', '', '', 0, 0, '', 0, 0, 0)",
            ["go-1", "go-skill", started],
        )
        cursor.execute(
            "INSERT INTO skill_run_logs (run_id, sequence, event_type, payload, created_at) "
            "VALUES (%s, 1, 'step', %s, %s)",
            [
                "go-1",
                '{"model": "gpt-4o", "usage": {"input_tokens": 12, "output_tokens": 3}}',
                started,
            ],
        )
        cursor.execute(
            "UPDATE skill_runs SET status = 'ok', runtime_seconds = 2.5, total_input_tokens = 12, "
            "total_output_tokens = 3 WHERE id = 'go-1'"
        )
    assert_exact()
    assert selectors.usage_by_run(["go-1", "nothing"]) == {
        "go-1": (selectors.ModelUsage("gpt-4o", 1, 1, 12, 3, 0, 0),)
    }


@pytest.mark.django_db
def test_rebuild_stats_equals_what_the_triggers_kept():
    storage = DjangoStorage()
    for i in range(12):
        record(storage, f"r-{i}", f"s-{i % 4}", [(f"m-{i % 3}", i, i * 2, 1)] * (i % 3))
    kept = stored()
    for model in (SkillRunStat, RunModelUsage, AllSkillsRunStat, AllSkillsRuntime):
        model.objects.all().delete()
    AllSkillsModelUsage.objects.filter(top_level=True).delete()
    out = io.StringIO()
    call_command("rebuild_stats", stdout=out)
    assert stored() == kept
    assert "bucket" in out.getvalue()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_histogram_percentiles_are_within_five_percent_of_the_exact_value(seed):
    rng = random.Random(seed)
    runtimes = [rng.lognormvariate(rng.uniform(-3, 5), rng.uniform(0.1, 2.5)) for _ in range(2000)]
    runtimes += [0.0] * rng.randint(0, 20)
    histogram = Counter(selectors.runtime_bin_of(r) for r in runtimes)
    ordered = sorted(runtimes)
    for percent in (50, 95, 99, 1):
        exact = ordered[nearest_rank(percent, len(ordered)) - 1]
        read = selectors.histogram_percentile(histogram, percent)
        if exact == 0:
            assert read == 0
        else:
            assert abs(read - exact) / exact <= 0.049


@pytest.mark.django_db
def test_percentiles_from_the_database_match_the_runs():
    rng = random.Random(7)
    runtimes = [rng.lognormvariate(1, 1.5) for _ in range(300)]
    SkillRun.objects.bulk_create(
        [
            SkillRun(id=f"p-{i}", skill_id="s", started_at=T0, status="ok", runtime_seconds=r)
            for i, r in enumerate(runtimes)
        ]
    )
    query = selectors.StatsQuery(
        since=period(T0, "day"), until=period(T0, "day") + timedelta(days=1), bucket="day"
    )
    ordered = sorted(runtimes)
    for series in (
        selectors.stats_series(query),
        selectors.stats_series(selectors.StatsQuery(**{**query.__dict__, "statuses": ("ok",)})),
    ):
        point = series.points[0]
        assert point.total_runs == 300
        for value, percent in ((point.runtime_p50, 50), (point.runtime_p95, 95)):
            exact = ordered[nearest_rank(percent, 300) - 1]
            assert abs(value - exact) / exact <= 0.049


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_one_skill_and_hour_leave_the_buckets_exact():
    SkillRun.objects.bulk_create(
        [SkillRun(id=f"w-{i}", skill_id="busy", started_at=T0, status="running") for i in range(80)]
    )
    barrier = threading.Barrier(2)
    errors = []

    def finish(ids):
        try:
            barrier.wait()
            for run_id in ids:
                with transaction.atomic():
                    SkillRun.objects.filter(pk=run_id).update(
                        status="ok", runtime_seconds=1.5, total_input_tokens=3
                    )
                    SkillRunLog.objects.create(
                        run_id=run_id,
                        sequence=1,
                        event_type="step",
                        payload={"model": "gpt", "usage": {"input_tokens": 3}},
                        created_at=T0,
                    )
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=finish, args=([f"w-{i}" for i in range(k, 80, 2)],)) for k in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert_exact()
    stat = SkillRunStat.objects.get(span="day", skill_id="busy", status="ok")
    assert (stat.runs, stat.input_tokens) == (80, 240)


@pytest.mark.django_db(transaction=True)
def test_otlp_ingest_lands_its_steps_under_the_answering_model(client, django_user_model):
    """OTLP writes runs and events with COPY (PostgreSQL) or bulk inserts and replaces a
    trace's runs when more of its spans arrive: the buckets follow, and each step's model
    is gen_ai.response.model (else gen_ai.request.model)."""
    from tests.otlp_support import post, request_of, span, token_for
    from tests.test_otlp_mapping import genai_trace

    key = token_for(django_user_model)
    spans = genai_trace()
    for s in spans:
        if any(a.key == "gen_ai.request.model" for a in s.attributes):
            s.attributes.add(key="gen_ai.response.model").value.string_value = "gpt-x-2026-01"
    assert post(client, key, request_of(spans[:5])).status_code == 200
    assert_exact()
    assert post(client, key, request_of(spans)).status_code == 200
    assert_exact()
    models = set(RunModelUsage.objects.values_list("model", flat=True))
    assert "gpt-x-2026-01" in models
    extra = span(1, 99, 2, "chat", 700, 800, {"gen_ai.operation.name": "chat"})
    assert post(client, key, request_of([extra])).status_code == 200
    assert_exact()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_different_skills_share_the_all_skills_rows_exactly():
    """Every writer of an hour updates the same all-skills rows (migration 0016): the
    triggers take them in key order, so writers of four skills neither deadlock nor lose a
    count, each finish and its step event in one transaction."""
    SkillRun.objects.bulk_create(
        [
            SkillRun(id=f"d-{i}", skill_id=f"skill-{i % 4}", started_at=T0, status="running")
            for i in range(80)
        ]
    )
    barrier = threading.Barrier(4)
    errors = []

    def finish(ids):
        try:
            barrier.wait()
            for n, run_id in enumerate(ids):
                with transaction.atomic():
                    SkillRun.objects.filter(pk=run_id).update(
                        status="ok" if n % 3 else "error", runtime_seconds=1.5 + n
                    )
                    SkillRunLog.objects.create(
                        run_id=run_id,
                        sequence=1,
                        event_type="step",
                        payload={"model": "gpt", "usage": {"input_tokens": 3}},
                        created_at=T0,
                    )
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=finish, args=([f"d-{i}" for i in range(k, 80, 4)],))
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert_exact()
    assert sum(AllSkillsRunStat.objects.filter(span="day").values_list("runs", flat=True)) == 80
    usage = AllSkillsModelUsage.objects.get(span="day", model="gpt")
    assert (usage.runs, usage.steps, usage.input_tokens) == (80, 80, 240)


@pytest.mark.django_db(transaction=True)
def test_migration_0016_fills_the_all_skills_buckets_and_its_triggers_keep_them():
    """Runs written before 0016 (under 0012's triggers, which know no all-skills table) are
    summed in by its backfill; the triggers it reinstalls keep the sums after."""
    storage = DjangoStorage()
    for i in range(6):
        record(storage, f"m-{i}", f"s-{i % 3}", [(f"m-{i % 2}", i, 1, 0)])
    call_command("migrate", "runs", "0015_usage_stats_by_skill", verbosity=0)
    assert "all_skills_run_stats" not in connection.introspection.table_names()
    for i in range(6, 10):
        record(storage, f"m-{i}", f"s-{i % 3}", [(f"m-{i % 2}", i, 1, 0)], status="error")
    SkillRun.objects.filter(pk="m-0").delete()
    call_command("migrate", "runs", verbosity=0)
    assert AllSkillsRunStat.objects.exists()
    assert_exact()
    record(storage, "m-after", "s-9", [("m-1", 5, 5, 5)])
    SkillRun.objects.filter(pk="m-1").update(skill_id="s-8")
    SkillRunLog.objects.filter(run_id="m-2").delete()
    assert_exact()
