"""Projections turn events into read-model rows.

    from django_cqrs.projections import Projection, handles

    class OrderViewProjection(Projection):
        read_models = [OrderView]
        mode = "sync"                  # applied inside the command's transaction

        @handles(OrderPlaced)
        def placed(self, event: OrderPlaced, envelope: EventEnvelope) -> None:
            self.put(OrderView(id=event.order_id, status="placed", ...))

        @handles(OrderShipped)
        def shipped(self, event: OrderShipped, envelope: EventEnvelope) -> None:
            view = self.get(OrderView, event.order_id)
            view.status = "shipped"
            self.put(view)

Write through ``self.get()``, ``self.put()`` and ``self.delete()``: live they run at once,
during a rebuild or catch-up they are buffered and flushed in bulk once per batch, which
is what makes rebuilds fast. Plain ORM calls work too, but are not batched: use one style
per read model. ``envelope.replaying`` is True during a rebuild: skip side effects then.

A projection's ``name`` defaults to ``"<app_label>.<ClassName>"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import connections, models, router
from django.db.models.constants import OnConflict
from django.db.models.fields import NOT_PROVIDED

from .events import Event, EventEnvelope
from .exceptions import ConfigurationError, ProjectionApplyError, ProjectionError
from .signals import event_recorded

M = TypeVar("M", bound=models.Model)
F = TypeVar("F", bound=Callable[..., Any])

SYNC = "sync"
ASYNC = "async"
MODES = (SYNC, ASYNC)

_projection_classes: list[type[Projection]] = []


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


_DELETED = object()


class RowBuffer:
    """Read-model rows changed by a batch, written in bulk by :meth:`flush`.

    ``targets`` maps a read model to the table that really receives its rows (a
    rebuild's shadow table); handlers keep working with the read-model class.
    """

    def __init__(self, targets: dict[type[models.Model], type[models.Model]] | None = None):
        self.rows: dict[tuple[type[models.Model], Any], Any] = {}
        self.dirty: set[tuple[type[models.Model], Any]] = set()
        self.targets = targets or {}

    def get(self, model: type[M], pk: Any) -> M | None:
        key = (model, _pk_key(model, pk))
        if key not in self.rows:
            target = self.targets.get(model)
            loaded = _load(model, pk) if target is None else _convert(_load(target, pk), model)
            self.rows[key] = loaded or _DELETED
        row = self.rows[key]
        return None if row is _DELETED else row

    def prefetch(self, model: type[models.Model], pks: Iterable[Any]) -> None:
        """Load the existing rows of ``model`` among ``pks`` in one query per 1,000 keys.

        Keys already buffered, keys that are not valid for the primary key, and rows
        that do not exist are left alone (:meth:`get` loads those one by one, as before).
        """
        wanted: dict[Any, None] = {}
        for pk in pks:
            try:
                key = _pk_key(model, pk)
            except (ValidationError, ValueError, TypeError):
                continue
            if key is not None and (model, key) not in self.rows:
                wanted[key] = None
        if not wanted:
            return
        target = self.targets.get(model)
        source = target or model
        manager = source._base_manager.using(router.db_for_write(source))
        keys = list(wanted)
        for start in range(0, len(keys), 1000):
            for row in manager.filter(pk__in=keys[start : start + 1000]).order_by():
                instance = row if target is None else _convert_existing(row, model)
                self.rows.setdefault((model, _pk_key(model, row.pk)), instance)

    def put(self, instance: models.Model) -> None:
        key = (type(instance), _pk_key(type(instance), instance.pk))
        self.rows[key] = instance
        self.dirty.add(key)

    def delete(self, model: type[models.Model], pk: Any) -> None:
        key = (model, _pk_key(model, pk))
        self.rows[key] = _DELETED
        self.dirty.add(key)

    def flush(self) -> None:
        upserts: dict[type[models.Model], list[models.Model]] = {}
        deletes: dict[type[models.Model], list[Any]] = {}
        for key in self.dirty:
            model, pk = key
            row = self.rows[key]
            target = self.targets.get(model)
            if row is _DELETED:
                deletes.setdefault(target or model, []).append(pk)
            else:
                upserts.setdefault(target or model, []).append(
                    row if target is None else _convert_existing(row, target)
                )
        for model, pks in deletes.items():
            _delete(model, pks)
        for model, instances in upserts.items():
            upsert(model, instances)
        self.rows.clear()
        self.dirty.clear()


def _convert_existing(instance: models.Model, to: type[M]) -> M:
    converted = _convert(instance, to)
    assert converted is not None
    return converted


def _convert(instance: models.Model | None, to: type[M]) -> M | None:
    """The same row as an instance of ``to`` (a read model or its shadow)."""
    if instance is None:
        return None
    # Positional arguments, in ``to``'s field order: Model.__init__'s fast path.
    converted = to(*[getattr(instance, f.attname) for f in to._meta.concrete_fields])
    converted._state.adding = instance._state.adding
    return converted


def _pk_key(model: type[models.Model], pk: Any) -> Any:
    return model._meta.pk.to_python(pk)


def _load(model: type[M], pk: Any) -> M | None:
    return model._base_manager.using(router.db_for_write(model)).filter(pk=pk).first()


def _delete(model: type[models.Model], pks: Sequence[Any]) -> None:
    model._base_manager.using(router.db_for_write(model)).filter(pk__in=list(pks)).delete()


def upsert(model: type[models.Model], instances: Sequence[models.Model]) -> None:
    """Insert or replace ``instances`` (whole rows) in one statement per 500 rows."""
    if not instances:
        return
    if _upsert_sql(model, instances):
        return
    pk_name = model._meta.pk.name
    fields = [
        f.name
        for f in model._meta.concrete_fields
        if not f.primary_key and not getattr(f, "generated", False)
    ]
    kwargs: dict[str, Any] = {"batch_size": 500}
    if fields:
        kwargs.update(update_conflicts=True, unique_fields=[pk_name], update_fields=fields)
    else:
        kwargs["ignore_conflicts"] = True
    model._base_manager.using(router.db_for_write(model)).bulk_create(list(instances), **kwargs)


def _upsert_sql(model: type[models.Model], instances: Sequence[models.Model]) -> bool:
    """``upsert()`` for plain columns, without the ORM's per-value SQL compilation.

    Writes what ``bulk_create(update_conflicts=True)`` writes (``pre_save`` and
    ``get_db_prep_save`` of every field, the backend's own ``ON CONFLICT`` clause) and
    returns False, writing nothing, for anything else it would have to handle: generated
    or ``db_default`` columns, fields with custom placeholders, expressions as values,
    missing primary keys, backends other than SQLite and PostgreSQL.
    """
    using = router.db_for_write(model)
    conn = connections[using]
    opts = model._meta
    pk = opts.pk
    fields = list(opts.concrete_fields)
    update = [f for f in fields if not f.primary_key]
    if not (
        conn.features.supports_update_conflicts_with_target
        if update
        else conn.features.supports_ignore_conflicts
    ):
        return False
    rows = _plain_rows(model, instances, conn)
    if rows is None:
        return False
    qn = conn.ops.quote_name
    suffix = conn.ops.on_conflict_suffix_sql(
        fields,
        OnConflict.UPDATE if update else OnConflict.IGNORE,
        [f.column for f in update],
        [pk.column],
    )
    head = f"INSERT INTO {qn(opts.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
    casts = _array_casts(fields, conn) if len(rows) > 1 else None
    if casts is not None:
        # PostgreSQL: one array parameter per column (unnest), whatever the row count:
        # a short statement instead of thousands of placeholders to bind and parse.
        with conn.cursor() as cursor:
            for start in range(0, len(rows), 5000):
                chunk = rows[start : start + 5000]
                cursor.execute(
                    f"{head}SELECT * FROM unnest({casts}) {suffix}",
                    [[row[i] for row in chunk] for i in range(len(fields))],
                )
        rows = []
    head += "VALUES "
    one = f"({', '.join(['%s'] * len(fields))})"
    size = max(1, min(500, conn.ops.bulk_batch_size(fields, instances)))
    with conn.cursor() as cursor:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            cursor.execute(
                f"{head}{', '.join([one] * len(chunk))} {suffix}",
                [value for row in chunk for value in row],
            )
    for instance in instances:
        instance._state.adding = False
        instance._state.db = using
    return True


def _plain_rows(
    model: type[models.Model], instances: Sequence[models.Model], conn: Any
) -> list[list[Any]] | None:
    """Database values of the concrete fields of ``instances``, as ``bulk_create`` would
    send them (``pre_save``, ``get_db_prep_save``); None where only the ORM can write the
    rows: generated or ``db_default`` columns, fields with custom placeholders,
    expressions as values, missing primary keys, backends other than SQLite and
    PostgreSQL.
    """
    pk = model._meta.pk
    fields = model._meta.concrete_fields
    if (
        conn.vendor not in ("sqlite", "postgresql")
        or pk is None
        or any(
            getattr(f, "generated", False)
            or f.db_default is not NOT_PROVIDED
            or getattr(f, "get_placeholder", None) is not None
            for f in fields
        )
    ):
        return None
    rows: list[list[Any]] = []
    for instance in instances:
        if type(instance) is not model or getattr(instance, pk.attname) is None:
            return None
        row = []
        for field in fields:
            value = field.pre_save(instance, True)
            if hasattr(value, "resolve_expression"):
                return None
            row.append(field.get_db_prep_save(value, connection=conn))
        rows.append(row)
    return rows


def _number_fields(model: type[models.Model], amounts: dict[str, Any]) -> list[Any]:
    fields = {f.name: f for f in model._meta.concrete_fields if not f.primary_key}
    unknown = [name for name in amounts if name not in fields]
    if unknown:
        raise ValueError(f"{model.__name__} has no field {unknown[0]!r} to add to")
    return [fields[name] for name in amounts]


def _add_amounts(row: models.Model, amounts: dict[str, Any]) -> models.Model:
    for name, amount in amounts.items():
        setattr(row, name, getattr(row, name) + amount)
    return row


def add(model: type[models.Model], instance: models.Model, amounts: dict[str, Any]) -> None:
    """Add ``amounts`` to fields of the row of ``instance``'s primary key, in one statement;
    insert ``instance`` with the amounts added when there is no such row."""
    added = _number_fields(model, amounts)
    _add_amounts(instance, amounts)
    using = router.db_for_write(model)
    conn = connections[using]
    rows = _plain_rows(model, [instance], conn)
    if rows is None or not conn.features.supports_update_conflicts_with_target:
        existing = _load(model, instance.pk)
        upsert(model, [instance if existing is None else _add_amounts(existing, amounts)])
        return
    qn = conn.ops.quote_name
    opts = model._meta
    table = qn(opts.db_table)
    columns = ", ".join(qn(f.column) for f in opts.concrete_fields)
    sets = ", ".join(f"{qn(f.column)} = {table}.{qn(f.column)} + %s" for f in added)
    with conn.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(rows[0]))}) "
            f"ON CONFLICT ({qn(opts.pk.column)}) DO UPDATE SET {sets}",
            [*rows[0], *(f.get_db_prep_save(amounts[f.name], connection=conn) for f in added)],
        )
    instance._state.adding = False
    instance._state.db = using


#: Field types whose values PostgreSQL takes as elements of a typed array unchanged.
_ARRAY_SAFE_TYPES = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "BigIntegerField",
        "BooleanField",
        "CharField",
        "DateField",
        "DateTimeField",
        "DecimalField",
        "EmailField",
        "FloatField",
        "IntegerField",
        "PositiveBigIntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "SlugField",
        "SmallAutoField",
        "SmallIntegerField",
        "TextField",
        "TimeField",
        "URLField",
        "UUIDField",
    }
)


def _array_casts(fields: Sequence[Any], conn: Any) -> str | None:
    """``%s::<type>[], ...`` for an unnest() insert on PostgreSQL, or None."""
    if conn.vendor != "postgresql":
        return None
    casts = []
    for field in fields:
        target = field.target_field if field.is_relation else field
        db_type = field.db_type(conn)
        if target.get_internal_type() not in _ARRAY_SAFE_TYPES or not db_type:
            return None
        casts.append(f"%s::{db_type}[]")
    return ", ".join(casts)


class Projection:
    """Base class of projections; subclass with ``read_models`` and ``@handles`` methods."""

    name: ClassVar[str] = _ProjectionName()  # type: ignore[assignment]
    #: The ReadModel classes this projection owns (emptied and refilled by a rebuild).
    read_models: ClassVar[Sequence[type[models.Model]]] = ()
    #: "sync": applied inside the command's transaction. "async": by django-q2 tasks.
    mode: ClassVar[str] = SYNC
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
    #: Async only: after parking an event, "stop" (keep order) or "skip" it and go on.
    on_failure: ClassVar[str] = "stop"

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
        register(cls)

    def __init__(
        self,
        *,
        buffered: bool = False,
        targets: dict[type[models.Model], type[models.Model]] | None = None,
    ) -> None:
        self.buffer: RowBuffer | None = RowBuffer(targets) if buffered or targets else None

    # -- applying events ------------------------------------------------------------

    @classmethod
    def handled_event_types(cls) -> list[str]:
        """Stored names of the event types this projection handles."""
        return sorted({event_type.event_type for event_type in cls.handlers})

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
        return _load(model, pk)

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
        _number_fields(model, amounts)
        self.buffer.put(_add_amounts(self.buffer.get(model, instance.pk) or instance, amounts))

    def delete(self, model: type[models.Model], pk: Any) -> None:
        """Delete the row of ``model`` with primary key ``pk`` (if any)."""
        if self.buffer is not None:
            self.buffer.delete(model, pk)
        else:
            _delete(model, [pk])


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


def apply_rows(
    projection: Projection,
    rows: Iterable[tuple[Any, ...]],
    *,
    replaying: bool,
    skip: frozenset[int] = frozenset(),
) -> int | None:
    """Decode and apply raw event rows (except positions in ``skip``); return the last seen.

    With a buffered projection, the read-model rows the batch will touch are loaded
    first, in bulk: those whose primary key is an event's aggregate id, or the value of
    the event field named in ``key_fields`` for that read model. Rows then cost no query
    per event (a rebuild or catch-up would otherwise be bound by them).
    """
    from .store import EVENT_FIELDS, decode_row

    if projection.buffer is not None:
        rows = list(rows)
        aggregate_ids = {row[EVENT_FIELDS.index("aggregate_id")] for row in rows}
        payload = EVENT_FIELDS.index("payload")
        for model in projection.read_models:
            field = projection.key_fields.get(model)
            if field is None:
                keys: set[Any] = aggregate_ids
            else:
                keys = {row[payload].get(field) for row in rows} - {None}
            projection.buffer.prefetch(model, keys)
    last = None
    for row in rows:
        last = row[0]
        if last in skip:
            continue
        try:
            event, envelope = decode_row(row, replaying=replaying)
            projection.apply(event, envelope)
        except Exception as exc:
            raise ProjectionApplyError(
                f"{projection.name} failed on {row[1]} at position {last}: "
                f"{type(exc).__name__}: {exc}",
                projection=projection.name,
                position=last,
                event_type=row[1],
            ) from exc
    return last
