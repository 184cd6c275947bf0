"""Aggregates: invariants, versions, event append, signals, all-or-nothing saves."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.db import connection, transaction
from django.test.utils import isolate_apps

from django_cqrs import Event, command_bus
from django_cqrs.events import EventEnvelope
from django_cqrs.exceptions import AppendOnlyError, ConcurrencyError, InvariantViolationError
from django_cqrs.models import StoredEvent
from django_cqrs.projections import Projection, handles, unregister
from django_cqrs.signals import event_committed, event_recorded
from tests.testapp.commands import Deposit, OpenAccount, Withdraw
from tests.testapp.events import AccountOpened, Deposited, Withdrawn
from tests.testapp.models import Account, AccountLedger, AccountView


@dataclasses.dataclass(frozen=True)
class AuditNoted(Event, name="tests.aggregates.AuditNoted"):
    note: str


def every_table() -> dict[str, int]:
    """Row counts of every model's table in the project."""
    return {
        model._meta.label: model._base_manager.count()
        for model in apps.get_models()
        if model._meta.managed and not model._meta.proxy
    }


def snapshot(account_id: int) -> dict[str, Any]:
    """Everything a user could see about one account."""
    account = Account.objects.get(pk=account_id)
    return {
        "tables": every_table(),
        "account": (account.owner, account.balance, account.version),
        "view": list(AccountView.objects.filter(pk=account_id).values()),
        "ledger": list(AccountLedger.objects.filter(account_id=account_id).values()),
        "events": list(StoredEvent.objects.for_aggregate(account).values()),
    }


def open_account(owner: str = "ann", balance: str | None = None) -> Account:
    account_id = command_bus.dispatch(OpenAccount(owner=owner)).value
    if balance is not None:
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal(balance)))
    return Account.objects.get(pk=account_id)


@pytest.fixture
def received() -> list[dict[str, Any]]:
    """Calls of test receivers, each with what it saw at the time."""
    return []


# -- invariants --------------------------------------------------------------------------


@pytest.mark.django_db
def test_invariant_violation_through_a_command_leaves_nothing_behind():
    account = open_account(balance="10")
    before = snapshot(account.pk)

    with pytest.raises(InvariantViolationError, match="balance cannot go below zero") as excinfo:
        command_bus.dispatch(Withdraw(account_id=account.pk, amount=Decimal("10.01")))

    assert excinfo.value.field == "balance"
    assert snapshot(account.pk) == before
    assert AccountView.objects.get(pk=account.pk).balance == "10.00"


@pytest.mark.django_db(transaction=True)
def test_invariant_violation_leaves_nothing_behind_after_commit():
    account = open_account(balance="10")
    before = snapshot(account.pk)

    with pytest.raises(InvariantViolationError):
        command_bus.dispatch(Withdraw(account_id=account.pk, amount=Decimal("11")))

    assert snapshot(account.pk) == before


@pytest.mark.django_db
def test_invariant_violation_on_a_new_aggregate_inserts_no_row():
    before = every_table()
    account = Account(owner="ann", balance=Decimal("-1"))
    account.record_event(AuditNoted(note="created in debt"))

    with pytest.raises(InvariantViolationError):
        account.save()

    assert every_table() == before
    assert account._state.adding is True
    assert account.version == 0
    assert account.pending_events == [AuditNoted(note="created in debt")]


@pytest.mark.django_db
def test_check_methods_run_on_save_without_being_called():
    account = open_account(balance="5")
    account.withdraw(Decimal("6"))  # the domain method itself does not check
    assert account.balance == Decimal("-1")

    with pytest.raises(InvariantViolationError, match="balance cannot go below zero"):
        account.save()

    assert Account.invariant_checks == ("check_balance_not_negative",)
    assert Account.objects.get(pk=account.pk).balance == Decimal("5")


@isolate_apps("tests.testapp")
def test_check_methods_are_collected_from_the_whole_class_hierarchy():
    calls: list[str] = []

    class StrictAccount(Account):
        check_threshold = 3  # not callable: not a check

        class Meta:
            proxy = True
            app_label = "testapp"

        def check_owner_named(self) -> None:
            calls.append("owner")
            if not self.owner:
                raise InvariantViolationError("an account has an owner", field="owner")

        def check_balance_not_negative(self) -> None:  # overrides the base check in place
            calls.append("balance")
            super().check_balance_not_negative()

        @staticmethod
        def check_helper() -> None:
            raise AssertionError("static helpers are not invariants")

    assert StrictAccount.invariant_checks == ("check_balance_not_negative", "check_owner_named")
    with pytest.raises(InvariantViolationError, match="an account has an owner"):
        StrictAccount(owner="", balance=Decimal("1")).check_invariants()
    assert calls == ["balance", "owner"]


