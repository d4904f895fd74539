#!/usr/bin/env python
"""Search inside traces: query times, index size, and what the index costs the
batch ingest and the purge.

    # query times and index size on a generated history (bench/generate.py), in process
    .venv/bin/python bench/search.py queries --database-url postgres://postgres@127.0.0.1:5432/sa_bench_1m
    # the same pages on a shared data set, writing nothing to it
    .venv/bin/python bench/search.py queries --read-only --database-url postgres://postgres@127.0.0.1:5432/sa_bench_1m
    # the probes' containment test on and off, in turns (CPU per page; writes nothing)
    .venv/bin/python bench/search.py probe-ab --database-url postgres://postgres@127.0.0.1:5432/sa_bench_100k
    # batch ingest through the API (gunicorn), with and without the index, in turns
    .venv/bin/python bench/search.py ingest --database-url postgres://postgres@127.0.0.1:5432/sa_bench_search_ingest
    # SQLite: one purge batch under 0008's search triggers, 0014's and none, in turns (CPU)
    .venv/bin/python bench/search.py purge-triggers --rounds 4 --database-url sqlite:///var/bench/search_10k.sqlite3
    # the purge on copies of a generated history, with and without the index
    .venv/bin/python bench/search.py purge --database-url postgres://postgres@127.0.0.1:5432/sa_bench_1m

``queries`` plants a few rare words (events appended through the manager, as any writer
would; idempotent), then times the list page (/runs/?q=..., the Django test client, DEBUG
off, with its snippets and bounded count) and the API list for each case: a rare word, a
rare word with a skill filter, a word in most events, two such words, a word with an
exclusion, a phrase, an identifier, a Japanese substring. Targets (PostgreSQL at
1M runs / 10M events): p95 <= 200 ms rare, <= 500 ms common, <= 300 ms rare + skill;
SQLite within 2x. ``ingest`` and ``purge`` compare the same work with the index installed
and removed (the migration's own install/uninstall): at most 30% slower each.

Results go to bench/results/search-<part>-<database>-<runs>.json (rendered into RESULTS.md by
bench/report.py) and are printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PY = str(ROOT / ".venv" / "bin" / "python")
WORK = ROOT / "var" / "bench"
COPY_NAME = "sa_bench_search_purge_copy"
PLANTED_SEQUENCE = 9_000_000_000  # far above any generated sequence

RARE = "quokkaword"
RARE_SKILL = "wombatword"
IDENTIFIER = "ORD-7731-ZQ"
JAPANESE = "東京都庁の定例会議"


def django_setup(database_url: str, static: bool = False) -> None:
    from bench.served import bench_env, collect_static

    env = bench_env(
        database_url,
        os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        WORK / "search_data",
    )
    env.update(STATEMENT_TIMEOUT_MS="0", ALLOWED_HOSTS="127.0.0.1,localhost,testserver")
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    if static:
        collect_static(env)
    import django

    django.setup()


def search_index():
    return importlib.import_module("runs.migrations.0008_search_index")


def set_index(installed: bool) -> None:
    """Install or remove the search index with the migrations' own functions (0008, and
    0014's faster SQLite triggers over it)."""
    from django.db import connection

    m = search_index()
    present = index_present()
    if present == installed:
        return
    with connection.schema_editor() as editor:
        if installed:
            m.install(None, editor)
            importlib.import_module("runs.migrations.0014_search_speed").install(None, editor)
        else:
            m.uninstall(None, editor)


def index_present() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT 1 FROM pg_class WHERE relname = 'skill_run_logs_search_words'")
        else:
            cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'skill_run_search_log_insert'")
        return cursor.fetchone() is not None


