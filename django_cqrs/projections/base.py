"""The projection base class, ``@handles``, and the registry of projection classes.

See :mod:`django_cqrs.projections` for the user API; ``all_projections()``,
``get_projection()`` and ``projections_for()`` ask :data:`projections`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from django.apps import apps
from django.db import models

from ..db.upserts import add, add_amounts, number_fields, upsert
from ..events import Event, EventEnvelope, event_names
from ..exceptions import ConfigurationError
from .buffer import RowBuffer, delete_rows, load_row
from .registry import MODES, SYNC, ProjectionRegistry

M = TypeVar("M", bound=models.Model)
F = TypeVar("F", bound=Callable[..., Any])


def handles(*event_types: type[Event]) -> Callable[[F], F]:
    """Mark a projection method as the handler of one or more event types."""
    for event_type in event_types:
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise ConfigurationError(f"@handles() takes Event subclasses, got {event_type!r}")

    def mark(func: F) -> F:
        func.__dict__.setdefault("_cqrs_handles", []).extend(event_types)
        return func

    return mark


class _ProjectionName:
    """Class attribute computing ``"<app_label>.<ClassName>"`` on first access."""

    def __get__(self, instance: Any, owner: type[Projection]) -> str:
        config = apps.get_containing_app_config(owner.__module__)
        label = config.label if config is not None else owner.__module__.rsplit(".", 1)[0]
        return f"{label}.{owner.__name__}"


class Projection:
    """Base class of projections; subclass with ``read_models`` and ``@handles`` methods."""

    name: ClassVar[str] = _ProjectionName()  # type: ignore[assignment]
    #: The ReadModel classes this projection owns (emptied and refilled by a rebuild).
    read_models: ClassVar[Sequence[type[models.Model]]] = ()
    #: "sync": applied inside the command's transaction. "async": by django-q2 tasks.
    mode: ClassVar[str] = SYNC
    #: What kind of consumer of the log this is, for reports (the metrics' ``kind``
    #: label): "projection"; a ``Saga`` is a "saga", a relay a "relay".
    kind: ClassVar[str] = "projection"
    #: Abstract projections are bases for others and are never run.
    abstract: ClassVar[bool] = True
    #: Event class -> name of the method handling it.
    handlers: ClassVar[dict[type[Event], str]] = {}
    #: Read model -> event field holding its primary key, for read models not keyed by
    #: the aggregate id (e.g. ``{CustomerSummary: "customer_id"}``): lets batches load
    #: their rows in one query.
    key_fields: ClassVar[dict[type[models.Model], str]] = {}
    #: Async only: events per catch-up batch (default: DJANGO_CQRS["CATCHUP_BATCH_SIZE"]).
    batch_size: ClassVar[int | None] = None
    #: Async only: failed attempts on one event before it is parked.
    max_retries: ClassVar[int] = 3
    #: Async only: longest retry delay in seconds (default: DJANGO_CQRS["RETRY_BACKOFF_MAX"]).
    retry_backoff_max: ClassVar[float | None] = None
    #: Async only: after parking an event, "stop" (keep order) or "skip" it and go on.
    on_failure: ClassVar[str] = "stop"
    #: False for consumers whose handlers have effects beyond read models (sagas): a
    #: rebuild would repeat them, so it is refused.
    rebuildable: ClassVar[bool] = True
    #: The classes that share this one's events between them, each on a checkpoint of its
    #: own, this class first (a saga's partitions); empty: it runs alone.
    partition_classes: ClassVar[tuple[type[Projection], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = _ProjectionName()  # type: ignore[assignment]
        cls.abstract = bool(cls.__dict__.get("abstract", False))
        handlers: dict[type[Event], str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for event_type in getattr(value, "_cqrs_handles", ()):
                    handlers[event_type] = attr
        cls.handlers = handlers
        if cls.abstract:
            return
        if cls.mode not in MODES:
            raise ConfigurationError(
                f"{cls.__qualname__}.mode must be one of {MODES}, not {cls.mode!r}"
            )
        if cls.on_failure not in ("stop", "skip"):
            raise ConfigurationError(
                f"{cls.__qualname__}.on_failure must be 'stop' or 'skip', not {cls.on_failure!r}"
            )
        projections.register(cls)

    def __init__(
        self,
        *,
        buffered: bool = False,
        targets: dict[type[models.Model], type[models.Model]] | None = None,
    ) -> None:
        self.buffer: RowBuffer | None = (
            RowBuffer(targets, owner=self.name) if buffered or targets else None
        )

    @classmethod
    def runs(cls) -> tuple[type[Projection], ...]:
        """The classes that run this projection's events: its partitions, when this is the
        first of them (a saga split over partitions); else the class itself."""
        parts = cls.partition_classes
        return parts if parts[:1] == (cls,) else (cls,)

    # -- applying events ------------------------------------------------------------

    @classmethod
    def on_parked(cls, position: int, using: str) -> None:
        """Called in the transaction that parks the event at ``position`` (a hook)."""

    @classmethod
    def handled_event_types(cls) -> list[str]:
        """Stored names of the event types this projection handles (their aliases too)."""
        return sorted({name for event_type in cls.handlers for name in event_names(event_type)})

    def apply(self, event: Event, envelope: EventEnvelope) -> None:
        """Apply one event (events this projection does not handle are ignored)."""
        method = self.handlers.get(type(event))
        if method is not None:
            getattr(self, method)(event, envelope)

    def flush(self) -> None:
        """Write buffered rows (no-op when not buffering)."""
        if self.buffer is not None:
            self.buffer.flush()

    # -- writing read models --------------------------------------------------------

    def get(self, model: type[M], pk: Any) -> M | None:
        """The read-model row with primary key ``pk`` (buffered writes included), or None."""
        if self.buffer is not None:
            return self.buffer.get(model, pk)
        return load_row(model, pk)

    def put(self, instance: models.Model) -> None:
        """Insert or replace ``instance``'s row."""
        if self.buffer is not None:
            self.buffer.put(instance)
        else:
            upsert(type(instance), [instance])

    def add(self, instance: models.Model, **amounts: Any) -> None:
        """Add ``amounts`` to number fields of ``instance``'s row; create it if missing.

        ``self.add(OrderCount(key=k, customer_id=c, status=s), orders=1)`` counts one more
        order, starting from ``instance`` (with the amounts added) when the row does not
        exist yet. Applied live, it is one statement (an upsert that adds in the database),
        where ``get()`` then ``put()`` would be two.
        """
        model = type(instance)
        if self.buffer is None:
            add(model, instance, amounts)
            return
        number_fields(model, amounts)
        self.buffer.put(add_amounts(self.buffer.get(model, instance.pk) or instance, amounts))

    def delete(self, model: type[models.Model], pk: Any) -> None:
        """Delete the row of ``model`` with primary key ``pk`` (if any)."""
        if self.buffer is not None:
            self.buffer.delete(model, pk)
        else:
            delete_rows(model, [pk])


#: Every concrete projection class, registered when its class statement runs.
projections: ProjectionRegistry[type[Projection]] = ProjectionRegistry()

register = projections.register
unregister = projections.unregister
all_projections = projections.all
get_projection = projections.get
projections_for = projections.owning
