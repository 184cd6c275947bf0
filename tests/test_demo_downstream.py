"""The demo's second service: its inbox handlers fill its read model from the orders
demo's events (applied once), its settings pass the checks, and ``demo_serve`` starts it
only when RabbitMQ answers."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from demo_project.downstream.models import CustomerOrders, OrderFeedEntry
from demo_project.supervisor import answers, rabbitmq_answers
from django_cqrs.inbox.apply import Outcome, receive
from django_cqrs.inbox.config import InboxConfig, inbox_config
from tests.inbox_helpers import body, cloud_event

ROOT = Path(__file__).resolve().parent.parent
CUSTOMER = uuid.uuid4()


@pytest.fixture
def config(settings: Any) -> InboxConfig:
    settings.DJANGO_CQRS = {
        "INBOXES": {"orders": {"BACKEND": "rabbitmq", "EXCHANGE": "demo.events", "QUEUE": "q"}}
    }
    return inbox_config("orders")


def order_event(event_type: str, order: uuid.UUID, version: int, **data: Any) -> bytes:
    payload = {"order_id": str(order), "customer_id": str(CUSTOMER), **data}
    return body(
        cloud_event(
            f"orders.{event_type}",
            str(order),
            version,
            payload,
            source="/demo_project",
            position=version,
        )
    )


@pytest.mark.django_db
def test_the_read_model_counts_each_order_event_once(config: InboxConfig) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    placed = order_event(
        "OrderPlaced", first, 1, customer_name="Ada", total="12.50", item_count=2, lines=[]
    )

    assert receive(config, placed) is Outcome.HANDLED
    assert receive(config, placed) is Outcome.DUPLICATE
    receive(
        config,
        order_event(
            "OrderPlaced", second, 1, customer_name="Ada", total="7.50", item_count=1, lines=[]
        ),
    )
    receive(config, order_event("OrderShipped", first, 2, previous_status="confirmed"))
    receive(config, order_event("OrderCancelled", second, 2, total="7.50"))

    row = CustomerOrders.objects.get(pk=CUSTOMER)
    assert (row.customer_name, row.placed, row.shipped, row.cancelled, row.total) == (
        "Ada",
        2,
        1,
        1,
        Decimal("12.50"),
    )
    assert OrderFeedEntry.objects.count() == 4
    assert OrderFeedEntry.objects.first().event_type == "OrderCancelled"  # type: ignore[union-attr]


@pytest.mark.django_db
def test_the_downstream_page_shows_the_read_model(config: InboxConfig, client: Any) -> None:
    receive(
        config,
        order_event(
            "OrderPlaced", uuid.uuid4(), 1, customer_name="Grace", total="3.00", item_count=1
        ),
    )

    from django.test import override_settings

    with override_settings(ROOT_URLCONF="demo_project.downstream.urls"):
        page = client.get("/")

    assert page.status_code == 200
    assert b"Grace" in page.content
    assert b"3.00" in page.content
    assert b"1 handled" in page.content


def test_the_downstream_settings_pass_the_checks_and_name_the_demo_exchange(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--settings", "demo_project.settings_downstream"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DOWNSTREAM_SQLITE_PATH": str(tmp_path / "d.sqlite3")},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout
    from demo_project import settings_downstream

    inbox = settings_downstream.DJANGO_CQRS["INBOXES"]["orders"]
    assert (inbox["EXCHANGE"], inbox["QUEUE"]) == ("demo.events", "downstream.orders")


def test_the_supervisor_tells_whether_a_broker_answers() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert answers("127.0.0.1", port)
    assert not answers("127.0.0.1", port)
    assert not rabbitmq_answers(port=port)


def test_demo_serve_skips_the_downstream_service_without_rabbitmq(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from demo_project.orders.management.commands import demo_serve

    monkeypatch.setattr(demo_serve, "rabbitmq_answers", lambda: False)
    started: list[str] = []

    class Recorder:
        def start(self, name: str, argv: list[str]) -> None:
            started.append(name)

    command = demo_serve.Command(stdout=io.StringIO())
    command.start_downstream(Recorder(), [sys.executable, "manage.py"], 8001)  # type: ignore[arg-type]

    assert started == []
    assert "the downstream service (demo_project.settings_downstream) is skipped" in (
        command.stdout._out.getvalue()  # type: ignore[attr-defined]
    )


def test_demo_serve_migrates_and_starts_the_downstream_service_with_rabbitmq(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from demo_project.orders.management.commands import demo_serve

    monkeypatch.setattr(demo_serve, "rabbitmq_answers", lambda: True)
    monkeypatch.setattr(demo_serve, "bind_error", lambda port: None)  # port 8001 free
    ran: list[list[str]] = []
    monkeypatch.setattr(
        demo_serve.subprocess,
        "run",
        lambda argv, check: ran.append(argv) or subprocess.CompletedProcess(argv, 0),
    )
    started: list[tuple[str, list[str]]] = []

    class Recorder:
        def start(self, name: str, argv: list[str]) -> None:
            started.append((name, argv))

    command = demo_serve.Command(stdout=io.StringIO())
    command.start_downstream(Recorder(), ["python", "manage.py"], 8001)  # type: ignore[arg-type]

    settings = ["--settings", "demo_project.settings_downstream"]
    assert ran == [["python", "manage.py", "migrate", "--noinput", "-v", "0", *settings]]
    assert started == [
        ("downstream inbox consumer", ["python", "manage.py", "cqrs_consume", "orders", *settings]),
        (
            "downstream web server",
            ["python", "manage.py", "runserver", "--noreload", "127.0.0.1:8001", *settings],
        ),
    ]
    assert command.downstream_port == 8001
