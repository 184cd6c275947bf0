"""Is every projection healthy? The rules behind ``/cqrs/health/`` and the admin dashboard.

    from django_cqrs.projections.health import health_report
    report = health_report()
    report["healthy"]                                    # False: answer 503
    report["projections"]["orders.CustomerSummaryProjection"]["problems"]

A projection is unhealthy when it has parked events, is stopped, lags by more than
``HEALTH_MAX_LAG_EVENTS`` events or ``HEALTH_MAX_LAG_SECONDS`` seconds (``None``
switches a limit off), or its activity is one of ``HEALTH_DEGRADED_ACTIVITIES`` (by default
``paused`` and ``stalled``: a paused projection falls behind with the next event, a
stalled one is behind and not moving). A saga is a projection, with two more rules: it is
unhealthy while one of its instances is parked, or while one of its deadlines is overdue
(pending, and due more than ``STALL_SECONDS`` ago). A saga passes over a failed event as a
projection with ``on_failure = "skip"`` does (the event is recorded as skipped, which
alone is no problem), but the event's instance is parked: it waits, with the events held
after it (recorded as parked), for an operator to retry or skip it. So a saga's problem
is its parked instances, with the events they hold, rather than parked events. The log
is unhealthy when an open transaction has held committed events back from every reader
for longer than ``HEALTH_MAX_LAG_SECONDS`` (PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from ..conf import cqrs_settings
from ..models import ProjectionState
from .status import (
    Activity,
    HorizonStatus,
    ProjectionStatus,
    SagaStatus,
    horizon_status,
    lag_cap,
    projection_status,
)


def problems(row: ProjectionStatus) -> list[str]:
    """What is wrong with one projection, in words; empty when it is healthy."""
    found: list[str] = []
    # A saga's parked events are those its parked instances hold: said with them below.
    if row.parked and not (row.saga and row.saga.parked_instances):
        found.append(f"{row.parked} parked event{'' if row.parked == 1 else 's'}")
    if row.state == ProjectionState.State.STOPPED and not row.parked:
        found.append("stopped")
    max_events = cqrs_settings.HEALTH_MAX_LAG_EVENTS
    if max_events is not None and row.lag_events > max_events:
        found.append(f"lag of {row.lag_events} events is over {max_events}")
    max_seconds = cqrs_settings.HEALTH_MAX_LAG_SECONDS
    if max_seconds is not None and row.lag_seconds > max_seconds:
        found.append(f"lag of {row.lag_seconds:.1f} s is over {max_seconds} s")
    # A stopped projection (failing) is unhealthy above already, whatever the setting.
    if degraded(row) and row.state != ProjectionState.State.STOPPED:
        found.append(describe_activity(row))
    if row.saga is not None:
        found.extend(saga_problems(row.saga, held=row.parked))
    return found


def saga_problems(saga: SagaStatus, held: int = 0) -> list[str]:
    """What is wrong with a saga's instances and deadlines, in words.

    ``held``: the saga's parked events, which are the events its parked instances hold
    after the one that failed.
    """
    found: list[str] = []
    if saga.parked_instances:
        n = saga.parked_instances
        later = f" ({held} later event{'' if held == 1 else 's'} held)" if held else ""
        found.append(f"{n} parked instance{'' if n == 1 else 's'}{later}")
    if saga.overdue_deadlines:
        n = saga.overdue_deadlines
        found.append(
            f"{n} overdue deadline{'' if n == 1 else 's'} "
            f"(due more than {cqrs_settings.STALL_SECONDS:g} s ago)"
        )
    return found


def degraded(row: ProjectionStatus) -> bool:
    """Whether the projection's activity counts against health (``HEALTH_DEGRADED_ACTIVITIES``)."""
    return row.activity in cqrs_settings.HEALTH_DEGRADED_ACTIVITIES


def describe_activity(row: ProjectionStatus) -> str:
    """The activity in words, with the figure that matters for it."""
    behind = f"{row.lag_events}{'+' if row.lag_events >= lag_cap() else ''} event" + (
        "" if row.lag_events == 1 else "s"
    )
    if row.activity == Activity.STALLED:
        return f"stalled: no progress for {row.no_progress_seconds:.1f} s, {behind} behind"
    if row.activity == Activity.PAUSED:
        return f"paused, {behind} behind" if row.lag_events else "paused"
    if row.activity == Activity.CATCHING_UP:
        return f"catching up, {behind} behind"
    if row.activity == Activity.FAILING:
        return f"failing on the event at position {row.failing_position}"
    return str(row.activity)


def horizon_problems(horizon: HorizonStatus) -> list[str]:
    """What is wrong with the log's horizon: an open transaction holding events back."""
    max_seconds = cqrs_settings.HEALTH_MAX_LAG_SECONDS
    if not horizon.held_back_events or max_seconds is None:
        return []
    if horizon.held_back_seconds <= max_seconds:
        return []
    return [
        f"{horizon.held_back_events} committed event(s) held back for "
        f"{horizon.held_back_seconds:.1f} s by an open transaction (pid {horizon.pid})"
    ]


def health_report(
    rows: list[ProjectionStatus] | None = None, horizon: HorizonStatus | None = None
) -> dict[str, Any]:
    """Per-projection lag, parked events and problems, the log's horizon, and the verdict."""
    rows = projection_status() if rows is None else rows
    horizon = horizon_status() if horizon is None else horizon
    projections: dict[str, Any] = {}
    for row in rows:
        found = problems(row)
        projections[row.name] = {
            "mode": row.mode,
            "status": row.state,
            "position": row.position,
            "lag_events": row.lag_events,
            "lag_seconds": row.lag_seconds,
            "parked": row.parked,
            "rebuilding": row.rebuilding,
            "healthy": not found,
            "problems": found,
            "activity": row.activity,
            "no_progress_seconds": row.no_progress_seconds,
        }
        if row.saga is not None:
            projections[row.name]["saga"] = row.saga.as_dict()
    held = horizon_problems(horizon)
    healthy = all(p["healthy"] for p in projections.values()) and not held
    return {
        "status": "ok" if healthy else "unhealthy",
        "healthy": healthy,
        "head": rows[0].head if rows else None,
        "horizon": {**horizon.as_dict(), "problems": held},
        "projections": projections,
    }
