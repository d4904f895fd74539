"""gunicorn settings; each can be overridden by the GUNICORN_* variables below."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Two processes on 2 cores (two sync workers measured fastest: 215-315 pages/s under wrk;
# 4 were slower), each with a pool of threads (gthread): a slow client, trickling its
# request headers or reading its answer slowly, holds one thread until `timeout`, not a
# whole worker. With two sync workers, two such sockets made /healthz time out;
# tests/system/slow_clients.py holds four and still gets /healthz in under a second.
# Threads share a process's GIL, so they add no CPU: the pool is for waiting on sockets
# and the database. A production site also puts a buffering reverse proxy (nginx, see
# README.md) in front, which takes slow clients off gunicorn entirely.
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Idle keep-alive connections are closed after this many seconds (each holds a slot).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Recycle workers now and then so a slow leak can never grow without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
wsgi_app = "skillaudit_site.wsgi:application"
# Files gunicorn and its workers create are the owner's only (settings.py does the same
# for every Python entry point).
umask = 0o077
os.umask(umask)

# Memory after a big answer. A worker that answered 104 MB of runs (13 answers of 8 MiB)
# kept ~260 MB more than before, growing with every such answer (75 -> 226, 266, 338 MB,
# tests/system/response_memory.py). Most of it was reference cycles around each answer
# (fixed in runs/api/views.py: representation() and ApiView.dispatch), freed only when the
# cyclic collector happened to run. The rest is glibc: it keeps what a thread frees in that
# thread's arena and returns it to the system only from the top of a heap, so
# malloc_trim(0) gives back every free page, wherever it is; it runs after an answer of
# more than TRIM_AFTER_BYTES only (walking the heaps costs ~1 ms; a page of the dashboard
# is far under it). Fewer arenas (one per thread by default, up to 8 per core) leave less
# to trim. glibc also raises its mmap threshold (up to 32 MiB) each time it frees a mapped
# block, after which an answer's 8 MiB buffers come from the heap and stay until the next
# trim (post_request runs while gunicorn still holds the answer): a fixed threshold keeps
# blocks of MMAP_THRESHOLD_BYTES and more mapped, unmapped the moment they are freed.
# Worker RssAnon over three 26 MB answers: 69 -> 107, 163, 83 MB before the cycles were
# broken; 62 -> 73, 73, 73 MB without the fixed threshold; 64 -> 64, 64, 64 MB with it.
TRIM_AFTER_BYTES = 1024 * 1024
M_ARENA_MAX = -8  # glibc's mallopt parameters
M_MMAP_THRESHOLD = -3
# GUNICORN_MMAP_THRESHOLD=0 leaves glibc its own, moving threshold.
MMAP_THRESHOLD_BYTES = int(os.environ.get("GUNICORN_MMAP_THRESHOLD", str(64 * 1024)))


def _glibc():
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 (absent outside glibc: musl, macOS)
    except (OSError, AttributeError, TypeError):
        return None
    return libc


_libc = _glibc()


def post_fork(server, worker):
    if _libc is not None:
        _libc.mallopt(M_ARENA_MAX, int(os.environ.get("GUNICORN_MALLOC_ARENAS", "2")))
        if MMAP_THRESHOLD_BYTES:
            _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def post_request(worker, req, environ, resp):
    if _libc is not None and (getattr(resp, "sent", 0) or 0) > TRIM_AFTER_BYTES:
        _libc.malloc_trim(0)
