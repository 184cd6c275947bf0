"""The orders demo in the admin: read models and aggregates, all read-only.

Each list names the columns a person reads, so that it fits a 1280-px screen with the
navigation sidebar open; long ids are cut to their first 8 characters (the row's page
and the "events" link have them whole).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin

from django_cqrs.admin import AggregateAdmin, ReadModelAdmin, ReadOnlyAdminMixin
from django_cqrs.admin.events import compact_time
from django_cqrs.admin.mixins import AnyModelAdmin

from .models import (
    Checkout,
    Customer,
    CustomerSummary,
    CustomerView,
    Order,
    OrderCount,
    OrderLine,
    OrderView,
    Payment,
    PaymentGateway,
    Product,
    ProductView,
)

if TYPE_CHECKING:  # django-stubs makes the inlines generic; Django's class is not subscriptable
    AnyTabularInline = admin.TabularInline[Any, Any]
else:
    AnyTabularInline = admin.TabularInline


def short_id(value: Any) -> str:
    """``3f2a9c1e`` for ``3f2a9c1e-...``: enough to tell rows apart on one screen."""
    return str(value)[:8]


def placed(row: Order | OrderView) -> str:
    return compact_time(row.placed_at)


placed_column = admin.display(description="placed", ordering="placed_at")(placed)


@admin.register(CustomerSummary)
class CustomerSummaryAdmin(ReadModelAdmin):
    aggregate_type = "orders.Customer"
    aggregate_id_field = "customer_id"
    list_display = ["customer_name", "order_count", "lifetime_value"]
    search_fields = ["customer_name", "=customer_id"]


@admin.register(OrderCount)
class OrderCountAdmin(ReadModelAdmin):
    aggregate_type = "orders.Customer"
    aggregate_id_field = "customer_id"
    list_display = ["customer", "status", "orders"]
    list_filter = ["status"]
    search_fields = ["=customer_id"]

    @admin.display(description="customer", ordering="customer_id")
    def customer(self, row: OrderCount) -> str:
        return short_id(row.customer_id)


@admin.register(CustomerView)
class CustomerViewAdmin(ReadModelAdmin):
    aggregate_type = "orders.Customer"
    list_display = ["name", "credit_limit", "registered"]

    @admin.display(description="registered", ordering="registered_at")
    def registered(self, view: CustomerView) -> str:
        return compact_time(view.registered_at)

    search_fields = ["name", "=id"]


@admin.register(ProductView)
class ProductViewAdmin(ReadModelAdmin):
    aggregate_type = "orders.Product"
    list_display = ["name", "price", "stock", "added"]

    @admin.display(description="added", ordering="added_at")
    def added(self, view: ProductView) -> str:
        return compact_time(view.added_at)

    search_fields = ["name", "=id"]


@admin.register(OrderView)
class OrderViewAdmin(ReadModelAdmin):
    aggregate_type = "orders.Order"
    list_display = ["order", "customer_name", "status", "items", "total", placed_column]
    list_filter = ["status", "placed_at"]
    search_fields = ["customer_name", "id", "status"]

    @admin.display(description="order", ordering="id")
    def order(self, view: OrderView) -> str:
        return short_id(view.id)

    @admin.display(description="items", ordering="item_count")
    def items(self, view: OrderView) -> int:
        return view.item_count


class OrderLineInline(AnyTabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    readonly_fields = ["product", "quantity", "unit_price"]

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(AggregateAdmin):
    list_display = ["order", "customer", "status", "total", placed_column, "version"]
    list_filter = ["status", "placed_at"]
    search_fields = ["id", "customer__name"]
    list_select_related = ["customer"]
    inlines = [OrderLineInline]

    @admin.display(description="order", ordering="id")
    def order(self, order: Order) -> str:
        return short_id(order.id)


@admin.register(Customer)
class CustomerAdmin(AggregateAdmin):
    list_display = ["name", "credit_limit", "version"]
    search_fields = ["name"]


@admin.register(Product)
class ProductAdmin(AggregateAdmin):
    list_display = ["name", "price", "stock", "version"]
    search_fields = ["name"]


@admin.register(Payment)
class PaymentAdmin(AggregateAdmin):
    list_display = ["payment", "order", "status", "amount", "requested", "version"]
    list_filter = ["status"]
    search_fields = ["=id", "=order_id"]

    @admin.display(description="payment", ordering="id")
    def payment(self, payment: Payment) -> str:
        return short_id(payment.id)

    @admin.display(description="order", ordering="order_id")
    def order(self, payment: Payment) -> str:
        return short_id(payment.order_id)

    @admin.display(description="requested", ordering="requested_at")
    def requested(self, payment: Payment) -> str:
        return compact_time(payment.requested_at)


@admin.register(PaymentGateway)
class PaymentGatewayAdmin(AggregateAdmin):
    list_display = ["id", "mode", "version"]


@admin.register(Checkout)
class CheckoutAdmin(ReadOnlyAdminMixin, AnyModelAdmin):
    """The checkout saga's instances: one per order, with the steps it ran."""

    list_display = ["order", "state", "amount_requested", "amount_approved", "started"]
    list_filter = ["state"]
    search_fields = ["=key"]

    @admin.display(description="order", ordering="key")
    def order(self, checkout: Checkout) -> str:
        return short_id(checkout.key)

    @admin.display(description="started", ordering="started_at")
    def started(self, checkout: Checkout) -> str:
        return compact_time(checkout.started_at)
