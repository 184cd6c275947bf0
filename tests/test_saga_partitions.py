"""A saga's instances spread over partitions, each on a checkpoint of its own.

``SplitTransferSaga`` is ``TransferSaga`` (tests/testapp/sagas.py) with three partitions;
while a test runs it takes ``TransferSaga``'s place in the registry (they share the
instance table). An instance is handled by one partition only, so its events stay in
order; the partitions do not wait for each other (on PostgreSQL: a partition catches up
while another's state row is locked). Also here, because partitions made them show: a
batch that meets a deadlock runs again without counting a failure, and a worker's
catch-up waits for events an open transaction holds back instead of leaving them to the
scheduler.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from django_cqrs import command_bus
from django_cqrs.exceptions import ConfigurationError, TransactionConflictError
from django_cqrs.models import ParkedEvent, ProjectionState, SagaDeadline
from django_cqrs.projections import ASYNC, Projection, handles
from django_cqrs.projections.base import unregister
from django_cqrs.projections.catchup import HELD_BACK, catch_up, run_batch, run_catch_up
from django_cqrs.projections.status import projection_status, wait_for_position
from django_cqrs.sagas import Saga, fire_due, retry_instance
from django_cqrs.sagas.base import all_sagas, start_new_sagas
from tests.helpers import Holding
from tests.test_sagas import account, transfer
from tests.testapp import sagas
from tests.testapp.commands import ConfirmTransfer, Deposit
from tests.testapp.events import TransferRequested
from tests.testapp.models import Account, TransferRun
from tests.testapp.sagas import CONFIRM_SECONDS, TransferSaga

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_trigger")]

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent transactions: PostgreSQL only (set DATABASE_URL)",
)


@pytest.fixture
def poison() -> Iterator[set[int]]:
    yield sagas.POISON_SOURCES
    sagas.POISON_SOURCES.clear()


def transfers_in_every_partition(saga: type[Saga], source: int, target: int) -> list[uuid.UUID]:
    """Transfers of 1 from ``source`` to ``target`` until each partition has two."""
    found: Counter[str] = Counter()
    ids = []
    while min(found[part.name] for part in saga.partition_classes) < 2:
        transfer_id, _ = transfer(source, target, "1", fee="0")
        found[saga.partition_for(str(transfer_id)).name] += 1
        ids.append(transfer_id)
    return ids


def test_a_saga_declares_whole_partitions_and_only_for_workers() -> None:
    with pytest.raises(ConfigurationError, match="partitions must be a whole number >= 1"):

        class NoPartitions(TransferSaga):
            partitions = 0

    with pytest.raises(ConfigurationError, match="takes no partitions"):

        class InTheCommand(TransferSaga):
            mode = "sync"
            partitions = 2


def test_each_partition_runs_the_instances_of_its_keys_and_only_those(
    split: type[Saga],
) -> None:
    alice, bob = account("alice", "100"), account("bob")
    ids = transfers_in_every_partition(split, alice, bob)
    _, second, _ = split.partition_classes
    assert [part.name for part in split.partition_classes] == [
        split.name,
        f"{split.name}#1",
        f"{split.name}#2",
    ]

    run_catch_up(second)  # one partition: its instances move on, the others wait

    moved = {str(i) for i in ids if split.partition_for(str(i)) is second}
    assert set(TransferRun.objects.values_list("key", flat=True)) == moved

    assert catch_up(split) > 0  # the saga's name: every partition
    assert set(TransferRun.objects.values_list("state", flat=True)) == {"awaiting_confirmation"}
    assert Account.objects.get(pk=bob).balance == Decimal(len(ids))  # each deposit once
    # Every partition has its checkpoint; the commands name the saga, not the partition.
    assert set(
        ProjectionState.objects.filter(name__startswith=split.name).values_list("name", flat=True)
    ) == {part.name for part in split.partition_classes}
    assert set(SagaDeadline.objects.values_list("saga", flat=True)) == {split.name}
    # The other partitions' classes are not sagas of their own.
    assert [cls for cls in all_sagas() if issubclass(cls, TransferSaga)] == [split]


def test_a_deadline_fires_through_its_instances_partition(split: type[Saga]) -> None:
    alice, bob = account("alice", "100"), account("bob")
    ids = transfers_in_every_partition(split, alice, bob)
    catch_up(split)
    confirmed = ids[0]
    command_bus.dispatch(ConfirmTransfer(transfer_id=confirmed))
    catch_up(split)
    later = SagaDeadline.objects.get(instance_key=str(confirmed)).due_at

    assert fire_due(now=later + dt.timedelta(seconds=CONFIRM_SECONDS)) == len(ids) - 1

    states = dict(TransferRun.objects.values_list("key", "state"))
    assert states.pop(str(confirmed)) == "completed"
    assert set(states.values()) == {"compensated"}  # timed out, in whichever partition
    assert Account.objects.get(pk=alice).balance == Decimal("100") - 1


def test_a_poison_event_parks_its_instance_in_its_partition(
    settings: Any, split: type[Saga], poison: set[int]
) -> None:
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    alice, bob, carol = account("alice", "100"), account("bob"), account("carol", "100")
    poison.add(alice)
    stuck, request = transfer(alice, bob, "30")
    ids = transfers_in_every_partition(split, carol, bob)
    part = split.partition_for(str(stuck))

    catch_up(split)

    parked = ParkedEvent.objects.get(position=request.position)
    assert parked.projection == part.name
    assert TransferRun.objects.get(key=str(stuck)).parked
    assert TransferRun.objects.filter(state="awaiting_confirmation").count() == len(ids)

    poison.clear()
    assert retry_instance(split.name, str(stuck)) == 1  # by the saga's name
    assert TransferRun.objects.get(key=str(stuck)).state == "awaiting_confirmation"


def test_migrate_starts_every_partition_at_the_head_and_status_shows_the_saga_once(
    split: type[Saga],
) -> None:
    alice, bob = account("alice", "100"), account("bob")
    transfer(alice, bob, "5")  # history: a saga met now does not act on it

    started = start_new_sagas(using="default")

    assert set(started) == {part.name for part in split.partition_classes}
    assert catch_up(split) == 0
    assert not TransferRun.objects.exists()
    entries = {entry.name: entry for entry in projection_status()}
    assert entries[split.name].saga is not None
    assert entries[f"{split.name}#1"].saga is None  # the instances are counted once
    assert entries[f"{split.name}#2"].mode == ASYNC


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_partition_catches_up_while_another_partitions_batch_holds_its_lock(
    split: type[Saga],
) -> None:
    alice, bob = account("alice", "100"), account("bob")
    ids = transfers_in_every_partition(split, alice, bob)
    first, second, _ = split.partition_classes
    for part in split.partition_classes:
        ProjectionState.objects.get_or_create(name=part.name)
    # What a worker in the middle of a batch of `first` holds: its state row, locked.
    with Holding(lambda: ProjectionState.objects.select_for_update().get(name=first.name)):
        run_catch_up(second)  # does not wait for `first`
        moved = {str(i) for i in ids if split.partition_for(str(i)) is second}
        assert set(TransferRun.objects.values_list("key", flat=True)) == moved


class Flaky(Projection):
    """Meets a deadlock on its first attempt at each event (then applies it)."""

    abstract = True
    mode = ASYNC
    seen: Counter[int] = Counter()
    applied: list[int] = []

    @handles(TransferRequested)
    def on_requested(self, event: TransferRequested, envelope: Any) -> None:
        Flaky.seen[envelope.position] += 1
        if Flaky.seen[envelope.position] == 1:
            raise TransactionConflictError("deadlock detected (in a command the handler sent)")
        Flaky.applied.append(envelope.position)


@pytest.fixture
def flaky() -> Iterator[type[Projection]]:
    Flaky.seen.clear()
    Flaky.applied.clear()

    class FlakyProjection(Flaky):
        pass

    try:
        yield FlakyProjection
    finally:
        unregister(FlakyProjection)


def test_a_batch_that_meets_a_deadlock_runs_again_without_counting_a_failure(
    flaky: type[Projection],
) -> None:
    alice, bob = account("alice", "100"), account("bob")
    _, first = transfer(alice, bob, "1")
    _, second = transfer(alice, bob, "2")

    outcome = run_catch_up(flaky, batch_size=1)

    assert outcome.read == 2
    assert outcome.retry_at is None
    assert Flaky.applied == [first.position, second.position]
    state = ProjectionState.objects.get(name=flaky.name)
    assert (state.attempts, state.failing_position, state.last_error) == (0, None, "")
    assert not ParkedEvent.objects.filter(projection=flaky.name).exists()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_workers_catch_up_waits_for_events_an_open_transaction_holds_back(
    flaky: type[Projection],
) -> None:
    alice, bob = account("alice", "100"), account("bob")
    run_catch_up(flaky)  # at the head
    # A saga's batch: it records events while it runs, in a transaction left open.
    with Holding(lambda: command_bus.dispatch(Deposit(account_id=bob, amount=Decimal("1")))) as h:
        _, later = transfer(alice, bob, "1")  # committed, behind the open transaction
        assert run_batch(flaky).reason == HELD_BACK
        threading.Timer(0.3, h.release.set).start()

        outcome = run_catch_up(flaky, wait_held_back=10)

        assert outcome.read == 1
        assert outcome.retry_at is None  # no retry left to the scheduler
        assert Flaky.applied == [later.position]


def test_read_your_writes_waits_for_every_partition_of_a_saga(split: type[Saga]) -> None:
    alice, bob = account("alice", "100"), account("bob")
    ids = transfers_in_every_partition(split, alice, bob)
    position = command_bus.dispatch(ConfirmTransfer(transfer_id=ids[-1])).position
    for part in split.partition_classes[:-1]:
        run_catch_up(part)  # all but the last partition

    assert not wait_for_position(split, position, timeout=0)  # CQRS-Min-Position: not yet
    assert not wait_for_position(split.name, position, timeout=0)
    run_catch_up(split.partition_classes[-1])
    assert wait_for_position(split, position, timeout=0)
