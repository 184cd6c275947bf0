"""Inbox handlers: the orders service's events, applied to this service's read model.

Each runs in the transaction that records the message in the inbox, so a message
delivered twice changes the counters once.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from django.db.models import F

from django_cqrs.inbox import IncomingEvent, inbox_handler

from .models import CustomerOrders, OrderFeedEntry


def _customer(event: IncomingEvent) -> CustomerOrders:
    data = event.data
    customer, _ = CustomerOrders.objects.get_or_create(customer_id=UUID(data["customer_id"]))
    return customer


def _feed(event: IncomingEvent, total: Decimal | None = None) -> None:
    OrderFeedEntry.objects.create(
        event_id=event.id,
        event_type=event.type.rpartition(".")[2],
        order_id=UUID(event.data["order_id"]),
        customer_id=UUID(event.data["customer_id"]),
        total=total,
        happened_at=event.time,
        position=event.position,
    )


@inbox_handler("orders.OrderPlaced")
def order_placed(event: IncomingEvent) -> None:
    total = Decimal(str(event.data["total"]))
    customer = _customer(event)
    CustomerOrders.objects.filter(pk=customer.pk).update(
        customer_name=event.data.get("customer_name", customer.customer_name),
        placed=F("placed") + 1,
        total=F("total") + total,
        updated_at=event.time,
    )
    _feed(event, total)


@inbox_handler("orders.OrderShipped")
def order_shipped(event: IncomingEvent) -> None:
    customer = _customer(event)
    CustomerOrders.objects.filter(pk=customer.pk).update(
        shipped=F("shipped") + 1, updated_at=event.time
    )
    _feed(event)


@inbox_handler("orders.OrderCancelled")
def order_cancelled(event: IncomingEvent) -> None:
    total = Decimal(str(event.data["total"]))
    customer = _customer(event)
    CustomerOrders.objects.filter(pk=customer.pk).update(
        cancelled=F("cancelled") + 1, total=F("total") - total, updated_at=event.time
    )
    _feed(event, total)
