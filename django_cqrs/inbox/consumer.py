"""The loop of ``cqrs_consume``: receive, apply, acknowledge, until told to stop.

    from django_cqrs.inbox.consumer import Consumer

    consumer = Consumer(inbox_config("orders"), max_messages=100, idle_timeout=5.0)
    stats = consumer.run()     # BrokerUnavailable when the first connection fails
    consumer.stop()            # from a signal handler or another thread: ends after the
                               # message in hand

The broker client runs on an asyncio loop in a thread of its own (its heartbeats keep
going while a handler works); messages are applied in the calling thread, where the
database connections are, through :func:`django_cqrs.inbox.apply.receive`, and
acknowledged only once its transaction has committed. A connection lost on the way is
opened again with a backoff (1 s, doubling, at most 30 s); a message whose
acknowledgement did not reach the broker is delivered again, and found in the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..conf import cqrs_settings
from .apply import Outcome, receive
from .base import Backend, BrokerUnavailable, ConnectionLost, Delivery
from .config import InboxConfig

T = TypeVar("T")

#: Longest wait for one message before the loop looks at its stop flag again.
POLL_SECONDS = 0.5
RECONNECT_BACKOFF = 1.0
RECONNECT_BACKOFF_MAX = 30.0
#: A backoff is waited in slices this long, telling the broker the message is in hand.
IN_PROGRESS_SECONDS = 10.0


def backend_for(config: InboxConfig) -> Backend:
    """The backend of ``config.backend``; its client package is imported here."""
    if config.backend == "rabbitmq":
        from .amqp import RabbitMQBackend

        return RabbitMQBackend(config)
    from .jetstream import NATSBackend

    return NATSBackend(config)


@dataclasses.dataclass
class Stats:
    """What a run did: messages received, by outcome; reconnections."""

    received: int = 0
    outcomes: dict[str, int] = dataclasses.field(default_factory=dict)
    reconnects: int = 0
    stopped_by: str = ""

    def count(self, outcome: Outcome) -> None:
        self.received += 1
        self.outcomes[str(outcome)] = self.outcomes.get(str(outcome), 0) + 1

    def summary(self) -> str:
        parts = ", ".join(f"{n} {name}" for name, n in sorted(self.outcomes.items()))
        return f"{self.received} received" + (f" ({parts})" if parts else "")


class Consumer:
    def __init__(
        self,
        config: InboxConfig,
        *,
        max_messages: int | None = None,
        idle_timeout: float | None = None,
        backend: Backend | None = None,
        on_connect: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.max_messages = max_messages
        self.idle_timeout = idle_timeout
        self.backend = backend or backend_for(config)
        self.on_connect = on_connect
        self.stats = Stats()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.log = logging.getLogger(str(cqrs_settings.LOGGER))

    # -- the loop thread --------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stop(self, reason: str = "stopped") -> None:
        """End the run after the message in hand (safe from a signal handler)."""
        if not self._stop.is_set():
            self.stats.stopped_by = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> Stats:
        loop = self._loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name=f"cqrs-inbox-{self.config.name}", daemon=True
        )
        thread.start()
        try:
            self._call(self.backend.connect())
            self._connected()
            self._consume()
        finally:
            try:
                self._call(self.backend.close())
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(10)
                loop.close()
                self._loop = None
        return self.stats

    def _connected(self) -> None:
        if self.on_connect is not None:
            self.on_connect(self.backend.describe())

    # -- the messages -----------------------------------------------------------------

    def _consume(self) -> None:
        idle_since = time.monotonic()
        while not self.stopping:
            if self.max_messages is not None and self.stats.received >= self.max_messages:
                self.stats.stopped_by = f"{self.max_messages} messages"
                return
            wait = POLL_SECONDS
            if self.idle_timeout is not None:
                left = self.idle_timeout - (time.monotonic() - idle_since)
                if left <= 0:
                    self.stats.stopped_by = f"idle for {self.idle_timeout:g}s"
                    return
                wait = min(wait, left)
            try:
                delivery = self._call(self.backend.receive(wait))
            except ConnectionLost as exc:
                self._reconnect(exc)
                idle_since = time.monotonic()
                continue
            if delivery is None:
                continue
            self._handle(delivery)
            idle_since = time.monotonic()

    def _handle(self, delivery: Delivery) -> None:
        outcome = receive(
            self.config,
            delivery.body,
            message_id=delivery.message_id,
            wait=lambda seconds: self._backoff(delivery, seconds),
        )
        try:
            if outcome.acknowledge:
                self._call(self.backend.ack(delivery))
            else:
                self._call(self.backend.requeue(delivery))
        except ConnectionLost as exc:
            # Applied (or recorded) but not acknowledged: it comes again, and is found.
            self.log.warning("inbox %s: %s", self.config.name, exc)
            self._reconnect(exc)
        self.stats.count(outcome)
        self.log.info(
            "inbox %s: %s %s",
            self.config.name,
            outcome,
            delivery.message_id or "(no message id)",
        )

    def _backoff(self, delivery: Delivery, seconds: float) -> bool:
        """Wait out a retry's backoff; False when told to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(left, IN_PROGRESS_SECONDS)):
                return False
            if deadline - time.monotonic() > 0:
                with contextlib.suppress(ConnectionLost):
                    self._call(self.backend.in_progress(delivery))
        return not self.stopping

    def _reconnect(self, error: Exception) -> None:
        delay = RECONNECT_BACKOFF
        self.log.warning("inbox %s: %s; reconnecting", self.config.name, error)
        while not self.stopping:
            self._call(self.backend.close())
            if self._stop.wait(delay):
                return
            try:
                self._call(self.backend.connect())
            except BrokerUnavailable as exc:
                self.log.warning("inbox %s: %s; again in %gs", self.config.name, exc, delay)
                delay = min(delay * 2, RECONNECT_BACKOFF_MAX)
                continue
            self.stats.reconnects += 1
            self._connected()
            return
