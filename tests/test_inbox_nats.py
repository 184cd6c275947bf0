"""``cqrs_consume`` against a real NATS JetStream: CloudEvents published as the relay does.

Each test gets a stream of its own (subjects ``<prefix>.>``), deleted afterwards.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_cqrs.inbox import IncomingEvent, inbox_handler
from django_cqrs.inbox.registry import unregister
from django_cqrs.models import InboxMessage
from tests.brokers import requires_nats
from tests.inbox_helpers import (
    cloud_event,
    nats_call,
    nats_inbox,
    nats_publish,
    nats_stream,
    unique,
)

pytestmark = [pytest.mark.nats, requires_nats, pytest.mark.django_db(transaction=True)]

State = InboxMessage.State


@pytest.fixture
def stream() -> Iterator[tuple[str, str]]:
    with nats_stream() as names:
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


def pending(stream_name: str, durable: str) -> int:
    async def info(js: Any) -> int:
        consumer = await js.consumer_info(stream_name, durable)
        return int(consumer.num_pending + consumer.num_ack_pending)

    return int(nats_call(info))


def test_the_same_id_published_twice_is_applied_once(
    stream: tuple[str, str], seen: list[IncomingEvent]
) -> None:
    """JetStream deduplicates a resend within its window by ``Nats-Msg-Id``; a consumer
    can still get a message twice (redelivery), which is what the inbox's row is for:
    here a second durable consumer reads the same stream into the same inbox table."""
    name, prefix = stream
    event = cloud_event(
        "tests.Happened", "3", 2, {"y": 2}, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    )
    nats_publish(prefix, event, cloud_event("tests.Happened", "3", 3))

    first = consume(nats_inbox(name, "first"), "--max-messages", "2", "--idle-timeout", "5")
    again = consume(nats_inbox(name, "again"), "--max-messages", "2", "--idle-timeout", "5")

    assert [e.id for e in seen] == ["tests.Aggregate/3/2", "tests.Aggregate/3/3"]
    assert seen[0].traceparent == event["traceparent"]
    assert seen[0].data == {"y": 2}
    assert "2 received (2 handled)" in first
    assert "2 received (2 duplicate)" in again
    assert pending(name, "first") == 0


def test_an_invalid_message_is_parked_and_a_failing_one_recorded_failed(
    stream: tuple[str, str], seen: list[IncomingEvent]
) -> None:
    name, prefix = stream
    nats_publish(
        prefix,
        b'{"specversion": "1.0", "id": "no-source"}',
        cloud_event("tests.Broken", "8", 1),
        cloud_event("tests.Happened", "8", 2),
    )

    out = consume(nats_inbox(name, "c", MAX_ATTEMPTS=2), "--max-messages", "3")

    failed = {m.message_id: m for m in InboxMessage.objects.filter(state=State.FAILED)}
    assert set(failed) == {"no-source", "tests.Aggregate/8/1"}
    assert "not a valid CloudEvent" in failed["no-source"].last_error
    assert failed["tests.Aggregate/8/1"].attempts == 2
    assert [e.id for e in seen] == ["tests.Aggregate/8/2"]
    assert "3 received (1 handled, 2 parked)" in out
    assert pending(name, "c") == 0


def test_subject_filters_choose_the_events(
    stream: tuple[str, str], seen: list[IncomingEvent]
) -> None:
    name, prefix = stream
    nats_publish(prefix, cloud_event("other.Happened"), cloud_event("tests.Happened"))

    consume(
        nats_inbox(name, "f", SUBJECTS=[f"{prefix}.tests.>"]),
        "--max-messages",
        "1",
        "--idle-timeout",
        "5",
    )

    assert [e.type for e in seen] == ["tests.Happened"]


def test_a_missing_stream_or_server_is_a_command_error_naming_the_setting() -> None:
    with pytest.raises(CommandError, match=r"no JetStream stream .*\['STREAM'\]"):
        consume(nats_inbox(unique("NO_SUCH"), "d"), "--idle-timeout", "1")
    with pytest.raises(CommandError, match=r"cannot connect to NATS .*\['SERVERS'\]"):
        consume(nats_inbox("S", "d", SERVERS=["nats://127.0.0.1:1"]), "--idle-timeout", "1")
