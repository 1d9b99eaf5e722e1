"""Lens settings, all read from the environment (see README "Configuration").

There is one settings module for every environment; `lens/devstack.py` fills
in DATABASE_URL, REDIS_URL and AWS_ENDPOINT_URL with embedded services when
they are not given.
"""

import ipaddress
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from lens.env import env_bool, env_decimal, env_int, env_list, env_str
from lens.signin import sso_providers_from_env

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-key" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("Set SECRET_KEY (or DEBUG=true for development).")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_htmx",
    "channels",
    "lens",
    "courses",
    "billing",
    "provisioning",
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
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "lens.urls"
ASGI_APPLICATION = "lens.asgi.application"
WSGI_APPLICATION = None

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

# --- Database: PostgreSQL only, one engine everywhere ------------------------
DATABASE_URL = env_str("DATABASE_URL", "")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "Set DATABASE_URL (postgres://…), or run through `make demo` / `make test`, "
        "which start an embedded PostgreSQL when it is unset."
    )
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL.")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, cache and channel layer ---------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if not REDIS_URL:
    raise ImproperlyConfigured("Set REDIS_URL (redis://…), or run through make demo / make test.")

CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": REDIS_URL}}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 otherwise times out idle websocket readers after ~5 s.
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": env_str("CHANNEL_LAYER_PREFIX", "lens"),
        },
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "lens")
# Stops that protect a budget go to their own queue, which every worker also
# consumes, so they are not stuck behind a backlog of launches (a class of 400
# pressing Launch at 9:00). AWS bills a machine until StopInstances is called.
CELERY_URGENT_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}-urgent"
# Each queue has its own exchange and key: a shared default key would copy every task to both.
CELERY_TASK_QUEUES = [Queue(name, Exchange(name), routing_key=name)
                      for name in (CELERY_URGENT_QUEUE, CELERY_TASK_DEFAULT_QUEUE)]
CELERY_TASK_ROUTES = {
    "provisioning.tasks.member_budget_check_task": {"queue": CELERY_URGENT_QUEUE},
    "provisioning.tasks.workspace_stop_task": {"queue": CELERY_URGENT_QUEUE},
    "provisioning.tasks.workspaces_stop_task": {"queue": CELERY_URGENT_QUEUE},
}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- AWS -------------------------------------------------------------------
# Empty endpoint = real AWS. The default CloudAccount takes its region and
# endpoint from these on first use; per-account values live in the database.
AWS_ENDPOINT_URL = env_str("AWS_ENDPOINT_URL", "")
AWS_DEFAULT_REGION = env_str("AWS_DEFAULT_REGION", "us-east-1")
# Seconds between checks of a machine that is on its way up or down.
LENS_POLL_SECONDS = env_int("LENS_POLL_SECONDS", 5)
# EC2's throttling, mirrored in Redis so workers queue instead of failing (see
# provisioning/ratelimit.py; defaults are EC2's documented bucket sizes and refill
# rates per account and region: RunInstances/StartInstances 5 deep at 2/s, other
# mutating calls 5/s, StopInstances/TerminateInstances 1,000 instances at 20/s).
LENS_EC2_RATE_LIMITS = env_bool("LENS_EC2_RATE_LIMITS", True)
LENS_EC2_RUN_BURST = env_int("LENS_EC2_RUN_BURST", 5)
LENS_EC2_RUN_PER_SECOND = float(env_decimal("LENS_EC2_RUN_PER_SECOND", "2"))
LENS_EC2_MUTATE_BURST = env_int("LENS_EC2_MUTATE_BURST", 200)
LENS_EC2_MUTATE_PER_SECOND = float(env_decimal("LENS_EC2_MUTATE_PER_SECOND", "5"))
LENS_EC2_STOP_BURST = env_int("LENS_EC2_STOP_BURST", 1000)
LENS_EC2_STOP_PER_SECOND = float(env_decimal("LENS_EC2_STOP_PER_SECOND", "20"))
# A worker sleeps off a wait up to this long; a longer one re-queues the task for later.
LENS_EC2_MAX_WAIT_SECONDS = float(env_decimal("LENS_EC2_MAX_WAIT_SECONDS", "2"))
# Who may reach workspaces' SSH and Jupyter ports, in the network Lens makes for an
# account that has none. Students connect from home, so the default is anywhere;
# a university that has a VPN should set its range (e.g. 203.0.113.0/24).
LENS_ACCESS_CIDR = env_str("LENS_ACCESS_CIDR", "0.0.0.0/0")
try:
    LENS_ACCESS_CIDR = str(ipaddress.IPv4Network(LENS_ACCESS_CIDR, strict=True))
