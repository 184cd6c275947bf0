"""The projection classes, by name; sync ones are connected to ``event_recorded``.

    from django_cqrs.projections import all_projections, get_projection, projections_for

    get_projection("orders.OrderViewProjection")   # the class, or ProjectionError naming the known
    projections_for(OrderView)                     # the projections that own a read model

Every concrete :class:`~django_cqrs.projections.Projection` subclass registers itself
when its class statement runs; a module imported again replaces its classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models

from ..events import Event, EventEnvelope
from ..exceptions import ProjectionError
from ..signals import event_recorded

if TYPE_CHECKING:
    from .base import Projection

#: Applied inside the command's transaction.
SYNC = "sync"
#: Applied by django-q2 workers, after commit.
ASYNC = "async"
MODES = (SYNC, ASYNC)

_projection_classes: list[type[Projection]] = []


def register(cls: type[Projection]) -> None:
    """Track ``cls``; connect a sync projection to ``event_recorded``."""
    for i, existing in enumerate(_projection_classes):
        if existing.__module__ == cls.__module__ and existing.__qualname__ == cls.__qualname__:
            _disconnect(existing)
            _projection_classes[i] = cls
            break
    else:
        _projection_classes.append(cls)
    if cls.mode == SYNC:
        _connect(cls)


def _receiver_uid(cls: type[Projection], event_type: type[Event]) -> str:
    return f"django_cqrs.sync:{cls.__module__}.{cls.__qualname__}:{event_type.event_type}"


def _connect(cls: type[Projection]) -> None:
    def apply_sync(sender: type[Event], event: Event, envelope: EventEnvelope, **kw: Any) -> None:
        cls().apply(event, envelope)

    for event_type in cls.handlers:
        event_recorded.connect(
            apply_sync, sender=event_type, weak=False, dispatch_uid=_receiver_uid(cls, event_type)
        )


def _disconnect(cls: type[Projection]) -> None:
    for event_type in cls.handlers:
        event_recorded.disconnect(sender=event_type, dispatch_uid=_receiver_uid(cls, event_type))


def unregister(cls: type[Projection]) -> None:
    """Forget ``cls`` (tests use this for projections defined inside a test)."""
    _disconnect(cls)
    if cls in _projection_classes:
        _projection_classes.remove(cls)


def all_projections() -> list[type[Projection]]:
    """Every registered (non-abstract) projection class."""
    return list(_projection_classes)


def get_projection(name: str) -> type[Projection]:
    """The projection class called ``name``, or ``ProjectionError`` listing the known names."""
    for cls in _projection_classes:
        if cls.name == name:
            return cls
    known = ", ".join(sorted(cls.name for cls in _projection_classes)) or "none"
    raise ProjectionError(f"No projection is named {name!r}. Known projections: {known}")


def projections_for(read_model: type[models.Model]) -> list[type[Projection]]:
    """Projections that own ``read_model``."""
    return [cls for cls in _projection_classes if read_model in cls.read_models]
