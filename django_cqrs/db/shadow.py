"""Shadow tables: where a rebuild writes a read model's new rows, and the switch to them.

    from django_cqrs.db.shadow import create_table, drop_table, replace_rows, shadow_model

    shadow = shadow_model(OrderView, "default")    # same columns, table <table>_rebuild
    create_table(shadow, "default")                # (re)created empty
    ...                                            # fill it
    replace_rows(OrderView, shadow, "default")     # inside the switch's transaction
    drop_table(shadow, "default")

A shadow has the live table's columns but no secondary indexes and no foreign-key
constraints, so filling it costs only the rows.
"""

from __future__ import annotations

from typing import Any

from django.core.management.color import no_style
from django.db import connections, models
from django.db.backends.utils import truncate_name

_shadows: dict[type[models.Model], type[models.Model]] = {}


def shadow_model(model: type[models.Model], using: str) -> type[models.Model]:
    """An unmanaged model with ``model``'s columns on a ``<table>_rebuild`` table."""
    if model in _shadows:
        return _shadows[model]
    max_len = connections[using].ops.max_name_length() or 200
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "Meta": type(
            "Meta",
            (),
            {
                "app_label": "django_cqrs_shadow",
                "db_table": truncate_name(f"{model._meta.db_table}_rebuild", max_len),
                "managed": False,
            },
        ),
    }
    for field in model._meta.concrete_fields:
        clone: Any = field.clone()  # type: ignore[attr-defined]
        clone.db_index = False
        if clone.is_relation:
            clone.db_constraint = False
            clone.remote_field.related_name = "+"
        attrs[field.name] = clone
    shadow = type(f"{model.__name__}RebuildShadow", (models.Model,), attrs)
    _shadows[model] = shadow
    return shadow


def table_exists(model: type[models.Model], using: str) -> bool:
    """Does ``model``'s table exist?"""
    conn = connections[using]
    with conn.cursor() as cursor:
        return model._meta.db_table in conn.introspection.table_names(cursor)


def create_table(model: type[models.Model], using: str) -> None:
    """(Re)create ``model``'s table, empty; works inside a transaction."""
    conn = connections[using]
    # Not the schema editor's context manager: SQLite refuses it inside a transaction.
    editor = conn.SchemaEditorClass(conn, collect_sql=True)
    sql, params = editor.table_sql(model)
    with conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {conn.ops.quote_name(model._meta.db_table)}")
        cursor.execute(sql, params or None)


def drop_table(model: type[models.Model], using: str) -> None:
    """Drop ``model``'s table if it exists."""
    conn = connections[using]
    with conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {conn.ops.quote_name(model._meta.db_table)}")


def replace_rows(live: type[models.Model], shadow: type[models.Model], using: str) -> None:
    """Replace every row of ``live`` with the rows of ``shadow`` (same columns)."""
    conn = connections[using]
    qn = conn.ops.quote_name
    columns = ", ".join(qn(f.column) for f in live._meta.concrete_fields)
    with conn.cursor() as cursor:
        cursor.execute(f"DELETE FROM {qn(live._meta.db_table)}")
        cursor.execute(
            f"INSERT INTO {qn(live._meta.db_table)} ({columns}) "
            f"SELECT {columns} FROM {qn(shadow._meta.db_table)}"
        )
        # Auto-increment keys copied in: the live table's sequence goes past them
        # (PostgreSQL; SQLite's AUTOINCREMENT follows inserted keys by itself).
        for sql in conn.ops.sequence_reset_sql(no_style(), [live]):
            cursor.execute(sql)
