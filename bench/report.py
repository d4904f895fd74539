"""Render bench/RESULTS.md from the measurements in bench/results/*.json.

Every number in RESULTS.md comes from a results file written by bench/generate.py,
bench/run.py or bench/purge.py; this module only formats and compares them.
"""

from __future__ import annotations

import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
OUT = BENCH / "RESULTS.md"

LIST_P95_MS = {"postgresql": 30.0, "sqlite": 50.0}
STOCK_RATIO = 10.0
DEEP_RATIO = 1.5
COUNT_MS = 5.0
RUN_1000_P95_MS = 60.0
RUN_10000_FIRST_MS = 100.0
TREE_P95_MS = 150.0
LAST_RUN_DB_MS = 2.0
GROWTH_RATIO = 1.5
RSS_GROWTH = 0.10  # a worker's RSS may grow this share over the load test and count as flat
PURGE_ROWS_PER_S = 200_000
PURGE_FLAT_MB = 10  # more deleted may cost at most this much more peak memory


def load() -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """Results of run.py, generate.py, purge.py, and other scripts' (``script`` + ``figures``)."""
    runs, generated, purges, others = [], [], [], []
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        if path.name.startswith("generate-"):
            generated.append(data)
        elif path.name.startswith("purge-"):
            purges.append(data)
        elif "meta" in data and "sections" in data:
            runs.append(data)
        elif "script" in data and "figures" in data:
            others.append(data)
    runs.sort(key=lambda r: (r["meta"]["vendor"] != "postgresql", -r["meta"]["runs"]))
    return runs, generated, purges, others


