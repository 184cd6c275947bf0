"""The demo's checkout (demo_project/orders/sagas.py): stock, payment, confirmation.

Placing an order starts a checkout: reserve the stock of every line, request the payment
from the fake gateway, confirm the order. A declined payment, no answer in time or too
little stock compensates what ran, newest first; cancelling the order while its checkout
runs (or after) gives the stock and the payment back. Most tests drive the saga's
catch-up and its deadlines themselves (``no_trigger``), with a clock they choose; some
state it as a saga scenario of the test toolkit (when an order is placed, then these
commands; when the payment's time has passed, then these); the transactional ones let
the commands run it inline after their commit, as over HTTP.
"""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from rest_framework.test import APIClient

import demo_project.settings as demo_settings
from demo_project.orders import sagas
from demo_project.orders.commands import (
    AddItem,
    AddProduct,
    CancelOrder,
    ConfirmOrder,
    OrderItem,
    PlaceOrder,
    RefundPayment,
    RegisterCustomer,
    ReleaseStock,
    RequestPayment,
    ReserveStock,
    SetGatewayMode,
    ShipOrder,
    StockLine,
)
from demo_project.orders.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    PaymentApproved,
    PaymentDeclined,
    PaymentRequested,
    PaymentVoided,
    StockReleased,
    StockReserved,
)
from demo_project.orders.models import (
    Checkout,
    GatewayMode,
    Order,
    OrderCount,
    OrderStatus,
    OrderView,
    Payment,
    PaymentGateway,
    Product,
    ProductView,
)
from demo_project.orders.queries import GetCheckout, ListOrders
from django_cqrs import command_bus, query_bus
from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.models import SagaDeadline, StoredEvent
from django_cqrs.projections.catchup import catch_up, run_catch_up
from django_cqrs.projections.rebuild import rebuild
from django_cqrs.sagas import fire_due
from django_cqrs.testing import ANY, FrozenClock, SagaOutcome, SagaScenario

SAGA = sagas.CheckoutSaga.name
PROBLEM = "application/problem+json"

pytestmark = pytest.mark.django_db

HAPPY = [
    ("place order", "succeeded"),
    ("reserve stock", "succeeded"),
    ("request payment", "succeeded"),
    ("payment approved", "succeeded"),
    ("confirm order", "succeeded"),
]


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def shop(no_trigger: None) -> dict[str, UUID]:
    """A customer (credit 1000.00) and two products: 10 pens (2.50) and 5 pads (5.00)."""
    return {
        "ada": command_bus.dispatch(
            RegisterCustomer(name="Ada", credit_limit=Decimal("1000.00"))
        ).value,
        "pen": add_product("Pen", "2.50", stock=10),
        "pad": add_product("Notepad", "5.00", stock=5),
    }


def add_product(name: str, price: str, stock: int) -> UUID:
    return command_bus.dispatch(AddProduct(name=name, price=Decimal(price), stock=stock)).value


def place(customer_id: UUID, *items: tuple[UUID, int]) -> tuple[UUID, int]:
    """The new order's id and the position of its OrderPlaced event."""
    lines = [OrderItem(product_id=pid, quantity=qty) for pid, qty in items]
    result = command_bus.dispatch(PlaceOrder(customer_id=customer_id, items=lines))
    assert result.position is not None
    return result.value, result.position


def gateway(mode: GatewayMode) -> None:
    command_bus.dispatch(SetGatewayMode(mode=mode))


def checkout(order_id: UUID) -> Checkout:
    return Checkout.objects.get(key=str(order_id))


def steps(order_id: UUID) -> list[tuple[str, str]]:
    return [(step["step"], step["outcome"]) for step in checkout(order_id).steps]


def stock(product_id: UUID) -> int:
    """Units available, on the write side and in the read model (they must agree)."""
    write, read = Product.objects.get(pk=product_id).stock, ProductView.objects.get(pk=product_id)
    assert read.stock == write
    return write


def status(order_id: UUID) -> str:
    """The order's status, on the write side and in the read model (they must agree)."""
    write, read = Order.objects.get(pk=order_id).status, OrderView.objects.get(pk=order_id)
    assert read.status == write
    return write


def events_after(position: int) -> list[str]:
    """The types of the events recorded after ``position``, in log order."""
    rows = StoredEvent.objects.filter(position__gt=position).order_by("position")
    return [row.event_type.removeprefix("orders.") for row in rows]


def deadline(order_id: UUID) -> SagaDeadline:
    return SagaDeadline.objects.get(saga=SAGA, instance_key=str(order_id))


