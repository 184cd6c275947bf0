"""Built-in middleware for the command and query buses.

    DJANGO_CQRS = {
        "COMMAND_MIDDLEWARE": [
            "django_cqrs.middleware.LoggingMiddleware",      # outermost: times everything
            "django_cqrs.middleware.RetryMiddleware",        # re-runs on ConcurrencyError
            "django_cqrs.middleware.TransactionMiddleware",  # one transaction per attempt
            "myapp.middleware.audit",                        # your own: f(next) -> step
        ],
    }

A middleware takes the next step and returns a callable ``(message, context) -> value``.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from django.db import DatabaseError, connections, transaction

from .conf import cqrs_settings
from .context import DispatchContext
from .exceptions import ConcurrencyError, QueryWriteError

Step = Any


class BaseMiddleware:
    """Class-style middleware: override :meth:`__call__`, call ``self.next``."""

    def __init__(self, next_step: Step) -> None:
        self.next = next_step

    def __call__(self, message: Any, ctx: DispatchContext) -> Any:
        return self.next(message, ctx)


class LoggingMiddleware(BaseMiddleware):
    """Log each dispatch with its outcome and duration as structured ``extra`` fields."""

    def __call__(self, message: Any, ctx: DispatchContext) -> Any:
        logger = logging.getLogger(cqrs_settings.LOGGER)
        started = time.perf_counter()
        fields: dict[str, Any] = {
            "cqrs_kind": message.kind,
            "cqrs_message": ctx.message_type,
            "cqrs_message_id": ctx.message_id,
            "cqrs_correlation_id": ctx.correlation_id,
            "cqrs_user": ctx.user,
        }
        try:
            value = self.next(message, ctx)
        except Exception as exc:
            fields.update(
                cqrs_outcome="error",
                cqrs_error=type(exc).__name__,
                cqrs_duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            logger.info(
                "%s %s failed: %s: %s",
                message.kind,
                ctx.message_type,
                type(exc).__name__,
                exc,
                extra=fields,
            )
            raise
        duration = round((time.perf_counter() - started) * 1000, 3)
        fields.update(cqrs_outcome="ok", cqrs_duration_ms=duration, cqrs_events=len(ctx.positions))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s ok in %.1f ms", message.kind, ctx.message_type, duration, extra=fields
            )
        return value


class TransactionMiddleware(BaseMiddleware):
    """Run each command attempt in one transaction on the event log's database."""

    def __call__(self, message: Any, ctx: DispatchContext) -> Any:
        alias = cqrs_settings.DATABASE
        with command_transaction(alias):
            # Aggregates saved directly in this block need no savepoint of their own:
            # any error in them fails (and rolls back) the whole command.
            previous = ctx.transaction
            ctx.transaction = (alias, len(connections[alias].atomic_blocks))
            try:
                return self.next(message, ctx)
            finally:
                ctx.transaction = previous


def command_transaction(alias: str) -> Any:
    """``transaction.atomic(using=alias)``; on SQLite the write lock waits for the first write.

    SQLite has one write lock per database file, and Django's outermost ``atomic()``
    takes it at once (``BEGIN IMMEDIATE`` with the recommended ``transaction_mode``), so
    a command would hold it while its handler loads aggregates and decides. Here the
    outermost block sends ``BEGIN IMMEDIATE`` just before the first statement that is not
    a read; reads before it see the latest commit, as on PostgreSQL under READ COMMITTED
    (aggregates are still protected by their version check), and concurrent commands
    wait for each other only while they write.
    """
    conn = connections[alias]
    if conn.vendor != "sqlite" or conn.in_atomic_block:
        return transaction.atomic(using=alias)
    return _sqlite_begin_at_first_write(alias)


_READ_FIRST_WORDS = frozenset({"SELECT", "WITH", "EXPLAIN", "VALUES", "BEGIN"})


def _no_begin() -> None:
    pass


