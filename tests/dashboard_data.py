"""Helpers that record runs for the dashboard tests through the real storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import Permission

from runs.contract import RunStats, SkillRun, SkillRunLog
from runs.models import SkillRun as SkillRunModel
from runs.storage import DjangoStorage

BASE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def record_run(
    run_id: str,
    *,
    skill: str = "summarise",
    caller: str = "alice",
    channel: str = "general",
    status: str = "ok",
    minutes: float = 0,
    parent: str = "",
    inputs=None,
    output: str = "",
    error: str = "",
    events=(),
    runtime: float = 1.5,
    tokens=(0, 0, 0),
    started_at: datetime | None = None,
):
    """Store a run started ``minutes`` after BASE, finished unless status is running."""
    storage = DjangoStorage()
    started = started_at or BASE + timedelta(minutes=minutes)
    storage.start_run(
        SkillRun(
            id=run_id,
            skill_id=skill,
            caller_id=caller,
            channel_id=channel,
            inputs=inputs or {},
            started_at=started,
            parent_run_id=parent,
        )
    )
    for sequence, (event_type, payload) in enumerate(events, start=1):
        storage.append_log(
            SkillRunLog(
                run_id=run_id,
                sequence=sequence,
                event_type=event_type,
                payload=payload,
                created_at=started + timedelta(seconds=sequence),
            )
        )
    if status != "running":
        storage.finish_run(
            run_id,
            RunStats(
                status=status,
                output=output,
                error=error,
                runtime_seconds=runtime,
                tool_calls=sum(1 for e in events if e[0] == "tool_call"),
                input_tokens=tokens[0],
                output_tokens=tokens[1],
                thinking_tokens=tokens[2],
            ),
        )
        # finish_run stamps "now"; keep finished_at consistent with the past start.
        SkillRunModel.objects.filter(pk=run_id).update(
            finished_at=started + timedelta(seconds=runtime)
        )
    return run_id


def make_viewer(django_user_model, username="viewer", *, staff=True, permission=True):
    user = django_user_model.objects.create_user(username=username, password="pw-123456")
    user.is_staff = staff
    user.save()
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="view_skillrun"))
    return user
