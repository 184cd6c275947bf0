"""Catch an async projection up with the event log, batch by batch, exactly once in effect.

    from django_cqrs.projections.catchup import catch_up, run_catch_up
    catch_up("orders.CustomerSummaryProjection")   # returns the number of events read
    outcome = run_catch_up("orders.CustomerSummaryProjection", deadline=time.monotonic() + 30)
    outcome.read, outcome.retry_at                 # retry_at: when a failed event is due again
    outcome.more                                   # True: stopped at the deadline, more to do

Each batch is one transaction that locks the projection's state row (PostgreSQL:
``SELECT ... FOR UPDATE``; SQLite: the database write lock), reads events after the
checkpoint, applies them with buffered writes, and moves the checkpoint with a
compare-and-set in the same transaction. A second worker waits for the lock and then
starts from the new checkpoint, so no event is applied twice; if the checkpoint moved
anyway, the compare-and-set fails and the whole batch rolls back.

A batch reads in the log's order, ``(transaction_id, position)``, and only below the
horizon of open transactions (see ``store``): every event it can read is final, so no
late commit can appear before a checkpoint. The checkpoint is that pair.

A failing event is retried with exponential backoff (``RETRY_BACKOFF``) up to the
projection's ``max_retries``; then it is parked with its traceback and the projection
stops (``on_failure = "stop"``) or passes over it (``"skip"``). The events before it are
applied first. An event that cannot be decoded (a payload of the wrong shape, unknown or
missing fields, a value its field cannot read) is parked at once: retrying cannot change
it. This module knows no task queue: when a retry is due, the outcome says when
(``CatchUp.retry_at``); when a catch-up stopped at its deadline, that more is left
(``CatchUp.more``); the caller schedules what follows (``django_cqrs.tasks`` does).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from .. import metrics, store, telemetry
from ..conf import cqrs_settings
from ..db.errors import is_lock_timeout
from ..db.log import LogPoint
from ..exceptions import ProjectionApplyError, ProjectionError
from ..models import ParkedEvent, ProjectionState, StoredEvent
from .base import Projection, get_projection
from .batches import apply_batch
from .checkpoints import (
    ensure_state,
    failure_text,
    lock_state,
    park,
    rebuild_point,
    resolve_parked,
    skipped_positions,
)
from .registry import ASYNC

logger = logging.getLogger("django_cqrs")

State = ProjectionState.State

#: A batch found committed events it may not read yet (an older transaction is open).
HELD_BACK = "held back"
#: Another worker holds this consumer's lease (a relay publishing a batch, outside any
#: transaction): it goes on until nothing is left, or its lease runs out.
LEASED = "leased"
#: What a catch-up waits for (polling, up to ``wait_held_back``) rather than stop.
WAITED_FOR = (HELD_BACK, LEASED)
#: Seconds until the next catch-up when events are held back.
HELD_BACK_RETRY_SECONDS = 1.0
#: How often a catch-up that waits for held-back events looks again: first, at most.
HELD_BACK_POLL_SECONDS = 0.005
HELD_BACK_POLL_MAX_SECONDS = 0.1
#: Batches run again at once, in a row, after a transient failure (a deadlock with a
#: concurrent transaction, a lock wait past LOCK_TIMEOUT) before it counts as a failure.
TRANSIENT_RETRIES = 5


class _CheckpointMoved(Exception):
    """Another worker moved the checkpoint under this batch: roll it back."""


@dataclasses.dataclass(frozen=True)
class BatchOutcome:
    """What one batch did: events read, the checkpoint after it, whether nothing is left."""

    read: int
    position: int
    done: bool
    reason: str = ""
    #: When to look again (a relay's batch leased by another worker: when the lease ends).
    retry_at: dt.datetime | None = None
    #: The checkpoint's position before the batch (None: no batch ran, or not said).
    start: int | None = None


@dataclasses.dataclass(frozen=True)
class CatchUp:
    """What a catch-up did: events read, when a failed event is due, whether more is left."""

    read: int
    #: When the next attempt at a failing event is due (None: nothing waits for a retry).
    retry_at: dt.datetime | None = None
    #: True when it stopped at its deadline with events left: the caller goes on later.
    more: bool = False


def resolve(projection: str | type[Projection]) -> type[Projection]:
    return get_projection(projection) if isinstance(projection, str) else projection


@dataclasses.dataclass(frozen=True)
class Batch:
    """The events a batch read: its rows, the checkpoint it started from and the one it
    reaches, and the positions an operator chose to skip."""

    rows: list[store.EventRow]
    start: LogPoint
    end: LogPoint
    skip: frozenset[int]


def run_batch(
    cls: type[Projection], *, batch_size: int | None = None, before: LogPoint | None = None
) -> BatchOutcome:
    """Apply at most one batch after the checkpoint (before ``before``) and commit it."""
    using = cqrs_settings.DATABASE
    with transaction.atomic(using=using):
        state = lock_state(cls.name, using)
        batch = read_batch(cls, state, batch_size=batch_size, before=before, using=using)
        if isinstance(batch, BatchOutcome):
            return batch
        apply_batch(
            functools.partial(cls, buffered=True),
            batch.rows,
            replaying=False,
            skip=batch.skip,
            using=using,
        )
        move_checkpoint(cls, batch.start, batch.end, batch.rows, using=using)
        return BatchOutcome(len(batch.rows), batch.end.position, False, start=batch.start.position)


def read_batch(
    cls: type[Projection],
    state: ProjectionState,
    *,
    batch_size: int | None,
    before: LogPoint | None,
    using: str,
) -> Batch | BatchOutcome:
    """The next batch after the (locked) ``state``'s checkpoint, or why there is none."""
    size = int(batch_size or cls.batch_size or cqrs_settings.CATCHUP_BATCH_SIZE)
    if state.state != State.LIVE:
        return BatchOutcome(0, state.position, True, str(state.state))
    if before is None and state.next_retry_at and state.next_retry_at > timezone.now():
        return BatchOutcome(0, state.position, True, "backoff")
    checkpoint = state.point
    horizon = store.horizon(using)
    last = store.last_point(before=before, horizon=horizon, using=using)
    if last <= checkpoint:
        if horizon is not None and store.last_point(before=before, horizon=None) > checkpoint:
            # Committed events wait behind an older open transaction, which may
            # record no event for this projection when it ends: nothing would
            # trigger a catch-up then, so ask for another soon.
            return BatchOutcome(0, state.position, True, HELD_BACK)
        return BatchOutcome(0, state.position, True, "caught up")
    rows = store.read_rows(
        after=checkpoint,
        limit=size,
        event_types=cls.handled_event_types(),
        until=last,
        horizon=horizon,
        using=using,
    )
    # A full batch may stop short of the last readable event; otherwise every handled
    # event up to it was read and the checkpoint passes the unhandled ones too.
    new = rows[-1].point if len(rows) == size else last
    return Batch(rows, checkpoint, new, skipped_positions(cls.name, 0, using))


