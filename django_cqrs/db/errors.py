"""What a database error means: a transaction conflict, or a lock not granted in time.

    from django_cqrs.db.errors import is_lock_timeout, is_transaction_conflict, sqlstate

    try:
        ...
    except DatabaseError as exc:
        if is_transaction_conflict(exc):   # 40P01 deadlock, 40001 serialization failure
            ...                            # the whole transaction can be run again
        elif is_lock_timeout(exc):         # 55P03 lock_not_available; SQLite "database is locked"
            ...

Django wraps the driver's exception (``django.db.OperationalError`` and friends) and keeps
the driver's one as ``__cause__``: PostgreSQL's SQLSTATE is its ``sqlstate`` (psycopg 3)
or ``pgcode`` (psycopg2), SQLite's result code its ``sqlite_errorcode``. The functions
follow the chain of causes (and of contexts, unless suppressed), so an error raised
while handling a deadlock, or a projection error wrapping one, still counts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

#: PostgreSQL SQLSTATEs after which the transaction, run again from its start, can succeed.
TRANSACTION_CONFLICTS = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
#: PostgreSQL's lock_not_available: ``lock_timeout`` (or ``NOWAIT``) gave up on a lock.
LOCK_NOT_AVAILABLE = "55P03"

# SQLite result codes (the primary code is the low byte of the extended one).
_SQLITE_BUSY = 5  # "database is locked": the busy timeout ran out
_SQLITE_LOCKED = 6  # "database table is locked": a conflict in a shared cache
_SQLITE_BUSY_SNAPSHOT = 517  # WAL: a read transaction's snapshot is stale, cannot write
_SQLITE_LOCKED_MESSAGES = ("database is locked", "database table is locked")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind ``exc`` (psycopg 3 ``sqlstate``, psycopg2 ``pgcode``)."""
    for error in _chain(exc):
        for attr in ("sqlstate", "pgcode"):
            code = getattr(error, attr, None)
            if isinstance(code, str) and code:
                return code
    return None


def _sqlite_code(exc: BaseException) -> int | None:
    for error in _chain(exc):
        if isinstance(error, sqlite3.Error):
            code = getattr(error, "sqlite_errorcode", None)
            if isinstance(code, int):
                return code
            if str(error).startswith(_SQLITE_LOCKED_MESSAGES):
                return _SQLITE_BUSY
            return None
    return None


def is_transaction_conflict(exc: BaseException) -> bool:
    """A deadlock or serialization failure: run the whole transaction again.

    PostgreSQL's ``40P01`` (deadlock_detected) and ``40001`` (serialization_failure);
    SQLite's ``SQLITE_BUSY_SNAPSHOT`` (a WAL read transaction that tried to write after
    another connection committed). SQLite has no deadlocks: one writer at a time.
    """
    if sqlstate(exc) in TRANSACTION_CONFLICTS:
        return True
    return _sqlite_code(exc) == _SQLITE_BUSY_SNAPSHOT


def is_lock_timeout(exc: BaseException) -> bool:
    """A lock was not granted in time; waiting again as long would not help.

    PostgreSQL's ``55P03`` (lock_not_available, from ``lock_timeout``); SQLite's
    ``SQLITE_BUSY`` / ``SQLITE_LOCKED`` ("database is locked" once its busy timeout ran out).
    """
    if sqlstate(exc) == LOCK_NOT_AVAILABLE:
        return True
    code = _sqlite_code(exc)
    if code is None or code == _SQLITE_BUSY_SNAPSHOT:
        return False
    return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
