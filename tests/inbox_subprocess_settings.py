"""The test settings, for a ``cqrs_consume`` run in a process of its own.

A SQLite file (``INBOX_TEST_DB``) both processes and the test open; one inbox, ``test``,
on the RabbitMQ exchange and queue the test made (``INBOX_TEST_EXCHANGE``,
``INBOX_TEST_QUEUE``). ``tests/testapp/inbox.py`` handles ``tests.Counted``.
"""

from __future__ import annotations

import os

from tests.inbox_helpers import RABBITMQ_URL
from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["INBOX_TEST_DB"],
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }
}

DJANGO_CQRS = {
    "INBOXES": {
        "test": {
            "BACKEND": "rabbitmq",
            "URL": RABBITMQ_URL,
            "EXCHANGE": os.environ.get("INBOX_TEST_EXCHANGE", "tests.inbox"),
            "QUEUE": os.environ.get("INBOX_TEST_QUEUE", "tests.inbox"),
            "RETRY_BACKOFF": 0.01,
        }
    }
}
