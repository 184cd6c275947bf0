"""The demo's HTTP API: customers, products and orders over commands and queries.

    GET  /api/                                                            -> the routes
    POST /api/customers/                 {name, credit_limit}             -> 201 {customer_id}
    GET  /api/customers/?name=&page=&page_size=                           -> page of CustomerView
    GET  /api/customers/{id}/                                             -> CustomerView + ETag
    GET  /api/customers/{id}/summary/                                     -> CustomerSummary
    POST /api/products/                  {name, price, stock?}            -> 201 {product_id}
    GET  /api/products/?name=&max_price=&page=&page_size=                 -> page of ProductView
    GET  /api/products/{id}/                                              -> ProductView + ETag
    POST /api/orders/                    {customer_id, items: [{product_id, quantity}]}
                                                                          -> 201 {order_id}
    GET  /api/orders/?status=&customer_id=&page=                          -> page of OrderView
    GET  /api/orders/{id}/                                                -> OrderView + ETag
    POST /api/orders/{id}/items/         {product_id, quantity}           -> 204
    POST /api/orders/{id}/cancel/                                         -> 204
    POST /api/orders/{id}/ship/          (staff only)                     -> 204
    GET  /api/checkouts/{order_id}/                               -> {order_id, state, steps}
    POST /api/payment-gateway/           {mode}  (staff only)             -> 204
    POST /api/auth/token/                {username, password}             -> 200 {token}

Amounts are decimal strings ("1203.47") with a ``currency`` beside them, times ISO 8601:
data for the client to format. An order (or customer, product, summary) has one
representation, the same from its route, from a page and from ``/api/queries/``.

Field rules that belong to the request (quantity at least 1, money with two decimals)
are serializer options, so a client gets a 400 naming the field; the aggregates still
guard the same invariants (422) for every other caller. A filter value that cannot
match (``?status=bogus``) is a 400 too, and a page past the last one a 404.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request

from django_cqrs.rest_framework.exceptions import PROBLEM_CONTENT_TYPE, NotFound
from django_cqrs.rest_framework.parsers import JSONParser
from django_cqrs.rest_framework.routers import CQRSRouter
from django_cqrs.rest_framework.schema import ProblemSerializer
from django_cqrs.rest_framework.viewsets import (
    CQRSViewSet,
    check_body_size,
    command_action,
    command_route,
    query_action,
    query_route,
)

from .commands import (
    AddItem,
    AddProduct,
    CancelOrder,
    PlaceOrder,
    RegisterCustomer,
    SetGatewayMode,
    ShipOrder,
)
from .models import (
    CURRENCY,
    Checkout,
    Customer,
    CustomerSummary,
    CustomerView,
    Order,
    OrderCount,
    OrderView,
    Product,
    ProductView,
)
from .queries import (
    GetCheckout,
    GetCustomer,
    GetCustomerSummary,
    GetOrder,
    GetProduct,
    ListCustomers,
    ListOrders,
    ListProducts,
    Page,
)
from .sagas import CheckoutSaga

NAME: dict[str, Any] = {"max_length": 200}
MONEY: dict[str, Any] = {"max_digits": 12, "decimal_places": 2, "min_value": Decimal("0")}
QUANTITY: dict[str, Any] = {"min_value": 1, "max_value": 10_000}
STOCK: dict[str, Any] = {"min_value": 0, "max_value": 1_000_000}
PRODUCT_FIELDS: dict[str, Any] = {"name": NAME, "price": MONEY, "stock": STOCK}
PAGING: dict[str, Any] = {
    "page": {"min_value": 1, "max_value": 1_000_000},
    "page_size": {"min_value": 1, "max_value": 100},
}


def page_in_range(view: Any, request: Request, page: Page[Any]) -> dict[str, Any]:
    """DRF's page, ``{count, next, previous, results}``; a page past the last one is a 404.

    Page 1 of nothing is an empty page; page 2 of ten rows by ten is not there, as with
    DRF's own ``PageNumberPagination``.
    """
    if page.page > 1 and (page.page - 1) * page.page_size >= page.count:
        pages = max(1, -(-page.count // page.page_size))
        raise NotFound(
            f"Page {page.page} is past the end: {page.count} results make {pages} "
            f"page(s) of {page.page_size}."
        )
    data: dict[str, Any] = view.page_data(request, view.route(), page)
    return data


class Currency(serializers.ChoiceField):
    """The ISO 4217 code of the resource's amounts (the demo's shop has one)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "ISO 4217 code of the currency of this resource's amounts.")
        super().__init__(choices=[CURRENCY], read_only=True, **kwargs)


