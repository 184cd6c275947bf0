"""Queries: frozen dataclasses that ask the read side for a view model.

    from dataclasses import dataclass
    from uuid import UUID
    from django_cqrs import Query

    @dataclass(frozen=True)
    class GetOrder(Query["OrderView"]):
        order_id: UUID

Handlers are registered with ``@query_handler`` and run by ``query_bus.dispatch()``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Generic, TypeVar

from .messages import Message

R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Query(Message, Generic[R]):
    """Base class of queries; ``R`` is the type the handler returns."""

    kind: ClassVar[str] = "query"