def meta(database_url: str) -> dict:
    from django.db import connection

    from runs.models import SkillRun, SkillRunLog

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'skill_runs'")
            runs = cursor.fetchone()[0]
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = 'skill_run_logs'"
            )
            events = cursor.fetchone()[0]
            if runs < 0 or events < 0:  # never analyzed (a new database)
                runs, events = SkillRun.objects.count(), SkillRunLog.objects.count()
        else:
            runs, events = SkillRun.objects.count(), SkillRunLog.objects.count()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "database": connection.vendor,
        "runs": int(runs),
        "events": int(events),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }


# --- queries --------------------------------------------------------------------------------


def spread_ids(n: int, skill: str | None = None) -> list[str]:
    """N run ids spread over the history (every k-th in the started_at order)."""
    from runs.models import SkillRun

    runs = SkillRun.objects.all() if skill is None else SkillRun.objects.filter(skill_id=skill)
    runs = runs.filter(parent_run_id="").order_by("-started_at", "-id")
    total = runs.count() if skill is not None else min(runs.count(), 10**7)
    step = max(total // n, 1)
    return [runs.values_list("id", flat=True)[i * step] for i in range(min(n, total))]


def plant(run_ids, text: str, tag: int) -> None:
    from runs import contract
    from runs.models import SkillRunLog

    for run_id in run_ids:
        log = contract.SkillRunLog(
            run_id=run_id,
            sequence=PLANTED_SEQUENCE + tag,
            event_type="tool_result",
            payload={"tool": "lookup", "result": text},
            created_at=datetime.now(UTC),
        )
        try:
            SkillRunLog.objects.append([log])
        except contract.Conflict:
            pass  # planted by an earlier run of this script


def top_skill() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT skill_id FROM skill_runs WHERE parent_run_id = '' "
            "GROUP BY skill_id ORDER BY count(*) DESC LIMIT 1"
        )
        return cursor.fetchone()[0]


def backend_pid() -> int | None:
    """The PostgreSQL backend serving this process's queries (None on SQLite: in process)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def timed(client, url: str, params: dict, repeat: int) -> dict:
    """Wall-clock median and p95 of ``repeat`` requests, and the CPU they cost per request
    (this process + its PostgreSQL backend, from /proc): the machine is shared, so the
    wall clock also counts the time other work held the CPU."""
    from bench.api_ingest import cpu_seconds

    for _ in range(2):  # warm-up
        response = client.get(url, params)
        assert response.status_code == 200, (url, params, response.status_code)
    pid = backend_pid()
    backends = [pid] if pid else []
    process, backend = time.process_time(), cpu_seconds(backends)
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url, params)
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200
    cpu_ms = (time.process_time() - process + cpu_seconds(backends) - backend) * 1000 / repeat
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(p95, 1),
        "cpu_ms": round(cpu_ms, 1),
    }


def read_only_queries(args) -> dict:
    """The search's page queries on a database this script must not write to (a shared
    reference data set): nothing planted, no user or session, no ANALYZE. Each case is
    the list's page and its snippets as the view asks for them (runs.selectors), timed in
    process with this process's and the backend's CPU; rendering is not included. The
    rare word is a word of one run's own text (its id), found once."""
    django_setup(args.database_url)
    from django.db import connection
    from django.http import QueryDict

    from bench.api_ingest import cpu_seconds
    from runs import selectors
    from runs.filters import RunFilterSet
    from runs.models import SkillRun

    result = meta(args.database_url)
    skill = top_skill()
    top = SkillRun.objects.filter(parent_run_id="").order_by("-started_at", "-id")
    rare_run, rare_skill = top.values_list("id", "skill_id")[top.count() // 2]
    cases = [
        ("no search (the list as before, for reference)", {}, None),
        ("rare word (one run's id, mid-history)", {"q": rare_run}, 200),
        ("rare word + skill filter", {"q": rare_run, "skill": rare_skill}, 300),
        ("word in most events", {"q": "agent"}, 500),
        ("two common words", {"q": "agent checked"}, 500),
        ("common word, a rare one excluded", {"q": f"agent -{rare_run}"}, 500),
        ("common phrase", {"q": '"token expired"'}, 500),
        ("common word + skill filter", {"q": "agent", "skill": skill}, 500),
    ]
    pid = backend_pid()
    figures = {}
    for name, params, target in cases:
        data = QueryDict(mutable=True)
        data.update(params)

        def page(data=data):
            filterset = RunFilterSet(data, queryset=SkillRun.objects.all())
            assert filterset.is_valid(), filterset.error_messages
            rows = selectors.newest_first_page(filterset.qs, 50).rows
            if filterset.search_query is not None:
                selectors.with_search_snippets(rows, filterset.search_query)
            return len(rows)

        found = page()  # warm-up
        samples = []
        cpu = time.process_time() + cpu_seconds([pid])
        for _ in range(args.repeat):
            began = time.perf_counter()
            page()
            samples.append((time.perf_counter() - began) * 1000)
        cpu_ms = (time.process_time() + cpu_seconds([pid]) - cpu) * 1000 / args.repeat
        samples.sort()
        p95 = samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]
        figures[name] = {
            "q": params.get("q", ""),
            "filter": "skill" if "skill" in params else "",
            "rows on the page": found,
            "median ms": round(statistics.median(samples), 1),
            "p95 ms": round(p95, 1),
            "CPU ms": round(cpu_ms, 1),
            "target p95 ms": target or "",
            "meets": "" if not target else "pass" if p95 <= target else "FAIL",
        }
        print(name, figures[name], flush=True)
    connection.close()
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["figures"] = figures
    return result


