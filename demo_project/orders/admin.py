"""The orders demo in the admin: read models and aggregates, all read-only."""

from __future__ import annotations

from django.contrib import admin

from django_cqrs.admin import AggregateAdmin, ReadModelAdmin

from .models import Customer, CustomerSummary, Order, OrderCount, OrderLine, OrderView, Product

admin.site.register(CustomerSummary, ReadModelAdmin)
admin.site.register(OrderCount, ReadModelAdmin)


@admin.register(OrderView)
class OrderViewAdmin(ReadModelAdmin):
    aggregate_type = "orders.Order"
    list_filter = ["status", "placed_at"]
    search_fields = ["customer_name", "id", "status"]


class OrderLineInline(admin.TabularInline):
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
    list_display = ["id", "customer", "status", "total", "placed_at", "version"]
    list_filter = ["status", "placed_at"]
    search_fields = ["id", "customer__name"]
    list_select_related = ["customer"]
    inlines = [OrderLineInline]


@admin.register(Customer)
class CustomerAdmin(AggregateAdmin):
    search_fields = ["name"]


@admin.register(Product)
class ProductAdmin(AggregateAdmin):
    search_fields = ["name"]
