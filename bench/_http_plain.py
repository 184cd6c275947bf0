"""Bench-only plain DRF views over the demo's write tables: what a user would otherwise write.

    POST /plain/orders/                 {customer_id, items: [{product_id, quantity}]} -> 201
    GET  /plain/orders/{id}/            order + customer name + line aggregates
    GET  /plain/orders/?page=           the same, paginated (joins and aggregation)
    GET  /plain/customers/{id}/revenue/ order count and revenue by aggregation

A ``ModelViewSet`` with nested ``ModelSerializer``s: no command bus, no aggregate, no event
log, no read model. Orders and lines are created in one transaction; ``Order`` is a
django_cqrs aggregate whose ``save()`` appends events, so the plain create writes its rows
with ``bulk_create`` (plain INSERTs) instead. Reads compute what ``OrderView`` stores
(customer name, item count, formatted total) with a join and ``Sum`` over the lines.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, DecimalField, F, Q, Sum
from django.utils import timezone
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from demo_project.orders.models import CURRENCY, Customer, Order, OrderLine, Product

MONEY = DecimalField(max_digits=14, decimal_places=2)
#: How the API sends an amount: a decimal string ("1203.47").
AMOUNT = serializers.DecimalField(max_digits=14, decimal_places=2)


class PlainLineSerializer(serializers.ModelSerializer[OrderLine]):
    product_id = serializers.PrimaryKeyRelatedField(
        queryset=Product.objects.all(), source="product"
    )
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)

    class Meta:
        model = OrderLine
        fields = ["product_id", "quantity"]


class PlainOrderSerializer(serializers.ModelSerializer[Order]):
    customer_id = serializers.PrimaryKeyRelatedField(
        queryset=Customer.objects.all(), source="customer"
    )
    items = PlainLineSerializer(many=True, write_only=True)
    customer_name = serializers.CharField(source="customer.name", read_only=True)
    item_count = serializers.IntegerField(source="units", read_only=True)
    total = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = [
            "id",
            "customer_id",
            "items",
            "customer_name",
            "item_count",
            "total",
            "currency",
            "status",
            "placed_at",
            "version",
        ]
        read_only_fields = ["id", "status", "placed_at", "version"]

    def get_total(self, order: Order) -> str:
        return str(AMOUNT.to_representation(getattr(order, "line_total", None) or order.total))

    def get_currency(self, order: Order) -> str:
        return CURRENCY

    def validate_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not items:
            raise serializers.ValidationError("an order has at least one item")
        return items

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        total = sum((i["product"].price * i["quantity"] for i in attrs["items"]), Decimal("0"))
        if total > attrs["customer"].credit_limit:
            raise serializers.ValidationError({"items": "the order exceeds the credit limit"})
        attrs["total"] = total
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Order:
        items = validated_data.pop("items")
        order = Order(
            id=uuid.uuid4(),
            customer=validated_data["customer"],
            status="placed",
            total=validated_data["total"],
            version=1,
            placed_at=timezone.now(),
        )
        with transaction.atomic():
            Order.objects.bulk_create([order])
            OrderLine.objects.bulk_create(
                [
                    OrderLine(
                        order=order,
                        product=i["product"],
                        quantity=i["quantity"],
                        unit_price=i["product"].price,
                    )
                    for i in items
                ]
            )
        return order

    def to_representation(self, instance: Order) -> dict[str, Any]:
        if self.context.get("view") is not None and self.context["view"].action == "create":
            return {"id": str(instance.id)}
        return super().to_representation(instance)


class PlainPagination(PageNumberPagination):
    page_size = 20


class PlainOrderViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet[Order],
):
    serializer_class = PlainOrderSerializer
    pagination_class = PlainPagination
    queryset = (
        Order.objects.select_related("customer")
        .annotate(
            units=Sum("lines__quantity"),  # Order.item_count is a property
            line_total=Sum(F("lines__quantity") * F("lines__unit_price"), output_field=MONEY),
        )
        .order_by("-placed_at", "id")
    )


class PlainCustomerViewSet(viewsets.GenericViewSet[Customer]):
    queryset = Customer.objects.all()

    @action(detail=True)
    def revenue(self, request: Request, pk: Any = None) -> Response:
        customer = self.get_object()
        placed = ~Q(orders__status="cancelled")
        totals = Customer.objects.filter(pk=customer.pk).aggregate(
            order_count=Count("orders", filter=placed, distinct=True),
            lifetime_value=Sum(
                F("orders__lines__quantity") * F("orders__lines__unit_price"),
                filter=placed,
                output_field=MONEY,
            ),
        )
        return Response(
            {
                "customer_id": str(customer.pk),
                "customer_name": customer.name,
                "order_count": totals["order_count"],
                "lifetime_value": str(totals["lifetime_value"] or Decimal("0.00")),
            }
        )


router = SimpleRouter()
router.register("orders", PlainOrderViewSet, basename="plain-order")
router.register("customers", PlainCustomerViewSet, basename="plain-customer")
