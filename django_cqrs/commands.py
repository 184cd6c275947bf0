"""Commands: frozen dataclasses that ask the write side to change something.

    from dataclasses import dataclass
    from uuid import UUID
    from django_cqrs import Command

    @dataclass(frozen=True)
    class CancelOrder(Command[None]):    # the type argument is what the handler returns
        order_id: UUID
        reason: str = ""

Handlers are registered with ``@command_handler`` and run by ``command_bus.dispatch()``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Generic, TypeVar

from .messages import Message

R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Command(Message, Generic[R]):
    """Base class of commands; ``R`` is the type the handler returns."""

    kind: ClassVar[str] = "command"
