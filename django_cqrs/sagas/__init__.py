"""Sagas: workflows across command handlers, with compensation and deadlines.

    from django_cqrs.sagas import Saga, SagaInstance, on, on_deadline, starts

See :mod:`django_cqrs.sagas.base` for how they run, and docs/sagas.md.
"""

from __future__ import annotations

from .base import (
    COMPENSATED,
    COMPLETED,
    CORRELATION,
    FAILED,
    STARTED,
    Saga,
    SagaInstance,
    on,
    on_deadline,
    retry_instance,
    skip_instance,
    starts,
)
from .deadlines import fire_due

__all__ = [
    "COMPENSATED",
    "COMPLETED",
    "CORRELATION",
    "FAILED",
    "STARTED",
    "Saga",
    "SagaInstance",
    "fire_due",
    "on",
    "on_deadline",
    "retry_instance",
    "skip_instance",
    "starts",
]
