"""Errors raised by django_cqrs; every one derives from :class:`CQRSError`.

from django_cqrs.exceptions import CQRSError, InvariantViolationError

try:
    command_bus.dispatch(PlaceOrder(customer_id=cid, items=[]))
except InvariantViolationError as exc:
    print(exc.message)   # "an order has at least one item"
"""

from __future__ import annotations

from typing import Any


class CQRSError(Exception):
    """Root of every django_cqrs error."""


class ConfigurationError(CQRSError):
    """The DJANGO_CQRS setting or a message/handler declaration is wrong."""


class InvariantViolationError(CQRSError):
    """A domain rule would be broken; nothing was written."""

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


class ConcurrencyError(CQRSError):
    """An aggregate was saved from a stale version: somebody else saved it first."""

    def __init__(
        self,
        message: str,
        *,
        aggregate_type: str | None = None,
        aggregate_id: Any = None,
        expected_version: int | None = None,
    ):
        super().__init__(message)
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version


class PreconditionFailedError(ConcurrencyError):
    """The caller's expected version (HTTP ``If-Match``) is stale; never retried."""


class TransactionConflictError(ConcurrencyError):
    """The database aborted the command's transaction: a deadlock or serialization failure.

    Raised by ``TransactionMiddleware`` for PostgreSQL's SQLSTATE ``40P01`` and ``40001``
    (``sqlstate``); ``RetryMiddleware`` runs the command again, like any
    ``ConcurrencyError``. The database's error is its ``__cause__``.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate


class LockTimeoutError(CQRSError):
    """A database lock was not granted within ``DJANGO_CQRS["LOCK_TIMEOUT"]``; never retried.

    PostgreSQL's SQLSTATE ``55P03`` (``sqlstate``), or SQLite's "database is locked" after
    its busy timeout (``sqlstate`` is None). The database's error is its ``__cause__``.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None, timeout: float | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.timeout = timeout


class AggregateNotFoundError(CQRSError, LookupError):
    """No aggregate of that type has that id."""

    def __init__(self, message: str, *, aggregate_type: str = "", aggregate_id: Any = None):
        super().__init__(message)
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id


class HandlerNotFoundError(CQRSError, LookupError):
    """No handler is registered for a dispatched command or query type."""


class DuplicateHandlerError(CQRSError):
    """A second handler was registered for a command or query type."""


class SerializationError(CQRSError, TypeError):
    """A message field holds a value (or has a type) that cannot be stored as JSON."""


class UnknownEventTypeError(CQRSError, LookupError):
    """A stored event names an event type that no loaded class declares."""


class QueryWriteError(CQRSError):
    """A query handler tried to write to the database."""


class ProjectionError(CQRSError):
    """A projection is unknown, misconfigured, or failed to apply an event."""


class ProjectionApplyError(ProjectionError):
    """A projection could not apply one event; ``position`` says which.

    Its handler raised, its rows could not be written, or the stored event cannot be
    decoded (``retryable`` is False then: the same bytes and the same code fail the
    same way, so the event is parked at once instead of retried).
    """

    def __init__(
        self,
        message: str,
        *,
        projection: str,
        position: int,
        event_type: str,
        transaction_id: int = 0,
        retryable: bool = True,
        transient: bool = False,
    ):
        super().__init__(message)
        self.projection = projection
        self.position = position
        self.event_type = event_type
        #: With ``position``, where the event stands in the log's order.
        self.transaction_id = transaction_id
        #: False when trying again cannot succeed until the code changes.
        self.retryable = retryable
        #: The database, not the event: a lock wait that timed out or a transaction the
        #: database aborted (a deadlock with a concurrent one). Run again at once, it
        #: usually succeeds; it says nothing about the event, so it is not counted.
        self.transient = transient


class RebuildSwitchError(ProjectionError):
    """A rebuild cannot put its new tables in place of the live ones; nothing was switched.

    Something outside the projection depends on a read model's table (a foreign key, a
    view, a trigger), or the live tables stayed in use by other transactions.
    """


class AppendOnlyError(CQRSError):
    """Stored events are immutable: they cannot be changed or deleted."""


class RebuildWriteError(ProjectionError):
    """A rebuild refused a write that its shadow tables cannot receive; nothing was sent.

    Raised while a rebuild replays events, for a statement that writes a table other
    than the shadow of one of the projection's ``read_models`` (``table``; "" when the
    statement's table cannot be told), before it reaches the database. The rebuild is
    discarded and the live tables keep their rows. ``handler``, ``event_type`` and
    ``position`` say where the write came from, when known.
    """

    def __init__(
        self,
        *,
        projection: str,
        table: str,
        problem: str,
        fix: str,
        statement: str = "",
        handler: str = "",
        event_type: str = "",
        position: int | None = None,
    ):
        target = f"table {table!r}" if table else "a table"
        where = f" by {handler} ({event_type} at position {position})" if handler else ""
        sent = f" Statement: {statement[:200]}" if statement else ""
        super().__init__(
            f"Rebuild of {projection} refused a write to {target}{where}: {problem}. Nothing "
            f"was sent, the rebuild was discarded and the live tables are untouched. {fix}"
            f"{sent}"
        )
        self.projection = projection
        self.table = table
        self.problem = problem
        self.fix = fix
        self.statement = statement
        self.handler = handler
        self.event_type = event_type
        self.position = position

    def located(self, *, handler: str, event_type: str, position: int) -> RebuildWriteError:
        """The same refusal, saying which handler and event made the write."""
        return RebuildWriteError(
            projection=self.projection,
            table=self.table,
            problem=self.problem,
            fix=self.fix,
            statement=self.statement,
            handler=handler,
            event_type=event_type,
            position=position,
        )
