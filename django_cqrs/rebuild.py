"""Rebuild read models from the event log, in batches with bounded memory.

    from django_cqrs.rebuild import rebuild
    rebuild("orders.OrderViewProjection", progress=lambda done, total: ...)

A sync projection is rebuilt in one transaction that first blocks appends to the log
(PostgreSQL: ``LOCK TABLE ... IN SHARE MODE``; SQLite: the write lock), so no command
can commit an event the rebuild would miss; readers keep seeing the old rows until the
rebuild commits. Commands wait for it (keep it short, or see the async projections).
Handlers are called directly with ``envelope.replaying = True``: ``event_recorded`` is
not re-sent, so other receivers do not run again.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections, transaction
from django.utils import timezone

from . import store
from .conf import cqrs_settings
from .models import ProjectionState, StoredEvent
from .projections import Projection, apply_rows, get_projection

Progress = Callable[[int, int], None]


def lock_log_against_appends(using: str) -> None:
    """Make appenders wait until this transaction ends (PostgreSQL); SQLite needs nothing."""
    conn = connections[using]
    if conn.vendor == "postgresql":
        with conn.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {StoredEvent._meta.db_table} IN SHARE MODE")


def rebuild(
    projection: str | type[Projection],
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Empty the projection's read models and replay the whole log; return events applied."""
    cls = get_projection(projection) if isinstance(projection, str) else projection
    using = cqrs_settings.DATABASE
    size = int(batch_size or cqrs_settings.REBUILD_BATCH_SIZE)
    applied = 0
    with transaction.atomic(using=using):
        lock_log_against_appends(using)
        head = store.head(using)
        instance = cls(buffered=True)
        instance.reset()
        if progress:
            progress(0, head)
        types = cls.handled_event_types()
        for rows in store.iter_all(
            after=0, until=head, batch_size=size, event_types=types, using=using
        ):
            apply_rows(instance, rows, replaying=True)
            instance.flush()
            applied += len(rows)
            if progress:
                progress(rows[-1][0], head)
        if progress:
            progress(head, head)
        ProjectionState.objects.using(using).update_or_create(
            name=cls.name,
            defaults={
                "position": head,
                "status": ProjectionState.Status.LIVE,
                "last_error": "",
                "rebuild_position": None,
                "rebuild_started_at": None,
                "position_recorded_at": timezone.now() if head else None,
            },
        )
    return applied
