"""django_cqrs: CQRS for Django the Django way.

    from django_cqrs import Command, Query, Event, command_bus, query_bus
    from django_cqrs import command_handler, query_handler
    from django_cqrs import Aggregate, ReadModel, Projection, handles, InvariantViolationError

The rule for what this namespace exports: every name the README's tutorial imports from
a django_cqrs module — the messages and their envelope, the buses, their decorators and
results, the bases of aggregates, read models and projections, and the errors (every
:class:`CQRSError`). Each name is loaded on first access, so importing this package needs
no settings. Infrastructure (the store, the app's models, settings, middleware, db/) is
imported from its own module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_ERRORS = (
    "CQRSError",
    "AggregateNotFoundError",
    "AppendOnlyError",
    "ConcurrencyError",
    "ConfigurationError",
    "DuplicateHandlerError",
    "HandlerNotFoundError",
    "InvariantViolationError",
    "LockTimeoutError",
    "PreconditionFailedError",
    "ProjectionApplyError",
    "ProjectionError",
    "QueryWriteError",
    "RebuildSwitchError",
    "RebuildWriteError",
    "SerializationError",
    "TransactionConflictError",
    "UnknownEventTypeError",
)

_LAZY = {
    "Command": "django_cqrs.commands",
    "Query": "django_cqrs.queries",
    "Event": "django_cqrs.events",
    "EventEnvelope": "django_cqrs.events",
    "CommandResult": "django_cqrs.bus",
    "command_bus": "django_cqrs.bus",
    "query_bus": "django_cqrs.bus",
    "command_handler": "django_cqrs.bus",
    "query_handler": "django_cqrs.bus",
    "Aggregate": "django_cqrs.aggregates",
    "ReadModel": "django_cqrs.read_models",
    "Projection": "django_cqrs.projections",
    "handles": "django_cqrs.projections",
    **dict.fromkeys(_ERRORS, "django_cqrs.exceptions"),
}

#: Spelled out (not computed from ``_LAZY``): mypy reads a literal ``__all__`` to know
#: what this package re-exports (``mypy --strict`` refuses implicit re-exports).
__all__ = [
    "Aggregate",
    "AggregateNotFoundError",
    "AppendOnlyError",
    "CQRSError",
    "Command",
    "CommandResult",
    "ConcurrencyError",
    "ConfigurationError",
    "DuplicateHandlerError",
    "Event",
    "EventEnvelope",
    "HandlerNotFoundError",
    "InvariantViolationError",
    "LockTimeoutError",
    "PreconditionFailedError",
    "Projection",
    "ProjectionApplyError",
    "ProjectionError",
    "Query",
    "QueryWriteError",
    "ReadModel",
    "RebuildSwitchError",
    "RebuildWriteError",
    "SerializationError",
    "TransactionConflictError",
    "UnknownEventTypeError",
    "command_bus",
    "command_handler",
    "handles",
    "query_bus",
    "query_handler",
]

if TYPE_CHECKING:
    from .aggregates import Aggregate
    from .bus import CommandResult, command_bus, command_handler, query_bus, query_handler
    from .commands import Command
    from .events import Event, EventEnvelope
    from .exceptions import (
        AggregateNotFoundError,
        AppendOnlyError,
        ConcurrencyError,
        ConfigurationError,
        CQRSError,
        DuplicateHandlerError,
        HandlerNotFoundError,
        InvariantViolationError,
        LockTimeoutError,
        PreconditionFailedError,
        ProjectionApplyError,
        ProjectionError,
        QueryWriteError,
        RebuildSwitchError,
        RebuildWriteError,
        SerializationError,
        TransactionConflictError,
        UnknownEventTypeError,
    )
    from .projections import Projection, handles
    from .queries import Query
    from .read_models import ReadModel


def lazy_namespace(
    package: str, table: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose names load on first access:
    ``table`` maps each name to its module; ``namespace`` is the package's ``globals()``,
    where a name loaded is kept. ``django_cqrs.testing`` is built the same way."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__


__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, globals())
