"""``make demo`` relays every demo event to each broker that answers, and says which."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.brokers import NATS_URL, NatsStream, RabbitQueue, requires_nats, requires_rabbitmq

ROOT = Path(__file__).resolve().parent.parent

# The demo's exchange and stream are one per machine: these tests take turns with them.
pytestmark = pytest.mark.xdist_group("demo_brokers")


def demo(database: Path, *args: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DJANGO_"))}
    environ.update(
        DEMO_SQLITE_PATH=str(database), DJANGO_SETTINGS_MODULE="demo_project.settings", **env
    )
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


BANNER = (
    "from demo_project.orders.management.commands.demo_serve import Command; "
    "print(Command().relays_line())"
)


def test_without_brokers_the_demo_says_it_runs_no_relay(tmp_path: Path) -> None:
    closed = {
        "DEMO_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:9/",
        "DEMO_NATS_URL": "nats://127.0.0.1:9",
    }
    out = demo(tmp_path / "demo.sqlite3", "shell", "-c", BANNER, **closed)
    assert "Relays: none" in out
    demo(tmp_path / "demo.sqlite3", "check", **closed)


def stream_messages(stream: str) -> int:
    async def count() -> int:
        import nats

        client = await nats.connect(NATS_URL)
        try:
            info = await client.jetstream().stream_info(stream)
            return int(info.state.messages)
        except Exception:
            return 0
        finally:
            await client.close()

    return asyncio.run(count())


def test_the_demos_relays_send_to_demo_events_and_demo_events_stream(tmp_path: Path) -> None:
    names = demo(
        tmp_path / "demo.sqlite3",
        "shell",
        "-c",
        "from django.conf import settings as s; print('NAMES', s.DEMO_EXCHANGE, s.DEMO_STREAM, "
        "s.DEMO_SUBJECT_PREFIX)",
    )
    assert "NAMES demo.events DEMO_EVENTS demo.events" in names


@requires_rabbitmq
@requires_nats
def test_the_demo_relays_every_event_to_both_brokers(tmp_path: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    # Names of this run's own: other tests run the demo (its qcluster relays too).
    tag = uuid.uuid4().hex[:10]
    env = {
        "DEMO_EXCHANGE": f"test.demo.{tag}",
        "DEMO_STREAM": f"TEST_DEMO_{tag.upper()}",
        "DEMO_SUBJECT_PREFIX": f"test.demo.{tag}",
    }
    queue = RabbitQueue(exchange=env["DEMO_EXCHANGE"])
    queue.declare()
    stream = NatsStream(stream=env["DEMO_STREAM"], prefix=env["DEMO_SUBJECT_PREFIX"])
    try:
        out = demo(database, "shell", "-c", BANNER, **env)
        assert f"rabbitmq -> RabbitMQ exchange {env['DEMO_EXCHANGE']}" in out
        assert f"nats -> NATS JetStream stream {env['DEMO_STREAM']}" in out
        demo(database, "migrate", "--noinput", **env)
        demo(database, "seed_demo", "--orders", "5", **env)
        demo(database, "cqrs_catchup", "relays.rabbitmq", **env)
        demo(database, "cqrs_catchup", "relays.nats", **env)
        stored = demo(
            database,
            "shell",
            "-c",
            "from django_cqrs.models import StoredEvent; "
            "print('STORED', *StoredEvent.objects.values_list('event_type', flat=True))",
            **env,
        )
        names = next(line for line in stored.splitlines() if line.startswith("STORED")).split()[1:]
        received = queue.drain()
        assert sorted(m.subject for m in received) == sorted(names)  # routing key = the name
        assert {m.body["source"] for m in received} == {"/demo_project"}
        assert stream_messages(env["DEMO_STREAM"]) == len(names)
    finally:
        queue.delete()
        stream.delete()


@requires_rabbitmq
def test_the_second_service_fills_its_read_model_from_the_demos_relay(tmp_path: Path) -> None:
    database, downstream = tmp_path / "demo.sqlite3", tmp_path / "downstream.sqlite3"
    tag = uuid.uuid4().hex[:10]
    queue = RabbitQueue(exchange=f"test.demo.{tag}", queue=f"test.downstream.{tag}")
    env = {
        "DOWNSTREAM_SQLITE_PATH": str(downstream),
        "DOWNSTREAM_QUEUE": queue.queue,
        "DOWNSTREAM_EXCHANGE": queue.exchange,
        "DEMO_EXCHANGE": queue.exchange,
    }
    other = ["--settings", "demo_project.settings_downstream"]
    try:
        demo(database, "migrate", "--noinput", *other, **env)
        # Its consumer declares and binds its queue: what the relay sends from now on stays.
        demo(database, "cqrs_consume", "orders", "--idle-timeout", "1", *other, **env)
        demo(database, "migrate", "--noinput", **env)
        demo(database, "seed_demo", "--orders", "6", **env)
        demo(database, "cqrs_catchup", "relays.rabbitmq", **env)
        demo(database, "cqrs_consume", "orders", "--idle-timeout", "3", *other, **env)
        count = (
            "from django_cqrs.models import StoredEvent; print('PLACED', StoredEvent.objects"
            ".filter(event_type='orders.OrderPlaced').count())"
        )
        placed = demo(database, "shell", "-c", count, **env)
        feed = demo(
            database,
            "shell",
            "-c",
            "from demo_project.downstream.models import OrderFeedEntry; "
            "print('PLACED', OrderFeedEntry.objects.filter(event_type='OrderPlaced').count())",
            *other,
            **env,
        )

        def number(out: str) -> int:
            return int(next(line for line in out.splitlines() if line.startswith("PLACED"))[7:])

        assert number(placed) >= 6
        assert number(feed) == number(placed)
    finally:
        queue.delete()