def probe_ab(args) -> dict:
    """The probes' containment test (runs.managers.SearchSql._pg_probe) on and off, in
    turns, on one database: CPU (this process + its backend) of the list's page and
    snippets per case, writing nothing. Off is the search as it was before the test."""
    django_setup(args.database_url)
    from django.http import QueryDict

    from bench.api_ingest import cpu_seconds
    from runs import search, selectors
    from runs.filters import RunFilterSet
    from runs.models import SkillRun

    result = meta(args.database_url)
    cases = {
        "word in most events": "agent",
        "two common words": "agent checked",
        "common word, a rare one excluded": f"agent -{RARE}",
        "common phrase": '"token expired"',
        "rare word": RARE,
    }
    pattern = search.Clause.containment_pattern
    pid = backend_pid()
    samples = {(name, state): [] for name in cases for state in ("off", "on")}
    for _ in range(args.repeat):
        for name, q in cases.items():
            for state in ("off", "on"):
                search.Clause.containment_pattern = pattern if state == "on" else None
                data = QueryDict(mutable=True)
                data.update({"q": q})
                cpu = time.process_time() + cpu_seconds([pid])
                filterset = RunFilterSet(data, queryset=SkillRun.objects.all())
                assert filterset.is_valid()
                rows = selectors.newest_first_page(filterset.qs, 50).rows
                selectors.with_search_snippets(rows, filterset.search_query)
                samples[(name, state)].append(
                    (time.process_time() + cpu_seconds([pid]) - cpu) * 1000
                )
    search.Clause.containment_pattern = pattern
    figures = {}
    for name, q in cases.items():
        off = statistics.median(samples[(name, "off")])
        on = statistics.median(samples[(name, "on")])
        figures[name] = {
            "q": q,
            "CPU ms without the test (median)": round(off, 1),
            "CPU ms with the test (median)": round(on, 1),
            "ratio": round(off / on, 1) if on else "",
        }
        print(name, figures[name], flush=True)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["figures"] = figures
    return result


