"""The ``nats`` relay backend: NATS JetStream, each message acknowledged by the stream.

    "RELAYS": {"stream": {"BACKEND": "nats", "SERVERS": ["nats://127.0.0.1:4222"],
                          "STREAM": "SHOP_EVENTS", "SUBJECT_PREFIX": "shop.events"}}

Each event is one message on ``<SUBJECT_PREFIX>.<stored event name>``
(``shop.events.orders.OrderPlaced``) with the CloudEvent as its body and the CloudEvents
id as ``Nats-Msg-Id``: within the stream's duplicate window JetStream itself drops a
message sent again, and after it a consumer deduplicates by the id. With ``DECLARE``
the stream is created (``<SUBJECT_PREFIX>.>``) when it does not exist. A batch is
published in log order on one connection and its acks awaited together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from .base import Message

#: How many acks a connection awaits at once (nats-py's default is 4000).
MAX_PENDING = 4000


class JetStreamPublisher:
    """Publishes a relay's batches to a JetStream stream."""

    OPTIONS: ClassVar[dict[str, Any]] = {
        "SERVERS": ["nats://127.0.0.1:4222"],
        "STREAM": None,
        "SUBJECT_PREFIX": None,
        # Create the stream when it does not exist; False: it must exist.
        "DECLARE": True,
        # Seconds to wait for the connection.
        "CONNECT_TIMEOUT": 5.0,
    }

    def __init__(self, relay: str, options: Mapping[str, Any]) -> None:
        self.relay = relay
        self.options = options
        self.client: Client | None = None
        self.js: JetStreamContext | None = None

    async def connect(self) -> JetStreamContext:
        if self.js is not None and self.client is not None and self.client.is_connected:
            return self.js
        await self.close()
        servers = self.options["SERVERS"]
        self.client = await nats.connect(
            servers=[servers] if isinstance(servers, str) else list(servers),
            connect_timeout=float(self.options["CONNECT_TIMEOUT"]),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            name=f"django_cqrs relay {self.relay}",
        )
        self.js = self.client.jetstream(publish_async_max_pending=MAX_PENDING)
        if self.options["DECLARE"]:
            stream = self.options["STREAM"]
            try:
                await self.js.stream_info(stream)
            except NotFoundError:
                await self.js.add_stream(
                    name=stream, subjects=[f"{self.options['SUBJECT_PREFIX']}.>"]
                )
        return self.js

    async def publish(self, messages: Sequence[Message]) -> None:
        js = await self.connect()
        prefix = self.options["SUBJECT_PREFIX"]
        stream = self.options["STREAM"]
        acks = []
        try:
            for message in messages:
                headers = {
                    "Nats-Msg-Id": message.id,
                    "Content-Type": message.content_type,
                    **message.headers,
                }
                acks.append(
                    await js.publish_async(
                        f"{prefix}.{message.type}", message.body, stream=stream, headers=headers
                    )
                )
            await asyncio.gather(*acks)
        except BaseException:
            for pending in acks:
                pending.cancel()
            raise

    async def close(self) -> None:
        client, self.client, self.js = self.client, None, None
        if client is not None and not client.is_closed:
            await client.close()
