"""Saga deadlines: "if payment has not arrived in 30 s, cancel", fired at most once.

    from django_cqrs.sagas.deadlines import fire_due
    fire_due()                       # fire every deadline due now; returns how many fired
    fire_due(now=later)              # a clock the caller controls (tests)

A deadline is a row (``SagaDeadline``), written in the transaction of the handler that
set it, so it exists exactly when the step that set it committed. Firing one locks the
state row of the instance's partition (as a catch-up batch does, so events and deadlines
of an instance never run at the same time), then the deadline's row, and marks it fired
in the transaction that runs its handler and whatever the handler dispatched: a deadline
fires at most once, and if that transaction fails it stays due and fires on a later pass. Moving on
cancels it: ``cancel_deadline()`` in a handler, and every pending deadline of an
instance when it finishes. ``saga_deadline_scheduled`` tells the queue adapter when the
next one is due (``django_cqrs.tasks`` queues a one-off django-q2 task for that time);
the periodic catch-up schedule fires whatever is overdue, so a deadline whose workers
were down fires late rather than never.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..conf import cqrs_settings
from ..db.transactions import lock_rows
from ..models import SagaDeadline
from ..projections.base import get_projection
from ..projections.checkpoints import ensure_state, lock_state
from ..signals import saga_deadline_scheduled

logger = logging.getLogger("django_cqrs")

_PENDING = Q(fired_at__isnull=True, cancelled_at__isnull=True)


def schedule(saga: str, key: str, name: str, at: dt.datetime) -> None:
    """Set (or move) the deadline ``name`` of the instance ``key``; it is pending again."""
    using = cqrs_settings.DATABASE
    SagaDeadline.objects.using(using).update_or_create(
        saga=saga,
        instance_key=key,
        name=name,
        defaults={"due_at": at, "fired_at": None, "cancelled_at": None, "attempts": 0},
    )
    saga_deadline_scheduled.send(sender=SagaDeadline, saga=saga, key=key, name=name, due_at=at)


def cancel(saga: str, key: str, name: str) -> int:
    """Cancel the pending deadline ``name`` of the instance ``key``; return how many."""
    cancelled: int = _pending(saga, key).filter(name=name).update(cancelled_at=timezone.now())
    return cancelled


def cancel_all(saga: str, key: str) -> int:
    """Cancel every pending deadline of the instance ``key`` (it finished)."""
    cancelled: int = _pending(saga, key).update(cancelled_at=timezone.now())
    return cancelled


def _pending(saga: str, key: str) -> Any:
    using = cqrs_settings.DATABASE
    return SagaDeadline.objects.using(using).filter(_PENDING, saga=saga, instance_key=key)


def fire_due(now: dt.datetime | None = None, *, saga: str | None = None, limit: int = 1000) -> int:
    """Fire the deadlines due at ``now`` (default: now), oldest first; return how many fired.

    Each runs in its own transaction. A handler that raises leaves its deadline due (its
    ``attempts`` and ``last_error`` say why), to fire on a later pass; a deadline of an
    instance that has finished is cancelled; one of a parked instance waits for it.
    """
    now = now or timezone.now()
    using = cqrs_settings.DATABASE
    due = SagaDeadline.objects.using(using).filter(_PENDING, due_at__lte=now)
    if saga is not None:
        due = due.filter(saga=saga)
    fired = 0
    for pk, name in due.order_by("due_at", "id").values_list("pk", "saga")[:limit]:
        try:
            fired += _fire(pk, name, now, using)
        except Exception as exc:
            logger.exception("Saga deadline %s of %s failed; it stays due", pk, name)
            text = "".join(traceback.format_exception(exc))
            SagaDeadline.objects.using(using).filter(pk=pk).update(
                attempts=F("attempts") + 1, last_error=text[-10_000:]
            )
    return fired


def _fire(pk: int, saga_name: str, now: dt.datetime, using: str) -> int:
    pending = SagaDeadline.objects.using(using).filter(_PENDING, pk=pk, due_at__lte=now)
    key = pending.values_list("instance_key", flat=True).first()
    if key is None:
        return 0  # fired or cancelled meanwhile
    cls: Any = get_projection(saga_name).partition_for(key)  # type: ignore[attr-defined]
    ensure_state(cls.name)
    with transaction.atomic(using=using):
        lock_state(cls.name, using)  # one at a time with the partition's catch-up batches
        saga = cls()
        # The instance's row before the deadline's: the order a handler locks them in.
        instance = saga.load(key)
        deadline = lock_rows(pending).first()
        if deadline is None:
            return 0  # fired or cancelled meanwhile
        if instance is None or instance.finished:
            deadline.cancelled_at = now
            deadline.save(update_fields=["cancelled_at"])
            return 0
        if instance.parked:
            return 0
        method = cls.deadline_handlers[deadline.name]
        deadline.fired_at = now
        deadline.attempts += 1
        deadline.save(update_fields=["fired_at", "attempts"])
        saga.run(instance, None, lambda: getattr(saga, method)(instance))
    return 1
