"""Real brokers for the relay tests: reachability (skip with a reason), consumers that
collect what arrived, and a TCP proxy that plays a broker going away and coming back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest


def run(coro: Any, *, timeout: float) -> Any:
    """Run a coroutine to its end on a loop of its own (these settings-free helpers are
    imported by settings modules too, before Django is set up)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


def answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


requires_rabbitmq = pytest.mark.skipif(
    not answers(RABBITMQ_URL, 5672),
    reason=f"needs RabbitMQ at {urlsplit(RABBITMQ_URL).netloc.split('@')[-1]} (RABBITMQ_URL)",
)
requires_nats = pytest.mark.skipif(
    not answers(NATS_URL, 4222),
    reason=f"needs NATS with JetStream at {urlsplit(NATS_URL).netloc} (NATS_URL)",
)


@dataclass
class Received:
    """One message as a consumer got it."""

    id: str
    subject: str
    body: dict[str, Any]
    raw: bytes


@dataclass
class RabbitQueue:
    """A queue bound to ``exchange`` (``#``): everything the relay routes there stays."""

    exchange: str
    queue: str = field(default_factory=lambda: f"test.{uuid.uuid4().hex[:10]}")

    def declare(self) -> None:
        run(self._declare(), timeout=15)

    async def _declare(self) -> None:
        import aio_pika

        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(self.exchange, "topic", durable=True)
            queue = await channel.declare_queue(self.queue, durable=True)
            await queue.bind(exchange, "#")

    def drain(self) -> list[Received]:
        return run(self._drain(), timeout=120)

    async def _drain(self) -> list[Received]:
        import aio_pika

        out: list[Received] = []
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(self.queue)
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                out.append(
                    Received(
                        str(message.message_id),
                        str(message.routing_key),
                        json.loads(message.body),
                        message.body,
                    )
                )
        return out

    def delete(self, *, exchange: bool = True) -> None:
        """Delete the queue, and the exchange too (not one that others use: the demo's)."""
        run(self._delete(exchange), timeout=15)

    def delete_queue(self) -> None:
        self.delete(exchange=False)

    async def _delete(self, exchange: bool) -> None:
        import aio_pika

        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(self.queue)
            if exchange:
                await channel.exchange_delete(self.exchange)


@dataclass
class NatsStream:
    stream: str = field(default_factory=lambda: f"TEST_{uuid.uuid4().hex[:10].upper()}")
    prefix: str = field(default_factory=lambda: f"test.{uuid.uuid4().hex[:10]}")

    def drain(self) -> list[Received]:
        return run(self._drain(), timeout=120)

    async def _drain(self) -> list[Received]:
        import nats

        out: list[Received] = []
        client = await nats.connect(NATS_URL)
        try:
            js = client.jetstream()
            info = await js.stream_info(self.stream)
            total = info.state.messages
            sub = await js.pull_subscribe(f"{self.prefix}.>", stream=self.stream)
            while len(out) < total:
                for message in await sub.fetch(min(1000, total - len(out)), timeout=5):
                    headers = message.headers or {}
                    out.append(
                        Received(
                            headers.get("Nats-Msg-Id", ""),
                            message.subject,
                            json.loads(message.data),
                            message.data,
                        )
                    )
                    await message.ack()
        finally:
            await client.close()
        return out

    def delete(self) -> None:
        async def delete() -> None:
            import nats

            client = await nats.connect(NATS_URL)
            try:
                with contextlib.suppress(Exception):
                    await client.jetstream().delete_stream(self.stream)
            finally:
                await client.close()

        run(delete(), timeout=15)


class Proxy:
    """A TCP proxy in front of a broker: ``stop()`` closes its port and every connection
    through it (the broker is gone, for the relay), ``start()`` opens them again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def url(self, scheme_url: str) -> str:
        parts = urlsplit(scheme_url)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return f"{parts.scheme}://{auth}127.0.0.1:{self.port}{parts.path}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> None:
        self._call(self._start())

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        self._call(self._stop())

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)


@contextlib.contextmanager
def proxy(url: str, default_port: int) -> Iterator[Proxy]:
    parts = urlsplit(url)
    made = Proxy((parts.hostname or "127.0.0.1", parts.port or default_port))
    made.start()
    try:
        yield made
    finally:
        made.close()