# -- the happy path ------------------------------------------------------------------------


def order_lines(*items: tuple[UUID, int]) -> list[OrderItem]:
    return [OrderItem(product_id=pid, quantity=qty) for pid, qty in items]


def stock_lines(*items: tuple[UUID, int]) -> list[StockLine]:
    return [StockLine(product_id=pid, quantity=qty) for pid, qty in items]


def by_product(*events: Any) -> list[Any]:
    """Stock events in the order the handlers record them: by product id (the order in
    which they lock the products)."""
    return sorted(events, key=lambda event: event.product_id)


def payment_of(order_id: UUID) -> UUID:
    """The id of the order's first payment (the checkout derives it from the order's)."""
    return uuid.uuid5(order_id, "payment")


def check_out_pens_and_pads(shop: dict[str, UUID]) -> tuple[SagaScenario, SagaOutcome, UUID]:
    """An order of 3 pens and 2 pads (17.50) placed and its checkout run to its end: the
    scenario, what the checkout did, the order's id."""
    scenario = SagaScenario(sagas.CheckoutSaga)
    items = order_lines((shop["pen"], 3), (shop["pad"], 2))
    outcome = scenario.when(PlaceOrder(customer_id=shop["ada"], items=items))
    return scenario, outcome, scenario.value


def taken(shop: dict[str, UUID], order_id: UUID) -> tuple[list[Any], list[Any]]:
    """What the checkout of 3 pens and 2 pads does first: its commands, and their events."""
    pen, pad = shop["pen"], shop["pad"]
    payment_id = payment_of(order_id)
    commands = [
        ReserveStock(order_id=order_id, lines=stock_lines((pen, 3), (pad, 2))),
        RequestPayment(payment_id=payment_id, order_id=order_id, amount=Decimal("17.50")),
    ]
    events = [
        *by_product(
            StockReserved(product_id=pen, order_id=order_id, quantity=3, stock=7),
            StockReserved(product_id=pad, order_id=order_id, quantity=2, stock=3),
        ),
        PaymentRequested(payment_id=payment_id, order_id=order_id, amount=Decimal("17.50")),
    ]
    return commands, events


def test_a_placed_order_is_confirmed_once_its_stock_is_reserved_and_its_payment_approved(
    shop: dict[str, UUID],
) -> None:
    pen, pad = shop["pen"], shop["pad"]

    scenario, outcome, order_id = check_out_pens_and_pads(shop)

    payment_id = payment_of(order_id)
    commands, events = taken(shop, order_id)
    outcome.then_commands(*commands, ConfirmOrder(order_id=order_id))
    outcome.then_events(
        OrderPlaced(
            order_id=order_id,
            customer_id=shop["ada"],
            customer_name="Ada",
            lines=ANY,
            total=Decimal("17.50"),
            item_count=5,
        ),
        *events,
        PaymentApproved(payment_id=payment_id, order_id=order_id, amount=Decimal("17.50")),
        OrderConfirmed(order_id=order_id, customer_id=shop["ada"]),
    )
    assert status(order_id) == "confirmed"
    assert (stock(pen), stock(pad)) == (7, 3)
    instance = scenario.instance(order_id)
    assert (instance.state, instance.finished_at is not None) == ("completed", True)
    assert steps(order_id) == HAPPY
    [payment] = Payment.objects.filter(order_id=order_id)
    assert (payment.status, payment.amount) == ("approved", Decimal("17.50"))
    assert deadline(order_id).cancelled_at is not None  # the payment came in time
    # The saga's commands carry the order's correlation id and the checkout as causation.
    placed = StoredEvent.objects.get(event_type="orders.OrderPlaced")
    sent = StoredEvent.objects.filter(position__gt=placed.position)
    assert {e.metadata["causation_id"] for e in sent} == {f"saga:{SAGA}:{order_id}"}
    assert {e.metadata["correlation_id"] for e in sent} == {placed.metadata["correlation_id"]}


def test_a_placed_order_waits_for_its_checkout(shop: dict[str, UUID]) -> None:
    order_id, _ = place(shop["ada"], (shop["pen"], 3))

    assert status(order_id) == "placed"  # the checkout runs after the commit
    assert query_bus.dispatch(GetCheckout(order_id=order_id)).steps == []


