"""Write side (aggregates) and read side (read models) of the orders demo."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import models

from django_cqrs.aggregates import Aggregate
from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.read_models import ReadModel
from django_cqrs.sagas import SagaInstance

from .events import (
    CustomerRegistered,
    GatewayModeSet,
    ItemAdded,
    OrderCancelled,
    OrderConfirmed,
    OrderLineData,
    OrderPlaced,
    OrderShipped,
    PaymentApproved,
    PaymentDeclined,
    PaymentRefunded,
    PaymentRequested,
    PaymentVoided,
    ProductAdded,
    StockReleased,
    StockReserved,
)

# -- write side ---------------------------------------------------------------------


class Customer(Aggregate):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    credit_limit = models.DecimalField(max_digits=12, decimal_places=2)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def register(cls, name: str, credit_limit: Decimal) -> Customer:
        customer = cls(id=uuid.uuid4(), name=name, credit_limit=credit_limit)
        customer.record_event(
            CustomerRegistered(customer_id=customer.id, name=name, credit_limit=credit_limit)
        )
        return customer

    def check_name_present(self) -> None:
        if not self.name.strip():
            raise InvariantViolationError("a customer needs a name", field="name")

    def check_credit_limit_not_negative(self) -> None:
        if self.credit_limit < 0:
            raise InvariantViolationError(
                "the credit limit cannot be negative", field="credit_limit"
            )


class Product(Aggregate):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    #: Units available: in stock and not reserved by a checkout.
    stock = models.PositiveIntegerField(default=100)

    def __str__(self) -> str:
        return f"{self.name} ({self.price})"

    @classmethod
    def add(cls, name: str, price: Decimal, stock: int = 100) -> Product:
        product = cls(id=uuid.uuid4(), name=name, price=price, stock=stock)
        product.record_event(
            ProductAdded(product_id=product.id, name=name, price=price, stock=stock)
        )
        return product

    def reserve(self, order_id: uuid.UUID, quantity: int) -> None:
        if quantity > self.stock:
            raise InvariantViolationError(
                f"not enough stock of {self.name}: {self.stock} available, {quantity} wanted",
                field="lines",
            )
        self.stock -= quantity
        self.record_event(
            StockReserved(
                product_id=self.id, order_id=order_id, quantity=quantity, stock=self.stock
            )
        )

    def release(self, order_id: uuid.UUID, quantity: int) -> None:
        self.stock += quantity
        self.record_event(
            StockReleased(
                product_id=self.id, order_id=order_id, quantity=quantity, stock=self.stock
            )
        )

    def check_price_positive(self) -> None:
        if self.price <= 0:
            raise InvariantViolationError("a price must be positive", field="price")

    def check_stock_not_negative(self) -> None:
        if self.stock < 0:
            raise InvariantViolationError("stock cannot be negative", field="stock")


#: The one currency of the demo's shop (ISO 4217). Amounts are decimals in it; how to
#: show them ("$1,203.47", "1.203,47 $") is the client's business.
CURRENCY = "USD"


class OrderStatus(models.TextChoices):
    PLACED = "placed", "placed"
    #: Its checkout reserved the stock and took the payment (see sagas.py).
    CONFIRMED = "confirmed", "confirmed"
    CANCELLED = "cancelled", "cancelled"
    SHIPPED = "shipped", "shipped"


class Order(Aggregate):
    """An order and its lines; the lines are saved with the order, never on their own."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default="placed")
    total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    placed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        # The short id, as people quote it; no query for the customer's name.
        return f"Order {str(self.id)[:8]} ({self.status}, {self.total})"

    @classmethod
    def place(cls, customer: Customer, items: Sequence[tuple[Product, int]]) -> Order:
        order = cls(id=uuid.uuid4(), customer=customer, status=OrderStatus.PLACED)
        for product, quantity in items:
            order._add_line(product, quantity)
        order.record_event(
            OrderPlaced(
                order_id=order.id,
                customer_id=customer.id,
                customer_name=customer.name,
                lines=[_line_data(line) for line in order.current_lines],
                total=order.total,
                item_count=order.item_count,
            )
        )
        return order

    def add_item(self, product: Product, quantity: int) -> None:
        if self.status != OrderStatus.PLACED:
            raise InvariantViolationError(f"items cannot be added to a {self.status} order")
        line = self._add_line(product, quantity)
        self.record_event(
            ItemAdded(
                order_id=self.id,
                customer_id=self.customer_id,
                line=_line_data(line),
                total=self.total,
                item_count=self.item_count,
            )
        )

    def confirm(self) -> None:
        if self.status != OrderStatus.PLACED:
            raise InvariantViolationError(f"a {self.status} order cannot be confirmed")
        self.status = OrderStatus.CONFIRMED
        self.record_event(OrderConfirmed(order_id=self.id, customer_id=self.customer_id))

    def cancel(self) -> None:
        if self.status == OrderStatus.SHIPPED:
            raise InvariantViolationError("a shipped order cannot be cancelled")
        if self.status == OrderStatus.CANCELLED:
            raise InvariantViolationError("the order is already cancelled")
        previous, self.status = self.status, OrderStatus.CANCELLED
        self.record_event(
            OrderCancelled(
                order_id=self.id,
                customer_id=self.customer_id,
                total=self.total,
                previous_status=str(previous),
            )
        )

    def ship(self) -> None:
        if self.status == OrderStatus.CANCELLED:
            raise InvariantViolationError("a cancelled order cannot be shipped")
        if self.status == OrderStatus.SHIPPED:
            raise InvariantViolationError("the order is already shipped")
        previous, self.status = self.status, OrderStatus.SHIPPED
        self.record_event(
            OrderShipped(
                order_id=self.id, customer_id=self.customer_id, previous_status=str(previous)
            )
        )

    # -- lines ----------------------------------------------------------------------

    @property
    def current_lines(self) -> list[OrderLine]:
        """Saved lines plus the lines added since the last save."""
        if "_lines" not in self.__dict__:
            saved = [] if self._state.adding else list(self.lines.all())
            self.__dict__["_lines"] = saved
        lines: list[OrderLine] = self.__dict__["_lines"]
        return lines

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.current_lines)

    def _add_line(self, product: Product, quantity: int) -> OrderLine:
        line = OrderLine(order=self, product=product, quantity=quantity, unit_price=product.price)
        self.current_lines.append(line)
        self.total += product.price * quantity
        return line

    # -- invariants -----------------------------------------------------------------

    def check_has_items(self) -> None:
        if not self.current_lines:
            raise InvariantViolationError("an order has at least one item", field="items")

    def check_quantities_positive(self) -> None:
        if any(line.quantity <= 0 for line in self.current_lines):
            raise InvariantViolationError("quantities must be positive", field="quantity")

    def check_within_credit_limit(self) -> None:
        if self.total > self.customer.credit_limit:
            raise InvariantViolationError(
                f"the order total {self.total} exceeds the customer's credit limit "
                f"{self.customer.credit_limit}",
                field="items",
            )

    def save_related(self, using: str) -> None:
        new_lines = [line for line in self.current_lines if line._state.adding]
        OrderLine.objects.using(using).bulk_create(new_lines)


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"


