"""The event log's append-only rule, enforced by the database itself.

    from django_cqrs.db import appendonly

    appendonly.install(schema_editor, StoredEvent)     # migration 0008 does this
    appendonly.refused(exc)                           # "UPDATE", "DELETE", "INSERT" or None

The model and its queryset refuse to change stored events (``AppendOnlyError``); the
triggers installed here refuse it on every other path too — a plain
``models.QuerySet(StoredEvent)``, ``bulk_create(update_conflicts=True)``, raw SQL — with
the message ``django_cqrs: stored events are append-only (<statement> refused)``:

- **PostgreSQL**: a ``BEFORE UPDATE OR DELETE ... FOR EACH ROW`` trigger raises
  SQLSTATE 23000 (``IntegrityError`` in Django). An upsert (``INSERT ... ON CONFLICT DO
  UPDATE``) that meets a stored event becomes an UPDATE and is refused. Row triggers do
  not fire on ``TRUNCATE``, which is how Django's flush empties a PostgreSQL database:
  emptying the whole table stays possible.
- **SQLite**: ``BEFORE UPDATE`` and ``BEFORE DELETE`` triggers ``RAISE(ABORT, ...)``
  (``IntegrityError``), and a ``BEFORE INSERT`` trigger refuses a row whose position or
  aggregate version is taken: ``INSERT OR REPLACE`` deletes the row it replaces without
  firing delete triggers (unless ``PRAGMA recursive_triggers`` is on), so only a check
  before the insert sees it. A colliding insert fails as it would on the unique
  constraints, whatever its conflict clause (``OR IGNORE`` included).

Django's flush on SQLite sends ``DELETE FROM <table>`` (through
``connection.ops.execute_sql_flush``), which the delete trigger would refuse; flushes
run between ``TransactionTestCase`` tests, so users' test suites depend on it. The
delete trigger therefore has ``WHEN NOT django_cqrs_flushing()``, a SQL function
registered on every SQLite connection Django opens (:func:`on_connection_created`, from
``connection_created``) that answers 1 only while that connection's
``ops.execute_sql_flush`` runs (wrapped per connection, never on the class). Why this
way: the triggers stay in place all the time (no DDL during a flush, no window without
them); nothing else on that connection, and nothing on any other connection, gets
through — an ordinary ``DELETE ... WHERE`` or a bare ``DELETE FROM django_cqrs_event``
outside a flush is refused; and a connection without the function (the ``sqlite3``
shell, another program) fails closed: its ``DELETE`` stops at "no such function:
django_cqrs_flushing". The guard is against mistakes, not against code set on getting
around it (which could call ``execute_sql_flush`` itself, or drop the trigger).

Other backends get no triggers: the model's and queryset's refusals are all they have.
On SQLite, a migration that alters the log's table remakes it and loses the triggers:
such a migration must call :func:`install` again.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.db import models

#: The start of every refusal's message, on every database.
MESSAGE = "django_cqrs: stored events are append-only"
#: The SQL function the SQLite delete trigger asks whether a flush is running.
FLUSH_FUNCTION = "django_cqrs_flushing"

_REFUSED = re.compile(re.escape(MESSAGE) + r" \((UPDATE|DELETE|INSERT)\b")
_STATE = "_django_cqrs_flushing"


def refused(exc: BaseException) -> str | None:
    """The statement a trigger refused (``"UPDATE"``, ``"DELETE"``, ``"INSERT"``), or None."""
    match = _REFUSED.search(str(exc)) or _REFUSED.search(str(exc.__cause__ or ""))
    return match.group(1) if match else None


def trigger_names(vendor: str, model: type[models.Model]) -> list[str]:
    """The triggers :func:`install` creates on ``model``'s table (none on other vendors)."""
    table = model._meta.db_table
    if vendor == "postgresql":
        return [f"{table}_append_only"]
    if vendor == "sqlite":
        return [f"{table}_no_update", f"{table}_no_delete", f"{table}_no_overwrite"]
    return []


def install(schema_editor: Any, model: type[models.Model]) -> None:
    """Create the triggers on ``model``'s table (again, if they are there)."""
    for sql in _install_sql(schema_editor.connection, model):
        schema_editor.execute(sql, None)


def uninstall(schema_editor: Any, model: type[models.Model]) -> None:
    """Drop the triggers (and PostgreSQL's trigger function)."""
    for sql in _uninstall_sql(schema_editor.connection, model):
        schema_editor.execute(sql, None)


