"""The orders demo through the buses: commands, invariants, read models, queries, rebuild.

Commands are checked with the test toolkit's scenarios (``django_cqrs.testing``): the
events a command recorded, or its refusal and that it wrote nothing to any table; the
order counts with a projection scenario, given events, then rows, also after a rebuild.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from django.core.management import call_command
from django.db import transaction

from demo_project.orders.commands import (
    AddItem,
    AddProduct,
    CancelOrder,
    OrderItem,
    PlaceOrder,
    RegisterCustomer,
    ShipOrder,
)
from demo_project.orders.events import (
    ItemAdded,
    OrderCancelled,
    OrderConfirmed,
    OrderLineData,
    OrderPlaced,
    OrderShipped,
)
from demo_project.orders.models import (
    Customer,
    CustomerSummary,
    Order,
    OrderCount,
    OrderView,
    Product,
)
from demo_project.orders.queries import GetCustomerSummary, GetOrder, ListOrders
from django_cqrs import command_bus, query_bus, store
from django_cqrs.exceptions import AggregateNotFoundError, InvariantViolationError
from django_cqrs.models import StoredEvent
from django_cqrs.testing import (
    ANY,
    CommandScenario,
    ProjectionScenario,
    events_of,
    run_async_projections,
)

pytestmark = pytest.mark.django_db


def register(name: str = "Ada", credit_limit: str = "100.00") -> UUID:
    command = RegisterCustomer(name=name, credit_limit=Decimal(credit_limit))
    return command_bus.dispatch(command).value


def add_product(name: str, price: str) -> UUID:
    return command_bus.dispatch(AddProduct(name=name, price=Decimal(price))).value


def place(customer_id: UUID, *items: tuple[UUID, int]) -> UUID:
    lines = [OrderItem(product_id=pid, quantity=qty) for pid, qty in items]
    return command_bus.dispatch(PlaceOrder(customer_id=customer_id, items=lines)).value


def caught_up_summary(customer_id: UUID) -> Any:
    """The customer's summary once the async projections caught up (as the workers do)."""
    run_async_projections()
    return query_bus.dispatch(GetCustomerSummary(customer_id=customer_id))


@pytest.fixture
def shop() -> dict[str, UUID]:
    """A customer with a 100.00 credit limit and two products (2.50 and 5.00)."""
    return {
        "ada": register("Ada", "100.00"),
        "pen": add_product("Pen", "2.50"),
        "pad": add_product("Notepad", "5.00"),
    }


# -- commands and their read models -------------------------------------------------


def test_register_customer_starts_an_empty_summary() -> None:
    customer_id = register("Grace Hopper", "500.00")

    customer = Customer.objects.get(pk=customer_id)
    assert (customer.name, customer.credit_limit, customer.version) == (
        "Grace Hopper",
        Decimal("500.00"),
        1,
    )
    summary = caught_up_summary(customer_id)
    assert summary.customer_name == "Grace Hopper"
    assert summary.order_count == 0
    assert summary.lifetime_value == Decimal("0")
    assert [e.event_type for e, _ in store.stream(customer)] == ["orders.CustomerRegistered"]


def test_add_product_is_stored_with_its_event() -> None:
    result = command_bus.dispatch(AddProduct(name="Mouse", price=Decimal("19.90")))

    product = Product.objects.get(pk=result.value)
    assert (product.name, product.price, product.version) == ("Mouse", Decimal("19.90"), 1)
    [(event, envelope)] = store.stream(product)
    assert (event.name, event.price) == ("Mouse", Decimal("19.90"))
    assert envelope.position == result.position