# -- versions ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_version_increments_by_the_number_of_events_or_one():
    account = Account(owner="ann")
    account.save()  # no events
    assert account.version == 1

    account.record_event(AccountOpened(account_id=account.pk, owner="ann"))
    account.save()
    assert account.version == 2

    account.owner = "anne"
    account.save()  # no events
    assert account.version == 3

    for amount in ("1", "2", "3"):
        account.deposit(Decimal(amount))
    account.save()

    assert account.version == 6
    assert Account.objects.get(pk=account.pk).version == 6
    events = StoredEvent.objects.for_aggregate(account)
    assert list(events.values_list("aggregate_version", flat=True)) == [2, 4, 5, 6]
    assert account.pending_events == []


@pytest.mark.django_db
def test_save_with_update_fields_still_bumps_the_version():
    account = Account.objects.create(owner="ann")

    account.owner = "anne"
    account.save(update_fields=["owner"])

    account.refresh_from_db()
    assert (account.owner, account.version) == ("anne", 2)


@pytest.mark.django_db
def test_stale_version_raises_and_writes_nothing():
    account = open_account(balance="10")
    first = Account.objects.get(pk=account.pk)
    second = Account.objects.get(pk=account.pk)
    first.deposit(Decimal("5"))
    first.save()
    before = snapshot(account.pk)

    second.deposit(Decimal("7"))
    with pytest.raises(ConcurrencyError) as excinfo:
        second.save()

    error = excinfo.value
    assert error.aggregate_type == "testapp.Account"
    assert error.aggregate_id == account.pk
    assert error.expected_version == first.version - 1
    assert f"saved from version {first.version - 1}" in str(error)
    assert snapshot(account.pk) == before
    assert Account.objects.get(pk=account.pk).balance == Decimal("15")
    assert AccountView.objects.get(pk=account.pk).balance == "15.00"


@pytest.mark.django_db
def test_saving_an_aggregate_whose_row_is_gone_is_a_concurrency_error():
    account = Account.objects.create(owner="ann")
    Account.objects.filter(pk=account.pk).delete()
    account.owner = "anne"

    with pytest.raises(ConcurrencyError, match="no longer current"):
        account.save()

    assert not Account.objects.filter(pk=account.pk).exists()


@pytest.mark.django_db
def test_after_a_stale_save_the_instance_is_unchanged_and_can_be_reloaded():
    account = open_account(balance="10")
    stale = Account.objects.get(pk=account.pk)
    Account.objects.get(pk=account.pk).save()  # someone else bumps the version
    stale.deposit(Decimal("1"))
    pending = list(stale.pending_events)
    version = stale.version

    with pytest.raises(ConcurrencyError):
        stale.save()

    assert stale.version == version
    assert stale._state.adding is False
    assert stale.pending_events == pending


# -- all or nothing, and retrying the same instance -----------------------------------------


class FailingAuditProjection(Projection):
    """Fails while ``failing`` is True; records what it applied otherwise."""

    read_models = [AccountLedger]
    failing = False
    applied: list[str] = []

    @handles(AuditNoted, Deposited)
    def noted(self, event: Any, envelope: EventEnvelope) -> None:
        if type(self).failing:
            raise RuntimeError("projection exploded")
        type(self).applied.append(envelope.event_type)


# Only connected while a test asks for it (see the fixture below).
unregister(FailingAuditProjection)


@pytest.fixture
def failing_projection() -> Iterator[type[FailingAuditProjection]]:
    from django_cqrs.projections import register

    FailingAuditProjection.failing = False
    FailingAuditProjection.applied = []
    register(FailingAuditProjection)
    yield FailingAuditProjection
    unregister(FailingAuditProjection)


@pytest.mark.django_db
def test_failing_sync_projection_rolls_the_command_back(failing_projection):
    account = open_account(balance="10")
    before = snapshot(account.pk)
    failing_projection.failing = True

    with pytest.raises(RuntimeError, match="projection exploded"):
        command_bus.dispatch(Deposit(account_id=account.pk, amount=Decimal("5")))

    assert snapshot(account.pk) == before
    assert AccountView.objects.get(pk=account.pk).balance == "10.00"  # its own update undone


@pytest.mark.django_db(transaction=True)
def test_failing_sync_projection_rolls_back_outside_a_test_transaction(failing_projection):
    account = open_account(balance="10")
    before = snapshot(account.pk)
    failing_projection.failing = True

    with pytest.raises(RuntimeError):
        command_bus.dispatch(Deposit(account_id=account.pk, amount=Decimal("5")))

    assert snapshot(account.pk) == before


