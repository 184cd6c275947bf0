"""django-q2 task functions and the triggers that queue them.

Tasks take plain arguments (a projection name), never pickled payloads:

    django_cqrs.tasks.catch_up_task("orders.CustomerSummaryProjection")
    django_cqrs.tasks.catch_up_all()           # the periodic schedule runs this

When an event handled by an async projection is recorded, a catch-up task for that
projection is queued, at most one at a time: the ``ProjectionTrigger`` row is flagged
with a conditional upsert and only the command that sets the flag queues a task; the
task clears the flag before it reads, so events committed later queue a new one. With
django-q2's ORM broker on the same database the task is queued inside the command's
transaction and commits with the events (a transactional outbox); with another broker,
or with ``Q_CLUSTER["sync"]``, it is queued after commit. A periodic schedule
(``CATCHUP_SCHEDULE_MINUTES``) catches up whatever a lost task missed.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from .conf import cqrs_settings
from .events import Event, EventEnvelope
from .models import ProjectionTrigger
from .projections import ASYNC, all_projections

logger = logging.getLogger("django_cqrs")

CATCH_UP_TASK = "django_cqrs.tasks.catch_up_task"
CATCH_UP_ALL_TASK = "django_cqrs.tasks.catch_up_all"
SCHEDULE_NAME = "django_cqrs: catch up async projections"


def catch_up_task(name: str) -> int:
    """django-q2 task: clear the trigger flag, then catch ``name`` up; return events read."""
    from .runner import catch_up

    ProjectionTrigger.objects.using(cqrs_settings.DATABASE).filter(name=name).update(queued_at=None)
    return catch_up(name)


def catch_up_all() -> dict[str, int]:
    """django-q2 task: catch every async projection up (the periodic safety net)."""
    from .runner import catch_up

    names = [cls.name for cls in all_projections() if cls.mode == ASYNC]
    # Lower the flags first: if a queued task was lost, commands can queue again.
    ProjectionTrigger.objects.using(cqrs_settings.DATABASE).filter(name__in=names).update(
        queued_at=None
    )
    return {name: catch_up(name) for name in names}


def _q_cluster() -> dict[str, Any]:
    return dict(getattr(settings, "Q_CLUSTER", {}) or {})


def queue_inside_transaction() -> bool:
    """True when the task row can commit with the events (ORM broker, same database)."""
    conf = _q_cluster()
    if conf.get("sync"):
        return False
    return conf.get("orm") == cqrs_settings.DATABASE and not any(
        conf.get(key) for key in ("redis", "sqs", "iron_mq", "mongo", "broker_class")
    )


def enqueue(name: str) -> None:
    """Queue a catch-up task for ``name``."""
    from django_q.tasks import async_task

    async_task(CATCH_UP_TASK, name, task_name=f"cqrs-catch-up {name}"[:100], group="django_cqrs")


def request_catch_up(name: str) -> bool:
    """Queue a catch-up for ``name`` unless one is already queued; True if queued now."""
    using = cqrs_settings.DATABASE
    flagged = _raise_flag(name, timezone.now(), using)
    if flagged:
        try:
            enqueue(name)
        except Exception:
            # Lower the flag again, or no later command would queue a catch-up.
            ProjectionTrigger.objects.using(using).filter(name=name).update(queued_at=None)
            raise
    return flagged


def _raise_flag(name: str, now: dt.datetime, using: str) -> bool:
    """Create or set the flag of ``name`` unless it is set; True if this call set it.

    Every command that records an event for an async projection runs this, so it is one
    statement: an upsert whose update applies only to a lowered flag (``rowcount`` 0
    means a catch-up is already queued). The ORM cannot put a condition on the update
    of an upsert; other databases take the two-statement ORM path.
    """
    conn = connections[using]
    if conn.vendor not in ("postgresql", "sqlite"):
        triggers = ProjectionTrigger.objects.using(using)
        if triggers.filter(name=name, queued_at__isnull=True).update(queued_at=now):
            return True
        return triggers.get_or_create(name=name, defaults={"queued_at": now})[1]
    qn = conn.ops.quote_name
    opts = ProjectionTrigger._meta
    table = qn(opts.db_table)
    name_column = qn(opts.get_field("name").column)
    queued_at = qn(opts.get_field("queued_at").column)
    with transaction.mark_for_rollback_on_error(using), conn.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({name_column}, {queued_at}) VALUES (%s, %s) "
            f"ON CONFLICT ({name_column}) DO UPDATE SET {queued_at} = EXCLUDED.{queued_at} "
            f"WHERE {table}.{queued_at} IS NULL",
            [name, conn.ops.adapt_datetimefield_value(now)],
        )
        return cursor.rowcount == 1


def _async_projection_names(event_type: type[Event]) -> list[str]:
    return [
        cls.name for cls in all_projections() if cls.mode == ASYNC and event_type in cls.handlers
    ]


def on_event_recorded(
    sender: type[Event], event: Event, envelope: EventEnvelope, **kwargs: Any
) -> None:
    """``event_recorded`` receiver: queue a catch-up of the async projections of ``sender``."""
    if not cqrs_settings.TRIGGER_ON_COMMIT:
        return
    names = _async_projection_names(sender)
    if not names:
        return
    using = cqrs_settings.DATABASE
    if queue_inside_transaction():
        for name in names:
            request_catch_up(name)
    else:
        for name in names:
            transaction.on_commit(functools.partial(_request_robust, name), using=using)


def _request_robust(name: str) -> None:
    # After commit, a broker outage must not turn the committed command into an error;
    # the periodic schedule catches up.
    try:
        request_catch_up(name)
    except Exception:
        logger.exception("Could not queue a catch-up for %s; the schedule will catch up", name)


def schedule_retry(name: str, when: dt.datetime | None) -> None:
    """Queue a one-off catch-up of ``name`` at ``when`` (after a failure's backoff)."""
    if when is None:
        return
    try:
        from django_q.models import Schedule

        Schedule.objects.create(
            name=f"cqrs retry {name} {when.timestamp():.3f}"[:100],
            func=CATCH_UP_TASK,
            args=repr(name),
            schedule_type=Schedule.ONCE,
            next_run=when,
            repeats=1,
        )
    except Exception:
        logger.exception("Could not schedule a retry of %s; the schedule will catch up", name)


def ensure_schedule(**kwargs: Any) -> None:
    """``post_migrate`` receiver: keep the periodic catch-up schedule in place."""
    if not any(cls.mode == ASYNC for cls in all_projections()):
        return
    from django_q.models import Schedule

    minutes = int(cqrs_settings.CATCHUP_SCHEDULE_MINUTES)
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": CATCH_UP_ALL_TASK,
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
        },
    )
