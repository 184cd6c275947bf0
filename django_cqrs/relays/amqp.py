"""The ``rabbitmq`` relay backend: AMQP 0-9-1 to an exchange, with publisher confirms.

    "RELAYS": {"bus": {"BACKEND": "rabbitmq", "URL": "amqp://guest:guest@127.0.0.1:5672/",
                       "EXCHANGE": "shop.events", "EXCHANGE_TYPE": "topic"}}

Each event is one persistent message to ``EXCHANGE`` with the stored event name as its
routing key (bind ``orders.#`` to receive every ``orders.*`` event), the CloudEvent as
its body (``application/cloudevents+json``), the CloudEvents id as ``message_id``, the
name as ``type`` and the W3C trace context, when known, in the headers. A batch is
published on one channel, in log order, and the confirmations are awaited together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from .base import Message


class RabbitMQPublisher:
    """Publishes a relay's batches to a RabbitMQ exchange."""

    OPTIONS: ClassVar[dict[str, Any]] = {
        "URL": "amqp://guest:guest@127.0.0.1:5672/",
        "EXCHANGE": None,
        # "topic", "direct", "fanout" or "headers".
        "EXCHANGE_TYPE": "topic",
        # Declare the exchange (durable) when connecting; False: it must exist.
        "DECLARE": True,
        # Seconds to wait for the TCP connection and the AMQP handshake.
        "CONNECT_TIMEOUT": 5.0,
    }

    def __init__(self, relay: str, options: Mapping[str, Any]) -> None:
        self.relay = relay
        self.options = options
        self.connection: AbstractConnection | None = None
        self.channel: AbstractChannel | None = None
        self.exchange: AbstractExchange | None = None

    async def connect(self) -> AbstractExchange:
        connection = self.connection
        if self.exchange is not None and connection is not None and not connection.is_closed:
            return self.exchange
        await self.close()
        self.connection = await aio_pika.connect(
            self.options["URL"], timeout=float(self.options["CONNECT_TIMEOUT"])
        )
        self.channel = await self.connection.channel(publisher_confirms=True)
        name = self.options["EXCHANGE"]
        if self.options["DECLARE"]:
            self.exchange = await self.channel.declare_exchange(
                name, aio_pika.ExchangeType(self.options["EXCHANGE_TYPE"]), durable=True
            )
        else:
            self.exchange = await self.channel.get_exchange(name, ensure=True)
        return self.exchange

    async def publish(self, messages: Sequence[Message]) -> None:
        exchange = await self.connect()
        # Each publish takes the channel's lock in call order: the messages go out in
        # log order, and their confirmations are awaited together.
        confirmations = [
            asyncio.ensure_future(
                exchange.publish(
                    aio_pika.Message(
                        message.body,
                        content_type=message.content_type,
                        message_id=message.id,
                        type=message.type,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        headers=dict(message.headers) or None,
                    ),
                    routing_key=message.type,
                )
            )
            for message in messages
        ]
        try:
            await asyncio.gather(*confirmations)
        except BaseException:
            for pending in confirmations:
                pending.cancel()
            raise

    async def close(self) -> None:
        connection, self.connection, self.channel, self.exchange = self.connection, None, None, None
        if connection is not None and not connection.is_closed:
            await connection.close()
