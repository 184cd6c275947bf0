"""The command's transaction, row locks where the database has them, the lock timeout.

    from django_cqrs.db.transactions import command_transaction, lock_rows, set_lock_timeout

    with command_transaction("default"):      # transaction.atomic(), SQLite-aware
        state = lock_rows(ProjectionState.objects.using("default")).get(name=name)

SQLite has one write lock per database file, and Django's outermost ``atomic()``
takes it at once (``BEGIN IMMEDIATE`` with the recommended ``transaction_mode``), so a
command would hold it while its handler loads aggregates and decides. Here the
outermost block sends ``BEGIN IMMEDIATE`` just before the first statement that is not a
read; reads before it see the latest commit, as on PostgreSQL under READ COMMITTED
(aggregates are still protected by their version check), and concurrent commands wait
for each other only while they write.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from django.db import connections, models, transaction

from .statements import READ_FIRST_WORDS, first_word

Q = TypeVar("Q", bound=models.QuerySet[Any])

#: PostgreSQL's largest ``lock_timeout``, in milliseconds.
MAX_LOCK_TIMEOUT_MS = 2_147_483_647


def command_transaction(alias: str) -> AbstractContextManager[Any]:
    """``transaction.atomic(using=alias)``; on SQLite the write lock waits for the first write."""
    conn = connections[alias]
    if conn.vendor != "sqlite" or conn.in_atomic_block:
        return transaction.atomic(using=alias)
    return _sqlite_begin_at_first_write(alias)


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
        if not raw.in_transaction and first_word(sql) not in READ_FIRST_WORDS:
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


def pending_on_commit(alias: str) -> set[int]:
    """Ids of the callbacks that will run when ``alias``'s transaction commits.

    A callback registered inside a savepoint that was rolled back is gone from the list
    (Django discards it with the savepoint).
    """
    return {id(entry[1]) for entry in connections[alias].run_on_commit}


def lock_rows(queryset: Q) -> Q:
    """Lock the rows against other lockers and writers until the transaction ends.

    PostgreSQL: ``SELECT ... FOR NO KEY UPDATE``, the lock an ``UPDATE`` that keeps the
    key takes itself. It excludes other lockers and writers of the rows, but not the
    ``KEY SHARE`` lock that the check of a foreign key to them takes (at commit, Django's
    constraints being deferred): with ``FOR UPDATE``, a checkout reserving stock (its
    products locked) and an order being placed (its lines point at those products)
    deadlocked. SQLite has no row
    locks and needs none: a transaction that writes holds the database's one write lock
    until it ends.
    """
    features = connections[queryset.db].features
    if features.has_select_for_no_key_update:
        return queryset.select_for_update(no_key=True)
    if features.has_select_for_update:
        return queryset.select_for_update()
    return queryset


def set_lock_timeout(connection: Any, seconds: float) -> None:
    """PostgreSQL: ``SET lock_timeout`` for the session of a newly opened ``connection``.

    One round trip, on the driver's connection (no Django query log, no execute
    wrappers), meant for Django's ``connection_created`` signal: every statement of the
    session then waits at most ``seconds`` for a lock and fails with SQLSTATE ``55P03``.
    Rounded up to whole milliseconds (0 would mean "wait forever"). Other databases: no-op
    (SQLite waits for its one lock as long as its own busy timeout, ``OPTIONS["timeout"]``).
    """
    if connection.vendor != "postgresql":
        return
    milliseconds = min(max(1, math.ceil(float(seconds) * 1000)), MAX_LOCK_TIMEOUT_MS)
    raw = connection.connection
    with raw.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = {int(milliseconds)}")
    if not connection.get_autocommit():
        raw.commit()  # as Django's own session set-up does: keep it past a rollback
