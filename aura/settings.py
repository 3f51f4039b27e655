"""AURA settings: one file, every knob an environment variable with a safe default.

With no environment at all AURA runs embedded: SQLite, the local-memory cache,
the console email backend and eager Celery tasks. ``DATABASE_URL`` and
``REDIS_URL`` switch it to PostgreSQL and Redis. A bad value stops start-up
with a message naming the variable. ``.env.example`` lists every knob.
"""

import base64
import binascii
import os
import secrets
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env (written by `make run`) fills in what the real environment does not.
ENV_FILE = Path(os.environ.get("AURA_ENV_FILE", BASE_DIR / ".env"))
if ENV_FILE.is_file():
    env.read_env(ENV_FILE)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """A strict boolean: anything but a clear yes/no fails start-up."""
    raw = env.str(name, default=None)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = env.str(name, default=None)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.str(name, default=default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_url(name: str, default: str, schemes: tuple[str, ...], hostless: tuple[str, ...] = ()) -> str:
    """A URL whose scheme is one of ``schemes``; only the ``hostless`` ones may omit the rest."""
    value = env.str(name, default=default)
    if value:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in schemes or (not rest and scheme not in hostless):
            allowed = ", ".join(f"{s}://" for s in schemes)
            raise ImproperlyConfigured(f"{name} must be {allowed}, not {value!r}")
    return value


def parse_vault_keys(raw: str) -> dict[int, bytes]:
    """``AURA_VAULT_KEYS="2:<base64 32 bytes>,1:<base64 32 bytes>"``: version -> AES-256 key."""
    keys: dict[int, bytes] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        version, sep, encoded = item.partition(":")
        try:
            key = base64.b64decode(encoded, validate=True)
            number = int(version)
        except (ValueError, binascii.Error):
            raise ImproperlyConfigured("AURA_VAULT_KEYS entries must be <version>:<base64 key>") from None
        if not sep or len(key) != 32 or number < 1 or number in keys:
            raise ImproperlyConfigured("AURA_VAULT_KEYS entries must be <version>:<base64 of 32 random bytes>, versions unique and >= 1")
        keys[number] = key
    return keys


DEBUG = env_bool("DEBUG", False)
DATA_DIR = Path(env.str("AURA_DATA_DIR", default=str(BASE_DIR / "var")))
EMBEDDED = not env.str("DATABASE_URL", default="")


def _embedded_secret(name: str, nbytes: int) -> str:
    """A secret generated once and kept in DATA_DIR: only for a single embedded node."""
    path = DATA_DIR / name
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(base64.b64encode(secrets.token_bytes(nbytes)).decode())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not EMBEDDED:
        raise ImproperlyConfigured("SECRET_KEY must be set when DATABASE_URL is set (every node shares it)")
    SECRET_KEY = _embedded_secret("secret_key", 50)
elif len(SECRET_KEY) < 50 and not DEBUG:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters when DEBUG is off")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000", ("http", "https")).rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_ratelimit",
    "csp",
    "accounts",
    "billing",
    "gateway",
    "metrics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "accounts.sessions.JWTSessionMiddleware",  # the session cookie is a JWT naming the session
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.LanguageMiddleware",  # no cookie: see its docstring
    "accounts.middleware.SessionActivityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_ratelimit.middleware.RatelimitMiddleware",
    "csp.middleware.CSPMiddleware",
    "aura.middleware.MethodNotAllowedPage",
]

ROOT_URLCONF = "aura.urls"
WSGI_APPLICATION = "aura.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "aura.context_processors.site",
                "aura.context_processors.session",
                "aura.notices.notice",
            ],
        },
    },
]

# Stores -------------------------------------------------------------------

if EMBEDDED:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "aura.sqlite3",
            # Concurrent writers wait for the lock instead of failing; WAL lets readers go on meanwhile.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
            # A file, not shared-cache memory, so the live-server tests' threads wait on locks like a real server.
            "TEST": {"NAME": DATA_DIR / "test.sqlite3"},
        }
    }