def _line_data(line: OrderLine) -> OrderLineData:
    return OrderLineData(
        product_id=line.product_id, quantity=line.quantity, unit_price=line.unit_price
    )


class PaymentStatus(models.TextChoices):
    REQUESTED = "requested", "requested"  # the gateway has not answered (yet)
    APPROVED = "approved", "approved"
    DECLINED = "declined", "declined"
    REFUNDED = "refunded", "refunded"  # approved, then given back
    VOIDED = "voided", "voided"  # withdrawn before the gateway answered


class Payment(Aggregate):
    """A payment asked of the fake gateway for an order (by its checkout)."""

    id = models.UUIDField(primary_key=True, editable=False)
    order_id = models.UUIDField(db_index=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices)
    requested_at = models.DateTimeField(auto_now_add=True)

    currency = CURRENCY

    def __str__(self) -> str:
        return f"Payment {str(self.id)[:8]} ({self.status}, {self.amount})"

    @classmethod
    def request(cls, payment_id: uuid.UUID, order_id: uuid.UUID, amount: Decimal) -> Payment:
        payment = cls(id=payment_id, order_id=order_id, amount=amount)
        payment.status = PaymentStatus.REQUESTED
        payment.record_event(
            PaymentRequested(payment_id=payment_id, order_id=order_id, amount=amount)
        )
        return payment

    def approve(self) -> None:
        self._leave(PaymentStatus.REQUESTED, PaymentStatus.APPROVED)
        self.record_event(PaymentApproved(**self._facts()))

    def decline(self, reason: str) -> None:
        self._leave(PaymentStatus.REQUESTED, PaymentStatus.DECLINED)
        self.record_event(PaymentDeclined(**self._facts(), reason=reason))

    def refund(self) -> None:
        self._leave(PaymentStatus.APPROVED, PaymentStatus.REFUNDED)
        self.record_event(PaymentRefunded(**self._facts()))

    def void(self) -> None:
        self._leave(PaymentStatus.REQUESTED, PaymentStatus.VOIDED)
        self.record_event(PaymentVoided(**self._facts()))

    def _leave(self, expected: str, new: str) -> None:
        if self.status != expected:
            raise InvariantViolationError(f"a {self.status} payment cannot become {new}")
        self.status = new

    def _facts(self) -> dict[str, Any]:
        return {"payment_id": self.id, "order_id": self.order_id, "amount": self.amount}

    def check_amount_positive(self) -> None:
        if self.amount <= 0:
            raise InvariantViolationError("a payment's amount must be positive", field="amount")


