"""Capture what a test's code recorded and dispatched: events, and commands.

    from django_cqrs.testing import capture_commands, capture_events

    with capture_events() as captured:
        command_bus.dispatch(PlaceOrder(...))
    captured.types                       # [OrderPlaced]
    captured.assert_recorded(OrderPlaced(order_id=ANY, ...))   # a diff if not

    with capture_commands() as sent:
        run_async_projections()
    sent.commands                        # what was dispatched (by sagas, say), in order

``capture_events()`` listens to ``event_recorded``: it sees every event appended inside
the block, when it is appended, in the order of the appends — also events of a command
that failed afterwards and was rolled back. ``capture_commands()`` wraps
``command_bus.dispatch`` for the block: every command dispatched, with its metadata and
its result or error, in the order the dispatches began (a command a handler dispatched
comes after the one that dispatched it).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..bus import CommandResult, command_bus
from ..context import current_context
from ..events import Event, EventEnvelope
from ..signals import event_recorded
from .diff import assert_messages

_uids = itertools.count()


class CapturedEvents:
    """The events recorded inside a ``capture_events()`` block, with their envelopes."""

    def __init__(self) -> None:
        self.recorded: list[tuple[Event, EventEnvelope]] = []

    @property
    def events(self) -> list[Event]:
        return [event for event, _ in self.recorded]

    @property
    def envelopes(self) -> list[EventEnvelope]:
        return [envelope for _, envelope in self.recorded]

    @property
    def types(self) -> list[type[Event]]:
        """The events' classes, in order."""
        return [type(event) for event, _ in self.recorded]

    @property
    def names(self) -> list[str]:
        """The events' stored names (``"orders.OrderPlaced"``), in order."""
        return [event.event_type for event, _ in self.recorded]

    @property
    def positions(self) -> list[int]:
        return [envelope.position for _, envelope in self.recorded]

    def of_type(self, *types: type[Event]) -> list[Event]:
        """The events of these classes, in order."""
        return [event for event in self.events if isinstance(event, types)]

    def clear(self) -> None:
        self.recorded.clear()

    def assert_recorded(self, *expected: Any) -> None:
        """Fail with a diff unless exactly ``expected`` was recorded, in this order."""
        assert_messages(expected, self.events, title="Other events were recorded than expected")

    def __len__(self) -> int:
        return len(self.recorded)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __getitem__(self, index: int) -> Event:
        return self.recorded[index][0]

    def __repr__(self) -> str:
        return f"<CapturedEvents {[event.event_type for event in self.events]}>"


@contextmanager
def capture_events() -> Iterator[CapturedEvents]:
    """Collect the events recorded inside the block (``event_recorded``)."""
    captured = CapturedEvents()

    def receiver(sender: type[Event], event: Event, envelope: EventEnvelope, **kwargs: Any) -> None:
        captured.recorded.append((event, envelope))

    uid = f"django_cqrs.testing.capture_events:{next(_uids)}"
    event_recorded.connect(receiver, weak=False, dispatch_uid=uid)
    try:
        yield captured
    finally:
        event_recorded.disconnect(dispatch_uid=uid)


@dataclasses.dataclass
class DispatchedCommand:
    """One ``command_bus.dispatch()``: the command, its metadata and what came of it."""

    command: Any
    metadata: dict[str, Any]
    #: Dispatched outside any other command (a test, a saga's catch-up), not by a handler.
    top_level: bool
    result: CommandResult[Any] | None = None
    error: BaseException | None = None

    @property
    def saga(self) -> str | None:
        """The saga that dispatched it (its name), if one did."""
        return self.metadata.get("saga")

    @property
    def step(self) -> str | None:
        """The saga step it ran (``"reserve stock"``, ``"compensate reserve stock"``)."""
        return self.metadata.get("saga_step")


class CapturedCommands:
    """The commands dispatched inside a ``capture_commands()`` block."""

    def __init__(self) -> None:
        self.dispatched: list[DispatchedCommand] = []

    @property
    def commands(self) -> list[Any]:
        return [d.command for d in self.dispatched]

    @property
    def types(self) -> list[type]:
        return [type(d.command) for d in self.dispatched]

    def by_saga(self, saga: str) -> list[DispatchedCommand]:
        """The dispatches of the saga named ``saga``, in order."""
        return [d for d in self.dispatched if d.saga == saga]

    def clear(self) -> None:
        self.dispatched.clear()

    def assert_dispatched(self, *expected: Any) -> None:
        """Fail with a diff unless exactly ``expected`` was dispatched, in this order."""
        assert_messages(
            expected, self.commands, title="Other commands were dispatched than expected"
        )

    def __len__(self) -> int:
        return len(self.dispatched)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.commands)

    def __repr__(self) -> str:
        return f"<CapturedCommands {[type(c).__name__ for c in self.commands]}>"


@contextmanager
def capture_commands() -> Iterator[CapturedCommands]:
    """Record every ``command_bus.dispatch()`` inside the block (blocks may nest)."""
    captured = CapturedCommands()
    had_own = "dispatch" in vars(command_bus)
    previous = command_bus.dispatch

    def dispatch(command: Any, *, metadata: dict[str, Any] | None = None) -> Any:
        entry = DispatchedCommand(command, dict(metadata or {}), current_context() is None)
        captured.dispatched.append(entry)
        try:
            entry.result = previous(command, metadata=metadata)
        except BaseException as exc:
            entry.error = exc
            raise
        return entry.result

    command_bus.dispatch = dispatch  # type: ignore[method-assign]
    try:
        yield captured
    finally:
        if had_own:
            command_bus.dispatch = previous  # type: ignore[method-assign]
        else:
            del command_bus.dispatch