else:
    try:
        DATABASES = {"default": env.db_url("DATABASE_URL")}
    except (ImproperlyConfigured, KeyError, ValueError) as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL AURA can use: {exc}") from None
    if DATABASES["default"].get("ENGINE") not in ("django.db.backends.postgresql", "django.db.backends.sqlite3"):
        raise ImproperlyConfigured("DATABASE_URL must be postgres://user@host:port/name (or sqlite:///path)")
    # Under gevent every in-flight request is a greenlet: without a pool each would hold its own
    # connection, and 1,000 slow streams would need 1,000 of them. A pool caps a process's share.
    DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 0)
    if DATABASE_POOL_SIZE:
        DATABASES["default"]["OPTIONS"] = {"pool": {"min_size": 1, "max_size": DATABASE_POOL_SIZE, "timeout": 10}}
        DATABASES["default"]["CONN_MAX_AGE"] = 0
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", "", ("redis", "rediss", "unix"))
# Short socket timeouts: a frozen Redis must not hang a request.
REDIS_SOCKET_TIMEOUT = env_int("REDIS_SOCKET_TIMEOUT_MS", 500, 1) / 1000
if REDIS_URL:
    from redis.maint_notifications import MaintNotificationsConfig
    from redis.utils import HIREDIS_AVAILABLE

    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "aura",
            "OPTIONS": {
                "socket_timeout": REDIS_SOCKET_TIMEOUT,
                "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
                # One pool per process (aura.cache), shared by every greenlet: at most this many
                # connections, and a call waits for a free one rather than failing. A wait that
                # times out counts as Redis being down (limits fail open for a few seconds), so it
                # is longer than the socket timeout: in a burst of a thousand streams on a busy
                # CPU, 0.5 s was not always enough (seen in bench/gateway.py).
                "pool_class": "redis.BlockingConnectionPool",
                "max_connections": env_int("REDIS_MAX_CONNECTIONS", 200, 1),
                "timeout": env_int("REDIS_POOL_TIMEOUT_MS", 2000, 1) / 1000,
                # No CLIENT SETINFO on each new connection: two round trips, and redis-py reading
                # its own version from the package metadata on disk, every time the pool grows (a
                # burst of a thousand streams grew it by hundreds; bench/gateway.py, under py-spy).
                "driver_info": None,
                # Before handing out a pooled connection, redis-py checks it holds no unread reply
                # (one left by a call cut short would answer the next caller's command), but with
                # maintenance notifications on ("auto", redis-py 8's default) it ignores what it
                # found. AURA needs the check (tests/aura/test_shared_cache.py), made cheap here.
                "maint_notifications_config": MaintNotificationsConfig(enabled=False),
                # hiredis (pinned) parses replies; the subclass must be of redis-py's default parser.
                **({"parser_class": "aura.cache.RedisParser"} if HIREDIS_AVAILABLE else {}),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "aura"}}
# django-ratelimit only knows django-redis by name; Django's own RedisCache has the atomic
# incr it needs. The embedded default runs one process, so local memory is shared enough.
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"] + ([] if REDIS_URL else ["django_ratelimit.E003"])

