"""Each projection's reported status: checkpoint, head of the log, lag, run state, activity.

    from django_cqrs.projections.status import projection_status, wait_for_position

    for row in projection_status():
        print(row.name, row.mode, row.position, row.lag_events, row.state, row.activity)
    wait_for_position(OrderView, result.position, timeout=2)   # read your own write

The stored state is :class:`~django_cqrs.models.ProjectionState` (one row per
projection); a :class:`ProjectionStatus` is what is reported about it, with the figures
computed from the log. ``cqrs_status``, the admin dashboard and ``/cqrs/health/`` show
these rows.

Its **activity** says what the projection is doing (:class:`Activity`): ``live`` (at
the head), ``catching up`` (behind, and progressing), ``stalled`` (behind, with no
progress for ``STALL_SECONDS``), ``paused``, ``failing`` (stopped on a parked event, or
retrying a failed one) or ``rebuilding``. Progress is the state row changing (a batch
moving the checkpoint, or an operator resuming, retrying or skipping) or a new event to
apply: a projection counts as stalled when the later of its state row's last change and
the recording of its oldest pending event is more than ``STALL_SECONDS`` ago. A
projection idle for an hour that just got new events is catching up, not stalled.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import time
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from .. import store
from ..conf import cqrs_settings
from ..db.log import START, LogPoint, oldest_open_transaction, points_after
from ..models import ParkedEvent, ProjectionState, SagaDeadline, StoredEvent
from ..sagas.base import COMPENSATED, COMPLETED, FAILED, FINISHED, Saga
from .base import Projection, all_projections, get_projection, projections_for
from .registry import ASYNC, SYNC

State = ProjectionState.State


class Activity(enum.StrEnum):
    """What a projection is doing, as reported (``ProjectionStatus.activity``)."""

    #: At the head of the log (a live sync projection always is).
    LIVE = "live"
    #: Behind the head, and progressing.
    CATCHING_UP = "catching up"
    #: Behind the head, with no progress for more than ``STALL_SECONDS`` (async only).
    STALLED = "stalled"
    #: Paused by an operator: no catch-up runs.
    PAUSED = "paused"
    #: Stopped on a parked event, or retrying a failed one after its backoff.
    FAILING = "failing"
    #: A rebuild is filling its shadow tables (or was interrupted and can resume).
    REBUILDING = "rebuilding"


#: The buckets of ``SagaStatus.instances``: every state a handler sets while the workflow
#: runs ("started", "awaiting_payment", ...) counts as running.
RUNNING = "running"
INSTANCE_BUCKETS = (RUNNING, COMPLETED, COMPENSATED, FAILED)


@dataclasses.dataclass(frozen=True)
class SagaStatus:
    """What is reported about a saga's instances and deadlines, besides its projection's."""

    #: Instances by state: running (any state but the finished ones), completed,
    #: compensated, failed.
    instances: dict[str, int]
    #: Instances held at a failed event (retry or skip them: ``retry_instance()``).
    parked_instances: int
    #: Deadlines that have neither fired nor been cancelled.
    pending_deadlines: int
    #: Pending deadlines due more than ``STALL_SECONDS`` ago (none when it is None).
    overdue_deadlines: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ProjectionStatus:
    """What is reported about one projection."""

    name: str
    mode: str
    #: The checkpoint (sync projections: the head, while live).
    position: int
    head: int
    #: Events after the checkpoint, counted up to ``lag_cap()`` (then the cap: "at least").
    lag_events: int
    lag_seconds: float
    #: The run state: one of ``ProjectionState.State`` (live, paused, stopped, ...).
    state: str
    last_error: str
    parked: int = 0
    rebuilding: bool = False
    #: What it is doing: one of :class:`Activity`.
    activity: str = Activity.LIVE
    #: Seconds without progress while behind (0 when at the head).
    no_progress_seconds: float = 0.0
    #: The position of the event being retried (None when nothing fails).
    failing_position: int | None = None
    #: A saga's instances and deadlines (None: not a saga).
    saga: SagaStatus | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``cqrs_status --json``); the run state goes out as ``status``.

        A saga's entry has one key more, ``saga`` (:meth:`SagaStatus.as_dict`).
        """
        data = dataclasses.asdict(self)
        data["status"] = data.pop("state")
        out = {key: data[key] for key in _JSON_KEYS}
        if self.saga is not None:
            out["saga"] = self.saga.as_dict()
        return out