def test_read_models_show_confirmed_orders(shop: dict[str, UUID]) -> None:
    confirmed, _ = place(shop["ada"], (shop["pen"], 1))
    catch_up(SAGA)
    placed, _ = place(shop["ada"], (shop["pen"], 1))  # its checkout has not run yet

    assert (status(confirmed), status(placed)) == ("confirmed", "placed")
    counts = {row.status: row.orders for row in OrderCount.objects.filter(customer_id=shop["ada"])}
    assert counts == {"placed": 1, "confirmed": 1}
    page = query_bus.dispatch(ListOrders(status=OrderStatus.CONFIRMED))
    assert ([o.id for o in page.results], page.count) == ([confirmed], 1)


def test_confirmed_orders_ship_and_cancel_as_placed_ones_do(shop: dict[str, UUID]) -> None:
    shipped, _ = place(shop["ada"], (shop["pen"], 1))
    cancelled, _ = place(shop["ada"], (shop["pen"], 1))
    catch_up(SAGA)
    assert (status(shipped), status(cancelled)) == ("confirmed", "confirmed")

    command_bus.dispatch(ShipOrder(order_id=shipped))
    command_bus.dispatch(CancelOrder(order_id=cancelled))

    assert (status(shipped), status(cancelled)) == ("shipped", "cancelled")
    counts = {row.status: row.orders for row in OrderCount.objects.filter(customer_id=shop["ada"])}
    assert counts == {"placed": 0, "confirmed": 0, "shipped": 1, "cancelled": 1}
    with pytest.raises(InvariantViolationError, match="a shipped order cannot be cancelled"):
        command_bus.dispatch(CancelOrder(order_id=shipped))
    with pytest.raises(InvariantViolationError, match="cannot be added to a shipped order"):
        command_bus.dispatch(AddItem(order_id=shipped, product_id=shop["pen"], quantity=1))


# -- what stops a checkout ------------------------------------------------------------------


def test_a_declined_payment_releases_the_stock_then_cancels_the_order(
    shop: dict[str, UUID],
) -> None:
    pen, pad = shop["pen"], shop["pad"]
    gateway(GatewayMode.DECLINE)

    scenario, outcome, order_id = check_out_pens_and_pads(shop)

    payment_id = payment_of(order_id)
    commands, events = taken(shop, order_id)
    # The stock is given back first, then the order is cancelled: newest step first.
    outcome.then_commands(
        *commands,
        ReleaseStock(order_id=order_id, lines=stock_lines((pen, 3), (pad, 2))),
        CancelOrder(order_id=order_id),
    )
    outcome.then_events(
        ANY,  # OrderPlaced
        *events,
        PaymentDeclined(
            payment_id=payment_id,
            order_id=order_id,
            amount=Decimal("17.50"),
            reason="declined by the payment gateway",
        ),
        *by_product(
            StockReleased(product_id=pen, order_id=order_id, quantity=3, stock=10),
            StockReleased(product_id=pad, order_id=order_id, quantity=2, stock=5),
        ),
        OrderCancelled(order_id=order_id, customer_id=shop["ada"], total=Decimal("17.50")),
    )
    assert status(order_id) == "cancelled"
    assert (stock(pen), stock(pad)) == (10, 5)  # where it was
    instance = scenario.instance(order_id)
    assert instance.state == "compensated"
    assert instance.error == "payment declined: declined by the payment gateway"
    assert steps(order_id) == [
        ("place order", "succeeded"),
        ("reserve stock", "succeeded"),
        ("request payment", "succeeded"),
        ("payment declined", "failed"),
        ("compensate reserve stock", "compensated"),
        ("compensate place order", "compensated"),
    ]
    assert Payment.objects.get(order_id=order_id).status == "declined"
    assert deadline(order_id).cancelled_at is not None