# Celery: the broker is Redis; without it tasks run eagerly in the calling process.
CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", REDIS_URL, ("redis", "rediss", "unix")) or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240, 1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300, 1)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "accounts.*": {"queue": "default"},
    "billing.*": {"queue": "billing"},
    "metrics.*": {"queue": "metrics"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The periodic schedule: one beat, entries added by the apps' issues, one comment each.
CELERY_BEAT_SCHEDULE: dict = {
    # Retention (privacy policy §6), each job batched and re-queued while work remains:
    # raw usage records, login history and log files older than 14 days.
    "purge-logs": {"task": "accounts.run_retention_job_task", "schedule": 3600, "args": ["purge-logs"]},
    # accounts 30 days after their deletion request.
    "erase-accounts": {"task": "accounts.run_retention_job_task", "schedule": 3600, "args": ["erase-accounts"]},
    # provider key rows of accounts awaiting deletion (their data key is shredded at once): within 24 h.
    "shred-keys": {"task": "accounts.run_retention_job_task", "schedule": 900, "args": ["shred-keys"]},
    # fold usage into aggregates with no user link, before the raw records go; drop those over 12 months.
    "anonymise-usage": {"task": "accounts.run_retention_job_task", "schedule": 6 * 3600, "args": ["anonymise-usage"]},
    # GDPR export files after 7 days.
    "expire-exports": {"task": "accounts.run_retention_job_task", "schedule": 3600, "args": ["expire-exports"]},
    # Usage into hourly and daily rollups: the last 3 hours re-rolled each time, so late records land.
    "rollup-usage": {"task": "metrics.rollup_recent_task", "schedule": 300},
    # Usage records still in the Redis spool (every web process drains it; this is the safety net).
    "drain-usage-spool": {"task": "metrics.drain_usage_spool_task", "schedule": 60},
    # Plan-limit, budget and anomaly alerts, a minute after each rollup (the countdown keeps the order).
    "check-alerts": {"task": "metrics.check_alerts_task", "schedule": 300, "options": {"countdown": 60}},
}

# Email ------------------------------------------------------------------------

_LOCAL_MAIL = ("consolemail", "memorymail", "dummymail")
EMAIL_URL = env_url("EMAIL_URL", "consolemail://", ("smtp", "smtps", "smtp+tls", "smtp+ssl", *_LOCAL_MAIL), _LOCAL_MAIL)
_email = env.email_url_config(EMAIL_URL)
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, 1)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="AURA <no-reply@aura-api.com>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
SUPPORT_EMAIL = env.str("SUPPORT_EMAIL", default="support@aura-api.com")
PRIVACY_EMAIL = env.str("PRIVACY_EMAIL", default="privacy@aura-api.com")

# Accounts ---------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "landing"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("email", "display_name")},
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
EMAIL_VERIFICATION_MAX_AGE = env_int("EMAIL_VERIFICATION_MAX_AGE_HOURS", 72, 1) * 3600
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT_HOURS", 2, 1) * 3600

# Internationalisation -------------------------------------------------------------

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