def other_section(other: dict) -> list[str]:
    """Figures another bench script recorded (e.g. bench/api_ingest.py), as a table."""
    figures = other["figures"]
    columns = sorted({key for row in figures.values() for key in row})
    out = [
        "",
        f"## `{other['script']}` on {other.get('database', '?')} ({other.get('date', '?')})",
        "",
        "| figure | " + " | ".join(columns) + " |",
        "|---|" + "--:|" * len(columns),
    ]
    for name, row in figures.items():
        cells = [f"{row[c]:,}" if isinstance(row.get(c), int | float) else str(row.get(c, "—"))
                 for c in columns]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def ms(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("pass" if ok else "**FAIL**")


def title(meta: dict) -> str:
    name = "PostgreSQL" if meta["vendor"] == "postgresql" else "SQLite"
    return f"{name}, {meta['runs']:,} runs / {meta['events']:,} events"


def rows_of(run: dict, section: str) -> list[dict]:
    return run["sections"].get(section, [])


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def targets(run: dict) -> list[tuple[str, str, str, bool | None]]:
    """(target, figure, limit, ok) for one data set."""
    meta, out = run["meta"], []
    vendor = meta["vendor"]
    limit = LIST_P95_MS[vendor]
    lists = rows_of(run, "list")
    if lists:
        worst = max(lists, key=lambda r: r["p95_ms"])
        out.append((
            "run list, no filter or any single filter: p95",
            f"worst {ms(worst['p95_ms'])} ms ({worst['name']})",
            f"≤ {limit:.0f} ms", worst["p95_ms"] <= limit,
        ))
    ratios = stock_ratios(run)
    if ratios:
        name, ratio = min(ratios.items(), key=lambda item: item[1])
        out.append((
            "run list vs stock admin changelist, same filter (median ratio)",
            f"worst {ratio:,.1f}× ({name})", f"≥ {STOCK_RATIO:.0f}×", ratio >= STOCK_RATIO,
        ))
    deep = rows_of(run, "deep")
    if len(deep) > 1:
        first = deep[0]["median_ms"]
        for row in deep[1:]:
            ratio = row["median_ms"] / first
            out.append((
                f"deep page {row['name']} vs first page (median)",
                f"{ms(row['median_ms'])} / {ms(first)} ms = {ratio:.2f}×",
                f"≤ {DEEP_RATIO}×", ratio <= DEEP_RATIO,
            ))
    counts = rows_of(run, "count")
    if counts:
        worst = max(counts, key=lambda r: r["p95_ms"])
        out.append((
            "list count (bounded_count(1000)), p95",
            f"worst {ms(worst['p95_ms'], 3)} ms ({worst['name'].removeprefix('count: ')})",
            f"≤ {COUNT_MS:.0f} ms", worst["p95_ms"] <= COUNT_MS,
        ))
    pages = by_name(rows_of(run, "pages"))
    if "run page, 1,000 events" in pages:
        p95 = pages["run page, 1,000 events"]["p95_ms"]
        out.append(("run page, 1,000 events: p95", f"{ms(p95)} ms", f"≤ {RUN_1000_P95_MS:.0f} ms",
                    p95 <= RUN_1000_P95_MS))
    if "run page, 10,000 events" in pages:
        row = pages["run page, 10,000 events"]
        out.append((
            "run page, 10,000 events, first view: p95 (first request in brackets)",
            f"{ms(row['p95_ms'])} ms ({ms(row['first_ms'])} ms)",
            f"≤ {RUN_10000_FIRST_MS:.0f} ms", row["p95_ms"] <= RUN_10000_FIRST_MS,
        ))
    if "tree page, 1,000 runs" in pages:
        p95 = pages["tree page, 1,000 runs"]["p95_ms"]
        out.append(("tree page, 1,000 runs: p95", f"{ms(p95)} ms", f"≤ {TREE_P95_MS:.0f} ms",
                    p95 <= TREE_P95_MS))
    for row in rows_of(run, "contract"):
        if row["name"].startswith("last_run_by_skills"):
            db = row["db_ms"] if row.get("db_ms") is not None else row["floor_ms"]
            where = "EXPLAIN ANALYZE" if row.get("db_ms") is not None else "raw SQL"
            out.append((
                f"{row['name']}: time in the database ({where})", f"{ms(db, 3)} ms",
                f"≤ {LAST_RUN_DB_MS:.0f} ms", db <= LAST_RUN_DB_MS,
            ))
    memory = rows_of(run, "memory")
    if memory:
        growth, detail = rss_growth(memory[0])
        out.append((
            f"gunicorn worker RSS over {memory[0]['requests']:,} requests", detail,
            f"≤ +{RSS_GROWTH:.0%}", growth <= RSS_GROWTH and memory[0]["errors"] == 0,
        ))
    return out


def stock_ratios(run: dict) -> dict[str, float]:
    ours = by_name(rows_of(run, "list"))
    ratios = {}
    for row in rows_of(run, "stock"):
        mine = ours.get(row["case"])
        if mine:
            ratios[row["case"]] = row["median_ms"] / mine["median_ms"]
    return ratios


def rss_growth(memory: dict) -> tuple[float, str]:
    first, last = memory["checkpoints"][0]["rss_kb"], memory["checkpoints"][-1]["rss_kb"]
    worst, parts = 0.0, []
    for pid, before in first.items():
        after = last.get(pid)
        if after is None:
            parts.append(f"worker {pid} gone")
            worst = float("inf")
            continue
        growth = (after - before) / before
        worst = max(worst, growth)
        parts.append(f"{before / 1024:.1f} → {after / 1024:.1f} MB")
    return worst, ", ".join(parts) + f" ({memory['errors']} errors)"


def growth_rows(runs: list[dict]) -> list[tuple[str, str, float, float, float]]:
    """(vendor, page, small median, big median, ratio) for the same page on 2 sizes."""
    out = []
    for vendor in ("postgresql", "sqlite"):
        sized = sorted((r for r in runs if r["meta"]["vendor"] == vendor),
                       key=lambda r: r["meta"]["runs"])
        if len(sized) < 2:
            continue
        small, big = sized[0], sized[-1]
        for section in ("list", "deep", "pages"):
            small_rows = by_name(rows_of(small, section))
            for row in rows_of(big, section):
                other = small_rows.get(row["name"])
                if other:
                    ratio = row["median_ms"] / other["median_ms"]
                    out.append((vendor, f"{section}: {row['name']}", other["median_ms"],
                                row["median_ms"], ratio))
    return out


def page_table(run: dict, section: str, stock: dict | None = None, http: dict | None = None):
    lines = [
        "| page | median ms | p95 ms | CPU ms | queries | raw SQL floor ms | in DB ms "
        "| HTTP median / p95 ms"
        + (" | stock admin median ms | stock / ours |" if stock is not None else " |"),
        "|---|--:|--:|--:|--:|--:|--:|--:" + ("|--:|--:|" if stock is not None else "|"),
    ]
    for row in rows_of(run, section):
        over_http = (http or {}).get(row["name"]) or (http or {}).get(f"list: {row['name']}")
        http_text = "—"
        if over_http:
            http_text = f"{ms(over_http['median_ms'])} / {ms(over_http['p95_ms'])}"
        line = (
            f"| {row['name']} | {ms(row['median_ms'])} | {ms(row['p95_ms'])} | "
            f"{ms(row.get('cpu_median_ms'))} | {row['queries']} "
            f"| {ms(row.get('floor_ms'))} | {ms(row.get('db_ms'))} | {http_text}"
        )
        if stock is not None:
            peer = stock.get(row["name"])
            if peer:
                line += (f" | {ms(peer['median_ms'])} | "
                         f"{peer['median_ms'] / row['median_ms']:,.1f}× |")
            else:
                line += " | — | — |"
        else:
            line += " |"
        lines.append(line)
    return lines


def dataset_section(run: dict) -> list[str]:
    meta = run["meta"]
    stock = {row["case"]: row for row in rows_of(run, "stock")}
    http = by_name(rows_of(run, "http"))
    out = [f"## {title(meta)}", ""]
    out += [
        f"Database `{meta['database_name']}` ({meta['database']}); {meta['top_level_runs']:,} "
        f"top-level runs; code {meta.get('commit', 'unknown')}; measured {meta['date']} in "
        f"{meta['duration_s']} s, {meta['repeat']} "
        f"timed calls per figure after 2 warm-up calls; load average before "
        f"{meta['load_average_before']}, after {meta['load_average_after']}.",
        "",
        "### Targets",
        "",
        "| target | measured | limit | result |",
        "|---|---|---|---|",
    ]
    out += [f"| {t} | {fig} | {limit} | {verdict(ok)} |" for t, fig, limit, ok in targets(run)]
    if rows_of(run, "list"):
        out += ["", "### Run list `/runs/` (in process; stock admin beside it)", ""]
        out += page_table(run, "list", stock=stock, http=http)
    if rows_of(run, "deep"):
        out += ["", "### Deep pages (keyset cursor found once by an OFFSET query at set-up)", ""]
        out += page_table(run, "deep", http=http)
        offsets = [r for r in rows_of(run, "deep") if r.get("offset")]
        if offsets:
            out += ["", "The OFFSET query that found each cursor (once, not part of the page): "
                    + ", ".join(f"{r['offset']:,} rows {r['offset_query_ms']:,.0f} ms"
                                for r in offsets) + "."]
    if rows_of(run, "count"):
        out += ["", "### The list's count: `SkillRun.objects.matching(f).bounded_count(1000)`", "",
                "| filter | median ms | p95 ms | CPU ms | queries | raw SQL floor ms | in DB ms |",
                "|---|--:|--:|--:|--:|--:|--:|"]
        out += [
            f"| {r['name'].removeprefix('count: ')} | {ms(r['median_ms'], 3)} | "
            f"{ms(r['p95_ms'], 3)} | {ms(r.get('cpu_median_ms'), 3)} | {r['queries']} | "
            f"{ms(r.get('floor_ms'), 3)} | "
            f"{ms(r.get('db_ms'), 3)} |"
            for r in rows_of(run, "count")
        ]
    if rows_of(run, "pages"):
        out += ["", "### Run, tree and skills pages (in process)", ""]
        out += page_table(run, "pages", http=http)
        out += ["", "First request of each page in this section (caches warm from earlier "
                "sections): " + ", ".join(f"{r['name']} {ms(r['first_ms'])} ms"
                                          for r in rows_of(run, "pages")) + "."]
    if rows_of(run, "contract"):
        out += ["", "### The 17 Storage methods through `runs.storage.DjangoStorage`", "",
                "| method | median ms | p95 ms | CPU ms | queries | raw SQL floor ms | in DB ms |",
                "|---|--:|--:|--:|--:|--:|--:|"]
        out += [
            f"| {r['name']} | {ms(r['median_ms'], 3)} | {ms(r['p95_ms'], 3)} | "
            f"{ms(r.get('cpu_median_ms'), 3)} | {r['queries']} | "
            f"{ms(r.get('floor_ms'), 3)} | {ms(r.get('db_ms'), 3)} |"
            for r in rows_of(run, "contract")
        ]
    if rows_of(run, "stock"):
        out += ["", "### Stock admin changelist, in process", "",
                "| filter | median ms | p95 ms | CPU ms | queries | raw SQL floor ms "
                "| HTTP median ms |",
                "|---|--:|--:|--:|--:|--:|--:|"]
        for r in rows_of(run, "stock"):
            over = http.get(r["name"])
            out.append(f"| {r['case']} | {ms(r['median_ms'])} | {ms(r['p95_ms'])} | "
                       f"{ms(r.get('cpu_median_ms'))} | {r['queries']} | {ms(r.get('floor_ms'))} | "
                       f"{ms(over['median_ms']) if over else '—'} |")
    memory = rows_of(run, "memory")
    if memory:
        m = memory[0]
        out += ["", f"### gunicorn worker memory ({m['urls']} dashboard URLs in turn, 2 client "
                f"threads, worker recycling off)", "",
                f"{m['warmup_requests']:,} warm-up requests, then {m['requests']:,} requests at "
                f"{m['requests_per_s']:,} requests/s, {m['errors']} errors. VmRSS per worker:", "",
                "| after requests | " + " | ".join(
                    f"worker {pid}" for pid in m["checkpoints"][0]["rss_kb"]) + " |",
                "|--:|" + "--:|" * len(m["checkpoints"][0]["rss_kb"])]
        for point in m["checkpoints"]:
            out.append(f"| {point['requests']:,} | " + " | ".join(
                f"{kb / 1024:.1f} MB" for kb in point["rss_kb"].values()) + " |")
    return out


def failing_details(run: dict) -> list[str]:
    """The slowest statement and its plan for every page or count that missed a target."""
    meta = run["meta"]
    out = []
    limit = LIST_P95_MS[meta["vendor"]]
    suspects = [r for r in rows_of(run, "list") if r["p95_ms"] > limit]
    suspects += [r for r in rows_of(run, "count") if r["p95_ms"] > COUNT_MS]
    pages = by_name(rows_of(run, "pages"))
    for name, page_limit in (("run page, 1,000 events", RUN_1000_P95_MS),
                             ("run page, 10,000 events", RUN_10000_FIRST_MS),
                             ("tree page, 1,000 runs", TREE_P95_MS)):
        if name in pages and pages[name]["p95_ms"] > page_limit:
            suspects.append(pages[name])
    deep = rows_of(run, "deep")
    suspects += [r for r in deep[1:] if r["median_ms"] > DEEP_RATIO * deep[0]["median_ms"]]
    suspects += [r for r in rows_of(run, "contract") if r["name"].startswith("last_run")
                 and (r.get("db_ms") if r.get("db_ms") is not None else r["floor_ms"])
                 > LAST_RUN_DB_MS]
    for row in suspects:
        if not row.get("slowest_sql"):
            continue
        out += [
            f"#### {title(meta)}: {row['name']} (p95 {ms(row['p95_ms'])} ms, its slowest "
            f"statement {ms(row['slowest_raw_ms'], 3)} ms raw)",
            "",
            "```sql",
            row["slowest_sql"],
            "```",
            "",
            "```",
            row.get("slowest_plan") or "(no plan)",
            "```",
            "",
        ]
    return out


def write() -> None:
    runs, generated, purges, others = load()
    out = [
        "# Benchmark results",
        "",
        "Written by `bench/run.py` through `bench/report.py` from the measurements in",
        "`bench/results/*.json`; every figure was measured by the committed harness. See",
        "`bench/README.md` for how to run it. Times are server time: in process means Django's",
        "test Client (middleware, view, queries, template) against the real database; HTTP",
        "means gunicorn (2 sync workers) on loopback. \"Raw SQL floor\" is the same",
        "statements run again directly on the driver's cursor; \"in DB\" is PostgreSQL's",
        "EXPLAIN ANALYZE execution time of those statements.",
        "",
    ]
    if runs:
        m = runs[0]["meta"]["machine"]
        out += [
            "## Machine",
            "",
            f"{m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}; "
            f"Python {runs[0]['meta']['python']}, Django {runs[0]['meta']['django']}.",
            "",
            "**The machine was shared**: other engineers' test suites (pytest, Chromium) ran on",
            "the same 2 cores during these measurements; the load average at the start and end",
            "of each run is given below. Contention inflates every figure, p95 most; the medians",
            "and the raw-SQL floors are the more stable numbers.",
            "",
            "## Data sets",
            "",
            "| data set | database | top-level runs | measured | repeat |",
            "|---|---|--:|---|--:|",
        ]
        out += [
            f"| {title(r['meta'])} | {r['meta']['database']} | {r['meta']['top_level_runs']:,} | "
            f"{r['meta']['date']} | {r['meta']['repeat']} |"
            for r in runs
        ]
    if generated:
        out += [
            "",
            "## Generating the data (`bench/generate.py`)",
            "",
            "| engine | runs | events | load (COPY / executemany) | rows/s while loading | "
            "indexes | analyze | total | rows/s overall | load average at the end |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        ]
        out += [
            f"| {g['engine']} | {g['runs']:,} | {g['events']:,} | "
            f"{g['runs_copy_s'] + g['events_copy_s']:,.1f} s | {g['load_rows_per_s']:,} | "
            f"{g['indexes_s']:,.1f} s | {g['analyze_s']:,.1f} s | {g['total_s']:,.1f} s | "
            f"{g['overall_rows_per_s']:,} | {[round(x, 1) for x in g['load_average']]} |"
            for g in sorted(generated, key=lambda g: (g["engine"], g["runs"]))
        ]
    growth = growth_rows(runs)
    if growth:
        out += [
            "",
            "## Growth: the same page on the smaller and the bigger data set (medians)",
            "",
            "| database | page | smaller ms | bigger ms | ratio | ≤ 1.5× |",
            "|---|---|--:|--:|--:|---|",
        ]
        out += [
            f"| {vendor} | {page} | {ms(small)} | {ms(big)} | {ratio:.2f}× | "
            f"{verdict(ratio <= GROWTH_RATIO)} |"
            for vendor, page, small, big, ratio in growth
        ]
    if purges:
        out += purge_section(purges)
    for other in others:
        out += other_section(other)
    for run in runs:
        out += [""] + dataset_section(run)
    details = [line for run in runs for line in failing_details(run)]
    if details:
        out += ["", "## Missed targets: the slowest statement and its plan", ""] + details
    OUT.write_text("\n".join(out).rstrip() + "\n")


def purge_section(purges: list[dict]) -> list[str]:
    out = [
        "",
        "## Purge (issue 4): `SkillRun.objects.purge_started_before(t)` vs `QuerySet.delete()`",
        "",
        "Each row ran in a child process on a freshly generated copy; peak memory is that "
        "process's `ru_maxrss`.",
        "",
        "| data set | method | share | runs deleted | logs deleted | seconds | rows/s | "
        "peak RSS MB | RSS growth MB | ≥ 200k rows/s |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for purge in purges:
        for row in purge["rows"]:
            rate = row["rows_per_s"]
            ok = rate >= PURGE_ROWS_PER_S if row["method"].startswith("purge_started") else None
            out.append(
                f"| {purge['engine']} {purge['runs']:,} / {purge['events']:,} | {row['method']} | "
                f"{row['share']} | {row['runs_deleted']:,} | {row['logs_deleted']:,} | "
                f"{row['seconds']:,.1f} | {rate:,.0f} | {row['peak_rss_mb']:,.1f} | "
                f"{row['rss_growth_mb']:,.1f} | {verdict(ok)} |"
            )
        purges_only = [r for r in purge["rows"] if r["method"].startswith("purge_started")]
        by_amount = sorted(purges_only, key=lambda r: r["runs_deleted"])
        if len(by_amount) >= 2:
            small, big = by_amount[0], by_amount[-1]
            flat = big["rss_growth_mb"] <= small["rss_growth_mb"] + PURGE_FLAT_MB
            out += ["", f"{purge['engine']} {purge['runs']:,}: memory while purging "
                    f"{big['runs_deleted']:,} runs grew {big['rss_growth_mb']} MB against "
                    f"{small['rss_growth_mb']} MB for {small['runs_deleted']:,} runs: "
                    f"{'flat' if flat else 'GROWING'} (limit: +{PURGE_FLAT_MB} MB) — "
                    f"{verdict(flat)}."]
        if purge.get("notes"):
            out += ["", purge["notes"]]
    return out


if __name__ == "__main__":
    write()
