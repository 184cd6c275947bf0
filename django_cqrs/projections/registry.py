"""The registry of projection classes, by name; sync ones are connected to ``event_recorded``.

    from django_cqrs.projections import all_projections, get_projection, projections_for

    get_projection("orders.OrderViewProjection")   # the class, or ProjectionError naming the known
    projections_for(OrderView)                     # the projections that own a read model

Every concrete :class:`~django_cqrs.projections.Projection` subclass registers itself
in ``base.projections`` (a :class:`ProjectionRegistry`) when its class statement runs; a
module imported again replaces its classes. The registry knows projections only by what
it reads of them (name, mode, handled events, read models), so it needs nothing of the
base class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar, cast

from django.db import models

from ..events import Event, EventEnvelope
from ..exceptions import ProjectionError
from ..signals import event_recorded

#: Applied inside the command's transaction.
SYNC = "sync"
#: Applied by django-q2 workers, after commit.
ASYNC = "async"
MODES = (SYNC, ASYNC)
#: The ``dispatch_uid`` of every ``event_recorded`` receiver that applies a sync
#: projection starts with this (``cqrs_inspect`` lists them as projections, not receivers).
RECEIVER_UID_PREFIX = "django_cqrs.sync:"


class ProjectionClass(Protocol):
    """What the registry reads of a projection class."""

    @property
    def name(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def handlers(self) -> Mapping[type[Event], str]: ...
    @property
    def read_models(self) -> Sequence[type[models.Model]]: ...

    def __call__(self) -> Any: ...


P = TypeVar("P", bound=ProjectionClass)


class ProjectionRegistry(Generic[P]):
    """Projection classes by name; connects the sync ones to ``event_recorded``."""

    def __init__(self) -> None:
        self._classes: list[P] = []

    def register(self, cls: P) -> None:
        """Track ``cls``; connect a sync projection to ``event_recorded``."""
        for i, existing in enumerate(self._classes):
            if _path(existing) == _path(cls):
                _disconnect(existing)
                self._classes[i] = cls
                break
        else:
            self._classes.append(cls)
        if cls.mode == SYNC:
            _connect(cls)

    def unregister(self, cls: P) -> None:
        """Forget ``cls`` (tests use this for projections defined inside a test).

        A class that a re-registration already replaced is not registered any more: its
        receivers are its replacement's (same ids), which stay connected.
        """
        if cls in self._classes:
            _disconnect(cls)
            self._classes.remove(cls)

    def all(self) -> list[P]:
        """Every registered (non-abstract) projection class."""
        return list(self._classes)

    def get(self, name: str) -> P:
        """The projection class called ``name``, or ``ProjectionError`` listing the known names."""
        for cls in self._classes:
            if cls.name == name:
                return cls
        known = ", ".join(sorted(cls.name for cls in self._classes)) or "none"
        raise ProjectionError(f"No projection is named {name!r}. Known projections: {known}")

    def owning(self, read_model: type[models.Model]) -> list[P]:
        """Projections that own ``read_model``."""
        return [cls for cls in self._classes if read_model in cls.read_models]


def _path(cls: ProjectionClass) -> str:
    """``module.QualName``: a module imported again redefines the class at the same path."""
    return f"{cls.__module__}.{cast(type, cls).__qualname__}"


def _receiver_uid(cls: ProjectionClass, event_type: type[Event]) -> str:
    return f"{RECEIVER_UID_PREFIX}{_path(cls)}:{event_type.event_type}"


def _connect(cls: ProjectionClass) -> None:
    def apply_sync(sender: type[Event], event: Event, envelope: EventEnvelope, **kw: Any) -> None:
        cls().apply(event, envelope)

    for event_type in cls.handlers:
        event_recorded.connect(
            apply_sync, sender=event_type, weak=False, dispatch_uid=_receiver_uid(cls, event_type)
        )


def _disconnect(cls: ProjectionClass) -> None:
    for event_type in cls.handlers:
        event_recorded.disconnect(sender=event_type, dispatch_uid=_receiver_uid(cls, event_type))
