"""Projections turn events into read-model rows.

    from django_cqrs.projections import Projection, handles

    class OrderViewProjection(Projection):
        read_models = [OrderView]
        mode = "sync"                  # applied inside the command's transaction

        @handles(OrderPlaced)
        def placed(self, event: OrderPlaced, envelope: EventEnvelope) -> None:
            self.put(OrderView(id=event.order_id, status="placed", ...))

        @handles(OrderShipped)
        def shipped(self, event: OrderShipped, envelope: EventEnvelope) -> None:
            view = self.get(OrderView, event.order_id)
            view.status = "shipped"
            self.put(view)

Write through ``self.get()``, ``self.put()``, ``self.add()`` and ``self.delete()``: live
they run at once, during a rebuild or catch-up they are buffered and flushed in bulk once
per batch, which is what makes rebuilds fast. Plain ORM calls (``create()``, ``save()``,
``.update(n=F("n") + 1)``, ``update_or_create()``, ``delete()``, ``bulk_create()``,
related managers) work too, live and in a rebuild, which redirects them to its shadow
tables; they are not batched. A rebuild refuses, before it is sent, a write to a table
that is not in ``read_models`` (``RebuildWriteError``): it fails and the live rows stay.
Use one style per read model (the buffer does not see ORM writes of the same batch).
``envelope.replaying`` is True during a rebuild: skip side effects then.

A projection's ``name`` defaults to ``"<app_label>.<ClassName>"``.

The package's modules: ``base`` (this API), ``registry`` (classes by name),
``buffer`` (batched writes), ``batches`` (decode and apply a batch), ``checkpoints``
(the stored state and its locks), ``catchup`` (async catch-up, retries, parking),
``rebuild``, ``status`` (lag and state as reported) and ``health`` (the verdict).
"""

from __future__ import annotations

from .base import (
    Projection,
    all_projections,
    get_projection,
    handles,
    projections_for,
    register,
    unregister,
)
from .registry import ASYNC, MODES, SYNC

__all__ = [
    "ASYNC",
    "MODES",
    "SYNC",
    "Projection",
    "all_projections",
    "get_projection",
    "handles",
    "projections_for",
    "register",
    "unregister",
]
