"""Settings of the demo project (orders). Local use only: DEBUG, a fixed secret key.

SQLite in ``demo.sqlite3`` by default, set up for several processes (web server and
django-q2 cluster): WAL journal, a busy timeout and immediate transactions.
``DATABASE_URL`` switches to PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from demo_project.supervisor import answers

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "django_cqrs",
    "django_cqrs.rest_framework",
    "demo_project.orders",
]

MIDDLEWARE = [
    "django_cqrs.nul_guard.RejectNulMiddleware",  # a NUL in the URL or a cookie: 400, not 500
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
WSGI_APPLICATION = "demo_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DEMO_SQLITE_PATH", str(BASE_DIR / "demo.sqlite3")),
            "OPTIONS": {
                # Several processes share the file: WAL lets readers run beside the writer,
                # the busy timeout makes a writer wait instead of failing, and IMMEDIATE
                # takes the write lock at BEGIN so read-then-write cannot deadlock.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;"
                ),
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Basic first: an anonymous API request gets 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Anyone may read; commands need a user (shipping needs staff, see orders/api.py).
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "EXCEPTION_HANDLER": "django_cqrs.rest_framework.exceptions.problem_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "django_cqrs demo: orders",
    "VERSION": "0.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The live schema names the server it came from; `manage.py spectacular` this one.
    "SERVERS": [{"url": "http://127.0.0.1:8000", "description": "make demo"}],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "django_cqrs.rest_framework.schema.servers_from_request",
        "django_cqrs.rest_framework.schema.links_from_creates",
    ],
}

Q_CLUSTER = {
    "name": "django_cqrs_demo",
    "orm": "default",
    "workers": 2,
    "timeout": 60,
    "retry": 90,
    "max_attempts": 5,
    "catch_up": False,
}


def _answers(url: str, default_port: int) -> bool:
    """Whether a broker listens at ``url`` (asked once, when the settings load)."""
    parts = urlsplit(url)
    return answers(parts.hostname or "127.0.0.1", parts.port or default_port)


#: The demo's brokers (docs/relays.md); DEMO_RELAYS=0 turns both relays off.
DEMO_RABBITMQ_URL = os.environ.get("DEMO_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
DEMO_NATS_URL = os.environ.get("DEMO_NATS_URL", "nats://127.0.0.1:4222")
_RELAYS_ON = os.environ.get("DEMO_RELAYS", "1") != "0"
#: Where the demo's relays send (the tests give each run names of its own).
DEMO_EXCHANGE = os.environ.get("DEMO_EXCHANGE", "demo.events")
DEMO_STREAM = os.environ.get("DEMO_STREAM", "DEMO_EVENTS")
DEMO_SUBJECT_PREFIX = os.environ.get("DEMO_SUBJECT_PREFIX", "demo.events")

#: Every demo event to each broker that answers: RabbitMQ's topic exchange demo.events
#: (routing key = the stored event name) and the JetStream stream DEMO_EVENTS (subjects
#: demo.events.<stored event name>). The demo starts without either.
DEMO_RELAYS: dict[str, dict[str, object]] = {}
if _RELAYS_ON and _answers(DEMO_RABBITMQ_URL, 5672):
    DEMO_RELAYS["rabbitmq"] = {
        "BACKEND": "rabbitmq",
        "URL": DEMO_RABBITMQ_URL,
        "EXCHANGE": DEMO_EXCHANGE,
        "EXCHANGE_TYPE": "topic",
    }
if _RELAYS_ON and _answers(DEMO_NATS_URL, 4222):
    DEMO_RELAYS["nats"] = {
        "BACKEND": "nats",
        "SERVERS": [DEMO_NATS_URL],
        "STREAM": DEMO_STREAM,
        "SUBJECT_PREFIX": DEMO_SUBJECT_PREFIX,
    }

DJANGO_CQRS: dict[str, object] = {"RELAYS": DEMO_RELAYS, "EVENT_SOURCE": "/demo_project"}


def _seconds(name: str, default: str) -> float:
    """A positive number of seconds from the environment variable ``name``."""
    text = os.environ.get(name, "").strip() or default
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise ImproperlyConfigured(f"{name} must be a positive number of seconds, not {text!r}")
    return seconds


#: Seconds a checkout waits for the payment gateway's answer before it cancels the order
#: (orders/sagas.py); the gateway's "hold" mode never answers.
DEMO_PAYMENT_TIMEOUT = _seconds("DEMO_PAYMENT_TIMEOUT", "30")
#: Partitions of the checkout saga (orders/sagas.py): as many workers can run checkouts at
#: once, where their stock rows do not collide. Change it only with the saga drained
#: (docs/sagas.md, "Partitions"); 1 measured faster for the demo (docs/benchmarks.md).
DEMO_CHECKOUT_PARTITIONS = 1

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_cqrs": {"handlers": ["console"], "level": "INFO"},
        # pika logs every failed connection attempt at ERROR, several lines each; the
        # relays and the inbox log the reason themselves (docs/relays.md, "Operating").
        "pika": {"level": "CRITICAL"},
    },
}
