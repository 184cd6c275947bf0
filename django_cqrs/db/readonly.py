"""The query write guard: a query dispatch can neither write nor end its transaction.

    from django_cqrs.db.readonly import read_only

    with read_only("orders.GetOrder"):
        OrderView.objects.get(pk=order_id)                # fine
        OrderView.objects.filter(pk=order_id).delete()    # QueryWriteError, nothing sent

Two layers, on every database alias, for the length of the block:

- **The statement check.** Every statement sent through a Django cursor is checked before
  it is sent (:func:`~django_cqrs.db.statements.judge`): one command per call, a read, no
  transaction control. Savepoints pass as long as they stay inside the query:
  ``SAVEPOINT`` always, ``RELEASE`` and ``ROLLBACK TO`` only of a savepoint the query
  created itself, so ``transaction.atomic()`` in a handler works and the caller's
  savepoints are out of reach. SQLite's ``BEGIN`` passes only from Django's own
  ``atomic()``. A refused statement never reaches the database, and the caller's
  transaction stays usable.
- **The database refuses writes itself**, on each alias from the first statement the
  query sends there (an alias the query does not use costs nothing). PostgreSQL: a
  ``READ ONLY`` transaction, always rolled back (psycopg sends ``BEGIN READ ONLY``);
  inside a caller's transaction, a savepoint with ``SET LOCAL transaction_read_only = on``,
  rolled back and released at the end. SQLite: statements are prepared under an
  authorizer that allows reads, and transaction control only where the statement check
  let it through — which covers the cursor's ``executescript()`` too, since that does not
  go through Django's execute wrappers (it also replaces an authorizer of your own for the
  length of the query). Inside a caller's transaction SQLite gets the rolled-back
  savepoint as well.

:func:`statements_only` says why an alias gets the statement check only (another
backend, or PostgreSQL with ``QUERY_READ_ONLY_TRANSACTION = False``); system check W008
warns about such an alias. Out of reach of both: SQL sent on the driver's
connection (``connection.connection``) around Django, and database functions with effects
outside the transaction (``dblink``, advisory locks).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import CodeType
from typing import Any, NamedTuple

from django.db import DatabaseError, connections, transaction
from django.db.backends.signals import connection_created

from ..exceptions import QueryWriteError
from .statements import (
    COMMENT,
    SEVERAL,
    SPLICED,
    TRANSACTION_CONTROL,
    UNTERMINATED,
    WRITE,
    Control,
    Refusal,
    dialect_for,
    judge,
)

_GUARD_SAVEPOINT = "cqrs_query_guard"
_ADVICE = {
    WRITE: "Query handlers read read models only; dispatch a command.",
    TRANSACTION_CONTROL: (
        "A query runs in a read-only transaction it may not end or change; "
        "use transaction.atomic() for savepoints."
    ),
    SEVERAL: "Send one statement per execute().",
    SPLICED: "The driver would splice the value into the literal: pass values outside quotes.",
    UNTERMINATED: "Close the literal or comment.",
    COMMENT: "Leave comments out of query SQL on this database.",
}
_SQLITE_READS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_SQLITE_CONTROL = frozenset({sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT})
_SQLITE_ACTIONS = {
    getattr(sqlite3, name): name.removeprefix("SQLITE_").replace("_", " ")
    for name in (
        *("SQLITE_INSERT", "SQLITE_UPDATE", "SQLITE_DELETE", "SQLITE_PRAGMA", "SQLITE_ATTACH"),
        *("SQLITE_DETACH", "SQLITE_TRANSACTION", "SQLITE_SAVEPOINT", "SQLITE_REINDEX"),
        *("SQLITE_ANALYZE", "SQLITE_ALTER_TABLE", "SQLITE_CREATE_TABLE", "SQLITE_DROP_TABLE"),
    )
}
_IDLE = 0  # psycopg's TransactionStatus.IDLE: no transaction under way
#: The driver connection's default for new transactions: psycopg 3, psycopg2.
_READ_ONLY_ATTRIBUTES = ("read_only", "readonly")
#: How many frames above the guard Django's ``_start_transaction_under_autocommit`` may be.
_BEGIN_FRAMES = 12


def statements_only(alias: str, *, transaction_read_only: bool = True) -> str | None:
    """Why the database behind ``alias`` would not refuse a query's write itself, or None.

    ``transaction_read_only`` is the ``QUERY_READ_ONLY_TRANSACTION`` setting. Where this
    gives a reason, queries get the statement check only (system check W008).
    """
    vendor = connections[alias].vendor
    if vendor == "sqlite" or (vendor == "postgresql" and transaction_read_only):
        return None
    if vendor == "postgresql":
        return "its READ ONLY transaction is off (QUERY_READ_ONLY_TRANSACTION = False)"
    return f"the guard knows no read-only mode of the {vendor!r} backend"


@contextmanager
def read_only(query_name: str, *, transaction_read_only: bool = True) -> Iterator[None]:
    """Refuse writes and transaction control on every database alias inside the block.

    ``transaction_read_only=False`` leaves PostgreSQL's READ ONLY transaction out (the
    statements are still checked).
    """
    guards: list[_Guard] = []
    outer: list[_Nested] = []
    for alias in connections:
        conn = connections[alias]
        running = next((w for w in conn.execute_wrappers if isinstance(w, _Guard)), None)
        if running is not None:  # a query dispatched inside a query: the outer guard holds
            outer.append(
                _Nested(running, running.query_name, conn.needs_rollback, running.failures)
            )
            running.query_name = query_name
            continue
        guard = _Guard(query_name, alias, transaction_read_only)
        conn.execute_wrappers.append(guard)
        guards.append(guard)
    try:
        for guard in guards:
            if guard.conn.connection is not None:  # else when it connects
                guard.protect()
        yield
    except Exception as exc:
        # Django's DatabaseError, or the driver's own from a call that bypasses Django's
        # wrapping (SQLite's executescript(), psycopg's copy()).
        error = _database_refusal(exc, query_name, guards)
        if error is None:
            raise
        raise error from exc
    finally:
        for nested in outer:
            nested.leave()
        _remove(guards)


class _Nested(NamedTuple):
    """The outer query's guard, as an inner query found it."""

    guard: _Guard
    query_name: str
    needs_rollback: bool
    failures: int

    def leave(self) -> None:
        guard = self.guard
        guard.query_name = self.query_name
        if guard.failures == self.failures:
            guard.restore_needs_rollback(self.needs_rollback)


