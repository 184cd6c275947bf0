"""Deadlocks, serialization failures and lock timeouts in a command: what the bus makes of them.

The PostgreSQL tests are real: threads with connections of their own, a deadlock the
server detects, a lock another connection holds.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.db import OperationalError, connections
from django.test import override_settings

from django_cqrs import Command, Query, command_bus
from django_cqrs.bus import CommandBus, QueryBus
from django_cqrs.exceptions import ConcurrencyError, LockTimeoutError, TransactionConflictError
from django_cqrs.models import StoredEvent
from django_cqrs.registry import Registry
from tests.helpers import Holding, lock_the_log
from tests.testapp.commands import OpenAccount
from tests.testapp.events import Deposited
from tests.testapp.models import Account


@dataclasses.dataclass(frozen=True)
class Fail(Command[str]):
    code: str
    failures: int


@dataclasses.dataclass(frozen=True)
class FailQuery(Query[str]):
    code: str


@dataclasses.dataclass(frozen=True)
class LockBoth(Command[None]):
    first: int
    second: int


@dataclasses.dataclass(frozen=True)
class Open(Command[int]):
    owner: str


class FakePsycopgError(Exception):
    def __init__(self, message: str, sqlstate: str):
        super().__init__(message)
        self.sqlstate = sqlstate


def database_error(code: str) -> OperationalError:
    """A Django ``OperationalError`` over a driver error with SQLSTATE ``code``."""
    messages = {"40P01": "deadlock detected", "40001": "could not serialize access"}
    message = messages.get(code, "canceling statement due to lock timeout")
    try:
        raise OperationalError(message) from FakePsycopgError(message, code)
    except OperationalError as exc:
        return exc


def fresh_bus() -> CommandBus:
    return CommandBus(registry=Registry("command", Command))


def failing_bus(attempts: list[int]) -> CommandBus:
    bus = fresh_bus()

    @bus.handler(Fail)
    def handle(command: Fail) -> str:
        attempts.append(len(attempts) + 1)
        Account.objects.create(owner=f"attempt {len(attempts)}")
        if len(attempts) <= command.failures:
            raise database_error(command.code)
        return f"ok after {len(attempts)}"

    return bus


# -- the translation, with a fake driver error (any database) --------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["40P01", "40001"])
def test_a_deadlock_or_serialization_failure_is_retried_in_a_fresh_transaction(code):
    attempts: list[int] = []

    result = failing_bus(attempts).dispatch(Fail(code=code, failures=2))

    assert result.value == "ok after 3"
    # Each failed attempt was rolled back: only the last one's row is left.
    assert list(Account.objects.values_list("owner", flat=True)) == ["attempt 3"]


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["40P01", "40001"])
def test_a_conflict_after_the_last_retry_is_a_transaction_conflict_error(code):
    attempts: list[int] = []

    with (
        override_settings(DJANGO_CQRS={"CONCURRENCY_RETRIES": 2}),
        pytest.raises(TransactionConflictError) as info,
    ):
        failing_bus(attempts).dispatch(Fail(code=code, failures=10))

    assert len(attempts) == 3
    assert isinstance(info.value, ConcurrencyError)
    assert info.value.sqlstate == code
    assert f"SQLSTATE {code}" in str(info.value)
    assert isinstance(info.value.__cause__, OperationalError)
    assert not Account.objects.exists()


@pytest.mark.django_db
def test_a_lock_timeout_is_not_retried_and_names_the_setting():
    attempts: list[int] = []

    with pytest.raises(LockTimeoutError) as info:
        failing_bus(attempts).dispatch(Fail(code="55P03", failures=10))

    assert attempts == [1]
    assert not isinstance(info.value, ConcurrencyError)
    assert info.value.sqlstate == "55P03"
    assert "DJANGO_CQRS['LOCK_TIMEOUT'] = 10 s" in str(info.value)
    assert not Account.objects.exists()


@pytest.mark.django_db
def test_other_database_errors_pass_through_unchanged():
    bus = fresh_bus()

    @bus.handler(Fail)
    def handle(command: Fail) -> str:
        raise database_error(command.code)

    with pytest.raises(OperationalError):
        bus.dispatch(Fail(code="08006", failures=1))  # connection_failure


@pytest.mark.django_db
def test_a_query_that_waits_too_long_for_a_lock_raises_lock_timeout_error():
    bus = QueryBus(registry=Registry("query", Query))

    @bus.handler(FailQuery)
    def handle(query: FailQuery) -> str:
        raise database_error(query.code)

    with pytest.raises(LockTimeoutError):
        bus.dispatch(FailQuery(code="55P03"))


# -- PostgreSQL: a real deadlock between two commands ----------------------------------


@dataclasses.dataclass
class Crossing:
    """Two commands that lock two accounts in opposite orders, and what became of them."""

    first: int
    second: int
    bus: CommandBus = dataclasses.field(default_factory=fresh_bus)
    barrier: threading.Barrier = dataclasses.field(default_factory=lambda: threading.Barrier(2))
    attempts: Counter[str] = dataclasses.field(default_factory=Counter)
    errors: dict[str, BaseException] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        @self.bus.handler(LockBoth)
        def lock_both(command: LockBoth) -> None:
            name = threading.current_thread().name
            self.attempts[name] += 1
            one = Account.objects.select_for_update().get(pk=command.first)
            if self.attempts[name] == 1:
                self.barrier.wait(timeout=10)  # both hold their first row: now they cross
            other = Account.objects.select_for_update().get(pk=command.second)
            for account in (one, other):
                account.deposit(Decimal("1"))
                account.save()

    def run(self) -> None:
        def work(first: int, second: int) -> None:
            try:
                self.bus.dispatch(LockBoth(first=first, second=second))
            except BaseException as exc:
                self.errors[threading.current_thread().name] = exc
            finally:
                connections.close_all()

        threads = [
            threading.Thread(target=work, args=(self.first, self.second), name="a-then-b"),
            threading.Thread(target=work, args=(self.second, self.first), name="b-then-a"),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)


def two_accounts() -> tuple[int, int]:
    return (
        command_bus.dispatch(OpenAccount(owner="ann")).value,
        command_bus.dispatch(OpenAccount(owner="bob")).value,
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_commands_that_deadlock_both_succeed_after_the_retry():
    crossing = Crossing(*two_accounts())

    crossing.run()

    assert crossing.errors == {}
    # The server picked one victim; the bus ran that command once more.
    assert sorted(crossing.attempts.values()) == [1, 2]
    for pk in (crossing.first, crossing.second):
        assert Account.objects.get(pk=pk).balance == Decimal("2")
    assert StoredEvent.objects.filter(event_type=Deposited.event_type).count() == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_retries_the_deadlock_victim_gets_a_transaction_conflict_error():
    crossing = Crossing(*two_accounts())

    with override_settings(DJANGO_CQRS={"CONCURRENCY_RETRIES": 0}):
        crossing.run()

    [error] = crossing.errors.values()
    assert isinstance(error, TransactionConflictError)
    assert isinstance(error, ConcurrencyError)
    assert error.sqlstate == "40P01"
    assert "SQLSTATE 40P01" in str(error)
    assert sorted(crossing.attempts.values()) == [1, 1]
    # The winner's deposits committed; the victim's were rolled back.
    for pk in (crossing.first, crossing.second):
        assert Account.objects.get(pk=pk).balance == Decimal("1")


# -- PostgreSQL: a lock held by another connection -------------------------------------


@pytest.fixture
def short_lock_timeout() -> Any:
    """LOCK_TIMEOUT = 0.3 s on a connection opened for it (a connection keeps its value)."""
    with override_settings(DJANGO_CQRS={"LOCK_TIMEOUT": 0.3}):
        connections["default"].close()
        yield 0.3
    connections["default"].close()  # the next test gets the default again


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_command_behind_a_locked_log_fails_fast_with_lock_timeout_error(short_lock_timeout):
    attempts: list[int] = []
    bus = fresh_bus()

    @bus.handler(Open)
    def handle(command: Open) -> int:
        attempts.append(1)
        return Account.open(command.owner).pk

    with Holding(lock_the_log):
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as info:
            bus.dispatch(Open(owner="ann"))
        waited = time.monotonic() - started

    assert 0.3 <= waited < 1.0
    assert attempts == [1]  # not retried
    assert info.value.sqlstate == "55P03"
    assert info.value.timeout == 0.3
    assert "DJANGO_CQRS['LOCK_TIMEOUT'] = 0.3 s" in str(info.value)
    assert not Account.objects.exists()
    # Once the lock is gone the same command goes through.
    assert Account.objects.filter(pk=bus.dispatch(Open(owner="ann")).value).exists()
