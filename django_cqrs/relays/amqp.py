"""The ``rabbitmq`` relay backend: AMQP 0-9-1 to an exchange, with publisher confirms.

    "RELAYS": {"bus": {"BACKEND": "rabbitmq", "URL": "amqp://guest:guest@127.0.0.1:5672/",
                       "EXCHANGE": "shop.events", "EXCHANGE_TYPE": "topic"}}

Each event is one persistent message to ``EXCHANGE`` with the stored event name as its
routing key (bind ``orders.#`` to receive every ``orders.*`` event), the CloudEvent as
its body (``application/cloudevents+json``), the CloudEvents id as ``message_id``, the
name as ``type`` and the W3C trace context, when known, in the headers. A batch is
written to one channel in log order, and its publisher confirms are awaited together.

The client is pika's asyncio adapter (the ``rabbitmq`` extra): publishing a message is
a synchronous write of its frames, and the broker's confirms (``multiple`` acks) are
counted off by delivery tag, which costs about a sixth of the client CPU of a publish
that awaits a future per message (docs/benchmarks.md, "Relays").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pika
import pika.exceptions
from pika import spec
from pika.adapters.asyncio_connection import AsyncioConnection

if TYPE_CHECKING:
    from .base import Message

PERSISTENT = 2


class AMQPClosed(ConnectionError):
    """The AMQP connection or its channel closed (or never opened), saying why."""


class AMQPChannel:
    """One pika connection with one channel, opened and used from coroutines.

    ``call(channel.queue_declare, queue=...)`` sends a method and awaits its reply; when
    the broker closes the channel or the connection instead (a refused declaration, the
    broker going away), every call that waits fails with :class:`AMQPClosed`, and so
    does every later one.
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.connection: AsyncioConnection | None = None
        self.channel: Any = None
        self.closed: AMQPClosed | None = None
        self._waiting: set[asyncio.Future[Any]] = set()

    async def open(self) -> None:
        """Connect and open the channel (``AMQPClosed`` when either fails or times out)."""
        try:
            parameters = pika.URLParameters(self.url)
        except Exception as exc:  # pika raises ValueError, AMQPError... for a bad URL
            raise AMQPClosed(f"the URL is not an AMQP URL: {exc}") from None
        loop = asyncio.get_running_loop()
        opened = self._future()
        parameters.connection_attempts = 1
        parameters.socket_timeout = self.timeout
        parameters.stack_timeout = self.timeout
        self.connection = AsyncioConnection(
            parameters,
            on_open_callback=lambda _: _resolve(opened, None),
            on_open_error_callback=lambda _, exc: self._lost(exc),
            on_close_callback=lambda _, exc: self._lost(exc),
            custom_ioloop=loop,
        )
        try:
            await asyncio.wait_for(opened, self.timeout)
            channel_opened = self._future()
            self.connection.channel(
                on_open_callback=lambda channel: _resolve(channel_opened, channel)
            )
            self.channel = await asyncio.wait_for(channel_opened, self.timeout)
        except TimeoutError:
            await self.close()
            raise AMQPClosed(f"no answer within {self.timeout:g}s") from None
        self.channel.add_on_close_callback(lambda _, exc: self._lost(exc))

    def _future(self) -> asyncio.Future[Any]:
        """A future to wait on that fails when the connection or the channel closes."""
        if self.closed is not None:
            raise self.closed
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.watch(future)
        return future

    def _lost(self, exc: BaseException) -> None:
        if self.closed is None:
            self.closed = AMQPClosed(_reason(exc))
        for future in list(self._waiting):
            if not future.done():
                future.set_exception(self.closed)

    def watch(self, future: asyncio.Future[Any]) -> None:
        """Fail ``future`` too when the connection or the channel closes."""
        if self.closed is not None:
            future.set_exception(self.closed)
            return
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)

    async def call(self, method: Callable[..., Any], /, **kwargs: Any) -> Any:
        """Send a channel method and await its reply frame."""
        self.check()
        replied = self._future()
        method(**kwargs, callback=lambda frame: _resolve(replied, frame))
        return await replied

    def check(self) -> None:
        """``AMQPClosed`` when the connection or the channel is not open."""
        if self.closed is not None:
            raise self.closed
        if self.connection is None or not self.connection.is_open:
            raise AMQPClosed("the connection is not open")
        if self.channel is None or not self.channel.is_open:
            raise AMQPClosed("the channel is not open")

    @property
    def is_open(self) -> bool:
        try:
            self.check()
        except AMQPClosed:
            return False
        return True

    async def close(self) -> None:
        """Close the connection (at once when it is not open; waits at most ``timeout``)."""
        connection, self.connection = self.connection, None
        if self.closed is None:
            self.closed = AMQPClosed("closed by the client")
        if connection is None or connection.is_closed:
            return
        closed = asyncio.get_running_loop().create_future()
        connection.add_on_close_callback(lambda *_: _resolve(closed, None))
        try:
            if not connection.is_closing:
                connection.close()
            await asyncio.wait_for(closed, self.timeout)
        except (TimeoutError, pika.exceptions.AMQPError):
            pass


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line: the cause pika's connection workflow wraps, when any."""
    for _ in range(5):
        # AMQPConnectionError(AMQPConnectionWorkflowFailed(exceptions=[AMQPConnector...
        # Error(exception=ConnectionRefusedError(...))])): the innermost names the cause.
        inner = getattr(exc, "exception", None)
        if inner is None and getattr(exc, "exceptions", None):
            inner = exc.exceptions[-1]  # type: ignore[attr-defined]
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        if not isinstance(inner, BaseException):
            break
        exc = inner
    if isinstance(exc, pika.exceptions.ChannelClosed | pika.exceptions.ConnectionClosed):
        return f"{type(exc).__name__}: {exc.reply_code} {exc.reply_text}"
    return f"{type(exc).__name__}: {exc or 'no answer'}"


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
        self.amqp: AMQPChannel | None = None
        # The last delivery tag this channel gave; the batch in flight: its tags the broker
        # has not confirmed, and the future its publish() waits on.
        self._tag = 0
        self._unconfirmed: set[int] = set()
        self._batch: asyncio.Future[None] | None = None

    async def connect(self) -> AMQPChannel:
        if self.amqp is not None and self.amqp.is_open:
            return self.amqp
        await self.close()
        amqp = AMQPChannel(self.options["URL"], timeout=float(self.options["CONNECT_TIMEOUT"]))
        try:
            await amqp.open()
            await amqp.call(amqp.channel.confirm_delivery, ack_nack_callback=self._confirmed)
            await amqp.call(
                amqp.channel.exchange_declare,
                exchange=self.options["EXCHANGE"],
                exchange_type=self.options["EXCHANGE_TYPE"],
                durable=True,
                passive=not self.options["DECLARE"],
            )
        except BaseException:
            await amqp.close()
            raise
        self.amqp, self._tag = amqp, 0
        return amqp

    async def publish(self, messages: Sequence[Message]) -> None:
        amqp = await self.connect()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        amqp.watch(done)  # fails when the channel or the connection closes
        first = self._tag + 1
        self._tag += len(messages)
        self._unconfirmed, self._batch = set(range(first, self._tag + 1)), done
        channel, exchange = amqp.channel, self.options["EXCHANGE"]
        try:
            for message in messages:
                channel.basic_publish(
                    exchange,
                    message.type,
                    message.body,
                    pika.BasicProperties(
                        content_type=message.content_type,
                        message_id=message.id,
                        type=message.type,
                        delivery_mode=PERSISTENT,
                        headers=dict(message.headers) or None,
                    ),
                )
            await done
        except pika.exceptions.AMQPError as exc:
            raise AMQPClosed(_reason(exc)) from exc
        finally:
            self._batch = None

    def _confirmed(self, frame: Any) -> None:
        batch, method = self._batch, frame.method
        if batch is None or batch.done():
            return
        if isinstance(method, spec.Basic.Nack):
            batch.set_exception(
                AMQPClosed(f"the broker refused message {method.delivery_tag} (basic.nack)")
            )
            return
        if method.multiple:
            self._unconfirmed = {tag for tag in self._unconfirmed if tag > method.delivery_tag}
        else:
            self._unconfirmed.discard(method.delivery_tag)
        if not self._unconfirmed:
            batch.set_result(None)

    async def close(self) -> None:
        amqp, self.amqp = self.amqp, None
        if amqp is not None:
            await amqp.close()
