"""Domain events of the orders demo. Events carry the facts the read side needs."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from django_cqrs import Event


@dataclass(frozen=True)
class CustomerRegistered(Event, name="orders.CustomerRegistered"):
    customer_id: UUID
    name: str
    credit_limit: Decimal


@dataclass(frozen=True)
class ProductAdded(Event, name="orders.ProductAdded"):
    product_id: UUID
    name: str
    price: Decimal
    #: Units in stock (events recorded before products had stock say nothing: 100).
    stock: int = 100


@dataclass(frozen=True)
class StockReserved(Event, name="orders.StockReserved"):
    """Units of a product set aside for an order by its checkout; ``stock`` is what is left."""

    product_id: UUID
    order_id: UUID
    quantity: int
    stock: int


@dataclass(frozen=True)
class StockReleased(Event, name="orders.StockReleased"):
    """Units reserved for an order given back (its checkout failed or it was cancelled)."""

    product_id: UUID
    order_id: UUID
    quantity: int
    stock: int


@dataclass(frozen=True)
class OrderLineData:
    product_id: UUID
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class OrderPlaced(Event, name="orders.OrderPlaced"):
    order_id: UUID
    customer_id: UUID
    customer_name: str
    lines: list[OrderLineData]
    total: Decimal
    item_count: int


@dataclass(frozen=True)
class ItemAdded(Event, name="orders.ItemAdded"):
    order_id: UUID
    customer_id: UUID
    line: OrderLineData
    total: Decimal
    item_count: int


@dataclass(frozen=True)
class OrderConfirmed(Event, name="orders.OrderConfirmed"):
    """The order's checkout reserved its stock and took its payment."""

    order_id: UUID
    customer_id: UUID


@dataclass(frozen=True)
class OrderCancelled(Event, name="orders.OrderCancelled"):
    order_id: UUID
    customer_id: UUID
    total: Decimal
    #: The status it left (events recorded before orders could be confirmed: placed).
    previous_status: str = "placed"


@dataclass(frozen=True)
class OrderShipped(Event, name="orders.OrderShipped"):
    order_id: UUID
    customer_id: UUID
    #: The status it left (events recorded before orders could be confirmed: placed).
    previous_status: str = "placed"


# -- payments (the demo's fake payment gateway) ----------------------------------------
#
# A payment's state is its row (``Payment``): no read model lists payments, and only the
# gateway's answers move a checkout on. The request, the refund and the withdrawal are
# kept in the log as the payment's history (the admin shows its event stream), so they
# set ``history_only`` and ``cqrs_inspect --check`` expects no reader for them.


@dataclass(frozen=True)
class PaymentRequested(Event, name="orders.PaymentRequested"):
    history_only = True

    payment_id: UUID
    order_id: UUID
    amount: Decimal


@dataclass(frozen=True)
class PaymentApproved(Event, name="orders.PaymentApproved"):
    payment_id: UUID
    order_id: UUID
    amount: Decimal


@dataclass(frozen=True)
class PaymentDeclined(Event, name="orders.PaymentDeclined"):
    payment_id: UUID
    order_id: UUID
    amount: Decimal
    reason: str


@dataclass(frozen=True)
class PaymentRefunded(Event, name="orders.PaymentRefunded"):
    """An approved payment given back through the gateway."""

    history_only = True

    payment_id: UUID
    order_id: UUID
    amount: Decimal


@dataclass(frozen=True)
class PaymentVoided(Event, name="orders.PaymentVoided"):
    """A payment request withdrawn before the gateway answered: nothing was captured."""

    history_only = True

    payment_id: UUID
    order_id: UUID
    amount: Decimal


@dataclass(frozen=True)
class GatewayModeSet(Event, name="orders.GatewayModeSet"):
    """How the fake payment gateway answers new payment requests from now on.

    The mode is the ``PaymentGateway`` row; the event is the record of who changed it
    and when (history only).
    """

    history_only = True

    mode: str
    previous_mode: str
