"""The demo's HTTP API: customers, products and orders over commands and queries.

    POST /api/customers/                 {name, credit_limit}             -> 201 {customer_id}
    GET  /api/customers/{id}/summary/                                     -> CustomerSummary
    POST /api/products/                  {name, price}                    -> 201 {product_id}
    POST /api/orders/                    {customer_id, items: [{product_id, quantity}]}
                                                                          -> 201 {order_id}
    GET  /api/orders/?status=&customer_id=&page=                          -> page of OrderView
    GET  /api/orders/{id}/                                                -> OrderView + ETag
    POST /api/orders/{id}/items/         {product_id, quantity}           -> 204
    POST /api/orders/{id}/cancel/                                         -> 204
    POST /api/orders/{id}/ship/          (staff only)                     -> 204

Field rules that belong to the request (quantity at least 1, money with two decimals)
are serializer options, so a client gets a 400 naming the field; the aggregates still
guard the same invariants (422) for every other caller.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers
from rest_framework.permissions import IsAdminUser

from django_cqrs.rest_framework.routers import CQRSRouter
from django_cqrs.rest_framework.viewsets import (
    CQRSViewSet,
    command_action,
    command_route,
    query_action,
    query_route,
)

from .commands import AddItem, AddProduct, CancelOrder, PlaceOrder, RegisterCustomer, ShipOrder
from .models import Customer, CustomerSummary, Order, OrderCount, OrderView, Product
from .queries import GetCustomerSummary, GetOrder, ListOrders

NAME: dict[str, Any] = {"max_length": 200}
MONEY: dict[str, Any] = {"max_digits": 12, "decimal_places": 2, "min_value": Decimal("0")}
QUANTITY: dict[str, Any] = {"min_value": 1, "max_value": 10_000}


class OrderViewSerializer(serializers.ModelSerializer[OrderView]):
    class Meta:
        model = OrderView
        fields = ["id", "customer_name", "item_count", "total", "status", "version"]


class CustomerSummarySerializer(serializers.ModelSerializer[CustomerSummary]):
    class Meta:
        model = CustomerSummary
        fields = ["customer_id", "customer_name", "order_count", "lifetime_value"]


class CustomerViewSet(CQRSViewSet):
    """Register customers; read their order summary."""

    aggregate = Customer
    id_field = "customer_id"
    read_models = [CustomerSummary]

    create = command_route(
        RegisterCustomer, result_field="customer_id", fields={"name": NAME, "credit_limit": MONEY}
    )
    summary = query_action(GetCustomerSummary, serializer_class=CustomerSummarySerializer)


class ProductViewSet(CQRSViewSet):
    """Add products to the catalogue."""

    aggregate = Product
    create = command_route(
        AddProduct, result_field="product_id", fields={"name": NAME, "price": MONEY}
    )


class OrderViewSet(CQRSViewSet):
    """Place, change, cancel and ship orders; list and read them."""

    aggregate = Order
    id_field = "order_id"
    read_models = [OrderView]

    create = command_route(PlaceOrder, result_field="order_id", fields={"items.quantity": QUANTITY})
    list = query_route(
        ListOrders,
        serializer_class=OrderViewSerializer,
        read_models=[OrderView, OrderCount],  # the page's count comes from OrderCount
        fields={
            "page": {"min_value": 1, "max_value": 1_000_000},
            "page_size": {"min_value": 1, "max_value": 100},
        },
    )
    retrieve = query_route(GetOrder, serializer_class=OrderViewSerializer)
    items = command_action(AddItem, fields={"quantity": QUANTITY})
    cancel = command_action(CancelOrder)
    ship = command_action(ShipOrder, permission_classes=[IsAdminUser])


router = CQRSRouter()
router.register("customers", CustomerViewSet, basename="customer")
router.register("products", ProductViewSet, basename="product")
router.register("orders", OrderViewSet, basename="order")
# Opt-in generic endpoints: only these messages are served under commands/ and queries/.
router.expose_command(RegisterCustomer, fields={"name": NAME, "credit_limit": MONEY})
router.expose_command(AddProduct, fields={"name": NAME, "price": MONEY})
router.expose_command(PlaceOrder, fields={"items.quantity": QUANTITY})
router.expose_query(GetOrder)
router.expose_query(GetCustomerSummary)