def test_place_order_builds_a_display_ready_order_view(shop: dict[str, UUID]) -> None:
    outcome = CommandScenario().when(
        PlaceOrder(
            customer_id=shop["ada"],
            items=[
                OrderItem(product_id=shop["pen"], quantity=2),
                OrderItem(product_id=shop["pad"], quantity=4),
            ],
        )
    )

    outcome.then_events(
        OrderPlaced(
            order_id=outcome.value,
            customer_id=shop["ada"],
            customer_name="Ada",
            lines=[
                OrderLineData(product_id=shop["pen"], quantity=2, unit_price=Decimal("2.50")),
                OrderLineData(product_id=shop["pad"], quantity=4, unit_price=Decimal("5.00")),
            ],
            total=Decimal("25.00"),
            item_count=6,
        )
    )
    result = outcome.result
    assert result is not None
    order = Order.objects.get(pk=result.value)
    assert order.total == Decimal("25.00")
    assert order.lines.count() == 2
    view = query_bus.dispatch(GetOrder(order_id=result.value))
    assert view.customer_name == "Ada"
    assert view.customer_id == shop["ada"]
    assert view.total == Decimal("25.00")
    assert view.item_count == 6  # units, not lines
    assert view.status == "placed"
    assert view.version == order.version == 1
    assert result.position == store.head()
    summary = caught_up_summary(shop["ada"])
    assert (summary.order_count, summary.lifetime_value) == (1, Decimal("25.00"))


def test_large_totals_are_formatted_with_thousands_separators() -> None:
    customer_id = register("Rich", "5000.00")
    laptop = add_product("Laptop", "1234.50")

    order_id = place(customer_id, (laptop, 1))

    assert query_bus.dispatch(GetOrder(order_id=order_id)).total == Decimal("1234.50")


def test_add_item_updates_count_total_and_version(shop: dict[str, UUID]) -> None:
    order_id = place(shop["ada"], (shop["pen"], 2))

    CommandScenario().when(
        AddItem(order_id=order_id, product_id=shop["pad"], quantity=3)
    ).then_events(
        ItemAdded(
            order_id=order_id,
            customer_id=shop["ada"],
            line=OrderLineData(product_id=shop["pad"], quantity=3, unit_price=Decimal("5.00")),
            total=Decimal("20.00"),
            item_count=5,
        )
    )

    order = Order.objects.get(pk=order_id)
    assert order.version == 2
    assert order.lines.count() == 2
    view = OrderView.objects.get(pk=order_id)
    assert (view.item_count, view.total, view.version) == (5, Decimal("20.00"), 2)
    summary = caught_up_summary(shop["ada"])
    assert (summary.order_count, summary.lifetime_value) == (1, Decimal("20.00"))


def test_ship_order_marks_the_view_shipped(shop: dict[str, UUID]) -> None:
    order_id = place(shop["ada"], (shop["pad"], 1))

    CommandScenario().when(ShipOrder(order_id=order_id)).then_events(
        OrderShipped(order_id=order_id, customer_id=shop["ada"], previous_status="placed")
    )

    assert Order.objects.get(pk=order_id).status == "shipped"
    view = OrderView.objects.get(pk=order_id)
    assert (view.status, view.version, view.total) == ("shipped", 2, Decimal("5.00"))
    summary = caught_up_summary(shop["ada"])
    assert (summary.order_count, summary.lifetime_value) == (1, Decimal("5.00"))


def test_cancel_order_removes_it_from_the_customer_summary(shop: dict[str, UUID]) -> None:
    kept = place(shop["ada"], (shop["pen"], 1))
    cancelled = place(shop["ada"], (shop["pad"], 2))

    CommandScenario().when(CancelOrder(order_id=cancelled)).then_events(
        OrderCancelled(order_id=cancelled, customer_id=shop["ada"], total=Decimal("10.00"))
    )

    assert Order.objects.get(pk=cancelled).status == "cancelled"
    view = OrderView.objects.get(pk=cancelled)
    assert (view.status, view.version) == ("cancelled", 2)
    assert OrderView.objects.get(pk=kept).status == "placed"
    summary = caught_up_summary(shop["ada"])
    assert (summary.order_count, summary.lifetime_value) == (1, Decimal("2.50"))


