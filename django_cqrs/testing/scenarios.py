"""Given-when-then scenarios: a command handler, a projection, a saga.

    from django_cqrs.testing import ANY, CommandScenario, ProjectionScenario, SagaScenario

    scenario = CommandScenario().given(AddTask(title="Buy milk"))
    milk = scenario.value                           # what the last given step returned
    scenario.when(CompleteTask(task_id=milk)).then_events(TaskCompleted(task_id=milk))
    scenario.when(CompleteTask(task_id=milk)).then_error(
        InvariantViolationError, match="already done"
    )                                               # ... and it wrote nothing

    ProjectionScenario(TaskViewProjection).given(
        events_of(Task, milk, TaskAdded(task_id=milk, title="Buy milk")),
    ).then_rows(TaskView, [{"id": milk, "status": "open"}])   # and the same after a rebuild

    transfer = SagaScenario(TransferSaga, clock=clock).given(OpenAccount(owner="alice"), ...)
    transfer.when(RequestTransfer(...)).then_commands(Withdraw(...), Deposit(...))
    transfer.when_time_passes(seconds=31).then_commands(Deposit(...), Withdraw(...))

**Given steps** run at once, in order, in the test's database (its transaction, in a
``django_db`` test), and ``scenario.values`` keeps what each returned:

- a command is dispatched through the command bus (its value: the handler's);
- an aggregate instance is saved, recording its pending events (its value: itself);
- an event is appended to the log as if an aggregate had recorded it, and sent to no
  receiver (the scenario's own stream, or the aggregate ``events_of()`` names); the
  consumer under test gets it: a projection applies it, a saga catches up;
- a callable is called (its value: what it returns), for anything else.

**When** runs a step and records what came of it; the ``then_*`` methods check it and
fail with an ``AssertionError`` whose text shows the expected and recorded messages as a
diff. A command's error is kept for ``then_error()``; under pytest, an error no
``then_*`` looked at fails the test (the plugin checks), so no error passes unseen.
"""

from __future__ import annotations

import collections
import datetime as dt
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

from django.db import models, transaction

from .. import store
from ..aggregates import Aggregate
from ..bus import CommandResult, command_bus
from ..commands import Command
from ..conf import cqrs_settings
from ..events import Event, EventEnvelope
from ..exceptions import ConfigurationError
from ..models import StoredEvent
from ..projections.base import Projection, get_projection
from ..projections.rebuild import rebuild as rebuild_projection
from ..projections.registry import SYNC
from ..sagas.base import Saga, SagaInstance
from .capture import CapturedCommands, CapturedEvents, capture_commands, capture_events
from .clock import FrozenClock
from .diff import aligned_rows, assert_messages, describe, match_rows, names, rows_diff
from .runner import run_async_projections
from .snapshot import Snapshot

#: The aggregate type of events given without ``events_of()``.
GIVEN = "testing.Given"


# -- events given directly ------------------------------------------------------------------


class EventsOf:
    """Events of one aggregate, for ``given()``: ``events_of(Order, order_id, *events)``."""

    def __init__(
        self, aggregate: type[models.Model] | str, aggregate_id: Any, events: Sequence[Event]
    ) -> None:
        if not events or not all(isinstance(event, Event) for event in events):
            raise ConfigurationError(
                "events_of() takes an aggregate, its id and one or more events"
            )
        self.aggregate_type = aggregate if isinstance(aggregate, str) else aggregate._meta.label
        self.aggregate_id = str(aggregate_id)
        self.events = tuple(events)

    def __repr__(self) -> str:
        return f"events_of({self.aggregate_type}, {self.aggregate_id}, {names(self.events)})"


def events_of(aggregate: type[models.Model] | str, aggregate_id: Any, *events: Event) -> EventsOf:
    """``events`` as recorded by the aggregate ``aggregate`` (a model or ``"app.Model"``)
    with primary key ``aggregate_id``, versions following its stored ones."""
    return EventsOf(aggregate, aggregate_id, events)


def append_events(
    events: Sequence[Event],
    *,
    aggregate_type: str,
    aggregate_id: Any,
    metadata: dict[str, Any] | None = None,
) -> list[tuple[Event, EventEnvelope]]:
    """Append ``events`` to the log as the aggregate's next versions; send no signal."""
    using = cqrs_settings.DATABASE
    with transaction.atomic(using=using):
        stored = StoredEvent.objects.using(using).filter(
            aggregate_type=aggregate_type, aggregate_id=str(aggregate_id)
        )
        last = stored.aggregate(last=models.Max("aggregate_version"))["last"] or 0
        envelopes = store.append(
            list(events),
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            first_version=last + 1,
            metadata=dict(metadata or {}),
            using=using,
        )
    return list(zip(events, envelopes, strict=True))


