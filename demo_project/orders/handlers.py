"""Command and query handlers of the orders demo (autodiscovered by django_cqrs)."""

from __future__ import annotations

from collections import Counter
from typing import TypeVar
from uuid import UUID

from django.db.models import Model, QuerySet, Sum

from django_cqrs import command_handler, query_handler
from django_cqrs.aggregates import Aggregate
from django_cqrs.db.transactions import lock_rows
from django_cqrs.exceptions import AggregateNotFoundError, InvariantViolationError

from . import gateway
from .commands import (
    AddItem,
    AddProduct,
    CancelOrder,
    ConfirmOrder,
    PlaceOrder,
    RefundPayment,
    RegisterCustomer,
    ReleaseStock,
    RequestPayment,
    ReserveStock,
    SetGatewayMode,
    ShipOrder,
    StockLine,
)
from .models import (
    Checkout,
    Customer,
    CustomerSummary,
    CustomerView,
    Order,
    OrderCount,
    OrderView,
    Payment,
    PaymentGateway,
    PaymentStatus,
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

M = TypeVar("M", bound=Model)


@command_handler(RegisterCustomer)
def register_customer(command: RegisterCustomer) -> UUID:
    customer = Customer.register(command.name, command.credit_limit)
    customer.save()
    return customer.id


@command_handler(AddProduct)
def add_product(command: AddProduct) -> UUID:
    product = Product.add(command.name, command.price, command.stock)
    product.save()
    return product.id


@command_handler(PlaceOrder)
def place_order(command: PlaceOrder) -> UUID:
    customer = Customer.load(command.customer_id)
    wanted = {item.product_id for item in command.items}
    products = Product.objects.in_bulk(list(wanted))
    missing = wanted - set(products)
    if missing:
        raise _not_found(Product, min(missing))
    order = Order.place(
        customer, [(products[item.product_id], item.quantity) for item in command.items]
    )
    order.save()
    return order.id


def _not_found(aggregate: type[Aggregate], pk: object) -> AggregateNotFoundError:
    return AggregateNotFoundError(
        f"{aggregate._meta.verbose_name} {pk} does not exist",
        aggregate_type=aggregate.aggregate_type(),
        aggregate_id=pk,
    )


def _one(queryset: QuerySet[M], pk: object, aggregate: type[Aggregate]) -> M:
    """The row with primary key ``pk``, or the aggregate's not-found error."""
    row = queryset.filter(pk=pk).first()
    if row is None:
        raise _not_found(aggregate, pk)
    return row


def _load_order(order_id: UUID) -> Order:
    return _one(Order.objects.select_related("customer"), order_id, Order)


@command_handler(AddItem)
def add_item(command: AddItem) -> None:
    order = _load_order(command.order_id)
    order.add_item(Product.load(command.product_id), command.quantity)
    order.save()


@command_handler(CancelOrder)
def cancel_order(command: CancelOrder) -> None:
    order = _load_order(command.order_id)
    order.cancel()
    order.save()


@command_handler(ShipOrder)
def ship_order(command: ShipOrder) -> None:
    order = _load_order(command.order_id)
    order.ship()
    order.save()


@command_handler(ConfirmOrder)
def confirm_order(command: ConfirmOrder) -> None:
    order = _load_order(command.order_id)
    order.confirm()
    order.save()


# -- stock and payments ---------------------------------------------------------------


def _locked_products(lines: list[StockLine]) -> tuple[list[Product], Counter[UUID]]:
    """The products of ``lines``, their rows locked in id order, and the units of each."""
    wanted: Counter[UUID] = Counter()
    for line in lines:
        if line.quantity <= 0:
            raise InvariantViolationError("quantities must be positive", field="lines")
        wanted[line.product_id] += line.quantity
    if not wanted:
        raise InvariantViolationError("there is no line to reserve", field="lines")
    # One order for every locker: two checkouts of the same products cannot deadlock.
    products = list(lock_rows(Product.objects.filter(pk__in=list(wanted)).order_by("pk")))
    missing = set(wanted) - {product.id for product in products}
    if missing:
        raise _not_found(Product, min(missing))
    return products, wanted


@command_handler(ReserveStock)
def reserve_stock(command: ReserveStock) -> None:
    products, wanted = _locked_products(command.lines)
    short = [product for product in products if product.stock < wanted[product.id]]
    if short:  # all lines or none: nothing is reserved
        raise InvariantViolationError(
            "not enough stock: "
            + ", ".join(f"{p.name} ({p.stock} available, {wanted[p.id]} wanted)" for p in short),
            field="lines",
        )
    for product in products:
        product.reserve(command.order_id, wanted[product.id])
        product.save()


@command_handler(ReleaseStock)
def release_stock(command: ReleaseStock) -> None:
    products, wanted = _locked_products(command.lines)
    for product in products:
        product.release(command.order_id, wanted[product.id])
        product.save()


@command_handler(RequestPayment)
def request_payment(command: RequestPayment) -> UUID:
    if Payment.objects.filter(pk=command.payment_id).exists():
        raise InvariantViolationError(f"payment {command.payment_id} was requested already")
    payment = Payment.request(command.payment_id, command.order_id, command.amount)
    answer = gateway.charge(payment.id, payment.amount)
    if answer == gateway.APPROVED:
        payment.approve()
    elif answer == gateway.DECLINED:
        payment.decline(gateway.DECLINE_REASON)
    payment.save()  # held: only the request is recorded; no answer will come
    return payment.id


@command_handler(RefundPayment)
def refund_payment(command: RefundPayment) -> None:
    payment = lock_rows(Payment.objects.filter(pk=command.payment_id)).first()
    if payment is None:
        raise _not_found(Payment, command.payment_id)
    if payment.status == PaymentStatus.APPROVED:
        gateway.refund(payment.id, payment.amount)
        payment.refund()
    elif payment.status == PaymentStatus.REQUESTED:
        payment.void()  # nothing was captured: the request is withdrawn
    else:
        raise InvariantViolationError(f"a {payment.status} payment cannot be refunded")
    payment.save()


@command_handler(SetGatewayMode)
def set_gateway_mode(command: SetGatewayMode) -> None:
    row = lock_rows(PaymentGateway.objects.filter(pk=PaymentGateway.FAKE)).first()
    row = row or PaymentGateway(id=PaymentGateway.FAKE)
    row.set_mode(command.mode)
    row.save()


@query_handler(GetOrder)
def get_order(query: GetOrder) -> OrderView:
    return _one(OrderView.objects.all(), query.order_id, Order)


def _check_page(page: int, page_size: int) -> int:
    """The offset of the page's first row."""
    if page < 1 or page_size < 1:
        raise InvariantViolationError("page and page_size start at 1", field="page")
    return (page - 1) * page_size


def _page(queryset: QuerySet[M], page: int, page_size: int) -> Page[M]:
    """Page ``page`` of ``queryset``, with the count of every matching row."""
    start = _check_page(page, page_size)
    return Page(
        count=queryset.count(),
        page=page,
        page_size=page_size,
        results=list(queryset[start : start + page_size]),
    )


@query_handler(ListOrders)
def list_orders(query: ListOrders) -> Page[OrderView]:
    start = _check_page(query.page, query.page_size)
    orders = OrderView.objects.all()
    counts = OrderCount.objects.all()  # the count without a COUNT(*) over OrderView
    if query.status:
        orders = orders.filter(status=query.status)
        counts = counts.filter(status=query.status)
    if query.customer_id:
        orders = orders.filter(customer_id=query.customer_id)
        counts = counts.filter(customer_id=query.customer_id)
    return Page(
        count=counts.aggregate(orders=Sum("orders"))["orders"] or 0,
        page=query.page,
        page_size=query.page_size,
        results=list(orders[start : start + query.page_size]),
    )


@query_handler(GetCustomerSummary)
def get_customer_summary(query: GetCustomerSummary) -> CustomerSummary:
    return _one(CustomerSummary.objects.all(), query.customer_id, Customer)


@query_handler(GetCustomer)
def get_customer(query: GetCustomer) -> CustomerView:
    return _one(CustomerView.objects.all(), query.customer_id, Customer)


@query_handler(ListCustomers)
def list_customers(query: ListCustomers) -> Page[CustomerView]:
    customers = CustomerView.objects.all()
    if query.name:
        customers = customers.filter(name__icontains=query.name)
    return _page(customers, query.page, query.page_size)


@query_handler(GetCheckout)
def get_checkout(query: GetCheckout) -> Checkout:
    checkout = Checkout.objects.filter(key=str(query.order_id)).first()
    if checkout is not None:
        return checkout
    if not OrderView.objects.filter(pk=query.order_id).exists():
        raise _not_found(Order, query.order_id)
    # Placed, and the checkout has not run its first step yet (it runs after the commit).
    return Checkout(key=str(query.order_id))


@query_handler(GetProduct)
def get_product(query: GetProduct) -> ProductView:
    return _one(ProductView.objects.all(), query.product_id, Product)


@query_handler(ListProducts)
def list_products(query: ListProducts) -> Page[ProductView]:
    products = ProductView.objects.all()
    if query.name:
        products = products.filter(name__icontains=query.name)
    if query.max_price is not None:
        products = products.filter(price__lte=query.max_price)
    return _page(products, query.page, query.page_size)
