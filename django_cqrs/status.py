"""Where each projection stands: checkpoint, head of the log, lag, state.

from django_cqrs.status import projection_status
for row in projection_status():
    print(row.name, row.mode, row.position, row.lag_events)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

from django.db.models import Count
from django.utils import timezone

from . import store
from .conf import cqrs_settings
from .models import ParkedEvent, ProjectionState, StoredEvent
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
    parked: int = 0
    rebuilding: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def projection_status() -> list[ProjectionStatus]:
    """The status of every registered projection, by name."""
    using = cqrs_settings.DATABASE
    head = store.head(using)
    states = {s.name: s for s in ProjectionState.objects.using(using).all()}
    parked = dict(
        ParkedEvent.objects.using(using)
        .filter(resolution=ParkedEvent.Resolution.PARKED)
        .values_list("projection")
        .annotate(n=Count("pk"))
        .values_list("projection", "n")
    )
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
        lag = _events_after(position, head, using)
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
                parked=parked.get(cls.name, 0),
                rebuilding=bool(state and state.rebuild_position is not None),
            )
        )
    return rows


def _events_after(position: int, head: int, using: str) -> int:
    """Events stored after ``position``: counted, since positions can have gaps."""
    if head <= position:
        return 0
    return StoredEvent.objects.using(using).filter(position__gt=position).count()


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


def wait_for_position(
    target: Any = None,
    position: int = 0,
    timeout: float | None = None,
    *,
    poll_interval: float = 0.1,
) -> bool:
    """Wait until the projections behind ``target`` reached ``position``; return whether they did.

    ``target`` is a read-model class, a projection class or name, a list of those, or
    None for every projection. Sync projections are current as soon as the log's head is
    at ``position`` (they commit with the events); the others are current once their
    checkpoint is. ``timeout`` defaults to ``MIN_POSITION_TIMEOUT`` seconds.

        if not wait_for_position(OrderView, result.position, timeout=2):
            ...   # still stale after 2 s
    """
    if position <= 0:
        return True
    if timeout is None:
        timeout = float(cqrs_settings.MIN_POSITION_TIMEOUT)
    names = {cls.name for cls in _projections_behind(target)}
    deadline = time.monotonic() + timeout
    delay = min(0.005, poll_interval)
    while True:
        if _reached(names, position):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, poll_interval)


def _projections_behind(target: Any) -> list[type[Any]]:
    from .projections import Projection, get_projection, projections_for

    if target is None:
        return all_projections()
    if isinstance(target, list | tuple | set | frozenset):
        found: list[type[Any]] = []
        for item in target:
            found.extend(p for p in _projections_behind(item) if p not in found)
        return found
    if isinstance(target, str):
        return [get_projection(target)]
    if isinstance(target, type) and issubclass(target, Projection):
        return [target]
    return projections_for(target)


def _reached(names: set[str], position: int) -> bool:
    using = cqrs_settings.DATABASE
    if store.head(using) < position:
        # Positions are handed out in commit order: below the head nothing is missing.
        return False
    if not names:
        return True
    rows = {row.name: row for row in projection_status() if row.name in names}
    return all(name in rows and rows[name].position >= position for name in names)
