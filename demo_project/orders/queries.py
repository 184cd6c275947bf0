"""Queries of the orders demo; their handlers read read models only."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, TypeVar
from uuid import UUID

from django_cqrs import Query

from .models import CustomerSummary, CustomerView, OrderStatus, OrderView, ProductView

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
    order_id: UUID


@dataclass(frozen=True)
class ListOrders(Query[Page[OrderView]]):
    """Orders, newest first, optionally of one customer or in one status."""

    status: OrderStatus | None = None
    customer_id: UUID | None = None
    page: int = 1
    page_size: int = 20


@dataclass(frozen=True)
class GetCustomerSummary(Query[CustomerSummary]):
    customer_id: UUID


@dataclass(frozen=True)
class GetCustomer(Query[CustomerView]):
    customer_id: UUID


@dataclass(frozen=True)
class ListCustomers(Query[Page[CustomerView]]):
    """Customers by name; ``name`` keeps those whose name contains it (any case)."""

    name: str | None = None
    page: int = 1
    page_size: int = 20


@dataclass(frozen=True)
class GetProduct(Query[ProductView]):
    product_id: UUID


@dataclass(frozen=True)
class ListProducts(Query[Page[ProductView]]):
    """Products by name; ``name`` keeps those whose name contains it (any case), and
    ``max_price`` those that cost no more."""

    name: str | None = None
    max_price: Decimal | None = None
    page: int = 1
    page_size: int = 20
