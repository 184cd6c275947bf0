"""The dispatch context: who and what caused the events being recorded right now.

The command bus opens a context for each command; ``Aggregate.save()`` reads it to put
the command type, correlation and causation ids and the user into each event's
metadata, and records each save (its version, the positions it appended) so the bus
can report them.

    from django_cqrs.context import current_context
    ctx = current_context()       # None outside a command dispatch
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any

_current: contextvars.ContextVar[DispatchContext | None] = contextvars.ContextVar(
    "django_cqrs_dispatch_context", default=None
)


@dataclasses.dataclass
class DispatchContext:
    """State of one command dispatch, shared by the middleware, handler and aggregates."""

    message: Any
    message_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    correlation_id: str = ""
    causation_id: str | None = None
    user: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The aggregate saves of this dispatch (and of the commands it dispatched), in order.
    saves: list[Save] = dataclasses.field(default_factory=list)
    attempt: int = 1
    #: (database alias, atomic depth) of the transaction the bus opened for this command.
    transaction: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if not self.correlation_id:
            self.correlation_id = self.message_id

    @property
    def message_type(self) -> str:
        name: str = type(self.message).message_name()
        return name

    def event_metadata(self) -> dict[str, Any]:
        """Metadata stored with every event recorded in this context."""
        meta: dict[str, Any] = {
            "command_type": self.message_type,
            "command_id": self.message_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id or self.message_id,
        }
        if self.user is not None:
            meta["user"] = self.user
        meta.update(self.extra)
        return meta

    @property
    def positions(self) -> list[int]:
        """Log positions of the events recorded, in order."""
        return [position for save in self.saves for position in save.positions]

    @property
    def versions(self) -> dict[tuple[str, str], int]:
        """``(aggregate_type, str(aggregate_id))`` -> the version it was last saved at."""
        return {(save.aggregate_type, save.aggregate_id): save.version for save in self.saves}

    def forget_rolled_back(self, alias: str, pending: set[int]) -> None:
        """Drop the saves on ``alias`` whose commit marker is no longer ``pending``.

        A save inside a savepoint that was rolled back (a handler's own ``atomic()``
        block that failed and was caught) did not happen: its version and positions must
        not reach the result (an ``ETag`` naming a version that is not stored).
        """
        self.saves = [s for s in self.saves if s.using != alias or id(s.marker) in pending]

    def reset_attempt(self) -> None:
        """Forget what a failed attempt recorded before the command is retried."""
        self.saves.clear()
        self.attempt += 1


@dataclasses.dataclass(frozen=True)
class Save:
    """One aggregate saved during a dispatch."""

    aggregate_type: str
    aggregate_id: str
    version: int
    positions: tuple[int, ...]
    using: str
    #: The callback the save registered with ``transaction.on_commit``: still pending at
    #: the end of the command's transaction only if the save was not rolled back.
    marker: Callable[[], None]


def current_context() -> DispatchContext | None:
    """The context of the command being dispatched, or None."""
    return _current.get()


def child_context(message: Any, metadata: dict[str, Any] | None = None) -> DispatchContext:
    """A context for ``message``; inherits correlation from the dispatch it runs inside."""
    meta = dict(metadata or {})
    parent = _current.get()
    correlation_id = meta.pop("correlation_id", None)
    causation_id = meta.pop("causation_id", None)
    user = meta.pop("user", None)
    if parent is not None:
        correlation_id = correlation_id or parent.correlation_id
        causation_id = causation_id or parent.message_id
        user = user if user is not None else parent.user
    return DispatchContext(
        message=message,
        correlation_id=str(correlation_id or ""),
        causation_id=str(causation_id) if causation_id else None,
        user=str(user) if user is not None else None,
        extra=meta,
    )


@contextlib.contextmanager
def activate(ctx: DispatchContext) -> Iterator[DispatchContext]:
    """Make ``ctx`` the current context inside the block."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


@contextlib.contextmanager
def detached() -> Iterator[None]:
    """No current context inside the block: what runs there belongs to no command.

    For work that may run while a command's context is still active but is not part of
    that command: a catch-up task that django-q2 runs inline (``Q_CLUSTER["sync"]``) from
    the command's ``on_commit`` hook. Commands dispatched there (a saga's) are then
    commands of their own, as in a worker, not children of the one that committed.
    """
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)