def queries(args) -> dict:
    if args.read_only:
        return read_only_queries(args)
    django_setup(args.database_url, static=True)
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    result = meta(args.database_url)
    skill = top_skill()
    plant(spread_ids(20), f"a {RARE} was seen", 1)
    plant(spread_ids(20, skill), f"the {RARE_SKILL} of this skill", 2)
    plant(spread_ids(20), f"the {RARE_SKILL} elsewhere", 3)
    plant(spread_ids(20), f"order {IDENTIFIER} shipped", 4)
    plant(spread_ids(20), f"会議: {JAPANESE}は明日", 5)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE skill_run_logs")
    user, _ = User.objects.get_or_create(username="bench-search", is_staff=True)
    user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(user)
    cases = [
        ("no search (the list as before, for reference)", {}, None),
        ("rare word", {"q": RARE}, 200),
        ("rare word + skill filter", {"q": RARE_SKILL, "skill": skill}, 300),
        ("word in most events", {"q": "agent"}, 500),
        ("two common words", {"q": "agent checked"}, 500),
        ("common word, a rare one excluded", {"q": f"agent -{RARE}"}, 500),
        ("common phrase", {"q": '"token expired"'}, 500),
        ("identifier", {"q": IDENTIFIER}, 200),
        ("Japanese substring", {"q": JAPANESE[2:6]}, 200),
        ("common word + skill filter", {"q": "agent", "skill": skill}, 500),
    ]
    figures = {}
    factor = 1 if connection.vendor == "postgresql" else 2
    from django.http import QueryDict

    from runs.filters import RunFilterSet
    from runs.models import SkillRun

    for name, params, target in cases:
        data = QueryDict(mutable=True)
        data.update(params)
        filterset = RunFilterSet(data, queryset=SkillRun.objects.all())
        assert filterset.is_valid(), filterset.error_messages
        found = len(filterset.qs.values_list("id", flat=True)[:50])
        page = timed(client, "/runs/", params, args.repeat)
        api_list = timed(api, "/api/runs/", params, args.repeat)
        worst = max(page["p95_ms"], api_list["p95_ms"])
        figures[name] = {
            "q": params.get("q", ""),
            "filter": "skill" if "skill" in params else "",
            "rows on the page": found,
            "page median ms": page["median_ms"],
            "page p95 ms": page["p95_ms"],
            "API median ms": api_list["median_ms"],
            "API p95 ms": api_list["p95_ms"],
            "page CPU ms": page["cpu_ms"],
            "API CPU ms": api_list["cpu_ms"],
            "target p95 ms": target * factor if target else "",
            "meets": "" if not target else "pass" if worst <= target * factor else "FAIL",
        }
        print(name, figures[name], flush=True)
    result["index size"] = index_sizes()
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["figures"] = figures
    return result


def index_sizes() -> dict:
    """Bytes of each search index beside its table's (SQLite: from dbstat, when built in)."""
    from django.db import connection

    sizes = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for name in [
                "skill_runs",
                "skill_runs_search_words",
                "skill_runs_search_chars",
                "skill_run_logs",
                "skill_run_logs_search_words",
                "skill_run_logs_search_chars",
            ]:
                cursor.execute("SELECT pg_relation_size(%s)", [name])
                sizes[name] = cursor.fetchone()[0]
            return sizes
        try:
            cursor.execute(
                "SELECT CASE WHEN name LIKE 'skill_run_search_runs%%' THEN 'search (runs)' "
                "WHEN name LIKE 'skill_run_search_logs%%' THEN 'search (events)' "
                "WHEN name LIKE 'skill_run_search_keys%%' THEN 'search (run keys)' "
                "ELSE name END, SUM(pgsize) FROM dbstat "
                "WHERE name IN ('skill_runs', 'skill_run_logs') OR name LIKE 'skill_run_search%%' "
                "GROUP BY 1"
            )
            return {name: size for name, size in cursor.fetchall()}
        except Exception as exc:  # dbstat is a compile-time option
            return {"unavailable": str(exc)}


# --- ingest ---------------------------------------------------------------------------------