def test_no_payment_within_the_timeout_compensates_the_same_way(
    shop: dict[str, UUID], settings: Any, clock: FrozenClock
) -> None:
    settings.DEMO_PAYMENT_TIMEOUT = 30
    gateway(GatewayMode.HOLD)
    pen = shop["pen"]
    scenario = SagaScenario(sagas.CheckoutSaga, clock=clock)
    placed_at = clock.now()
    scenario.when(PlaceOrder(customer_id=shop["ada"], items=order_lines((pen, 4))))
    order_id = scenario.value
    payment_id = payment_of(order_id)
    assert (checkout(order_id).state, status(order_id), stock(pen)) == (
        "awaiting_payment",
        "placed",
        6,
    )
    assert deadline(order_id).due_at == placed_at + dt.timedelta(seconds=30)

    scenario.when_time_passes(seconds=29).then_no_commands()
    assert checkout(order_id).state == "awaiting_payment"
    late = scenario.when_time_passes(seconds=1)
    scenario.when_time_passes(minutes=5).then_no_commands()  # at most once

    late.then_commands(  # the payment request withdrawn, the stock released, then the order
        RefundPayment(payment_id=payment_id),
        ReleaseStock(order_id=order_id, lines=stock_lines((pen, 4))),
        CancelOrder(order_id=order_id),
    )
    late.then_events(
        PaymentVoided(payment_id=payment_id, order_id=order_id, amount=Decimal("10.00")),
        StockReleased(product_id=pen, order_id=order_id, quantity=4, stock=10),
        OrderCancelled(order_id=order_id, customer_id=shop["ada"], total=Decimal("10.00")),
    )
    assert status(order_id) == "cancelled"
    instance = scenario.instance(order_id)
    assert (instance.state, instance.error) == ("compensated", "no payment within 30 s")
    assert steps(order_id) == [
        ("place order", "succeeded"),
        ("reserve stock", "succeeded"),
        ("request payment", "succeeded"),
        ("no payment within 30 s", "failed"),
        ("compensate request payment", "compensated"),
        ("compensate reserve stock", "compensated"),
        ("compensate place order", "compensated"),
    ]


def test_too_little_stock_cancels_the_order_without_asking_for_payment(
    shop: dict[str, UUID],
) -> None:
    pen, pad = shop["pen"], shop["pad"]
    scenario = SagaScenario(sagas.CheckoutSaga)

    outcome = scenario.when(  # 5 pads in stock
        PlaceOrder(customer_id=shop["ada"], items=order_lines((pen, 2), (pad, 6)))
    )

    order_id = scenario.value
    outcome.then_commands(
        ReserveStock(order_id=order_id, lines=stock_lines((pen, 2), (pad, 6))),  # refused
        CancelOrder(order_id=order_id),
    )
    assert outcome.steps == [("reserve stock", "failed"), ("compensate place order", "succeeded")]
    outcome.then_events(ANY, OrderCancelled(order_id=order_id, customer_id=shop["ada"], total=ANY))
    assert status(order_id) == "cancelled"
    assert (stock(pen), stock(pad)) == (10, 5)  # all lines or none
    instance = scenario.instance(order_id)
    assert instance.state == "compensated"
    assert "not enough stock: Notepad (5 available, 6 wanted)" in instance.error
    assert steps(order_id) == [
        ("place order", "succeeded"),
        ("reserve stock", "failed"),
        ("compensate place order", "compensated"),
    ]
    assert not Payment.objects.filter(order_id=order_id).exists()
    assert not SagaDeadline.objects.filter(saga=SAGA).exists()


def test_the_last_units_go_to_the_checkout_that_reserves_them_first(
    shop: dict[str, UUID],
) -> None:
    first, _ = place(shop["ada"], (shop["pad"], 3))
    second, _ = place(shop["ada"], (shop["pad"], 3))

    # In one partition the log's order decides; across the saga's partitions (the two
    # orders' keys may fall in different ones), the partition that runs first does.
    run_catch_up(sagas.CheckoutSaga.partition_for(str(first)))
    catch_up(SAGA)

    assert (status(first), status(second)) == ("confirmed", "cancelled")
    assert stock(shop["pad"]) == 2


# -- cancelled by someone else --------------------------------------------------------------


def test_cancelling_an_order_awaiting_its_payment_releases_the_stock_and_asks_for_nothing(
    shop: dict[str, UUID],
) -> None:
    gateway(GatewayMode.HOLD)
    order_id, _ = place(shop["ada"], (shop["pen"], 4))
    catch_up(SAGA)
    assert stock(shop["pen"]) == 6

    cancelled = command_bus.dispatch(CancelOrder(order_id=order_id)).position
    catch_up(SAGA)

    assert status(order_id) == "cancelled"
    assert stock(shop["pen"]) == 10
    assert checkout(order_id).state == "compensated"
    assert steps(order_id)[3:] == [
        ("order cancelled", "failed"),
        ("compensate request payment", "compensated"),
        ("compensate reserve stock", "compensated"),
    ]
    assert events_after(cancelled) == ["PaymentVoided", "StockReleased"]  # not cancelled twice
    assert Payment.objects.get(order_id=order_id).status == "voided"  # no payment captured
    assert deadline(order_id).cancelled_at is not None
    assert fire_due(now=timezone.now() + dt.timedelta(hours=1)) == 0


