"""Each projection's reported status: checkpoint, head of the log, lag, run state.

    from django_cqrs.projections.status import projection_status, wait_for_position

    for row in projection_status():
        print(row.name, row.mode, row.position, row.lag_events, row.state)
    wait_for_position(OrderView, result.position, timeout=2)   # read your own write

The stored state is :class:`~django_cqrs.models.ProjectionState` (one row per
projection); a :class:`ProjectionStatus` is what is reported about it, with the figures
computed from the log. ``cqrs_status``, the admin dashboard and ``/cqrs/health/`` show
these rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

from django.db.models import Count
from django.utils import timezone

from .. import store
from ..conf import cqrs_settings
from ..models import ParkedEvent, ProjectionState, StoredEvent
from .base import Projection, all_projections, get_projection, projections_for
from .registry import SYNC


@dataclasses.dataclass(frozen=True)
class ProjectionStatus:
    """What is reported about one projection."""

    name: str
    mode: str
    #: The checkpoint (sync projections: the head, while live).
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    #: The run state: one of ``ProjectionState.State`` (live, paused, stopped, ...).
    state: str
    last_error: str
    parked: int = 0
    rebuilding: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``cqrs_status --json``); the run state goes out as ``status``."""
        data = dataclasses.asdict(self)
        data["status"] = data.pop("state")
        return {key: data[key] for key in _JSON_KEYS}


#: The JSON keys, in the order ``cqrs_status --json`` has always printed them.
_JSON_KEYS = (
    *("name", "mode", "position", "head", "lag_events", "lag_seconds", "status"),
    *("last_error", "parked", "rebuilding"),
)


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
        run_state = state.state if state else ProjectionState.State.LIVE
        if cls.mode == SYNC and run_state == ProjectionState.State.LIVE:
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
                state=str(run_state),
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
