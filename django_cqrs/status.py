"""Where each projection stands: checkpoint, head of the log, lag, state.

    from django_cqrs.status import projection_status
    for row in projection_status():
        print(row.name, row.mode, row.position, row.lag_events)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.utils import timezone

from . import store
from .conf import cqrs_settings
from .models import ProjectionState, StoredEvent
from .projections import SYNC, all_projections


@dataclasses.dataclass(frozen=True)
class ProjectionStatus:
    name: str
    mode: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    status: str
    last_error: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def projection_status() -> list[ProjectionStatus]:
    """The status of every registered projection, by name."""
    using = cqrs_settings.DATABASE
    head = store.head(using)
    states = {s.name: s for s in ProjectionState.objects.using(using).all()}
    now = timezone.now()
    rows = []
    for cls in sorted(all_projections(), key=lambda c: c.name):
        state = states.get(cls.name)
        status = state.status if state else ProjectionState.Status.LIVE
        if cls.mode == SYNC and status == ProjectionState.Status.LIVE:
            # Sync projections apply each event in the transaction that records it.
            position = head
        else:
            position = state.position if state else 0
        lag = max(head - position, 0)
        rows.append(
            ProjectionStatus(
                name=cls.name,
                mode=cls.mode,
                position=position,
                head=head,
                lag_events=lag,
                lag_seconds=_lag_seconds(position, lag, now, using),
                status=str(status),
                last_error=state.last_error if state else "",
            )
        )
    return rows


def _lag_seconds(position: int, lag: int, now: dt.datetime, using: str) -> float:
    if lag == 0:
        return 0.0
    oldest_unapplied = (
        StoredEvent.objects.using(using)
        .after(position)
        .values_list("recorded_at", flat=True)
        .first()
    )
    if oldest_unapplied is None:
        return 0.0
    return round(max((now - oldest_unapplied).total_seconds(), 0.0), 3)