#: The JSON keys, in the order ``cqrs_status --json`` has always printed them.
_JSON_KEYS = (
    *("name", "mode", "position", "head", "lag_events", "lag_seconds", "status"),
    *("last_error", "parked", "rebuilding"),
    # Added with the activity (the keys before keep their meaning).
    *("activity", "no_progress_seconds"),
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
    classes = sorted(all_projections(), key=lambda c: c.name)
    sagas = saga_status([c for c in classes if issubclass(c, Saga) and c.saga_class is c], now)
    rows = []
    for cls in classes:
        state = states.get(cls.name)
        run_state = state.state if state else State.LIVE
        if cls.mode == SYNC and run_state == State.LIVE:
            # Sync projections apply each event in the transaction that records it.
            position, lag, oldest = head, 0, None
        else:
            point = state.point if state else START
            position = point.position
            lag, oldest = _events_after(point, using)
        waited = _no_progress_seconds(state, oldest, now) if lag else 0.0
        rows.append(
            ProjectionStatus(
                name=cls.name,
                mode=cls.mode,
                position=position,
                head=head,
                lag_events=lag,
                lag_seconds=_lag_seconds(oldest, now),
                state=str(run_state),
                last_error=state.last_error if state else "",
                parked=parked.get(cls.name, 0),
                rebuilding=bool(state and state.rebuild_position is not None),
                activity=str(_activity(cls, state, lag, waited)),
                no_progress_seconds=waited,
                failing_position=state.failing_position if state else None,
                saga=sagas.get(cls.name),
            )
        )
    return rows


def saga_status(sagas: list[type[Saga]], now: dt.datetime | None = None) -> dict[str, SagaStatus]:
    """The :class:`SagaStatus` of each of ``sagas``, by name.

    One grouped count of each saga's instance table by state (its indexed column), one
    count of its parked instances, and one count of the pending deadlines of all of them
    (the partial index of pending deadlines).
    """
    if not sagas:
        return {}
    now = now or timezone.now()
    using = cqrs_settings.DATABASE
    pending = SagaDeadline.objects.using(using).filter(
        fired_at__isnull=True, cancelled_at__isnull=True, saga__in=[cls.name for cls in sagas]
    )
    cutoff = overdue_cutoff(now)
    late = Q(due_at__lt=cutoff) if cutoff is not None else Q(pk__isnull=True)
    deadlines: dict[str, tuple[int, int]] = {
        name: (n, n_late)
        for name, n, n_late in pending.order_by()
        .values("saga")
        .annotate(n=Count("pk"), late=Count("pk", filter=late))
        .values_list("saga", "n", "late")
    }
    found: dict[str, SagaStatus] = {}
    for cls in sagas:
        # The instances are read as the saga reads them: its model's default manager.
        instances = cls.instance_model._default_manager.all()
        by_state = dict.fromkeys(INSTANCE_BUCKETS, 0)
        counts = instances.order_by().values("state").annotate(n=Count("pk"))
        for state, n in counts.values_list("state", "n"):
            bucket = state if state in FINISHED else RUNNING
            by_state[bucket] += n
        n_pending, n_overdue = deadlines.get(cls.name, (0, 0))
        found[cls.name] = SagaStatus(
            instances=by_state,
            parked_instances=instances.filter(parked=True).count(),
            pending_deadlines=n_pending,
            overdue_deadlines=n_overdue,
        )
    return found


def overdue_cutoff(now: dt.datetime | None = None) -> dt.datetime | None:
    """A pending deadline due before this is overdue: ``STALL_SECONDS`` ago (None: never).

    Its one-off task fires a deadline when it is due, and the periodic schedule fires
    whatever that missed; one still pending ``STALL_SECONDS`` later has no worker firing
    it, or a handler that keeps failing (its ``last_error`` says why).
    """
    stall = cqrs_settings.STALL_SECONDS
    if stall is None:
        return None
    return (now or timezone.now()) - dt.timedelta(seconds=float(stall))


def _no_progress_seconds(
    state: ProjectionState | None, oldest_unapplied: dt.datetime | None, now: dt.datetime
) -> float:
    """Seconds since the projection last progressed, or had something new to apply.

    Progress is the state row changing (``updated_at``: a batch moved the checkpoint, an
    operator resumed, retried or skipped); an event recorded after that starts the clock
    again, so a projection idle for an hour that just got new events has waited seconds.
    """
    moments = [t for t in (state.updated_at if state else None, oldest_unapplied) if t]
    if not moments:
        return 0.0
    return round(max((now - max(moments)).total_seconds(), 0.0), 3)


def _activity(
    cls: type[Projection], state: ProjectionState | None, lag: int, waited: float
) -> Activity:
    """What the projection is doing, most pressing first: an operator's pause, a failure,
    a stall (even during a rebuild: its live tables are what readers see), a rebuild."""
    run_state = state.state if state else State.LIVE
    if run_state == State.PAUSED:
        return Activity.PAUSED
    if run_state == State.STOPPED or (state and state.failing_position is not None):
        return Activity.FAILING
    stall = cqrs_settings.STALL_SECONDS
    if cls.mode == ASYNC and lag and stall is not None and waited > float(stall):
        return Activity.STALLED
    if state and (run_state == State.REBUILDING or state.rebuild_position is not None):
        return Activity.REBUILDING
    return Activity.CATCHING_UP if lag else Activity.LIVE


#: Lag is counted up to this many events (or one more than HEALTH_MAX_LAG_EVENTS): a
#: projection a million events behind costs a bounded count, not a scan of the log.
LAG_COUNT_CAP = 10_000


def lag_cap() -> int:
    """How far lag is counted exactly; beyond it, ``lag_events`` is the cap."""
    limit = cqrs_settings.HEALTH_MAX_LAG_EVENTS
    return max(LAG_COUNT_CAP, int(limit) + 1 if limit is not None else 0)


def _events_after(point: LogPoint, using: str) -> tuple[int, dt.datetime | None]:
    """Events stored after ``point`` (counted, since positions have gaps, up to
    :func:`lag_cap`), and when the oldest of them was recorded."""
    after = StoredEvent.objects.using(using).filter(points_after(StoredEvent, point))
    ordered = after.order_by("transaction_id", "position")
    oldest = ordered.values_list("recorded_at", flat=True).first()
    if oldest is None:
        return 0, None
    return ordered.values_list("position", flat=True)[: lag_cap()].count(), oldest


def _lag_seconds(oldest_unapplied: dt.datetime | None, now: dt.datetime) -> float:
    if oldest_unapplied is None:
        return 0.0
    return round(max((now - oldest_unapplied).total_seconds(), 0.0), 3)


@dataclasses.dataclass(frozen=True)
class HorizonStatus:
    """Whether an open transaction holds readers back, and since when."""

    #: Committed events no reader can read yet (an older transaction is still open).
    held_back_events: int
    #: Seconds the oldest open transaction (the one holding the horizon) has run.
    held_back_seconds: float
    #: Its backend's process id and database (PostgreSQL), to find it in pg_stat_activity.
    pid: int | None = None
    database: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def horizon_status() -> HorizonStatus:
    """What holds the log's readers back: nothing, or the oldest open transaction."""
    using = cqrs_settings.DATABASE
    held = store.held_back(store.horizon(using), using)
    if not held:
        return HorizonStatus(0, 0.0)
    oldest = oldest_open_transaction(using)
    if oldest is None:  # it ended meanwhile
        return HorizonStatus(held, 0.0)
    age = round(max((timezone.now() - oldest.started_at).total_seconds(), 0.0), 3)
    return HorizonStatus(held, age, oldest.pid, oldest.database)


def wait_for_position(
    target: Any = None,
    position: int = 0,
    timeout: float | None = None,
    *,
    poll_interval: float = 0.1,
) -> bool:
    """Wait until the projections behind ``target`` reached ``position``; return whether they did.

    ``target`` is a read-model class, a projection class or name, a list of those, or
    None for every projection. Sync projections are current as soon as the event at
    ``position`` is stored (they commit with it); the others once their checkpoint has
    passed it in the log's order. ``timeout`` defaults to ``MIN_POSITION_TIMEOUT`` seconds.

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
        target = get_projection(target)
    if isinstance(target, type) and issubclass(target, Projection):
        # A saga in partitions is behind until every partition has passed the position.
        return list(target.runs())
    return projections_for(target)


def _reached(names: set[str], position: int) -> bool:
    using = cqrs_settings.DATABASE
    point = store.point_of(position, using)
    if point is None:
        # No event there: beyond the head nothing has reached it yet; below it, a
        # rolled-back append left the position unused and there is nothing to wait for.
        return store.head(using) >= position
    waiting = [name for name in names if get_projection(name).mode != SYNC]
    if not waiting:
        return True  # sync projections commit with the event itself
    checkpoints = {
        state.name: state.point
        for state in ProjectionState.objects.using(using).filter(name__in=waiting)
    }
    return all(checkpoints.get(name, START) >= point for name in waiting)
