"""skillaudit settings, read from the environment (README.md lists every variable)."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SKILLAUDIT_DATA_DIR", BASE_DIR / "var"))

# Whatever this process writes is its owner's only, from the first byte: the data folder
# 0700, the SQLite file and its -wal/-shm, the generated password, the cache 0600. Set here
# because every entry point loads the settings first (manage.py's commands, gunicorn's
# workers); a chmod after writing would leave a window, and sqlite makes -wal/-shm itself.
os.umask(0o077)


def ensure_data_dir() -> None:
    """The data folder, made 0700 (and tightened to 0700 if an older version left it open)."""
    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    if DATA_DIR.stat().st_mode & 0o077 and DATA_DIR.stat().st_uid == os.getuid():
        DATA_DIR.chmod(0o700)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_rate(name: str, default: str) -> str | None:
    """A DRF rate ("1200/min"); "off" (or "0") switches it off."""
    value = os.environ.get(name, default).strip()
    return None if value.lower() in {"off", "0", "none"} else value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set unless DEBUG=1")
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG"

# Django's test runner adds "testserver" itself; outside tests that name is refused.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_filters",
    "csp",
    "rest_framework",
    "runs.access",
    "axes",
    "drf_spectacular",
    "runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "runs.web.middleware.DatabaseUnavailableMiddleware",
    # After the one above: notes a replica's failure first, then answers again from the primary.
    "runs.routing.ReplicaMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its response (runs.access.lockout).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "skillaudit_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # The dashboard's tags live with the rest of the dashboard (runs/web/), not
            # at the app root where Django would look for them by itself.
            "libraries": {"runs_display": "runs.web.templatetags.runs_display"},
        },
    },
]

WSGI_APPLICATION = "skillaudit_site.wsgi.application"

# --- database ------------------------------------------------------------------------
# DATABASE_URL picks the database; the default is an embedded SQLite file under var/.

DEFAULT_SQLITE = DATA_DIR / "skillaudit.sqlite3"
DATABASES = {
    # An empty DATABASE_URL means the default too.
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "600")),
        conn_health_checks=True,
    )
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    ensure_data_dir()
    _db["CONN_MAX_AGE"] = 0
    # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at BEGIN so
    # concurrent writers queue on the busy timeout instead of failing with "locked".
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": int(os.environ.get("SQLITE_BUSY_TIMEOUT", "20")),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory: tests that use several threads or processes share it.
    _db["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # Well below gunicorn's 30 s worker timeout: a slow query ends with a clean error.
    statement_timeout_ms = int(os.environ.get("STATEMENT_TIMEOUT_MS", "20000"))
    # JIT compiles for tens of milliseconds to save less on these short indexed queries.
    _db.setdefault("OPTIONS", {})["options"] = (
        f"-c statement_timeout={statement_timeout_ms} -c jit=off"
    )

# Read replicas (runs/routing.py): streaming standbys of the primary, comma-separated URLs.
# The dashboard's and the API's GETs read from a healthy one; everything else, the primary.
SKILLAUDIT_REPLICAS = []
for _number, _url in enumerate(env_list("DATABASE_REPLICA_URLS", ""), start=1):
    _replica = dj_database_url.parse(
        _url, conn_max_age=_db["CONN_MAX_AGE"], conn_health_checks=True
    )
    _replica["OPTIONS"] = dict(_db.get("OPTIONS", {}))
    if _replica["ENGINE"] == "django.db.backends.postgresql":
        # A dead replica's host must not hold a request for long before the primary serves.
        _replica["OPTIONS"]["connect_timeout"] = int(os.environ.get("REPLICA_CONNECT_TIMEOUT", "2"))
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES[f"replica_{_number}"] = _replica
    SKILLAUDIT_REPLICAS.append(f"replica_{_number}")
DATABASE_ROUTERS = ["runs.routing.ReplicaRouter"]
# A replica further behind than this is skipped; checked at most every CHECK seconds per
# process; the list page says so when it shows data more than NOTICE seconds old.
SKILLAUDIT_REPLICA_MAX_LAG_SECONDS = float(
    os.environ.get("SKILLAUDIT_REPLICA_MAX_LAG_SECONDS", "30")
)
SKILLAUDIT_REPLICA_CHECK_SECONDS = float(os.environ.get("SKILLAUDIT_REPLICA_CHECK_SECONDS", "5"))
SKILLAUDIT_REPLICA_NOTICE_SECONDS = float(os.environ.get("SKILLAUDIT_REPLICA_NOTICE_SECONDS", "5"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache (API throttle counts) -------------------------------------------------------
# Files under the data folder: every gunicorn worker on this machine sees the same counts
# (the default per-process memory cache would give each worker its own, multiplying every
# limit by the number of workers) and no other service is needed. A site served by several
# machines points this at a shared cache (Django's Redis backend) in its settings module.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(DATA_DIR / "cache"),
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    }
}

# --- auth ----------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The dashboard's own login page; the admin keeps its own (staff only).
LOGIN_URL = "runs:login"

# Every authenticate() call (the admin's login, and any login form to come) goes through
# django-axes first: LOGIN_FAILURE_LIMIT failures for one user name, or from one address,
# lock that name or address out for LOGIN_LOCKOUT_MINUTES (429 with Retry-After), counted
# in the database so that every gunicorn worker sees the same count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "runs.access.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "runs.access.clients.client_address"
# Failed logins only (no row per successful login).
AXES_DISABLE_ACCESS_LOG = True
LOGIN_REDIRECT_URL = "/"

# --- i18n / time ---------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- static files --------------------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
# Django's storage chmods what it writes (collectstatic's copies) to 0644 by default: keep
# the data folder's files the owner's only, like everything else in it.
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Serve from the finders too, so tests and `runserver` need no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- security (HTTPS settings switch on with SKILLAUDIT_HTTPS=1) ---------------------

HTTPS = env_bool("SKILLAUDIT_HTTPS")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000")) if HTTPS else 0
# Both bind every subdomain (preload: for years, in browsers' built-in lists): opt-in only.
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS and env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = HTTPS and env_bool("SECURE_HSTS_PRELOAD")
# check --deploy warns while either is off; off is the chosen default, not an oversight.
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
SKILLAUDIT_BEHIND_PROXY = env_bool("SKILLAUDIT_BEHIND_PROXY")
if SKILLAUDIT_BEHIND_PROXY:
    # Only behind a proxy that sets this header itself and strips it from clients.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Content Security Policy (django-csp): only this site's own files, no inline script, no
# remote source; a second layer behind escaping, for text written by LLMs and users.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- JSON API (runs/api/views.py) ----------------------------------------------------------

REST_FRAMEWORK = {
    # Tokens for programs (manage.py create_api_token), the session (with CSRF) for a browser.
    # Tokens are stored hashed (runs.access.models); a request that no class authenticates is
    # throttled per address by the last one (DRF would answer it 401 before its throttles).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "runs.access.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "runs.access.authentication.AnonymousRateLimit",
    ],
    # Per user (one token each); anonymous and failed-token requests per address
    # (runs.access.authentication). "off" switches a rate off. Counted in the cache below.
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_rate("API_THROTTLE_USER", "1200/min"),
        "anon": env_rate("API_THROTTLE_ANON", "60/min"),
        "failed_token": env_rate("API_THROTTLE_FAILED_TOKENS", "20/min"),
    },
    # Model permissions, reads included (stock DjangoModelPermissions lets anyone GET).
    "DEFAULT_PERMISSION_CLASSES": ["runs.api.permissions.RunModelPermissions"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON only: no ?format= switch, and non-ASCII escaped so that any stored string
    # (even a lone surrogate another writer left) encodes.
    "URL_FORMAT_OVERRIDE": None,
    "UNICODE_JSON": False,
    # A batch's errors keyed by the index of each bad event only (DRF 3.20's format).
    "LIST_SERIALIZER_ERRORS_AS_DICT": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "skillaudit API",
    "DESCRIPTION": "Read and record AI-agent skill runs. Every endpoint needs a login: "
    "`Authorization: Token <key>` (manage.py create_api_token) or a session.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["runs.api.permissions.CanViewRuns"],
    # The ways to log in (AnonymousRateLimit only throttles those that do not).
    "AUTHENTICATION_WHITELIST": [
        "runs.access.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- skillaudit ----------------------------------------------------------------------

# A `running` row older than this is shown (and filtered) as stale.
SKILLAUDIT_STALE_AFTER_MINUTES = int(os.environ.get("SKILLAUDIT_STALE_AFTER_MINUTES", "60"))
# A skill with no run for this many days is flagged "no run lately" on /skills/.
SKILLAUDIT_QUIET_AFTER_DAYS = int(os.environ.get("SKILLAUDIT_QUIET_AFTER_DAYS", "7"))
# What `manage.py purge_runs` deletes when given no --older-than / --before.
SKILLAUDIT_RETENTION_DAYS = int(os.environ.get("SKILLAUDIT_RETENTION_DAYS", "90"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