# -- errors no test looked at -------------------------------------------------------------

#: Outcomes whose error no ``then_*`` has looked at yet (the pytest plugin checks it).
_unexamined: collections.deque[CommandOutcome] = collections.deque(maxlen=100)


def take_unexamined() -> list[CommandOutcome]:
    """The outcomes with an error nothing looked at since the last call; forget them."""
    found = [outcome for outcome in _unexamined if not outcome.examined]
    _unexamined.clear()
    return found


def unexamined_text(outcomes: Iterable[CommandOutcome]) -> str:
    listed = "\n".join(f"- {outcome.describe_error()}" for outcome in outcomes)
    return (
        "A scenario's command raised an error that no then_error() or then_events() "
        f"looked at:\n{listed}"
    )


# -- the shared part ------------------------------------------------------------------------


class Scenario:
    """Given steps and what they returned; the base of the three scenarios."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        #: The correlation id of the events given directly (sagas keyed by it find them).
        self.correlation_id = str(uuid.uuid4())
        self.stream_id = str(uuid.uuid4())

    @property
    def value(self) -> Any:
        """What the last given step returned."""
        if not self.values:
            raise ConfigurationError("no given step has run yet")
        return self.values[-1]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self.values)} given steps>"

    def given(self, *steps: Any) -> Self:
        """Run ``steps`` now, in order (commands, aggregates, events, callables)."""
        for step in steps:
            self.values.append(self.run_step(step))
        self.settle()
        return self

    def run_step(self, step: Any) -> Any:
        if isinstance(step, Command):
            return command_bus.dispatch(step).value
        if isinstance(step, Aggregate):
            step.save()
            return step
        if isinstance(step, Event):
            step = EventsOf(GIVEN, self.stream_id, [step])
        if isinstance(step, EventsOf):
            pairs = append_events(
                step.events,
                aggregate_type=step.aggregate_type,
                aggregate_id=step.aggregate_id,
                metadata={"correlation_id": self.correlation_id},
            )
            self.deliver(pairs)
            return [envelope for _, envelope in pairs]
        if callable(step):
            return step()
        raise ConfigurationError(
            f"a scenario step is a command, an aggregate, an event, events_of(...) or a "
            f"callable, not {step!r}"
        )

    def deliver(self, pairs: list[tuple[Event, EventEnvelope]]) -> None:
        """Hand events given directly to the consumer under test (none here)."""

    def settle(self) -> None:
        """Run what the consumer under test does after the steps (nothing here)."""


# -- command handlers -----------------------------------------------------------------------


class CommandOutcome:
    """What one command did: its result and the events it recorded, or its error."""

    def __init__(
        self,
        command: Any,
        result: CommandResult[Any] | None,
        error: Exception | None,
        recorded: list[tuple[Event, EventEnvelope]],
        writes: list[str],
    ) -> None:
        self.command = command
        self.result = result
        self._error = error
        self.recorded = recorded
        #: With an error: what it left written in the database, table by table.
        self.writes = writes
        self.examined = error is None
        if error is not None:
            _unexamined.append(self)

    @property
    def error(self) -> Exception | None:
        """The command's error (None: it succeeded)."""
        self.examined = True
        return self._error

    @property
    def events(self) -> list[Event]:
        """The events the command recorded (and the commands it dispatched), read back
        from the log: decoded from their stored JSON."""
        return [event for event, _ in self.recorded]

    @property
    def envelopes(self) -> list[EventEnvelope]:
        return [envelope for _, envelope in self.recorded]

    @property
    def value(self) -> Any:
        """What the handler returned."""
        self._succeeded("a value")
        assert self.result is not None
        return self.result.value

    def __repr__(self) -> str:
        did = f"raised {type(self._error).__name__}" if self._error else names(self.events)
        return f"<CommandOutcome {type(self.command).__name__}: {did}>"

    def describe_error(self) -> str:
        return f"{type(self.command).__name__} raised {type(self._error).__name__}: {self._error}"

    def _succeeded(self, wanted: str) -> None:
        if self._error is not None:
            self.examined = True
            raise AssertionError(f"expected {wanted}, but {self.describe_error()}") from self._error

    def then_events(self, *expected: Any) -> Self:
        """Exactly these events, in this order (``ANY`` matches a field's value)."""
        self._succeeded(f"the events {names(expected)}")
        assert_messages(
            expected,
            self.events,
            title=f"{type(self.command).__name__} recorded other events than expected",
        )
        return self

    def then_no_events(self) -> Self:
        """It succeeded and recorded nothing."""
        return self.then_events()

    def then_error(
        self, error: type[BaseException] = Exception, *, match: str | None = None
    ) -> Self:
        """It raised ``error`` (a message matching the regex ``match``), writing nothing."""
        failure = self._error
        self.examined = True
        name = type(self.command).__name__
        if failure is None:
            raise AssertionError(
                f"expected {name} to raise {error.__name__}, but it succeeded and recorded "
                f"{names(self.events)}:\n"
                + "\n".join(line for e in self.events for line in describe(e))
            )
        if not isinstance(failure, error):
            raise AssertionError(
                f"expected {name} to raise {error.__name__}, but it raised "
                f"{type(failure).__name__}: {failure}"
            ) from failure
        if match is not None and not re.search(match, str(failure)):
            raise AssertionError(
                f"{name} raised {type(failure).__name__}, but its message {str(failure)!r} "
                f"does not match {match!r}"
            ) from failure
        if self.writes:
            raise AssertionError(
                f"{name} raised {type(failure).__name__} as expected, but wrote to the "
                "database:\n" + "\n".join(f"  {line}" for line in self.writes)
            ) from failure
        return self