def _remove(guards: list[_Guard]) -> None:
    if not guards:
        return
    guard = guards.pop()
    try:
        guard.close()
    finally:
        guard.conn.execute_wrappers.remove(guard)
        _remove(guards)


def _database_refusal(
    exc: Exception, query_name: str, guards: list[_Guard]
) -> QueryWriteError | None:
    """The QueryWriteError standing for the database's own refusal of a write, or None."""
    if isinstance(exc, QueryWriteError):
        return None
    driver_error = exc.__cause__ if isinstance(exc, DatabaseError) else exc
    code = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    if code == "25006":  # read_only_sql_transaction
        return QueryWriteError(f"Query handler for {query_name} attempted a write: {exc}")
    denied = next((guard.denied for guard in guards if guard.denied), None)
    if (
        denied is not None
        and isinstance(driver_error, sqlite3.DatabaseError)
        and "not authorized" in str(exc)
    ):
        return QueryWriteError(
            f"Query handler for {query_name} attempted {denied.kind} ({denied.statement}), "
            f"which SQLite's read-only authorizer refused. {_ADVICE[denied.kind]}"
        )
    return None


def _refused(query_name: str, refusal: Refusal, sql: str) -> QueryWriteError:
    return QueryWriteError(
        f"Query handler for {query_name} attempted {refusal.kind} ({refusal.statement}): "
        f"{sql[:200]}. {_ADVICE[refusal.kind]}"
    )


