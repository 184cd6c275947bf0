"""The demo's management commands: seed_demo and demo_serve."""

from __future__ import annotations

import io
import logging
import signal
import socket
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from demo_project.orders.management.commands import demo_serve
from demo_project.orders.models import Customer, CustomerSummary, Order, OrderView, Product
from django_cqrs.models import StoredEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def keep_cqrs_log_level() -> Iterator[None]:
    """seed_demo quiets the django_cqrs logger; other tests must not inherit that."""
    logger = logging.getLogger("django_cqrs")
    level = logger.level
    yield
    logger.setLevel(level)


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", "--orders", "30", *args, stdout=out)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    models = [*apps.get_app_config("orders").get_models()]
    models += apps.get_app_config("django_cqrs").get_models()
    models.append(get_user_model())
    return {model._meta.label: model._base_manager.count() for model in models}


def test_seed_demo_fills_the_write_and_read_sides_through_the_command_bus() -> None:
    output = seed()

    assert Customer.objects.count() >= 5
    assert Product.objects.count() >= 20
    orders = Order.objects.count()
    assert orders == 30
    assert OrderView.objects.count() == orders
    assert f"{orders} orders through the command bus" in output
    # Every aggregate was saved through its events: one event per version, in order.
    for model in (Customer, Product, Order):
        for aggregate in model.objects.all():
            versions = list(
                StoredEvent.objects.for_aggregate(aggregate).values_list(
                    "aggregate_version", flat=True
                )
            )
            assert versions == list(range(1, aggregate.version + 1)), aggregate
    commands = set(StoredEvent.objects.values_list("metadata__command_type", flat=True))
    assert "demo_project.orders.commands.PlaceOrder" in commands
    assert set(StoredEvent.objects.values_list("metadata__user", flat=True)) == {"seed_demo"}
    # The async summaries agree with the orders once caught up (as the cluster would do).
    call_command("cqrs_catchup", "--all", stdout=io.StringIO())
    for customer in Customer.objects.all():
        summary = CustomerSummary.objects.get(pk=customer.pk)
        counted = customer.orders.exclude(status="cancelled")
        assert summary.order_count == counted.count()
        assert summary.lifetime_value == sum(o.total for o in counted)


def test_seed_demo_creates_the_local_admin_once_and_says_so() -> None:
    output = seed()

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password("admin")
    assert "local-only superuser admin / admin" in output


def test_seed_demo_twice_adds_nothing() -> None:
    seed()
    before = row_counts()

    output = seed()

    assert row_counts() == before
    assert "already present" in output
    assert "superuser" not in output


def test_seed_demo_without_orders_is_idempotent_too() -> None:
    call_command("seed_demo", "--orders", "0", stdout=io.StringIO())
    before = row_counts()
    assert before["orders.Customer"] >= 5

    call_command("seed_demo", "--orders", "0", stdout=io.StringIO())

    assert row_counts() == before


def test_seed_demo_rejects_a_negative_order_count_and_writes_nothing() -> None:
    before = row_counts()

    with pytest.raises(CommandError, match="--orders cannot be negative"):
        call_command("seed_demo", "--orders", "-1", stdout=io.StringIO())

    assert row_counts() == before


class FakeSupervisor:
    """Records what demo_serve would start; "receives" SIGINT once the server is ready."""

    instances: ClassVar[list[FakeSupervisor]] = []

    def __init__(self) -> None:
        self.started: list[tuple[str, list[str]]] = []
        self.stopped = False
        self.instances.append(self)

    def __enter__(self) -> FakeSupervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped = True

    def start(self, name: str, argv: list[str]) -> None:
        self.started.append((name, argv))

    def run(self, ready: Any, on_ready: Any) -> int:
        on_ready()
        return signal.SIGINT


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> list[FakeSupervisor]:
    FakeSupervisor.instances = []
    monkeypatch.setattr(demo_serve, "Supervisor", FakeSupervisor)
    # The demo's second service starts only where RabbitMQ answers: not in these tests
    # (tests/test_demo_downstream.py has its own).
    monkeypatch.setattr(demo_serve, "rabbitmq_answers", lambda: False)
    return FakeSupervisor.instances


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-5", "", "\u0661\u0662"])
def test_demo_serve_rejects_a_bad_port_before_starting_anything(
    port: str, supervisor: list[FakeSupervisor]
) -> None:
    with pytest.raises(CommandError, match="PORT must be a number from 1 to 65535"):
        call_command("demo_serve", "--port", port, stdout=io.StringIO())

    assert supervisor == []


def test_demo_serve_says_the_port_is_in_use_before_starting_anything(
    supervisor: list[FakeSupervisor],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(CommandError, match=f"Port {port} on 127.0.0.1 is in use"):
            call_command("demo_serve", "--port", str(port), stdout=io.StringIO())

    assert supervisor == []


def test_demo_serve_takes_its_default_port_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "eighty")

    with pytest.raises(CommandError, match="'eighty'"):
        call_command("demo_serve", "--no-cluster", stdout=io.StringIO())


def test_demo_serve_runs_the_server_on_localhost_and_the_cluster_as_its_children(
    supervisor: list[FakeSupervisor],
) -> None:
    out = io.StringIO()

    call_command("demo_serve", "--port", "8123", stdout=out)

    [run] = supervisor
    [(_, server_argv), (_, cluster_argv)] = run.started
    assert server_argv[-3:] == ["runserver", "--noreload", "127.0.0.1:8123"]
    assert cluster_argv[-1] == "qcluster"
    assert run.stopped
    assert "The demo is ready: open http://127.0.0.1:8123/" in out.getvalue()
    assert "admin / admin" in out.getvalue()
    assert "The demo is stopped (SIGINT)." in out.getvalue()


def test_demo_serve_without_the_cluster_starts_the_server_only(
    supervisor: list[FakeSupervisor],
) -> None:
    call_command("demo_serve", "--port", "8123", "--no-cluster", stdout=io.StringIO())

    [run] = supervisor
    assert [name for name, _ in run.started] == ["web server"]
