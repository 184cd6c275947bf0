"""The event store: append events to the log and read them back as typed objects.

    from django_cqrs import store

    store.head()                              # newest position in the log (0 if empty)
    rows = store.read_rows(after=store.START, limit=100)   # in the log's order
    for event, envelope in store.read(after=rows[-1].point, limit=100):
        ...
    store.stream(order)                       # one aggregate's events, oldest first

**The log's order** is ``(transaction_id, position)``: a :class:`LogPoint`. Appends take
no lock, so commands on different aggregates commit concurrently; readers read only
events whose transaction is older than the *horizon* of open transactions
(:func:`horizon`), where nothing can appear later (see :mod:`django_cqrs.db.log`). A
reader that has read up to a point therefore never finds a new event before it, never
reads one twice, and every reader agrees on the order. A transaction left open holds
readers back until it ends; it never makes them skip. Positions stay the events' ids:
unique, growing with time, the integers clients get back (``CQRS-Position``) — but a
position can commit after a higher one, so tail the log by point, not by position.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from django.utils import timezone

from .db import log
from .db.log import START, LogPoint, lock_log, points_after, points_before
from .events import Event, EventEnvelope, decode_event
from .models import StoredEvent
from .serialization import to_json_dict


class EventRow(NamedTuple):
    """One stored event as read from the log, before decoding: the readers' protocol."""

    position: int
    event_type: str
    schema_version: int
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    payload: Any
    metadata: dict[str, Any]
    recorded_at: dt.datetime
    #: The appending transaction's id (0 on SQLite, and for events stored before 0.2).
    transaction_id: int = 0

    @property
    def point(self) -> LogPoint:
        """Where the event stands in the log's order."""
        return LogPoint(self.transaction_id, self.position)


#: The log's columns in ``EventRow`` order.
EVENT_FIELDS: tuple[str, ...] = EventRow._fields


#: ``horizon=NOW``: read below the horizon as it is when the call runs.
NOW = "now"


def lock_against_appends(using: str) -> None:
    """Make appenders wait until this transaction ends (a rebuild's switch)."""
    lock_log(StoredEvent, using, "SHARE")


def append(
    events: Sequence[Event],
    *,
    aggregate_type: str,
    aggregate_id: Any,
    first_version: int,
    metadata: dict[str, Any],
    using: str,
) -> list[EventEnvelope]:
    """Append ``events`` of one aggregate; return their envelopes (positions assigned).

    No lock: the database stamps each row with the appending transaction's id, and
    readers order by it (see the module's docstring).
    """
    now = timezone.now()
    rows = [
        StoredEvent(
            event_type=event.event_type,
            schema_version=event.schema_version,
            aggregate_type=aggregate_type,
            aggregate_id=str(aggregate_id),
            aggregate_version=first_version + index,
            payload=to_json_dict(event),
            metadata=metadata,
            recorded_at=now,
        )
        for index, event in enumerate(events)
    ]
    if len(rows) == 1:
        # Most commands record one event: a plain INSERT ... RETURNING is cheaper.
        rows[0].save(force_insert=True, using=using)
    else:
        StoredEvent.objects.using(using).bulk_create(rows)
    return [envelope_of(row) for row in rows]


def envelope_of(row: StoredEvent, *, replaying: bool = False) -> EventEnvelope:
    """The envelope of a stored row."""
    return EventEnvelope(
        position=row.position,
        event_type=row.event_type,
        schema_version=row.schema_version,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        aggregate_version=row.aggregate_version,
        metadata=row.metadata,
        recorded_at=row.recorded_at,
        replaying=replaying,
    )


def head(using: str = "default") -> int:
    """Position of the newest committed event (the highest position), 0 for an empty log."""
    last = (
        StoredEvent.objects.using(using).order_by("-position").values_list("position", flat=True)
    ).first()
    return last or 0


def horizon(using: str = "default") -> int | None:
    """Events of transactions below this id are final (None: all committed ones are)."""
    return log.horizon(using)


def point_of(position: int, using: str = "default") -> LogPoint | None:
    """Where the event at ``position`` stands in the log's order (None: no such event)."""
    row = (
        StoredEvent.objects.using(using)
        .filter(position=position)
        .values_list("transaction_id", "position")
        .first()
    )
    return None if row is None else LogPoint(*row)


def _bounded(
    using: str,
    *,
    after: LogPoint | None,
    until: LogPoint | None,
    before: LogPoint | None,
    horizon: int | str | None,
) -> Any:
    qs = StoredEvent.objects.using(using).all()
    if after is not None and after != START:
        qs = qs.filter(points_after(StoredEvent, after))
    if until is not None:
        qs = qs.filter(points_before(StoredEvent, until, inclusive=True))
    if before is not None:
        qs = qs.filter(points_before(StoredEvent, before))
    limit = log.horizon(using) if horizon == NOW else horizon
    if limit is not None:
        qs = qs.filter(transaction_id__lt=limit)
    return qs


