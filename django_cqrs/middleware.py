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
import time
from typing import Any

from django.db import connections

from .conf import cqrs_settings
from .context import DispatchContext
from .db.readonly import read_only
from .db.transactions import command_transaction, pending_on_commit
from .exceptions import ConcurrencyError

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
    """Run each command attempt in one transaction on the event log's database.

    On SQLite the transaction takes the database's write lock at its first write, not
    when it starts (see :mod:`django_cqrs.db.transactions`).
    """

    def __call__(self, message: Any, ctx: DispatchContext) -> Any:
        alias = cqrs_settings.DATABASE
        with command_transaction(alias):
            # Aggregates saved directly in this block need no savepoint of their own:
            # any error in them fails (and rolls back) the whole command.
            previous = ctx.transaction
            ctx.transaction = (alias, len(connections[alias].atomic_blocks))
            try:
                value = self.next(message, ctx)
                # Saves the handler rolled back itself (a caught error in its own atomic
                # block) did not happen: keep them out of the result.
                ctx.forget_rolled_back(alias, pending_on_commit(alias))
                return value
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


class ReadOnlyMiddleware(BaseMiddleware):
    """Make any database write inside a query handler raise ``QueryWriteError``.

    See :mod:`django_cqrs.db.readonly`; ``QUERY_READ_ONLY_TRANSACTION`` switches the
    PostgreSQL READ ONLY transaction off.
    """

    def __call__(self, message: Any, ctx: DispatchContext) -> Any:
        with read_only(
            ctx.message_type,
            alias=cqrs_settings.DATABASE,
            transaction_read_only=bool(cqrs_settings.QUERY_READ_ONLY_TRANSACTION),
        ):
            return self.next(message, ctx)
