"""Rebuild read models from the event log while the application keeps running.

    from django_cqrs.projections.rebuild import rebuild
    rebuild("orders.OrderViewProjection", progress=lambda done, total: ...)

How it works (the SQL is in :mod:`django_cqrs.db.shadow`):

0. **Check** that nothing outside the projection depends on its read models' tables (a
   foreign key into one, a view, a trigger): a swap would break it, so the rebuild
   refuses with :class:`RebuildSwitchError` before anything is written.
1. **Fill** a shadow table per read model (the live table's columns, defaults, CHECKs
   and primary key, no secondary indexes) by replaying the log in batches; each batch
   commits with the position it reached, so an interrupted rebuild resumes where it
   stopped. The live tables keep serving queries and keep being updated (sync receivers
   or async catch-up) meanwhile.
2. **Complete** the shadows, still with nothing held back: every other index and
   constraint of the live table (PostgreSQL; SQLite builds them in the swap), then
   replay what arrived meanwhile.
3. **Switch** in one short transaction: stop new events from reaching the projection
   (sync: ``LOCK TABLE <log> IN SHARE MODE`` makes appends wait; async: the state row
   lock makes catch-up wait), replay the tail into the shadow, swap the tables (renames:
   the shadow takes the live table's name and each index its live name), and set the
   checkpoint to the last event replayed. Appends wait for the tail and the renames,
   whatever the size of the read model. Readers see the old table until the commit and
   the new one after it: never an empty table. The swap waits at most
   ``SWITCH_LOCK_TIMEOUT`` for readers still inside a transaction on the live table;
   then the switch rolls back, lets the events through, catches up and tries again, up to
   ``SWITCH_ATTEMPTS`` times, before :class:`RebuildSwitchError` names who holds the lock.
4. Drop the replaced tables (PostgreSQL; the next rebuild drops them if they stay locked).

Handlers are called directly with ``envelope.replaying = True`` (``event_recorded`` is not
re-sent, so other receivers do not run again). Their rows land in the shadow tables:
``self.get()``, ``self.put()`` and ``self.delete()`` through the buffer's ``targets``, plain
ORM calls because, while a batch replays, this thread's statements have the live tables'
names rewritten to the shadows' (:mod:`django_cqrs.db.redirect`). A write to any other
table is refused before it is sent (:class:`~django_cqrs.exceptions.RebuildWriteError`,
naming the handler, the event and the table): the rebuild is discarded and the live
tables keep their rows.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import DatabaseError, models, transaction
from django.utils import timezone

from .. import store, telemetry
from ..conf import cqrs_settings
from ..db.errors import is_lock_timeout
from ..db.log import START, LogPoint
from ..db.redirect import redirect_writes
from ..db.shadow import (
    check_swappable,
    complete_shadows,
    create_shadows,
    drop_old_tables,
    drop_shadows,
    lock_holders,
    shadow_model,
    shadows_match,
    swap_tables,
)
from ..events import event_names
from ..exceptions import (
    ProjectionApplyError,
    ProjectionError,
    RebuildSwitchError,
    RebuildWriteError,
)
from ..models import ProjectionState
from .base import Projection, get_projection
from .batches import apply_batch
from .checkpoints import ensure_state, lock_state, park, resolve_parked, skipped_positions
from .registry import SYNC

Progress = Callable[[int, int], None]

#: Seconds the switch waits for the live tables' lock (readers in a transaction) before
#: it rolls back, lets the held-back events through, and tries again.
SWITCH_LOCK_TIMEOUT = 0.1
#: Attempts at the switch (and at dropping the replaced tables) before giving up.
SWITCH_ATTEMPTS = 5
#: Seconds between attempts, times the attempt's number.
SWITCH_PAUSE = 0.5

logger = logging.getLogger("django_cqrs")


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
    tables = {live._meta.db_table: shadow._meta.db_table for live, shadow in targets.items()}
    for rows in store.iter_all(
        after=after, until=until, batch_size=size, event_types=types, horizon=horizon, using=using
    ):
        with transaction.atomic(using=using):
            make = functools.partial(cls, targets=targets)
            # Plain ORM calls of the handlers land in the shadow tables too; a write to
            # any other table is refused before it is sent.
            with redirect_writes(cls.name, tables, alias=using) as guard:
                try:
                    apply_batch(make, rows, replaying=True, skip=skip, using=using)
                except ProjectionApplyError as exc:
                    refusal = _refusal(cls, exc, guard.refused)
                    if refusal is None:
                        raise
                    raise refusal from exc
                if guard.refused is not None:  # a handler caught the error
                    raise guard.refused
            if commit_each:
                _save_progress(cls, rows[-1].point, using)
        applied += len(rows)
        if progress:
            progress(max(row.position for row in rows))
    if commit_each:
        _save_progress(cls, until, using)
    return applied


def _refusal(
    cls: type[Projection], exc: ProjectionApplyError, refused: RebuildWriteError | None
) -> RebuildWriteError | None:
    """The refused write behind ``exc``, naming the handler and the event (None: none).

    ``refused`` is the first refusal of the batch: one a handler caught may have made it
    fail later in some other way.
    """
    cause = exc.__cause__
    if not isinstance(cause, RebuildWriteError):
        return refused
    method = next((m for t, m in cls.handlers.items() if exc.event_type in event_names(t)), "")
    return cause.located(
        handler=f"{cls.__qualname__}.{method}", event_type=exc.event_type, position=exc.position
    )


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
    gets the highest position replayed so far and the head of the log. Raises
    :class:`RebuildSwitchError`, before anything is written, if a table outside the
    projection depends on one of its read models (a foreign key into it), and after the
    fill if the live tables stayed in use through every attempt to switch. A write that
    the shadow tables cannot receive raises
    :class:`~django_cqrs.exceptions.RebuildWriteError` before it is sent; the rebuild is
    then discarded (shadow tables dropped, progress forgotten) and the live tables keep
    their rows.

    An event that fails (it cannot be decoded, or a handler raises) is parked and the
    rebuild stops there with a :class:`ProjectionError` that says how to go on: skip the
    event (``catchup.skip``, ``cqrs_skip``) or fix the cause, then rebuild again (it
    resumes). Events an operator skipped are passed over.
    """
    cls = get_projection(projection) if isinstance(projection, str) else projection
    if not cls.rebuildable:
        raise ProjectionError(
            f"{cls.name} is not rebuilt: its handlers do more than write read models "
            "(a saga dispatches commands), and replaying it would do that again"
        )
    try:
        with telemetry.span("cqrs.rebuild", {"cqrs.projection": cls.name}) as span:
            applied = _rebuild(cls, batch_size=batch_size, progress=progress, restart=restart)
            span.set_attribute("cqrs.events_applied", applied)
        return applied
    except RebuildWriteError:
        _discard(cls, cqrs_settings.DATABASE)
        raise
    except ProjectionApplyError as exc:
        park(cls.name, exc, attempts=1, skipped=False, using=cqrs_settings.DATABASE)
        raise ProjectionError(
            f"The rebuild of {cls.name} stopped at position {exc.position} and parked the "
            f"event there: {exc}. Skip it (manage.py cqrs_skip {cls.name} {exc.position}) or "
            f"fix the cause, then rebuild again: it resumes where it stopped."
        ) from exc