class CommandScenario(Scenario):
    """Given steps, when a command, then its events, or its error with nothing written."""

    def when(
        self, command: Command[Any], *, metadata: dict[str, Any] | None = None
    ) -> CommandOutcome:
        """Dispatch ``command`` now; what came of it is checked with ``then_*``."""
        if not isinstance(command, Command):
            raise ConfigurationError(f"when() takes a command, not {command!r}")
        before = Snapshot.take()
        try:
            result = command_bus.dispatch(command, metadata=metadata)
        except Exception as exc:
            writes = Snapshot.take().changes_since(before)
            return CommandOutcome(command, None, exc, [], writes)
        rows = store.rows_at(result.positions, using=cqrs_settings.DATABASE)
        return CommandOutcome(command, result, None, [store.decode_row(r) for r in rows], [])


# -- projections ----------------------------------------------------------------------------


class ProjectionScenario(Scenario):
    """Given events (or commands), then these read-model rows — also after a rebuild."""

    def __init__(self, projection: str | type[Projection]) -> None:
        super().__init__()
        cls = get_projection(projection) if isinstance(projection, str) else projection
        if isinstance(cls, type) and issubclass(cls, Saga):
            raise ConfigurationError(f"{cls.name} is a saga: test it with SagaScenario")
        self.projection = cls
        self._checked_head: int | None = None

    def deliver(self, pairs: list[tuple[Event, EventEnvelope]]) -> None:
        if self.projection.mode == SYNC:  # as its event_recorded receiver would
            for event, envelope in pairs:
                self.projection().apply(event, envelope)

    def settle(self) -> None:
        if self.projection.mode != SYNC:
            run_async_projections(self.projection, deadlines=False)

    def rows(self, model: type[models.Model], *fields: str) -> list[dict[str, Any]]:
        """The model's rows (these fields; default: all), by primary key."""
        return list(model._default_manager.order_by("pk").values(*fields))

    def then_rows(
        self, model: type[models.Model], expected: Iterable[dict[str, Any]], *, rebuild: bool = True
    ) -> Self:
        """``model`` holds exactly these rows, in any order: each a dict of the fields the
        test names (``ANY`` matches a value). With ``rebuild``, a rebuild of the projection
        from the log then leaves every row of its read models as it was."""
        wanted = list(expected)
        fields = list(dict.fromkeys(key for row in wanted for key in row))
        actual = self.rows(model, *fields)
        if match_rows(wanted, actual) is None:
            shown = aligned_rows(wanted, actual)
            raise AssertionError(
                f"{model._meta.label} holds other rows than expected (expected {len(wanted)}, "
                f"found {len(actual)}):\n" + rows_diff(wanted, shown)
            )
        if rebuild:
            self.then_rebuild_keeps_the_rows()
        return self

    def then_rebuild_keeps_the_rows(self) -> Self:
        """Rebuild the projection from the log: its read models' rows stay as they are."""
        head = store.head()
        if self._checked_head == head:
            return self  # rebuilt at this head already
        live = {model: self.rows(model) for model in self.projection.read_models}
        rebuild_projection(self.projection)
        for model, rows in live.items():
            rebuilt = self.rows(model)
            if rebuilt != rows:
                raise AssertionError(
                    f"A rebuild of {self.projection.name} from the log left other rows in "
                    f"{model._meta.label} than applying the events live did:\n"
                    + rows_diff(rows, rebuilt, names=("live", "rebuilt"))
                )
        self._checked_head = head
        return self


