"""The customer summary projection written with the eventsourcing library (bench only).

Domain events mirror the demo's (same fields the summary needs), an ``Application``
(``Shop``) owns the log in eventsourcing's own recorder, and a ``Projection`` writes
``es_customer_summary`` rows through a ``TrackingRecorder`` view: each event's row change
and its tracking record commit in one transaction, as the library's documentation shows.
``ProjectionRunner`` drives it from the application's subscription.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL


@dataclass(frozen=True)
class CustomerRegistered(DomainEvent):
    name: str
    credit_limit: Decimal


@dataclass(frozen=True)
class OrderPlaced(DomainEvent):
    customer_id: UUID
    customer_name: str
    total: Decimal
    item_count: int


@dataclass(frozen=True)
class ItemAdded(DomainEvent):
    customer_id: UUID
    amount: Decimal
    total: Decimal


@dataclass(frozen=True)
class OrderCancelled(DomainEvent):
    customer_id: UUID
    total: Decimal


@dataclass(frozen=True)
class OrderShipped(DomainEvent):
    customer_id: UUID


class Shop(Application[UUID]):
    name = "Shop"


def to_domain_event(
    event_type: str, agg_id: str, version: int, payload: dict[str, Any], at: dt.datetime
) -> DomainEvent:
    """The eventsourcing event for one generated demo event (bench/rebuild.py's generator)."""
    base = {"originator_id": UUID(agg_id), "originator_version": version, "timestamp": at}
    if event_type == "orders.CustomerRegistered":
        return CustomerRegistered(
            **base, name=payload["name"], credit_limit=Decimal(payload["credit_limit"])
        )
    if event_type == "orders.OrderPlaced":
        return OrderPlaced(
            **base,
            customer_id=UUID(payload["customer_id"]),
            customer_name=payload["customer_name"],
            total=Decimal(payload["total"]),
            item_count=payload["item_count"],
        )
    if event_type == "orders.ItemAdded":
        line = payload["line"]
        return ItemAdded(
            **base,
            customer_id=UUID(payload["customer_id"]),
            amount=Decimal(line["unit_price"]) * line["quantity"],
            total=Decimal(payload["total"]),
        )
    if event_type == "orders.OrderCancelled":
        return OrderCancelled(
            **base, customer_id=UUID(payload["customer_id"]), total=Decimal(payload["total"])
        )
    return OrderShipped(**base, customer_id=UUID(payload["customer_id"]))


class SummaryView(TrackingRecorder):
    def register(self, tracking: Tracking, customer_id: UUID, name: str) -> None:
        raise NotImplementedError

    def add(self, tracking: Tracking, customer_id: UUID, count: int, value: Decimal) -> None:
        raise NotImplementedError

    def rows(self) -> list[tuple[str, str, int, Decimal]]:
        raise NotImplementedError


class PostgresSummaryView(PostgresTrackingRecorder, SummaryView):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS es_customer_summary (customer_id uuid PRIMARY KEY, "
                "customer_name text, order_count integer, lifetime_value numeric(16, 2))"
            )
        )

    def register(self, tracking: Tracking, customer_id: UUID, name: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO es_customer_summary VALUES (%s, %s, 0, 0)", (customer_id, name)
            )
            self._insert_tracking(curs, tracking)

    def add(self, tracking: Tracking, customer_id: UUID, count: int, value: Decimal) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE es_customer_summary SET order_count = order_count + %s, "
                "lifetime_value = lifetime_value + %s WHERE customer_id = %s",
                (count, value, customer_id),
            )
            self._insert_tracking(curs, tracking)

    def rows(self) -> list[tuple[str, str, int, Decimal]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT * FROM es_customer_summary ORDER BY customer_id")
            return [
                (str(r["customer_id"]), r["customer_name"], r["order_count"], r["lifetime_value"])
                for r in curs.fetchall()
            ]


class SQLiteSummaryView(SQLiteTrackingRecorder, SummaryView):
    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS es_customer_summary (customer_id TEXT PRIMARY KEY, "
            "customer_name TEXT, order_count INTEGER, lifetime_value TEXT)",
        ]

    def register(self, tracking: Tracking, customer_id: UUID, name: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "INSERT INTO es_customer_summary VALUES (?, ?, 0, '0')", (str(customer_id), name)
            )
            self._insert_tracking(c, tracking)

    def add(self, tracking: Tracking, customer_id: UUID, count: int, value: Decimal) -> None:
        # SQLite has no decimal type: read, add in Python, write (same transaction).
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "SELECT order_count, lifetime_value FROM es_customer_summary WHERE customer_id = ?",
                (str(customer_id),),
            )
            row = c.fetchone()
            c.execute(
                "UPDATE es_customer_summary SET order_count = ?, lifetime_value = ? "
                "WHERE customer_id = ?",
                (row[0] + count, str(Decimal(row[1]) + value), str(customer_id)),
            )
            self._insert_tracking(c, tracking)

    def rows(self) -> list[tuple[str, str, int, Decimal]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM es_customer_summary ORDER BY customer_id")
            return [(r[0], r[1], r[2], Decimal(r[3])) for r in c.fetchall()]


class CustomerSummaryProjection(Projection[SummaryView]):
    name = "summary"
    topics = tuple(
        get_topic(cls) for cls in (CustomerRegistered, OrderPlaced, ItemAdded, OrderCancelled)
    )

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, event: CustomerRegistered, tracking: Tracking) -> None:
        self.view.register(tracking, event.originator_id, event.name)

    @process_event.register
    def _(self, event: OrderPlaced, tracking: Tracking) -> None:
        self.view.add(tracking, event.customer_id, 1, event.total)

    @process_event.register
    def _(self, event: ItemAdded, tracking: Tracking) -> None:
        self.view.add(tracking, event.customer_id, 0, event.amount)

    @process_event.register
    def _(self, event: OrderCancelled, tracking: Tracking) -> None:
        self.view.add(tracking, event.customer_id, -1, -event.total)
