"""The event store: append events to the log and read them back as typed objects.

    from django_cqrs import store

    store.head()                              # last position in the log (0 if empty)
    for event, envelope in store.read(after=0, limit=100):
        ...
    store.stream(order)                       # one aggregate's events, oldest first

Appends take the log's table lock on PostgreSQL (``LOCK TABLE ... IN EXCLUSIVE MODE``,
held to commit) so positions are handed out in commit order: a reader that has seen
position N never later finds a new event below N. SQLite has one writer at a time, which
gives the same guarantee. Readers are never blocked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from django.utils import timezone

from .db.log import lock_log
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


#: The log's columns in ``EventRow`` order.
EVENT_FIELDS: tuple[str, ...] = EventRow._fields


def lock_for_append(using: str) -> None:
    """Serialize appends until commit so that position order equals commit order."""
    lock_log(StoredEvent, using, "EXCLUSIVE")


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
    """Append ``events`` of one aggregate; return their envelopes (positions assigned)."""
    lock_for_append(using)
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
    """Position of the newest committed event, 0 for an empty log."""
    last = (
        StoredEvent.objects.using(using).order_by("-position").values_list("position", flat=True)
    ).first()
    return last or 0


def read_rows(
    *,
    after: int,
    limit: int,
    event_types: Iterable[str] | None = None,
    until: int | None = None,
    using: str = "default",
) -> list[EventRow]:
    """Undecoded rows after ``after`` (up to ``until``), oldest first."""
    qs = StoredEvent.objects.using(using).filter(position__gt=after)
    if until is not None:
        qs = qs.filter(position__lte=until)
    if event_types is not None:
        qs = qs.filter(event_type__in=list(event_types))
    return list(map(EventRow._make, qs.order_by("position").values_list(*EVENT_FIELDS)[:limit]))


def decode_row(row: EventRow, *, replaying: bool = False) -> tuple[Event, EventEnvelope]:
    """Decode one row into the typed event and its envelope."""
    position, event_type, schema_version, agg_type, agg_id, agg_version, payload, meta, at = row
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
    after: int = 0,
    limit: int = 1000,
    event_types: Iterable[str] | None = None,
    using: str = "default",
) -> list[tuple[Event, EventEnvelope]]:
    """Up to ``limit`` typed events after position ``after``, oldest first."""
    rows = read_rows(after=after, limit=limit, event_types=event_types, using=using)
    return [decode_row(row) for row in rows]


def iter_all(
    *,
    after: int = 0,
    until: int | None = None,
    batch_size: int = 1000,
    event_types: Iterable[str] | None = None,
    using: str = "default",
) -> Iterator[list[EventRow]]:
    """Batches of undecoded rows from ``after`` to ``until`` (keyset pagination: bounded memory)."""
    types = list(event_types) if event_types is not None else None
    while True:
        rows = read_rows(after=after, limit=batch_size, event_types=types, until=until, using=using)
        if not rows:
            return
        yield rows
        after = rows[-1].position


def stream(aggregate: Any, *, using: str = "default") -> list[tuple[Event, EventEnvelope]]:
    """All events of one aggregate instance, oldest first."""
    rows = StoredEvent.objects.using(using).for_aggregate(aggregate).values_list(*EVENT_FIELDS)
    return [decode_row(EventRow._make(row)) for row in rows]