def test_cancelling_an_order_whose_payment_was_approved_refunds_it(
    shop: dict[str, UUID],
) -> None:
    order_id, _ = place(shop["ada"], (shop["pen"], 4))
    catch_up(SAGA, batch_size=1, max_batches=1)  # the checkout took stock and payment ...
    assert Payment.objects.get(order_id=order_id).status == "approved"
    assert checkout(order_id).state == "awaiting_payment"  # ... and has not seen the answer

    cancelled = command_bus.dispatch(CancelOrder(order_id=order_id)).position
    catch_up(SAGA)

    assert status(order_id) == "cancelled"  # not confirmed after its cancellation
    assert stock(shop["pen"]) == 10
    assert checkout(order_id).state == "compensated"
    assert steps(order_id)[3:] == [
        ("payment approved", "succeeded"),
        ("order cancelled", "failed"),
        ("compensate request payment", "compensated"),
        ("compensate reserve stock", "compensated"),
    ]
    assert events_after(cancelled) == ["PaymentRefunded", "StockReleased"]
    assert Payment.objects.get(order_id=order_id).status == "refunded"


def test_cancelling_a_confirmed_order_refunds_its_payment_and_releases_its_stock(
    shop: dict[str, UUID],
) -> None:
    order_id, _ = place(shop["ada"], (shop["pen"], 4))
    catch_up(SAGA)
    assert (status(order_id), stock(shop["pen"])) == ("confirmed", 6)

    cancelled = command_bus.dispatch(CancelOrder(order_id=order_id)).position
    catch_up(SAGA)

    assert stock(shop["pen"]) == 10
    assert checkout(order_id).state == "compensated"
    assert steps(order_id)[len(HAPPY) :] == [
        ("order cancelled", "failed"),
        ("compensate request payment", "compensated"),
        ("compensate reserve stock", "compensated"),
    ]
    assert events_after(cancelled) == ["PaymentRefunded", "StockReleased"]


def test_an_order_cancelled_before_its_checkout_started_takes_nothing(
    shop: dict[str, UUID],
) -> None:
    order_id, placed = place(shop["ada"], (shop["pen"], 4))
    command_bus.dispatch(CancelOrder(order_id=order_id))

    catch_up(SAGA)

    assert checkout(order_id).state == "compensated"
    assert steps(order_id) == [("place order", "succeeded"), ("order cancelled", "failed")]
    assert events_after(placed) == ["OrderCancelled"]  # the customer's; nothing taken
    assert stock(shop["pen"]) == 10


# -- the order changing while its checkout runs -----------------------------------------------


def test_an_item_added_during_the_checkout_is_reserved_and_paid_before_confirmation(
    shop: dict[str, UUID],
) -> None:
    order_id, _ = place(shop["ada"], (shop["pen"], 2))
    catch_up(SAGA, batch_size=1, max_batches=1)  # stock and payment of the first line
    command_bus.dispatch(AddItem(order_id=order_id, product_id=shop["pad"], quantity=1))

    catch_up(SAGA)

    assert status(order_id) == "confirmed"
    assert (stock(shop["pen"]), stock(shop["pad"])) == (8, 4)
    assert steps(order_id) == [
        ("place order", "succeeded"),
        ("reserve stock", "succeeded"),
        ("request payment", "succeeded"),
        ("payment approved", "succeeded"),  # not enough: the order grew meanwhile
        ("reserve stock for added item 1", "succeeded"),
        ("request payment for added item 1", "succeeded"),
        ("payment approved for added item 1", "succeeded"),
        ("confirm order", "succeeded"),
    ]
    payments = Payment.objects.filter(order_id=order_id, status="approved")
    assert sorted(p.amount for p in payments) == [Decimal("5.00"), Decimal("5.00")]
    with pytest.raises(InvariantViolationError, match="added to a confirmed order"):
        command_bus.dispatch(AddItem(order_id=order_id, product_id=shop["pad"], quantity=1))


