"""Apply a batch of stored rows to a projection: prefetch, decode, apply, write.

    from django_cqrs.projections.batches import apply_batch, apply_rows

    projection = OrderViewProjection(buffered=True)
    last = apply_rows(projection, store.read_rows(after=0, limit=1000), replaying=False)
    projection.flush()

    with transaction.atomic():      # what catch-up batches and rebuilds do
        apply_batch(lambda: OrderViewProjection(buffered=True), rows, replaying=False,
                    using="default")

Catch-up batches and rebuilds share this loop; an error in any event becomes a
:class:`~django_cqrs.exceptions.ProjectionApplyError` naming its position, whether the
event cannot be decoded, its handler raised, or its rows cannot be written.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

from django.db import DatabaseError, transaction

from ..db.errors import is_lock_timeout, is_transaction_conflict
from ..events import Event, EventEnvelope, event_class, upcast_payload
from ..exceptions import (
    LockTimeoutError,
    ProjectionApplyError,
    ProjectionError,
    TransactionConflictError,
)
from ..store import EventRow, decode_row
from .base import Projection


def apply_rows(
    projection: Projection,
    rows: Iterable[EventRow],
    *,
    replaying: bool,
    skip: frozenset[int] = frozenset(),
) -> int | None:
    """Decode and apply raw event rows (except positions in ``skip``); return the last seen.

    With a buffered projection, the read-model rows the batch will touch are loaded
    first, in bulk: those whose primary key is an event's aggregate id, or the value of
    the event field named in ``key_fields`` for that read model. Rows then cost no query
    per event (a rebuild or catch-up would otherwise be bound by them). The prefetch
    reads payloads in their current shape (a payload stored at an older schema version
    is upcast for it): a payload of the wrong shape loads nothing and fails where it is
    decoded, like any other.

    A stored event that cannot be decoded (a payload that is not an object, unknown or
    missing fields, a value its field cannot read, a schema version the code does not
    know) raises a :class:`ProjectionApplyError` with ``retryable=False``, unless newer
    code would read it (a schema version above the code's: a deploy may be under way).
    """
    if projection.buffer is not None:
        rows = list(rows)
        aggregate_ids = {row.aggregate_id for row in rows}
        for model in projection.read_models:
            field = projection.key_fields.get(model)
            keys: Iterable[Any] = aggregate_ids if field is None else _field_values(rows, field)
            projection.buffer.prefetch(model, keys)
    handled = set(projection.handled_event_types())
    last = None
    for row in rows:
        last = row.position
        if last in skip:
            continue
        try:
            event, envelope = _decode(projection, row, replaying, handled)
        except Exception as exc:
            raise apply_error(projection, row, exc, retryable=_newer_than_code(row)) from exc
        try:
            projection.apply(event, envelope)
        except Exception as exc:
            raise apply_error(
                projection, row, exc, retryable=True, transient=_transient(exc)
            ) from exc
    return last


def apply_batch(
    make: Callable[[], Projection],
    rows: Sequence[EventRow],
    *,
    replaying: bool,
    skip: frozenset[int] = frozenset(),
    using: str,
) -> int | None:
    """Apply ``rows`` to ``make()`` and write its buffered rows; return the last position.

    Call it inside the batch's transaction. When the write fails (a value the column
    cannot hold, a constraint), the rows are applied and written again one by one, in
    savepoints, to find the event whose rows cannot be written: that event's
    :class:`ProjectionApplyError` is raised (the transaction is the caller's to roll
    back). Lock timeouts and transaction conflicts are raised as they are.
    """
    projection = make()
    last = apply_rows(projection, rows, replaying=replaying, skip=skip)
    try:
        with transaction.atomic(using=using):  # a savepoint: the search below can go on
            projection.flush()
    except Exception as exc:
        if _transient(exc):
            raise
        if len(rows) == 1:
            raise apply_error(projection, rows[0], exc, retryable=True) from exc
        _locate_write_failure(make, rows, replaying=replaying, skip=skip, using=using)
        raise  # no event fails alone: the batch's error as it is
    return last


def _transient(exc: BaseException) -> bool:
    """A lock wait that timed out or a transaction the database aborted: not the event's."""
    if isinstance(exc, LockTimeoutError | TransactionConflictError):
        return True  # what the command bus makes of them, in a command a handler sent
    return isinstance(exc, DatabaseError) and (is_lock_timeout(exc) or is_transaction_conflict(exc))


def _locate_write_failure(
    make: Callable[[], Projection],
    rows: Sequence[EventRow],
    *,
    replaying: bool,
    skip: frozenset[int],
    using: str,
) -> None:
    """Write the rows' changes event by event; raise the error of the first that fails."""
    for row in rows:
        if row.position in skip:
            continue
        projection = make()
        try:
            with transaction.atomic(using=using):
                apply_rows(projection, [row], replaying=replaying)
                projection.flush()
        except ProjectionApplyError:
            raise
        except Exception as exc:
            if _transient(exc):
                raise
            raise apply_error(projection, row, exc, retryable=True) from exc


def _field_values(rows: list[EventRow], field: str) -> list[Hashable]:
    """The values of ``field`` in the rows' payloads (objects only; None and lists left out)."""
    return [
        value
        for row in rows
        if isinstance(payload := _current_payload(row), dict)
        and isinstance(value := payload.get(field), Hashable)
        and value is not None
    ]


def _current_payload(row: EventRow) -> Any:
    """The row's payload in its class's current shape; as stored when it cannot be upcast
    (decoding it then fails, and names the error)."""
    try:
        if row.schema_version != event_class(row.event_type).schema_version:
            return upcast_payload(row.event_type, row.payload, row.schema_version)
    except Exception:
        pass
    return row.payload


def _decode(
    projection: Projection, row: EventRow, replaying: bool, handled: set[str]
) -> tuple[Event, EventEnvelope]:
    event, envelope = decode_row(row, replaying=replaying)
    if row.event_type in handled and type(event) not in projection.handlers:
        raise ProjectionError(
            f"{row.event_type} decodes to {type(event).__module__}.{type(event).__qualname__}, "
            f"which {projection.name} does not handle (was its module imported again?)"
        )
    return event, envelope


def _newer_than_code(row: EventRow) -> bool:
    """Whether the row's schema version is above its class's: newer code may read it."""
    try:
        return row.schema_version > event_class(row.event_type).schema_version
    except Exception:
        return False


def apply_error(
    projection: Projection | type[Projection],
    row: EventRow,
    exc: Exception,
    *,
    retryable: bool,
    transient: bool = False,
) -> ProjectionApplyError:
    return ProjectionApplyError(
        f"{projection.name} failed on {row.event_type} at position {row.position}: "
        f"{type(exc).__name__}: {exc}",
        projection=projection.name,
        position=row.position,
        event_type=row.event_type,
        transaction_id=row.transaction_id,
        retryable=retryable,
        transient=transient,
    )
