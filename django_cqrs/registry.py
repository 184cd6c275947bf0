"""Registries map each command or query type to exactly one handler.

    from django_cqrs import command_handler

    @command_handler(PlaceOrder)
    def place_order(command: PlaceOrder) -> UUID:
        ...

A second handler for the same type raises :class:`DuplicateHandlerError` at once; the
conflict is also kept so that the system check ``django_cqrs.E004`` reports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from .exceptions import ConfigurationError, DuplicateHandlerError, HandlerNotFoundError
from .messages import Message, ensure_frozen_dataclass

H = TypeVar("H", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Conflict:
    message_type: type
    first: Callable[..., Any]
    second: Callable[..., Any]


def describe(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


class Registry:
    """One handler per message type, for one kind of message (``command`` or ``query``)."""

    def __init__(self, kind: str, base: type[Message]):
        self.kind = kind
        self.base = base
        self._handlers: dict[type, Callable[..., Any]] = {}
        self.conflicts: list[Conflict] = []

    def register(self, message_type: type, handler: Callable[..., Any]) -> None:
        """Register ``handler`` for ``message_type``; a second, different one is an error."""
        if not (isinstance(message_type, type) and issubclass(message_type, self.base)):
            raise ConfigurationError(
                f"@{self.kind}_handler expects a {self.base.__name__} subclass, "
                f"got {message_type!r}"
            )
        ensure_frozen_dataclass(message_type)
        if not callable(handler):
            raise ConfigurationError(f"{self.kind} handler {handler!r} is not callable")
        existing = self._handlers.get(message_type)
        if existing is not None and not _same_function(existing, handler):
            self.conflicts.append(Conflict(message_type, existing, handler))
            raise DuplicateHandlerError(
                f"{message_type.message_name()} already has a {self.kind} handler, "
                f"{describe(existing)}; cannot also register {describe(handler)}"
            )
        self._handlers[message_type] = handler

    def unregister(self, message_type: type) -> None:
        self._handlers.pop(message_type, None)

    def handler_for(self, message_type: type) -> Callable[..., Any]:
        """The handler for ``message_type``, or :class:`HandlerNotFoundError` naming it."""
        try:
            return self._handlers[message_type]
        except KeyError:
            name = getattr(message_type, "message_name", lambda: repr(message_type))()
            raise HandlerNotFoundError(
                f"No {self.kind} handler is registered for {name}; decorate a function "
                f"with @{self.kind}_handler({message_type.__name__}) in a `handlers` module"
            ) from None

    def __contains__(self, message_type: object) -> bool:
        return message_type in self._handlers

    def items(self) -> list[tuple[type, Callable[..., Any]]]:
        return list(self._handlers.items())

    def decorator(self, message_type: type) -> Callable[[H], H]:
        """Return a decorator registering the decorated function for ``message_type``."""

        def decorate(func: H) -> H:
            self.register(message_type, func)
            return func

        return decorate


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # A module imported again (reload, or two import paths) redefines the same handler.
    return a is b or (
        getattr(a, "__module__", None) == getattr(b, "__module__", object())
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", object())
        and "<locals>" not in getattr(a, "__qualname__", "")
    )