def move_checkpoint(
    cls: type[Projection],
    start: LogPoint,
    end: LogPoint,
    rows: Sequence[store.EventRow],
    *,
    using: str,
    **changes: Any,
) -> None:
    """Move the checkpoint from ``start`` to ``end`` (compare-and-set), clearing the failure
    being retried; raise ``_CheckpointMoved`` when another worker moved it first."""
    recorded_at = rows[-1].recorded_at if rows and end == rows[-1].point else None
    moved = (
        ProjectionState.objects.using(using)
        .filter(name=cls.name, position=start.position, transaction_id=start.transaction_id)
        .update(
            position=end.position,
            transaction_id=end.transaction_id,
            position_recorded_at=recorded_at or timezone.now(),
            failing_position=None,
            attempts=0,
            next_retry_at=None,
            last_error="",
            updated_at=timezone.now(),
            **changes,
        )
    )
    if moved != 1:
        raise _CheckpointMoved(cls.name)


#: Runs one batch of a consumer: ``run_batch``'s signature and outcome.
BatchRunner = Callable[..., BatchOutcome]

#: Consumers that run their batches their own way, by base class (relays publish theirs
#: outside the database transaction); every other projection runs ``run_batch``.
batch_runners: dict[type[Projection], BatchRunner] = {}