def _discard(cls: type[Projection], using: str) -> None:
    """Drop the shadow tables and forget the rebuild's progress."""
    drop_shadows({model: shadow_model(model, using) for model in cls.read_models}, using)
    ProjectionState.objects.using(using).filter(name=cls.name).update(
        rebuild_position=None, rebuild_transaction_id=None, rebuild_started_at=None
    )


def _rebuild(
    cls: type[Projection], *, batch_size: int | None, progress: Progress | None, restart: bool
) -> int:
    using = cqrs_settings.DATABASE
    size = int(batch_size or cqrs_settings.REBUILD_BATCH_SIZE)
    targets = {model: shadow_model(model, using) for model in cls.read_models}
    check_swappable(targets, using)
    _drop_old_tables(targets, using, leftovers=True)
    state = ensure_state(cls.name, using)
    resumable = not restart and state.rebuild_position is not None and shadows_match(targets, using)
    if resumable:
        point = LogPoint(int(state.rebuild_transaction_id or 0), int(state.rebuild_position or 0))
    else:
        create_shadows(targets, using)
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

    def fill(point: LogPoint) -> tuple[LogPoint, int]:
        """Passes up to the last readable event as the log grows, until a pass replays no
        more than one batch (the tail left for the switch is small)."""
        applied = 0
        while True:
            horizon = store.horizon(using)
            last = store.last_point(horizon=horizon, using=using)
            if last <= point:
                return point, applied
            replayed = replay(after=point, until=last, horizon=horizon, commit_each=True)
            applied += replayed
            point = last
            if replayed <= size:
                return point, applied

    point, applied = fill(point)
    # Indexes and constraints are built on the full shadows, with nothing held back;
    # the events that came meanwhile are replayed before the switch.
    complete_shadows(targets, using)
    point, more = fill(point)
    applied += more
    for attempt in range(1, SWITCH_ATTEMPTS + 1):
        try:
            applied += _switch(cls, targets, point, replay, using)
            break
        except DatabaseError as exc:
            if not is_lock_timeout(exc):
                raise
            holders = lock_holders(targets, using)
            if attempt == SWITCH_ATTEMPTS:
                raise RebuildSwitchError(
                    f"Could not switch {cls.name} to its rebuilt tables: other transactions "
                    f"kept its read models locked through {attempt} attempts of "
                    f"{SWITCH_LOCK_TIMEOUT:g} s"
                    + (f" ({', '.join(holders)})" if holders else "")
                    + ". The rebuilt tables are kept: run the rebuild again to resume."
                ) from exc
        time.sleep(SWITCH_PAUSE * attempt)
        point, more = fill(point)
        applied += more
    _drop_old_tables(targets, using)
    if progress:
        head = store.head(using)
        progress(head, head)
    return applied


