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
class OrderCancelled(Event, name="orders.OrderCancelled"):
    order_id: UUID
    customer_id: UUID
    total: Decimal


@dataclass(frozen=True)
class OrderShipped(Event, name="orders.OrderShipped"):
    order_id: UUID
    customer_id: UUID
