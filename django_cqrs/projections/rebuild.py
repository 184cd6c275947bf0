"""Rebuild read models from the event log while the application keeps running.

    from django_cqrs.projections.rebuild import rebuild
    rebuild("orders.OrderViewProjection", progress=lambda done, total: ...)

How it works:

1. **Fill** a shadow table per read model (same columns, no secondary indexes) by
   replaying the log in batches; each batch commits with the position it reached, so an
   interrupted rebuild resumes where it stopped. The live tables keep serving queries
   and keep being updated (sync receivers or async catch-up) meanwhile.
2. **Switch** in one short transaction: stop new events from reaching the projection
   (sync: ``LOCK TABLE <log> IN SHARE MODE`` makes appends wait; async: the state row
   lock makes catch-up wait), replay the tail into the shadow, replace the live rows
   with the shadow's, and set the checkpoint to the last event replayed. Readers see the
   old rows until the commit and the new ones after it: never an empty table.
3. Drop the shadow tables.

Handlers are called directly with ``envelope.replaying = True`` (``event_recorded`` is not
re-sent, so other receivers do not run again) and must write through ``self.get()``,
``self.put()`` and ``self.delete()`` so their rows land in the shadow tables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import models, transaction
from django.utils import timezone

from .. import store
from ..conf import cqrs_settings
from ..db.log import START, LogPoint
from ..db.shadow import create_table, drop_table, replace_rows, shadow_model, table_exists
from ..exceptions import ProjectionApplyError, ProjectionError
from ..models import ProjectionState
from .base import Projection, get_projection
from .batches import apply_batch
from .checkpoints import ensure_state, lock_state, park, resolve_parked, skipped_positions
from .registry import SYNC

Progress = Callable[[int, int], None]


@contextmanager
def _stop_new_events(cls: type[Projection], using: str) -> Iterator[None]:
    if cls.mode == SYNC:
        store.lock_against_appends(using)
    else:
        lock_state(cls.name, using)
    yield


def _replay(
    cls: type[Projection],
    targets: dict[type[models.Model], type[models.Model]],
    *,
    after: LogPoint,
    until: LogPoint,
    size: int,
    skip: frozenset[int],
    horizon: int | None,
    using: str,
    progress: Callable[[int], None] | None,
    commit_each: bool,
) -> int:
    """Replay events (after, until] into the shadow tables; return how many were read.

    Every event up to ``until`` has been read when it returns; with ``commit_each`` the
    rebuild's point is saved after each batch and, at the end, as ``until``.
    """
    applied = 0
    types = cls.handled_event_types()
    for rows in store.iter_all(
        after=after, until=until, batch_size=size, event_types=types, horizon=horizon, using=using
    ):
        with transaction.atomic(using=using):
            make = functools.partial(cls, targets=targets)
            apply_batch(make, rows, replaying=True, skip=skip, using=using)
            if commit_each:
                _save_progress(cls, rows[-1].point, using)
        applied += len(rows)
        if progress:
            progress(max(row.position for row in rows))
    if commit_each:
        _save_progress(cls, until, using)
    return applied


def _save_progress(cls: type[Projection], point: LogPoint, using: str) -> None:
    ProjectionState.objects.using(using).filter(name=cls.name).update(
        rebuild_position=point.position, rebuild_transaction_id=point.transaction_id
    )


def rebuild(
    projection: str | type[Projection],
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
    restart: bool = False,
) -> int:
    """Rebuild the projection's read models from the log; return the events applied.

    Resumes an interrupted rebuild unless ``restart`` is True. ``progress(done, total)``
    gets the highest position replayed so far and the head of the log.

    An event that fails (it cannot be decoded, or a handler raises) is parked and the
    rebuild stops there with a :class:`ProjectionError` that says how to go on: skip the
    event (``catchup.skip``, ``cqrs_skip``) or fix the cause, then rebuild again (it
    resumes). Events an operator skipped are passed over.
    """
    cls = get_projection(projection) if isinstance(projection, str) else projection
    try:
        return _rebuild(cls, batch_size=batch_size, progress=progress, restart=restart)
    except ProjectionApplyError as exc:
        park(cls.name, exc, attempts=1, skipped=False, using=cqrs_settings.DATABASE)
        raise ProjectionError(
            f"The rebuild of {cls.name} stopped at position {exc.position} and parked the "
            f"event there: {exc}. Skip it (manage.py cqrs_skip {cls.name} {exc.position}) or "
            f"fix the cause, then rebuild again: it resumes where it stopped."
        ) from exc


def _rebuild(
    cls: type[Projection],
    *,
    batch_size: int | None,
    progress: Progress | None,
    restart: bool,
) -> int:
    using = cqrs_settings.DATABASE
    size = int(batch_size or cqrs_settings.REBUILD_BATCH_SIZE)
    state = ensure_state(cls.name, using)
    targets = {model: shadow_model(model, using) for model in cls.read_models}
    resumable = (
        not restart
        and state.rebuild_position is not None
        and all(table_exists(shadow, using) for shadow in targets.values())
    )
    if resumable:
        point = LogPoint(int(state.rebuild_transaction_id or 0), int(state.rebuild_position or 0))
    else:
        for shadow in targets.values():
            create_table(shadow, using)
        point = START
        ProjectionState.objects.using(using).filter(name=cls.name).update(
            rebuild_position=0, rebuild_transaction_id=0, rebuild_started_at=timezone.now()
        )
    skip = skipped_positions(cls.name, 0, using)
    seen = [point.position]

    def report(position: int) -> None:
        seen[0] = max(seen[0], position)
        if progress:
            progress(seen[0], max(store.head(using), seen[0]))

    replay = functools.partial(
        _replay, cls, targets, size=size, skip=skip, using=using, progress=report
    )
    # Fill: passes up to the last readable event as the log grows, until a pass replays
    # no more than one batch (the tail left for the switch is small).
    applied = 0
    while True:
        horizon = store.horizon(using)
        last = store.last_point(horizon=horizon, using=using)
        if last <= point:
            break
        replayed = replay(after=point, until=last, horizon=horizon, commit_each=True)
        applied += replayed
        point = last
        if replayed <= size:
            break
    # Switch: the tail and the swap in one transaction, with new events held back. A sync
    # projection's switch holds appends back (and waits for those in flight), so every
    # committed event is final and it reads them all; an async one reads below the
    # horizon and catch-up goes on from there.
    with transaction.atomic(using=using), _stop_new_events(cls, using):
        horizon = None if cls.mode == SYNC else store.horizon(using)
        last = max(store.last_point(horizon=horizon, using=using), point)
        applied += replay(after=point, until=last, horizon=horizon, commit_each=False)
        for live, shadow in targets.items():
            replace_rows(live, shadow, using)
        resolve_parked(cls.name, using)  # the replay has applied (or skipped) them all
        ProjectionState.objects.using(using).filter(name=cls.name).update(
            position=last.position,
            transaction_id=last.transaction_id,
            position_recorded_at=timezone.now() if last != START else None,
            last_error="",
            failing_position=None,
            attempts=0,
            next_retry_at=None,
            rebuild_position=None,
            rebuild_transaction_id=None,
            rebuild_started_at=None,
            state=models.Case(
                models.When(state=ProjectionState.State.PAUSED, then=models.Value("paused")),
                default=models.Value(ProjectionState.State.LIVE),
            ),
        )
    for shadow in targets.values():
        drop_table(shadow, using)
    if progress:
        head = store.head(using)
        progress(head, head)
    return applied