class OrderViewSerializer(serializers.ModelSerializer[OrderView]):
    """An order: one representation, from ``/api/orders/{id}/`` and from ``get-order``."""

    currency = Currency()

    class Meta:
        model = OrderView
        fields = [
            "id",
            "customer_id",
            "customer_name",
            "item_count",
            "total",
            "currency",
            "status",
            "placed_at",
            "version",
        ]
        extra_kwargs = {
            "total": {"help_text": 'Order total, a decimal string ("1203.47").'},
            "version": {"help_text": "The order's version; its ETag, for If-Match."},
        }


class CustomerViewSerializer(serializers.ModelSerializer[CustomerView]):
    """A customer."""

    currency = Currency()

    class Meta:
        model = CustomerView
        fields = ["id", "name", "credit_limit", "currency", "registered_at", "version"]
        extra_kwargs = {
            "credit_limit": {"help_text": "Largest order total allowed, a decimal string."}
        }


class ProductViewSerializer(serializers.ModelSerializer[ProductView]):
    """A product of the catalogue."""

    currency = Currency()

    class Meta:
        model = ProductView
        fields = ["id", "name", "price", "currency", "stock", "added_at", "version"]
        extra_kwargs = {
            "price": {"help_text": 'Unit price, a decimal string ("12.50").'},
            "stock": {"help_text": "Units available: in stock and not reserved by a checkout."},
        }


class CustomerSummarySerializer(serializers.ModelSerializer[CustomerSummary]):
    """A customer's orders in figures (refreshed asynchronously); cancelled orders do not count."""

    currency = Currency()

    class Meta:
        model = CustomerSummary
        fields = ["customer_id", "customer_name", "order_count", "lifetime_value", "currency"]
        extra_kwargs = {
            "lifetime_value": {"help_text": "Total of the orders not cancelled, a decimal string."}
        }


#: What a checkout step's ``outcome`` can be (the library's words).
STEP_OUTCOMES = ["succeeded", "failed", "compensated", "compensation failed"]


class CheckoutStepSerializer(serializers.Serializer[dict[str, Any]]):
    """One step of a checkout: what ran, and how it went."""

    name = serializers.CharField(
        source="step", read_only=True, help_text='"reserve stock", "request payment", ...'
    )
    outcome = serializers.ChoiceField(
        choices=STEP_OUTCOMES,
        read_only=True,
        help_text="failed: the step that stopped the checkout; compensated: a step undone.",
    )


class CheckoutSerializer(serializers.ModelSerializer[Checkout]):
    """An order's checkout: its state and the steps it ran, oldest first."""

    order_id = serializers.UUIDField(source="key", read_only=True, help_text="The order.")
    steps = CheckoutStepSerializer(many=True, read_only=True)

    class Meta:
        model = Checkout
        fields = ["order_id", "state", "steps"]
        extra_kwargs = {
            "state": {
                "read_only": True,
                "help_text": "awaiting_payment until the gateway answers; completed: the "
                "order is confirmed; compensated: what ran was undone (the order cancelled).",
            }
        }


