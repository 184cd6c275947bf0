"""Command and query handlers of the orders demo (autodiscovered by django_cqrs)."""

from __future__ import annotations

from uuid import UUID

from django_cqrs import command_handler, query_handler
from django_cqrs.exceptions import AggregateNotFoundError, InvariantViolationError

from .commands import AddItem, AddProduct, CancelOrder, PlaceOrder, RegisterCustomer, ShipOrder
from .models import Customer, CustomerSummary, Order, OrderView, Product
from .queries import GetCustomerSummary, GetOrder, ListOrders, OrderPage


@command_handler(RegisterCustomer)
def register_customer(command: RegisterCustomer) -> UUID:
    customer = Customer.register(command.name, command.credit_limit)
    customer.save()
    return customer.id


@command_handler(AddProduct)
def add_product(command: AddProduct) -> UUID:
    product = Product.add(command.name, command.price)
    product.save()
    return product.id


@command_handler(PlaceOrder)
def place_order(command: PlaceOrder) -> UUID:
    customer = Customer.load(command.customer_id)
    wanted = {item.product_id for item in command.items}
    products = Product.objects.in_bulk(list(wanted))
    missing = wanted - set(products)
    if missing:
        raise AggregateNotFoundError(
            f"product {sorted(map(str, missing))[0]} does not exist",
            aggregate_type=Product.aggregate_type(),
            aggregate_id=sorted(missing)[0],
        )
    order = Order.place(
        customer, [(products[item.product_id], item.quantity) for item in command.items]
    )
    order.save()
    return order.id


def _load_order(order_id: UUID) -> Order:
    try:
        return Order.objects.select_related("customer").get(pk=order_id)
    except Order.DoesNotExist:
        raise AggregateNotFoundError(
            f"order {order_id} does not exist",
            aggregate_type=Order.aggregate_type(),
            aggregate_id=order_id,
        ) from None


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


@query_handler(GetOrder)
def get_order(query: GetOrder) -> OrderView:
    try:
        return OrderView.objects.get(pk=query.order_id)
    except OrderView.DoesNotExist:
        raise AggregateNotFoundError(
            f"order {query.order_id} does not exist",
            aggregate_type=Order.aggregate_type(),
            aggregate_id=query.order_id,
        ) from None


@query_handler(ListOrders)
def list_orders(query: ListOrders) -> OrderPage:
    if query.page < 1 or query.page_size < 1:
        raise InvariantViolationError("page and page_size start at 1", field="page")
    orders = OrderView.objects.all()
    if query.status:
        orders = orders.filter(status=query.status)
    if query.customer_id:
        orders = orders.filter(customer_id=query.customer_id)
    start = (query.page - 1) * query.page_size
    return OrderPage(
        count=orders.count(),
        page=query.page,
        page_size=query.page_size,
        results=list(orders[start : start + query.page_size]),
    )


@query_handler(GetCustomerSummary)
def get_customer_summary(query: GetCustomerSummary) -> CustomerSummary:
    try:
        return CustomerSummary.objects.get(pk=query.customer_id)
    except CustomerSummary.DoesNotExist:
        raise AggregateNotFoundError(
            f"customer {query.customer_id} does not exist",
            aggregate_type=Customer.aggregate_type(),
            aggregate_id=query.customer_id,
        ) from None