def test_a_declined_payment_for_an_added_item_gives_everything_back(
    shop: dict[str, UUID],
) -> None:
    gateway(GatewayMode.HOLD)
    order_id, _ = place(shop["ada"], (shop["pen"], 2))
    catch_up(SAGA)
    gateway(GatewayMode.DECLINE)
    command_bus.dispatch(AddItem(order_id=order_id, product_id=shop["pad"], quantity=1))

    catch_up(SAGA)

    assert status(order_id) == "cancelled"
    assert (stock(shop["pen"]), stock(shop["pad"])) == (10, 5)
    assert steps(order_id) == [
        ("place order", "succeeded"),
        ("reserve stock", "succeeded"),
        ("request payment", "succeeded"),  # held: no answer
        ("reserve stock for added item 1", "succeeded"),
        ("request payment for added item 1", "succeeded"),
        ("payment declined for added item 1", "failed"),
        ("compensate reserve stock for added item 1", "compensated"),
        ("compensate request payment", "compensated"),  # the held one: withdrawn
        ("compensate reserve stock", "compensated"),
        ("compensate place order", "compensated"),
    ]
    payments = Payment.objects.filter(order_id=order_id).order_by("requested_at")
    assert [p.status for p in payments] == ["voided", "declined"]


def test_an_item_added_then_the_order_cancelled_before_the_checkout_saw_either(
    shop: dict[str, UUID],
) -> None:
    gateway(GatewayMode.HOLD)
    order_id, _ = place(shop["ada"], (shop["pen"], 2))
    catch_up(SAGA)
    command_bus.dispatch(AddItem(order_id=order_id, product_id=shop["pad"], quantity=9))
    cancelled = command_bus.dispatch(CancelOrder(order_id=order_id)).position

    catch_up(SAGA)

    assert checkout(order_id).state == "compensated"
    assert steps(order_id)[3:] == [  # nothing taken for the item: the order is cancelled
        ("order cancelled", "failed"),
        ("compensate request payment", "compensated"),
        ("compensate reserve stock", "compensated"),
    ]
    assert events_after(cancelled) == ["PaymentVoided", "StockReleased"]
    assert (stock(shop["pen"]), stock(shop["pad"])) == (10, 5)


def test_an_order_shipped_before_its_payment_came_stays_shipped(shop: dict[str, UUID]) -> None:
    order_id, _ = place(shop["ada"], (shop["pen"], 2))
    catch_up(SAGA, batch_size=1, max_batches=1)
    command_bus.dispatch(ShipOrder(order_id=order_id))

    catch_up(SAGA)

    assert status(order_id) == "shipped"
    assert checkout(order_id).state == "completed"
    assert steps(order_id)[-1] == ("payment approved", "succeeded")  # nothing to confirm
    assert stock(shop["pen"]) == 8


def test_the_product_view_rebuilt_from_the_log_shows_the_same_stock(
    shop: dict[str, UUID],
) -> None:
    gateway(GatewayMode.DECLINE)
    place(shop["ada"], (shop["pen"], 1))
    catch_up(SAGA)
    gateway(GatewayMode.APPROVE)
    place(shop["ada"], (shop["pen"], 2), (shop["pad"], 1))
    catch_up(SAGA)
    before = sorted(ProductView.objects.values_list("name", "stock", "version"))

    rebuild("orders.ProductViewProjection")

    assert sorted(ProductView.objects.values_list("name", "stock", "version")) == before
    assert before == [("Notepad", 4, 2), ("Pen", 8, 4)]


# -- the payment timeout setting ------------------------------------------------------------


@pytest.fixture
def reload_demo_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Import the demo's settings module again with the environment a test sets."""

    def load(value: str | None) -> Any:
        if value is None:
            monkeypatch.delenv("DEMO_PAYMENT_TIMEOUT", raising=False)
        else:
            monkeypatch.setenv("DEMO_PAYMENT_TIMEOUT", value)
        return importlib.reload(demo_settings)

    yield load
    monkeypatch.delenv("DEMO_PAYMENT_TIMEOUT", raising=False)
    importlib.reload(demo_settings)


def test_the_payment_timeout_comes_from_the_environment(reload_demo_settings: Any) -> None:
    assert reload_demo_settings(None).DEMO_PAYMENT_TIMEOUT == 30
    assert reload_demo_settings("").DEMO_PAYMENT_TIMEOUT == 30
    assert reload_demo_settings("5").DEMO_PAYMENT_TIMEOUT == 5
    assert reload_demo_settings(" 0.5 ").DEMO_PAYMENT_TIMEOUT == 0.5
    for bad in ("soon", "0", "-3", "inf", "nan"):
        with pytest.raises(ImproperlyConfigured, match="DEMO_PAYMENT_TIMEOUT must be a positive"):
            reload_demo_settings(bad)


