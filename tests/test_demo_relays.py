"""``make demo`` relays every demo event to each broker that answers, and says which."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.brokers import NATS_URL, RabbitQueue, requires_nats, requires_rabbitmq

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


def stream_messages() -> int:
    async def count() -> int:
        import nats

        client = await nats.connect(NATS_URL)
        try:
            info = await client.jetstream().stream_info("DEMO_EVENTS")
            return int(info.state.messages)
        except Exception:
            return 0
        finally:
            await client.close()

    return asyncio.run(count())


@requires_rabbitmq
@requires_nats
def test_the_demo_relays_every_event_to_both_brokers(tmp_path: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    queue = RabbitQueue(exchange="demo.events")
    queue.declare()
    try:
        out = demo(database, "shell", "-c", BANNER)
        assert "rabbitmq -> RabbitMQ exchange demo.events" in out
        assert "nats -> NATS JetStream stream DEMO_EVENTS" in out
        demo(database, "migrate", "--noinput")
        demo(database, "seed_demo", "--orders", "5")
        before = stream_messages()
        demo(database, "cqrs_catchup", "relays.rabbitmq")
        demo(database, "cqrs_catchup", "relays.nats")
        stored = demo(
            database,
            "shell",
            "-c",
            "from django_cqrs.models import StoredEvent; "
            "print('STORED', *StoredEvent.objects.values_list('event_type', flat=True))",
        )
        names = next(line for line in stored.splitlines() if line.startswith("STORED")).split()[1:]
        received = queue.drain()
        assert sorted(m.subject for m in received) == sorted(names)  # routing key = the name
        assert {m.body["source"] for m in received} == {"/demo_project"}
        # The stream is the demo's, kept between runs: this run added one message per event.
        assert stream_messages() - before == len(names)
    finally:
        queue.delete_queue()


@requires_rabbitmq
def test_the_second_service_fills_its_read_model_from_the_demos_relay(tmp_path: Path) -> None:
    database, downstream = tmp_path / "demo.sqlite3", tmp_path / "downstream.sqlite3"
    queue = RabbitQueue(exchange="demo.events", queue=f"test.downstream.{os.getpid()}")
    env = {"DOWNSTREAM_SQLITE_PATH": str(downstream), "DOWNSTREAM_QUEUE": queue.queue}
    other = ["--settings", "demo_project.settings_downstream"]
    try:
        demo(database, "migrate", "--noinput", *other, **env)
        # Its consumer declares and binds its queue: what the relay sends from now on stays.
        demo(database, "cqrs_consume", "orders", "--idle-timeout", "1", *other, **env)
        demo(database, "migrate", "--noinput")
        demo(database, "seed_demo", "--orders", "6")
        demo(database, "cqrs_catchup", "relays.rabbitmq")
        demo(database, "cqrs_consume", "orders", "--idle-timeout", "3", *other, **env)
        count = (
            "from django_cqrs.models import StoredEvent; print('PLACED', StoredEvent.objects"
            ".filter(event_type='orders.OrderPlaced').count())"
        )
        placed = demo(database, "shell", "-c", count)
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
        queue.delete_queue()
