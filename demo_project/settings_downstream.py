"""Settings of the demo's second service (downstream). Local use only, like the demo's.

A Django service of its own: its SQLite file (``downstream.sqlite3``, or
``DOWNSTREAM_SQLITE_PATH``), its apps (django_cqrs and ``demo_project.downstream``,
not the orders app) and one inbox, ``orders``, that receives the orders demo's events
from RabbitMQ (the exchange ``demo.events``, to which the demo's relay publishes):

    python manage.py migrate --settings demo_project.settings_downstream
    python manage.py cqrs_consume orders --settings demo_project.settings_downstream
    python manage.py runserver 8001 --settings demo_project.settings_downstream

``make demo`` runs all three when RabbitMQ answers on 127.0.0.1:5672.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "downstream-demo-only-insecure-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_cqrs",
    "demo_project.downstream",
]

MIDDLEWARE = [
    "django_cqrs.nul_guard.RejectNulMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.downstream.urls"

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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DOWNSTREAM_SQLITE_PATH", str(BASE_DIR / "downstream.sqlite3")),
        "OPTIONS": {
            # The consumer writes while the web server reads (see demo_project/settings.py).
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"

DJANGO_CQRS = {
    "INBOXES": {
        "orders": {
            "BACKEND": "rabbitmq",
            "URL": os.environ.get("DOWNSTREAM_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            "EXCHANGE": os.environ.get("DOWNSTREAM_EXCHANGE", "demo.events"),
            "QUEUE": os.environ.get("DOWNSTREAM_QUEUE", "downstream.orders"),
            # Routing keys are the CloudEvent types: the three this service handles.
            "BINDINGS": ["orders.OrderPlaced", "orders.OrderShipped", "orders.OrderCancelled"],
        }
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_cqrs": {"handlers": ["console"], "level": "WARNING"},
        # pika logs every failed connection attempt at ERROR, several lines each; the
        # relays and the inbox log the reason themselves (docs/relays.md, "Operating").
        "pika": {"level": "CRITICAL"},
    },
}
