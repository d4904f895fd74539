"""A worker's memory after big contract answers returns to where it was (run by hand, not by
pytest; ~35 s with the default 10 runs).

Stores RUNS runs of 2.6 MB inputs (10: ~26 MB, 4 answers of 8 MiB) in a fresh SQLite database,
serves it with one gunicorn worker, and asks list_runs_filtered for all of them through
HttpStorage three times: the server cuts each answer at 8 MiB of runs
(runs.api.contract_methods.RESPONSE_BUDGET), HttpStorage follows next_offset. Before the
budget 8 such runs made a 21 MB answer and left the worker at 870 MB.

Worker RssAnon (2026-12-03, 2 shared cores at load ~6):
- before: reference cycles around each answer (the rows' ReturnDicts and their serializers;
  the view, DRF's renderer context and the response) held the rows until the cyclic
  collector happened to run: 69 -> 107, 163, 83 MB over three 26 MB answers, 68 -> 128,
  183, 203 MB over three 104 MB ones. In process, gc.collect() after an answer found them
  and RssAnon fell back to the start: Python objects freed, nothing else kept.
- runs/api/views.py breaks those cycles (representation(), ApiView.dispatch;
  tests/test_response_memory.py checks no answer leaves one): 62 -> 73, 73, 73 MB, a
  high-water mark of glibc's (its mmap threshold had risen to the 8 MiB buffers' size).
- skillaudit_site/gunicorn.conf.py fixes that threshold at 64 KiB: 64 -> 64, 64, 64 MB
  over three 26 MB answers (32 s wall), 63 -> 63, 63, 63 MB over three 104 MB ones
  (--runs 40, 49 s wall).
The check fails when the worker ends more than --max-growth-mb above where it started.

Usage: .venv/bin/python tests/system/response_memory.py [--runs 10] [--max-growth-mb 16]
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.served import Gunicorn, bench_env  # noqa: E402

SEED = """
import django, sys
django.setup()
from datetime import UTC, datetime, timedelta
from django.contrib.auth.models import Permission, User
from runs import contract
from runs.access.models import ApiToken
from runs.storage import DjangoStorage
storage = DjangoStorage()
blob = "x" * (2_600_000 // 26)
for n in range(int(sys.argv[1])):
    storage.start_run(contract.SkillRun(
        id=f"big-{n:03d}", skill_id="big",
        inputs={f"k{i}": blob for i in range(26)},
        started_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n),
    ))
user = User.objects.create_user("memory-client")
user.user_permissions.set(Permission.objects.filter(codename="view_skillrun"))
print(ApiToken.objects.create(user=user).key)
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-growth-mb", type=float, default=16.0)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="sa-memory-")) / "data"
    db = data_dir / "skillaudit.sqlite3"
    env = bench_env(f"sqlite:///{db}", secrets.token_urlsafe(50), data_dir)
    env["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    python = str(ROOT / ".venv/bin/python")
    for command in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        subprocess.run([python, "manage.py", *command], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run(
        [python, "-c", SEED, str(args.runs)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    token = seeded.stdout.strip().splitlines()[-1]
    server = Gunicorn(env, data_dir.parent / "gunicorn.log", workers=1)
    server.env["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    from runs import contract
    from runs.client import HttpStorage

    with server:
        client = HttpStorage(f"http://127.0.0.1:{server.port}", token, timeout=120)
        f = contract.RunFilter(skill_id="big")
        client.list_runs_filtered(f, 0, 1)  # warm: Django, the connection, one run
        (pid,) = server.worker_pids()
        start = settled_kb(pid)
        afters = []
        for _ in range(3):  # a leak grows with every answer; a high-water mark does not
            runs = client.list_runs_filtered(f, 0, contract.MAX_LIMIT)
            total_mb = sum(len(str(r.inputs)) for r in runs) / 1e6
            del runs
            afters.append(settled_kb(pid))
    growth = (afters[-1] - start) / 1024
    print(
        f"{args.runs} runs, {total_mb:.0f} MB of inputs answered 3 times; worker RssAnon "
        f"{start / 1024:.0f} MB before, after each answer "
        + ", ".join(f"{a / 1024:.0f}" for a in afters)
        + f" MB (+{growth:.0f} MB, limit {args.max_growth_mb:.0f} MB)"
    )
    return 0 if growth <= args.max_growth_mb else 1


def settled_kb(pid: int, seconds: float = 3.0) -> int:
    """The worker's anonymous memory once it stops falling (the trim runs after the answer
    is sent, so the client can read the figure before it): the lowest of a few readings."""
    lowest = anon_kb(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
        lowest = min(lowest, anon_kb(pid))
    return lowest


def anon_kb(pid: int) -> int:
    """Anonymous resident memory (the heap), not the mapped files (code, the database)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise RuntimeError("no RssAnon")


if __name__ == "__main__":
    sys.exit(main())
