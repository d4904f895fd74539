#!/usr/bin/env python
"""Two versions of the code, paired: the same pages on one database, timed in turns.

    .venv/bin/python bench/versions.py --base 4b42e14 \\
        --database-url postgres://postgres@127.0.0.1:5432/sa_bench_100k

A change that should not make pages slower (a reshaping of the code, say) is judged by
timing the pages of the commit before it and of the code now, against the same database,
in turns: two bench/growth.py children, one started from a git worktree of ``--base`` and
one from this checkout, one request each per round with the order alternating, so both
see the same machine. The ratio of the medians (now / base) is the verdict: the list, run
and tree pages should stay at or below 1 within the noise. Results go to
results/versions-<vendor>-<base>-<now>.json and RESULTS.md. ``--now REV`` times another
commit instead of this checkout (both from worktrees).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.growth import WORK, Child  # noqa: E402 (after the path is set)
from bench.served import bench_env  # noqa: E402


def short(rev: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--now", help="the commit to compare (default: this checkout as it is)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--repeat", type=int, default=20, help="rounds per page")
    parser.add_argument("--only", help="time only the pages whose name contains this")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or DATABASE_URL) is required")
    import dj_database_url

    vendor = dj_database_url.parse(args.database_url)["ENGINE"].rsplit(".", 1)[-1]
    vendor = "postgresql" if vendor == "postgresql" else "sqlite"
    from bench.served import collect_static

    site_dir = WORK / "site"
    site_dir.mkdir(parents=True, exist_ok=True)
    collect_static(bench_env(args.database_url, secrets.token_urlsafe(40), site_dir))
    base_rev = short(args.base, ROOT)
    head_rev = short(args.now or "HEAD", ROOT)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sa-bench-versions-") as tmp:
        trees = {"base": worktree(args.database_url, base_rev, Path(tmp) / "base")}
        if args.now:
            trees["now"] = worktree(args.database_url, head_rev, Path(tmp) / "now")
        try:
            rows = compare(args, trees["base"], trees.get("now", ROOT))
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False
                )
    figures = {
        row["name"]: {
            "base median ms": row["base_median_ms"],
            "now median ms": row["now_median_ms"],
            "now / base": row["ratio"],
            "CPU now / base": row["cpu_ratio"],
        }
        for row in rows
    }
    record = {
        "script": f"bench/versions.py: {base_rev} (base) → {head_rev} (now), {args.repeat} rounds "
        f"in turns, load average {load_before[0]:.1f} → {os.getloadavg()[0]:.1f}",
        "database": f"{vendor} {args.database_url.rsplit('/', 1)[-1]}",
        "date": started.isoformat(timespec="seconds"),
        "base": base_rev,
        "now": head_rev,
        "repeat": args.repeat,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "figures": figures,
    }
    if args.only:  # a partial run is not a result
        return
    from bench import report

    path = report.save(f"versions-{vendor}-{base_rev}-{head_rev}", record)
    print(f"wrote {path.relative_to(ROOT)}")
    report.write()


def worktree(database_url: str, rev: str, path: Path) -> Path:
    """A checkout of ``rev`` at ``path`` with its own static files collected (production
    settings serve them from its manifest)."""
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), rev],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    site = path / WORK.relative_to(ROOT) / "site"
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=path,
        env=bench_env(database_url, secrets.token_urlsafe(40), site),
        check=True,
    )
    return path


def compare(args, base_root: Path, now_root: Path) -> list[dict]:
    base = Child(args.database_url, root=base_root)
    now = Child(args.database_url, root=now_root)
    rows = []
    try:
        for name in sorted(base.pages & now.pages):
            if args.only and args.only not in name:
                continue
            samples: dict[str, list[dict]] = {"base": [], "now": []}
            for _ in range(2):  # warm-up
                base.time(name), now.time(name)
            for round_ in range(args.repeat):
                order = [("base", base), ("now", now)]
                for label, side in order if round_ % 2 == 0 else order[::-1]:
                    samples[label].append(side.time(name))
            row = {"name": name}
            for label in ("base", "now"):
                row[f"{label}_median_ms"] = round(
                    statistics.median(s["ms"] for s in samples[label]), 3
                )
                row[f"{label}_cpu_ms"] = statistics.median(s["cpu_ms"] for s in samples[label])
            row["ratio"] = round(row["now_median_ms"] / row["base_median_ms"], 3)
            row["cpu_ratio"] = round(row["now_cpu_ms"] / row["base_cpu_ms"], 3)
            rows.append(row)
            print(
                f"  {name:45} {row['base_median_ms']:7.2f} -> {row['now_median_ms']:7.2f} ms "
                f"= {row['ratio']:.2f}x (CPU {row['cpu_ratio']:.2f}x)",
                flush=True,
            )
    finally:
        base.close()
        now.close()
    return rows


if __name__ == "__main__":
    main()