@pytest.mark.django_db
def test_failed_insert_restores_the_instance_so_a_retry_works(failing_projection):
    before = every_table()
    failing_projection.failing = True
    account = Account(owner="ann")
    account.record_event(AuditNoted(note="hello"))

    with pytest.raises(RuntimeError):
        account.save()

    assert every_table() == before
    assert account._state.adding is True
    assert account.version == 0
    assert account.pending_events == [AuditNoted(note="hello")]

    failing_projection.failing = False
    account.save()

    assert account._state.adding is False
    assert account.version == 1
    assert account.pending_events == []
    stored = StoredEvent.objects.get(aggregate_id=str(account.pk))
    assert (stored.event_type, stored.aggregate_version) == ("tests.aggregates.AuditNoted", 1)
    assert Account.objects.get(pk=account.pk).version == 1
    assert failing_projection.applied == ["tests.aggregates.AuditNoted"]


@pytest.mark.django_db
def test_failed_update_restores_the_instance_so_a_retry_works(failing_projection):
    account = open_account(balance="10")
    failing_projection.applied.clear()
    failing_projection.failing = True
    account.deposit(Decimal("5"))
    version = account.version

    with pytest.raises(RuntimeError):
        account.save()

    assert account.version == version
    assert account._state.adding is False
    assert len(account.pending_events) == 1
    assert Account.objects.get(pk=account.pk).balance == Decimal("10")

    failing_projection.failing = False
    account.save()

    assert account.version == version + 1
    assert Account.objects.get(pk=account.pk).balance == Decimal("15")
    assert AccountView.objects.get(pk=account.pk).balance == "15.00"
    assert StoredEvent.objects.for_aggregate(account).last().aggregate_version == version + 1
    assert failing_projection.applied == ["testapp.Deposited"]


# -- metadata ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_event_metadata_names_command_correlation_causation_and_user():
    account = open_account()

    result = command_bus.dispatch(
        Deposit(account_id=account.pk, amount=Decimal("1")),
        metadata={"user": "42", "correlation_id": "corr-1", "causation_id": "msg-0"},
    )

    stored = StoredEvent.objects.get(position=result.position)
    assert stored.metadata["command_type"] == "tests.testapp.commands.Deposit"
    assert stored.metadata["command_id"] == result.command_id
    assert stored.metadata["correlation_id"] == "corr-1"
    assert stored.metadata["causation_id"] == "msg-0"
    assert stored.metadata["user"] == "42"


@pytest.mark.django_db
def test_events_saved_outside_a_command_have_empty_metadata():
    account = Account.open("ann")
    account.deposit(Decimal("1"))
    account.save()

    metadata = list(StoredEvent.objects.for_aggregate(account).values_list("metadata", flat=True))
    assert metadata == [{}, {}]


# -- signals -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_event_recorded_is_sent_inside_the_transaction_with_the_event_class(received):
    def on_deposit(sender: type, event: Event, envelope: EventEnvelope, **kwargs: Any) -> None:
        received.append(
            {
                "sender": sender,
                "event": event,
                "in_transaction": connection.in_atomic_block,
                "row_visible": StoredEvent.objects.filter(position=envelope.position).exists(),
                "position": envelope.position,
            }
        )

    event_recorded.connect(on_deposit, sender=Deposited, weak=False)
    try:
        account = open_account()
        assert received == []  # AccountOpened is another sender
        result = command_bus.dispatch(Deposit(account_id=account.pk, amount=Decimal("3")))
    finally:
        event_recorded.disconnect(on_deposit, sender=Deposited)

    [call] = received
    assert call["sender"] is Deposited
    assert call["event"] == Deposited(
        account_id=account.pk, amount=Decimal("3"), balance=Decimal("3")
    )
    assert call["in_transaction"] is True
    assert call["row_visible"] is True
    assert call["position"] == result.position


@pytest.mark.django_db(transaction=True)
def test_event_committed_is_sent_only_after_commit(received):
    def on_committed(sender: type, event: Event, envelope: EventEnvelope, **kwargs: Any) -> None:
        received.append({"sender": sender, "in_transaction": connection.in_atomic_block})

    event_committed.connect(on_committed, sender=Withdrawn, weak=False)
    try:
        account = open_account(balance="10")
        with transaction.atomic():
            command_bus.dispatch(Withdraw(account_id=account.pk, amount=Decimal("1")))
            assert received == []  # not yet: the outer transaction is still open
        assert received == [{"sender": Withdrawn, "in_transaction": False}]
    finally:
        event_committed.disconnect(on_committed, sender=Withdrawn)


def withdraw_then_fail(account_id: int) -> None:
    with transaction.atomic():
        command_bus.dispatch(Withdraw(account_id=account_id, amount=Decimal("1")))
        raise RuntimeError("caller fails after the command")