def batch_runner(cls: type[Projection]) -> BatchRunner:
    """What runs a batch of ``cls``: its base class's runner in ``batch_runners``, or
    ``run_batch``."""
    for klass in cls.__mro__:
        runner = batch_runners.get(klass)
        if runner is not None:
            return runner
    return run_batch


def observed_batch(runner: BatchRunner, cls: type[Projection], **kwargs: Any) -> BatchOutcome:
    """``runner(cls, **kwargs)`` in a ``cqrs.projection.batch`` span, the events it read
    counted (``cqrs_projection_batch_events``); just the batch when both are off."""
    if not (telemetry.enabled() or metrics.enabled()):
        return runner(cls, **kwargs)
    attributes = {"cqrs.projection": cls.name, "cqrs.projection.kind": cls.kind}
    with telemetry.span("cqrs.projection.batch", attributes) as span:
        outcome = runner(cls, **kwargs)
        span.set_attribute("cqrs.events_read", outcome.read)
        span.set_attribute("cqrs.checkpoint.to", outcome.position)
        ran = not outcome.reason  # a batch was read (not "caught up", "paused", ...)
        start = outcome.start if outcome.start is not None or ran else outcome.position
        span.set_attribute("cqrs.checkpoint.from", start)
        span.set_attribute("cqrs.batch.reason", outcome.reason or None)
    if ran:
        metrics.observe_projection_batch(cls.name, outcome.read)
    return outcome


def run_catch_up(
    projection: str | type[Projection],
    *,
    batch_size: int | None = None,
    max_batches: int = 0,
    deadline: float | None = None,
    wait_held_back: float = 0.0,
) -> CatchUp:
    """Apply every event after the checkpoint, batch by batch; say what was read and retried.

    Loops until nothing is left, so a task that found the projection busy can rely on
    the running one to pick up what it was queued for; or until ``deadline`` (a
    ``time.monotonic()`` value, checked after each batch: one batch always runs) has
    passed: then the outcome says ``more`` and the caller goes on later
    (``django_cqrs.tasks`` queues a task).

    Committed events held back by an older open transaction (a saga's batch, which
    records events while it runs) are waited for here, polling, for up to
    ``wait_held_back`` seconds (within ``deadline``): such a transaction usually ends in
    milliseconds, and a retry queued for later would wait for the task queue's scheduler.
    Past that wait, the outcome's ``retry_at`` asks for another catch-up soon. A relay
    leased by another worker is waited for the same way: the events committed while that
    worker publishes are this catch-up's to send, and its trigger is spent.
    """
    cls = resolve(projection)
    if cls.mode != ASYNC:
        raise ProjectionError(f"{cls.name} is a sync projection; it needs no catch-up")
    ensure_state(cls.name)
    runner = batch_runner(cls)
    total = batches = transient = 0
    retry_at = None
    ran = False
    held_until = None  # when the wait for held-back events ends
    pause = HELD_BACK_POLL_SECONDS
    while True:
        if ran and deadline is not None and time.monotonic() >= deadline:
            logger.info("%s: time budget spent after %s events; more to do", cls.name, total)
            return CatchUp(total, retry_at, more=True)
        ran = True
        try:
            outcome = observed_batch(runner, cls, batch_size=batch_size)
        except _CheckpointMoved:
            logger.warning("%s: checkpoint moved by another worker; batch rolled back", cls.name)
            continue
        except ProjectionApplyError as exc:
            if exc.transient and transient < TRANSIENT_RETRIES:
                # The database, not the event: the batch rolled back; run it again (the
                # concurrent transaction it met has gone on), without counting a failure.
                transient += 1
                logger.info("%s: batch rolled back (%s); running it again", cls.name, exc)
                continue
            transient = 0
            retry_at = record_failure(cls, exc, batch_size=batch_size) or retry_at
            continue
        except DatabaseError as exc:
            if not is_lock_timeout(exc):
                raise
            # Another worker has held the projection's state row past LOCK_TIMEOUT: it is
            # catching up (and loops until nothing is left), so this one can stop.
            logger.info("%s: busy in another worker (%s); leaving it the catch-up", cls.name, exc)
            return CatchUp(total, retry_at)
        total += outcome.read
        batches += 1
        transient = 0
        if outcome.reason in WAITED_FOR and wait_held_back > 0:
            now = time.monotonic()
            held_until = held_until or now + wait_held_back
            if deadline is not None:
                held_until = min(held_until, deadline)
            if now + pause < held_until:
                time.sleep(pause)
                pause = min(pause * 2, HELD_BACK_POLL_MAX_SECONDS)
                continue
        if outcome.retry_at is not None:
            retry_at = min(retry_at, outcome.retry_at) if retry_at else outcome.retry_at
        if outcome.reason not in WAITED_FOR:
            held_until, pause = None, HELD_BACK_POLL_SECONDS
        elif outcome.reason == HELD_BACK:
            soon = timezone.now() + dt.timedelta(seconds=HELD_BACK_RETRY_SECONDS)
            retry_at = min(retry_at, soon) if retry_at else soon
        if outcome.done:
            return CatchUp(total, retry_at)
        if max_batches and batches >= max_batches:
            return CatchUp(total, retry_at, more=True)


