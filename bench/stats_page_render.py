#!/usr/bin/env python
"""/stats/'s drawing alone: the seven charts, their tables and the template, from a series
already read (no database; the selectors' own time is measured with the buckets).

    .venv/bin/python bench/stats_page_render.py
    .venv/bin/python bench/stats_page_render.py --skills 500 --repeat 20

The series is synthetic (selectors.StatsSeries with every status in every bucket, usage of
three models per bucket and skill, a hostile skill name among them) for the windows the
page offers: 24 h by hour, 7 days by day, 30 days by day and 30 days by hour (720 buckets,
the largest the page draws). Each case is rendered --repeat times after one warm-up
through runs.web.stats_views.page_context and the page's template; the median and the
largest wall-clock and process CPU times and the page's size are printed with the load
average (the machine is shared: CPU time is the steadier figure).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STATUSES = ("ok", "error", "timeout", "budget_exceeded", "running", "dry_run")
MODELS = ("gpt-4o", "claude-sonnet-4", "")  # "" = a step naming no model (unpriced)
CASES = (("24h by hour", 24, "hour"), ("7d by day", 7, "day"), ("30d by day", 30, "day"))
CASES += (("30d by hour", 30 * 24, "hour"),)


def series(buckets: int, bucket: str, skills: int):
    from runs import selectors

    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    until = datetime(2026, 12, 3, tzinfo=UTC)
    since = until - step * buckets
    query = selectors.StatsQuery(since=since, until=until, bucket=bucket)

    def usage(n: int):
        return tuple(
            selectors.ModelUsage(model, n, 2 * n, 900 * n, 200 * n, 100 * n, 30 * n)
            for model in MODELS
        )

    def point(start, n: int, cls=selectors.StatsPoint, **extra):
        runs = {status: n * (i + 1) for i, status in enumerate(STATUSES)}
        return cls(
            start=start,
            runs=runs,
            total_runs=sum(runs.values()),
            failed_runs=runs["error"] + runs["timeout"] + runs["budget_exceeded"],
            runtime_p50=1.5 + n % 7,
            runtime_p95=12.0 + n % 11,
            input_tokens=1000 * n,
            output_tokens=300 * n,
            thinking_tokens=50 * n,
            usage=usage(n),
            **extra,
        )

    starts = [since + step * i for i in range(buckets)]
    points = [point(start, 1 + i % 9) for i, start in enumerate(starts)]
    names = [f"skill-{i:04d}" for i in range(skills - 1)]
    names.append('<img src=x onerror="window.__xss=1">')
    skill_rows = [
        point(
            since,
            1 + i % 13,
            cls=selectors.SkillStats,
            skill_id=name,
            usage_by_bucket=tuple((start, usage(1)) for start in starts),
        )
        for i, name in enumerate(names)
    ]
    return selectors.StatsSeries(query, points, skill_rows, point(since, 40))


def prices():
    from runs import costs

    start = datetime(2024, 1, 1, tzinfo=UTC)
    return costs.PriceTable(
        [
            costs.Price("gpt-4o*", start, Decimal("2.50"), Decimal("10.00"), Decimal("1.25")),
            costs.Price("claude-sonnet-4", start, Decimal("3.00"), Decimal("15.00")),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skills", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    os.environ.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="0",
        SKILLAUDIT_DATA_DIR=tempfile.mkdtemp(prefix="sa-stats-render-"),
        DJANGO_SETTINGS_MODULE="skillaudit_site.settings",
        LOG_LEVEL="ERROR",
    )
    import django

    django.setup()
    from django.conf import settings

    # No collected static files here: plain static URLs (the manifest adds a dict look-up).
    settings.STORAGES["staticfiles"] = {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
    }
    from django.contrib.auth.models import AnonymousUser
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    from runs.web import stats_views

    request = RequestFactory().get("/stats/")
    request.user = AnonymousUser()
    table = prices()
    print(f"skills {args.skills}, repeat {args.repeat}, load average {os.getloadavg()}")
    for name, buckets, bucket in CASES:
        data = series(buckets, bucket, args.skills)
        walls, cpus, size = [], [], 0
        for attempt in range(args.repeat + 1):
            wall, cpu = time.perf_counter(), time.process_time()
            context = stats_views.page_context(data.query, data, table)
            context.update({"nav": "stats", "window_value": "", "form": {}})
            page = render_to_string("runs/stats.html", context, request=request)
            if attempt:  # the first is the warm-up
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
            size = len(page.encode())
        print(
            f"{name:>12}: wall median {statistics.median(walls) * 1000:7.1f} ms, "
            f"max {max(walls) * 1000:7.1f} ms; CPU median {statistics.median(cpus) * 1000:7.1f}"
            f" ms; page {size / 1000:,.0f} kB"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
