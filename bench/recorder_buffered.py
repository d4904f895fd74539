#!/usr/bin/env python
"""The recorder buffered (runs.buffered) against unbuffered: the agent's time per event and
end-to-end events per second, with 8 concurrent recorders, in process and over HTTP.

    .venv/bin/python bench/recorder_buffered.py \\
        --database-url postgres://postgres@127.0.0.1:5432/sa_bench_buffered
    .venv/bin/python bench/recorder_buffered.py      # SQLite under var/bench/

The database is emptied and migrated first (as bench/api_ingest.py does); gunicorn serves
the API as in production (2 sync workers; the API's per-user throttle off, as it would be
for an executor's account). Each of ``--recorders`` threads records runs of
``--events-per-run`` events (tool calls and results with api_ingest's 300-byte payload),
through one Sink:

- throughput: as fast as the threads can; the buffer applies back-pressure
  (``wait_when_full``) so that nothing is dropped; the figure is events stored per second
  from the first event to ``flush()`` returning (every event checked in the database);
- agent time: each thread paced at one event per ``--pace-ms``, with the buffer's
  defaults (no back-pressure: a full queue would drop, and drops are reported): the time
  each ``tool_call``/``tool_result`` call takes in the agent's thread;
- unbuffered: the same threads through today's Sink, fewer events (it is slow).

Results go to bench/results/recorder-buffered-<database>.json and are printed as a
Markdown section for bench/RESULTS.md.

Targets: agent time per event <= 50 us (median), local and HTTP; >= 10,000
events/s in process and >= 5,000 events/s over HTTP on PostgreSQL with 8 recorders.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_ingest import CpuMeter, make_token, payload, prepare_database  # noqa: E402
from bench.served import Gunicorn  # noqa: E402
from runs.buffered import BufferedStorage  # noqa: E402
from runs.client import HttpStorage  # noqa: E402
from runs.recorder import Sink  # noqa: E402

WORK = ROOT / "var" / "bench"
TARGET_AGENT_US = 50
TARGET_EVENTS_PER_S = {"in process": 10_000, "HTTP": 5_000}
# Back-pressure for the throughput runs: long enough that no event is dropped.
BACK_PRESSURE_S = 600.0


def percentile(values: list[int], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def record(sink: Sink, tag: str, recorders: int, runs: int, events: int, pace_s: float, hold):
    """``recorders`` threads, each recording ``runs`` runs of ``events`` events; returns
    (when they started, per-event call times in ns) once every thread is done. Threads
    with a database connection of their own (unbuffered, in process) keep it open until
    ``hold`` is set, so that its PostgreSQL backend's CPU time can still be read."""
    arguments = [payload(n)["arguments"] for n in range(16)]
    result = {"hits": 10, "first": "https://docs.example.com/retention"}
    times: list[list[int]] = [[] for _ in range(recorders)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(recorders + 1)
    done = threading.Semaphore(0)

    def agent(c: int) -> None:
        clock = time.perf_counter_ns
        mine = times[c]
        try:
            barrier.wait()
            for r in range(runs):
                run = sink.start_run(
                    skill_id="bench", caller_id=f"agent-{c}", run_id=f"{tag}-{c}-{r}"
                )
                for n in range(events // 2):
                    t0 = clock()
                    run.tool_call("web_search", arguments[n % 16], call_id=f"c{n}")
                    t1 = clock()
                    run.tool_result("web_search", result, call_id=f"c{n}")
                    t2 = clock()
                    mine.append(t1 - t0)
                    mine.append(t2 - t1)
                    if pace_s:
                        time.sleep(pace_s)
                run.close("ok", output="done")
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            done.release()
            if sink.buffer is None and "django.db" in sys.modules:
                from django.db import connections

                hold.wait(600)
                connections.close_all()

    threads = [threading.Thread(target=agent, args=(c,), daemon=True) for c in range(recorders)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for _ in threads:
        done.acquire()
    if errors:
        raise errors[0]
    return started, [t for per_thread in times for t in per_thread]


def stored_events(tag: str) -> int:
    from runs.models import SkillRunLog

    return SkillRunLog.objects.filter(run__id__startswith=f"{tag}-").count()


def measure(name, storage, mode, tag, recorders, runs, events_per_run, meter, pace_s=0.0) -> dict:
    """One scenario: mode is "unbuffered", "throughput" or "paced"."""
    buffer = None
    if mode == "unbuffered":
        sink = Sink(storage)
    else:
        wait = BACK_PRESSURE_S if mode == "throughput" else 0.0
        buffer = BufferedStorage(storage, wait_when_full=wait)
        sink = Sink(buffer)
    before = meter.snapshot() if meter else None
    hold = threading.Event()
    started, times = record(sink, tag, recorders, runs, events_per_run, pace_s, hold)
    agents_done = time.perf_counter()
    if buffer is not None:
        if not buffer.flush(600):
            raise RuntimeError(f"{name}: the writer did not finish within 600 s")
    elapsed = time.perf_counter() - started
    after = meter.snapshot() if meter else None
    hold.set()
    events = recorders * runs * (events_per_run // 2 * 2)
    stored = stored_events(tag)
    # The sink's count: with a start dropped, its run's later events never reach the buffer.
    dropped = sink.dropped
    if sink.failures or (buffer and buffer.failures):
        raise RuntimeError(f"{name}: {sink.failures} failures")
    if mode != "paced" and (stored != events or dropped):
        raise RuntimeError(f"{name}: {stored} of {events} events stored, {dropped} dropped")
    if buffer is not None:
        buffer.close()
    figure = {
        "recorders": recorders,
        "runs": recorders * runs,
        "events_per_run": events_per_run,
        "events": events,
        "stored": stored,
        "dropped": dropped,
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed),
        "agents_seconds": round(agents_done - started, 3),
        "agent_us_median": round(statistics.median(times) / 1000, 1),
        "agent_us_p90": round(percentile(times, 0.90) / 1000, 1),
        "agent_us_p99": round(percentile(times, 0.99) / 1000, 1),
    }
    if pace_s:
        figure["pace_ms_per_event_pair"] = pace_s * 1000
    if meter:
        cpu = {key: (after[key] - before[key]) / events for key in after}
        for key, seconds in cpu.items():
            figure[f"cpu_ms_per_1000_events_{key}"] = round(seconds * 1e6, 1)
        # What an otherwise idle machine would sustain at this CPU cost: 2 cores for all
        # the processes, and one for the bench process (one interpreter: the GIL).
        figure["events_per_s_idle_estimate"] = round(min(2 / sum(cpu.values()), 1 / cpu["client"]))
    print(
        f"  {name}: {events:,} events in {elapsed:.2f} s = {figure['events_per_s']:,}/s; agent "
        f"median {figure['agent_us_median']} us, p99 {figure['agent_us_p99']} us; "
        f"dropped {dropped}; idle estimate {figure.get('events_per_s_idle_estimate')}/s; CPU "
        f"ms/1000 events client {figure.get('cpu_ms_per_1000_events_client')}, server "
        f"{figure.get('cpu_ms_per_1000_events_server')}, database "
        f"{figure.get('cpu_ms_per_1000_events_database')}",
        flush=True,
    )
    return figure


def ceiling(name, storage, tag, runs, events_per_run, meter) -> dict:
    """The storage's own batch call, no recorder: one thread starts ``runs`` runs, stores
    each run's events with append_logs 1,000 at a time, finishes it. What the writer
    thread could reach at best on the machine as it is now (bench/api_ingest.py's batch
    endpoint figure, measured again beside the recorder's)."""
    from runs.contract import RunStats, SkillRun, SkillRunLog

    arguments = [payload(n)["arguments"] for n in range(16)]
    result = {"hits": 10, "first": "https://docs.example.com/retention"}
    before = meter.snapshot()
    started = time.perf_counter()
    for r in range(runs):
        run_id = f"{tag}-0-{r}"
        storage.start_run(SkillRun(id=run_id, skill_id="bench"))
        for first in range(1, events_per_run + 1, 1000):
            logs = []
            for sequence in range(first, min(first + 1000, events_per_run + 1)):
                call = sequence % 2 == 1
                logs.append(
                    SkillRunLog(
                        run_id=run_id,
                        sequence=sequence,
                        event_type="tool_call" if call else "tool_result",
                        payload={"tool": "web_search", "call_id": f"c{sequence // 2}"}
                        | ({"arguments": arguments[sequence % 16]} if call else {"result": result}),
                        created_at=datetime.now(UTC),
                    )
                )
            storage.append_logs(logs)
        storage.finish_run(run_id, RunStats(status="ok", output="done"))
    elapsed = time.perf_counter() - started
    after = meter.snapshot()
    events = runs * events_per_run
    if stored_events(tag) != events:
        raise RuntimeError(f"{name}: {stored_events(tag)} of {events} events stored")
    cpu = {key: (after[key] - before[key]) / events for key in after}
    figure = {
        "recorders": 1,
        "runs": runs,
        "events_per_run": events_per_run,
        "events": events,
        "stored": events,
        "dropped": 0,
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed),
        "agent_us_median": None,
        "agent_us_p90": None,
        "agent_us_p99": None,
    }
    for key, seconds in cpu.items():
        figure[f"cpu_ms_per_1000_events_{key}"] = round(seconds * 1e6, 1)
    figure["events_per_s_idle_estimate"] = round(min(2 / sum(cpu.values()), 1 / cpu["client"]))
    print(f"  {name}: {events:,} events in {elapsed:.2f} s = {figure['events_per_s']:,}/s")
    return figure


def commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=f"sqlite:///{WORK / 'recorder_buffered.sqlite3'}")
    parser.add_argument("--recorders", type=int, default=8, help="concurrent recorders (8)")
    parser.add_argument("--runs", type=int, default=5, help="runs per recorder, buffered (5)")
    parser.add_argument("--events-per-run", type=int, default=1000, help="events per run (1000)")
    parser.add_argument(
        "--unbuffered-events", type=int, default=100, help="events per recorder, unbuffered (100)"
    )
    parser.add_argument("--short-runs", type=int, default=20, help="events per run, short (20)")
    parser.add_argument("--pace-ms", type=float, default=5.0, help="paced: ms per pair (5)")
    args = parser.parse_args()

    env = dict(
        os.environ,
        DATABASE_URL=args.database_url,
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        DEBUG="0",
        SKILLAUDIT_DATA_DIR=str(WORK / "recorder_buffered_data"),
        GUNICORN_ACCESSLOG="/dev/null",
        # An executor's account records far more than a person's: no per-user throttle.
        API_THROTTLE_USER="off",
    )
    WORK.mkdir(parents=True, exist_ok=True)
    prepare_database(args.database_url, env)
    token = make_token(env)
    vendor = "postgresql" if args.database_url.startswith("postgres") else "sqlite"
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    import django

    django.setup()
    from runs.storage import DjangoStorage

    load_before = [round(x, 2) for x in os.getloadavg()]
    figures: dict[str, dict] = {}
    n, runs, per_run = args.recorders, args.runs, args.events_per_run
    # Short runs: a fifth as many events, in runs whose start and finish weigh more.
    short = args.short_runs
    short_runs = max(1, args.runs * args.events_per_run // args.short_runs // 5)
    pace = args.pace_ms / 1000
    with Gunicorn(env, WORK / "recorder_buffered_gunicorn.log", workers=2) as server:
        http = HttpStorage(f"http://127.0.0.1:{server.port}", token, timeout=120)
        http.initialize()
        meter = CpuMeter(server, args.database_url)
        print("HTTP (gunicorn, 2 workers)", flush=True)
        measure("warm-up", http, "throughput", "warm-http", 2, 1, 200, None)
        figures["HTTP, batch endpoint, 1,000 events/request, no recorder (ceiling)"] = ceiling(
            "ceiling", http, "http-c", n * runs, per_run, meter
        )
        figures["HTTP, unbuffered (today)"] = measure(
            "unbuffered", http, "unbuffered", "http-u", n, 1, args.unbuffered_events, meter
        )
        figures["HTTP, buffered: throughput"] = measure(
            "throughput", http, "throughput", "http-t", n, runs, per_run, meter
        )
        figures["HTTP, buffered: agent time, paced"] = measure(
            "paced", http, "paced", "http-p", n, runs, per_run, meter, pace
        )
        figures[f"HTTP, buffered: throughput, runs of {short} events"] = measure(
            "short runs", http, "throughput", "http-s", n, short_runs, short, meter
        )

    local = DjangoStorage()
    meter = CpuMeter(server, args.database_url)  # gunicorn has stopped: its share is 0
    print("in process (DjangoStorage)", flush=True)
    measure("warm-up", local, "throughput", "warm-local", 2, 1, 200, None)
    figures["in process, append_logs, 1,000 events/transaction, no recorder (ceiling)"] = ceiling(
        "ceiling", local, "local-c", n * runs, per_run, meter
    )
    figures["in process, unbuffered (today)"] = measure(
        "unbuffered", local, "unbuffered", "local-u", n, 1, args.unbuffered_events, meter
    )
    figures["in process, buffered: throughput"] = measure(
        "throughput", local, "throughput", "local-t", n, runs, per_run, meter
    )
    figures["in process, buffered: agent time, paced"] = measure(
        "paced", local, "paced", "local-p", n, runs, per_run, meter, pace
    )
    figures[f"in process, buffered: throughput, runs of {short} events"] = measure(
        "short runs", local, "throughput", "local-s", n, short_runs, short, meter
    )

    result = {
        "script": "bench/recorder_buffered.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "database": vendor,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "payload_bytes": len(__import__("json").dumps(payload(0))),
        "buffer": {
            "batch_size": 1000,
            "max_batch": 10_000,
            "connections": "2 (HTTP); DjangoStorage: the writer thread alone",
            "interval_s": 0.1,
            "max_queue": 10_000,
            "wait_when_full_s": f"{BACK_PRESSURE_S} (throughput), 0 (paced)",
        },
        "figures": figures,
    }
    from bench import report

    out = report.save(f"recorder-buffered-{vendor}", result)
    print()
    print(markdown(result))
    print(f"written to {out.relative_to(ROOT)}")


def markdown(result: dict) -> str:
    lines = [
        f"### {result['database']}, {result['date']} (commit {result['commit']}, load average "
        f"{result['load_average_before']} before, {result['load_average_after']} after)",
        "",
        "| path | recorders x events/run | events | seconds | events/s | idle estimate "
        "events/s | CPU ms per 1,000 events: bench process / gunicorn / PostgreSQL | agent "
        "median / p90 / p99 µs per event | dropped |",
        "|---|---|--:|--:|--:|--:|---|---|--:|",
    ]
    for name, f in result["figures"].items():
        f = {key: "—" if value is None else value for key, value in f.items()}
        lines.append(
            f"| {name} | {f['recorders']} x {f['events_per_run']:,} | {f['events']:,} | "
            f"{f['seconds']} | {f['events_per_s']:,} | {f['events_per_s_idle_estimate']:,} | "
            f"{f['cpu_ms_per_1000_events_client']} / {f['cpu_ms_per_1000_events_server']} / "
            f"{f['cpu_ms_per_1000_events_database']} | {f['agent_us_median']} / "
            f"{f['agent_us_p90']} / {f['agent_us_p99']} | {f['dropped']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
