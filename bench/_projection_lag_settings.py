"""Settings of ``bench/projections.py --lag``: the bench process and its qcluster processes.

django-q2 reads ``Q_CLUSTER`` when it is imported, so the bench process and the
``manage.py qcluster`` processes it starts share this module (``DJANGO_SETTINGS_MODULE=
bench._projection_lag_settings``), configured through the environment:

- ``CQRS_BENCH_LAG_DB_URL``: the PostgreSQL bench database (created and dropped by the
  bench);
- ``CQRS_BENCH_LAG_REDIS_URL``: the Redis broker (``redis://127.0.0.1:6379/<db>``);
- ``CQRS_BENCH_LAG_CLUSTER``: the cluster name (unique per run: the Redis keys);
- ``CQRS_BENCH_LAG_WORKERS``: worker processes per cluster (default 2);
- ``CQRS_BENCH_RELAYS`` (JSON, bench/relay.py): ``DJANGO_CQRS["RELAYS"]``, and
  ``CQRS_BENCH_EVENT_SOURCE`` its ``EVENT_SOURCE`` (default: no relays, as before);
- ``CQRS_BENCH_MODULES``: the modules autodiscovered, comma-separated (bench/relay.py
  ``--without-sagas``: ``handlers,projections``; default: django_cqrs' own).

Everything else is the demo's set-up (bench/_common.py's ``configure_django``), with
django_cqrs' defaults (``DJANGO_CQRS = {}``).
"""

from __future__ import annotations

import json
import os

import dj_database_url

DEBUG = False  # no query log
SECRET_KEY = "bench-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_q",
    "django_cqrs",
    "demo_project.orders",
]
DATABASES = {
    "default": dj_database_url.parse(os.environ["CQRS_BENCH_LAG_DB_URL"], conn_max_age=None)
}
Q_CLUSTER = {
    "name": os.environ["CQRS_BENCH_LAG_CLUSTER"],
    "redis": os.environ["CQRS_BENCH_LAG_REDIS_URL"],
    "workers": int(os.environ.get("CQRS_BENCH_LAG_WORKERS", "2")),
    "timeout": 60,
    "retry": 90,
    "max_attempts": 3,
    "catch_up": False,
    "sync": False,
    "log_level": "WARNING",  # not a line per enqueued and processed task
}
DJANGO_CQRS: dict[str, object] = {}
if os.environ.get("CQRS_BENCH_MODULES"):  # bench/relay.py --without-sagas
    DJANGO_CQRS["AUTODISCOVER_MODULES"] = os.environ["CQRS_BENCH_MODULES"].split(",")
if os.environ.get("CQRS_BENCH_RELAYS"):
    DJANGO_CQRS["RELAYS"] = json.loads(os.environ["CQRS_BENCH_RELAYS"])
    DJANGO_CQRS["EVENT_SOURCE"] = os.environ.get("CQRS_BENCH_EVENT_SOURCE", "/bench")

#: Seconds a checkout waits for the payment (the demo's setting; bench/sagas.py sets it).
DEMO_PAYMENT_TIMEOUT = float(os.environ.get("DEMO_PAYMENT_TIMEOUT", "30"))
#: The checkout saga's partitions (bench/sagas.py --partitions).
DEMO_CHECKOUT_PARTITIONS = int(os.environ.get("DEMO_CHECKOUT_PARTITIONS", "1"))

#: BENCH_LOG_LEVEL=INFO shows what the workers' catch-ups do (in the cluster's log).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_cqrs": {
            "handlers": ["console"],
            "level": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        }
    },
}
