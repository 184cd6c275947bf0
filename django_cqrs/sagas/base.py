"""Sagas (process managers): workflows across command handlers, on the projections' engine.

    from django_cqrs.sagas import Saga, SagaInstance, on, on_deadline, starts

    class Checkout(SagaInstance):            # a Django model: one row per workflow
        order_id = models.UUIDField(null=True)

    class CheckoutSaga(Saga):
        instance_model = Checkout
        mode = "async"                       # or "sync": inside the command's transaction

        @starts(OrderPlaced, key="order_id")
        def placed(self, instance, event, envelope):
            instance.order_id = event.order_id
            self.dispatch(ReserveStock(...), step="reserve", compensation=ReleaseStock(...))
            self.schedule("payment", seconds=30)

        @on(PaymentApproved, key="order_id")
        def approved(self, instance, event, envelope):
            self.dispatch(ConfirmOrder(order_id=event.order_id), step="confirm")
            self.complete()

        @on_deadline("payment")
        def no_payment(self, instance):
            self.fail("no payment in time")  # compensations run, newest first

A saga is an async projection whose "read model" is its instance table: the catch-up
engine delivers its events in log order, one batch at a time, with the checkpoint moved
in the transaction that ran the handlers, the commands they dispatched and the instance
rows they changed, so each event is handled exactly once in effect; retries, backoff,
pause, status and health are the projections'. A saga is never rebuilt: replaying it
would send its commands again.

Each event finds its instance by ``key``: the name of an event field, or
:data:`CORRELATION` (the correlation id the event was recorded under). Events of one
instance are handled one at a time, in log order, with its row locked. A command the
saga dispatches carries the event's correlation id and the instance as causation; it
runs once per (instance, step): a step already recorded is not sent again. When a
command fails (a refusal of the domain: ``CQRSError``), the step is recorded as failed
and the compensations of the steps that succeeded run in reverse order; ``fail()`` does
the same from a handler. An event whose handler raises anything else is retried with
backoff and then parked; that parks the instance (its later events are held with it),
not the saga: the others go on. ``retry_instance()`` and ``skip_instance()`` resolve it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zlib
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from django.db import models, transaction
from django.utils import timezone

from .. import store, telemetry
from ..bus import command_bus
from ..conf import cqrs_settings
from ..db.transactions import lock_rows
from ..events import Event, EventEnvelope
from ..exceptions import (
    ConfigurationError,
    CQRSError,
    LockTimeoutError,
    TransactionConflictError,
)
from ..models import ParkedEvent, ProjectionState
from ..projections.base import Projection, all_projections, get_projection
from ..projections.checkpoints import ensure_state, lock_state
from ..projections.registry import ASYNC
from ..serialization import from_json_dict
from . import deadlines

F = TypeVar("F", bound=Callable[..., Any])

#: ``key=CORRELATION``: the instance is the one of the event's correlation id.
CORRELATION = "$correlation"

#: Values of ``SagaInstance.state`` set by the library (handlers set others, such as
#: "awaiting_payment", while the workflow runs).
STARTED = "started"
COMPLETED = "completed"
COMPENSATED = "compensated"
FAILED = "failed"
FINISHED = (COMPLETED, COMPENSATED, FAILED)

#: Outcomes of a step, as recorded in ``SagaInstance.steps``.
SUCCEEDED = "succeeded"
STEP_FAILED = "failed"
COMPENSATION_SUCCEEDED = "compensated"
COMPENSATION_FAILED = "compensation failed"


class SagaInstance(models.Model):
    """The abstract base of a saga's instance table: one row per running workflow.

    ``key`` is the correlation value that finds it; ``state`` is ``started`` until a
    handler sets another, and ``completed``, ``compensated`` or ``failed`` at the end;
    ``steps`` lists what ran, in order (``{"step", "command", "outcome", "error", "at",
    ...}``); ``parked_positions`` the event that failed and the events held after it.
    """

    key = models.CharField(max_length=200, unique=True)
    state = models.CharField(max_length=40, default=STARTED, db_index=True)
    steps = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    #: The event that failed and the events held after it (empty: not parked).
    parked_positions = models.JSONField(default=list, blank=True)
    #: ``parked_positions`` is not empty (kept so by ``save()``): indexed, so health
    #: counts parked instances without reading the whole table.
    parked = models.BooleanField(default=False, db_index=True)
    last_position = models.BigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.parked = bool(self.parked_positions)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "parked_positions" in update_fields:
            kwargs["update_fields"] = {*update_fields, "parked"}
        super().save(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class Route:
    """How one event type reaches a saga: the method, the key, whether it starts one."""

    method: str
    key: str | Callable[[Any, EventEnvelope], Any]
    starts: bool
    #: Also called for instances that have finished (a late payment to refund).
    when_finished: bool = False

    def key_of(self, event: Any, envelope: EventEnvelope) -> str | None:
        if callable(self.key):
            value = self.key(event, envelope)
        elif self.key == CORRELATION:
            value = envelope.metadata.get("correlation_id")
        else:
            value = getattr(event, self.key)
        return None if value is None else str(value)


def starts(
    *event_types: type[Event], key: str | Callable[..., Any] = CORRELATION
) -> Callable[[F], F]:
    """The handler of events that start an instance (and move an existing one on)."""
    return _mark(event_types, key, starts=True, when_finished=False)


def on(
    *event_types: type[Event],
    key: str | Callable[..., Any] = CORRELATION,
    when_finished: bool = False,
) -> Callable[[F], F]:
    """The handler of events that move an existing instance on (others are ignored)."""
    return _mark(event_types, key, starts=False, when_finished=when_finished)


def on_deadline(name: str) -> Callable[[F], F]:
    """The handler of the deadline ``name``: ``(self, instance)``."""

    def mark(func: F) -> F:
        func.__dict__["_cqrs_deadline"] = name
        return func

    return mark


def _mark(
    event_types: tuple[type[Event], ...], key: Any, *, starts: bool, when_finished: bool
) -> Callable[[F], F]:
    for event_type in event_types:
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise ConfigurationError(f"saga handlers take Event subclasses, got {event_type!r}")

    def mark(func: F) -> F:
        routes = func.__dict__.setdefault("_cqrs_saga_routes", [])
        routes.extend((t, key, starts, when_finished) for t in event_types)
        func.__dict__.setdefault("_cqrs_handles", []).extend(event_types)
        return func

    return mark


class _PartitionName:
    """The name of a saga's partition ``index``: ``"<saga name>#<index>"``, on first access."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __get__(self, instance: Any, owner: type[Saga]) -> str:
        return f"{owner.saga_class.name}#{self.index}"