def test_the_checkout_waits_as_long_as_the_setting_says(
    shop: dict[str, UUID], settings: Any
) -> None:
    settings.DEMO_PAYMENT_TIMEOUT = 2.5
    gateway(GatewayMode.HOLD)
    order_id, _ = place(shop["ada"], (shop["pen"], 1))
    started = timezone.now()
    catch_up(SAGA)

    due = deadline(order_id).due_at
    assert dt.timedelta(seconds=2.5) <= due - started < dt.timedelta(seconds=4)
    assert fire_due(now=due) == 1
    assert checkout(order_id).error == "no payment within 2.5 s"


# -- the gateway's mode -----------------------------------------------------------------------


def test_the_gateway_mode_is_a_shared_row_set_by_a_command(no_trigger: None) -> None:
    assert not PaymentGateway.objects.exists()  # approve until someone says otherwise

    gateway(GatewayMode.HOLD)
    gateway(GatewayMode.DECLINE)

    row = PaymentGateway.objects.get()
    assert (row.mode, row.version) == ("decline", 2)
    modes = StoredEvent.objects.filter(event_type="orders.GatewayModeSet").order_by("position")
    assert [(e.payload["previous_mode"], e.payload["mode"]) for e in modes] == [
        ("approve", "hold"),
        ("hold", "decline"),
    ]


# -- HTTP ---------------------------------------------------------------------------------------


@pytest.fixture
def staff_client() -> APIClient:
    api = APIClient()
    api.force_authenticate(User.objects.create_user("bob", password="pw", is_staff=True))
    return api


@pytest.fixture
def user_client() -> APIClient:
    api = APIClient()
    api.force_authenticate(User.objects.create_user("alice", password="pw"))
    return api


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_get_checkout_answers_state_and_steps(shop: dict[str, UUID]) -> None:
    order_id, _ = place(shop["ada"], (shop["pen"], 1))
    api = APIClient()

    before = api.get(f"/api/checkouts/{order_id}/")  # placed; its checkout runs next
    assert before.status_code == 200
    assert before.json() == {"order_id": str(order_id), "state": "started", "steps": []}

    catch_up(SAGA)
    response = api.get(f"/api/checkouts/{order_id}/")

    assert response.status_code == 200
    assert response.json() == {
        "order_id": str(order_id),
        "state": "completed",
        "steps": [{"name": name, "outcome": outcome} for name, outcome in HAPPY],
    }
    tag = response["ETag"]
    assert tag.startswith('W/"')  # a digest of what was sent: no version to show
    assert tag != before["ETag"]
    unchanged = api.get(f"/api/checkouts/{order_id}/", headers={"If-None-Match": tag})
    assert (unchanged.status_code, unchanged.content) == (304, b"")


def test_get_checkout_of_an_unknown_order_is_a_404_problem(
    user_client: APIClient, no_trigger: None
) -> None:
    problem(user_client.get(f"/api/checkouts/{uuid.uuid4()}/"), 404)
    problem(user_client.get("/api/checkouts/not-an-id/"), 404)
    refused = problem(user_client.post(f"/api/checkouts/{uuid.uuid4()}/", {}, format="json"), 405)
    assert refused["status"] == 405


def test_get_checkout_shows_a_compensated_checkout(shop: dict[str, UUID]) -> None:
    gateway(GatewayMode.DECLINE)
    order_id, _ = place(shop["ada"], (shop["pen"], 1))
    catch_up(SAGA)

    body = APIClient().get(f"/api/checkouts/{order_id}/").json()

    assert body["state"] == "compensated"
    assert [step["name"] for step in body["steps"]][-3:] == [
        "payment declined",
        "compensate reserve stock",
        "compensate place order",
    ]
    assert [step["outcome"] for step in body["steps"]][-3:] == [
        "failed",
        "compensated",
        "compensated",
    ]


def test_post_payment_gateway_sets_the_mode(staff_client: APIClient, no_trigger: None) -> None:
    response = staff_client.post("/api/payment-gateway/", {"mode": "hold"}, format="json")

    assert (response.status_code, response.content) == (204, b"")
    assert PaymentGateway.objects.get().mode == "hold"
    assert "CQRS-Position" in response


@pytest.mark.parametrize("body", [{"mode": "maybe"}, {"mode": ""}, {"mode": 1}, {}, []])
def test_post_payment_gateway_with_a_bad_mode_is_a_400_problem(
    staff_client: APIClient, no_trigger: None, body: Any
) -> None:
    response = staff_client.post("/api/payment-gateway/", body, format="json")

    answer = problem(response, 400)
    if isinstance(body, dict):
        assert "mode" in answer["errors"]
    assert not PaymentGateway.objects.exists()


