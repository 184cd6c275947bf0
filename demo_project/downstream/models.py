"""The downstream service's tables, written only by its inbox handlers (``inbox.py``)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class CustomerOrders(models.Model):
    """Per customer: how many orders were placed, shipped and cancelled, and for how much."""

    customer_id = models.UUIDField(primary_key=True)
    customer_name = models.CharField(max_length=200, blank=True, default="")
    placed = models.PositiveIntegerField(default=0)
    shipped = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    #: The totals of the orders placed, less those cancelled.
    total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-total", "customer_name"]
        verbose_name_plural = "customer orders"

    def __str__(self) -> str:
        return f"{self.customer_name or self.customer_id}: {self.placed} placed, {self.total}"


class OrderFeedEntry(models.Model):
    """One line per event received: the feed of what happened to orders, newest first."""

    event_id = models.CharField(max_length=255, unique=True)
    event_type = models.CharField(max_length=100)
    order_id = models.UUIDField(db_index=True)
    customer_id = models.UUIDField()
    total = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    happened_at = models.DateTimeField(null=True, blank=True)
    #: The event's position in the orders service's log.
    position = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-happened_at", "-id"]
        verbose_name_plural = "order feed"

    def __str__(self) -> str:
        return f"{self.event_type} {self.order_id}"
