"""The one settings module. Every value from the environment goes through qalby_site.env."""

import os
import sys
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet

from providers import registry
from qalby_site import env

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env.string("QALBY_DATA_DIR", str(BASE_DIR / "data")))

TESTING = "pytest" in sys.modules or (len(sys.argv) > 1 and sys.argv[1] == "test")
DEBUG = env.boolean("DEBUG", False)
# Development and tests may invent their own secrets; production must be given them (see providers/checks.py).
DEV_MODE = DEBUG or TESTING


def _private_data_dir() -> None:
    # It holds the development secrets and the SQLite database: no other user may list or enter it.
    # An existing folder is left as the operator made it (the image's /data, a mounted volume).
    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


def _private_file(path: Path, content: str = "") -> bool:
    """Create ``path`` readable by this user only, from its first instant; False if it already exists.

    The content is written to a private temporary file first and then linked into place, so another
    process starting at the same moment finds either no file or the whole secret, never half of it.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(content)
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink()


def _private_sqlite(name: str) -> None:
    """Keep the SQLite database readable by this user only: it holds the client keys' hashes and the logs."""
    if name in ("", ":memory:") or name.startswith("file:"):
        return
    path = Path(name)
    if not path.exists():
        # SQLite would create the file with the umask's 0644 (and its -wal and -shm files with the same
        # mode as the database file); an empty file is a valid empty database, so it is made first.
        if path.parent.is_dir():
            _private_file(path)
        return
    # Files made by an earlier version are made private too, when they are this user's.
    for existing in (path, Path(f"{name}-wal"), Path(f"{name}-shm")):
        try:
            info = existing.stat()
        except FileNotFoundError:
            continue
        if info.st_mode & 0o077 and info.st_uid == os.getuid():
            existing.chmod(0o600)


def _dev_secret(filename: str, make) -> str:
    """A secret generated once and kept in the data folder, so restarts keep decrypting what was stored."""
    if TESTING:
        return make()
    _private_data_dir()
    path = DATA_DIR / filename
    if not path.exists() and _private_file(path, make()):
        GENERATED_DEV_SECRETS.append(str(path))
    return path.read_text().strip()


GENERATED_DEV_SECRETS: list[str] = []

SECRET_KEY = env.secret("SECRET_KEY") or ""
if not SECRET_KEY and DEV_MODE:
    SECRET_KEY = _dev_secret("django-secret-key", lambda: Fernet.generate_key().decode())
SECRET_KEY_MISSING = not SECRET_KEY
if SECRET_KEY_MISSING:
    # Django refuses an empty SECRET_KEY before system checks can explain; the check does that instead.
    SECRET_KEY = "missing-" + Fernet.generate_key().decode()

# Newest first: the first key encrypts, all of them decrypt (see providers/fields.py).
QALBY_ENCRYPTION_KEYS = env.listing("QALBY_ENCRYPTION_KEYS")
if not QALBY_ENCRYPTION_KEYS and DEV_MODE:
    QALBY_ENCRYPTION_KEYS = [_dev_secret("encryption-key", lambda: Fernet.generate_key().decode())]

ALLOWED_HOSTS = env.listing("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEV_MODE else [])
CSRF_TRUSTED_ORIGINS = env.listing("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",
    "providers",
    "agent",
    "audio",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "qalby_site.middleware.RequestIdMiddleware",
    "qalby_site.middleware.JsonErrorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The API's own, lean stack (see asgi.py): no sessions, CSRF or messages on the hot path.
QALBY_API_MIDDLEWARE = [
    "qalby_site.middleware.RequestIdMiddleware",
    "providers.requestlogs.middleware.RequestLogMiddleware",
    "qalby_site.middleware.JsonErrorsMiddleware",
]

ROOT_URLCONF = "qalby_site.urls"
ASGI_APPLICATION = "qalby_site.asgi.application"

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
        },
    },
]

