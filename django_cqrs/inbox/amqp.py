"""The RabbitMQ backend of the inbox (AMQP 0-9-1, with pika: the ``rabbitmq`` extra).

It declares what it consumes from, so it may start before the relay: the durable topic
``EXCHANGE``, this service's durable ``QUEUE``, bound to it with each routing-key
pattern of ``BINDINGS`` (the routing key is the CloudEvent type: ``orders.#``,
``orders.OrderPlaced``). ``PREFETCH`` messages are handed over unacknowledged at once;
those not acknowledged when the connection closes are delivered again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pika.exceptions

from ..relays.amqp import AMQPChannel, AMQPClosed
from .base import Backend, BrokerUnavailable, ConnectionLost, Delivery, redact


class RabbitMQBackend(Backend):
    amqp: AMQPChannel | None = None

    def describe(self) -> str:
        return f"RabbitMQ at {redact(self.config['URL'])}"

    async def connect(self) -> None:
        config = self.config
        amqp = AMQPChannel(config["URL"], timeout=10.0)
        try:
            await amqp.open()
        except AMQPClosed as exc:
            raise BrokerUnavailable(
                f"cannot connect to {self.describe()} ({config.setting('URL')}): {exc}"
            ) from None
        self.amqp = amqp
        self.messages: asyncio.Queue[Delivery] = asyncio.Queue()
        channel = amqp.channel
        try:
            await amqp.call(channel.basic_qos, prefetch_count=config["PREFETCH"])
            await amqp.call(
                channel.exchange_declare,
                exchange=config["EXCHANGE"],
                exchange_type="topic",
                durable=True,
            )
            await amqp.call(channel.queue_declare, queue=config["QUEUE"], durable=True)
            for pattern in config["BINDINGS"]:
                await amqp.call(
                    channel.queue_bind,
                    queue=config["QUEUE"],
                    exchange=config["EXCHANGE"],
                    routing_key=pattern,
                )
            await amqp.call(
                channel.basic_consume, queue=config["QUEUE"], on_message_callback=self._received
            )
        except AMQPClosed as exc:
            await self.close()
            raise BrokerUnavailable(
                f"{self.describe()} refused the exchange {config['EXCHANGE']!r} or the queue "
                f"{config['QUEUE']!r} ({config.setting()}): {exc}"
            ) from None

    def _received(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self.messages.put_nowait(
            Delivery(
                body=body,
                message_id=properties.message_id,
                handle=method.delivery_tag,
                redelivered=bool(method.redelivered),
            )
        )

    def _channel(self) -> Any:
        amqp = self.amqp
        if amqp is None:
            raise ConnectionLost(f"the connection to {self.describe()} is closed")
        try:
            amqp.check()
        except AMQPClosed as exc:
            raise ConnectionLost(f"the connection to {self.describe()} is closed: {exc}") from None
        return amqp.channel

    async def receive(self, timeout: float) -> Delivery | None:
        self._channel()
        try:
            return await asyncio.wait_for(self.messages.get(), timeout)
        except TimeoutError:
            self._channel()
            return None

    async def ack(self, delivery: Delivery) -> None:
        try:
            self._channel().basic_ack(delivery.handle)
        except pika.exceptions.AMQPError as exc:
            raise ConnectionLost(f"acknowledging on {self.describe()}: {exc!r}") from exc

    async def requeue(self, delivery: Delivery) -> None:
        try:
            self._channel().basic_nack(delivery.handle, requeue=True)
        except pika.exceptions.AMQPError as exc:
            raise ConnectionLost(f"giving back on {self.describe()}: {exc!r}") from exc

    async def close(self) -> None:
        amqp, self.amqp = self.amqp, None
        if amqp is not None:
            await amqp.close()
