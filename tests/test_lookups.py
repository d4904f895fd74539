"""The __is_empty lookup: the empty string written into the SQL, same rows as = ''."""

from datetime import UTC, datetime

import pytest

from runs import contract
from runs.models import SkillRun

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_top_level_writes_the_empty_string_into_the_sql():
    sql, params = SkillRun.objects.top_level().query.sql_with_params()
    assert "\"parent_run_id\" = ''" in sql
    assert "" not in params


def test_children_of_excludes_the_empty_string_in_the_sql():
    sql, params = SkillRun.objects.children_of("p").query.sql_with_params()
    assert 'NOT ("skill_runs"."parent_run_id" = \'\')' in sql
    assert list(params) == ["p"]


def test_is_empty_selects_the_same_rows_as_equality(db):
    for run_id, parent in (("top", ""), ("child", "top"), ("blank-ish", " ")):
        SkillRun.objects.create(
            id=run_id,
            skill_id="s",
            status=contract.STATUS_OK,
            started_at=T0,
            parent_run_id=parent,
        )
    assert set(SkillRun.objects.top_level().values_list("pk", flat=True)) == {"top"}
    assert set(SkillRun.objects.filter(parent_run_id="").values_list("pk", flat=True)) == {"top"}
    assert set(SkillRun.objects.children_of("top").values_list("pk", flat=True)) == {"child"}


def test_is_empty_false_is_refused():
    with pytest.raises(ValueError, match="True only"):
        str(SkillRun.objects.filter(parent_run_id__is_empty=False).query)