# Static files ----------------------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Security --------------------------------------------------------------------------

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    # Only behind a TLS-terminating proxy that always sets this header itself.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
# Notices live in the server-side session, not in a cookie of their own (aura/notices.py).
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE_DAYS", 14, 1) * 24 * 3600
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        # Paddle.js (checkout overlay) is the one external script, on the pricing and billing pages.
        "script-src": [SELF, NONCE, "https://cdn.paddle.com"],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "frame-src": ["https://buy.paddle.com", "https://sandbox-buy.paddle.com"],
        "font-src": [SELF],
        "connect-src": [SELF, "https://*.paddle.com"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Vault (provider keys) --------------------------------------------------------------

AURA_VAULT_KEYS = parse_vault_keys(env.str("AURA_VAULT_KEYS", default=""))
if not AURA_VAULT_KEYS:
    if not EMBEDDED:
        raise ImproperlyConfigured("AURA_VAULT_KEYS must be set when DATABASE_URL is set (every node shares it)")
    AURA_VAULT_KEYS = parse_vault_keys("1:" + _embedded_secret("vault_key", 32))

# Gateway --------------------------------------------------------------------------

# Largest /v1 request body, refused before it is read into memory.
AURA_MAX_BODY_BYTES = env_int("AURA_MAX_BODY_BYTES", 32 * 1024 * 1024, 1024)
AURA_UPSTREAM_CONNECT_TIMEOUT = env_int("AURA_UPSTREAM_CONNECT_TIMEOUT_MS", 5000, 1) / 1000
AURA_UPSTREAM_READ_TIMEOUT = env_int("AURA_UPSTREAM_READ_TIMEOUT_MS", 120_000, 1) / 1000
# Key checks on save are a courtesy: short, and a failure to reach the provider is reported, not fatal.
AURA_KEY_CHECK_TIMEOUT = env_int("AURA_KEY_CHECK_TIMEOUT_MS", 3000, 1) / 1000
# Custom base URLs may point at private or loopback addresses (Ollama on the same host, the
# mock provider) only when allowed; a hosted deployment keeps this off against SSRF.
AURA_UPSTREAM_ALLOW_PRIVATE = env_bool("AURA_UPSTREAM_ALLOW_PRIVATE", EMBEDDED)
# How long a node trusts its cached view of an AURA key or a user's vault entries.
AURA_AUTH_CACHE_SECONDS = env_int("AURA_AUTH_CACHE_SECONDS", 300, 1)
# Usage records go to PostgreSQL in batches through a Redis list (metrics/spool.py) rather than
# one INSERT per call; only with Redis and PostgreSQL. Off: each call writes its own record.
AURA_USAGE_SPOOL = env_bool("AURA_USAGE_SPOOL", True)
# A web process serving a single /v1 call polls for the reply of its Redis round trip this long
# before sleeping until it comes (aura.cache._Spinner); 0: never.
AURA_REDIS_SPIN_MICROSECONDS = env_int("AURA_REDIS_SPIN_MICROSECONDS", 300, 0)
if AURA_REDIS_SPIN_MICROSECONDS > 10_000:
    raise ImproperlyConfigured(f"AURA_REDIS_SPIN_MICROSECONDS must be at most 10000, not {AURA_REDIS_SPIN_MICROSECONDS}")

# Paddle Billing ---------------------------------------------------------------------

PADDLE_ENVIRONMENT = env_choice("PADDLE_ENVIRONMENT", "sandbox", ("sandbox", "production"))
PADDLE_API_KEY = env.str("PADDLE_API_KEY", default="")
PADDLE_CLIENT_TOKEN = env.str("PADDLE_CLIENT_TOKEN", default="")
# Comma-separated: during a secret rotation both the old and the new endpoint secret verify.
PADDLE_WEBHOOK_SECRET = env.str("PADDLE_WEBHOOK_SECRET", default="")
PADDLE_API_URL = env_url(
    "PADDLE_API_URL", "https://sandbox-api.paddle.com" if PADDLE_ENVIRONMENT == "sandbox" else "https://api.paddle.com", ("http", "https")
).rstrip("/")
# Price ids of the paid plans: sandbox and live ids differ.
PADDLE_PRICE_PRO = env.str("PADDLE_PRICE_PRO", default="")
PADDLE_PRICE_TEAM = env.str("PADDLE_PRICE_TEAM", default="")
PADDLE_WEBHOOK_TOLERANCE_SECONDS = env_int("PADDLE_WEBHOOK_TOLERANCE_SECONDS", 300, 1)
PADDLE_TIMEOUT = env_int("PADDLE_TIMEOUT_MS", 10_000, 1) / 1000
# A past_due subscription keeps its plan this long, then falls to Free.
BILLING_PAST_DUE_GRACE_DAYS = env_int("BILLING_PAST_DUE_GRACE_DAYS", 7, 0)

# Logging: request bodies are never logged; anything shaped like a key is redacted. -

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
# Optional log files, rotated at midnight and kept 14 days (the purge-logs job removes strays).
LOG_DIR = env.str("LOG_DIR", default="")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "aura.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
        **(
            {
                "file": {
                    "class": "logging.handlers.TimedRotatingFileHandler",
                    "filename": str(Path(LOG_DIR) / "aura.log"),
                    "when": "midnight",
                    "backupCount": 14,
                    "formatter": "plain",
                    "filters": ["redact"],
                }
            }
            if LOG_DIR
            else {}
        ),
    },
    "root": {"handlers": ["console", *(["file"] if LOG_DIR else [])], "level": LOG_LEVEL},
    "loggers": {
        # Django's request logger can attach the request; our filter drops it.
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "django.security": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # Without a broker (the embedded defaults: memory://, tasks run eagerly) kombu warns, at every
        # connection it describes, that no host was given: true, and nothing to act on.
        **({"kombu.connection": {"level": "ERROR"}} if CELERY_BROKER_URL == "memory://" else {}),
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}

RATELIMIT_VIEW = "aura.views.ratelimited"
RATELIMIT_IP_META_KEY = "aura.http.ratelimit_ip"  # the client behind a proxy, as usage records see it
