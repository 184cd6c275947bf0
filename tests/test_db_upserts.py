"""``db.upserts``: whole-row upserts, counters added in the database, and ``set_if_null``.

Counters are tested through ``Projection.add()``, which writes them with ``upserts.add``
when applied live. ``set_if_null`` and ``upsert`` also run on the portable ORM path, by
making the connection look like another database.
"""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from django_cqrs.db.upserts import set_if_null, upsert
from django_cqrs.models import ProjectionTrigger
from django_cqrs.projections import Projection
from tests.helpers import Holding
from tests.testapp.models import AccountTotals, AccountView

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


# -- upsert: insert or replace whole rows ----------------------------------------------


@pytest.fixture(params=["sql", "orm"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The statements written for SQLite and PostgreSQL, or the ORM path of other backends."""
    if request.param == "orm":
        monkeypatch.setattr(
            "django_cqrs.db.upserts.connections", {"default": _OtherVendor(connections["default"])}
        )
    return str(request.param)


class _OtherVendor:
    """The default connection, seen by ``db.upserts`` as a database it has no SQL for."""

    vendor = "other"

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


def views() -> list[tuple[Any, ...]]:
    return list(
        AccountView.objects.order_by("pk").values_list("pk", "owner", "balance", "movements")
    )


def test_upsert_inserts_then_replaces_the_whole_row(path: str) -> None:
    upsert(AccountView, [AccountView(account_id=1, owner="ann", balance="1.00", movements=1)])
    assert views() == [(1, "ann", "1.00", 1)]

    upsert(AccountView, [AccountView(account_id=1, owner="anne", balance="0.50", movements=0)])

    assert views() == [(1, "anne", "0.50", 0)]  # every field replaced, no second row


def test_upsert_writes_many_rows_new_and_existing_in_few_statements(path: str) -> None:
    upsert(
        AccountView,
        [AccountView(account_id=i, owner="old", balance="0") for i in range(0, 6000, 2)],
    )
    batch = [
        AccountView(account_id=i, owner=f"o{i}", balance=f"{i}.00", movements=i)
        for i in range(6000)
    ]

    with CaptureQueriesContext(connection) as captured:
        upsert(AccountView, batch)

    assert views() == [(i, f"o{i}", f"{i}.00", i) for i in range(6000)]
    assert len(captured) <= 6000 // 200  # batches, not one statement per row
    if path == "sql" and connection.vendor == "postgresql":
        assert len(captured) == 2  # unnest(), 5000 rows per statement
    assert all(not view._state.adding for view in batch)


def test_upsert_of_nothing_sends_nothing() -> None:
    with CaptureQueriesContext(connection) as captured:
        upsert(AccountView, [])
    assert len(captured) == 0


# -- set_if_null: the async trigger flag -----------------------------------------------


def test_set_if_null_sets_once_until_the_field_is_null_again(path: str) -> None:
    first, later = (dt.datetime(2025, 1, day, tzinfo=dt.UTC) for day in (1, 2))
    name = "tests.Flag"

    def queued_at() -> dt.datetime | None:
        return ProjectionTrigger.objects.get(name=name).queued_at

    assert set_if_null(ProjectionTrigger, "name", name, "queued_at", first, using="default")
    assert queued_at() == first
    assert not set_if_null(ProjectionTrigger, "name", name, "queued_at", later, using="default")
    assert queued_at() == first  # the value already there stays

    ProjectionTrigger.objects.filter(name=name).update(queued_at=None)

    assert set_if_null(ProjectionTrigger, "name", name, "queued_at", later, using="default")
    assert queued_at() == later
    assert ProjectionTrigger.objects.filter(name=name).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_set_if_null_sets_the_flag_exactly_once() -> None:
    racers = 6
    start = threading.Barrier(racers)
    won: list[bool] = []
    errors: list[BaseException] = []
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    def race() -> None:
        try:
            start.wait()
            won.append(
                set_if_null(
                    ProjectionTrigger, "name", "tests.Race", "queued_at", now, using="default"
                )
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(won) == [False] * (racers - 1) + [True]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_flag_already_set_is_checked_without_locking_its_row() -> None:
    # Every command for an async projection checks the same flag row; with the flag set,
    # a check must not make the next command wait until this one commits (an upsert's
    # ON CONFLICT DO UPDATE ... WHERE locks the row even when its WHERE says no).
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert set_if_null(ProjectionTrigger, "name", "flag", "queued_at", now, using="default")

    def check() -> bool:
        return set_if_null(ProjectionTrigger, "name", "flag", "queued_at", now, using="default")

    with Holding(check) as first, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '300ms'")
        second = check()
    assert first.result is False
    assert second is False