@pytest.mark.django_db(transaction=True)
def test_event_committed_is_never_sent_when_the_transaction_rolls_back(received):
    def on_committed(sender: type, event: Event, envelope: EventEnvelope, **kwargs: Any) -> None:
        received.append({"event": event})

    event_committed.connect(on_committed, sender=Withdrawn, weak=False)
    try:
        account = open_account(balance="10")
        with pytest.raises(RuntimeError, match="caller fails"):
            withdraw_then_fail(account.pk)
    finally:
        event_committed.disconnect(on_committed, sender=Withdrawn)

    assert received == []
    assert Account.objects.get(pk=account.pk).balance == Decimal("10")
    assert not StoredEvent.objects.filter(event_type="testapp.Withdrawn").exists()


@pytest.mark.django_db
def test_event_committed_runs_on_commit_callbacks(received, django_capture_on_commit_callbacks):
    def on_committed(sender: type, event: Event, envelope: EventEnvelope, **kwargs: Any) -> None:
        received.append({"type": envelope.event_type, "position": envelope.position})

    event_committed.connect(on_committed, sender=AccountOpened, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            result = command_bus.dispatch(OpenAccount(owner="ann"))
        assert received == []
        assert callbacks
        for callback in callbacks:
            callback()
    finally:
        event_committed.disconnect(on_committed, sender=AccountOpened)

    assert received == [{"type": "testapp.AccountOpened", "position": result.position}]


@pytest.mark.django_db(transaction=True)
def test_raising_event_committed_receiver_does_not_fail_the_command(received, caplog):
    def broken(sender: type, event: Event, envelope: EventEnvelope, **kwargs: Any) -> None:
        raise RuntimeError("mail server down")

    def working(sender: type, event: Event, envelope: EventEnvelope, **kwargs: Any) -> None:
        received.append({"position": envelope.position})

    caplog.set_level(logging.ERROR, logger="django_cqrs")
    event_committed.connect(broken, sender=Deposited, weak=False)
    event_committed.connect(working, sender=Deposited, weak=False)
    try:
        account = open_account()
        result = command_bus.dispatch(Deposit(account_id=account.pk, amount=Decimal("4")))
    finally:
        event_committed.disconnect(broken, sender=Deposited)
        event_committed.disconnect(working, sender=Deposited)

    assert result.value == Decimal("4")
    assert Account.objects.get(pk=account.pk).balance == Decimal("4")
    assert received == [{"position": result.position}]  # the other receiver still ran
    [record] = [r for r in caplog.records if "event_committed receiver" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "testapp.Deposited" in record.getMessage()
    assert str(result.position) in record.getMessage()
    assert record.exc_info[0] is RuntimeError


# -- the append-only log ---------------------------------------------------------------------


@pytest.fixture
def stored_event() -> StoredEvent:
    account = open_account(balance="1")
    return StoredEvent.objects.for_aggregate(account).last()


def _row(position: int) -> dict[str, Any]:
    return StoredEvent.objects.filter(position=position).values().get()


@pytest.mark.django_db
def test_stored_event_cannot_be_changed(stored_event):
    original = _row(stored_event.position)
    stored_event.payload = {"amount": "1000000"}

    with pytest.raises(AppendOnlyError, match="cannot be changed"):
        stored_event.save()

    assert _row(stored_event.position) == original


@pytest.mark.django_db
def test_stored_event_cannot_be_deleted(stored_event):
    original = _row(stored_event.position)

    with pytest.raises(AppendOnlyError, match="cannot be deleted"):
        stored_event.delete()

    assert _row(stored_event.position) == original


BULK_CHANGES = {
    "manager update": lambda row: StoredEvent.objects.update(event_type="x"),
    "queryset update": lambda row: StoredEvent.objects.filter(pk=row.pk).update(metadata={}),
    "delete all": lambda row: StoredEvent.objects.all().delete(),
    "queryset delete": lambda row: StoredEvent.objects.filter(pk=row.pk).delete(),
    "bulk update": lambda row: StoredEvent.objects.bulk_update(
        [StoredEvent(position=row.pk, payload={})], fields=["payload"]
    ),
    "update_or_create": lambda row: StoredEvent.objects.update_or_create(
        position=row.pk, defaults={"payload": {}}
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("change", BULK_CHANGES.values(), ids=BULK_CHANGES.keys())
def test_stored_events_cannot_be_changed_in_bulk(stored_event, change):
    before = list(StoredEvent.objects.values())
    assert len(before) == 2

    with pytest.raises(AppendOnlyError):
        change(stored_event)

    assert list(StoredEvent.objects.values()) == before


@pytest.mark.django_db
def test_deleting_an_aggregate_keeps_its_events():
    account = open_account(balance="1")
    events = StoredEvent.objects.for_aggregate(account).count()

    Account.objects.filter(pk=account.pk).delete()

    assert StoredEvent.objects.for_aggregate(account).count() == events == 2
