"""The site served by gunicorn, as in production, and a logged-in HTTP client for it."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """``gunicorn -c skillaudit_site/gunicorn.conf.py`` with the bench's settings module.

    Worker recycling is off (GUNICORN_MAX_REQUESTS=0) so that a memory leak shows up in the
    RSS figures instead of being hidden by restarts.
    """

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2):
        self.port = free_port()
        self.env = dict(
            env,
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            GUNICORN_WORKERS=str(workers),
            GUNICORN_MAX_REQUESTS="0",
            DJANGO_SETTINGS_MODULE="bench.settings_bench",
        )
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Gunicorn:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", "skillaudit_site/gunicorn.conf.py"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}")
            try:
                status, _ = Client(self.port).get("/healthz")
                if status == 200 and len(self.worker_pids()) >= 1:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer within 60 s")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        return sorted(int(p) for p in children.read_text().split()) if children.exists() else []

    def worker_rss_kb(self) -> dict[int, int]:
        rss = {}
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss[pid] = int(line.split()[1])
        return rss


class Client:
    """A small cookie-keeping HTTP/1.1 client on one (re-opened as needed) connection."""

    def __init__(self, port: int):
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}

    def _headers(self) -> dict[str, str]:
        headers = {"Host": f"127.0.0.1:{self.port}"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def request(self, method: str, path: str, body: str | None = None, headers=None):
        all_headers = self._headers() | (headers or {})
        try:
            self.connection.request(method, path, body=body, headers=all_headers)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.connection.close()
            self.connection.request(method, path, body=body, headers=all_headers)
            response = self.connection.getresponse()
        data = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        if response.will_close:
            self.connection.close()
        return response.status, data

    def get(self, path: str):
        return self.request("GET", path)

    def login(self, username: str, password: str) -> None:
        """Log in through the admin login form, as a person would."""
        status, page = self.get("/admin/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or token is None:
            raise RuntimeError(f"no login form at /admin/login/ (HTTP {status})")
        body = urlencode(
            {
                "csrfmiddlewaretoken": token.group(1).decode(),
                "username": username,
                "password": password,
                "next": "/runs/",
            }
        )
        status, _ = self.request(
            "POST",
            "/admin/login/",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": f"http://127.0.0.1:{self.port}/admin/login/",
            },
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login failed (HTTP {status})")


def bench_env(database_url: str, secret_key: str, data_dir: Path) -> dict[str, str]:
    return dict(
        os.environ,
        DATABASE_URL=database_url,
        SECRET_KEY=secret_key,
        DEBUG="0",
        SKILLAUDIT_DATA_DIR=str(data_dir),
        GUNICORN_ACCESSLOG="-",
        LOG_LEVEL="WARNING",
        # The benchmarks drive one token far past a production rate on purpose: the
        # per-user API throttle would turn their load into 429s.
        API_THROTTLE_USER="off",
        # The in-process timings use Django's test Client, whose Host is "testserver".
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
    )


def collect_static(env: dict[str, str]) -> None:
    """Production settings (DEBUG off) serve static files from the collected manifest."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