class StepFailed(Exception):
    """A dispatched command failed: the saga compensated; the handler stops here."""


class Saga(Projection):
    """Base class of sagas; subclass with ``instance_model`` and ``@starts``/``@on``."""

    abstract = True
    mode = ASYNC
    kind = "saga"
    #: A poison event parks its instance; the saga goes on with the others.
    on_failure = "skip"
    #: Never rebuilt: replaying would send the commands again.
    rebuildable = False
    #: Where a saga met for the first time starts: "now" (the log's head when the
    #: database is migrated with it: a saga added to a running system acts on what
    #: happens from then on, not on years of history) or "beginning".
    start_from: ClassVar[str] = "now"
    #: Events per catch-up batch. A saga's batch runs commands and holds the rows they
    #: lock (stock, counters) until it commits: small batches keep those waits short
    #: for the commands users send meanwhile.
    batch_size = 20
    #: Partitions of the instances, each caught up on its own checkpoint, so that as many
    #: workers can run the saga at once. An instance belongs to one partition (a stable
    #: hash of its key), so its events are still handled one at a time, in log order.
    #: Partition 0 is the saga's class, with its name; the others are classes made for
    #: it, named ``"<name>#1"`` and so on. Change the number only with the saga drained
    #: (paused and caught up): keys would move between checkpoints.
    partitions: ClassVar[int] = 1
    #: The partition this class runs (0: the saga's own class).
    partition: ClassVar[int] = 0
    #: The saga this class runs a partition of (the class itself for partition 0): its
    #: name is the one commands, deadlines and the admin know the saga by.
    saga_class: ClassVar[type[Saga]]
    #: Partition 0 (the saga's class), then the classes made for the others.
    partition_classes: ClassVar[tuple[type[Saga], ...]] = ()
    #: The SagaInstance subclass holding the instances.
    instance_model: ClassVar[type[SagaInstance]]
    #: Event class -> how it reaches an instance.
    routes: ClassVar[dict[type[Event], Route]] = {}
    #: Deadline name -> name of the method handling it.
    deadline_handlers: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        routes: dict[type[Event], Route] = {}
        deadlines: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for event_type, key, begins, when_finished in getattr(
                    value, "_cqrs_saga_routes", ()
                ):
                    routes[event_type] = Route(attr, key, begins, when_finished)
                deadline = getattr(value, "_cqrs_deadline", None)
                if deadline is not None:
                    deadlines[deadline] = attr
        cls.routes = routes
        cls.deadline_handlers = deadlines
        if cls.start_from not in ("now", "beginning"):  # before it is registered
            raise ConfigurationError(
                f"{cls.__qualname__}.start_from must be 'now' or 'beginning', "
                f"not {cls.start_from!r}"
            )
        made_for = cls.__dict__.get("saga_class")  # a partition made below
        if made_for is None:
            cls.saga_class = cls
            cls.partition = 0
            _check_partitions(cls)
        super().__init_subclass__(**kwargs)
        if cls.abstract or made_for is not None:
            return
        model = getattr(cls, "instance_model", None)
        if not (isinstance(model, type) and issubclass(model, SagaInstance)):
            raise ConfigurationError(
                f"{cls.__qualname__}.instance_model must be a SagaInstance subclass"
            )
        cls.partition_classes = (cls, *(_make_partition(cls, i) for i in range(1, cls.partitions)))

    @classmethod
    def partition_for(cls, key: str) -> type[Saga]:
        """The partition class that handles the instance ``key``."""
        parts = cls.saga_class.partition_classes
        if len(parts) == 1:
            return parts[0]
        return parts[zlib.crc32(key.encode()) % len(parts)]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.instance: SagaInstance | None = None
        self.envelope: EventEnvelope | None = None

    # -- delivery ---------------------------------------------------------------------

    @classmethod
    def on_parked(cls, position: int, using: str) -> None:
        """The event at ``position`` is parked: so is its instance, if it can be found.

        An event that cannot be decoded names no instance: it is parked on its own.
        """
        rows = store.rows_at([position], using=using)
        try:
            event, envelope = store.decode_row(rows[0])
            route = cls.routes.get(type(event))
            key = route.key_of(event, envelope) if route is not None else None
        except Exception:
            return
        if key is None:
            return
        instance = cls().load(key)
        if instance is None:
            instance = cls.instance_model(key=key, started_at=envelope.recorded_at)
        instance.parked_positions = [position]
        instance.error = (
            ParkedEvent.objects.using(using).get(projection=cls.name, position=position).error
        )
        instance.updated_at = timezone.now()
        instance.save()

    def apply(self, event: Event, envelope: EventEnvelope) -> None:
        """Find (or start) the event's instance, locked, and run its handler."""
        route = self.routes.get(type(event))
        if route is None:
            return
        key = route.key_of(event, envelope)
        if key is None or self.partition_for(key) is not type(self):
            return  # no instance, or another partition's
        instance = self.load(key)
        if instance is None:
            if not route.starts:
                return
            instance = self.instance_model(key=key, started_at=envelope.recorded_at)
        if instance.parked:
            self.hold(instance, envelope)
            return
        if instance.finished and not route.when_finished:
            return
        self.run(instance, envelope, lambda: getattr(self, route.method)(instance, event, envelope))

    def load(self, key: str) -> SagaInstance | None:
        """The instance with ``key``, its row locked until the transaction ends."""
        manager = self.instance_model._default_manager
        return lock_rows(manager.filter(key=key)).first()

    def run(
        self, instance: SagaInstance, envelope: EventEnvelope | None, handler: Callable[[], Any]
    ) -> None:
        self.instance, self.envelope = instance, envelope
        try:
            handler()
        except StepFailed:
            pass
        finally:
            self.instance, self.envelope = None, None
        if envelope is not None:
            instance.last_position = envelope.position
        instance.updated_at = timezone.now()
        instance.save()

    def hold(self, instance: SagaInstance, envelope: EventEnvelope) -> None:
        """Keep an event of a parked instance for its retry: parked too, in order."""
        ParkedEvent.objects.using(cqrs_settings.DATABASE).get_or_create(
            projection=self.name,
            position=envelope.position,
            defaults={
                "event_type": envelope.event_type,
                "error": f"held: instance {instance.key} is parked at position "
                f"{instance.parked_positions[0]}",
                "traceback": "",
                "attempts": 0,
            },
        )
        instance.parked_positions = [*instance.parked_positions, envelope.position]
        instance.save(update_fields=["parked_positions"])

    # -- what handlers call -----------------------------------------------------------

    def current(self) -> SagaInstance:
        if self.instance is None:
            raise ConfigurationError("dispatch(), schedule() and fail() run inside a handler")
        return self.instance

    def dispatch(
        self,
        command: Any,
        *,
        step: str,
        compensation: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        """Send ``command`` once for this instance and step; return its result.

        A step already recorded as succeeded is not sent again (its result, as recorded,
        is returned). When the command fails, the step is recorded as failed, the
        compensations run, and the handler stops (``StepFailed``).
        """
        instance = self.current()
        done = next((s for s in instance.steps if s.get("step") == step), None)
        if done is not None and done.get("outcome") == SUCCEEDED:
            return done.get("result")
        record = _step(step, type(command).message_name(), compensation)
        result, refusal = self.send(command, step, metadata)
        if refusal is not None:
            instance.steps = [
                *instance.steps,
                {**record, "outcome": STEP_FAILED, "error": str(refusal)},
            ]
            self.fail(f"{step}: {refusal}")
        value = result.value
        record["outcome"] = SUCCEEDED
        if value is None or isinstance(value, str | int | float | bool):
            record["result"] = value
        else:
            record["result"] = str(value)
        instance.steps = [*instance.steps, record]
        return record["result"]

    def send(
        self, command: Any, step: str, metadata: dict[str, Any] | None = None
    ) -> tuple[Any, CQRSError | None]:
        """Dispatch ``command`` for ``step``: ``(result, None)``, or ``(None, refusal)``.

        A refusal is the domain's (any ``CQRSError``); lock timeouts and transaction
        conflicts are the database's and are raised: the event is retried.
        """
        meta = self.command_metadata(step, metadata)
        attributes = {
            "cqrs.saga": self.saga_class.name,
            "cqrs.saga.instance": self.current().key,
            "cqrs.saga.step": step,
            "cqrs.command": type(command).message_name(),
            telemetry.CORRELATION_ID: meta.get("correlation_id"),
        }
        with telemetry.span("cqrs.saga.step", attributes) as span:
            try:
                return command_bus.dispatch(command, metadata=meta), None
            except (LockTimeoutError, TransactionConflictError):
                raise
            except CQRSError as exc:
                span.record_exception(exc)
                return None, exc

    def command_metadata(self, step: str, extra: dict[str, Any] | None) -> dict[str, Any]:
        """Correlation carried on, the instance as causation, the step's idempotency key."""
        instance = self.current()
        saga = self.saga_class.name
        meta: dict[str, Any] = {
            "causation_id": f"saga:{saga}:{instance.key}",
            "saga": saga,
            "saga_step": step,
            "idempotency_key": f"{saga}:{instance.key}:{step}",
        }
        if self.envelope is not None:
            meta["saga_event"] = self.envelope.position  # the event that moved the saga
            if self.envelope.metadata.get("correlation_id"):
                meta["correlation_id"] = self.envelope.metadata["correlation_id"]
        return {**meta, **(extra or {})}

    def record(
        self,
        step: str,
        outcome: str = SUCCEEDED,
        *,
        compensation: Any = None,
        **details: Any,
    ) -> None:
        """Record a step that dispatched nothing (``record("payment requested")``).

        ``compensation`` (a command) undoes it if the workflow fails later, as for a
        dispatched step: a step someone else took (the order the customer placed).
        """
        instance = self.current()
        entry = {"step": step, "outcome": outcome, "at": timezone.now().isoformat(), **details}
        if compensation is not None:
            entry["compensation"] = _step(step, "", compensation)["compensation"]
        instance.steps = [*instance.steps, entry]

    def complete(self, state: str = COMPLETED) -> None:
        """The workflow succeeded: the instance is finished, its deadlines cancelled."""
        instance = self.current()
        instance.state = state
        instance.finished_at = timezone.now()
        deadlines.cancel_all(self.saga_class.name, instance.key)

    def fail(self, reason: str) -> None:
        """The workflow failed: compensate the steps that succeeded, newest first; stop."""
        self.compensate(reason)
        raise StepFailed(reason)

    def compensate(self, reason: str, *, skip: tuple[str, ...] = ()) -> None:
        """Run the compensations of the succeeded steps in reverse order (not ``skip``)."""
        instance = self.current()
        instance.error = reason
        failures = 0
        for entry in reversed(list(instance.steps)):
            compensation = entry.get("compensation")
            if entry.get("outcome") != SUCCEEDED or not compensation:
                continue
            if entry["step"] in skip or entry.get("compensated"):
                continue
            command_type = _command_type(compensation["command"])
            command = from_json_dict(command_type, compensation["data"])
            name = f"compensate {entry['step']}"
            outcome = _step(name, compensation["command"])
            _, refusal = self.send(command, name)
            if refusal is not None:
                failures += 1
                outcome.update(outcome=COMPENSATION_FAILED, error=str(refusal))
            else:
                outcome.update(outcome=COMPENSATION_SUCCEEDED)
            entry["compensated"] = True
            instance.steps = [*instance.steps, outcome]
        self.complete(FAILED if failures else COMPENSATED)

    def schedule(
        self, name: str, *, seconds: float | None = None, at: dt.datetime | None = None
    ) -> None:
        """Set the deadline ``name`` for this instance (replacing a pending one)."""
        if at is None:
            if seconds is None:
                raise ConfigurationError("schedule() needs seconds= or at=")
            at = timezone.now() + dt.timedelta(seconds=seconds)
        if name not in self.deadline_handlers:
            raise ConfigurationError(f"{self.name} has no @on_deadline({name!r}) handler")
        deadlines.schedule(self.saga_class.name, self.current().key, name, at)

    def cancel_deadline(self, name: str) -> None:
        """Cancel the pending deadline ``name`` of this instance (if any)."""
        deadlines.cancel(self.saga_class.name, self.current().key, name)


def _step(step: str, command: str, compensation: Any = None) -> dict[str, Any]:
    """A step's entry in ``SagaInstance.steps`` before its outcome."""
    entry: dict[str, Any] = {"step": step, "command": command, "at": timezone.now().isoformat()}
    if compensation is not None:
        entry["compensation"] = {
            "command": type(compensation).message_name(),
            "data": compensation.to_dict(),
        }
    return entry


def _check_partitions(cls: type[Saga]) -> None:
    partitions = cls.partitions
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise ConfigurationError(
            f"{cls.__qualname__}.partitions must be a whole number >= 1, not {partitions!r}"
        )
    if partitions > 1 and cls.mode != ASYNC:
        raise ConfigurationError(
            f"{cls.__qualname__} runs in the command's transaction (mode {cls.mode!r}): "
            "it has no workers to share it, so it takes no partitions"
        )


def _make_partition(saga: type[Saga], index: int) -> type[Saga]:
    """The class running partition ``index`` of ``saga`` (registered as it is made)."""
    made: type[Saga] = type(
        f"{saga.__name__}#{index}",
        (saga,),
        {
            "__module__": saga.__module__,
            "__qualname__": f"{saga.__qualname__}#{index}",
            "__doc__": f"Partition {index} of {saga.__qualname__}.",
            "saga_class": saga,
            "partition": index,
            "name": _PartitionName(index),
        },
    )
    return made


def _command_type(name: str) -> type:
    """The registered command class whose ``message_name()`` is ``name``."""
    for command_type, _ in command_bus.registry.items():
        if getattr(command_type, "message_name", lambda: None)() == name:
            return command_type
    raise ConfigurationError(f"no handler is registered for the command {name}")


def retry_instance(saga: str | type[Saga], key: str) -> int:
    """Apply a parked instance's events again, in log order; unpark it. Returns how many.

    All in one transaction with the saga's state row locked: if an event fails again,
    nothing changes and the error is raised.
    """
    return _resolve_instance(saga, key, retry=True)


def skip_instance(saga: str | type[Saga], key: str) -> int:
    """Give up the parked instance's failing event; apply the events held after it."""
    return _resolve_instance(saga, key, retry=False)


def _resolve_instance(saga: str | type[Saga], key: str, *, retry: bool) -> int:
    named: Any = get_projection(saga) if isinstance(saga, str) else saga
    cls = named.partition_for(key)
    using = cqrs_settings.DATABASE
    ensure_state(cls.name)
    with transaction.atomic(using=using):
        lock_state(cls.name, using)
        runner = cls()
        instance = runner.load(key)
        if instance is None or not instance.parked:
            raise ConfigurationError(f"{cls.name} has no parked instance {key!r}")
        positions = list(instance.parked_positions)
        apply = positions if retry else positions[1:]
        instance.parked_positions = []
        instance.error = ""
        instance.save()
        for row in store.rows_at(apply, using=using):
            event, envelope = store.decode_row(row)
            runner.apply(event, envelope)
        resolution = ParkedEvent.Resolution
        parked = ParkedEvent.objects.using(using).filter(projection=cls.name)
        now = timezone.now()
        parked.filter(position__in=apply).update(resolution=resolution.RETRIED, resolved_at=now)
        if not retry:
            parked.filter(position=positions[0]).update(
                resolution=resolution.SKIPPED, resolved_at=now
            )
    return len(apply)


def start_new_sagas(using: str | None = None, **kwargs: Any) -> list[str]:
    """``post_migrate`` receiver: a saga with ``start_from = "now"`` and no state yet
    starts at the log's head; return the names started.

    Runs where ``migrate`` runs, which a saga needs anyway (its instance table). On a new
    database the head is the log's start: nothing is passed over.
    """
    alias = cqrs_settings.DATABASE
    if using is not None and using != alias:
        return []
    started = []
    for cls in (part for saga in all_sagas() for part in saga.partition_classes):
        if cls.start_from != "now":
            continue
        if ProjectionState.objects.using(alias).filter(name=cls.name).exists():
            continue
        head = store.last_point(using=alias)
        ProjectionState.objects.using(alias).get_or_create(
            name=cls.name,
            defaults={"position": head.position, "transaction_id": head.transaction_id},
        )
        started.append(cls.name)
    return started


def all_sagas() -> list[type[Saga]]:
    """Every registered saga class, by name (not the classes made for other partitions)."""
    found = [
        cls
        for cls in all_projections()
        if isinstance(cls, type) and issubclass(cls, Saga) and cls.saga_class is cls
    ]
    return sorted(found, key=lambda cls: cls.name)
