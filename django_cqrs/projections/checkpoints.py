"""The stored state of each projection: its checkpoint row, and the lock that guards it.

    from django_cqrs.projections.checkpoints import ensure_state, lock_state

    with transaction.atomic():
        state = lock_state("orders.CustomerSummaryProjection", "default")
        state.position            # the last event applied (or passed over)

One :class:`~django_cqrs.models.ProjectionState` row per projection holds its checkpoint,
its run state (live, rebuilding, paused, stopped) and the failure being retried. Whoever moves the
checkpoint holds the row's lock for the transaction (PostgreSQL ``SELECT ... FOR
UPDATE``; SQLite's one write lock), so two workers never apply the same batch.
"""

from __future__ import annotations

from django.db import IntegrityError

from ..conf import cqrs_settings
from ..db.transactions import lock_rows
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
