"""The inbox handlers, by CloudEvent type: exact names and ``fnmatch`` patterns.

    from django_cqrs.inbox import inbox_handler, IncomingEvent

    @inbox_handler("orders.OrderPlaced")               # an exact type
    def on_order_placed(event: IncomingEvent) -> None: ...

    @inbox_handler("orders.Order*", inbox="orders")    # a pattern; from one inbox only
    def on_any_order_event(event: IncomingEvent) -> None: ...

A type may have any number of handlers; they run in the order they were registered
(exact names first, then patterns), in the transaction that records the message.
Handlers live in ``<app>/inbox.py`` modules, which django_cqrs imports at start-up.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from typing import TypeVar

from ..exceptions import ConfigurationError
from .events import IncomingEvent

InboxHandler = Callable[[IncomingEvent], None]
F = TypeVar("F", bound=InboxHandler)

_PATTERN_CHARACTERS = frozenset("*?[")


@dataclasses.dataclass(frozen=True)
class Registration:
    """One handler for one type (or pattern), from every inbox or from one."""

    pattern: str
    handler: InboxHandler
    inbox: str | None = None

    @property
    def is_pattern(self) -> bool:
        return bool(_PATTERN_CHARACTERS & set(self.pattern))

    def matches(self, event_type: str, inbox: str) -> bool:
        if self.inbox is not None and self.inbox != inbox:
            return False
        if self.is_pattern:
            return fnmatch.fnmatchcase(event_type, self.pattern)
        return event_type == self.pattern


_registrations: list[Registration] = []


def inbox_handler(*types: str, inbox: str | None = None) -> Callable[[F], F]:
    """Call the decorated function with each received event whose type is (or matches)
    one of ``types``; with ``inbox=``, only for events from that inbox."""
    if not types or not all(isinstance(t, str) and t for t in types):
        raise ConfigurationError("@inbox_handler needs one or more CloudEvent types or patterns")

    def register(func: F) -> F:
        for pattern in types:
            registration = Registration(pattern, func, inbox)
            if registration not in _registrations:  # a module imported twice
                _registrations.append(registration)
        return func

    return register


def handlers_for(event_type: str, inbox: str = "") -> list[InboxHandler]:
    """The handlers of ``event_type``, in the order they run; each once."""
    matched = [r for r in _registrations if not r.is_pattern and r.matches(event_type, inbox)]
    matched += [r for r in _registrations if r.is_pattern and r.matches(event_type, inbox)]
    return list(dict.fromkeys(r.handler for r in matched))


def registrations() -> list[Registration]:
    """Every registration, in order (``cqrs_inbox``, the checks)."""
    return list(_registrations)


def unregister(handler: InboxHandler) -> None:
    """Forget ``handler`` (tests)."""
    _registrations[:] = [r for r in _registrations if r.handler is not handler]
