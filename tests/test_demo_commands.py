"""The demo's management commands: seed_demo and demo_serve."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

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


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-5", ""])
def test_demo_serve_rejects_a_bad_port_before_starting_anything(
    port: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []
    monkeypatch.setattr(demo_serve.subprocess, "Popen", lambda *a, **k: started.append(a))

    with pytest.raises(CommandError, match="PORT must be a number from 1 to 65535"):
        call_command("demo_serve", "--port", port, stdout=io.StringIO())

    assert started == []


def test_demo_serve_takes_its_default_port_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "eighty")

    with pytest.raises(CommandError, match="'eighty'"):
        call_command("demo_serve", "--no-cluster", stdout=io.StringIO())


def test_demo_serve_binds_to_localhost_on_the_chosen_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[tuple[Any, ...]] = []
    monkeypatch.setattr(demo_serve, "call_command", lambda *a, **k: served.append(a))
    out = io.StringIO()

    call_command("demo_serve", "--port", "8123", "--no-cluster", stdout=out)

    assert served == [("runserver", "127.0.0.1:8123")]
    assert "http://127.0.0.1:8123/" in out.getvalue()
    assert "admin / admin" in out.getvalue()
