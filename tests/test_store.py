"""The event log's order: positions follow commit order, so a tailing reader misses nothing."""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

from django_cqrs import command_bus, store
from django_cqrs.db import log
from django_cqrs.db.log import points_before
from django_cqrs.models import StoredEvent
from django_cqrs.projections.health import health_report
from django_cqrs.projections.status import horizon_status
from django_cqrs.signals import event_recorded
from tests.helpers import Holding
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.events import Deposited
from tests.testapp.models import Account

WRITERS = 8
DEPOSITS_PER_WRITER = 150
#: Writers whose transactions often stay open a few ms after appending; the others commit
#: at once, so a fast commit overtakes a slow one.
SLOW_WRITERS = {"writer-0", "writer-1", "writer-2"}
#: This writer keeps its transaction open for seconds after its first append, while the
#: others go on committing.
HOLDER = "writer-3"
HOLD_SECONDS = 2.0


@dataclass
class TailReport:
    """What a reader tailing the log in its order saw."""

    seen: list[int] = field(default_factory=list)
    #: Positions the reader saw twice.
    twice: list[int] = field(default_factory=list)
    #: Events that appeared before the point the reader had already passed.
    late: set[int] = field(default_factory=set)
    error: BaseException | None = None


def tail_log(writers_done: threading.Event, report: TailReport) -> None:
    """Read events after the last point seen until the writers are done and all is read."""
    point = store.START
    seen: set[int] = set()
    try:
        while True:
            finished = writers_done.is_set()
            batch = store.read_rows(after=point, limit=1000)
            for row in batch:
                if row.position in seen:
                    report.twice.append(row.position)
                report.seen.append(row.position)
                seen.add(row.position)
                point = row.point
            passed = StoredEvent.objects.filter(points_before(StoredEvent, point, inclusive=True))
            if point != store.START and passed.count() != len(seen | report.late):
                report.late |= set(passed.values_list("position", flat=True)) - seen
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
    """Keep some writers' transactions open a few ms after their event is appended, and
    one writer's for seconds, once."""
    rng = random.Random(1234)
    lock = threading.Lock()
    held = threading.Event()

    def linger(sender: type, **kwargs: object) -> None:
        name = threading.current_thread().name
        if name == HOLDER and not held.is_set():
            held.set()
            time.sleep(HOLD_SECONDS)
        elif name in SLOW_WRITERS:
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


def in_log_order() -> list[int]:
    return list(
        StoredEvent.objects.order_by("transaction_id", "position").values_list(
            "position", flat=True
        )
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("slow_commits", "no_trigger")  # no inline catch-ups between appends
def test_a_reader_tailing_the_log_sees_every_event_once_in_one_order() -> None:
    report = run_writers_and_tail()

    deposits = StoredEvent.objects.filter(event_type=Deposited.event_type).count()
    assert deposits == WRITERS * DEPOSITS_PER_WRITER
    assert report.late == set(), f"{len(report.late)} events committed behind the reader"
    assert report.twice == []
    assert report.seen == in_log_order()
    # Appends no longer wait for each other: positions are not in commit order.
    positions = StoredEvent.objects.order_by("transaction_id", "position")
    assert list(positions.values_list("position", flat=True)) != sorted(report.seen)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("slow_commits", "no_trigger")
def test_without_the_horizon_the_tailing_reader_skips_late_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Proves the test above has teeth: reading every committed event, in the same order,
    # passes the open transaction, whose events then commit behind the reader.
    monkeypatch.setattr(log, "horizon", lambda using: None)

    report = run_writers_and_tail()

    committed = set(StoredEvent.objects.values_list("position", flat=True))
    assert report.late, "expected events committing behind the reader"
    assert report.late == committed - set(report.seen)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_trigger")
def test_an_open_transaction_holds_readers_back_without_blocking_writers() -> None:
    account = command_bus.dispatch(OpenAccount(owner="holder")).value
    other = command_bus.dispatch(OpenAccount(owner="other")).value
    deposit = Deposit(account_id=account, amount=Decimal("1.00"))
    with Holding(lambda: command_bus.dispatch(deposit)):  # appends, then stays open
        before = store.last_point()
        started = time.monotonic()
        later = command_bus.dispatch(Deposit(account_id=other, amount=Decimal("2.00")))
        assert time.monotonic() - started < 1  # no table lock: it did not wait for the holder
        assert later.position is not None

        # Committed, but behind the open transaction: not readable yet, and said so.
        assert store.last_point() == before
        assert later.position not in [row.position for row in store.read_rows(limit=100)]
        assert store.held_back(store.horizon()) == 1
        status = horizon_status()
        assert status.held_back_events == 1
        assert status.pid is not None
        time.sleep(0.05)
        with override_settings(
            DJANGO_CQRS={"TRIGGER_ON_COMMIT": False, "HEALTH_MAX_LAG_SECONDS": 0}
        ):
            report = health_report()
        assert not report["healthy"]
        assert "held back" in report["horizon"]["problems"][0]
        text = io.StringIO()
        call_command("cqrs_status", stdout=text)
        assert "wait behind a transaction open for" in text.getvalue()

    rows = store.read_rows(after=before, limit=100)
    assert [row.event_type for row in rows] == ["testapp.Deposited", "testapp.Deposited"]
    assert rows[-1].position == later.position  # the holder's event comes first: older xid
    assert horizon_status().held_back_events == 0


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


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_trigger")
def test_a_log_written_before_transaction_ids_is_read_first_and_in_order() -> None:
    executor = MigrationExecutor(connection)
    before = ("django_cqrs", "0008_append_only")
    try:
        executor.migrate([before])
        old = executor.loader.project_state(before).apps.get_model("django_cqrs", "StoredEvent")
        stored = [
            old.objects.create(
                event_type="tests.Old",
                schema_version=1,
                aggregate_type="tests.Old",
                aggregate_id="1",
                aggregate_version=version,
                payload={},
                metadata={},
            ).position
            for version in (1, 2, 3)
        ]
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

        assert set(StoredEvent.objects.values_list("transaction_id", flat=True)) == {0}
        account = command_bus.dispatch(OpenAccount(owner="new")).value
        rows = store.read_rows(limit=100)
        assert [row.position for row in rows[:3]] == stored  # the old log, first, in order
        assert rows[3].aggregate_id == str(account)
        if connection.vendor == "postgresql":
            assert rows[3].transaction_id > 0  # stamped by the column's default
        # A checkpoint from before the upgrade (position only) reads on from there.
        assert [
            row.position for row in store.read_rows(after=store.LogPoint(0, stored[1]), limit=100)
        ][:2] == [stored[2], rows[3].position]
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
