"""Registries map each command or query type to exactly one handler.

    from django_cqrs import command_handler

    @command_handler(PlaceOrder)
    def place_order(command: PlaceOrder) -> UUID:
        ...

A second handler for the same type raises :class:`DuplicateHandlerError` at once; the
conflict is also kept so that the system check ``django_cqrs.E004`` reports it. A handler
whose return annotation cannot be what its message declares (``Command[UUID]``, a handler
annotated ``-> str``) is refused at registration, as mypy refuses it with the typed
decorators of :mod:`django_cqrs.bus`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
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
        _check_result_type(self.kind, message_type, handler)
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


def declared_result(message_type: type) -> Any:
    """The ``R`` of the ``Command[R]`` or ``Query[R]`` that ``message_type`` subclasses.

    ``Any`` when it declares none (a bare ``Command``) or a type variable (a generic base).
    """
    for klass in message_type.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            args = typing.get_args(base)
            origin = typing.get_origin(base)
            if args and isinstance(origin, type) and issubclass(origin, Message):
                return Any if isinstance(args[0], TypeVar) else args[0]
    return Any


def _check_result_type(kind: str, message_type: type, handler: Callable[..., Any]) -> None:
    """Refuse a handler annotated to return what its message's ``R`` cannot be.

    Cheap and certain cases only: both sides plain classes (``None`` included) or
    generic aliases of them (``list[UUID]``: their origins); anything else (``Any``, a
    union, a type variable, an annotation that cannot be resolved) is left to mypy.
    """
    try:
        returns = typing.get_type_hints(handler).get("return", Any)
    except Exception:
        return  # a forward reference that does not resolve here: mypy's to check
    declared = declared_result(message_type)
    wanted, got = _plain(declared), _plain(returns)
    if wanted is None or got is None or issubclass(got, wanted):
        return
    if (got, wanted) in _PROMOTIONS:
        return  # what the typing rules accept: an int where a float is declared
    raise ConfigurationError(
        f"{describe(handler)} returns {_name(returns)}, but {message_type.__name__} is a "
        f"{kind.capitalize()}[{_name(declared)}]: its handler must return {_name(declared)}"
    )


#: (returned, declared) pairs the typing rules accept without a subclass relation.
_PROMOTIONS = {(int, float), (int, complex), (float, complex)}


def _plain(annotation: Any) -> type | None:
    """The class an annotation names (``None``: ``NoneType``), or None when it is not one."""
    if annotation is Any:
        return None  # a class itself since Python 3.11, and no constraint
    if annotation is None or annotation is type(None):
        return type(None)
    origin = typing.get_origin(annotation)
    if origin is not None:
        return origin if isinstance(origin, type) and origin is not types.UnionType else None
    return annotation if isinstance(annotation, type) else None


def _name(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", None) or repr(annotation)