def ingest(args) -> dict:
    from bench import api_ingest
    from bench.served import Gunicorn
    from runs.client import HttpStorage

    env = dict(
        os.environ,
        DATABASE_URL=args.database_url,
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        DEBUG="0",
        SKILLAUDIT_DATA_DIR=str(WORK / "search_ingest_data"),
        GUNICORN_ACCESSLOG="/dev/null",
    )
    WORK.mkdir(parents=True, exist_ok=True)
    api_ingest.prepare_database(args.database_url, env)
    token = api_ingest.make_token(env)
    django_setup(args.database_url)
    result = meta(args.database_url)
    samples: dict[str, list[dict]] = {"with the index": [], "without the index": []}
    with Gunicorn(env, WORK / "search_ingest_gunicorn.log", workers=2) as server:
        storage = HttpStorage(f"http://127.0.0.1:{server.port}", token, timeout=300)
        meter = api_ingest.CpuMeter(server, args.database_url)
        api_ingest.batch_endpoint(storage, 1, 1, 1, 100, "warm")
        for round_ in range(args.rounds):
            for state in samples:
                set_index(state == "with the index")
                figure = api_ingest.batch_endpoint(
                    storage,
                    1,
                    args.runs,
                    args.batches,
                    1000,
                    f"r{round_}-{'on' if state == 'with the index' else 'off'}",
                    meter,
                )
                samples[state].append(figure)
                print(round_, state, figure, flush=True)
    set_index(True)
    figures = {}
    for state, figs in samples.items():
        cpu = {
            key: round(statistics.median(f["cpu_ms_per_1000_events"][key] for f in figs), 1)
            for key in figs[0]["cpu_ms_per_1000_events"]
        }
        figures[state] = {
            "events per round": figs[0]["events"],
            "rounds": len(figs),
            "events/s (median)": round(statistics.median(f["events_per_s"] for f in figs)),
            "events/s (each round)": ", ".join(str(f["events_per_s"]) for f in figs),
            "CPU ms per 1,000 events (server / database / client)": (
                f"{cpu['server']} / {cpu['database']} / {cpu['client']}"
            ),
            "events/s on 2 idle cores": round(
                statistics.median(f["events_per_s_on_2_idle_cores"] for f in figs)
            ),
        }
    with_, without = figures["with the index"], figures["without the index"]
    slower = 1 - with_["events/s (median)"] / without["events/s (median)"]
    slower_idle = 1 - with_["events/s on 2 idle cores"] / without["events/s on 2 idle cores"]
    figures["with the index"]["slower than without"] = f"{slower:.0%} ({slower_idle:.0%} idle)"
    figures["with the index"]["meets (<= 30%)"] = "pass" if slower <= 0.30 else "FAIL"
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["figures"] = figures
    return result


# --- purge ----------------------------------------------------------------------------------


def fresh_copy(source: str) -> str:
    import dj_database_url

    config = dj_database_url.parse(source)
    if config["ENGINE"].endswith("sqlite3"):
        import sqlite3

        target = Path(config["NAME"]).with_name("search_purge_copy.sqlite3")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        with sqlite3.connect(config["NAME"]) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        return f"sqlite:///{target}"
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(source)
    template = info["dbname"]
    info["dbname"] = "postgres"
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(COPY_NAME)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(COPY_NAME), sql.Identifier(template)
            )
        )
    return source.rsplit("/", 1)[0] + "/" + COPY_NAME


def purge_child(args) -> None:
    """In a child process, on a copy: the index set as asked, then the purge, timed."""
    django_setup(args.database_url)
    from django.db import connection

    from runs.services.purge import purge_started_before

    set_index(args.index == "on")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE skill_runs")
            cursor.execute("VACUUM ANALYZE skill_run_logs")
    from bench.api_ingest import cpu_seconds

    cutoff = datetime.fromisoformat(args.before)
    pid = backend_pid()
    backends = [pid] if pid else []
    cpu = time.process_time() + cpu_seconds(backends)
    began = time.perf_counter()
    runs, logs = purge_started_before(cutoff)
    seconds = time.perf_counter() - began
    cpu = time.process_time() + cpu_seconds(backends) - cpu
    print(
        json.dumps(
            {"runs": runs, "logs": logs, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2)}
        )
    )


