"""What a broker backend of the inbox does: connect, receive, acknowledge, give back.

A backend is asynchronous (the broker clients are): the consumer runs it on an event
loop in a thread of its own and calls it from the thread that applies the messages
(:mod:`django_cqrs.inbox.consumer`). ``amqp.py`` (RabbitMQ) and ``jetstream.py`` (NATS
JetStream) implement it.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..exceptions import CQRSError
from .config import InboxConfig


class BrokerUnavailable(CQRSError):
    """The broker cannot be reached, or refuses what the inbox's settings ask for."""


class ConnectionLost(CQRSError):
    """The connection went away while the consumer was running (it reconnects)."""


@dataclasses.dataclass
class Delivery:
    """One message as the broker handed it over."""

    body: bytes
    #: The broker's id of the message (AMQP ``message_id``, NATS ``Nats-Msg-Id``).
    message_id: str | None
    #: The client's message object, for the backend's ``ack``/``requeue``.
    handle: Any
    redelivered: bool = False


class Backend(abc.ABC):
    """One inbox's connection to its broker."""

    def __init__(self, config: InboxConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def describe(self) -> str:
        """Where it connects, for messages (passwords left out)."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect and subscribe; ``BrokerUnavailable`` saying why when it cannot."""

    @abc.abstractmethod
    async def receive(self, timeout: float) -> Delivery | None:
        """The next message, or None after ``timeout`` seconds; ``ConnectionLost``."""

    @abc.abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """The message is done with: the broker forgets it."""

    @abc.abstractmethod
    async def requeue(self, delivery: Delivery) -> None:
        """Give the message back unacknowledged: it is delivered again."""

    async def in_progress(self, delivery: Delivery) -> None:  # noqa: B027 (optional)
        """Still working on it (a long backoff): the broker should not redeliver it yet."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; messages not acknowledged are delivered again."""


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))
