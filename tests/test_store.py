"""The event log's order: positions follow commit order, so a tailing reader misses nothing."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.db import IntegrityError, connections, transaction

from django_cqrs import command_bus, store
from django_cqrs.models import StoredEvent
from django_cqrs.signals import event_recorded
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.events import Deposited
from tests.testapp.models import Account

WRITERS = 4
DEPOSITS_PER_WRITER = 520
#: Writers whose transactions often stay open a few ms after appending; the others commit
#: at once, so without serialized appends a fast commit overtakes a slow one.
SLOW_WRITERS = {"writer-0", "writer-1"}


@dataclass
class TailReport:
    """What a reader tailing the log by position saw."""

    seen: list[int] = field(default_factory=list)
    #: Positions the reader saw twice or out of order.
    backwards: list[int] = field(default_factory=list)
    #: Events that appeared below a position the reader had already passed.
    late: set[int] = field(default_factory=set)
    error: BaseException | None = None


def tail_log(writers_done: threading.Event, report: TailReport) -> None:
    """Read events after the last seen position until the writers are done and all is read."""
    last = 0
    seen: set[int] = set()
    try:
        while True:
            finished = writers_done.is_set()
            batch = list(
                StoredEvent.objects.filter(position__gt=last)
                .order_by("position")
                .values_list("position", flat=True)[:1000]
            )
            for position in batch:
                if position <= last or position in seen:
                    report.backwards.append(position)
                report.seen.append(position)
                seen.add(position)
                last = max(last, position)
            below = StoredEvent.objects.filter(position__lte=last)
            if below.count() != len(seen | report.late):
                report.late |= set(below.values_list("position", flat=True)) - seen
            if finished and not batch:
                return
            time.sleep(0.002)
    except BaseException as exc:
        report.error = exc
    finally:
        connections.close_all()


def deposit_many(account_id: int, count: int, errors: list[BaseException]) -> None:
    try:
        for _ in range(count):
            command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("1.00")))
    except BaseException as exc:
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.fixture
def slow_commits() -> Iterator[None]:
    """Keep some writers' transactions open for a few ms after their event is appended."""
    rng = random.Random(1234)
    lock = threading.Lock()

    def linger(sender: type, **kwargs: object) -> None:
        if threading.current_thread().name in SLOW_WRITERS:
            with lock:
                delay = rng.choice((0, 0, 0.001, 0.002, 0.004))
            time.sleep(delay)

    event_recorded.connect(linger, sender=Deposited, dispatch_uid="test_store.linger")
    yield
    event_recorded.disconnect(sender=Deposited, dispatch_uid="test_store.linger")


def run_writers_and_tail() -> TailReport:
    accounts = [command_bus.dispatch(OpenAccount(owner=f"w{i}")).value for i in range(WRITERS)]
    connections.close_all()
    writers_done = threading.Event()
    report = TailReport()
    errors: list[BaseException] = []
    reader = threading.Thread(target=tail_log, args=(writers_done, report), name="reader")
    writers = [
        threading.Thread(
            target=deposit_many,
            args=(account_id, DEPOSITS_PER_WRITER, errors),
            name=f"writer-{i}",
        )
        for i, account_id in enumerate(accounts)
    ]
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
    writers_done.set()
    reader.join(timeout=120)
    assert not any(writer.is_alive() for writer in writers), "writers still running after 300 s"
    assert not reader.is_alive()
    assert not errors, errors
    assert report.error is None, report.error
    return report


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("slow_commits", "no_trigger")  # no inline catch-ups between appends
def test_reader_tailing_by_position_sees_every_event_once_in_order() -> None:
    report = run_writers_and_tail()

    committed = list(StoredEvent.objects.order_by("position").values_list("position", flat=True))
    deposits = StoredEvent.objects.filter(event_type=Deposited.event_type).count()
    assert deposits == WRITERS * DEPOSITS_PER_WRITER
    assert report.late == set(), f"{len(report.late)} events committed below the reader"
    assert report.backwards == []
    assert report.seen == committed
    assert report.seen == sorted(set(report.seen))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("slow_commits", "no_trigger")