def purge_triggers(args) -> dict:
    """SQLite: one purge batch's deletes (the oldest ``--batch`` runs and their events, one
    transaction) under 0008's search triggers, 0014's and none, in turns on fresh copies
    of the history, CPU of this process (SQLite runs in it)."""
    import shutil
    import sqlite3

    import dj_database_url

    source = dj_database_url.parse(args.database_url)["NAME"]
    target = Path(source).with_name("search_purge_triggers.sqlite3")
    django_setup(args.database_url)
    result = meta(args.database_url)
    old = search_index()
    new = importlib.import_module("runs.migrations.0014_search_speed")
    variants = {
        "0008 triggers": old.SQLITE_TRIGGERS,
        "0014 triggers": new.SQLITE_TRIGGERS,
        "no search triggers": [],
    }
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    rows = 0
    for _ in range(args.rounds):
        for name, triggers in variants.items():
            shutil.copy(source, target)
            db = sqlite3.connect(target, isolation_level=None)
            for trigger in old.SQLITE_TRIGGER_NAMES:
                db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            for statement in triggers:
                db.execute(statement)
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM skill_runs ORDER BY started_at LIMIT ?", [args.batch]
                )
            ]
            marks = ",".join("?" * len(ids))
            began = time.process_time()
            db.execute("BEGIN")
            logs = db.execute(f"DELETE FROM skill_run_logs WHERE run_id IN ({marks})", ids)
            rows = logs.rowcount
            runs = db.execute(f"DELETE FROM skill_runs WHERE id IN ({marks})", ids)
            rows += runs.rowcount
            db.execute("COMMIT")
            cpu[name].append(time.process_time() - began)
            db.close()
    target.unlink(missing_ok=True)
    base = statistics.median(cpu["no search triggers"])
    figures = {}
    for name, samples in cpu.items():
        median = statistics.median(samples)
        figures[name] = {
            "rows deleted": rows,
            "CPU ms (median)": round(median * 1000),
            "CPU ms (each round)": ", ".join(str(round(x * 1000)) for x in samples),
            "rows per CPU s": round(rows / median),
            "slower than no search triggers": f"{1 - base / median:.0%}",
        }
        print(name, figures[name], flush=True)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["figures"] = figures
    return result


