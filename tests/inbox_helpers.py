"""CloudEvents in the relays' wire format, published to RabbitMQ and NATS for the inbox tests.

The brokers' tests skip, saying why, when the broker does not answer: RabbitMQ on
127.0.0.1:5672 (or ``RABBITMQ_URL``), NATS with JetStream on 127.0.0.1:4222 (or
``NATS_URL``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.brokers import NATS_URL, RABBITMQ_URL

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


def cloud_event(
    event_type: str = "tests.Happened",
    aggregate_id: str = "42",
    version: int = 1,
    data: dict[str, Any] | None = None,
    *,
    source: str = "/upstream",
    position: int = 1,
    correlation_id: str | None = "corr-1",
    **extra: Any,
) -> dict[str, Any]:
    """A CloudEvent as the relay publishes it (JSON structured mode)."""
    aggregate_type = event_type.rpartition(".")[0] + ".Aggregate"
    event = {
        "specversion": "1.0",
        "id": f"{aggregate_type}/{aggregate_id}/{version}",
        "source": source,
        "type": event_type,
        "subject": f"{aggregate_type}/{aggregate_id}",
        "time": "2026-01-02T03:04:05.678901+00:00",
        "datacontenttype": "application/json",
        "data": data if data is not None else {"n": version},
        "schemaversion": 1,
        "position": position,
        "aggregateversion": version,
        "causationid": "cause-1",
        **extra,
    }
    if correlation_id is not None:
        event["correlationid"] = correlation_id
    return event


def body(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- RabbitMQ ---------------------------------------------------------------------------


async def _rabbit_publish(
    exchange_name: str, messages: list[tuple[str, bytes, str | None]]
) -> None:
    import aio_pika

    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for routing_key, payload, message_id in messages:
            await exchange.publish(
                aio_pika.Message(
                    payload,
                    content_type=CONTENT_TYPE,
                    message_id=message_id,
                    type=routing_key,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=routing_key,
            )


def rabbit_publish(exchange: str, *events: dict[str, Any] | bytes) -> None:
    """Publish each event (a CloudEvent dict, or raw bytes) to the topic exchange."""
    messages = []
    for event in events:
        if isinstance(event, bytes):
            messages.append(("tests.Garbage", event, None))
        else:
            messages.append((event["type"], body(event), event["id"]))
    asyncio.run(_rabbit_publish(exchange, messages))


async def _rabbit_declare(exchange_name: str, queue_name: str, bindings: list[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(queue_name, durable=True)
        for pattern in bindings:
            await queue.bind(exchange, routing_key=pattern)


async def _rabbit_delete(exchange_name: str, queue_name: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue_name)
        await channel.exchange_delete(exchange_name)


def rabbit_delete(exchange: str, queue: str) -> None:
    asyncio.run(_rabbit_delete(exchange, queue))


async def _rabbit_count(queue_name: str) -> int:
    import aio_pika

    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True, passive=True)
        return int(queue.declaration_result.message_count or 0)


def rabbit_queue_depth(queue: str) -> int:
    """Messages ready in the queue (not handed to a consumer)."""
    return asyncio.run(_rabbit_count(queue))


@contextmanager
def rabbit_topology(bindings: tuple[str, ...] = ("#",)) -> Iterator[tuple[str, str]]:
    """A fresh exchange and queue (bound), deleted afterwards: ``(exchange, queue)``."""
    exchange, queue = unique("tests.inbox.x"), unique("tests.inbox.q")
    asyncio.run(_rabbit_declare(exchange, queue, list(bindings)))
    try:
        yield exchange, queue
    finally:
        rabbit_delete(exchange, queue)


def rabbit_inbox(exchange: str, queue: str, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "rabbitmq",
        "URL": RABBITMQ_URL,
        "EXCHANGE": exchange,
        "QUEUE": queue,
        "RETRY_BACKOFF": 0.01,
        **options,
    }


# -- NATS JetStream -------------------------------------------------------------------


async def _nats_run(coroutine_factory: Any) -> Any:
    import nats

    client = await nats.connect(NATS_URL)
    try:
        return await coroutine_factory(client.jetstream())
    finally:
        await client.close()


def nats_call(coroutine_factory: Any) -> Any:
    """Run ``coroutine_factory(jetstream_context)`` on a fresh connection."""
    return asyncio.run(_nats_run(coroutine_factory))


def nats_publish(subject_prefix: str, *events: dict[str, Any] | bytes) -> None:
    async def publish(js: Any) -> None:
        for event in events:
            if isinstance(event, bytes):
                await js.publish(f"{subject_prefix}.tests.Garbage", event)
                continue
            await js.publish(
                f"{subject_prefix}.{event['type']}",
                body(event),
                headers={"Nats-Msg-Id": event["id"], "Content-Type": CONTENT_TYPE},
            )

    nats_call(publish)


@contextmanager
def nats_stream() -> Iterator[tuple[str, str]]:
    """A fresh stream on ``<prefix>.>``, deleted afterwards: ``(stream, prefix)``."""
    name = unique("TESTS_INBOX").replace("-", "_")
    prefix = name.lower().replace("_", "-")

    async def add(js: Any) -> None:
        await js.add_stream(name=name, subjects=[f"{prefix}.>"])

    async def delete(js: Any) -> None:
        await js.delete_stream(name)

    nats_call(add)
    try:
        yield name, prefix
    finally:
        nats_call(delete)


def nats_inbox(stream: str, durable: str, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "nats",
        "SERVERS": [NATS_URL],
        "STREAM": stream,
        "DURABLE": durable,
        "RETRY_BACKOFF": 0.01,
        **options,
    }
