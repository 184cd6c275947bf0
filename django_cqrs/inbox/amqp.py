"""The RabbitMQ backend of the inbox (AMQP 0-9-1, with aio-pika: the ``rabbitmq`` extra).

It declares what it consumes from, so it may start before the relay: the durable topic
``EXCHANGE``, this service's durable ``QUEUE``, bound to it with each routing-key
pattern of ``BINDINGS`` (the routing key is the CloudEvent type: ``orders.#``,
``orders.OrderPlaced``). ``PREFETCH`` messages are handed over unacknowledged at once;
those not acknowledged when the connection closes are delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from .base import Backend, BrokerUnavailable, ConnectionLost, Delivery, redact


class RabbitMQBackend(Backend):
    connection: Any = None

    def describe(self) -> str:
        return f"RabbitMQ at {redact(self.config['URL'])}"

    async def connect(self) -> None:
        config = self.config
        try:
            self.connection = await asyncio.wait_for(aio_pika.connect(config["URL"]), 10.0)
        except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
            raise BrokerUnavailable(
                f"cannot connect to {self.describe()} ({config.setting('URL')}): "
                f"{type(exc).__name__}: {exc or 'no answer'}"
            ) from None
        self.messages: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        try:
            channel = await self.connection.channel()
            await channel.set_qos(prefetch_count=config["PREFETCH"])
            exchange = await channel.declare_exchange(
                config["EXCHANGE"], aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(config["QUEUE"], durable=True)
            for pattern in config["BINDINGS"]:
                await queue.bind(exchange, routing_key=pattern)
            await queue.consume(self.messages.put)
        except aiormq.exceptions.AMQPError as exc:
            await self.close()
            raise BrokerUnavailable(
                f"{self.describe()} refused the exchange {config['EXCHANGE']!r} or the queue "
                f"{config['QUEUE']!r} ({config.setting()}): {type(exc).__name__}: {exc}"
            ) from None

    def _check(self) -> None:
        if self.connection is None or self.connection.is_closed:
            raise ConnectionLost(f"the connection to {self.describe()} is closed")

    async def receive(self, timeout: float) -> Delivery | None:
        self._check()
        try:
            message = await asyncio.wait_for(self.messages.get(), timeout)
        except TimeoutError:
            self._check()
            return None
        return Delivery(
            body=message.body,
            message_id=message.message_id,
            handle=message,
            redelivered=bool(message.redelivered),
        )

    async def ack(self, delivery: Delivery) -> None:
        try:
            await delivery.handle.ack()
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.MessageProcessError) as exc:
            raise ConnectionLost(f"acknowledging on {self.describe()}: {exc}") from exc

    async def requeue(self, delivery: Delivery) -> None:
        try:
            await delivery.handle.nack(requeue=True)
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.MessageProcessError) as exc:
            raise ConnectionLost(f"giving back on {self.describe()}: {exc}") from exc

    async def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(OSError, TimeoutError, aiormq.exceptions.AMQPError):
                await asyncio.wait_for(connection.close(), 5.0)