def purge(args) -> dict:
    import psycopg  # noqa: F401  (PostgreSQL copies)

    django_setup(args.database_url)
    from django.db import connection

    from runs.models import SkillRun

    result = meta(args.database_url)
    total = result["runs"]
    cutoff = (
        SkillRun.objects.order_by("started_at")
        .values_list("started_at", flat=True)[int(total * args.share)]
        .isoformat()
    )
    connection.close()
    samples: dict[str, list[dict]] = {"with the index": [], "without the index": []}
    for round_ in range(args.rounds):
        for state in samples:
            url = fresh_copy(args.database_url)
            out = (
                subprocess.run(
                    [
                        PY,
                        __file__,
                        "purge-child",
                        "--database-url",
                        url,
                        "--before",
                        cutoff,
                        "--index",
                        "on" if state == "with the index" else "off",
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            figure = json.loads(out)
            figure["rows/s"] = round((figure["runs"] + figure["logs"]) / figure["seconds"])
            figure["rows per CPU s"] = round((figure["runs"] + figure["logs"]) / figure["cpu_s"])
            samples[state].append(figure)
            print(round_, state, figure, flush=True)
    figures = {}
    for state, figs in samples.items():
        figures[state] = {
            "runs deleted": figs[0]["runs"],
            "events deleted": figs[0]["logs"],
            "rounds": len(figs),
            "rows/s (median)": round(statistics.median(f["rows/s"] for f in figs)),
            "rows/s (each round)": ", ".join(str(f["rows/s"]) for f in figs),
            "rows per CPU s (median)": round(statistics.median(f["rows per CPU s"] for f in figs)),
            "rows per CPU s (each round)": ", ".join(str(f["rows per CPU s"]) for f in figs),
        }
    slower = 1 - (
        figures["with the index"]["rows/s (median)"]
        / figures["without the index"]["rows/s (median)"]
    )
    slower_cpu = 1 - (
        figures["with the index"]["rows per CPU s (median)"]
        / figures["without the index"]["rows per CPU s (median)"]
    )
    figures["with the index"]["slower than without"] = f"{slower:.0%} ({slower_cpu:.0%} in CPU)"
    figures["with the index"]["meets (<= 30%)"] = "pass" if slower_cpu <= 0.30 else "FAIL"
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["figures"] = figures
    return result


def markdown() -> str:
    """The RESULTS.md section of every search-*.json in bench/results/."""
    from bench import report

    out = ["## Search inside traces (`bench/search.py`)", ""]
    for path in sorted(report.RESULTS.glob("search-*.json")):
        data = json.loads(path.read_text())
        out += [
            f"### {data['command'].split()[1]}: {data['database']}, {data['runs']:,} runs / "
            f"{data['events']:,} events",
            "",
            f"{data['date']}, {data['machine']}, load average before {data['load_average_before']}"
            f", after {data.get('load_average_after')}; {data['seconds']} s; "
            f"`.venv/bin/python {data['command']}`",
            "",
        ]
        rows = data["figures"]
        columns = list(next(iter(rows.values())))
        for row in rows.values():
            columns += [c for c in row if c not in columns]
        out.append("| case | " + " | ".join(columns) + " |")
        out.append("|---|" + "--:|" * len(columns))
        for name, row in rows.items():
            cells = [
                f"{row[c]:,}" if isinstance(row.get(c), int | float) else str(row.get(c, ""))
                for c in columns
            ]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        if "index size" in data:
            sizes = ", ".join(
                f"{k} {v / 1e6:,.1f} MB"
                for k, v in data["index size"].items()
                if isinstance(v, int | float)
            )
            out += ["", f"Sizes (bytes on disk): {sizes}."]
        out.append("")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "part",
        choices=[
            "queries",
            "probe-ab",
            "ingest",
            "purge",
            "purge-triggers",
            "purge-child",
            "report",
        ],
    )
    parser.add_argument("--batch", type=int, default=1000, help="purge-triggers: runs deleted")
    parser.add_argument("--database-url")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per case")
    parser.add_argument("--rounds", type=int, default=3, help="ingest/purge turns per state")
    parser.add_argument("--runs", type=int, default=2, help="ingest: runs per round")
    parser.add_argument("--batches", type=int, default=5, help="ingest: 1,000-event batches")
    parser.add_argument("--share", type=float, default=0.1, help="purge: oldest share of runs")
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="queries: write nothing (no planted words, user or ANALYZE); pages in process",
    )
    parser.add_argument("--before", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part == "report":
        print(markdown())
        return
    if not args.database_url:
        parser.error("--database-url is needed")
    if args.part == "purge-child":
        purge_child(args)
        return
    began = time.perf_counter()
    parts = {
        "queries": queries,
        "probe-ab": probe_ab,
        "ingest": ingest,
        "purge": purge,
        "purge-triggers": purge_triggers,
    }
    result = parts[args.part](args)
    result["script"] = "bench/search.py"
    result["command"] = " ".join(["bench/search.py", *sys.argv[1:]])
    result["seconds"] = round(time.perf_counter() - began, 1)
    from bench import report

    name = f"search-{args.part}{'-read-only' if args.read_only else ''}-{result['database']}"
    if args.part != "ingest":  # the ingest starts from an empty database
        name += f"-{result['runs']}"
    path = report.save(name, result)
    print(json.dumps(result, indent=2, default=str))
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