# -- sagas ----------------------------------------------------------------------------------


class SagaOutcome:
    """What the saga did after a when step: the commands it dispatched, the events recorded."""

    def __init__(self, saga: type[Saga], sent: CapturedCommands, recorded: CapturedEvents) -> None:
        self.saga = saga
        #: The saga's dispatches, with step, metadata and result or error.
        self.dispatched = sent.by_saga(saga.name)
        #: Every event recorded meanwhile (the step's own, then the saga's commands').
        self.events = recorded.events

    @property
    def commands(self) -> list[Any]:
        return [d.command for d in self.dispatched]

    @property
    def steps(self) -> list[tuple[str | None, str]]:
        """``(step, "succeeded" | "failed")`` of each dispatch, in order."""
        return [(d.step, "failed" if d.error else "succeeded") for d in self.dispatched]

    def __repr__(self) -> str:
        return f"<SagaOutcome {self.saga.name}: {names(self.commands)}>"

    def then_commands(self, *expected: Any) -> Self:
        """The saga dispatched exactly these commands, in this order (compensations too)."""
        assert_messages(
            expected,
            self.commands,
            title=f"{self.saga.name} dispatched other commands than expected",
        )
        return self

    def then_no_commands(self) -> Self:
        return self.then_commands()

    def then_events(self, *expected: Any) -> Self:
        """Exactly these events were recorded meanwhile, in this order."""
        assert_messages(expected, self.events, title="Other events were recorded than expected")
        return self


class SagaScenario(Scenario):
    """Given steps, when an event (or a command, or time passing), then these commands."""

    def __init__(self, saga: str | type[Saga], *, clock: FrozenClock | None = None) -> None:
        super().__init__()
        cls = get_projection(saga) if isinstance(saga, str) else saga
        if not (isinstance(cls, type) and issubclass(cls, Saga)):
            raise ConfigurationError(f"{cls.name} is not a saga: test it with ProjectionScenario")
        self.saga = cls
        self.clock = clock
        self._recording: CapturedEvents | None = None

    def deliver(self, pairs: list[tuple[Event, EventEnvelope]]) -> None:
        if self._recording is not None:  # sent to no receiver: shown among the recorded
            self._recording.recorded.extend(pairs)

    def settle(self) -> None:
        run_async_projections(self.saga)

    @contextmanager
    def _watch(self) -> Iterator[tuple[CapturedCommands, CapturedEvents]]:
        with capture_commands() as sent, capture_events() as recorded:
            self._recording = recorded
            try:
                yield sent, recorded
                self.settle()
            finally:
                self._recording = None

    def when(self, *steps: Any) -> SagaOutcome:
        """Run ``steps`` (as ``given()`` does), run the saga: what did it dispatch?"""
        with self._watch() as (sent, recorded):
            for step in steps:
                self.values.append(self.run_step(step))
        return SagaOutcome(self.saga, sent, recorded)

    def when_time_passes(self, delta: dt.timedelta | None = None, **units: float) -> SagaOutcome:
        """Advance the clock (``seconds=31``), fire the deadlines due, run the saga."""
        if self.clock is None or not self.clock.running:
            raise ConfigurationError(
                "when_time_passes() needs a running clock: SagaScenario(saga, clock=clock) "
                "with the clock fixture, or a started FrozenClock"
            )
        with self._watch() as (sent, recorded):
            self.clock.advance(delta, **units)
        return SagaOutcome(self.saga, sent, recorded)

    def instance(self, key: Any) -> SagaInstance:
        """The saga's instance with ``key`` (the correlation value, as given)."""
        model = self.saga.instance_model
        found = model._default_manager.filter(key=str(key)).first()
        if found is None:
            keys = list(model._default_manager.values_list("key", flat=True)[:10])
            raise AssertionError(f"{self.saga.name} has no instance {key!s}; it has {keys}")
        return found


__all__ = [
    "GIVEN",
    "CommandOutcome",
    "CommandScenario",
    "EventsOf",
    "ProjectionScenario",
    "SagaOutcome",
    "SagaScenario",
    "Scenario",
    "append_events",
    "events_of",
    "take_unexamined",
]
