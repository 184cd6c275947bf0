"""Apply a batch of stored rows to a projection: prefetch, decode, apply.

    from django_cqrs.projections.batches import apply_rows

    projection = OrderViewProjection(buffered=True)
    last = apply_rows(projection, store.read_rows(after=0, limit=1000), replaying=False)
    projection.flush()

Catch-up batches and rebuilds share this loop; an error in any event becomes a
:class:`~django_cqrs.exceptions.ProjectionApplyError` naming its position.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..exceptions import ProjectionApplyError
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
    per event (a rebuild or catch-up would otherwise be bound by them).
    """
    if projection.buffer is not None:
        rows = list(rows)
        aggregate_ids = {row.aggregate_id for row in rows}
        for model in projection.read_models:
            field = projection.key_fields.get(model)
            if field is None:
                keys: set[Any] = aggregate_ids
            else:
                keys = {row.payload.get(field) for row in rows} - {None}
            projection.buffer.prefetch(model, keys)
    last = None
    for row in rows:
        last = row.position
        if last in skip:
            continue
        try:
            event, envelope = decode_row(row, replaying=replaying)
            projection.apply(event, envelope)
        except Exception as exc:
            raise ProjectionApplyError(
                f"{projection.name} failed on {row.event_type} at position {last}: "
                f"{type(exc).__name__}: {exc}",
                projection=projection.name,
                position=last,
                event_type=row.event_type,
                transaction_id=row.transaction_id,
            ) from exc
    return last