def catch_up(
    projection: str | type[Projection], *, batch_size: int | None = None, max_batches: int = 0
) -> int:
    """Apply every event after the checkpoint, batch by batch; return events read.

    A failed event waiting for its retry is tried again by the next catch-up after its
    backoff (the periodic schedule runs one); :func:`run_catch_up` also says when that is
    due, and ``django_cqrs.tasks.follow_up(name, run_catch_up(name))`` schedules it with
    django-q2, as the tasks, the admin and the management commands do. A projection whose
    events are shared by partitions (a saga's) catches them all up, one after the other.
    """
    return sum(
        run_catch_up(part, batch_size=batch_size, max_batches=max_batches).read
        for part in resolve(projection).runs()
    )


def backoff_delay(attempts: int, cls: type[Projection] | None = None) -> float:
    """Seconds to wait before attempt ``attempts + 1``: RETRY_BACKOFF doubled per attempt,
    up to ``cls.retry_backoff_max`` (default RETRY_BACKOFF_MAX)."""
    base = float(cqrs_settings.RETRY_BACKOFF)
    ceiling = cls.retry_backoff_max if cls is not None else None
    ceiling = float(cqrs_settings.RETRY_BACKOFF_MAX if ceiling is None else ceiling)
    return float(min(base * (2 ** max(attempts - 1, 0)), ceiling))


def record_failure(
    cls: type[Projection], exc: ProjectionApplyError, *, batch_size: int | None = None
) -> dt.datetime | None:
    """Commit the events before the failing one, then count the failure, park or skip.

    Returns when the failing event is due for its next attempt (None when it was parked
    or another worker handles it).
    """
    using = cqrs_settings.DATABASE
    try:
        failing = LogPoint(exc.transaction_id, exc.position)
        runner = batch_runner(cls)
        while not observed_batch(runner, cls, batch_size=batch_size, before=failing).done:
            pass
    except (ProjectionApplyError, _CheckpointMoved):
        return None  # an earlier event failed now (or a worker moved on): the next turn
    error, trace = failure_text(exc)
    with transaction.atomic(using=using):
        state = lock_state(cls.name, using)
        if state.point >= failing or state.state != State.LIVE:
            return None
        attempts = state.attempts + 1 if state.failing_position == exc.position else 1
        state.failing_position = exc.position
        state.attempts = attempts
        state.last_error = trace
        if exc.retryable and attempts <= cls.max_retries:
            delay = backoff_delay(attempts, cls)
            state.next_retry_at = timezone.now() + dt.timedelta(seconds=delay)
            state.save()
            logger.warning(
                "%s failed on position %s (attempt %s of %s); retrying after %.1fs: %s",
                cls.name,
                exc.position,
                attempts,
                cls.max_retries + 1,
                delay,
                error,
            )
            retry_at: dt.datetime = state.next_retry_at
            return retry_at
        park(cls.name, exc, attempts=attempts, skipped=cls.on_failure == "skip", using=using)
        cls.on_parked(exc.position, using)
        state.attempts = 0
        state.failing_position = None
        state.next_retry_at = None
        if cls.on_failure == "stop":
            state.state = State.STOPPED
        state.save()
        logger.error(
            "%s parked the event at position %s %s (%s): %s",
            cls.name,
            exc.position,
            f"after {attempts} attempts" if exc.retryable else "at once (it cannot be decoded)",
            "stopped" if cls.on_failure == "stop" else "skipped",
            error,
        )
    return None


