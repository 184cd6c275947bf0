"""Queries of the orders demo; their handlers read read models only."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from django_cqrs import Query

from .models import CustomerSummary, OrderView


@dataclass(frozen=True)
class GetOrder(Query[OrderView]):
    order_id: UUID


@dataclass(frozen=True)
class OrderPage:
    count: int
    page: int
    page_size: int
    results: list[OrderView] = field(default_factory=list)


@dataclass(frozen=True)
class ListOrders(Query[OrderPage]):
    status: str | None = None
    customer_id: UUID | None = None
    page: int = 1
    page_size: int = 20


@dataclass(frozen=True)
class GetCustomerSummary(Query[CustomerSummary]):
    customer_id: UUID