@pytest.mark.django_db(transaction=True)
def test_order_view_is_current_inside_the_transaction_and_the_summary_after_commit(
    shop: dict[str, UUID],
) -> None:
    with transaction.atomic():
        order_id = place(shop["ada"], (shop["pad"], 2))
        assert OrderView.objects.get(pk=order_id).total == Decimal("10.00")  # sync projection
        assert CustomerSummary.objects.get(pk=shop["ada"]).order_count == 0  # async: not yet

    summary = CustomerSummary.objects.get(pk=shop["ada"])
    assert (summary.order_count, summary.lifetime_value) == (1, Decimal("10.00"))


# -- invariants: refused, and nothing written -----------------------------------------

Scenario = Callable[[dict[str, UUID]], Any]


def _placed(shop: dict[str, UUID], then: type[ShipOrder] | type[CancelOrder] | None) -> UUID:
    order_id = place(shop["ada"], (shop["pen"], 1))
    if then is not None:
        command_bus.dispatch(then(order_id=order_id))
    return order_id


INVARIANTS: dict[str, tuple[Scenario, str]] = {
    "no items": (
        lambda shop: PlaceOrder(customer_id=shop["ada"], items=[]),
        "at least one item",
    ),
    "zero quantity": (
        lambda shop: PlaceOrder(
            customer_id=shop["ada"], items=[OrderItem(product_id=shop["pen"], quantity=0)]
        ),
        "quantities must be positive",
    ),
    "negative quantity beside a positive one": (
        lambda shop: PlaceOrder(
            customer_id=shop["ada"],
            items=[
                OrderItem(product_id=shop["pad"], quantity=3),
                OrderItem(product_id=shop["pen"], quantity=-1),
            ],
        ),
        "quantities must be positive",
    ),
    "zero quantity added": (
        lambda shop: AddItem(order_id=_placed(shop, None), product_id=shop["pad"], quantity=0),
        "quantities must be positive",
    ),
    "order over the credit limit": (
        lambda shop: PlaceOrder(
            customer_id=shop["ada"], items=[OrderItem(product_id=shop["pad"], quantity=21)]
        ),
        "exceeds the customer's credit limit",
    ),
    "item pushing the order over the credit limit": (
        lambda shop: AddItem(order_id=_placed(shop, None), product_id=shop["pad"], quantity=20),
        "exceeds the customer's credit limit",
    ),
    "cancel a shipped order": (
        lambda shop: CancelOrder(order_id=_placed(shop, ShipOrder)),
        "a shipped order cannot be cancelled",
    ),
    "ship a cancelled order": (
        lambda shop: ShipOrder(order_id=_placed(shop, CancelOrder)),
        "a cancelled order cannot be shipped",
    ),
}


@pytest.mark.parametrize("case", list(INVARIANTS))
def test_broken_invariant_is_refused_and_writes_nothing(case: str, shop: dict[str, UUID]) -> None:
    build, message = INVARIANTS[case]
    command = build(shop)  # after the orders it needs are placed

    # Refused, and no row added, removed or changed in any table.
    CommandScenario().when(command).then_error(InvariantViolationError, match=message)


def test_an_order_exactly_at_the_credit_limit_is_accepted(shop: dict[str, UUID]) -> None:
    order_id = place(shop["ada"], (shop["pad"], 20))

    assert OrderView.objects.get(pk=order_id).total == Decimal("100.00")


# -- unknown ids ---------------------------------------------------------------------

UNKNOWN = uuid.UUID(int=1)

NOT_FOUND: dict[str, tuple[Scenario, str]] = {
    "place for an unknown customer": (
        lambda shop: PlaceOrder(
            customer_id=UNKNOWN, items=[OrderItem(product_id=shop["pen"], quantity=1)]
        ),
        "customer",
    ),
    "place an unknown product": (
        lambda shop: PlaceOrder(
            customer_id=shop["ada"],
            items=[
                OrderItem(product_id=shop["pen"], quantity=1),
                OrderItem(product_id=UNKNOWN, quantity=1),
            ],
        ),
        "product",
    ),
    "add an unknown product": (
        lambda shop: AddItem(order_id=_placed(shop, None), product_id=UNKNOWN, quantity=1),
        "product",
    ),
    "add to an unknown order": (
        lambda shop: AddItem(order_id=UNKNOWN, product_id=shop["pen"], quantity=1),
        "order",
    ),
    "cancel an unknown order": (lambda shop: CancelOrder(order_id=UNKNOWN), "order"),
    "ship an unknown order": (lambda shop: ShipOrder(order_id=UNKNOWN), "order"),
}


