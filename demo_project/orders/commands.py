"""Commands of the orders demo.

Their docstrings and the ``help_text`` of their fields are what the API documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID

from django_cqrs import Command

from .models import GatewayMode


def doc(text: str) -> dict[str, str]:
    """Field metadata read by the API's serializers and schema."""
    return {"help_text": text}


@dataclass(frozen=True)
class RegisterCustomer(Command[UUID]):
    """Register a customer, who may then place orders up to a credit limit."""

    name: str = field(metadata=doc("The customer's name, as shown on orders."))
    credit_limit: Decimal = field(
        metadata=doc('Largest total of one order, a decimal string in USD ("250.00").')
    )


@dataclass(frozen=True)
class AddProduct(Command[UUID]):
    """Add a product to the catalogue."""

    name: str = field(metadata=doc("The product's name."))
    price: Decimal = field(metadata=doc('Unit price, a decimal string in USD ("12.50").'))
    stock: int = field(default=100, metadata=doc("Units in stock, from 0 to 1,000,000."))


@dataclass(frozen=True)
class OrderItem:
    """A line of an order: how many of which product."""

    product_id: UUID = field(metadata=doc("The product, from GET /api/products/."))
    quantity: int = field(metadata=doc("How many, from 1 to 10,000."))


@dataclass(frozen=True)
class PlaceOrder(Command[UUID]):
    """Place an order for a customer; its total must stay within the customer's credit limit."""

    customer_id: UUID = field(metadata=doc("The customer, from GET /api/customers/."))
    items: list[OrderItem] = field(metadata=doc("At least one line."))


@dataclass(frozen=True)
class AddItem(Command[None]):
    """Add a line to a placed order (not to a cancelled or shipped one)."""

    order_id: UUID
    product_id: UUID = field(metadata=doc("The product, from GET /api/products/."))
    quantity: int = field(metadata=doc("How many, from 1 to 10,000."))


@dataclass(frozen=True)
class CancelOrder(Command[None]):
    """Cancel a placed or confirmed order; a shipped order cannot be cancelled.

    A checkout still running, or completed, gives back what it took: the stock reserved
    and the payment (voided if the gateway has not answered, else refunded).
    """

    order_id: UUID


@dataclass(frozen=True)
class ShipOrder(Command[None]):
    """Ship a placed or confirmed order (staff only); a cancelled order cannot be shipped."""

    order_id: UUID


@dataclass(frozen=True)
class ConfirmOrder(Command[None]):
    """Confirm a placed order: its checkout reserved the stock and took the payment."""

    order_id: UUID


# -- stock and payments: what the checkout (sagas.py) sends ----------------------------


@dataclass(frozen=True)
class StockLine:
    """Units of one product."""

    product_id: UUID
    quantity: int


@dataclass(frozen=True)
class ReserveStock(Command[None]):
    """Set stock aside for an order: every line, or none when one product has too little."""

    order_id: UUID
    lines: list[StockLine]


@dataclass(frozen=True)
class ReleaseStock(Command[None]):
    """Give back stock reserved for an order."""

    order_id: UUID
    lines: list[StockLine]


@dataclass(frozen=True)
class RequestPayment(Command[UUID]):
    """Ask the payment gateway for ``amount``; its answer is recorded as it comes."""

    payment_id: UUID
    order_id: UUID
    amount: Decimal


@dataclass(frozen=True)
class RefundPayment(Command[None]):
    """Give a payment back: refunded through the gateway if approved, else withdrawn."""

    payment_id: UUID


@dataclass(frozen=True)
class SetGatewayMode(Command[None]):
    """Set how the demo's fake payment gateway answers new payment requests (staff only).

    ``approve`` (the default) and ``decline`` answer at once; ``hold`` never answers, so
    the checkout gives up after ``DEMO_PAYMENT_TIMEOUT`` seconds.
    """

    mode: GatewayMode = field(metadata=doc("approve, decline or hold."))
