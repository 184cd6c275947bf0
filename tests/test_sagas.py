"""Sagas: a transfer between accounts runs its steps, compensates, times out, parks alone.

``tests.testapp.sagas.TransferSaga`` withdraws from the source, deposits to the target,
takes a fee from the target, then waits for the transfer's confirmation. The tests drive
its catch-up and its deadlines themselves (commands queue no catch-up here), with a
clock they choose.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from django_cqrs import command_bus
from django_cqrs.exceptions import ConfigurationError, ProjectionError
from django_cqrs.models import ParkedEvent, ProjectionState, SagaDeadline, StoredEvent
from django_cqrs.projections.catchup import catch_up
from django_cqrs.projections.rebuild import rebuild
from django_cqrs.sagas import fire_due, retry_instance, skip_instance
from django_cqrs.sagas.base import all_sagas
from tests.testapp import sagas
from tests.testapp.commands import ConfirmTransfer, Deposit, OpenAccount, RequestTransfer
from tests.testapp.models import Account, TransferRun
from tests.testapp.projections import AccountViewProjection
from tests.testapp.sagas import CONFIRM_SECONDS, TransferSaga

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_trigger")]

SAGA = TransferSaga.name


def account(owner: str, balance: str = "0") -> int:
    account_id: int = command_bus.dispatch(OpenAccount(owner=owner)).value
    if Decimal(balance):
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal(balance)))
    return account_id


def balance(account_id: int) -> Decimal:
    return Account.objects.get(pk=account_id).balance


def transfer(source: int, target: int, amount: str, fee: str = "0") -> tuple[uuid.UUID, Any]:
    transfer_id = uuid.uuid4()
    result = command_bus.dispatch(
        RequestTransfer(
            transfer_id=transfer_id,
            source_id=source,
            target_id=target,
            amount=Decimal(amount),
            fee=Decimal(fee),
        )
    )
    return transfer_id, result


def run(transfer_id: uuid.UUID) -> TransferRun:
    return TransferRun.objects.get(key=str(transfer_id))


def steps(transfer_id: uuid.UUID) -> list[tuple[str, str]]:
    return [(s["step"], s["outcome"]) for s in run(transfer_id).steps]


def movements_after(position: int) -> list[tuple[str, int, str]]:
    """(event, account, amount) of the movements recorded after ``position``, in order."""
    rows = StoredEvent.objects.filter(
        position__gt=position, event_type__in=["testapp.Deposited", "testapp.Withdrawn"]
    ).order_by("position")
    return [
        (row.event_type.split(".")[1], row.payload["account_id"], row.payload["amount"])
        for row in rows
    ]


def catch_up_until_parked(*keys: uuid.UUID, timeout: float = 5.0) -> None:
    """Catch the saga up until the poisoned instances are parked (their event failed
    ``max_retries + 1`` times). One ``catch_up()`` usually does it, with RETRY_BACKOFF 0,
    but it returns early when a batch finds nothing it may read yet (events held back,
    a retry not yet due by the wall clock): once in CI's PostgreSQL step it stopped after
    the first failed attempt. The state it stopped in is in the message."""
    give_up = time.monotonic() + timeout
    while True:
        catch_up(SAGA)
        if all(TransferRun.objects.filter(key=str(key), parked=True).exists() for key in keys):
            return
        if time.monotonic() > give_up:
            state = ProjectionState.objects.get(name=SAGA)
            pytest.fail(
                f"not parked after {timeout}s: {SAGA} at {state.position}, state {state.state}, "
                f"attempts {state.attempts} on {state.failing_position}, next retry "
                f"{state.next_retry_at} (now {timezone.now()})"
            )
        time.sleep(0.05)


@pytest.fixture
def poison() -> Iterator[set[int]]:
    yield sagas.POISON_SOURCES
    sagas.POISON_SOURCES.clear()


def test_a_transfer_runs_its_steps_and_completes_on_confirmation() -> None:
    alice, bob = account("alice", "100"), account("bob")
    transfer_id, requested = transfer(alice, bob, "30", fee="1")

    catch_up(SAGA)

    assert (balance(alice), balance(bob)) == (Decimal("70"), Decimal("29"))
    assert run(transfer_id).state == "awaiting_confirmation"
    assert steps(transfer_id) == [
        ("withdraw", "succeeded"),
        ("deposit", "succeeded"),
        ("fee", "succeeded"),
    ]
    # The commands carry the request's correlation id and the instance as causation.
    sent = StoredEvent.objects.filter(position__gt=requested.position).order_by("position")
    assert [e.metadata["correlation_id"] for e in sent] == [requested.correlation_id] * 3
    assert {e.metadata["causation_id"] for e in sent} == {f"saga:{SAGA}:{transfer_id}"}
    assert [e.metadata["saga_step"] for e in sent] == ["withdraw", "deposit", "fee"]
    assert {e.metadata["saga_event"] for e in sent} == {requested.position}
    [deadline] = SagaDeadline.objects.filter(saga=SAGA, instance_key=str(transfer_id))
    assert deadline.pending

    command_bus.dispatch(ConfirmTransfer(transfer_id=transfer_id))
    catch_up(SAGA)

    instance = run(transfer_id)
    assert instance.state == "completed"
    assert instance.finished_at is not None
    deadline.refresh_from_db()
    assert (deadline.fired_at, deadline.cancelled_at is not None) == (None, True)
    assert ProjectionState.objects.get(name=SAGA).state == "live"


def test_a_refused_step_compensates_the_steps_before_it_newest_first() -> None:
    alice, bob = account("alice", "100"), account("bob")
    transfer_id, requested = transfer(alice, bob, "30", fee="50")  # bob cannot pay 50

    catch_up(SAGA)

    assert steps(transfer_id) == [
        ("withdraw", "succeeded"),
        ("deposit", "succeeded"),
        ("fee", "failed"),
        ("compensate deposit", "compensated"),
        ("compensate withdraw", "compensated"),
    ]
    instance = run(transfer_id)
    assert instance.state == "compensated"
    assert "balance cannot go below zero" in instance.error
    assert (balance(alice), balance(bob)) == (Decimal("100"), Decimal("0"))
    assert movements_after(requested.position) == [
        ("Withdrawn", alice, "30"),
        ("Deposited", bob, "30"),
        ("Withdrawn", bob, "30"),  # the deposit taken back first
        ("Deposited", alice, "30"),  # then the withdrawal
    ]
    assert not SagaDeadline.objects.filter(saga=SAGA, cancelled_at__isnull=True).exists()


def test_the_deadline_fires_once_on_a_clock_the_test_controls() -> None:
    alice, bob = account("alice", "100"), account("bob")
    transfer_id, requested = transfer(alice, bob, "30")
    catch_up(SAGA)
    due = SagaDeadline.objects.get(saga=SAGA).due_at
    assert abs((due - timezone.now()).total_seconds() - CONFIRM_SECONDS) < 5

    assert fire_due(now=due - dt.timedelta(seconds=1)) == 0
    assert run(transfer_id).state == "awaiting_confirmation"

    assert fire_due(now=due + dt.timedelta(seconds=1)) == 1
    assert fire_due(now=due + dt.timedelta(seconds=60)) == 0  # at most once

    instance = run(transfer_id)
    assert instance.state == "compensated"
    assert instance.error == f"not confirmed within {CONFIRM_SECONDS} s"
    assert (balance(alice), balance(bob)) == (Decimal("100"), Decimal("0"))
    assert movements_after(requested.position)[2:] == [
        ("Withdrawn", bob, "30"),
        ("Deposited", alice, "30"),
    ]
    # A confirmation that comes too late changes nothing.
    command_bus.dispatch(ConfirmTransfer(transfer_id=transfer_id))
    catch_up(SAGA)
    assert run(transfer_id).state == "compensated"


def test_a_deadline_due_while_no_worker_ran_fires_late_rather_than_never() -> None:
    alice, bob = account("alice", "100"), account("bob")
    transfer_id, _ = transfer(alice, bob, "30")
    catch_up(SAGA)
    SagaDeadline.objects.update(due_at=timezone.now() - dt.timedelta(hours=3))

    from django_cqrs.tasks import catch_up_all

    catch_up_all()  # the periodic schedule

    assert run(transfer_id).state == "compensated"


def test_an_event_delivered_twice_sends_no_command_twice() -> None:
    alice, bob = account("alice", "100"), account("bob")
    _, requested = transfer(alice, bob, "30")
    catch_up(SAGA)
    before = StoredEvent.objects.count()

    from django_cqrs import store

    [row] = store.rows_at([requested.position])
    event, envelope = store.decode_row(row)
    TransferSaga().apply(event, envelope)  # as a redelivered event would be

    assert StoredEvent.objects.count() == before
    assert (balance(alice), balance(bob)) == (Decimal("70"), Decimal("30"))


def test_a_poison_event_parks_its_instance_and_not_the_saga(
    settings: Any, poison: set[int]
) -> None:
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    alice, bob, carol = account("alice", "100"), account("bob"), account("carol", "100")
    poison.add(alice)
    stuck, stuck_request = transfer(alice, bob, "30")
    fine, _ = transfer(carol, bob, "10")

    catch_up_until_parked(stuck)

    parked = run(stuck)
    assert parked.parked_positions == [stuck_request.position]
    assert "cannot process transfers from account" in parked.error
    assert ParkedEvent.objects.get(projection=SAGA, position=stuck_request.position).attempts == (
        TransferSaga.max_retries + 1
    )
    assert run(fine).state == "awaiting_confirmation"  # the others go on
    assert ProjectionState.objects.get(name=SAGA).state == "live"

    # Its later events wait with it, in order.
    confirmed = command_bus.dispatch(ConfirmTransfer(transfer_id=stuck))
    catch_up(SAGA)
    assert run(stuck).parked_positions == [stuck_request.position, confirmed.position]
    assert balance(alice) == Decimal("100")

    poison.clear()  # the cause is fixed
    assert retry_instance(SAGA, str(stuck)) == 2

    assert run(stuck).state == "completed"
    assert (balance(alice), balance(bob)) == (Decimal("70"), Decimal("40"))
    assert set(
        ParkedEvent.objects.filter(projection=SAGA).values_list("resolution", flat=True)
    ) == {"retried"}


def test_skipping_a_parked_instance_applies_only_what_was_held_after_it(
    settings: Any, poison: set[int]
) -> None:
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    alice, bob = account("alice", "100"), account("bob")
    poison.add(alice)
    stuck, request = transfer(alice, bob, "30")
    catch_up_until_parked(stuck)

    assert skip_instance(SAGA, str(stuck)) == 0

    assert not run(stuck).parked
    assert ParkedEvent.objects.get(projection=SAGA, position=request.position).resolution == (
        "skipped"
    )
    assert balance(alice) == Decimal("100")


def test_a_saga_is_never_rebuilt_and_a_rebuild_sends_no_command() -> None:
    alice, bob = account("alice", "100"), account("bob")
    transfer(alice, bob, "30")
    catch_up(SAGA)
    events = StoredEvent.objects.count()

    with pytest.raises(ProjectionError, match="not rebuilt"):
        rebuild(TransferSaga)
    rebuild(AccountViewProjection)

    assert StoredEvent.objects.count() == events
    assert (balance(alice), balance(bob)) == (Decimal("70"), Decimal("30"))


def test_a_sync_saga_runs_inside_the_command_and_fails_with_it() -> None:
    """mode = "sync": the steps commit with the command that recorded the event."""
    from django_cqrs.projections import unregister

    class SyncTransferSaga(TransferSaga):
        name = "tests.SyncTransferSaga"
        mode = "sync"

    try:
        alice, bob = account("alice", "100"), account("bob")
        transfer_id, requested = transfer(alice, bob, "30", fee="1")

        # No catch-up: the saga ran in the RequestTransfer command's transaction.
        assert (balance(alice), balance(bob)) == (Decimal("70"), Decimal("29"))
        assert steps(transfer_id) == [
            ("withdraw", "succeeded"),
            ("deposit", "succeeded"),
            ("fee", "succeeded"),
        ]
        assert len(requested.positions) == 4  # its own event and its three commands' events

        sagas.POISON_SOURCES.add(alice)
        with pytest.raises(RuntimeError, match="cannot process transfers"):
            transfer(alice, bob, "10")
        assert balance(alice) == Decimal("70")  # the command and its saga rolled back
        assert TransferRun.objects.count() == 1
    finally:
        sagas.POISON_SOURCES.clear()
        unregister(SyncTransferSaga)


def test_an_event_for_no_instance_and_no_start_is_ignored() -> None:
    """A confirmation of a transfer that never started moves nothing."""
    from tests.testapp.models import Transfer

    Transfer.objects.create(id=uuid.uuid4(), source_id=1, target_id=2, amount=Decimal("1"))
    orphan = Transfer.objects.get()
    command_bus.dispatch(ConfirmTransfer(transfer_id=orphan.id))

    catch_up(SAGA)

    assert not TransferRun.objects.exists()
    assert (
        ProjectionState.objects.get(name=SAGA).position
        == StoredEvent.objects.latest("position").position
    )


def test_a_deadline_is_scheduled_with_django_q2_once_the_step_commits(
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django_q.models import Schedule

    from django_cqrs.tasks import FIRE_DEADLINES_TASK, fire_deadlines_task

    alice, bob = account("alice", "100"), account("bob")
    transfer_id, _ = transfer(alice, bob, "30")
    with django_capture_on_commit_callbacks(execute=True):
        catch_up(SAGA)

    deadline = SagaDeadline.objects.get(saga=SAGA)
    [task] = Schedule.objects.filter(func=FIRE_DEADLINES_TASK)
    assert (task.schedule_type, task.next_run, task.repeats) == (
        Schedule.ONCE,
        deadline.due_at,
        1,
    )
    # The task fires nothing before it is due...
    assert fire_deadlines_task() == 0
    # ... and, when it runs late, catches the saga up first: a confirmation recorded in
    # time wins over the deadline.
    command_bus.dispatch(ConfirmTransfer(transfer_id=transfer_id))
    SagaDeadline.objects.update(due_at=timezone.now() - dt.timedelta(seconds=1))
    assert fire_deadlines_task() == 0
    assert run(transfer_id).state == "completed"


def test_cqrs_retry_and_cqrs_skip_resolve_parked_instances(settings: Any, poison: set[int]) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    alice, bob, carol = account("alice", "100"), account("bob"), account("carol", "100")
    poison.update({alice, carol})
    first, _ = transfer(alice, bob, "30")
    second, second_request = transfer(carol, bob, "10")
    catch_up_until_parked(first, second)
    assert (run(first).parked, run(second).parked) == (True, True)

    with pytest.raises(CommandError, match="failed again and stay parked"):
        call_command("cqrs_retry", SAGA, stdout=StringIO())  # the cause is not fixed yet
    assert (run(first).parked, run(second).parked) == (True, True)  # nothing changed
    with pytest.raises(CommandError, match="belongs to a parked instance"):
        call_command("cqrs_skip", SAGA, str(second_request.position), stdout=StringIO())

    out = StringIO()
    call_command("cqrs_skip", SAGA, "--instance", str(second), stdout=out)
    assert "skipped its failing event, 0 held events applied" in out.getvalue()
    poison.clear()
    out = StringIO()
    call_command("cqrs_retry", SAGA, stdout=out)
    assert f"{first}: 1 events applied" in out.getvalue()

    assert (run(first).parked, run(first).state) == (False, "awaiting_confirmation")
    assert (run(second).parked, balance(carol)) == (False, Decimal("100"))
    with pytest.raises(CommandError, match="has no parked instance"):
        call_command("cqrs_retry", SAGA, "--instance", str(first), stdout=StringIO())


def test_a_saga_met_at_migrate_starts_at_the_head_not_at_history() -> None:
    """Adding a saga to a running system must not act on every past event."""
    from django_cqrs.sagas.base import start_new_sagas

    alice, bob = account("alice", "100"), account("bob")
    old, _ = transfer(alice, bob, "30")  # before the saga was deployed
    ProjectionState.objects.filter(name=SAGA).delete()

    assert SAGA in start_new_sagas(using="default")  # what `migrate` runs
    assert start_new_sagas(using="default") == []  # once

    new, _ = transfer(alice, bob, "20")
    catch_up(SAGA)
    assert not TransferRun.objects.filter(key=str(old)).exists()
    assert run(new).state == "awaiting_confirmation"
    assert balance(alice) == Decimal("80")

    class FromTheStart(TransferSaga):
        name = "tests.FromTheStart"
        start_from = "beginning"

    from django_cqrs.projections import unregister

    try:
        assert "tests.FromTheStart" not in start_new_sagas(using="default")
    finally:
        unregister(FromTheStart)
    with pytest.raises(ConfigurationError, match="start_from must be"):

        class Nowhere(TransferSaga):
            name = "tests.Nowhere"
            start_from = "yesterday"

    assert all(cls.name != "tests.Nowhere" for cls in all_sagas())
