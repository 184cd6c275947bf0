"""Optimistic concurrency: concurrent commands on one aggregate never lose an update."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.db import connections
from django.test import override_settings

from django_cqrs import command_bus
from django_cqrs.exceptions import ConcurrencyError
from django_cqrs.models import StoredEvent
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.events import Deposited
from tests.testapp.models import Account, AccountView

THREADS = 8
DEPOSITS_PER_THREAD = 50


@dataclass
class Outcome:
    #: Balances returned by accepted deposits.
    accepted: list[Decimal] = field(default_factory=list)
    rejected: int = 0
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def deposit_concurrently(account_id: int) -> Outcome:
    outcome = Outcome()
    start = threading.Barrier(THREADS)

    def work() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(DEPOSITS_PER_THREAD):
                try:
                    result = command_bus.dispatch(
                        Deposit(account_id=account_id, amount=Decimal("1.00"))
                    )
                except ConcurrencyError:
                    with outcome.lock:
                        outcome.rejected += 1
                else:
                    with outcome.lock:
                        outcome.accepted.append(result.value)
        except BaseException as exc:
            outcome.errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, name=f"depositor-{i}") for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert not outcome.errors, outcome.errors
    return outcome


def assert_nothing_lost(account_id: int, outcome: Outcome) -> None:
    accepted = len(outcome.accepted)
    account = Account.objects.get(pk=account_id)
    view = AccountView.objects.get(pk=account_id)
    deposited = StoredEvent.objects.filter(
        event_type=Deposited.event_type, aggregate_id=str(account_id)
    ).order_by("aggregate_version")

    assert accepted + outcome.rejected == THREADS * DEPOSITS_PER_THREAD
    assert account.balance == Decimal(accepted)
    assert deposited.count() == accepted
    assert view.movements == accepted
    assert view.balance == f"{accepted}.00"
    # Every accepted deposit saw a distinct balance: none was computed from a stale read.
    assert sorted(outcome.accepted) == [Decimal(n) for n in range(1, accepted + 1)]
    assert [e.payload["balance"] for e in deposited] == [f"{n}.00" for n in range(1, accepted + 1)]
    # Opening saves twice (the id, then AccountOpened); each accepted deposit saves once.
    assert account.version == 2 + accepted
    assert deposited.last().aggregate_version == account.version


#: No inline async catch-ups after each command: once the suite has imported the async
#: projections they made these tests eight times slower than when run alone, and they are
#: not what is tested here (the aggregate's version check is).
NO_TRIGGER = {"TRIGGER_ON_COMMIT": False}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_deposits_with_retries_are_all_applied() -> None:
    account_id = command_bus.dispatch(OpenAccount(owner="shared")).value

    with override_settings(DJANGO_CQRS={"CONCURRENCY_RETRIES": 1000, **NO_TRIGGER}):
        outcome = deposit_concurrently(account_id)

    assert outcome.rejected == 0
    assert len(outcome.accepted) == THREADS * DEPOSITS_PER_THREAD
    assert_nothing_lost(account_id, outcome)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_deposits_without_retries_reject_some_and_lose_none() -> None:
    account_id = command_bus.dispatch(OpenAccount(owner="shared")).value

    with override_settings(DJANGO_CQRS={"CONCURRENCY_RETRIES": 0, **NO_TRIGGER}):
        outcome = deposit_concurrently(account_id)

    assert outcome.rejected > 0, "8 threads on one account should have collided"
    assert outcome.accepted
    assert_nothing_lost(account_id, outcome)


@pytest.mark.django_db
def test_saving_a_stale_copy_raises_and_records_nothing() -> None:
    account_id = command_bus.dispatch(OpenAccount(owner="stale")).value
    first = Account.objects.get(pk=account_id)
    second = Account.objects.get(pk=account_id)
    first.deposit(Decimal("5.00"))
    first.save()
    second.deposit(Decimal("7.00"))
    events_before = list(StoredEvent.objects.values_list("position", flat=True))

    with pytest.raises(ConcurrencyError, match="changed by someone else") as excinfo:
        second.save()

    assert excinfo.value.expected_version == 2
    assert str(excinfo.value.aggregate_id) == str(account_id)
    assert list(StoredEvent.objects.values_list("position", flat=True)) == events_before
    stored = Account.objects.get(pk=account_id)
    assert (stored.balance, stored.version) == (Decimal("5.00"), 3)
    assert AccountView.objects.get(pk=account_id).balance == "5.00"
    # The failed save left the stale copy as it was, its event still pending.
    assert second.version == 2
    assert [type(e) for e in second.pending_events] == [Deposited]
