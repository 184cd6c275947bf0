"""Settings for the real ``qcluster`` processes of ``tests/test_async_workers.py`` and
``tests/test_sagas_workers.py``.

The test passes the name of its (PostgreSQL) test database in ``CQRS_QCLUSTER_DB_NAME``
so that the cluster sees the data of the transactional test, and a cluster name of its
own in ``CQRS_QCLUSTER_NAME``. With ``CQRS_TEST_REDIS_URL`` set, tasks go through Redis.
``CQRS_QCLUSTER_TIMEOUT``, ``CQRS_QCLUSTER_RETRY`` and ``CQRS_QCLUSTER_BATCH_SIZE`` change
the task timeout, the broker's retry and the catch-up batch size; ``CQRS_QCLUSTER_MODULES``
the modules autodiscovered (comma-separated; the saga tests run ``sagas`` and no async
projection); ``CQRS_QCLUSTER_RELAYS`` (JSON) and ``CQRS_QCLUSTER_RELAY_LEASE`` the relays
and their lease.
"""

from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

if os.environ.get("CQRS_QCLUSTER_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["CQRS_QCLUSTER_DB_NAME"]

Q_CLUSTER = {
    "name": os.environ.get("CQRS_QCLUSTER_NAME", "django_cqrs_workers"),
    "sync": False,
    "workers": 2,
    "timeout": int(os.environ.get("CQRS_QCLUSTER_TIMEOUT", "10")),
    "retry": int(os.environ.get("CQRS_QCLUSTER_RETRY", "12")),
    "max_attempts": 5,
    "poll": 0.1,
    "catch_up": False,
    "ack_failures": True,
}
if os.environ.get("CQRS_TEST_REDIS_URL"):
    Q_CLUSTER["redis"] = os.environ["CQRS_TEST_REDIS_URL"]
else:
    Q_CLUSTER["orm"] = "default"

DJANGO_CQRS = {
    "AUTODISCOVER_MODULES": os.environ.get(
        "CQRS_QCLUSTER_MODULES", "handlers,projections,async_projections"
    ).split(","),
    "CATCHUP_BATCH_SIZE": int(os.environ.get("CQRS_QCLUSTER_BATCH_SIZE", "1000")),
    # The relay tests (test_relays_brokers.py): the relays as JSON, a short lease.
    "RELAYS": json.loads(os.environ.get("CQRS_QCLUSTER_RELAYS", "{}")),
    "RELAY_LEASE_SECONDS": float(os.environ.get("CQRS_QCLUSTER_RELAY_LEASE", "30")),
    "EVENT_SOURCE": "/tests",
}
