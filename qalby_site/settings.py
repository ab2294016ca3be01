"""The one settings module. Every value from the environment goes through qalby_site.env."""

import os
import sys
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet

from qalby_site import env

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env.string("QALBY_DATA_DIR", str(BASE_DIR / "data")))

TESTING = "pytest" in sys.modules or (len(sys.argv) > 1 and sys.argv[1] == "test")
DEBUG = env.boolean("DEBUG", False)
# Development and tests may invent their own secrets; production must be given them (see providers/checks.py).
DEV_MODE = DEBUG or TESTING


def _dev_secret(filename: str, make) -> str:
    """A secret generated once and kept in the data folder, so restarts keep decrypting what was stored."""
    if TESTING:
        return make()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / filename
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
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
    "qalby_site.middleware.RequestLogMiddleware",
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
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers and the log writer work side by side; IMMEDIATE avoids lock upgrades that deadlock.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not an in-memory database: the test server runs in another thread and must see the same data.
    # One per process, so two test runs in one checkout do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}

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

NINJA_PAGINATION_PER_PAGE = 100

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEV_MODE:
    SESSION_COOKIE_SECURE = env.boolean("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env.boolean("CSRF_COOKIE_SECURE", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
# LOG_FORMAT=json writes one JSON object per log line (with the request id), for log collectors.
LOG_FORMAT = env.choice("LOG_FORMAT", "plain", {"plain", "json"})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "qalby_site.logformat.RequestIdFilter"}},
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
        # The SDKs log request options at DEBUG; keep them quiet so nothing sensitive leaks at our DEBUG.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpcore2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        "anthropic": {"level": "WARNING"},
        "groq": {"level": "WARNING"},
        "google_genai": {"level": "WARNING"},
        "elevenlabs": {"level": "WARNING"},
        "mcp": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# How long a verified client key is trusted before it is looked up again (other replicas' changes).
CLIENT_KEY_CACHE_SECONDS = env.integer("CLIENT_KEY_CACHE_SECONDS", 30, minimum=0)

# ---- the fallback engine ----
# Seconds a cached provider config is trusted before it is re-read (changes made on other replicas).
QALBY_CONFIG_TTL = env.decimal("QALBY_CONFIG_TTL", 2.0)
# Deadlines, seconds: one attempt in total, a stream's first chunk, the longest gap between chunks.
QALBY_ATTEMPT_TIMEOUT = env.decimal("QALBY_ATTEMPT_TIMEOUT", 360.0, minimum=0.01)
QALBY_FIRST_CHUNK_TIMEOUT = env.decimal("QALBY_FIRST_CHUNK_TIMEOUT", 60.0, minimum=0.01)
QALBY_IDLE_TIMEOUT = env.decimal("QALBY_IDLE_TIMEOUT", 60.0, minimum=0.01)
# The one retry on the same provider: only if the provider asks to wait at most this long.
QALBY_MAX_RETRY_AFTER = env.decimal("QALBY_MAX_RETRY_AFTER", 2.0)
QALBY_RETRY_BACKOFF = env.decimal("QALBY_RETRY_BACKOFF", 0.2)
QALBY_MAX_FALLBACK_REQUESTS = env.integer("QALBY_MAX_FALLBACK_REQUESTS", 10, minimum=1)

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
LOGFIRE_WRITE_TOKEN = env.secret("LOGFIRE_WRITE_TOKEN") or ""
OTEL_EXPORTER_OTLP_ENDPOINT = env.string("OTEL_EXPORTER_OTLP_ENDPOINT")
OTEL_SERVICE_NAME = env.string("OTEL_SERVICE_NAME", "qalby-proxy")
# A stop (SIGTERM) waits this long for requests in flight, streams included, before exiting.
QALBY_SHUTDOWN_GRACE_SECONDS = env.decimal("QALBY_SHUTDOWN_GRACE_SECONDS", 25.0)
