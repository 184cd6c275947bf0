"""The checkout: placing an order reserves its stock, takes its payment and confirms it.

    place order -> reserve stock (every line, or none) -> request payment (the fake
    gateway, gateway.py) -> payment approved -> confirm order: completed

Each step that ran is in ``Checkout.steps``, in order, with its outcome; ``GET
/api/checkouts/{order_id}/`` shows them. What stops a checkout compensates the steps
that succeeded, newest first:

- not enough stock: the reservation fails, the order is cancelled (no payment asked);
- the payment declined, or no answer within ``DEMO_PAYMENT_TIMEOUT`` seconds (the
  setting; the gateway's ``hold`` mode never answers): the payment request withdrawn,
  the stock released, then the order cancelled;
- the order cancelled by someone else while its checkout runs, or after it completed:
  an approved payment refunded (a pending one withdrawn) and the stock released; the
  order is cancelled already.

An item added to the order while the checkout waits for its payment gets its stock
reserved and a payment of its own; the checkout confirms the order once every payment
it asked for is approved and they cover the order's total. The order's row is read
(and locked) before confirming, so an order cancelled or changed by a command whose
event the checkout has not reached yet is not confirmed: that event, next in the log,
moves the checkout on. An order shipped before its payment came is left shipped.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings

from django_cqrs.db.transactions import lock_rows
from django_cqrs.events import EventEnvelope
from django_cqrs.sagas import COMPENSATED, FAILED, Saga, on, on_deadline, starts
from django_cqrs.sagas.base import STEP_FAILED

from .commands import (
    CancelOrder,
    ConfirmOrder,
    PlaceOrder,
    RefundPayment,
    ReleaseStock,
    RequestPayment,
    ReserveStock,
    StockLine,
)
from .events import (
    ItemAdded,
    OrderCancelled,
    OrderLineData,
    OrderPlaced,
    PaymentApproved,
    PaymentDeclined,
)
from .models import Checkout, CheckoutState, Order, OrderStatus

#: Seconds the checkout waits for the gateway's answer when DEMO_PAYMENT_TIMEOUT is unset.
DEFAULT_PAYMENT_TIMEOUT = 30.0
PAYMENT_DEADLINE = "payment"
#: The first step: the order itself, undone by cancelling it.
ORDER_STEP = "place order"


def payment_timeout() -> float:
    """Seconds a checkout waits for the payment: ``settings.DEMO_PAYMENT_TIMEOUT``."""
    return float(getattr(settings, "DEMO_PAYMENT_TIMEOUT", DEFAULT_PAYMENT_TIMEOUT))


class CheckoutSaga(Saga):
    """An order's checkout (one ``Checkout`` row per order, keyed by its id)."""

    instance_model = Checkout
    #: ``settings.DEMO_CHECKOUT_PARTITIONS`` (default 1). Checkouts of the demo's few
    #: products lock the same stock rows, so two partitions wait for each other (and
    #: deadlock): measured slower, not faster, here (docs/benchmarks.md).
    partitions = int(getattr(settings, "DEMO_CHECKOUT_PARTITIONS", 1))

    @starts(OrderPlaced, key="order_id")
    def placed(self, instance: Checkout, event: OrderPlaced, envelope: EventEnvelope) -> None:
        if instance.steps:
            return  # delivered again: it started already
        # The order is the first step: a failure later cancels it, after the rest.
        self.record(
            ORDER_STEP,
            command=PlaceOrder.message_name(),
            compensation=CancelOrder(order_id=event.order_id),
        )
        order = self.order_now(event.order_id)
        if order["status"] == OrderStatus.CANCELLED:
            self.record("order cancelled", outcome=STEP_FAILED)
            instance.error = "the order was cancelled before its checkout started"
            self.complete(COMPENSATED)  # nothing was taken
            return
        self.take(instance, event.order_id, event.lines, label="")

    @on(ItemAdded, key="order_id")
    def item_added(self, instance: Checkout, event: ItemAdded, envelope: EventEnvelope) -> None:
        if self.order_now(event.order_id)["status"] == OrderStatus.CANCELLED:
            return  # its OrderCancelled event comes next: nothing more to take
        instance.added_items += 1
        label = f" for added item {instance.added_items}"
        self.take(instance, event.order_id, [event.line], label=label)

    def take(
        self, instance: Checkout, order_id: uuid.UUID, lines: list[OrderLineData], label: str
    ) -> None:
        """Reserve the stock of ``lines``, then ask the gateway for what they cost."""
        stock = [StockLine(product_id=line.product_id, quantity=line.quantity) for line in lines]
        self.dispatch(
            ReserveStock(order_id=order_id, lines=stock),
            step=f"reserve stock{label}",
            compensation=ReleaseStock(order_id=order_id, lines=stock),
        )
        amount = sum((line.unit_price * line.quantity for line in lines), Decimal(0))
        payment_id = uuid.uuid5(order_id, f"payment{label}")
        self.dispatch(
            RequestPayment(payment_id=payment_id, order_id=order_id, amount=amount),
            step=f"request payment{label}",
            compensation=RefundPayment(payment_id=payment_id),
        )
        instance.amount_requested += amount
        instance.state = CheckoutState.AWAITING_PAYMENT
        self.schedule(PAYMENT_DEADLINE, seconds=payment_timeout())

    @on(PaymentApproved, key="order_id")
    def approved(self, instance: Checkout, event: PaymentApproved, envelope: EventEnvelope) -> None:
        self.record(f"payment approved{self.label_of(instance, event.payment_id)}")
        instance.amount_approved += event.amount
        if instance.amount_approved < instance.amount_requested:
            return  # another payment is still to come
        order = self.order_now(event.order_id)
        if order["status"] == OrderStatus.CANCELLED or order["total"] > instance.amount_approved:
            # Cancelled, or items added, by commands whose events come next in the log.
            return
        self.cancel_deadline(PAYMENT_DEADLINE)
        if order["status"] == OrderStatus.PLACED:
            self.dispatch(ConfirmOrder(order_id=event.order_id), step="confirm order")
        self.complete()  # (an order shipped meanwhile stays shipped)

    @on(PaymentDeclined, key="order_id")
    def declined(self, instance: Checkout, event: PaymentDeclined, envelope: EventEnvelope) -> None:
        label = self.label_of(instance, event.payment_id)
        self.record(f"payment declined{label}", outcome=STEP_FAILED)
        # Nothing to give back for the declined payment itself.
        self.give_up(instance, f"payment declined: {event.reason}", f"request payment{label}")

    @on_deadline(PAYMENT_DEADLINE)
    def no_payment(self, instance: Checkout) -> None:
        reason = f"no payment within {payment_timeout():g} s"
        self.record(reason, outcome=STEP_FAILED)
        self.give_up(instance, reason)

    @on(OrderCancelled, key="order_id", when_finished=True)
    def cancelled(self, instance: Checkout, event: OrderCancelled, envelope: EventEnvelope) -> None:
        if instance.state in (COMPENSATED, FAILED):
            return  # the checkout cancelled it, or had given up already
        # Running or completed: give back the payment and the stock, not the order.
        self.record("order cancelled", outcome=STEP_FAILED)
        self.compensate("the order was cancelled", skip=(ORDER_STEP,))

    # -- helpers ----------------------------------------------------------------------

    def give_up(self, instance: Checkout, reason: str, *skip: str) -> None:
        """Compensate, newest first; an order cancelled meanwhile is not cancelled again."""
        if self.order_now(uuid.UUID(instance.key))["status"] == OrderStatus.CANCELLED:
            skip = (*skip, ORDER_STEP)
        self.compensate(reason, skip=skip)

    @staticmethod
    def order_now(order_id: uuid.UUID) -> dict[str, Any]:
        """The order's status and total now, its row locked until this transaction ends.

        A command changing the order meanwhile waits, then finds the checkout's changes.
        """
        order = lock_rows(Order.objects.filter(pk=order_id)).values("status", "total").first()
        if order is None:
            raise LookupError(f"order {order_id} has a checkout but does not exist")
        return dict(order)

    @staticmethod
    def label_of(instance: Checkout, payment_id: uuid.UUID) -> str:
        """`` for added item 2`` for the payment of the second item added; else ``""``."""
        for step in instance.steps:
            name = str(step.get("step", ""))
            if name.startswith("request payment") and step.get("result") == str(payment_id):
                return name.removeprefix("request payment")
        return ""
