"""The stored state of each projection: its checkpoint row, and the lock that guards it.

    from django_cqrs.projections.checkpoints import ensure_state, lock_state

    with transaction.atomic():
        state = lock_state("orders.CustomerSummaryProjection", "default")
        state.position            # the last event applied (or passed over)

One :class:`~django_cqrs.models.ProjectionState` row per projection holds its checkpoint,
its run state (live, rebuilding, paused, stopped) and the failure being retried. Whoever moves the
checkpoint holds the row's lock for the transaction (PostgreSQL ``SELECT ... FOR
UPDATE``; SQLite's one write lock), so two workers never apply the same batch.
:class:`~django_cqrs.models.ParkedEvent` rows are the events a projection gave up on
(:func:`park`), or that an operator chose to skip.
"""

from __future__ import annotations

import traceback

from django.db import IntegrityError
from django.utils import timezone

from ..conf import cqrs_settings
from ..db.log import LogPoint
from ..db.transactions import lock_rows
from ..exceptions import ProjectionApplyError
from ..models import ParkedEvent, ProjectionState


def ensure_state(name: str, using: str | None = None) -> ProjectionState:
    """The projection's state row, created on first use."""
    using = using or cqrs_settings.DATABASE
    try:
        state, _ = ProjectionState.objects.using(using).get_or_create(name=name)
    except IntegrityError:  # created concurrently by another worker
        state = ProjectionState.objects.using(using).get(name=name)
    return state


def lock_state(name: str, using: str) -> ProjectionState:
    """Lock and return the state row until the end of the transaction."""
    return lock_rows(ProjectionState.objects.using(using)).get(name=name)


def skipped_positions(name: str, after: int, using: str) -> frozenset[int]:
    """Positions an operator chose to skip that the projection has not passed yet."""
    return frozenset(
        ParkedEvent.objects.using(using)
        .filter(projection=name, position__gt=after, resolution=ParkedEvent.Resolution.SKIPPED)
        .values_list("position", flat=True)
    )


def rebuild_point(state: ProjectionState) -> LogPoint | None:
    """How far a rebuild in progress (or interrupted) has replayed; None: no rebuild."""
    if state.rebuild_position is None:
        return None
    return LogPoint(int(state.rebuild_transaction_id or 0), int(state.rebuild_position))


def failure_text(failure: ProjectionApplyError) -> tuple[str, str]:
    """The error of a failed event in one line, and its traceback."""
    cause = failure.__cause__ or failure
    trace = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    return f"{type(cause).__name__}: {cause}", trace


def park(
    name: str, failure: ProjectionApplyError, *, attempts: int, skipped: bool, using: str
) -> None:
    """Record the event ``failure`` names as parked (or, ``skipped``, passed over)."""
    error, trace = failure_text(failure)
    ParkedEvent.objects.using(using).update_or_create(
        projection=name,
        position=failure.position,
        defaults={
            "event_type": failure.event_type,
            "error": error,
            "traceback": trace,
            "attempts": attempts,
            "parked_at": timezone.now(),
            "resolution": (
                ParkedEvent.Resolution.SKIPPED if skipped else ParkedEvent.Resolution.PARKED
            ),
            "resolved_at": timezone.now() if skipped else None,
        },
    )


def resolve_parked(name: str, using: str) -> int:
    """Mark the projection's parked events as retried (a retry or a rebuild applies them)."""
    return (
        ParkedEvent.objects.using(using)
        .filter(projection=name, resolution=ParkedEvent.Resolution.PARKED)
        .update(resolution=ParkedEvent.Resolution.RETRIED, resolved_at=timezone.now())
    )
