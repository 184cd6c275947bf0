"""Commands of the orders demo."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from django_cqrs import Command


@dataclass(frozen=True)
class RegisterCustomer(Command[UUID]):
    name: str
    credit_limit: Decimal


@dataclass(frozen=True)
class AddProduct(Command[UUID]):
    name: str
    price: Decimal


@dataclass(frozen=True)
class OrderItem:
    product_id: UUID
    quantity: int


@dataclass(frozen=True)
class PlaceOrder(Command[UUID]):
    customer_id: UUID
    items: list[OrderItem]


@dataclass(frozen=True)
class AddItem(Command[None]):
    order_id: UUID
    product_id: UUID
    quantity: int


@dataclass(frozen=True)
class CancelOrder(Command[None]):
    order_id: UUID


@dataclass(frozen=True)
class ShipOrder(Command[None]):
    order_id: UUID
