"""The NATS JetStream backend of the inbox (nats-py: the ``nats`` extra).

It reads the relay's ``STREAM`` through this service's durable pull consumer
``DURABLE`` (created when missing, with explicit acknowledgements, filtered to
``SUBJECTS`` when given). A message not acknowledged within ``ACK_WAIT`` seconds is
delivered again; the consumer says it is still working on one during a long backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from .base import Backend, BrokerUnavailable, ConnectionLost, Delivery, redact


class NATSBackend(Backend):
    client: Any = None
    subscription: Any = None

    def describe(self) -> str:
        return "NATS at " + ", ".join(redact(server) for server in self.config["SERVERS"])

    async def connect(self) -> None:
        config = self.config
        try:
            self.client = await nats.connect(
                servers=list(config["SERVERS"]),
                connect_timeout=5,
                # A lost connection closes the client; the consumer opens a new one with
                # its backoff (and a first connection that fails is reported at once).
                allow_reconnect=False,
                max_reconnect_attempts=1,  # each server: tried twice, then NoServersError
                reconnect_time_wait=0.5,
                error_cb=_quiet,
                disconnected_cb=_quiet_event,
                reconnected_cb=_quiet_event,
                closed_cb=_quiet_event,
            )
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise BrokerUnavailable(
                f"cannot connect to {self.describe()} ({config.setting('SERVERS')}): "
                f"{type(exc).__name__}: {exc or 'no answer'}"
            ) from None
        js = self.client.jetstream()
        stream, durable = config["STREAM"], config["DURABLE"]
        try:
            await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            await self.close()
            raise BrokerUnavailable(
                f"{self.describe()} has no JetStream stream {stream!r} "
                f"({config.setting('STREAM')}): the relay creates it when it starts, "
                "or create it with the nats CLI"
            ) from None
        except (TimeoutError, nats.errors.Error) as exc:
            await self.close()
            raise BrokerUnavailable(
                f"{self.describe()} did not answer about the stream {stream!r} (is JetStream "
                f"enabled?): {type(exc).__name__}: {exc}"
            ) from None
        subjects = list(config["SUBJECTS"])
        try:
            try:
                await js.consumer_info(stream, durable)
            except nats.js.errors.NotFoundError:
                await js.add_consumer(
                    stream,
                    ConsumerConfig(
                        durable_name=durable,
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.ALL,
                        ack_wait=float(config["ACK_WAIT"]),
                        max_deliver=-1,
                        filter_subject=subjects[0] if len(subjects) == 1 else None,
                        filter_subjects=subjects if len(subjects) > 1 else None,
                    ),
                )
            self.subscription = await js.pull_subscribe_bind(durable=durable, stream=stream)
        except (TimeoutError, nats.errors.Error) as exc:
            await self.close()
            raise BrokerUnavailable(
                f"{self.describe()} refused the durable consumer {durable!r} on {stream!r} "
                f"({config.setting()}): {type(exc).__name__}: {exc}"
            ) from None
        self.pending: list[Any] = []

    def _check(self) -> None:
        if self.client is None or self.client.is_closed:
            raise ConnectionLost(f"the connection to {self.describe()} is closed")

    async def receive(self, timeout: float) -> Delivery | None:
        self._check()
        if not self.pending:
            try:
                self.pending = await self.subscription.fetch(
                    self.config["BATCH"], timeout=max(timeout, 0.05)
                )
            except (TimeoutError, nats.errors.TimeoutError):
                return None
            except nats.errors.ConnectionClosedError as exc:
                raise ConnectionLost(str(exc)) from exc
        message = self.pending.pop(0)
        headers = message.headers or {}
        return Delivery(
            body=message.data,
            message_id=headers.get("Nats-Msg-Id"),
            handle=message,
            redelivered=message.metadata.num_delivered > 1,
        )

    async def ack(self, delivery: Delivery) -> None:
        try:
            await delivery.handle.ack_sync(timeout=5.0)
        except (TimeoutError, nats.errors.Error) as exc:
            raise ConnectionLost(f"acknowledging on {self.describe()}: {exc}") from exc

    async def requeue(self, delivery: Delivery) -> None:
        try:
            await delivery.handle.nak()
        except (TimeoutError, nats.errors.Error) as exc:
            raise ConnectionLost(f"giving back on {self.describe()}: {exc}") from exc

    async def in_progress(self, delivery: Delivery) -> None:
        # Failing, it is delivered again later: the inbox's row makes that harmless.
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            await delivery.handle.in_progress()

    async def close(self) -> None:
        client, self.client = self.client, None
        for message in getattr(self, "pending", []):  # fetched, not handed over: at once
            try:
                await message.nak()
            except (TimeoutError, nats.errors.Error):
                break
        self.pending = []
        if client is not None and not client.is_closed:
            with contextlib.suppress(TimeoutError, nats.errors.Error):
                await asyncio.wait_for(client.close(), 5.0)


async def _quiet(error: Exception) -> None:
    """nats-py logs connection errors itself unless given callbacks; the consumer reports."""


async def _quiet_event() -> None:
    pass
