"""db/errors: deadlocks, serialization failures and lock timeouts read from the driver's error;
db/transactions.set_lock_timeout: PostgreSQL's lock_timeout on each new connection."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, OperationalError, connections, transaction
from django.test import override_settings

from django_cqrs.db.errors import is_lock_timeout, is_transaction_conflict, sqlstate
from tests.testapp.models import Account

# -- what a driver's error carries, without the driver ---------------------------------


class FakePsycopgError(Exception):
    """psycopg 3 errors carry ``sqlstate``."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.sqlstate = code


class FakePsycopg2Error(Exception):
    """psycopg2 errors carry ``pgcode``."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.pgcode = code


def wrapped(driver_error: Exception, django_class: type[Exception] = OperationalError) -> Exception:
    """The error as Django raises it: its own class, the driver's error as ``__cause__``."""
    try:
        raise django_class(str(driver_error)) from driver_error
    except Exception as exc:
        return exc


@pytest.mark.parametrize("code", ["40P01", "40001"])
@pytest.mark.parametrize("driver", [FakePsycopgError, FakePsycopg2Error])
def test_deadlocks_and_serialization_failures_are_transaction_conflicts(driver, code):
    exc = wrapped(driver("deadlock detected", code))

    assert sqlstate(exc) == code
    assert is_transaction_conflict(exc)
    assert not is_lock_timeout(exc)


@pytest.mark.parametrize("driver", [FakePsycopgError, FakePsycopg2Error])
def test_lock_not_available_is_a_lock_timeout(driver):
    exc = wrapped(driver("canceling statement due to lock timeout", "55P03"))

    assert sqlstate(exc) == "55P03"
    assert is_lock_timeout(exc)
    assert not is_transaction_conflict(exc)


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(FakePsycopgError("duplicate key", "23505"), IntegrityError),
        wrapped(FakePsycopgError("syntax error", "42601"), DatabaseError),
        OperationalError("no driver error behind it"),
        ValueError("not a database error"),
    ],
    ids=["unique violation", "syntax error", "no cause", "other error"],
)
def test_other_errors_are_neither(exc):
    assert not is_transaction_conflict(exc)
    assert not is_lock_timeout(exc)


def test_an_error_raised_while_handling_a_deadlock_still_counts():
    deadlock = wrapped(FakePsycopgError("deadlock detected", "40P01"))
    try:
        try:
            raise deadlock
        except OperationalError:
            raise RuntimeError("a projection failed") from None
    except RuntimeError as exc:
        suppressed = exc
    try:
        try:
            raise deadlock
        except OperationalError:
            raise RuntimeError("a projection failed")  # noqa: B904 (the context is the point)
    except RuntimeError as exc:
        in_context = exc

    assert is_transaction_conflict(in_context)
    assert not is_transaction_conflict(suppressed)  # `from None`: the deadlock is hidden


def test_a_cycle_of_causes_ends():
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a

    assert sqlstate(a) is None


def test_the_real_psycopg_classes_carry_their_sqlstate():
    errors = pytest.importorskip("psycopg.errors")

    assert is_transaction_conflict(wrapped(errors.DeadlockDetected("deadlock detected")))
    assert is_transaction_conflict(wrapped(errors.SerializationFailure("could not serialize")))
    assert is_lock_timeout(wrapped(errors.LockNotAvailable("lock timeout")))


# -- SQLite: real errors from two connections to one file ------------------------------


def test_sqlite_database_is_locked_is_a_lock_timeout(tmp_path: Path):
    path = tmp_path / "db.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    waiter = sqlite3.connect(path, isolation_level=None, timeout=0.05)
    try:
        holder.execute("CREATE TABLE t (x INTEGER)")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="database is locked") as info:
            waiter.execute("BEGIN IMMEDIATE")
    finally:
        holder.close()
        waiter.close()

    exc = wrapped(info.value)
    assert is_lock_timeout(exc)
    assert not is_transaction_conflict(exc)
    assert sqlstate(exc) is None


def test_sqlite_stale_wal_snapshot_is_a_transaction_conflict(tmp_path: Path):
    path = tmp_path / "db.sqlite3"
    reader = sqlite3.connect(path, isolation_level=None)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("PRAGMA journal_mode=WAL")
        reader.execute("CREATE TABLE t (x INTEGER)")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchall()  # the snapshot starts here
        writer.execute("INSERT INTO t VALUES (1)")  # commits after the snapshot
        with pytest.raises(sqlite3.OperationalError) as info:
            reader.execute("INSERT INTO t VALUES (2)")
    finally:
        reader.close()
        writer.close()

    exc = wrapped(info.value)
    assert is_transaction_conflict(exc)
    assert not is_lock_timeout(exc)


# -- PostgreSQL: lock_timeout on each new connection, and a real 55P03 ------------------


def lock_timeout_of_a_new_connection() -> str:
    conn = connections["default"]
    conn.close()
    with conn.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        value: str = cursor.fetchone()[0]
    conn.close()  # the next test opens one with the settings of its own
    return value


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("setting", "expected"),
    [({}, "10s"), ({"LOCK_TIMEOUT": 0.3}, "300ms"), ({"LOCK_TIMEOUT": 0.0001}, "1ms")],
    ids=["default", "0.3", "rounded up, never 0"],
)
def test_every_new_connection_gets_the_lock_timeout(setting: dict[str, Any], expected: str):
    with override_settings(DJANGO_CQRS=setting):
        assert lock_timeout_of_a_new_connection() == expected


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_none_leaves_the_servers_lock_timeout_alone():
    with override_settings(DJANGO_CQRS={"LOCK_TIMEOUT": None}):
        assert lock_timeout_of_a_new_connection() == "0"  # PostgreSQL's default


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "setting",
    [
        {"DATABASE": "elsewhere", "LOCK_TIMEOUT": 0.3},
        {"LOCK_TIMEOUT": "soon"},
        {"LOCK_TIMEUOT": 0.3},
    ],
    ids=["another alias", "not seconds (E010)", "unknown key (E001)"],
)
def test_other_aliases_and_broken_settings_leave_the_connection_alone(setting: dict[str, Any]):
    with override_settings(DJANGO_CQRS=setting):
        assert lock_timeout_of_a_new_connection() == "0"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_row_lock_not_granted_in_time_is_a_real_lock_timeout():
    account = Account.objects.create(owner="ann")
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Account.objects.select_for_update().get(pk=account.pk)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        with override_settings(DJANGO_CQRS={"LOCK_TIMEOUT": 0.2}):
            connections["default"].close()
            with pytest.raises(OperationalError) as info, transaction.atomic():
                Account.objects.select_for_update().get(pk=account.pk)
    finally:
        release.set()
        holder.join(10)
        connections["default"].close()

    assert sqlstate(info.value) == "55P03"
    assert is_lock_timeout(info.value)
    assert not is_transaction_conflict(info.value)