DATABASE_URL = env.string("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'qalby.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env.integer("DB_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _private_data_dir()
    _private_sqlite(str(DATABASES["default"]["NAME"]))
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers and the log writer work side by side; IMMEDIATE avoids lock upgrades that deadlock.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not an in-memory database: the test server runs in another thread and must see the same data.
    # One per process, so two test runs in one checkout do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}
elif "postgresql" in DATABASES["default"]["ENGINE"]:
    # Seconds to wait for a new connection before the database counts as unreachable (providers/outage.py):
    # libpq's default is to wait for the operating system, minutes when packets are dropped.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.integer("DB_CONNECT_TIMEOUT", 5, minimum=1)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.string("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The admin's static files are served by WhiteNoise: from the apps in development, from the
# collected, hashed and compressed copy (collectstatic, done when the image is built) in production.
WHITENOISE_USE_FINDERS = DEV_MODE
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEV_MODE
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Bodies larger than this answer 413 (audio endpoints raise it for their uploads).
QALBY_MAX_BODY_BYTES = env.integer("QALBY_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
# Endpoints that take larger bodies declare (path prefix, limit) in QALBY_BODY_LIMITS (audio, below).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# A client must send a request's headers within this many seconds of its first byte, and its body
# within the second number after the headers; otherwise 408 and the connection is closed, so slow
# clients cannot hold connections open (qalby_site/serve.py). An idle keep-alive connection is closed
# after QALBY_KEEP_ALIVE_SECONDS: longer than a load balancer's idle timeout, or it may reuse a closed one.
QALBY_HEADER_TIMEOUT = env.decimal("QALBY_HEADER_TIMEOUT", 10.0, minimum=1.0)
QALBY_BODY_TIMEOUT = env.decimal("QALBY_BODY_TIMEOUT", 120.0, minimum=1.0)
QALBY_KEEP_ALIVE_SECONDS = env.integer("QALBY_KEEP_ALIVE_SECONDS", 75, minimum=1)

NINJA_PAGINATION_PER_PAGE = 100

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Admin messages carry a new client key's secret once: the default storage puts them in a cookie that
# is signed, not encrypted. Sessions are rows in the database, and a message leaves when it is shown.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# ---- HTTPS ----
# TLS ends at a proxy in front of the server (an Ingress, a load balancer). QALBY_BEHIND_TLS=1 says that
# clients come through it and that it sets X-Forwarded-Proto itself, overwriting a client's: only then is
# that header believed, since otherwise any client could claim https. It turns on the redirect to https,
# HSTS and secure cookies; each can still be set on its own.
QALBY_BEHIND_TLS = env.boolean("QALBY_BEHIND_TLS", False)
if QALBY_BEHIND_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.boolean("SECURE_SSL_REDIRECT", QALBY_BEHIND_TLS)
# The kubelet's probes and Prometheus call the pod itself over plain HTTP, never through the proxy.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)$"]
# Sent on https answers only. A year, once the whole host is served over https; start lower to try it.
SECURE_HSTS_SECONDS = env.integer("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if QALBY_BEHIND_TLS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.boolean("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env.boolean("SECURE_HSTS_PRELOAD", False)
# Production keeps its admin cookies off plain HTTP even without QALBY_BEHIND_TLS, as it always has.
SESSION_COOKIE_SECURE = env.boolean("SESSION_COOKIE_SECURE", QALBY_BEHIND_TLS or not DEV_MODE)
CSRF_COOKIE_SECURE = env.boolean("CSRF_COOKIE_SECURE", QALBY_BEHIND_TLS or not DEV_MODE)
if SECURE_SSL_REDIRECT:
    # The API's lean stack (QALBY_API_MIDDLEWARE) is redirected too: after the request id (its answer
    # carries one), before the request log (a redirect serves nothing); Django's, run inline.
    QALBY_API_MIDDLEWARE.insert(1, "qalby_site.middleware.SecurityMiddleware")

LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
# LOG_FORMAT=json writes one JSON object per log line (with the request id), for log collectors.
LOG_FORMAT = env.choice("LOG_FORMAT", "plain", {"plain", "json"})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "qalby_site.logformat.RequestIdFilter"},
                "no_outage_tracebacks": {"()": "qalby_site.logformat.NoOutageTracebacks"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "qalby_site.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own handlers (a plain console one when DEBUG is on, mail_admins) would print each
        # record a second time beside ours; its records go to the root handler only.
        "django": {"handlers": []},
        "django.request": {"filters": ["no_outage_tracebacks"]},
        # The SDKs log request options at DEBUG; keep them quiet so nothing sensitive leaks at our DEBUG.
        # Each vendor's SDK loggers are named by its row in providers/registry.py.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpcore2": {"level": "WARNING"},
        **{name: {"level": "WARNING"} for name in registry.SDK_LOGGERS},
        "mcp": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# The longest a client key disabled, deleted or re-scoped on another replica keeps its old rights here
# when Redis does not carry the change (providers/auth.py); 0 looks the key up on every request.
CLIENT_KEY_CACHE_SECONDS = env.decimal("CLIENT_KEY_CACHE_SECONDS", 5.0)

# ---- the fallback engine ----
# Seconds a cached provider config is trusted before it is re-read (changes made on other replicas).
QALBY_CONFIG_TTL = env.decimal("QALBY_CONFIG_TTL", 2.0)
# While the database cannot be reached, cached configs, client keys and routes read at most this many
# seconds ago are served as they were last read (providers/outage.py); 0 serves nothing stale.
QALBY_STALE_SECONDS = env.decimal("QALBY_STALE_SECONDS", 900.0)
# Deadlines, seconds: one attempt in total, a stream's first chunk, the longest gap between chunks.
QALBY_ATTEMPT_TIMEOUT = env.decimal("QALBY_ATTEMPT_TIMEOUT", 360.0, minimum=0.01)
QALBY_FIRST_CHUNK_TIMEOUT = env.decimal("QALBY_FIRST_CHUNK_TIMEOUT", 60.0, minimum=0.01)
QALBY_IDLE_TIMEOUT = env.decimal("QALBY_IDLE_TIMEOUT", 60.0, minimum=0.01)
# The one retry on the same provider: only if the provider asks to wait at most this long.
# A chain's stream that breaks after its answer began: "restart" (the next request's whole answer, after
# a restart line) or "error" (an error line). A request's on_stream_failure overrides it.
QALBY_STREAM_FAILURE = env.choice("QALBY_STREAM_FAILURE", "restart", {"restart", "error"})
QALBY_MAX_RETRY_AFTER = env.decimal("QALBY_MAX_RETRY_AFTER", 2.0)
QALBY_RETRY_BACKOFF = env.decimal("QALBY_RETRY_BACKOFF", 0.2)
QALBY_MAX_FALLBACK_REQUESTS = env.integer("QALBY_MAX_FALLBACK_REQUESTS", 10, minimum=1)
# The circuit breaker (providers/breaker.py): after this many failed attempts in a row (5xx, dropped
# connections, timeouts) a provider config and model is skipped for the cooldown (seconds); 0 turns it off.
QALBY_BREAKER_THRESHOLD = env.integer("QALBY_BREAKER_THRESHOLD", 5, minimum=0)
QALBY_BREAKER_COOLDOWN = env.decimal("QALBY_BREAKER_COOLDOWN", 30.0, minimum=0.01)
# Hedging (providers/hedging.py): a chain's entry with no first chunk after its delay gets the next entry
# started beside it. "auto" delays are a percentile of recent times to the first chunk, bounded (seconds),
# and the default until enough samples have been seen.
QALBY_HEDGE_DEFAULT = env.decimal("QALBY_HEDGE_DEFAULT", 4.0, minimum=0.01)
QALBY_HEDGE_MIN = env.decimal("QALBY_HEDGE_MIN", 1.0, minimum=0.01)
QALBY_HEDGE_MAX = env.decimal("QALBY_HEDGE_MAX", 8.0, minimum=0.01)
QALBY_HEDGE_PERCENTILE = env.decimal("QALBY_HEDGE_PERCENTILE", 95.0, minimum=1.0)
QALBY_HEDGE_SAMPLES = env.integer("QALBY_HEDGE_SAMPLES", 20, minimum=1)

# ---- audio ----
# Largest audio upload, bytes (the issue's default: 25 MB, the providers' own limit).
QALBY_MAX_AUDIO_BYTES = env.integer("QALBY_MAX_AUDIO_BYTES", 25 * 1024 * 1024, minimum=1024)
# Transcription bodies carry the audio (multipart, or base64 in JSON: 4/3 of it) plus a little JSON.
QALBY_BODY_LIMITS = [("/audio/transcribe", QALBY_MAX_AUDIO_BYTES * 4 // 3 + 64 * 1024)]
DATA_UPLOAD_MAX_MEMORY_SIZE = max([QALBY_MAX_BODY_BYTES] + [limit for _prefix, limit in QALBY_BODY_LIMITS])

# ---- agent tools ----
QALBY_AGENT_MAX_STEPS = env.integer("QALBY_AGENT_MAX_STEPS", 10, minimum=1)
# Hosts an MCP server URL may name (besides public addresses). Private, loopback and link-local
# addresses are refused unless listed here, after DNS resolution, so clients cannot reach internal networks.
QALBY_MCP_ALLOWED_HOSTS = env.listing("QALBY_MCP_ALLOWED_HOSTS")
# Bounds on what one API call may make the proxy do with tools (issue #19: a request fanned out to
# 640 MCP servers). Distinct MCP servers of a chat request, and of a whole fallback chain:
QALBY_MCP_MAX_SERVERS = env.integer("QALBY_MCP_MAX_SERVERS", 10, minimum=1)
# Tool definitions offered in one chat request, functions and MCP tools together (OpenAI's own limit):
QALBY_AGENT_MAX_TOOLS = env.integer("QALBY_AGENT_MAX_TOOLS", 128, minimum=1)
# Seconds for an MCP host name to resolve; past it the URL is a 400 (names resolve concurrently).
QALBY_MCP_RESOLVE_TIMEOUT = env.decimal("QALBY_MCP_RESOLVE_TIMEOUT", 5.0, minimum=0.01)

# ---- request logs and observability ----
QALBY_REQUEST_LOGS = env.boolean("QALBY_REQUEST_LOGS", True)
# Prompts and answers are users' conversations: not stored unless asked, and then truncated.
QALBY_LOG_CONTENT = env.boolean("QALBY_LOG_CONTENT", False)
QALBY_LOG_CONTENT_MAX_CHARS = env.integer("QALBY_LOG_CONTENT_MAX_CHARS", 10_000, minimum=0)
QALBY_LOG_BATCH_SIZE = env.integer("QALBY_LOG_BATCH_SIZE", 200, minimum=1)
QALBY_LOG_BATCH_SECONDS = env.decimal("QALBY_LOG_BATCH_SECONDS", 0.2)
# Records kept in memory while the database is unavailable; beyond this the oldest are dropped (and counted).
QALBY_LOG_BUFFER = env.integer("QALBY_LOG_BUFFER", 50_000, minimum=1)
QALBY_LOG_FLUSH_SECONDS = env.decimal("QALBY_LOG_FLUSH_SECONDS", 20.0)
QALBY_LOG_RETENTION_DAYS = env.integer("QALBY_LOG_RETENTION_DAYS", 90, minimum=1)
# /metrics answers only a caller presenting this token; unset, metrics are off.
QALBY_METRICS_TOKEN = env.secret("QALBY_METRICS_TOKEN") or ""
# What /metrics serves: the request logs' Prometheus registry.
QALBY_METRICS_REGISTRY = "providers.requestlogs.metrics.registry"
LOGFIRE_WRITE_TOKEN = env.secret("LOGFIRE_WRITE_TOKEN") or ""
OTEL_EXPORTER_OTLP_ENDPOINT = env.string("OTEL_EXPORTER_OTLP_ENDPOINT")
OTEL_SERVICE_NAME = env.string("OTEL_SERVICE_NAME", "qalby-proxy")
# A stop (SIGTERM) waits this long for requests in flight, streams included, before exiting.
QALBY_SHUTDOWN_GRACE_SECONDS = env.decimal("QALBY_SHUTDOWN_GRACE_SECONDS", 25.0)
# Run when the server is told to stop, before it does (qalby_site/lifecycle.py): the request logs wait
# for the requests in flight, then write their logs.
QALBY_SHUTDOWN_HOOKS = ["providers.requestlogs.shutdown.drain", "providers.requestlogs.metrics.process_ended"]