def last_point(
    *,
    until: LogPoint | None = None,
    before: LogPoint | None = None,
    horizon: int | str | None = NOW,
    using: str = "default",
) -> LogPoint:
    """The newest readable point (below the horizon; within the bounds), or ``START``."""
    row = (
        _bounded(using, after=None, until=until, before=before, horizon=horizon)
        .order_by("-transaction_id", "-position")
        .values_list("transaction_id", "position")
        .first()
    )
    return START if row is None else LogPoint(*row)


def held_back(horizon: int | None, using: str = "default") -> int:
    """Committed events that readers cannot read yet: at or above the horizon."""
    if horizon is None:
        return 0
    return StoredEvent.objects.using(using).filter(transaction_id__gte=horizon).count()


def read_rows(
    *,
    after: LogPoint | int = START,
    limit: int,
    event_types: Iterable[str] | None = None,
    until: LogPoint | None = None,
    before: LogPoint | None = None,
    horizon: int | str | None = NOW,
    using: str = "default",
) -> list[EventRow]:
    """Undecoded rows after ``after`` in the log's order, oldest first.

    ``until`` (inclusive) and ``before`` (exclusive) bound the range; ``horizon`` is
    where reading stops: ``NOW`` (the default) computes it, an id reuses one, ``None``
    reads every committed event (only where no append can be in flight: a rebuild's
    switch, which holds appends back). ``after`` may be a position: the point of the
    event there (browsing by position; a reader that tails the log keeps the last row's
    ``point``, since a lower position can commit after a higher one).
    """
    qs = _bounded(using, after=_resolve(after, using), until=until, before=before, horizon=horizon)
    if event_types is not None:
        qs = qs.filter(event_type__in=list(event_types))
    ordered = qs.order_by("transaction_id", "position").values_list(*EVENT_FIELDS)[:limit]
    return list(map(EventRow._make, ordered))


def rows_at(positions: Iterable[int], *, using: str = "default") -> list[EventRow]:
    """The stored rows at ``positions``, in the log's order (a parked event's, say)."""
    qs = StoredEvent.objects.using(using).filter(position__in=list(positions))
    return list(
        map(EventRow._make, qs.order_by("transaction_id", "position").values_list(*EVENT_FIELDS))
    )


def _resolve(after: LogPoint | int, using: str) -> LogPoint:
    """A point for ``after``: itself, or for a position, the point of the event there (of
    the nearest event below it, for a position no event holds)."""
    if isinstance(after, LogPoint):
        return after
    nearest = (
        StoredEvent.objects.using(using)
        .filter(position__lte=after)
        .order_by("-position")
        .values_list("transaction_id", flat=True)
        .first()
    )
    return START if nearest is None else LogPoint(nearest, after)


def decode_row(row: EventRow, *, replaying: bool = False) -> tuple[Event, EventEnvelope]:
    """Decode one row into the typed event and its envelope."""
    position, event_type, schema_version, agg_type, agg_id, agg_version, payload, meta, at, _ = row
    event = decode_event(event_type, schema_version, payload)
    envelope = EventEnvelope(
        position=position,
        event_type=event_type,
        schema_version=schema_version,
        aggregate_type=agg_type,
        aggregate_id=agg_id,
        aggregate_version=agg_version,
        metadata=meta,
        recorded_at=at,
        replaying=replaying,
    )
    return event, envelope


def read(
    *,
    after: LogPoint | int = START,
    limit: int = 1000,
    event_types: Iterable[str] | None = None,
    using: str = "default",
) -> list[tuple[Event, EventEnvelope]]:
    """Up to ``limit`` typed events after ``after`` (a point, or an event's position)."""
    rows = read_rows(after=after, limit=limit, event_types=event_types, using=using)
    return [decode_row(row) for row in rows]


def iter_all(
    *,
    after: LogPoint | int = START,
    until: LogPoint | None = None,
    batch_size: int = 1000,
    event_types: Iterable[str] | None = None,
    horizon: int | str | None = NOW,
    using: str = "default",
) -> Iterator[list[EventRow]]:
    """Batches of undecoded rows after ``after`` (through ``until``), by keyset pagination
    (bounded memory); the horizon is taken once, when the first batch is read."""
    types = list(event_types) if event_types is not None else None
    limit = log.horizon(using) if horizon == NOW else horizon
    point = _resolve(after, using)
    while True:
        rows = read_rows(
            after=point,
            limit=batch_size,
            event_types=types,
            until=until,
            horizon=limit,
            using=using,
        )
        if not rows:
            return
        yield rows
        point = rows[-1].point


def stream(aggregate: Any, *, using: str = "default") -> list[tuple[Event, EventEnvelope]]:
    """All events of one aggregate instance, oldest first."""
    rows = StoredEvent.objects.using(using).for_aggregate(aggregate).values_list(*EVENT_FIELDS)
    return [decode_row(EventRow._make(row)) for row in rows]
