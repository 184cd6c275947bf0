"""``db.log.lock_log``: on PostgreSQL appends wait while the lock is held; SQLite needs none.

The waits are observed from a real second connection (a thread) with a short
``lock_timeout``: a statement that would wait fails with PostgreSQL's "lock not
available" instead of hanging the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_cqrs.db.log import lock_log
from django_cqrs.models import StoredEvent

pytestmark = pytest.mark.django_db

LOCK_TIMEOUT_MS = 300


class Rollback(Exception):
    """Ends the second connection's transaction without committing it."""


def in_second_connection(body: Callable[[], Any]) -> tuple[str, float]:
    """Run ``body`` in a transaction of another connection, always rolled back.

    Returns ``("ok", seconds)`` or ``("lock timeout", seconds)`` when a statement of
    ``body`` waited longer than ``LOCK_TIMEOUT_MS`` for a lock.
    """
    outcome: list[tuple[str, float]] = []

    def run() -> None:
        start = time.monotonic()
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
                body()
                raise Rollback
        except Rollback:
            outcome.append(("ok", time.monotonic() - start))
        except DatabaseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
                outcome.append((f"error: {exc!r}", time.monotonic() - start))
            else:
                outcome.append(("lock timeout", time.monotonic() - start))
        finally:
            connections.close_all()  # this thread's connections

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the second connection hung"
    return outcome[0]


def append_one() -> None:
    StoredEvent.objects.create(
        event_type="tests.Lock",
        aggregate_type="tests.Lock",
        aggregate_id="1",
        aggregate_version=1,
        payload={},
        recorded_at=timezone.now(),
    )


def count_events() -> None:
    StoredEvent.objects.count()


def test_lock_log_sends_a_lock_table_on_postgresql_and_nothing_on_sqlite() -> None:
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        lock_log(StoredEvent, "default", "EXCLUSIVE")

    sent = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("LOCK")]
    if connection.vendor == "postgresql":
        assert sent == [f'LOCK TABLE "{StoredEvent._meta.db_table}" IN EXCLUSIVE MODE']
    else:
        assert captured.captured_queries == []


@pytest.mark.postgres
def test_without_the_lock_a_second_connection_appends_at_once() -> None:
    # The control for the tests below: what the second connection does needs no wait.
    assert in_second_connection(append_one)[0] == "ok"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the lock must end with a real commit
@pytest.mark.parametrize("mode", ["EXCLUSIVE", "SHARE"])
def test_while_the_lock_is_held_a_second_connection_waits_to_append(mode: str) -> None:
    with transaction.atomic():
        lock_log(StoredEvent, "default", mode)
        outcome, seconds = in_second_connection(append_one)

    assert outcome == "lock timeout"
    assert seconds >= LOCK_TIMEOUT_MS / 1000 * 0.9  # it waited, then gave up
    # The lock ended with the transaction: appends go through again.
    assert in_second_connection(append_one)[0] == "ok"


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["EXCLUSIVE", "SHARE"])
def test_while_the_lock_is_held_readers_are_not_blocked(mode: str) -> None:
    with transaction.atomic():
        lock_log(StoredEvent, "default", mode)
        assert in_second_connection(count_events)[0] == "ok"
