"""Read replicas: the dashboard's and the API's reads go to a healthy streaming standby.

Everything else stays on the primary ("default"): every write, the admin, the recorder,
ingest (the API's POSTs, OTLP), imports, purges, management commands, and the auth,
session and token tables. The rule is opt-in per request: ``ReplicaMiddleware`` marks a
request as replica-eligible only when it is a GET or HEAD of a dashboard page or an API
resource and the client has not written lately; outside such a request (a command, a
worker, a test) every read goes to the primary, so nothing reads stale data by accident.

Read-your-writes, two ways:
- within a request, the first write (``db_for_write``) pins it to the primary;
- across requests, a request with an unsafe method pins its credential (session cookie
  or ``Authorization`` header, hashed) in the cache for ``SKILLAUDIT_REPLICA_MAX_LAG_SECONDS``:
  no replica that is used is further behind than that, so the client's next reads see
  what it wrote. (The cache is per machine by default; several web hosts need a shared
  cache, see settings.CACHES.)

Health: each process checks a replica at most every ``SKILLAUDIT_REPLICA_CHECK_SECONDS``
and remembers the answer until then. A replica that refuses the connection, fails the
check, or lags more than ``SKILLAUDIT_REPLICA_MAX_LAG_SECONDS`` is skipped until the next
check, and the primary serves. A replica that dies in the middle of a request fails that
request's query; the middleware then answers the same GET again from the primary, so a
dead replica never shows as a 5xx.

Lag is how far the standby's replay is behind what it has received, in time: 0 when
``pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()`` (a caught-up standby of an idle
primary is not lagging, however old its last replayed transaction is, and keeps serving
through a quiet night), otherwise the age of its last replayed transaction (the data it
shows is at least that old). A standby whose WAL receiver is not streaming cannot know
what it is missing, so it counts as lagging by the age of its last replayed transaction.
A server that is not in recovery (a promoted standby, or the test mirror) is not behind
anything: lag 0.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

# Models of these apps may be read from a replica; auth, sessions and tokens never are.
REPLICA_APPS = frozenset({"runs"})
# Pages and API resources whose GETs may read from a replica (not /admin/, not /healthz).
REPLICA_PATH_PREFIXES = ("/runs/", "/skills/", "/api/")
SAFE_METHODS = frozenset({"GET", "HEAD"})
PIN_COOKIE = "sessionid"
PIN_KEY_PREFIX = "skillaudit:primary-pin:"

# One query on the standby: is it in recovery, has it replayed all it received, is its WAL
# receiver streaming, and how old is its last replayed transaction.
LAG_SQL = """
SELECT pg_is_in_recovery(),
       pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(),
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'),
       EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())
