"""Whole-row upserts and counters for read models, in as few statements as the database allows.

    from django_cqrs.db.upserts import add, set_if_null, upsert

    upsert(OrderView, [view1, view2])         # insert or replace whole rows
    add(OrderCount, row, {"orders": 1})       # add in the database; insert when missing
    set_if_null(ProjectionTrigger, "name", "orders.X", "queued_at", now, using="default")

On SQLite and PostgreSQL the statements are written here (``INSERT ... ON CONFLICT``;
PostgreSQL takes one array per column through ``unnest()``), writing what
``bulk_create(update_conflicts=True)`` writes without its per-value SQL compilation;
anything only the ORM can write (generated or ``db_default`` columns, fields with custom
placeholders, expressions as values) and other backends take the ORM path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router, transaction
from django.db.models.constants import OnConflict
from django.db.models.fields import NOT_PROVIDED


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


def number_fields(model: type[models.Model], amounts: dict[str, Any]) -> list[Any]:
    """The fields of ``model`` named in ``amounts``; ``ValueError`` naming an unknown one."""
    fields = {f.name: f for f in model._meta.concrete_fields if not f.primary_key}
    unknown = [name for name in amounts if name not in fields]
    if unknown:
        raise ValueError(f"{model.__name__} has no field {unknown[0]!r} to add to")
    return [fields[name] for name in amounts]


def add_amounts(row: models.Model, amounts: dict[str, Any]) -> models.Model:
    """Add ``amounts`` to the fields of ``row`` in memory; return ``row``."""
    for name, amount in amounts.items():
        setattr(row, name, getattr(row, name) + amount)
    return row


def add(model: type[models.Model], instance: models.Model, amounts: dict[str, Any]) -> None:
    """Add ``amounts`` to fields of the row of ``instance``'s primary key, in one statement;
    insert ``instance`` with the amounts added when there is no such row."""
    added = number_fields(model, amounts)
    add_amounts(instance, amounts)
    using = router.db_for_write(model)
    conn = connections[using]
    rows = _plain_rows(model, [instance], conn)
    if rows is None or not conn.features.supports_update_conflicts_with_target:
        existing = model._base_manager.using(using).filter(pk=instance.pk).first()
        upsert(model, [instance if existing is None else add_amounts(existing, amounts)])
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


def set_if_null(
    model: type[models.Model], key_field: str, key: Any, field: str, value: Any, *, using: str
) -> bool:
    """Create the row ``key`` with ``field = value``, or set ``field`` where it is null.

    Returns True if this call set it, False if the field already held a value.
    ``key_field`` must be unique (the primary key, say); a new row gets the database's
    defaults for the other columns (the ORM path: the fields' defaults). One statement on
    SQLite and PostgreSQL; the ORM cannot put a condition on the update of an upsert, so
    other databases take two.

    Every command that records an event for an async projection runs this on the same
    row, so on PostgreSQL it must not lock the row when the field is already set: an
    ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` locks the conflicting row until commit
    even when its WHERE rejects the update, which made concurrent commands wait for each
    other. An ``UPDATE ... WHERE field IS NULL`` locks only a row it changes, and an
    ``INSERT ... ON CONFLICT DO NOTHING`` none: both run in one statement (data-modifying
    CTEs). SQLite has one writer anyway and keeps the upsert.
    """
    conn = connections[using]
    if conn.vendor not in ("postgresql", "sqlite"):
        rows = model._base_manager.using(using)
        if rows.filter(**{key_field: key, f"{field}__isnull": True}).update(**{field: value}):
            return True
        return rows.get_or_create(**{key_field: key}, defaults={field: value})[1]
    qn = conn.ops.quote_name
    opts = model._meta
    table = qn(opts.db_table)
    key_column = qn(_concrete(model, key_field).column)
    target = _concrete(model, field)
    column = qn(target.column)
    prepared = target.get_db_prep_save(value, connection=conn)
    with transaction.mark_for_rollback_on_error(using), conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            cursor.execute(
                f"WITH lowered AS (UPDATE {table} SET {column} = %s "
                f"WHERE {key_column} = %s AND {column} IS NULL RETURNING 1), "
                f"created AS (INSERT INTO {table} ({key_column}, {column}) "
                f"SELECT %s, %s WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {key_column} = %s) "
                f"ON CONFLICT ({key_column}) DO NOTHING RETURNING 1) "
                f"SELECT (SELECT count(*) FROM lowered) + (SELECT count(*) FROM created)",
                [prepared, key, key, prepared, key],
            )
            (changed,) = cursor.fetchone()
            return bool(changed)
        cursor.execute(
            f"INSERT INTO {table} ({key_column}, {column}) VALUES (%s, %s) "
            f"ON CONFLICT ({key_column}) DO UPDATE SET {column} = EXCLUDED.{column} "
            f"WHERE {table}.{column} IS NULL",
            [key, prepared],
        )
        return bool(cursor.rowcount == 1)


def _concrete(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    assert field.column
    return field
