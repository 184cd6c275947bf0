"""Projections of the orders demo (autodiscovered by django_cqrs)."""

from __future__ import annotations

import uuid

from django_cqrs.events import EventEnvelope
from django_cqrs.projections import Projection, handles

from .events import (
    CustomerRegistered,
    ItemAdded,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    ProductAdded,
    StockReleased,
    StockReserved,
)
from .models import CustomerSummary, CustomerView, OrderCount, OrderView, ProductView


class CustomerViewProjection(Projection):
    """``CustomerView``: one row per customer, updated in the command's transaction."""

    read_models = [CustomerView]
    mode = "sync"

    @handles(CustomerRegistered)
    def registered(self, event: CustomerRegistered, envelope: EventEnvelope) -> None:
        self.put(
            CustomerView(
                id=event.customer_id,
                name=event.name,
                credit_limit=event.credit_limit,
                version=envelope.aggregate_version,
                registered_at=envelope.recorded_at,
            )
        )


class ProductViewProjection(Projection):
    """``ProductView``: one row per product, updated in the command's transaction."""

    read_models = [ProductView]
    mode = "sync"

    @handles(ProductAdded)
    def added(self, event: ProductAdded, envelope: EventEnvelope) -> None:
        self.put(
            ProductView(
                id=event.product_id,
                name=event.name,
                price=event.price,
                stock=event.stock,
                version=envelope.aggregate_version,
                added_at=envelope.recorded_at,
            )
        )

    @handles(StockReserved, StockReleased)
    def stock_changed(self, event: StockReserved | StockReleased, envelope: EventEnvelope) -> None:
        view = self.get(ProductView, event.product_id)
        if view is None:
            raise LookupError(f"ProductView {event.product_id} missing at {envelope.position}")
        view.stock = event.stock
        view.version = envelope.aggregate_version
        self.put(view)


class OrderViewProjection(Projection):
    """``OrderView``: one row per order, ready to serve, updated in the command's transaction."""

    read_models = [OrderView]
    mode = "sync"

    @handles(OrderPlaced)
    def placed(self, event: OrderPlaced, envelope: EventEnvelope) -> None:
        self.put(
            OrderView(
                id=event.order_id,
                customer_id=event.customer_id,
                customer_name=event.customer_name,
                item_count=event.item_count,
                total=event.total,
                status="placed",
                version=envelope.aggregate_version,
                placed_at=envelope.recorded_at,
            )
        )

    @handles(ItemAdded)
    def item_added(self, event: ItemAdded, envelope: EventEnvelope) -> None:
        self._update(event.order_id, envelope, item_count=event.item_count, total=event.total)

    @handles(OrderConfirmed)
    def confirmed(self, event: OrderConfirmed, envelope: EventEnvelope) -> None:
        self._update(event.order_id, envelope, status="confirmed")

    @handles(OrderCancelled)
    def cancelled(self, event: OrderCancelled, envelope: EventEnvelope) -> None:
        self._update(event.order_id, envelope, status="cancelled")

    @handles(OrderShipped)
    def shipped(self, event: OrderShipped, envelope: EventEnvelope) -> None:
        self._update(event.order_id, envelope, status="shipped")

    def _update(self, order_id: object, envelope: EventEnvelope, **changes: object) -> None:
        view = self.get(OrderView, order_id)
        if view is None:
            raise LookupError(f"OrderView {order_id} missing at position {envelope.position}")
        for name, value in changes.items():
            setattr(view, name, value)
        view.version = envelope.aggregate_version
        self.put(view)


class OrderCountProjection(Projection):
    """``OrderCount``: orders per customer and status, updated in the command's transaction."""

    read_models = [OrderCount]
    mode = "sync"

    @handles(OrderPlaced)
    def placed(self, event: OrderPlaced, envelope: EventEnvelope) -> None:
        self._add(event.customer_id, "placed", 1)

    @handles(OrderConfirmed)
    def confirmed(self, event: OrderConfirmed, envelope: EventEnvelope) -> None:
        self._add(event.customer_id, "placed", -1)  # only placed orders are confirmed
        self._add(event.customer_id, "confirmed", 1)

    @handles(OrderCancelled)
    def cancelled(self, event: OrderCancelled, envelope: EventEnvelope) -> None:
        self._add(event.customer_id, event.previous_status, -1)  # placed or confirmed
        self._add(event.customer_id, "cancelled", 1)

    @handles(OrderShipped)
    def shipped(self, event: OrderShipped, envelope: EventEnvelope) -> None:
        self._add(event.customer_id, event.previous_status, -1)  # placed or confirmed
        self._add(event.customer_id, "shipped", 1)

    def _add(self, customer_id: uuid.UUID, status: str, change: int) -> None:
        key = OrderCount.key_of(customer_id, status)
        # One upsert that adds in the database (a new row starts at 0).
        self.add(OrderCount(key=key, customer_id=customer_id, status=status), orders=change)


class CustomerSummaryProjection(Projection):
    """``CustomerSummary``: order count and lifetime value per customer (asynchronous)."""

    read_models = [CustomerSummary]
    key_fields = {CustomerSummary: "customer_id"}  # every event it handles carries it
    mode = "async"  # refreshed by django-q2 tasks, after the command commits

    @handles(CustomerRegistered)
    def registered(self, event: CustomerRegistered, envelope: EventEnvelope) -> None:
        self.put(CustomerSummary(customer_id=event.customer_id, customer_name=event.name))

    @handles(OrderPlaced)
    def placed(self, event: OrderPlaced, envelope: EventEnvelope) -> None:
        summary = self._summary(event.customer_id)
        summary.order_count += 1
        summary.lifetime_value += event.total
        self.put(summary)

    @handles(ItemAdded)
    def item_added(self, event: ItemAdded, envelope: EventEnvelope) -> None:
        summary = self._summary(event.customer_id)
        summary.lifetime_value += event.line.unit_price * event.line.quantity
        self.put(summary)

    @handles(OrderCancelled)
    def cancelled(self, event: OrderCancelled, envelope: EventEnvelope) -> None:
        summary = self._summary(event.customer_id)
        summary.order_count -= 1
        summary.lifetime_value -= event.total
        self.put(summary)

    def _summary(self, customer_id: object) -> CustomerSummary:
        summary = self.get(CustomerSummary, customer_id)
        if summary is None:
            raise LookupError(f"CustomerSummary {customer_id} missing")
        return summary