"""


@dataclass
class RequestRoute:
    """Where one request reads: a replica alias (and its lag), or the primary."""

    replica: str | None = None
    lag_seconds: float = 0.0
    pinned: bool = False
    used_replica: bool = False
    replica_failed: bool = False


_route: contextvars.ContextVar[RequestRoute | None] = contextvars.ContextVar(
    "skillaudit_route", default=None
)


@dataclass
class _Health:
    checked_at: float = float("-inf")
    usable: bool = False
    lag_seconds: float = 0.0


@dataclass
class _HealthBook:
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_alias: dict[str, _Health] = field(default_factory=dict)


_health = _HealthBook()


def replica_aliases() -> list[str]:
    return list(getattr(settings, "SKILLAUDIT_REPLICAS", []))


def max_lag_seconds() -> float:
    return float(getattr(settings, "SKILLAUDIT_REPLICA_MAX_LAG_SECONDS", 30))


def check_interval_seconds() -> float:
    return float(getattr(settings, "SKILLAUDIT_REPLICA_CHECK_SECONDS", 5))


def measure_lag(alias: str) -> float:
    """Seconds the replica's replay is behind (see the module docstring); raises
    DatabaseError when it cannot be asked."""
    connection = connections[alias]
    connection.ensure_connection()
    if connection.vendor != "postgresql":
        return 0.0  # no streaming replication: only the test mirror of the primary
    with connection.cursor() as cursor:
        cursor.execute(LAG_SQL)
        in_recovery, caught_up, streaming, replay_age = cursor.fetchone()
    if not in_recovery:
        return 0.0
    if caught_up and streaming:
        return 0.0
    if replay_age is None:  # nothing replayed since the standby started: unknown
        return float("inf")
    return max(0.0, float(replay_age))


def forget_health() -> None:
    """Check every replica again at its next use (tests, and a replica failing mid-request)."""
    with _health.lock:
        _health.by_alias.clear()


def mark_down(alias: str) -> None:
    with _health.lock:
        _health.by_alias[alias] = _Health(time.monotonic(), False, float("inf"))


def replica_health(alias: str) -> _Health:
    """The cached health of one replica, measured again when older than the interval."""
    now = time.monotonic()
    with _health.lock:
        known = _health.by_alias.get(alias)
    if known is not None and now - known.checked_at < check_interval_seconds():
        return known
    try:
        lag = measure_lag(alias)
        usable = lag <= max_lag_seconds()
        if not usable:
            logger.warning("replica %s lags %.1f s: reads go to the primary", alias, lag)
    except DatabaseError as exc:
        logger.warning("replica %s unavailable: %s", alias, exc)
        _close_quietly(alias)
        lag, usable = float("inf"), False
    health = _Health(now, usable, lag)
    with _health.lock:
        _health.by_alias[alias] = health
    return health


def _close_quietly(alias: str) -> None:
    try:
        connections[alias].close()
    except DatabaseError:
        pass


def choose_replica() -> tuple[str | None, float]:
    """A usable replica picked at random (spreading reads), with its lag; (None, 0) if none."""
    usable = []
    for alias in replica_aliases():
        health = replica_health(alias)
        if health.usable:
            usable.append((alias, health.lag_seconds))
    return random.choice(usable) if usable else (None, 0.0)


def current_route() -> RequestRoute | None:
    return _route.get()


def pin_to_primary() -> None:
    """The rest of this request reads from the primary (it wrote, or a replica failed)."""
    route = _route.get()
    if route is not None:
        route.pinned = True


class ReplicaRouter:
    """Reads of the runs app's models go to the request's replica, if it has one."""

    def db_for_read(self, model, **hints):
        route = _route.get()
        if route is None or route.pinned or route.replica is None:
            return DEFAULT_DB_ALIAS
        if model._meta.app_label not in REPLICA_APPS:
            return DEFAULT_DB_ALIAS
        route.used_replica = True
        return route.replica

    def db_for_write(self, model, **hints):
        pin_to_primary()
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return True  # the replicas hold the primary's very rows

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db not in replica_aliases()  # a standby replays the primary's migrations


def _stale_seconds(route: RequestRoute) -> int:
    """The lag the list page mentions: 0 below SKILLAUDIT_REPLICA_NOTICE_SECONDS."""
    notice = float(getattr(settings, "SKILLAUDIT_REPLICA_NOTICE_SECONDS", 5))
    if route.replica is None or route.lag_seconds <= notice:
        return 0
    return max(1, round(route.lag_seconds))


def _credential_key(request) -> str | None:
    credential = request.headers.get("Authorization") or request.COOKIES.get(PIN_COOKIE)
    if not credential:
        return None
    return PIN_KEY_PREFIX + hashlib.sha256(credential.encode()).hexdigest()


def _eligible(request) -> bool:
    return request.method in SAFE_METHODS and request.path.startswith(REPLICA_PATH_PREFIXES)


class ReplicaMiddleware:
    """Gives each eligible request a replica; pins writers; retries a replica failure.

    Sits after DatabaseUnavailableMiddleware in MIDDLEWARE: its process_exception runs
    first (Django calls them bottom-up), notes that the failed query was a replica's, and
    lets that middleware answer 503; __call__ then throws the 503 away and answers the
    same GET from the primary.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not replica_aliases():
            return self.get_response(request)
        key = _credential_key(request)
        route = RequestRoute()
        if _eligible(request) and not (key and cache.get(key)):
            route.replica, route.lag_seconds = choose_replica()
        request.replica_stale_seconds = _stale_seconds(route)
        token = _route.set(route)
        try:
            response = self.get_response(request)
            if route.replica_failed:
                mark_down(route.replica)
                _close_quietly(route.replica)
                route.pinned = True
                request.replica_stale_seconds = 0
                response = self.get_response(request)
        finally:
            _route.reset(token)
        if request.method not in SAFE_METHODS and key and response.status_code < 400:
            # Its next reads must see this write: the primary serves them for as long as
            # a used replica may lag.
            cache.set(key, 1, timeout=max(1, int(max_lag_seconds()) + 1))
        return response

    def process_exception(self, request, exception):
        route = _route.get()
        if (
            route is not None
            and route.used_replica
            and not route.pinned
            and isinstance(exception, OperationalError | InterfaceError)
        ):
            logger.warning("replica %s failed mid-request: %s", route.replica, exception)
            route.replica_failed = True
        return None
