"""Queries of the orders demo; their handlers read read models only."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, TypeVar
from uuid import UUID

from django_cqrs import Query

from .models import Checkout, CustomerSummary, CustomerView, OrderStatus, OrderView, ProductView

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """Page ``page`` of a list: ``count`` rows match the filters, ``results`` are this page's."""

    count: int
    page: int
    page_size: int
    results: list[T] = field(default_factory=list)


@dataclass(frozen=True)
class GetOrder(Query[OrderView]):
    """One order, with its total, status and version (its ETag)."""

    order_id: UUID = field(metadata={"help_text": "The order."})


@dataclass(frozen=True)
class ListOrders(Query[Page[OrderView]]):
    """Orders, newest first, optionally of one customer or in one status."""

    status: OrderStatus | None = field(default=None, metadata={"help_text": "Only this status."})
    customer_id: UUID | None = field(
        default=None, metadata={"help_text": "Only this customer's orders."}
    )
    page: int = field(default=1, metadata={"help_text": "Page number, from 1."})
    page_size: int = field(default=20, metadata={"help_text": "Rows a page, 1 to 100."})


@dataclass(frozen=True)
class GetCustomerSummary(Query[CustomerSummary]):
    """A customer's order count and lifetime value (refreshed asynchronously)."""

    customer_id: UUID = field(metadata={"help_text": "The customer."})


@dataclass(frozen=True)
class GetCustomer(Query[CustomerView]):
    """One customer, with their credit limit."""

    customer_id: UUID


@dataclass(frozen=True)
class ListCustomers(Query[Page[CustomerView]]):
    """Customers by name; ``name`` keeps those whose name contains it (any case)."""

    name: str | None = None
    page: int = 1
    page_size: int = 20


@dataclass(frozen=True)
class GetCheckout(Query[Checkout]):
    """The checkout of an order: its state and the steps it ran, in order.

    Placing an order starts it: stock reserved, payment requested, order confirmed; a
    refused step, a declined payment or no answer in time compensates what ran.
    """

    order_id: UUID = field(metadata={"help_text": "The order."})


@dataclass(frozen=True)
class GetProduct(Query[ProductView]):
    """One product of the catalogue, with its price and the units available."""

    product_id: UUID


@dataclass(frozen=True)
class ListProducts(Query[Page[ProductView]]):
    """Products by name; ``name`` keeps those whose name contains it (any case), and
    ``max_price`` those that cost no more."""

    name: str | None = None
    max_price: Decimal | None = None
    page: int = 1
    page_size: int = 20