def _install_sql(connection: Any, model: type[models.Model]) -> list[str]:
    q = connection.ops.quote_name
    meta = model._meta
    table = q(meta.db_table)
    names = [q(name) for name in trigger_names(connection.vendor, model)]
    if connection.vendor == "postgresql":
        (trigger,) = names
        message = (
            f"'{MESSAGE} (' || TG_OP || ' of position ' || OLD.{q(meta.pk.column)} || ' refused)'"
        )
        return [
            *_uninstall_sql(connection, model),
            f"""CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = {message},
        ERRCODE = 'integrity_constraint_violation',
        HINT = 'Record a new event instead; emptying the whole table (TRUNCATE) is allowed.';
END
$$""",
            f"CREATE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {trigger}()",
        ]
    if connection.vendor == "sqlite":
        no_update, no_delete, no_overwrite = names
        pk = q(meta.pk.column)
        columns = {field.name: field.column for field in meta.concrete_fields}
        agg = [q(columns[name]) for name in _AGGREGATE_VERSION]
        taken = " OR ".join(
            [
                f"{pk} = NEW.{pk}",
                "(" + " AND ".join(f"{column} = NEW.{column}" for column in agg) + ")",
            ]
        )
        return [
            *_uninstall_sql(connection, model),
            f"CREATE TRIGGER {no_update} BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END",
            f"CREATE TRIGGER {no_delete} BEFORE DELETE ON {table} "
            f"WHEN NOT {FLUSH_FUNCTION}() "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END",
            f"CREATE TRIGGER {no_overwrite} BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {taken}) "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (INSERT over a stored event refused: "
            f"its position or aggregate version is taken)'); END",
        ]
    return []


#: The fields of the log's unique (aggregate type, id, version) constraint.
_AGGREGATE_VERSION = ("aggregate_type", "aggregate_id", "aggregate_version")


def _uninstall_sql(connection: Any, model: type[models.Model]) -> list[str]:
    q = connection.ops.quote_name
    table = q(model._meta.db_table)
    names = [q(name) for name in trigger_names(connection.vendor, model)]
    if connection.vendor == "postgresql":
        (trigger,) = names
        return [
            f"DROP TRIGGER IF EXISTS {trigger} ON {table}",
            f"DROP FUNCTION IF EXISTS {trigger}()",
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in names]


# -- SQLite: Django's flush gets through the delete trigger ----------------------------


class _Flushing:
    """The SQL function ``django_cqrs_flushing()`` of one connection: 1 during its flush."""

    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth = 0

    def __call__(self) -> int:
        return 1 if self.depth else 0


def on_connection_created(sender: Any = None, *, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: register the flush function on a SQLite connection.

    It also wraps the connection's ``ops.execute_sql_flush`` (the instance's attribute;
    other connections and the backend class are untouched) if :func:`prepare` has not.
    """
    if connection.vendor != "sqlite" or connection.connection is None:
        return
    # A reconnection is a new sqlite3 connection: register the function again.
    connection.connection.create_function(FLUSH_FUNCTION, 0, _flushing(connection))


def prepare(connections: Any) -> None:
    """At start-up: wrap the flush of this thread's SQLite connections, open or not.

    A connection a thread creates later is wrapped when it opens
    (:func:`on_connection_created`); Django's flush opens it (to list the tables) before
    it calls ``execute_sql_flush``. ``execute_sql_flush`` called on a connection never
    opened before finds no wrapper and its DELETE is refused: it fails closed.
    """
    for connection in connections.all():
        if connection.vendor == "sqlite":
            _flushing(connection)
            on_connection_created(connection=connection)


def _flushing(connection: Any) -> _Flushing:
    """The connection's flush state; its ``ops.execute_sql_flush`` wrapped the first time."""
    state: _Flushing | None = connection.__dict__.get(_STATE)
    if state is None:
        state = _Flushing()
        setattr(connection, _STATE, state)
        connection.ops.execute_sql_flush = _while_flushing(connection.ops.execute_sql_flush, state)
    return state


def _while_flushing(execute_sql_flush: Any, state: _Flushing) -> Any:
    @functools.wraps(execute_sql_flush)
    def wrapper(sql_list: Any) -> Any:
        state.depth += 1
        try:
            return execute_sql_flush(sql_list)
        finally:
            state.depth -= 1

    return wrapper
