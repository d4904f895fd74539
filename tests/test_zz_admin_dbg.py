from tests import test_admin as t
from runs.models import SkillRun
from django.db import connection
from datetime import timedelta
def test_dbg(db):
    runs = [SkillRun(id=f"r{i:05d}", skill_id=f"skill-{i % 40}", caller_id=f"caller-{i % 300}", channel_id=f"#ch-{i % 70}", status="ok", started_at=t.T0 + timedelta(seconds=i)) for i in range(3000)]
    SkillRun.objects.bulk_create(runs, batch_size=1000)
    print("PLAN", SkillRun.objects.named("skill-7").newest_first()[:50].explain())
    print("PLAN-LIKE", SkillRun.objects.filter(skill_id__startswith="skill-7").newest_first()[:50].explain())
