"""The query write guard: no statement that writes leaves a query dispatch.

    from django_cqrs.db.readonly import read_only

    with read_only("orders.GetOrder", alias="default"):
        OrderView.objects.get(pk=order_id)          # fine
        OrderView.objects.filter(pk=order_id).delete()   # QueryWriteError, nothing sent

Every statement on every configured connection is checked before it is sent (see
:func:`~django_cqrs.db.statements.write_reason`), so a refused write never reaches the
database and the caller's transaction stays usable. On ``alias`` the database itself
refuses writes too: SQLite by ``PRAGMA query_only`` (in process, no round trip);
PostgreSQL by a ``READ ONLY`` transaction that is always rolled back — ``BEGIN READ
ONLY`` when the query opens the transaction, a savepoint with ``SET LOCAL
transaction_read_only`` inside the caller's — so that even a write hidden in a function
call cannot persist.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from django.db import DatabaseError, connections, transaction

from ..exceptions import QueryWriteError
from .statements import write_reason


class _WriteGuard:
    def __init__(self, query_name: str) -> None:
        self.query_name = query_name

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        reason = write_reason(sql)
        if reason is not None:
            raise QueryWriteError(
                f"Query handler for {self.query_name} attempted a write ({reason}): "
                f"{sql[:200]}. Query handlers read read models only; dispatch a command."
            )
        return execute(sql, params, many, context)


@contextmanager
def read_only(query_name: str, *, alias: str, transaction_read_only: bool = True) -> Iterator[None]:
    """Reject database writes inside the block; ``alias`` refuses them in the database too.

    ``transaction_read_only=False`` leaves PostgreSQL's READ ONLY transaction out (the
    statements are still checked).
    """
    guard = _WriteGuard(query_name)
    with ExitStack() as stack:
        for name in connections:
            if name == alias:
                stack.enter_context(_database_refuses_writes(name, transaction_read_only))
            stack.enter_context(connections[name].execute_wrapper(guard))
        try:
            yield
        except DatabaseError as exc:
            # The database's own refusal of a write the statement check cannot see:
            # PostgreSQL's SQLSTATE 25006, SQLite's "attempt to write a readonly database".
            cause = exc.__cause__
            if getattr(cause, "sqlstate", None) == "25006" or "readonly database" in str(cause):
                raise QueryWriteError(
                    f"Query handler for {query_name} attempted a write: {exc}"
                ) from exc
            raise


@contextmanager
def _database_refuses_writes(alias: str, transaction_read_only: bool) -> Iterator[None]:
    conn = connections[alias]
    postgres = conn.vendor == "postgresql" and transaction_read_only
    with ExitStack() as stack:
        if conn.vendor == "sqlite":
            stack.enter_context(_sqlite_query_only(conn))
        if conn.in_atomic_block:
            # Inside the caller's transaction: a savepoint, always rolled back, so that a
            # refused ORM write (whose own atomic block marks the transaction for
            # rollback) spoils only the savepoint.
            stack.enter_context(_rolled_back(alias, set_read_only=postgres))
        elif postgres:
            stack.enter_context(_read_only_transaction(alias))
        yield


@contextmanager
def _sqlite_query_only(conn: Any) -> Iterator[None]:
    conn.ensure_connection()
    raw = conn.connection
    (was_on,) = raw.execute("PRAGMA query_only").fetchone()
    if was_on:  # a query dispatched inside a query
        yield
        return
    raw.execute("PRAGMA query_only = ON")
    try:
        yield
    finally:
        if conn.connection is raw:
            raw.execute("PRAGMA query_only = OFF")


@contextmanager
def _read_only_transaction(alias: str) -> Iterator[None]:
    """A transaction that starts READ ONLY and is always rolled back (PostgreSQL)."""
    conn = connections[alias]
    conn.ensure_connection()
    raw = conn.connection
    if not hasattr(raw, "read_only"):  # psycopg2
        with _rolled_back(alias, set_read_only=True):
            yield
        return
    # psycopg 3 then opens the transaction with BEGIN READ ONLY: no extra round trip.
    raw.read_only = True
    try:
        with _rolled_back(alias, set_read_only=False):
            yield
    finally:
        if conn.connection is raw and not raw.closed:
            raw.read_only = None


@contextmanager
def _rolled_back(alias: str, *, set_read_only: bool) -> Iterator[None]:
    with transaction.atomic(using=alias):
        if set_read_only:
            with connections[alias].cursor() as cursor:
                cursor.execute("SET LOCAL transaction_read_only = on")
        try:
            yield
        finally:
            # Roll back even on success: SET LOCAL would otherwise outlive the savepoint.
            transaction.set_rollback(True, using=alias)