class GatewayMode(models.TextChoices):
    """How the fake payment gateway answers a payment request."""

    APPROVE = "approve", "approve"
    DECLINE = "decline", "decline"
    HOLD = "hold", "hold"  # never answers


class PaymentGateway(Aggregate):
    """The fake payment gateway's settings: one row, shared by every process of the demo."""

    FAKE = "fake"

    id = models.CharField(max_length=20, primary_key=True, default=FAKE, editable=False)
    mode = models.CharField(max_length=20, choices=GatewayMode.choices, default="approve")

    def __str__(self) -> str:
        return f"Payment gateway ({self.mode})"

    def set_mode(self, mode: str) -> None:
        previous, self.mode = self.mode, mode
        self.record_event(GatewayModeSet(mode=str(mode), previous_mode=str(previous)))


class CheckoutState(models.TextChoices):
    STARTED = "started", "started"
    AWAITING_PAYMENT = "awaiting_payment", "awaiting payment"
    COMPLETED = "completed", "completed"
    COMPENSATED = "compensated", "compensated"
    FAILED = "failed", "failed"


class Checkout(SagaInstance):
    """One order's checkout (``orders.CheckoutSaga``); ``key`` is the order id."""

    state = models.CharField(
        max_length=40, choices=CheckoutState.choices, default=CheckoutState.STARTED, db_index=True
    )
    #: What the checkout asked the gateway for, and what it approved, so far.
    amount_requested = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal(0))
    amount_approved = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal(0))
    #: Items added to the order while its checkout ran (each is reserved and paid for).
    added_items = models.PositiveIntegerField(default=0)

    currency = CURRENCY

    class Meta:
        ordering = ["-started_at", "key"]

    def __str__(self) -> str:
        return f"Checkout of order {self.key[:8]} ({self.state})"


# -- read side ----------------------------------------------------------------------


class OrderView(ReadModel):
    """One row per order, ready to show: no joins, no arithmetic at read time."""

    id = models.UUIDField(primary_key=True)
    customer_id = models.UUIDField(db_index=True)
    customer_name = models.CharField(max_length=200)
    item_count = models.IntegerField()
    total = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, db_index=True)
    version = models.PositiveIntegerField()
    placed_at = models.DateTimeField(db_index=True)

    currency = CURRENCY

    class Meta:
        ordering = ["-placed_at", "id"]
        indexes = [models.Index(fields=["customer_id", "status"], name="orderview_customer_status")]

    def __str__(self) -> str:
        return f"{self.customer_name}: {self.total} {self.currency} ({self.status})"


class OrderCount(ReadModel):
    """Orders per customer and status: the ``count`` of an order page without COUNT(*).

    A page of ``GET /api/orders/`` says how many orders match its filters; counting
    ``OrderView`` rows costs a scan of every matching row, summing these costs at most
    one row per customer and status.
    """

    key = models.CharField(max_length=64, primary_key=True)  # "<customer_id>:<status>"
    customer_id = models.UUIDField()
    status = models.CharField(max_length=20, db_index=True)
    orders = models.IntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["customer_id", "status"], name="ordercount_customer_status")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.status}: {self.orders}"

    @staticmethod
    def key_of(customer_id: object, status: str) -> str:
        return f"{customer_id}:{status}"


class CustomerView(ReadModel):
    """One row per customer, as ``GET /api/customers/`` lists them (updated in the command)."""

    id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=200, db_index=True)
    credit_limit = models.DecimalField(max_digits=12, decimal_places=2)
    version = models.PositiveIntegerField()
    registered_at = models.DateTimeField()

    currency = CURRENCY

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class ProductView(ReadModel):
    """One row per product of the catalogue, as ``GET /api/products/`` lists them."""

    id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=200, db_index=True)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    #: Units available: in stock and not reserved by a checkout.
    stock = models.PositiveIntegerField(default=100)
    version = models.PositiveIntegerField()
    added_at = models.DateTimeField()

    currency = CURRENCY

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.price})"


class CustomerSummary(ReadModel):
    """Per-customer totals; cancelled orders do not count."""

    customer_id = models.UUIDField(primary_key=True)
    customer_name = models.CharField(max_length=200)
    order_count = models.IntegerField(default=0)
    lifetime_value = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))

    currency = CURRENCY

    class Meta:
        verbose_name_plural = "customer summaries"

    def __str__(self) -> str:
        return f"{self.customer_name}: {self.order_count} orders"