class _Guard:
    """One alias in one query: the execute wrapper, and the database's refusal of writes."""

    def __init__(self, query_name: str, alias: str, transaction_read_only: bool) -> None:
        conn: Any = connections[alias]
        self.query_name = query_name
        self.alias = alias
        self.conn = conn
        self.dialect = dialect_for(conn.vendor)
        self.sqlite = conn.vendor == "sqlite"
        self.postgres = conn.vendor == "postgresql" and transaction_read_only
        raw = conn.connection
        #: The query runs inside a transaction of its caller (Django's, or one by hand).
        self.in_caller_transaction = bool(
            conn.in_atomic_block
            or (raw is not None and (not conn.autocommit or (self.sqlite and raw.in_transaction)))
        )
        self.needs_rollback = conn.needs_rollback
        #: The driver connection the protection stands on (None: check at every statement).
        self.protected: Any = None
        self.failures = 0  # statements that failed in the database
        self.savepoint = False  # the guard's own savepoint is open
        self.owned: Any = None  # the guard's own atomic block (PostgreSQL, no caller's)
        self.read_only_set: tuple[Any, str] | None = None  # the driver connection made read-only
        self.authorized: list[Any] = []  # SQLite connections under the authorizer
        self.savepoints: list[str] = []  # savepoints the query created and has not ended
        self.vetted = False  # a checked statement is being sent
        self.denied: Refusal | None = None  # what SQLite's authorizer refused last

    # -- the statement check -----------------------------------------------------------

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        verdict = judge(sql, self.dialect, bound=params is not None)
        control = None
        if verdict is not None:
            control = self._allowed(verdict, sql)
            if control.action == "begin":
                # Django's atomic() in the handler, on SQLite. A query's transaction only
                # reads: DEFERRED, so it takes no write lock whatever transaction_mode says.
                sql = "BEGIN"
        if self.protected is not self.conn.connection:
            self.protect()
        vetted, self.vetted = self.vetted, True
        try:
            result = execute(sql, params, many, context)
        except DatabaseError:
            self.failures += 1
            raise
        finally:
            self.vetted = vetted
        if control is not None:
            self._record(control)
        return result

    def _allowed(self, verdict: Refusal | Control, sql: str) -> Control:
        """The savepoint or BEGIN statement the guard lets through; raises for the rest."""
        if isinstance(verdict, Refusal):
            raise _refused(self.query_name, verdict, sql)
        raw = self.conn.connection
        if verdict.action == "begin":
            if not raw.in_transaction and _from_django_atomic(self.conn):
                return verdict
            refusal = Refusal(TRANSACTION_CONTROL, f"{verdict.statement} outside Django's atomic()")
        elif verdict.action == "savepoint":
            if verdict.name == _GUARD_SAVEPOINT:  # ROLLBACK TO it would find the query's
                refusal = Refusal(TRANSACTION_CONTROL, f"{verdict.statement}, the guard's name")
            elif not self.sqlite or raw.in_transaction:
                return verdict
            else:
                refusal = Refusal(TRANSACTION_CONTROL, "SAVEPOINT outside a transaction starts one")
        elif verdict.name in self.savepoints:
            return verdict
        else:
            refusal = Refusal(
                TRANSACTION_CONTROL, f"{verdict.statement}, a savepoint this query did not create"
            )
        raise _refused(self.query_name, refusal, sql)

    def _record(self, control: Control) -> None:
        if control.action == "savepoint":
            self.savepoints.append(control.name)
        elif control.action in ("release", "rollback to"):
            index = len(self.savepoints) - 1 - self.savepoints[::-1].index(control.name)
            del self.savepoints[index + (control.action == "rollback to") :]

    # -- the database's own refusal ----------------------------------------------------

    def protect(self) -> None:
        """Make the database refuse writes on the alias's connection (open by now)."""
        raw = self.conn.connection
        if self.sqlite:
            self._protect_sqlite(raw)
        elif self.postgres:
            self._protect_postgresql(raw)
        else:
            self.protected = raw

    def _protect_sqlite(self, raw: Any) -> None:
        if self.in_caller_transaction and not self.savepoint:
            with self.conn.wrap_database_errors:
                raw.execute(f'SAVEPOINT "{_GUARD_SAVEPOINT}"')
            self.savepoint = True
        # Installing an authorizer expires the prepared statements: each is prepared again,
        # under it, before it runs.
        raw.set_authorizer(self._authorize)
        self.authorized.append(raw)
        self.protected = raw

    def _authorize(self, action: int, arg1: Any, arg2: Any, database: Any, source: Any) -> int:
        if action in _SQLITE_READS:
            return sqlite3.SQLITE_OK
        if action in _SQLITE_CONTROL and self.vetted:
            return sqlite3.SQLITE_OK  # a savepoint or BEGIN the statement check let through
        if (
            action == sqlite3.SQLITE_TRANSACTION
            and arg1 in ("COMMIT", "ROLLBACK")
            and not self.in_caller_transaction
        ):
            return sqlite3.SQLITE_OK  # Django ending an atomic block the handler opened
        name = _SQLITE_ACTIONS.get(action, f"action {action}")
        kind = TRANSACTION_CONTROL if action in _SQLITE_CONTROL else WRITE
        self.denied = Refusal(kind, f"{name} {arg1}" if arg1 else name)
        return sqlite3.SQLITE_DENY

    def _protect_postgresql(self, raw: Any) -> None:
        conn = self.conn
        if self.owned is not None or self.savepoint or conn.needs_rollback:
            # Protected already (Django refuses statements on a connection replaced inside
            # an atomic block until the block ends), or the caller's transaction will be
            # rolled back whatever the query does.
            self.protected = raw
            return
        if self.in_caller_transaction:
            with conn.wrap_database_errors, raw.cursor() as cursor:
                cursor.execute(
                    f"SAVEPOINT {_GUARD_SAVEPOINT}; SET LOCAL transaction_read_only = on"
                )
            self.savepoint = True
        else:
            # No transaction: the guard opens one, always rolled back, before the handler
            # runs (or as the handler connects): its atomic blocks nest inside.
            self.owned = transaction.atomic(using=self.alias)
            self.owned.__enter__()
            attribute = next((a for a in _READ_ONLY_ATTRIBUTES if hasattr(raw, a)), None)
            if attribute is not None and raw.info.transaction_status == _IDLE:
                # The driver opens the transaction with BEGIN READ ONLY: no round trip now.
                setattr(raw, attribute, True)
                self.read_only_set = (raw, attribute)
            else:
                with conn.wrap_database_errors, raw.cursor() as cursor:
                    cursor.execute("SET TRANSACTION READ ONLY")
        self.protected = raw

    def close(self) -> None:
        """Roll back what the guard opened and leave the connection as it found it."""
        conn = self.conn
        try:
            for raw in self.authorized:
                with suppress(sqlite3.ProgrammingError):  # closed in the meantime
                    raw.set_authorizer(None)
            if self.owned is not None:
                self._roll_back_owned()
            elif self.savepoint:
                if not conn.closed_in_transaction and conn.connection is self.protected:
                    self._roll_back_savepoint()
                    conn.needs_rollback = self.needs_rollback
            elif not self.failures:
                self.restore_needs_rollback(self.needs_rollback)
        finally:
            if self.read_only_set is not None:
                raw, attribute = self.read_only_set
                if not raw.closed and raw.info.transaction_status == _IDLE:
                    setattr(raw, attribute, None)

    def restore_needs_rollback(self, needs_rollback: bool) -> None:
        """Nothing the query sent failed: the transaction goes on as it was.

        A refused write never reached the database, but its own atomic block marked the
        transaction for rollback.
        """
        conn = self.conn
        if conn.in_atomic_block and not conn.closed_in_transaction:
            conn.needs_rollback = needs_rollback

    def _roll_back_owned(self) -> None:
        conn = self.conn
        if conn.in_atomic_block:
            transaction.set_rollback(True, using=self.alias)
            self.owned.__exit__(None, None, None)
            return
        # The connection opened as the handler entered atomic(): that block took the
        # guard's transaction for one begun by hand (autocommit off), and its exit left
        # Django believing no block is open. The transaction is still the guard's.
        if self.owned in conn.atomic_blocks:
            conn.atomic_blocks.remove(self.owned)
        if conn.connection is not None and not conn.get_autocommit():
            conn.rollback()
            conn.set_autocommit(True)

    def _roll_back_savepoint(self) -> None:
        raw = self.conn.connection
        with self.conn.wrap_database_errors:
            if self.sqlite:
                raw.execute(f'ROLLBACK TO SAVEPOINT "{_GUARD_SAVEPOINT}"')
                raw.execute(f'RELEASE SAVEPOINT "{_GUARD_SAVEPOINT}"')
            else:
                with raw.cursor() as cursor:
                    cursor.execute(
                        f"ROLLBACK TO SAVEPOINT {_GUARD_SAVEPOINT}; "
                        f"RELEASE SAVEPOINT {_GUARD_SAVEPOINT}"
                    )