class CustomerViewSet(CQRSViewSet):
    """Register customers; list them, read one, read their order summary."""

    aggregate = Customer
    id_field = "customer_id"
    read_models = [CustomerView]

    create = command_route(
        RegisterCustomer, result_field="customer_id", fields={"name": NAME, "credit_limit": MONEY}
    )
    list = query_route(
        ListCustomers,
        serializer_class=CustomerViewSerializer,
        response=page_in_range,
        fields={**PAGING, "name": NAME},
    )
    retrieve = query_route(GetCustomer, serializer_class=CustomerViewSerializer)
    summary = query_action(
        GetCustomerSummary,
        serializer_class=CustomerSummarySerializer,
        read_models=[CustomerSummary],
    )


class ProductViewSet(CQRSViewSet):
    """Add products to the catalogue; list them, read one."""

    aggregate = Product
    id_field = "product_id"
    read_models = [ProductView]

    create = command_route(AddProduct, result_field="product_id", fields=PRODUCT_FIELDS)
    list = query_route(
        ListProducts,
        serializer_class=ProductViewSerializer,
        response=page_in_range,
        fields={**PAGING, "name": NAME, "max_price": MONEY},
    )
    retrieve = query_route(GetProduct, serializer_class=ProductViewSerializer)


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
        response=page_in_range,
        fields=PAGING,
    )
    retrieve = query_route(GetOrder, serializer_class=OrderViewSerializer)
    items = command_action(AddItem, fields={"quantity": QUANTITY})
    cancel = command_action(CancelOrder)
    ship = command_action(ShipOrder, permission_classes=[IsAdminUser])


class CheckoutViewSet(CQRSViewSet):
    """Read an order's checkout (placing the order starts it)."""

    id_field = "order_id"
    read_models = [CheckoutSaga]  # what CQRS-Min-Position waits for: the saga's checkpoint

    retrieve = query_route(GetCheckout, serializer_class=CheckoutSerializer)


class PaymentGatewayViewSet(CQRSViewSet):
    """Set how the fake payment gateway answers new payment requests (staff only)."""

    create = command_route(SetGatewayMode, permission_classes=[IsAdminUser])


# GET /api/ lists the resources, the exposed commands and queries, and these links.
router = CQRSRouter(root_links={"docs": "swagger-ui", "schema": "schema"})
router.register("customers", CustomerViewSet, basename="customer")
router.register("products", ProductViewSet, basename="product")
router.register("orders", OrderViewSet, basename="order")
router.register("checkouts", CheckoutViewSet, basename="checkout")
router.register("payment-gateway", PaymentGatewayViewSet, basename="payment-gateway")
# Opt-in generic endpoints: only these messages are served under commands/ and queries/.
router.expose_command(RegisterCustomer, fields={"name": NAME, "credit_limit": MONEY})
router.expose_command(AddProduct, fields=PRODUCT_FIELDS)
router.expose_command(PlaceOrder, fields={"items.quantity": QUANTITY})
# Served with the serializer of the resource routes that answer them: one representation.
router.expose_query(GetOrder)
router.expose_query(GetCustomerSummary)


class TokenView(ObtainAuthToken):
    """``POST /api/auth/token/`` with a username and password: the user's API token.

    Send it as ``Authorization: Token <token>``: one indexed lookup per request, where
    HTTP Basic hashes the password again on every call (a deliberately slow hash). The
    body goes through the library's JSON parser (depth and size limits, strict numbers).
    """

    parser_classes = [JSONParser]  # JSON only, as every other route: one body type to declare

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        check_body_size(request)  # a Content-Length in ASCII digits, within MAX_BODY_SIZE

    @extend_schema(
        operation_id="obtain_token",
        request=AuthTokenSerializer,
        responses={
            200: inline_serializer("Token", {"token": serializers.CharField()}),
            **{(code, PROBLEM_CONTENT_TYPE): ProblemSerializer for code in (400, 413, 415)},
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        return super().post(request, *args, **kwargs)
