"""Slow clients cannot starve gunicorn (run by .ci/run, not by pytest).

Four sockets connect and trickle their request headers, one byte every half second, for
the whole check; meanwhile /healthz is asked again and again and must answer 200 in under
a second every time. With two sync workers two such sockets were enough to make /healthz
time out; the gthread workers (skillaudit_site/gunicorn.conf.py) give a slow client one
thread, not a whole process.

Also checks the files the served site wrote in its data folder: folder 0700, files 0600.

Usage: .venv/bin/python tests/system/slow_clients.py [--seconds 20] [--worker-class sync]
(--worker-class sync shows the failure this guards against).
"""

from __future__ import annotations

import argparse
import http.client
import secrets
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.served import Gunicorn, bench_env  # noqa: E402

SLOW_SOCKETS = 4
LIMIT_SECONDS = 1.0


def trickle(port: int, stop: threading.Event, sent: list[int]) -> None:
    """One slow client: a request line, then header bytes one at a time, never finished."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        header = b"X-Slow: " + b"a" * 10_000
        for byte in header:
            if stop.wait(0.5):
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return  # the server gave up on us: fine, it was not held
            sent[0] += 1


def healthz_seconds(port: int) -> tuple[int, float]:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
        status = connection.getresponse().status
    except OSError:
        status = 0
    finally:
        connection.close()
    return status, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--worker-class", default="", help="override gunicorn's worker class")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="sa-slow-")) / "data"
    db = data_dir / "skillaudit.sqlite3"
    env = bench_env(f"sqlite:///{db}", secrets.token_urlsafe(50), data_dir)
    env["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    if args.worker_class:
        env["GUNICORN_WORKER_CLASS"] = args.worker_class
        if args.worker_class == "sync":
            env["GUNICORN_THREADS"] = "1"  # gunicorn runs gthread for sync with threads
    manage = [str(ROOT / ".venv/bin/python"), "manage.py"]
    for command in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        subprocess.run(manage + command, cwd=ROOT, env=env, check=True)
    failures: list[str] = []
    log = data_dir.parent / "gunicorn.log"
    server = Gunicorn(env, log)
    server.env["DJANGO_SETTINGS_MODULE"] = "skillaudit_site.settings"
    with server:
        # Both workers load Django lazily on their first request (about a second on a busy
        # machine): warm them before the clock starts.
        for _ in range(20):
            healthz_seconds(server.port)
        stop = threading.Event()
        sent = [0]
        slow = [
            threading.Thread(target=trickle, args=(server.port, stop, sent), daemon=True)
            for _ in range(SLOW_SOCKETS)
        ]
        for thread in slow:
            thread.start()
        time.sleep(2)  # the slow clients are connected and trickling
        timings = []
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            status, seconds = healthz_seconds(server.port)
            timings.append(seconds)
            if status != 200 or seconds >= LIMIT_SECONDS:
                elapsed = time.monotonic() - deadline + args.seconds
                failures.append(
                    f"/healthz answered {status} after {seconds:.2f} s "
                    f"(request {len(timings)}, {elapsed:.1f} s in)"
                )
            time.sleep(0.2)
        stop.set()
        for thread in slow:
            thread.join(timeout=5)
    if sent[0] < SLOW_SOCKETS * 10:
        failures.append(f"the slow clients sent only {sent[0]} bytes: they were not trickling")
    timings.sort()
    print(
        f"slow_clients: {SLOW_SOCKETS} trickling sockets, {len(timings)} /healthz requests, "
        f"median {timings[len(timings) // 2] * 1000:.1f} ms, max {timings[-1] * 1000:.1f} ms"
    )

    # Files the site wrote: the owner's only.
    if stat.S_IMODE(data_dir.stat().st_mode) != 0o700:
        failures.append(f"{data_dir} is {oct(stat.S_IMODE(data_dir.stat().st_mode))}")
    for path in sorted(data_dir.rglob("*")):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            failures.append(f"{path} is {oct(mode)}, readable by others")
    for failure in failures[:20]:
        print("FAIL", failure)
    print("slow_clients:", "ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