def test_only_staff_set_the_gateway_mode(user_client: APIClient, no_trigger: None) -> None:
    problem(user_client.post("/api/payment-gateway/", {"mode": "hold"}, format="json"), 403)
    problem(APIClient().post("/api/payment-gateway/", {"mode": "hold"}, format="json"), 401)
    problem(APIClient().get("/api/payment-gateway/"), 405)
    assert not PaymentGateway.objects.exists()


def test_products_are_added_with_stock_and_show_what_is_available(
    user_client: APIClient, shop: dict[str, UUID]
) -> None:
    made = user_client.post(
        "/api/products/", {"name": "Lamp", "price": "12.50", "stock": 3}, format="json"
    )
    assert made.status_code == 201, made.content
    lamp = made.json()["product_id"]
    default = user_client.post("/api/products/", {"name": "Mug", "price": "4.00"}, format="json")
    mug = default.json()["product_id"]

    shown = user_client.get(f"/api/products/{lamp}/")
    assert (shown.json()["stock"], shown["ETag"]) == (3, '"1"')
    assert user_client.get(f"/api/products/{mug}/").json()["stock"] == 100
    order_id, _ = place(shop["ada"], (UUID(lamp), 2))
    catch_up(SAGA)
    after = user_client.get(f"/api/products/{lamp}/")
    assert (after.json()["stock"], after["ETag"]) == (1, '"2"')  # after the reservation
    listed = user_client.get("/api/products/?name=lamp").json()["results"]
    assert [p["stock"] for p in listed] == [1]
    assert user_client.get(f"/api/orders/{order_id}/").json()["status"] == "confirmed"


@pytest.mark.parametrize("stock", [-1, 1_000_001, "many", 1.5, None])
def test_a_bad_stock_is_a_400_problem(user_client: APIClient, no_trigger: None, stock: Any) -> None:
    body = {"name": "Lamp", "price": "12.50", "stock": stock}
    answer = problem(user_client.post("/api/products/", body, format="json"), 400)
    assert "stock" in answer["errors"]
    assert not Product.objects.exists()


def test_the_schema_documents_the_checkout_routes() -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    read = schema["paths"]["/api/checkouts/{id}/"]["get"]
    assert read["operationId"] == "get_checkout"
    assert set(components["Checkout"]["properties"]) == {"order_id", "state", "steps"}
    assert components["StateEnum"]["enum"] == [
        "started",
        "awaiting_payment",
        "completed",
        "compensated",
        "failed",
    ]
    assert set(components["CheckoutStep"]["properties"]) == {"name", "outcome"}
    gateway_post = schema["paths"]["/api/payment-gateway/"]["post"]
    assert gateway_post["operationId"] == "set_gateway_mode"
    assert "204" in gateway_post["responses"]
    assert components["ModeEnum"]["enum"] == ["approve", "decline", "hold"]
    assert "stock" in components["AddProductRequest"]["properties"]
    assert "stock" in components["ProductView"]["properties"]


# -- end to end: the checkout runs inline after each command's commit -------------------------


@pytest.mark.django_db(transaction=True)
def test_over_http_a_declined_checkout_cancels_the_order(staff_client: APIClient) -> None:
    def post(url: str, body: Any) -> Any:
        response = staff_client.post(url, body, format="json")
        assert response.status_code in (201, 204), response.content
        return response

    customer = post("/api/customers/", {"name": "Ada", "credit_limit": "100.00"})
    product = post("/api/products/", {"name": "Lamp", "price": "10.00", "stock": 5})
    customer_id, product_id = customer.json()["customer_id"], product.json()["product_id"]
    order = {"customer_id": customer_id, "items": [{"product_id": product_id, "quantity": 2}]}

    approved = post("/api/orders/", order).json()["order_id"]
    post("/api/payment-gateway/", {"mode": "decline"})
    placed = post("/api/orders/", order)
    declined = placed.json()["order_id"]

    assert staff_client.get(f"/api/orders/{approved}/").json()["status"] == "confirmed"
    assert staff_client.get(f"/api/orders/{declined}/").json()["status"] == "cancelled"
    checkout_of = staff_client.get(
        f"/api/checkouts/{declined}/", headers={"CQRS-Min-Position": placed["CQRS-Position"]}
    )
    assert checkout_of.json()["state"] == "compensated"
    assert staff_client.get(f"/api/products/{product_id}/").json()["stock"] == 3
    # The order's own answer says where its own event is, not the checkout's.
    assert StoredEvent.objects.get(position=int(placed["CQRS-Position"])).event_type == (
        "orders.OrderPlaced"
    )