def _switch(
    cls: type[Projection],
    targets: dict[type[models.Model], type[models.Model]],
    point: LogPoint,
    replay: Callable[..., int],
    using: str,
) -> int:
    """The tail and the swap in one transaction, with new events held back; the events
    replayed. A sync projection's switch holds appends back (and waits for those in
    flight), so every committed event is final and it reads them all; an async one reads
    below the horizon and catch-up goes on from there."""
    with transaction.atomic(using=using), _stop_new_events(cls, using):
        horizon = None if cls.mode == SYNC else store.horizon(using)
        last = max(store.last_point(horizon=horizon, using=using), point)
        applied = replay(after=point, until=last, horizon=horizon, commit_each=False)
        swap_tables(targets, using, lock_timeout=SWITCH_LOCK_TIMEOUT)
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
    return applied


def _drop_old_tables(
    targets: dict[type[models.Model], type[models.Model]], using: str, *, leftovers: bool = False
) -> None:
    """Drop the tables a switch replaced; if they stay locked, leave them to the next
    rebuild, which must drop them (``leftovers``) before its switch can take their names."""
    for attempt in range(1, SWITCH_ATTEMPTS + 1):
        try:
            drop_old_tables(targets, using, lock_timeout=SWITCH_LOCK_TIMEOUT)
            return
        except DatabaseError as exc:
            if not is_lock_timeout(exc):
                raise
            if attempt == SWITCH_ATTEMPTS:
                names = ", ".join(live._meta.db_table for live in targets)
                if leftovers:
                    raise RebuildSwitchError(
                        f"Could not drop the tables an earlier rebuild replaced ({names}): "
                        "they, or the tables their foreign keys reference, stayed locked. "
                        "Run the rebuild again later."
                    ) from exc
                logger.warning(
                    "Could not drop the tables a rebuild replaced (%s): they stayed locked; "
                    "the next rebuild drops them",
                    names,
                )
                return
        time.sleep(SWITCH_PAUSE * attempt)
