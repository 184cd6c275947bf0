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

``TransactionMiddleware`` (and ``ReadOnlyMiddleware`` for queries) turns the database's
own verdicts into django_cqrs errors once the transaction is rolled back: a deadlock or
serialization failure into ``TransactionConflictError`` (a ``ConcurrencyError``, so
``RetryMiddleware`` runs the command again), a lock not granted within ``LOCK_TIMEOUT``
into ``LockTimeoutError`` (not retried).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from django.db import connections

from .conf import SETTING_NAME, cqrs_settings
from .context import DispatchContext
from .db.errors import is_lock_timeout, is_transaction_conflict, sqlstate
from .db.readonly import read_only
from .db.transactions import command_transaction, pending_on_commit
from .exceptions import ConcurrencyError, CQRSError, LockTimeoutError, TransactionConflictError

Step = Any


def translate_database_error(exc: BaseException) -> CQRSError | None:
    """The django_cqrs error standing for a database error, or None (``exc`` as it is).

    A deadlock or serialization failure gives a ``TransactionConflictError``, a lock
    timeout a ``LockTimeoutError``; django_cqrs errors are never translated.
    """
    if isinstance(exc, CQRSError):
        return None
    if is_transaction_conflict(exc):
        code = sqlstate(exc)
        return TransactionConflictError(
            f"The database aborted the transaction ({_describe(code, exc)}): a deadlock or "
            "a serialization failure with a concurrent transaction; run it again.",
            sqlstate=code,
        )
    if is_lock_timeout(exc):
        code = sqlstate(exc)
        timeout = cqrs_settings.LOCK_TIMEOUT
        if code is None:
            waited = "SQLite's busy timeout (the database's OPTIONS['timeout'])"
        elif timeout is None:
            waited = f"the server's lock_timeout ({SETTING_NAME}['LOCK_TIMEOUT'] is None)"
        else:
            waited = f"{SETTING_NAME}['LOCK_TIMEOUT'] = {timeout:g} s"
        return LockTimeoutError(
            f"A database lock was not granted within {waited} ({_describe(code, exc)}): "
            "another transaction holds it.",
            sqlstate=code,
            timeout=timeout if code is not None else None,
        )
    return None


def _describe(code: str | None, exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"SQLSTATE {code}: {first_line}" if code else first_line


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
    """Run each command attempt in one transaction on the event log's database.

    On SQLite the transaction takes the database's write lock at its first write, not
    when it starts (see :mod:`django_cqrs.db.transactions`).
    """

    def __call__(self, message: Any, ctx: DispatchContext) -> Any:
        alias = cqrs_settings.DATABASE
        try:
            with command_transaction(alias):
                # Aggregates saved directly in this block need no savepoint of their own:
                # any error in them fails (and rolls back) the whole command.
                previous = ctx.transaction
                ctx.transaction = (alias, len(connections[alias].atomic_blocks))
                try:
                    value = self.next(message, ctx)
                    # Saves the handler rolled back itself (a caught error in its own
                    # atomic block) did not happen: keep them out of the result.
                    ctx.forget_rolled_back(alias, pending_on_commit(alias))
                    return value
                finally:
                    ctx.transaction = previous
        except Exception as exc:
            # Raised in the handler or at COMMIT; the block has rolled back by now.
            error = translate_database_error(exc)
            if error is None:
                raise
            raise error from exc


class RetryMiddleware(BaseMiddleware):
    """Re-run the whole command after a ``ConcurrencyError``, at most CONCURRENCY_RETRIES times.

    Put it outside :class:`TransactionMiddleware` so every attempt gets a fresh
    transaction (or savepoint) and re-reads the aggregate. A deadlock or serialization
    failure arrives here as ``TransactionConflictError`` and is retried the same way; a
    ``LockTimeoutError`` is not (waiting as long again would not help).
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


class ReadOnlyMiddleware(BaseMiddleware):
    """Make any database write inside a query handler raise ``QueryWriteError``.

    See :mod:`django_cqrs.db.readonly`; ``QUERY_READ_ONLY_TRANSACTION`` switches the
    PostgreSQL READ ONLY transaction off.
    """

    def __call__(self, message: Any, ctx: DispatchContext) -> Any:
        try:
            with read_only(
                ctx.message_type,
                transaction_read_only=bool(cqrs_settings.QUERY_READ_ONLY_TRANSACTION),
            ):
                return self.next(message, ctx)
        except Exception as exc:
            error = translate_database_error(exc)
            if error is None:
                raise
            raise error from exc
