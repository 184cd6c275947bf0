"""django_cqrs: CQRS for Django the Django way.

    from django_cqrs import Command, Query, Event, command_bus, query_bus
    from django_cqrs import command_handler, query_handler

Importing this package does not need Django to be set up: the names are loaded lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

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
    "CQRSError": "django_cqrs.exceptions",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from .bus import CommandResult, command_bus, command_handler, query_bus, query_handler
    from .commands import Command
    from .events import Event, EventEnvelope
    from .exceptions import CQRSError
    from .queries import Query


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'django_cqrs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