@pytest.mark.parametrize("case", list(NOT_FOUND))
def test_unknown_id_raises_not_found_and_writes_nothing(case: str, shop: dict[str, UUID]) -> None:
    build, kind = NOT_FOUND[case]
    command = build(shop)

    CommandScenario().when(command).then_error(
        AggregateNotFoundError, match=f"{kind} {UNKNOWN} does not exist"
    )


# -- queries -------------------------------------------------------------------------


def test_get_order_of_an_unknown_id_raises_not_found() -> None:
    with pytest.raises(AggregateNotFoundError, match=str(UNKNOWN)):
        query_bus.dispatch(GetOrder(order_id=UNKNOWN))


def test_get_customer_summary_of_an_unknown_id_raises_not_found() -> None:
    with pytest.raises(AggregateNotFoundError, match=str(UNKNOWN)):
        query_bus.dispatch(GetCustomerSummary(customer_id=UNKNOWN))


@pytest.fixture
def orders(shop: dict[str, UUID]) -> dict[str, list[UUID]]:
    """Ada: 3 placed, 1 shipped, 1 cancelled. Bob: 2 placed."""
    bob = register("Bob", "100.00")
    ada = [place(shop["ada"], (shop["pen"], 1)) for _ in range(5)]
    command_bus.dispatch(ShipOrder(order_id=ada[3]))
    command_bus.dispatch(CancelOrder(order_id=ada[4]))
    return {
        "ada": ada,
        "ada_placed": ada[:3],
        "bob": [place(bob, (shop["pad"], 1)) for _ in range(2)],
        "bob_id": [bob],
    }


def ids(page: Any) -> set[UUID]:
    return {view.id for view in page.results}


def test_list_orders_filters_by_status(orders: dict[str, list[UUID]]) -> None:
    placed = query_bus.dispatch(ListOrders(status="placed"))
    shipped = query_bus.dispatch(ListOrders(status="shipped"))

    assert placed.count == 5
    assert ids(placed) == {*orders["ada_placed"], *orders["bob"]}
    assert ids(shipped) == {orders["ada"][3]}
    assert all(view.status == "shipped" for view in shipped.results)


def test_list_orders_filters_by_customer_and_status(
    orders: dict[str, list[UUID]], shop: dict[str, UUID]
) -> None:
    ada = query_bus.dispatch(ListOrders(customer_id=shop["ada"]))
    bob = query_bus.dispatch(ListOrders(customer_id=orders["bob_id"][0]))
    ada_cancelled = query_bus.dispatch(ListOrders(customer_id=shop["ada"], status="cancelled"))

    assert (ada.count, ids(ada)) == (5, set(orders["ada"]))
    assert (bob.count, ids(bob)) == (2, set(orders["bob"]))
    assert ids(ada_cancelled) == {orders["ada"][4]}


def test_list_orders_pages_through_every_order_once(orders: dict[str, list[UUID]]) -> None:
    pages = [query_bus.dispatch(ListOrders(page=n, page_size=3)) for n in (1, 2, 3, 4)]

    assert [len(p.results) for p in pages] == [3, 3, 1, 0]
    assert {p.count for p in pages} == {7}
    assert (pages[1].page, pages[1].page_size) == (2, 3)
    seen = [view.id for p in pages for view in p.results]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == {*orders["ada"], *orders["bob"]}


