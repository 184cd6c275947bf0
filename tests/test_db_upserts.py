"""``Projection.add()``: counters in read models, one statement when applied live."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from django_cqrs.projections import Projection
from tests.testapp.models import AccountTotals

pytestmark = pytest.mark.django_db


class Counter(Projection):
    abstract = True  # used directly, never registered
    read_models = [AccountTotals]


def totals(account_id: int) -> tuple[str, int, Decimal]:
    row = AccountTotals.objects.get(pk=account_id)
    return row.owner, row.deposits, row.deposited


def test_live_add_creates_the_row_then_adds_to_it_one_statement_each() -> None:
    live = Counter()

    with CaptureQueriesContext(connection) as first:
        live.add(AccountTotals(account_id=1, owner="ann"), deposits=1, deposited=Decimal("2.50"))
    with CaptureQueriesContext(connection) as second:
        live.add(AccountTotals(account_id=1, owner="ignored"), deposits=2, deposited=Decimal("1"))

    assert totals(1) == ("ann", 3, Decimal("3.50"))  # an existing row keeps its other fields
    assert (len(first), len(second)) == (1, 1)


def test_buffered_add_gives_the_same_rows_as_live_add() -> None:
    AccountTotals.objects.create(account_id=2, owner="bob", deposits=5, deposited=Decimal("5"))
    buffered = Counter(buffered=True)

    for account_id in (2, 3, 2):
        buffered.add(AccountTotals(account_id=account_id, owner="new"), deposits=1)
    buffered.add(AccountTotals(account_id=3, owner="new"), deposited=Decimal("0.25"))
    assert totals(2) == ("bob", 5, Decimal("5"))  # nothing written before the flush
    buffered.flush()

    assert totals(2) == ("bob", 7, Decimal("5"))
    assert totals(3) == ("new", 1, Decimal("0.25"))


def test_subtracting_works_and_unknown_fields_are_refused() -> None:
    live = Counter()
    live.add(AccountTotals(account_id=4), deposits=3)
    live.add(AccountTotals(account_id=4), deposits=-1)

    with pytest.raises(ValueError, match="AccountTotals has no field 'deposit' to add to"):
        live.add(AccountTotals(account_id=4), deposit=1)
    with pytest.raises(ValueError, match="no field 'account_id'"):
        Counter(buffered=True).add(AccountTotals(account_id=4), account_id=1)

    assert totals(4) == ("", 2, Decimal("0"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_live_adds_lose_no_update() -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(25):
                with transaction.atomic():
                    Counter().add(AccountTotals(account_id=9), deposits=1)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert totals(9)[1] == 100
