"""``db.transactions``: the command's transaction, and row locks where the database has them.

SQLite: a command's transaction takes the database's one write lock at its first write.
Reads before it run without the lock, so concurrent commands (other gunicorn workers,
django-q2 workers) wait for each other only while they write. On PostgreSQL the command
transaction is an ordinary ``atomic()``; the tests marked ``sqlite_only`` are about
SQLite's locking, the others run on both databases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_cqrs import Command, command_bus
from django_cqrs.bus import CommandBus
from django_cqrs.db.transactions import command_transaction, lock_rows
from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.models import StoredEvent
from django_cqrs.registry import Registry
from tests.test_db_log import in_second_connection
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.models import Account

pytestmark = pytest.mark.django_db(transaction=True)

sqlite_only = pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="about SQLite's write lock (runs without DATABASE_URL)",
)


@dataclasses.dataclass(frozen=True)
class Run(Command[Any]):
    label: str


def run(body: Callable[[], Any]) -> Any:
    """Dispatch a command whose handler runs ``body`` (with the default middleware)."""
    bus = CommandBus(registry=Registry("command", Command))
    bus.handler(Run)(lambda command: body())
    return bus.dispatch(Run(label="test")).value


def in_transaction() -> bool:
    return bool(connection.connection.in_transaction)


@sqlite_only
def test_the_write_lock_is_taken_just_before_the_first_write() -> None:
    account_id = command_bus.dispatch(OpenAccount(owner="ann")).value

    with CaptureQueriesContext(connection) as captured:
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("5")))

    words = [q["sql"].split(None, 2)[:2] for q in captured.captured_queries]
    begin = words.index(["BEGIN", "IMMEDIATE"])
    assert words[0][0] == "SELECT"  # the aggregate is loaded without the lock
    assert words[begin + 1][0] in ("UPDATE", "INSERT")
    assert all(w[0] == "SELECT" for w in words[:begin])
    assert Account.objects.get(pk=account_id).balance == Decimal("5")


@sqlite_only
def test_reads_run_outside_the_transaction_writes_inside_it() -> None:
    seen: list[tuple[str, bool]] = []

    def body() -> int:
        seen.append(("before", in_transaction()))
        Account.objects.count()
        seen.append(("after a read", in_transaction()))
        account = Account.open("bob")
        seen.append(("after a write", in_transaction()))
        Account.objects.count()
        seen.append(("after a later read", in_transaction()))
        return int(account.pk)

    account_id = run(body)

    assert seen == [
        ("before", False),
        ("after a read", False),
        ("after a write", True),
        ("after a later read", True),
    ]
    assert not in_transaction()  # committed
    assert Account.objects.filter(pk=account_id).exists()


@sqlite_only
def test_a_command_that_fails_after_writing_leaves_nothing() -> None:
    events = StoredEvent.objects.count()

    def body() -> None:
        Account.objects.count()
        Account.open("carol")
        raise InvariantViolationError("changed my mind")

    with pytest.raises(InvariantViolationError):
        run(body)

    assert not in_transaction()
    assert not Account.objects.filter(owner="carol").exists()
    assert StoredEvent.objects.count() == events


@sqlite_only
def test_a_command_that_fails_before_writing_opens_no_transaction() -> None:
    def body() -> None:
        Account.objects.count()
        raise InvariantViolationError("nothing to do")

    with CaptureQueriesContext(connection) as captured, pytest.raises(InvariantViolationError):
        run(body)

    assert not in_transaction()
    words = [q["sql"].split()[0] for q in captured.captured_queries]
    assert "BEGIN" not in words  # Django still logs its (empty) ROLLBACK
    assert words[0] == "SELECT"


@sqlite_only
def test_inside_a_callers_transaction_the_command_is_a_savepoint() -> None:
    with transaction.atomic():
        assert in_transaction()  # the caller's block took the lock as usual
        account_id = command_bus.dispatch(OpenAccount(owner="dan")).value
        with pytest.raises(InvariantViolationError):
            command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("-1")))

    assert Account.objects.get(pk=account_id).owner == "dan"


@sqlite_only
def test_a_savepoint_in_the_handler_starts_the_transaction_and_rolls_back_alone() -> None:
    def body() -> bool:
        with transaction.atomic():  # a savepoint: the write lock is taken before it
            started = in_transaction()
            Account.open("erin")
        try:
            with transaction.atomic():
                Account.open("frank")
                raise InvariantViolationError("only this part fails")
        except InvariantViolationError:
            pass
        return started

    assert run(body) is True
    assert not in_transaction()
    assert list(Account.objects.values_list("owner", flat=True)) == ["erin"]


# -- on both databases -----------------------------------------------------------------


def test_command_transaction_commits_the_block_or_nothing_of_it() -> None:
    with command_transaction("default"):
        Account.objects.count()
        Account.open("gus")

    def write_twice_then_fail() -> None:
        with command_transaction("default"):
            Account.open("hal")
            Account.objects.filter(owner="gus").update(balance=Decimal("9"))
            raise InvariantViolationError("undo both")

    with pytest.raises(InvariantViolationError):
        write_twice_then_fail()

    assert list(Account.objects.values_list("owner", "balance")) == [("gus", Decimal("0"))]
    assert not connection.in_atomic_block


def test_command_transaction_inside_a_transaction_is_a_savepoint() -> None:
    def write_then_fail() -> None:
        with command_transaction("default"):
            Account.open("jay")
            raise InvariantViolationError("only the inner block")

    with transaction.atomic():
        Account.open("ivy")
        with pytest.raises(InvariantViolationError):
            write_then_fail()

    assert list(Account.objects.values_list("owner", flat=True)) == ["ivy"]


def test_lock_rows_locks_where_the_database_can_and_returns_the_same_rows() -> None:
    account = Account.open("kim")
    rows = Account.objects.filter(pk=account.pk)

    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        assert [a.owner for a in lock_rows(rows)] == ["kim"]

    sql = captured.captured_queries[-1]["sql"]
    if connection.vendor == "postgresql":
        assert sql.endswith("FOR NO KEY UPDATE")
    else:
        assert "FOR UPDATE" not in sql  # SQLite has no row locks: its write lock is enough


@pytest.mark.postgres
def test_a_locked_row_makes_a_second_connection_wait_until_commit() -> None:
    account = Account.open("lee")

    def lock_it() -> None:
        lock_rows(Account.objects.filter(pk=account.pk)).get()

    with transaction.atomic():
        lock_it()
        assert in_second_connection(lock_it)[0] == "lock timeout"
        # Reading the row without locking it does not wait.
        assert in_second_connection(lambda: Account.objects.get(pk=account.pk))[0] == "ok"

    assert in_second_connection(lock_it)[0] == "ok"


@pytest.mark.postgres
def test_a_locked_row_lets_a_row_that_points_at_it_be_inserted() -> None:
    """An order line for a product whose row a checkout holds does not wait, nor the
    other way round: ``FOR NO KEY UPDATE``, not ``FOR UPDATE``, which conflicts with
    the ``KEY SHARE`` lock the foreign key check takes. Placing orders deadlocked with
    the checkout's stock reservations (bench/sagas.py) before."""
    from demo_project.orders.commands import (
        AddProduct,
        OrderItem,
        PlaceOrder,
        RegisterCustomer,
    )
    from demo_project.orders.models import OrderLine, Product

    customer = command_bus.dispatch(RegisterCustomer(name="Ada", credit_limit=Decimal(99))).value
    product = command_bus.dispatch(AddProduct(name="Lamp", price=Decimal(1))).value
    items = [OrderItem(product_id=product, quantity=1)]
    order = command_bus.dispatch(PlaceOrder(customer_id=customer, items=items)).value

    def lock_product() -> None:
        lock_rows(Product.objects.filter(pk=product)).get()

    with transaction.atomic():  # a line being added: KEY SHARE on the product's row
        OrderLine.objects.create(
            order_id=order, product_id=product, quantity=1, unit_price=Decimal(1)
        )
        connection.check_constraints()  # the deferred check, as at commit: KEY SHARE now
        assert in_second_connection(lock_product)[0] == "ok"