def test_list_orders_counts_match_the_listed_orders_for_every_filter(
    orders: dict[str, list[UUID]], shop: dict[str, UUID]
) -> None:
    # The page's count comes from OrderCount, not COUNT(*): it must still say how many
    # orders the filters select.
    for status in (None, "placed", "shipped", "cancelled", "unknown"):
        for customer in (None, shop["ada"], orders["bob_id"][0], uuid.uuid4()):
            page = query_bus.dispatch(
                ListOrders(status=status, customer_id=customer, page_size=100)
            )
            assert page.count == len(page.results), (status, customer)
    assert sorted(OrderCount.objects.values_list("status", "orders")) == [
        ("cancelled", 1),
        ("placed", 2),
        ("placed", 3),
        ("shipped", 1),
    ]


def test_list_orders_rejects_page_zero() -> None:
    with pytest.raises(InvariantViolationError, match="start at 1"):
        query_bus.dispatch(ListOrders(page=0))


# -- rebuild -------------------------------------------------------------------------


def read_model_rows() -> dict[str, list[dict[str, Any]]]:
    return {
        "orders": list(OrderView.objects.order_by("id").values()),
        "summaries": list(CustomerSummary.objects.order_by("customer_id").values()),
        "counts": list(OrderCount.objects.order_by("key").values()),
    }


def test_rebuild_reproduces_the_incrementally_built_read_models(
    orders: dict[str, list[UUID]], shop: dict[str, UUID]
) -> None:
    command_bus.dispatch(AddItem(order_id=orders["ada"][0], product_id=shop["pad"], quantity=2))
    register("Nobody yet", "10.00")
    run_async_projections()
    incremental = read_model_rows()
    assert len(incremental["orders"]) == 7
    assert len(incremental["summaries"]) == 3
    # Damage both read models so that only a real rebuild can restore them.
    OrderView.objects.filter(pk=orders["ada"][0]).delete()
    OrderView.objects.update(status="garbage")
    CustomerSummary.objects.update(order_count=99)
    OrderCount.objects.update(orders=0)

    events = StoredEvent.objects.count()
    out = io.StringIO()

    call_command(
        "cqrs_rebuild",
        "orders.OrderViewProjection",
        "orders.CustomerSummaryProjection",
        "orders.OrderCountProjection",
        "--no-progress",
        stdout=out,
    )

    assert read_model_rows() == incremental
    assert StoredEvent.objects.count() == events
    assert "Rebuilt orders.OrderViewProjection" in out.getvalue()
    assert "Rebuilt orders.CustomerSummaryProjection" in out.getvalue()
    assert "Rebuilt orders.OrderCountProjection" in out.getvalue()


def placed_event(order_id: UUID, customer_id: UUID, total: str) -> OrderPlaced:
    line = OrderLineData(product_id=uuid.uuid4(), quantity=1, unit_price=Decimal(total))
    return OrderPlaced(
        order_id=order_id,
        customer_id=customer_id,
        customer_name="Ada",
        lines=[line],
        total=Decimal(total),
        item_count=1,
    )


def test_order_counts_follow_each_order_from_status_to_status() -> None:
    ada, bob = uuid.uuid4(), uuid.uuid4()
    shipped, cancelled, confirmed, placed = (uuid.uuid4() for _ in range(4))

    counts = ProjectionScenario("orders.OrderCountProjection").given(
        *(
            events_of(Order, order_id, placed_event(order_id, ada, "5.00"))
            for order_id in (shipped, cancelled, confirmed)
        ),
        events_of(Order, placed, placed_event(placed, bob, "1.00")),
        events_of(Order, confirmed, OrderConfirmed(order_id=confirmed, customer_id=ada)),
        events_of(Order, shipped, OrderShipped(order_id=shipped, customer_id=ada)),
        events_of(
            Order,
            cancelled,
            OrderCancelled(order_id=cancelled, customer_id=ada, total=Decimal("5.00")),
        ),
    )

    counts.then_rows(  # and the same rows when rebuilt from the log
        OrderCount,
        [
            {"customer_id": ada, "status": "placed", "orders": 0},
            {"customer_id": ada, "status": "confirmed", "orders": 1},
            {"customer_id": ada, "status": "shipped", "orders": 1},
            {"customer_id": ada, "status": "cancelled", "orders": 1},
            {"customer_id": bob, "status": "placed", "orders": 1, "key": ANY},
        ],
    )