def _protect_new_connection(*, connection: Any, **kwargs: Any) -> None:
    """``connection_created``: a connection a guarded query opens is protected at once.

    So even a first statement that bypasses the execute wrappers (SQLite's
    ``executescript()``, psycopg's ``copy()``) finds the database refusing writes.
    """
    for wrapper in connection.execute_wrappers:
        if isinstance(wrapper, _Guard):
            wrapper.protect()
            return


# Connected here rather than in apps.py: no guard can run before this module is imported.
connection_created.connect(_protect_new_connection, dispatch_uid="django_cqrs.db.readonly")

_begin_codes: dict[type, frozenset[CodeType]] = {}


def _from_django_atomic(conn: Any) -> bool:
    """Whether the statement comes from Django's ``_start_transaction_under_autocommit``.

    SQLite's ``atomic()`` sends its ``BEGIN`` through the cursor, like any user SQL; the
    caller's frame tells them apart.
    """
    codes = _begin_codes.get(type(conn))
    if codes is None:
        codes = frozenset(
            vars(cls)["_start_transaction_under_autocommit"].__code__
            for cls in type(conn).__mro__
            if "_start_transaction_under_autocommit" in vars(cls)
        )
        _begin_codes[type(conn)] = codes
    frame = sys._getframe(2)
    for _ in range(_BEGIN_FRAMES):
        if frame is None:
            return False
        if frame.f_code in codes:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False
