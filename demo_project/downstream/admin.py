from __future__ import annotations

from django.contrib import admin

from django_cqrs.admin import ReadOnlyAdminMixin
from django_cqrs.admin.mixins import AnyModelAdmin

from .models import CustomerOrders, OrderFeedEntry


@admin.register(CustomerOrders)
class CustomerOrdersAdmin(ReadOnlyAdminMixin, AnyModelAdmin):
    list_display = ("customer_name", "placed", "shipped", "cancelled", "total", "updated_at")
    search_fields = ("customer_name",)


@admin.register(OrderFeedEntry)
class OrderFeedEntryAdmin(ReadOnlyAdminMixin, AnyModelAdmin):
    list_display = ("happened_at", "event_type", "order_id", "total", "position")
    list_filter = ("event_type",)