@contextmanager
def _sqlite_begin_at_first_write(alias: str) -> Iterator[None]:
    conn: Any = connections[alias]
    conn.ensure_connection()
    raw = conn.connection

    def begin_before_first_write(
        execute: Any, sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        # Writes, and the savepoints of inner blocks, need the transaction first.
        if not raw.in_transaction and first_word(sql) not in _READ_FIRST_WORDS:
            with conn.cursor() as cursor:
                cursor.execute("BEGIN IMMEDIATE")
        return execute(sql, params, many, context)

    # The outermost atomic() would send BEGIN here (Django's SQLite backend starts
    # transactions in _start_transaction_under_autocommit); the wrapper sends it later.
    conn._start_transaction_under_autocommit = _no_begin
    try:
        block = transaction.atomic(using=alias)
        block.__enter__()
    finally:
        del conn._start_transaction_under_autocommit
    try:
        with conn.execute_wrapper(begin_before_first_write):
            yield
    except BaseException:
        block.__exit__(*sys.exc_info())  # rolls back; Atomic never swallows the error
        raise
    else:
        block.__exit__(None, None, None)


class RetryMiddleware(BaseMiddleware):
    """Re-run the whole command after a ``ConcurrencyError``, at most CONCURRENCY_RETRIES times.

    Put it outside :class:`TransactionMiddleware` so every attempt gets a fresh
    transaction (or savepoint) and re-reads the aggregate.
    """

    def __call__(self, message: Any, ctx: DispatchContext) -> Any:
        retries = int(cqrs_settings.CONCURRENCY_RETRIES)
        for attempt in range(retries + 1):
            try:
                return self.next(message, ctx)
            except ConcurrencyError:
                if attempt >= retries:
                    raise
                ctx.reset_attempt()
                # Jitter spreads competing writers apart so the retry is likely to win.
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise AssertionError("unreachable")


#: Reads, and transaction control (which writes nothing itself; SQLite's BEGIN goes
#: through the cursor).
_ALLOWED_FIRST_WORDS = {
    *("SELECT", "WITH", "EXPLAIN", "SHOW", "VALUES"),
    *("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK"),
}
_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_WRITE_IN_SELECT = re.compile(
    r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|SHARE|KEY\s+SHARE)\b|\bINTO\b", re.IGNORECASE
)
_WRITE_IN_WITH = re.compile(r"\b(?:INSERT|UPDATE|DELETE|MERGE|TRUNCATE)\b", re.IGNORECASE)


def first_word(sql: str) -> str:
    """The first keyword of ``sql``, upper case (leading blanks and parentheses skipped)."""
    stripped = sql.lstrip(" \t\r\n(")
    return stripped.split(None, 1)[0].upper() if stripped else ""


def write_reason(sql: str) -> str | None:
    """Why ``sql`` is not a read, or None when it is one (judged by its first keyword)."""
    first = first_word(sql)
    if first not in _ALLOWED_FIRST_WORDS:
        return f"{first or 'empty'} statement"
    bare = _STRINGS.sub("''", sql)
    if first == "SELECT" and _WRITE_IN_SELECT.search(bare):
        return "SELECT that locks rows or creates a table"
    if first in ("WITH", "EXPLAIN") and _WRITE_IN_WITH.search(bare):
        return "data-modifying statement"
    return None


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
def read_only(query_name: str) -> Iterator[None]:
    """Reject database writes inside the block on every configured connection.

    Every statement is checked before it is sent (see :func:`write_reason`), so a refused
    write never reaches the database and the caller's transaction stays usable. On the
    event log's database the database itself refuses writes too: SQLite by
    ``PRAGMA query_only`` (in process, no round trip); PostgreSQL by a ``READ ONLY``
    transaction that is always rolled back — ``BEGIN READ ONLY`` when the query opens
    the transaction, a savepoint with ``SET LOCAL transaction_read_only`` inside the
    caller's — so that even a write hidden in a function call cannot persist.
    """
    guard = _WriteGuard(query_name)
    with ExitStack() as stack:
        for alias in connections:
            if alias == cqrs_settings.DATABASE:
                stack.enter_context(_database_refuses_writes(alias))
            stack.enter_context(connections[alias].execute_wrapper(guard))
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
def _database_refuses_writes(alias: str) -> Iterator[None]:
    conn = connections[alias]
    postgres = conn.vendor == "postgresql" and cqrs_settings.QUERY_READ_ONLY_TRANSACTION
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


class ReadOnlyMiddleware(BaseMiddleware):
    """Make any database write inside a query handler raise ``QueryWriteError``."""

    def __call__(self, message: Any, ctx: DispatchContext) -> Any:
        with read_only(ctx.message_type):
            return self.next(message, ctx)