def retry(projection: str | type[Projection]) -> CatchUp:
    """Resume a stopped projection at its parked event(s) and catch it up."""
    cls = resolve(projection)
    using = cqrs_settings.DATABASE
    with transaction.atomic(using=using):
        state = lock_state(cls.name, using)
        resolve_parked(cls.name, using)
        state.state = State.LIVE
        state.attempts = 0
        state.failing_position = None
        state.next_retry_at = None
        state.last_error = ""
        state.save()
    return run_catch_up(cls)


def skip(projection: str | type[Projection], position: int) -> CatchUp:
    """Pass over the event at ``position`` for good, resume and catch up.

    An async projection skips an event its checkpoint has not passed; any projection, an
    event it has parked or that its rebuild in progress has not replayed yet (the
    rebuild passes over it when it resumes: ``cqrs_rebuild`` runs it again). A sync
    projection applied its events as they were recorded, so only its rebuild skips.
    """
    cls = resolve(projection)
    using = cqrs_settings.DATABASE
    point = store.point_of(position, using)
    if point is None:
        raise ProjectionError(f"There is no event at position {position}")
    event_type = (
        StoredEvent.objects.using(using)
        .filter(position=position)
        .values_list("event_type", flat=True)
        .get()
    )
    with transaction.atomic(using=using):
        stored = ProjectionState.objects.using(using).filter(name=cls.name).exists()
        state = lock_state(cls.name, using) if stored else ProjectionState(name=cls.name)
        live_before = cls.mode == ASYNC and state.point < point
        rebuilt_to = rebuild_point(state)
        if not (
            live_before
            or (rebuilt_to is not None and rebuilt_to < point)
            or _is_parked(cls.name, position, using)
        ):
            raise ProjectionError(_nothing_to_skip(cls, state, position))
        ParkedEvent.objects.using(using).update_or_create(
            projection=cls.name,
            position=position,
            defaults={
                "event_type": event_type,
                "resolution": ParkedEvent.Resolution.SKIPPED,
                "resolved_at": timezone.now(),
            },
            create_defaults={
                "event_type": event_type,
                "error": "skipped by an operator",
                "traceback": "",
                "attempts": 0,
                "resolution": ParkedEvent.Resolution.SKIPPED,
                "resolved_at": timezone.now(),
            },
        )
        if live_before:
            if state.state == State.STOPPED:
                state.state = State.LIVE
            state.attempts = 0
            state.failing_position = None
            state.next_retry_at = None
            state.save()
    return run_catch_up(cls) if cls.mode == ASYNC else CatchUp(0)


def _is_parked(name: str, position: int, using: str) -> bool:
    return (
        ParkedEvent.objects.using(using)
        .filter(projection=name, position=position, resolution=ParkedEvent.Resolution.PARKED)
        .exists()
    )


def _nothing_to_skip(cls: type[Projection], state: ProjectionState, position: int) -> str:
    if cls.mode == ASYNC:
        return (
            f"{cls.name} has already passed position {position} (checkpoint "
            f"{state.position}); nothing to skip"
        )
    return (
        f"{cls.name} is a sync projection: it applied position {position} when the event was "
        "recorded. Only an event it has parked, or that its rebuild in progress has not "
        "replayed yet, can be skipped"
    )


def set_paused(projection: str | type[Projection], paused: bool) -> None:
    """Pause (no catch-up runs) or resume a projection."""
    cls = resolve(projection)
    ensure_state(cls.name)
    using = cqrs_settings.DATABASE
    with transaction.atomic(using=using):
        state = lock_state(cls.name, using)
        if paused and state.state == State.LIVE:
            state.state = State.PAUSED
        elif not paused and state.state == State.PAUSED:
            state.state = State.LIVE
        state.save()
