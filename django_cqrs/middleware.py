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
        with transaction.atomic(using=alias):
            # Aggregates saved directly in this block need no savepoint of their own:
            # any error in them fails (and rolls back) the whole command.
            previous = ctx.transaction
            ctx.transaction = (alias, len(connections[alias].atomic_blocks))
            try:
                return self.next(message, ctx)
            finally:
                ctx.transaction = previous


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


_ALLOWED_FIRST_WORDS = {"SELECT", "WITH", "EXPLAIN", "SHOW", "VALUES", "SAVEPOINT", "RELEASE"}
_ROLLBACK_TO = re.compile(r"^\s*ROLLBACK\s+TO\s", re.IGNORECASE)
_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_WRITE_IN_SELECT = re.compile(
    r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|SHARE|KEY\s+SHARE)\b|\bINTO\b", re.IGNORECASE
)
_WRITE_IN_WITH = re.compile(r"\b(?:INSERT|UPDATE|DELETE|MERGE|TRUNCATE)\b", re.IGNORECASE)


def write_reason(sql: str) -> str | None:
    """Why ``sql`` is not a read, or None when it is one (judged by its first keyword)."""
    stripped = sql.lstrip(" \t\r\n(")
    first = stripped.split(None, 1)[0].upper() if stripped else ""
    if _ROLLBACK_TO.match(stripped):
        return None
    if first not in _ALLOWED_FIRST_WORDS:
        return f"{first or 'empty'} statement"
    bare = _STRINGS.sub("''", stripped)
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

    On the event log's database the block runs in a savepoint that is always rolled
    back, so a refused write cannot leave the caller's transaction marked for rollback;
    on PostgreSQL that savepoint is also READ ONLY, so even a write hidden in a function
    call cannot persist.
    """
    guard = _WriteGuard(query_name)
    with ExitStack() as stack:
        for alias in connections:
            conn = connections[alias]
            if alias == cqrs_settings.DATABASE:
                read_only_tx = (
                    conn.vendor == "postgresql" and cqrs_settings.QUERY_READ_ONLY_TRANSACTION
                )
                stack.enter_context(_rolled_back(alias, read_only=read_only_tx))
            stack.enter_context(conn.execute_wrapper(guard))
        try:
            yield
        except DatabaseError as exc:
            # PostgreSQL's own refusal (SQLSTATE 25006) for writes the guard cannot see.
            if getattr(exc.__cause__, "sqlstate", None) == "25006":
                raise QueryWriteError(
                    f"Query handler for {query_name} attempted a write: {exc}"
                ) from exc
            raise


@contextmanager
def _rolled_back(alias: str, *, read_only: bool) -> Iterator[None]:
    with transaction.atomic(using=alias):
        if read_only:
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
