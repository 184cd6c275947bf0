"""The demo's fake payment gateway: it answers as its mode says, and refunds always work.

    gateway.charge(payment_id, amount)   # "approved", "declined", or None (held: no answer)
    gateway.refund(payment_id, amount)

The mode is the ``PaymentGateway`` row (set with the ``SetGatewayMode`` command, or
``POST /api/payment-gateway/``), so the web server and the django-q2 workers that run
the checkouts see the same one. A real gateway would answer a held payment later, by a
webhook; this one never does, so the checkout's deadline fires.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from .models import GatewayMode, PaymentGateway

APPROVED = "approved"
DECLINED = "declined"
DECLINE_REASON = "declined by the payment gateway"


def mode() -> str:
    """The gateway's mode now (approve until someone sets another)."""
    row = PaymentGateway.objects.filter(pk=PaymentGateway.FAKE).only("mode").first()
    return row.mode if row is not None else GatewayMode.APPROVE


def charge(payment_id: UUID, amount: Decimal) -> str | None:
    """Ask for ``amount``: ``"approved"``, ``"declined"``, or None when it holds the request."""
    return {GatewayMode.APPROVE: APPROVED, GatewayMode.DECLINE: DECLINED}.get(GatewayMode(mode()))


def refund(payment_id: UUID, amount: Decimal) -> None:
    """Give an approved payment back (the fake gateway never refuses)."""
