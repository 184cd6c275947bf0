"""``cqrs_consume`` against a real RabbitMQ: CloudEvents published as the relay does.

Each test gets an exchange and a queue of its own, deleted afterwards.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_cqrs.inbox import IncomingEvent, inbox_handler
from django_cqrs.inbox.registry import unregister
from django_cqrs.models import InboxMessage
from tests.brokers import requires_rabbitmq
from tests.inbox_helpers import (
    body,
    cloud_event,
    rabbit_delete,
    rabbit_inbox,
    rabbit_publish,
    rabbit_queue_depth,
    rabbit_topology,
)

pytestmark = [pytest.mark.rabbitmq, requires_rabbitmq, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
State = InboxMessage.State


@pytest.fixture
def topology() -> Iterator[tuple[str, str]]:
    with rabbit_topology() as names:
        yield names


@pytest.fixture
def seen() -> Iterator[list[IncomingEvent]]:
    received: list[IncomingEvent] = []

    @inbox_handler("tests.Happened")
    def record(event: IncomingEvent) -> None:
        received.append(event)

    @inbox_handler("tests.Broken")
    def broken(event: IncomingEvent) -> None:
        raise RuntimeError("the handler is broken")

    yield received
    unregister(record)
    unregister(broken)


def consume(inbox: dict[str, Any], *args: str) -> str:
    out = io.StringIO()
    with override_settings(DJANGO_CQRS={"INBOXES": {"test": inbox}}):
        call_command("cqrs_consume", "test", *args, stdout=out)
    return out.getvalue()


def test_the_same_id_delivered_twice_is_applied_once(
    topology: tuple[str, str], seen: list[IncomingEvent]
) -> None:
    exchange, queue = topology
    event = cloud_event("tests.Happened", "7", 3, {"x": 1})
    rabbit_publish(exchange, event, event, cloud_event("tests.Happened", "7", 4))

    out = consume(rabbit_inbox(exchange, queue), "--max-messages", "3", "--idle-timeout", "5")

    assert [(e.id, e.aggregate_version) for e in seen] == [
        ("tests.Aggregate/7/3", 3),
        ("tests.Aggregate/7/4", 4),
    ]
    assert seen[0].data == {"x": 1}
    assert seen[0].correlation_id == "corr-1"
    assert seen[0].inbox == "test"
    assert "3 received (1 duplicate, 2 handled)" in out
    assert InboxMessage.objects.filter(state=State.HANDLED).count() == 2
    assert rabbit_queue_depth(queue) == 0  # every message acknowledged


def test_an_invalid_message_is_parked_and_the_consumer_goes_on(
    topology: tuple[str, str], seen: list[IncomingEvent]
) -> None:
    exchange, queue = topology
    rabbit_publish(exchange, b"not json at all", cloud_event("tests.Happened", "1", 1))

    out = consume(rabbit_inbox(exchange, queue), "--max-messages", "2", "--idle-timeout", "5")

    assert [e.id for e in seen] == ["tests.Aggregate/1/1"]
    [parked] = InboxMessage.objects.filter(state=State.FAILED)
    assert "not a valid CloudEvent" in parked.last_error
    assert parked.body == "not json at all"
    assert "1 parked" in out
    assert rabbit_queue_depth(queue) == 0


def test_a_failing_handler_is_retried_then_recorded_failed(
    topology: tuple[str, str], seen: list[IncomingEvent]
) -> None:
    exchange, queue = topology
    rabbit_publish(exchange, cloud_event("tests.Broken", "9", 1), cloud_event("tests.Happened"))

    consume(rabbit_inbox(exchange, queue, MAX_ATTEMPTS=3), "--max-messages", "2")

    [failed] = InboxMessage.objects.filter(state=State.FAILED)
    assert (failed.type, failed.attempts) == ("tests.Broken", 3)
    assert "the handler is broken" in failed.last_error
    assert len(seen) == 1  # the next message was applied
    assert rabbit_queue_depth(queue) == 0


def test_the_idle_timeout_ends_a_run_with_nothing_to_do(topology: tuple[str, str]) -> None:
    exchange, queue = topology
    started = time.monotonic()

    out = consume(rabbit_inbox(exchange, queue), "--idle-timeout", "0.5")

    assert time.monotonic() - started < 10
    assert "stopped (idle for 0.5s): 0 received" in out


def test_the_consumer_declares_its_queue_and_bindings() -> None:
    exchange, queue = "tests.inbox.declared", "tests.inbox.declared.q"
    try:
        consume(rabbit_inbox(exchange, queue, BINDINGS=["tests.#"]), "--idle-timeout", "0.2")
        rabbit_publish(exchange, cloud_event("tests.Happened"), cloud_event("other.Thing"))
        assert rabbit_queue_depth(queue) == 1  # only what the binding asks for
    finally:
        rabbit_delete(exchange, queue)


def test_an_unreachable_broker_is_a_command_error_naming_the_setting() -> None:
    inbox = rabbit_inbox("x", "q", URL="amqp://guest:secret@127.0.0.1:1/")

    with pytest.raises(CommandError) as error:
        consume(inbox, "--idle-timeout", "1")

    message = str(error.value)
    assert "DJANGO_CQRS['INBOXES']['test']['URL']" in message
    assert "127.0.0.1:1" in message
    assert "secret" not in message


# -- a consumer killed before it acknowledged --------------------------------------------


def test_a_message_redelivered_after_the_consumer_was_killed_is_applied_once(
    topology: tuple[str, str], tmp_path: Path
) -> None:
    """The first consumer commits the message and is SIGKILLed before it acknowledges it
    (its handler hangs up after the commit); the broker delivers it again to the second,
    which finds it in the inbox: applied once."""
    exchange, queue = topology
    database = tmp_path / "inbox.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.inbox_subprocess_settings",
        "INBOX_TEST_DB": str(database),
        "INBOX_TEST_EXCHANGE": exchange,
        "INBOX_TEST_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
    }
    manage = [sys.executable, "-m", "django"]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, cwd=ROOT, timeout=120)
    rabbit_publish(exchange, cloud_event("tests.Counted", "1", 1))

    first = subprocess.Popen(
        [*manage, "cqrs_consume", "test"],
        env={**env, "INBOX_TEST_HANG_AFTER_COMMIT": "1"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not _handled(database) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _handled(database) == 1, "the first consumer did not commit the message"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)

    second = subprocess.run(
        [*manage, "cqrs_consume", "test", "--max-messages", "1", "--idle-timeout", "20"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert second.returncode == 0, second.stderr
    assert "1 received (1 duplicate)" in second.stdout
    assert _handled(database) == 1
    assert _counted(database) == 1  # the handler's own row: once
    assert rabbit_queue_depth(queue) == 0


def _query(database: Path, sql: str) -> int:
    import sqlite3

    if not database.exists():
        return 0
    with sqlite3.connect(database, timeout=10) as connection:
        try:
            return int(connection.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def _handled(database: Path) -> int:
    return _query(
        database, "SELECT COUNT(*) FROM django_cqrs_inbox_message WHERE state = 'handled'"
    )


def _counted(database: Path) -> int:
    return _query(database, "SELECT COUNT(*) FROM django_cqrs_event")


def test_sigterm_stops_the_consumer_after_the_message_in_hand(
    topology: tuple[str, str], tmp_path: Path
) -> None:
    exchange, queue = topology
    database = tmp_path / "inbox.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.inbox_subprocess_settings",
        "INBOX_TEST_DB": str(database),
        "INBOX_TEST_EXCHANGE": exchange,
        "INBOX_TEST_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
    }
    manage = [sys.executable, "-m", "django"]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, cwd=ROOT, timeout=120)
    consumer = subprocess.Popen(
        [*manage, "cqrs_consume", "test"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert consumer.stdout is not None
        assert "consuming from RabbitMQ" in consumer.stdout.readline()
        rabbit_publish(exchange, cloud_event("tests.Counted", "5", 1))
        deadline = time.monotonic() + 30
        while not _handled(database) and time.monotonic() < deadline:
            time.sleep(0.1)
        consumer.send_signal(signal.SIGTERM)
        out, err = consumer.communicate(timeout=30)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()

    assert consumer.returncode == 0, err
    assert "stopped (SIGTERM): 1 received (1 handled)" in out
    assert "Traceback" not in err
    assert body  # (the helpers' encoder is what the subprocess's messages use too)