def test_without_the_append_lock_the_tailing_reader_skips_late_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Proves the test above has teeth: a sequence alone hands out positions in insert
    # order, and a slow transaction commits its lower position after faster ones.
    monkeypatch.setattr(store, "lock_for_append", lambda using: None)

    report = run_writers_and_tail()

    committed = set(StoredEvent.objects.values_list("position", flat=True))
    assert report.late, "expected events committing below the reader's position"
    assert report.late == committed - set(report.seen)


@pytest.fixture
def fail_on_amount() -> Iterator[Decimal]:
    """A receiver that rolls back any deposit of 13.00 after its event was appended."""
    unlucky = Decimal("13.00")

    def refuse(sender: type, event: Deposited, **kwargs: object) -> None:
        if event.amount == unlucky:
            raise RuntimeError("unlucky amount")

    event_recorded.connect(refuse, sender=Deposited, dispatch_uid="test_store.refuse")
    yield unlucky
    event_recorded.disconnect(sender=Deposited, dispatch_uid="test_store.refuse")


@pytest.mark.django_db(transaction=True)
def test_positions_increase_in_commit_order_and_readers_pass_over_gaps(
    fail_on_amount: Decimal, vendor: str
) -> None:
    account_id = command_bus.dispatch(OpenAccount(owner="gaps")).value
    first = command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("1.00")))
    with pytest.raises(RuntimeError, match="unlucky"):
        command_bus.dispatch(Deposit(account_id=account_id, amount=fail_on_amount))
    second = command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("2.00")))

    positions = list(StoredEvent.objects.values_list("position", flat=True))
    assert len(positions) == len(set(positions)) == 3
    assert positions == sorted(positions)
    assert positions[1:] == [first.position, second.position]
    assert first.position is not None
    assert second.position is not None
    if vendor == "postgresql":
        # The rolled-back append used up a sequence value: the log has a hole there.
        assert second.position > first.position + 1
    after_first = store.read(after=first.position)
    assert [envelope.position for _, envelope in after_first] == [second.position]
    assert [event.amount for event, _ in after_first] == [Decimal("2.00")]
    assert store.head() == second.position
    assert Account.objects.get(pk=account_id).balance == Decimal("3.00")


@pytest.mark.django_db
def test_one_aggregate_version_cannot_be_stored_twice() -> None:
    account_id = command_bus.dispatch(OpenAccount(owner="dup")).value
    stored = StoredEvent.objects.get(aggregate_id=str(account_id))
    duplicate = StoredEvent(
        event_type=stored.event_type,
        aggregate_type=stored.aggregate_type,
        aggregate_id=stored.aggregate_id,
        aggregate_version=stored.aggregate_version,
        payload=stored.payload,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()

    # Same version on another aggregate is fine.
    StoredEvent.objects.create(
        event_type=stored.event_type,
        aggregate_type=stored.aggregate_type,
        aggregate_id=f"{account_id}-other",
        aggregate_version=stored.aggregate_version,
        payload=stored.payload,
    )
    assert StoredEvent.objects.filter(aggregate_version=stored.aggregate_version).count() == 2


@pytest.mark.django_db
def test_readers_get_named_rows_that_decode_to_the_stored_event() -> None:
    account = command_bus.dispatch(OpenAccount(owner="ann")).value
    result = command_bus.dispatch(Deposit(account_id=account, amount=Decimal("2.50")))

    [row] = store.read_rows(after=result.position - 1, limit=10)
    [batch] = list(store.iter_all(after=result.position - 1))

    stored = StoredEvent.objects.get(position=result.position)
    assert isinstance(row, store.EventRow)
    assert batch == [row]
    assert (row.position, row.event_type, row.aggregate_id, row.aggregate_version) == (
        stored.position,
        "testapp.Deposited",
        str(account),
        stored.aggregate_version,
    )
    assert (row.payload, row.metadata, row.recorded_at) == (
        stored.payload,
        stored.metadata,
        stored.recorded_at,
    )
    assert store.EventRow._fields == store.EVENT_FIELDS
    event, envelope = store.decode_row(row)
    assert event == Deposited(account_id=account, amount=Decimal("2.50"), balance=event.balance)
    assert envelope.position == row.position
