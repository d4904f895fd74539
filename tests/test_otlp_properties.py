"""Hypothesis: any order, split and duplication of a trace's spans stores the same rows.

Both dialects (the GenAI trace of test_otlp_mapping, the OpenInference one of
test_otlp_openinference, which mixes in a GenAI span). After every request the stored state
is consistent too: each run's events are numbered 1..n with no gap, and every parent a run
names exists (a parent whose span has not arrived is a `running` placeholder).
"""

from __future__ import annotations

import pytest
from django.db.models import Count, Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.models import OtlpTrace, SkillRun, SkillRunCount, SkillRunLog
from tests.otlp_support import post, request_of, snapshot, token_for
from tests.test_otlp_mapping import genai_trace
from tests.test_otlp_openinference import oi_trace

pytestmark = pytest.mark.django_db

TRACES = {"genai": genai_trace, "openinference": oi_trace}


def wipe() -> None:
    SkillRunLog.objects.all().delete()
    SkillRun.objects.all().delete()
    OtlpTrace.objects.all().delete()


def consistent() -> None:
    runs = dict(SkillRun.objects.values_list("id", "status"))
    for run_id, parent in SkillRun.objects.exclude(parent_run_id="").values_list(
        "id", "parent_run_id"
    ):
        assert parent in runs, f"{run_id} names a parent that is not stored"
    for run_id in runs:
        sequences = list(SkillRunLog.objects.for_run(run_id).values_list("sequence", flat=True))
        assert sequences == list(range(1, len(sequences) + 1))


@st.composite
def deliveries(draw, n: int):
    """Every span at least once, some twice, in any order, in requests of any size."""
    extra = draw(st.lists(st.integers(0, n - 1), max_size=n))
    order = draw(st.permutations(list(range(n)) + extra))
    size = draw(st.integers(1, len(order)))
    gz = draw(st.booleans())
    kind = draw(st.sampled_from(["protobuf", "json"]))
    return [order[i : i + size] for i in range(0, len(order), size)], gz, kind


@pytest.mark.parametrize("dialect", sorted(TRACES))
def test_any_order_and_duplication_stores_the_same(client, django_user_model, dialect):
    key = token_for(django_user_model)
    spans = TRACES[dialect]()
    assert post(client, key, request_of(spans)).status_code == 200
    reference = snapshot()
    assert reference[0] and reference[1]

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(deliveries(len(spans)))
    def check(delivery):
        batches, gz, kind = delivery
        wipe()
        for batch in batches:
            response = post(client, key, request_of([spans[i] for i in batch]), kind, gz=gz)
            assert response.status_code == 200
            consistent()
        assert snapshot() == reference
        # The count triggers followed every replacement: the day buckets count the runs.
        counted = {
            (row["skill_id"], row["status"]): row["n"]
            for row in SkillRun.objects.values("skill_id", "status").annotate(n=Count("id"))
        }
        buckets = {
            (row["skill_id"], row["status"]): row["n"]
            for row in SkillRunCount.objects.filter(span="day")
            .values("skill_id", "status")
            .annotate(n=Sum("runs"))
            if row["n"]
        }
        assert buckets == counted

    check()


def test_a_run_waiting_for_its_span_is_running_until_it_arrives(client, django_user_model):
    key = token_for(django_user_model)
    spans = genai_trace()
    by_id = {int.from_bytes(s.span_id, "big"): s for s in spans}
    # The sub-agent's tool span first: its run (span 5) has not arrived.
    assert post(client, key, request_of([by_id[7]])).status_code == 200
    waiting = SkillRun.objects.get()
    assert waiting.status == "running" and waiting.finished_at is None
    assert waiting.skill_id == "(awaiting parent span)"
    assert SkillRunLog.objects.filter(run_id=waiting.id).count() == 2
    assert post(client, key, request_of([by_id[5]])).status_code == 200
    run = SkillRun.objects.get(pk=waiting.id)  # the same id, now the real run
    assert (run.skill_id, run.status) == ("researcher", "ok")
    assert run.parent_run_id  # its own parent (span 4's run) is awaited in turn
    assert SkillRun.objects.get(pk=run.parent_run_id).status == "running"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(blacklist_categories=["Cs"]).filter(lambda c: c != "\x00")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8).filter(lambda k: "\x00" not in k), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=JSON_VALUES)
def test_copy_json_stores_what_json_dumps_would(value):
    """The COPY of OTLP rows writes jsonb with orjson (managers.copy_json): the database
    keeps the same value as from json.dumps's text, and refuses the same texts (NaN,
    Infinity)."""
    import json

    from django.db import DataError, connection, transaction

    from runs.managers import copy_json

    ours, theirs = copy_json(value), json.dumps(value)
    if connection.vendor != "postgresql":
        assert json.loads(ours) == json.loads(theirs) or ours == theirs
        return

    def stored(text):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT %s::jsonb::text", [text])
                return cursor.fetchone()[0]
        except DataError as exc:
            return type(exc)

    assert stored(ours) == stored(theirs)