except ValueError as exc:
    raise ImproperlyConfigured(f"LENS_ACCESS_CIDR={LENS_ACCESS_CIDR!r} is not an IPv4 network "
                               f"such as 203.0.113.0/24 ({exc}).") from None

# --- Idle auto-stop ---------------------------------------------------------
# The address workspaces reach Lens at (the activity agent posts heartbeats there).
LENS_PUBLIC_URL = env_str("LENS_PUBLIC_URL", SITE_URL).rstrip("/")
# Below these a machine counts as idle: average CPU per period, and network
# bytes (in + out) per minute.
LENS_IDLE_CPU_PERCENT = env_decimal("LENS_IDLE_CPU_PERCENT", "5")
LENS_IDLE_NETWORK_BYTES_PER_MINUTE = env_int("LENS_IDLE_NETWORK_BYTES_PER_MINUTE", 100_000)
# Average CPU at or above this before going idle makes a "your job looks finished" notice.
LENS_IDLE_BUSY_CPU_PERCENT = env_decimal("LENS_IDLE_BUSY_CPU_PERCENT", "50")
# The warning goes out this long before the stop (at most a quarter of the idle window,
# at least one sweep).
LENS_IDLE_WARNING_MINUTES = env_int("LENS_IDLE_WARNING_MINUTES", 15)
# The "job looks finished" notice after this long quiet (at most a quarter of the window).
LENS_IDLE_FINISHED_MINUTES = env_int("LENS_IDLE_FINISHED_MINUTES", 10)
# CloudWatch period: 300 s matches EC2 basic monitoring; 60 s with detailed monitoring.
LENS_IDLE_METRIC_PERIOD_SECONDS = env_int("LENS_IDLE_METRIC_PERIOD_SECONDS", 300)
# Heartbeats closer together than this are ignored.
LENS_HEARTBEAT_MIN_SECONDS = env_int("LENS_HEARTBEAT_MIN_SECONDS", 30)
# How often the agent reports.
LENS_AGENT_INTERVAL_SECONDS = env_int("LENS_AGENT_INTERVAL_SECONDS", 60)

# --- Money -------------------------------------------------------------------
# A launch or start sets aside this many hours at the machine's price.
LENS_HOLD_HOURS = env_decimal("LENS_HOLD_HOURS", "1")
# Budget stops are sent this many seconds before the money runs out, to cover
# the time AWS takes to stop a machine.
LENS_STOP_LEAD_SECONDS = env_int("LENS_STOP_LEAD_SECONDS", 5)
# Disks are paid for in advance to the end of term; a course with no end date
# sets aside this many days of them instead.
LENS_STORAGE_RESERVE_DAYS = env_int("LENS_STORAGE_RESERVE_DAYS", 30)
# The one-minute sweep writes a storage line for a stopped workspace once this
# much has built up (checks at launch, start and the budget stop bill to the second).
LENS_STORAGE_LINE_MINUTES = env_int("LENS_STORAGE_LINE_MINUTES", 60)
# EBS prices are per GB-month; AWS prorates a month as 730 hours.
LENS_HOURS_PER_MONTH = 730
# How long the snapshot a reset (or a deletion) takes is kept before Lens deletes it.
LENS_BACKUP_RETENTION_DAYS = env_int("LENS_BACKUP_RETENTION_DAYS", 7)

# --- Sign-in (django-allauth) ---------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
SITE_ID = 1
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "none")
ACCOUNT_ADAPTER = "courses.adapters.LensAccountAdapter"
ACCOUNT_ALLOW_SIGNUPS = env_bool("ACCOUNT_ALLOW_SIGNUPS", True)
ACCOUNT_LOGOUT_ON_GET = False
LOGIN_REDIRECT_URL = "/"
LOGIN_URL = "/accounts/login/"
# University SSO: one SAML IdP and/or one OpenID Connect provider from SAML_* /
# OIDC_* (lens/signin.py, README "University sign-in"); more as SocialApp rows
# in the admin.
INSTALLED_APPS += [
    "allauth.socialaccount.providers.saml",
    "allauth.socialaccount.providers.openid_connect",
]
SOCIALACCOUNT_ADAPTER = "courses.adapters.LensSocialAccountAdapter"
SOCIALACCOUNT_PROVIDERS = sso_providers_from_env()
# A university account whose email the IdP vouches for (SSO_VERIFIED_EMAIL_DOMAINS)
# signs in to the existing Lens account with that email instead of a second one.
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True

# --- API -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an unauthenticated call gets 401 with WWW-Authenticate.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lens API",
    "DESCRIPTION": "Cloud workstations for classes, labs and researchers.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Email -----------------------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Lens <lens@localhost>")

# --- I18N, static ----------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "static"
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
}
