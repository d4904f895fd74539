"""Bounded load test: wrk against gunicorn on loopback, pages mixed with API recording.

    .venv/bin/python bench/load.py [--database-url URL] [--seconds 30] [--connections 16]

Starts from a fresh database (a SQLite file under var/bench/, or the PostgreSQL database
given, which is dropped and created), records demo history, serves it with gunicorn as
production does, and drives it with wrk (Debian's `wrk`, installed when missing): the run
list (plain and filtered), run pages, the skills page, and executors recording runs
through the API (start, a batch of events, finish). Any non-2xx/3xx response or socket
error fails the run. Figures go to bench/results/load-<engine>.json; bench/report.py
puts them in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.served import Client, Gunicorn, bench_env  # noqa: E402

LUA = r"""
-- Each wrk connection-thread walks this cycle; executors record with their own ids.
local pages = {}
local cookie, token, prefix = "", "", ""
local counter = 0
local step = 0
local started = {}

function setup(thread)
  thread:set("id", tostring(math.random(1, 1e9)))
end

function init(args)
  cookie, token, prefix = args[1], args[2], args[3]
  for i = 4, #args do pages[#pages + 1] = args[i] end
end

local function page(path)
  return wrk.format("GET", path, {["Cookie"] = cookie})
end

local function api(path, body)
  return wrk.format("POST", path, {
    ["Authorization"] = "Token " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

function request()
  counter = counter + 1
  local slot = counter % 10
  if slot < 7 then
    return page(pages[(counter % #pages) + 1])
  end
  -- three in ten requests record: start a run, add a batch of events to the run started
  -- ten starts ago, finish the one started twenty ago (a thread's connections run
  -- concurrently, so the run just started may not be stored yet)
  step = step % 3 + 1
  if step == 1 then
    local run_id = prefix .. "-" .. id .. "-" .. counter
    started[#started + 1] = run_id
    return api("/api/runs/", '{"id": "' .. run_id .. '", "skill_id": "load-test", '
      .. '"caller_id": "wrk", "inputs": {"n": ' .. counter .. '}}')
  elseif step == 2 and #started > 10 then
    local events = {}
    for s = 1, 10 do
      events[#events + 1] = '{"sequence": ' .. s .. ', "event_type": "step", '
        .. '"payload": {"text": "thinking", "usage": {"input_tokens": 10}}}'
    end
    local batch = '{"events": [' .. table.concat(events, ",") .. ']}'
    return api("/api/runs/" .. started[#started - 10] .. "/logs/", batch)
  elseif step == 3 and #started > 20 then
    return api("/api/runs/" .. started[#started - 20] .. "/finish/",
      '{"status": "ok", "output": "done", "tool_calls": 0, "runtime_seconds": 0.5}')
  end
  return page(pages[(counter % #pages) + 1])
end
"""


def run(cmd, env, **kwargs):
    return subprocess.run(cmd, cwd=ROOT, env=env, check=True, **kwargs)


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
        path = shutil.which("wrk")
    return path


def fresh_database(url: str | None) -> str:
    if url is None:
        path = ROOT / "var" / "bench" / "load.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob("load.sqlite3*"):
            stale.unlink()
        return f"sqlite:///{path}"
    name = urlparse(url).path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    for sql in (f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", admin, "-qc", sql], check=True)
    return url


def parse_wrk(text: str) -> dict:
    def number(pattern, cast=float, default=0):
        match = re.search(pattern, text)
        return cast(match.group(1)) if match else default

    def millis(value: str) -> float:
        amount, unit = re.match(r"([\d.]+)(\w+)", value).groups()
        return float(amount) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    latency = {
        p: millis(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.MULTILINE)
    }
    return {
        "requests": number(r"(\d+) requests in", int),
        "requests_per_second": number(r"Requests/sec:\s+([\d.]+)"),
        "latency_ms": latency,
        "non_2xx_3xx": number(r"Non-2xx or 3xx responses: (\d+)", int),
        "socket_errors": sum(
            int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text)
        ),
    }


# wrk's own default gives up on a response after 2 s and counts it as a socket error. On
# the 2-core CI machine, 16 connections queue on 2 workers: p99 was 1.36 s and one request
# of 1,343 took just over 2 s and still got its 200 (the access log counted it). A slow
# answer is not an error; the latencies are reported. 10 s is what a browser or exporter
# would still wait; past it the request counts as failed.
CLIENT_TIMEOUT_SECONDS = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL database to (re)create")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2000, help="demo history to serve")
    args = parser.parse_args()

    wrk = ensure_wrk()
    url = fresh_database(args.database_url)
    engine = "postgresql" if url.startswith("postgres") else "sqlite"
    data_dir = Path(tempfile.mkdtemp(prefix="sa-load-"))
    password = secrets.token_urlsafe(12)
    env = bench_env(url, secrets.token_urlsafe(50), data_dir)
    env["DJANGO_SUPERUSER_PASSWORD"] = password
    env["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    manage = [str(ROOT / ".venv/bin/python"), "manage.py"]
    run(manage + ["migrate", "--noinput", "-v0"], env)
    run(manage + ["collectstatic", "--noinput", "-v0"], env)
    run(manage + ["seed_demo", "--runs", str(args.runs), "--days", "7"], env)
    run(manage + ["ensure_admin"], env, stdout=subprocess.DEVNULL)
    token = run(
        manage + ["create_api_token", "admin"], env, capture_output=True, text=True
    ).stdout.split()[-1]
    ids = run(
        manage
        + [
            "shell",
            "--no-imports",
            "-c",
            "from runs.models import SkillRun; "
            "print('\\n'.join(SkillRun.objects.top_level().newest_first()"
            ".values_list('id', flat=True)[:40]))",
        ],
        env,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    safe_ids = [i for i in ids if re.fullmatch(r"[\w.-]+", i)][:20]
    pages = ["/runs/", "/runs/?status=error", "/runs/?include_nested=1", "/skills/"]
    pages += [f"/runs/{i}/" for i in safe_ids]

    server = Gunicorn(env, data_dir / "gunicorn.log")
    server.env["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    server.env["GUNICORN_ACCESSLOG"] = str(data_dir / "access.log")
    script = data_dir / "mix.lua"
    script.write_text(LUA)
    with server:
        client = Client(server.port)
        client.login("admin", password)
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        started = time.monotonic()
        out = subprocess.run(
            [
                wrk,
                "-t",
                str(args.threads),
                "-c",
                str(args.connections),
                "-d",
                f"{args.seconds}s",
                "--latency",
                "--timeout",
                f"{CLIENT_TIMEOUT_SECONDS}s",
                "-s",
                str(script),
                f"http://127.0.0.1:{server.port}",
                "--",
                cookie,
                token,
                f"load{int(time.time())}",
                *pages,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        elapsed = time.monotonic() - started
        recorded = run(
            manage
            + [
                "shell",
                "--no-imports",
                "-c",
                "from runs.models import SkillRun, SkillRunLog; "
                "print(SkillRun.objects.filter(skill_id='load-test', status='ok').count(),"
                " SkillRunLog.objects.filter(run__skill_id='load-test').count())",
            ],
            env,
            capture_output=True,
            text=True,
        ).stdout.split()
    figures = parse_wrk(out)
    statuses: dict[str, int] = {}
    for line in (data_dir / "access.log").read_text().splitlines():
        match = re.search(r'" (\d{3}) ', line)
        if match:
            statuses[match.group(1)] = statuses.get(match.group(1), 0) + 1
    result = {
        "engine": engine,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "seconds": round(elapsed, 1),
        "connections": args.connections,
        "threads": args.threads,
        "workers": 2,
        "history_runs": args.runs,
        "pages": len(pages),
        "statuses": statuses,
        "finished_runs_recorded": int(recorded[0]),
        "events_recorded": int(recorded[1]),
        **figures,
        "wrk_output": out,
    }
    from bench import report

    report.save(f"load-{engine}", result)
    print(out)
    print(json.dumps({k: v for k, v in result.items() if k != "wrk_output"}, indent=2))
    failed = figures["non_2xx_3xx"] or figures["socket_errors"] or not figures["requests"]
    bad = {code: n for code, n in statuses.items() if not code.startswith(("2", "3"))}
    if failed or bad:
        print(
            f"load: FAILED ({figures['non_2xx_3xx']} error responses {bad}, "
            f"{figures['socket_errors']} socket errors)"
        )
        return 1
    print("load: ok, no error responses")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
