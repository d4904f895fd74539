#!/usr/bin/env python
"""Spans stored per second through POST /v1/traces, sent by the real OpenTelemetry Python
SDK and OTLP/HTTP exporter (batch span processor, protobuf), GenAI and OpenInference shapes.

    .venv/bin/python bench/otlp_ingest.py --database-url postgres://postgres@127.0.0.1:5432/sa_bench_otlp
    .venv/bin/python bench/otlp_ingest.py --database-url sqlite:////work/main/var/bench/otlp.sqlite3

The database is emptied and migrated first (as bench/api_ingest.py does); gunicorn serves
the site as in production (2 sync workers, no worker recycling). Each trace is agent-shaped:
a root agent and 10 child spans, a third of them nested agents (each with a model call and
a tool), the rest model calls and tool calls with realistic attributes. ``--clients``
processes each build traces with the SDK and export them; the figure is spans stored per
second of wall time, from the first span to the last export answered, checked against the
rows in the database. Worker memory (RSS) is sampled during the run: flat means no growth
with the number of spans. Results: bench/results/otlp-ingest-<database>.json.

Target: at least 10,000 spans/s on PostgreSQL, for both shapes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_ingest import CpuMeter, make_token, prepare_database  # noqa: E402
from bench.served import Gunicorn  # noqa: E402

WORK = ROOT / "var" / "bench"
SPANS_PER_TRACE = 11
MESSAGES = json.dumps(
    [{"role": "user", "parts": [{"type": "text", "content": "Summarise the incident " * 4}]}]
)
ANSWER = json.dumps(
    [{"role": "assistant", "parts": [{"type": "text", "content": "The disk filled up. " * 4}]}]
)


def genai_trace(tracer, n: int, t0: int) -> None:
    """One GenAI trace of 11 spans: a root agent and 10 children, 3 of them nested agents,
    3 model calls and 4 tool calls."""
    from opentelemetry import trace

    ms = 10**6
    root = tracer.start_span(
        "invoke_agent triage",
        start_time=t0,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "triage",
            "gen_ai.conversation.id": f"conv-{n % 5000}",
            "enduser.id": f"user-{n % 300}",
        },
    )
    ctx = trace.set_span_in_context(root)
    at = t0 + ms
    for child in range(10):
        if child in (2, 5, 8):  # a nested agent: 3 of the 10 children
            span = tracer.start_span(
                "invoke_agent researcher",
                context=ctx,
                start_time=at,
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": "researcher",
                },
            )
        elif child % 2 == 0:
            span = tracer.start_span(
                "chat gpt-4o",
                context=ctx,
                start_time=at,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.usage.input_tokens": 812,
                    "gen_ai.usage.output_tokens": 95,
                    "gen_ai.response.finish_reasons": ("stop",),
                    "gen_ai.input.messages": MESSAGES,
                    "gen_ai.output.messages": ANSWER,
                },
            )
        else:
            span = tracer.start_span(
                "execute_tool web_search",
                context=ctx,
                start_time=at,
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "web_search",
                    "gen_ai.tool.call.id": f"call-{n}-{child}",
                    "gen_ai.tool.call.arguments": '{"query": "disk full runbook", "max": 10}',
                    "gen_ai.tool.call.result": '{"hits": 3, "top": "runbooks/disk.md"}',
                },
            )
        span.end(end_time=at + 5 * ms)
        at += 6 * ms
    root.end(end_time=at)


def openinference_trace(tracer, n: int, t0: int) -> None:
    """The same shape as OpenInference instrumentations emit it: a CHAIN root, AGENT
    spans with agent.name, LLM spans with flattened messages, TOOL spans."""
    from opentelemetry import trace

    ms = 10**6
    root = tracer.start_span(
        "LangGraph",
        start_time=t0,
        attributes={
            "openinference.span.kind": "CHAIN",
            "session.id": f"session-{n % 5000}",
            "user.id": f"user-{n % 300}",
            "input.value": '{"messages": ["Summarise the incident"]}',
            "input.mime_type": "application/json",
            "output.value": "The disk filled up.",
        },
    )
    ctx = trace.set_span_in_context(root)
    at = t0 + ms
    for child in range(10):
        if child in (2, 5, 8):
            attributes = {"openinference.span.kind": "AGENT", "agent.name": "researcher"}
            name = "researcher"
        elif child % 2 == 0:
            name = "ChatOpenAI"
            attributes = {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o",
                "llm.provider": "openai",
                "llm.token_count.prompt": 812,
                "llm.token_count.completion": 95,
                "llm.token_count.total": 907,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "Summarise the incident " * 4,
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "The disk filled up. " * 4,
                "llm.invocation_parameters": '{"temperature": 0}',
            }
        else:
            name = "web_search"
            attributes = {
                "openinference.span.kind": "TOOL",
                "tool.name": "web_search",
                "input.value": '{"query": "disk full runbook", "max": 10}',
                "output.value": '{"hits": 3, "top": "runbooks/disk.md"}',
            }
        span = tracer.start_span(name, context=ctx, start_time=at, attributes=attributes)
        span.end(end_time=at + 5 * ms)
        at += 6 * ms
    root.end(end_time=at)


def client(endpoint: str, token: str, shape: str, traces: int, offset: int, done) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter(
        endpoint=endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=120
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-agent"}))
    # A queue big enough that nothing is dropped: the figure must count every span.
    processor = BatchSpanProcessor(
        exporter, max_queue_size=traces * SPANS_PER_TRACE + 1, max_export_batch_size=512
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")
    build = genai_trace if shape == "genai" else openinference_trace
    t0 = time.time_ns() - 86_400 * 10**9
    for n in range(offset, offset + traces):
        build(tracer, n, t0 + n * 10**6)
    processor.force_flush(timeout_millis=600_000)
    provider.shutdown()
    done.put(time.process_time())  # this client's CPU: building, encoding, sending


STORED_SPANS = "SELECT COALESCE(SUM(span_count), 0) FROM otlp_traces"


def stored_spans(database_url: str) -> int:
    from urllib.parse import urlparse

    if database_url.startswith("postgres"):
        import psycopg

        with psycopg.connect(database_url) as connection:
            return connection.execute(STORED_SPANS).fetchone()[0]
    import sqlite3

    with sqlite3.connect(urlparse(database_url).path) as connection:
        return connection.execute(STORED_SPANS).fetchone()[0]


def measure(server, token, meter, shape, traces, clients, database_url) -> dict:
    endpoint = f"http://127.0.0.1:{server.port}/v1/traces"
    before_rows = stored_spans(database_url)
    rss: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss.append(sum(server.worker_rss_kb().values()))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    cpu0 = meter.snapshot()
    done = multiprocessing.Queue()
    per_client = traces // clients
    start = time.perf_counter()
    processes = [
        multiprocessing.Process(
            target=client,
            args=(endpoint, token, shape, per_client, 10_000_000 * (i + 1) + before_rows, done),
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    client_cpu = sum(done.get(timeout=1800) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    elapsed = time.perf_counter() - start
    stop.set()
    sampler.join()
    cpu1 = meter.snapshot()
    spans = per_client * clients * SPANS_PER_TRACE
    stored = stored_spans(database_url) - before_rows
    seconds = {k: cpu1[k] - cpu0[k] for k in ("server", "database")}
    seconds["client"] = client_cpu
    cpu = {k: round(v * 1000 / (spans / 1000), 1) for k, v in seconds.items()}
    # Other work on this shared machine takes CPU from the run: what two idle cores would
    # sustain at the CPU this run cost (client, server and database on the same cores).
    idle = round(2 * spans / sum(seconds.values())) if sum(seconds.values()) else None
    return {
        "shape": shape,
        "spans": spans,
        "stored": stored,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "spans_per_s": round(spans / elapsed),
        "cpu_ms_per_1000_spans": cpu,
        "spans_per_s_on_2_idle_cores": idle,
        "worker_rss_kb_first_last_max": [rss[0], rss[-1], max(rss)] if rss else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=f"sqlite:///{WORK / 'otlp_ingest.sqlite3'}")
    parser.add_argument("--traces", type=int, default=20_000, help="traces per shape (20,000)")
    parser.add_argument("--clients", type=int, default=2, help="exporting processes (2)")
    parser.add_argument("--shapes", default="genai,openinference")
    parser.add_argument("--tag", default="", help="results file suffix (e.g. 1m)")
    parser.add_argument(
        "--runs-migration",
        default="",
        help="migrate the runs app back to this migration (0007_otlp_spans: the OTLP writes "
        "without the later triggers on skill_runs and skill_run_logs)",
    )
    args = parser.parse_args()

    env = dict(
        os.environ,
        DATABASE_URL=args.database_url,
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        DEBUG="0",
        SKILLAUDIT_DATA_DIR=str(WORK / "otlp_ingest_data"),
        GUNICORN_ACCESSLOG="/dev/null",
        # One exporter posts ~20 requests a second: the API's per-user rate is for people.
        API_THROTTLE_USER="off",
        # The database CPU is read from the backends connected at the start and the end of
        # each shape: a connection closed at CONN_MAX_AGE (600 s) in between takes its CPU
        # with it (a default-size run measured -141.6 ms per 1,000 spans that way).
        CONN_MAX_AGE=os.environ.get("CONN_MAX_AGE", "86400"),
    )
    WORK.mkdir(parents=True, exist_ok=True)
    prepare_database(args.database_url, env)
    if args.runs_migration:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "runs", args.runs_migration, "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
    token = make_token(env)
    vendor = "postgresql" if args.database_url.startswith("postgres") else "sqlite"
    figures: dict[str, dict] = {}
    with Gunicorn(env, WORK / "otlp_ingest_gunicorn.log", workers=2) as server:
        meter = CpuMeter(server, args.database_url)
        measure(server, token, meter, "genai", 200, 1, args.database_url)  # warm-up
        for shape in args.shapes.split(","):
            figures[shape] = measure(
                server, token, meter, shape, args.traces, args.clients, args.database_url
            )
    result = {
        "script": "bench/otlp_ingest.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "database": vendor,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "command": " ".join(sys.argv),
        "runs_migration": args.runs_migration or "latest",
        "figures": figures,
    }
    from bench import report

    out = report.save(f"otlp-ingest-{vendor}{'-' + args.tag if args.tag else ''}", result)
    print(f"{vendor}, load average {result['load_average_1m']}:")
    print(
        "| shape | spans | stored | seconds | spans/s | CPU ms/1000 spans | spans/s on 2 "
        "idle cores | worker RSS kB first / last / max |"
    )
    print("|---|--:|--:|--:|--:|---|--:|---|")
    for shape, f in figures.items():
        cpu = ", ".join(f"{k} {v}" for k, v in f["cpu_ms_per_1000_spans"].items())
        rss = " / ".join(f"{v:,}" for v in f["worker_rss_kb_first_last_max"])
        print(
            f"| {shape} | {f['spans']:,} | {f['stored']:,} | {f['seconds']} | "
            f"{f['spans_per_s']:,} | {cpu} | {f['spans_per_s_on_2_idle_cores']:,} | {rss} |"
        )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
