"""Async projections: checkpointed catch-up, exactly once in effect, failures, rebuild while live.

The projections under test live in ``tests.testapp.async_projections``: AccountTotals
counts every event it applies, so an event applied twice (or skipped) shows as a row that
differs from a fresh rebuild.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone

from django_cqrs import command_bus, tasks
from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.models import ParkedEvent, ProjectionState, ProjectionTrigger, StoredEvent
from django_cqrs.projections import Projection
from django_cqrs.projections.catchup import catch_up, run_catch_up
from django_cqrs.projections.checkpoints import ensure_state, lock_state
from django_cqrs.projections.rebuild import rebuild
from django_cqrs.serialization import to_json_dict
from tests.helpers import Holding
from tests.testapp import async_projections
from tests.testapp.async_projections import (
    AccountMovementCountProjection,
    AccountTotalsProjection,
)
from tests.testapp.commands import Deposit, OpenAccount, Withdraw
from tests.testapp.events import AccountOpened, Deposited, Withdrawn
from tests.testapp.models import Account, AccountMovementCount, AccountTotals

TOTALS = AccountTotalsProjection.name
MOVEMENTS = AccountMovementCountProjection.name
_account_ids = itertools.count(1_000_000)


# -- helpers ----------------------------------------------------------------------------


def rows(model: type[Any] = AccountTotals) -> list[dict[str, Any]]:
    return list(model.objects.order_by("pk").values())


def assert_matches_rebuild(cls: type[Projection]) -> list[dict[str, Any]]:
    """The live rows equal, row for row, what a fresh rebuild from the log produces."""
    model = cls.read_models[0]
    live = rows(model)
    rebuild(cls, restart=True)
    assert rows(model) == live
    return live


def state(name: str) -> ProjectionState:
    return ProjectionState.objects.get(name=name)


def head() -> int:
    last = StoredEvent.objects.order_by("-position").values_list("position", flat=True).first()
    return last or 0


def status_of(name: str) -> dict[str, Any]:
    out = StringIO()
    call_command("cqrs_status", "--json", stdout=out)
    return {row["name"]: row for row in json.loads(out.getvalue())}[name]


def bulk_events(count: int, *, accounts: int = 20, seed: int = 1) -> list[int]:
    """Append ``count`` account events straight to the log (fast); return the account ids."""
    rng = random.Random(seed)
    ids = [next(_account_ids) for _ in range(accounts)]
    version = dict.fromkeys(ids, 0)
    balance = dict.fromkeys(ids, Decimal("0"))
    now = timezone.now()
    batch: list[StoredEvent] = []

    def add(account_id: int, event: Any) -> None:
        version[account_id] += 1
        batch.append(
            StoredEvent(
                event_type=event.event_type,
                aggregate_type="testapp.Account",
                aggregate_id=str(account_id),
                aggregate_version=version[account_id],
                payload=to_json_dict(event),
                metadata={},
                recorded_at=now,
            )
        )

    for account_id in ids:
        add(account_id, AccountOpened(account_id=account_id, owner=f"bulk {account_id}"))
    for _ in range(max(count - accounts, 0)):
        account_id = rng.choice(ids)
        amount = Decimal(rng.randint(1, 900))
        if rng.random() < 0.7:
            balance[account_id] += amount
            add(
                account_id,
                Deposited(account_id=account_id, amount=amount, balance=balance[account_id]),
            )
        else:
            balance[account_id] -= amount
            add(
                account_id,
                Withdrawn(account_id=account_id, amount=amount, balance=balance[account_id]),
            )
    StoredEvent.objects.bulk_create(batch, batch_size=2000)
    return ids


def open_and_deposit(*amounts: str) -> tuple[int, list[int]]:
    """Open an account and deposit ``amounts``; return its id and the deposits' positions."""
    account_id = command_bus.dispatch(OpenAccount(owner="alice")).value
    positions = [
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal(a))).position
        for a in amounts
    ]
    return account_id, positions


def in_thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture(autouse=True)
def _clean_module_state() -> Iterator[None]:
    async_projections.POISON.clear()
    async_projections.SEEN = None
    yield
    async_projections.POISON.clear()
    async_projections.SEEN = None


@pytest.fixture
def no_backoff(settings: Any) -> None:
    settings.DJANGO_CQRS = {"RETRY_BACKOFF": 0}


# -- 1. catch-up ------------------------------------------------------------------------


@pytest.mark.django_db
def test_catch_up_applies_events_after_the_checkpoint_in_batches() -> None:
    bulk_events(250, accounts=10)
    last = head()
    batches: list[int] = []
    from django_cqrs.projections import catchup as runner

    real = runner.run_batch

    def counting(*args: Any, **kwargs: Any) -> Any:
        outcome = real(*args, **kwargs)
        batches.append(outcome.position)
        return outcome

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "run_batch", counting)
        read = catch_up(TOTALS, batch_size=40)
    assert read == 250
    assert len(batches) >= 250 // 40  # several batches, the checkpoint moving each time
    assert batches == sorted(batches)
    assert state(TOTALS).position == last
    assert sum(r["deposits"] + r["withdrawals"] for r in rows()) == 240
    assert len(rows()) == 10

    # A second catch-up finds nothing to read.
    assert catch_up(TOTALS, batch_size=40) == 0
    assert state(TOTALS).position == last

    # New events only: the checkpoint moves from where it was.
    account_id, _ = open_and_deposit("5", "7")
    assert catch_up(TOTALS, batch_size=40) == 3
    assert state(TOTALS).position == head()
    totals = AccountTotals.objects.get(pk=account_id)
    assert (totals.owner, totals.deposits, totals.deposited) == ("alice", 2, Decimal("12"))
    assert status_of(TOTALS)["lag_events"] == 0
    assert_matches_rebuild(AccountTotalsProjection)


@pytest.mark.django_db
def test_checkpoint_passes_events_the_projection_does_not_handle() -> None:
    bulk_events(60, accounts=5)
    catch_up(MOVEMENTS, batch_size=7)
    # The log ends with events MOVEMENTS does not handle (account openings).
    ids = [command_bus.dispatch(OpenAccount(owner=f"o{i}")).value for i in range(3)]
    assert StoredEvent.objects.order_by("-position").first().event_type == AccountOpened.event_type
    before = status_of(MOVEMENTS)
    assert before["lag_events"] == 3
    assert catch_up(MOVEMENTS, batch_size=7) == 0
    after = status_of(MOVEMENTS)
    assert (after["position"], after["head"], after["lag_events"]) == (head(), head(), 0)
    assert not AccountMovementCount.objects.filter(pk__in=ids).exists()
    assert_matches_rebuild(AccountMovementCountProjection)


@pytest.mark.django_db
def test_cqrs_catchup_command_catches_up_and_rejects_bad_names() -> None:
    bulk_events(30, accounts=3)
    out = StringIO()
    call_command("cqrs_catchup", "--all", stdout=out)
    assert f"{TOTALS}: 30 events read." in out.getvalue()
    assert status_of(TOTALS)["lag_events"] == 0
    with pytest.raises(CommandError):
        call_command("cqrs_catchup", "testapp.NoSuchProjection")
    with pytest.raises(CommandError):
        call_command("cqrs_catchup", "testapp.AccountViewProjection")
    with pytest.raises(CommandError):
        call_command("cqrs_catchup")


# -- 2. exactly once in effect ----------------------------------------------------------


def deposit_commands(count: int, seed: int) -> None:
    rng = random.Random(seed)
    ids = [command_bus.dispatch(OpenAccount(owner=f"w{seed}-{i}")).value for i in range(3)]
    for _ in range(count):
        account_id = rng.choice(ids)
        amount = Decimal(rng.randint(1, 500))
        try:
            if rng.random() < 0.7:
                command_bus.dispatch(Deposit(account_id=account_id, amount=amount))
            else:
                command_bus.dispatch(Withdraw(account_id=account_id, amount=amount))
        except InvariantViolationError:
            pass


def assert_every_event_counted_once() -> None:
    deposits = StoredEvent.objects.filter(event_type=Deposited.event_type).count()
    withdrawals = StoredEvent.objects.filter(event_type=Withdrawn.event_type).count()
    assert sum(r["deposits"] for r in rows()) == deposits
    assert sum(r["withdrawals"] for r in rows()) == withdrawals


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_catch_ups_apply_each_event_once(workers: int, no_trigger: None) -> None:
    bulk_events(3000, accounts=30, seed=workers)
    writers_done = threading.Event()
    errors: list[BaseException] = []
    start = threading.Barrier(workers + 1)
    reads: list[int] = []

    def worker(index: int) -> Callable[[], None]:
        def run() -> None:
            start.wait()
            while True:
                finished = writers_done.is_set()
                # Half the workers run the django-q2 task (the same task delivered twice).
                if index % 2:
                    reads.append(tasks.catch_up_task(TOTALS))
                else:
                    reads.append(catch_up(TOTALS, batch_size=97))
                if finished:
                    return

        return run

    def writer() -> None:
        start.wait()
        try:
            deposit_commands(60, seed=workers)
        finally:
            writers_done.set()

    threads = [in_thread(worker(i), errors) for i in range(workers)]
    threads.append(in_thread(writer, errors))
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    catch_up(TOTALS)
    assert state(TOTALS).position == head()
    # Every event was read by exactly one worker.
    handled = StoredEvent.objects.filter(
        event_type__in=AccountTotalsProjection.handled_event_types()
    ).count()
    assert sum(reads) == handled
    assert_every_event_counted_once()
    assert_matches_rebuild(AccountTotalsProjection)


# -- 3. out-of-order commits ------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_writers_committing_out_of_order_never_make_the_projection_skip(
    no_trigger: None,
) -> None:
    ids = [command_bus.dispatch(OpenAccount(owner=f"o{i}")).value for i in range(6)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int, slow: bool) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(seed)
            account_id = ids[seed - 1]  # one account per writer: the log is what they share
            for _ in range(25):
                with transaction.atomic():
                    command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal(seed)))
                    # Long transactions hold their events uncommitted for a while.
                    time.sleep(rng.uniform(0.01, 0.04) if slow else 0)

        return run

    def tail() -> None:
        while not stop.is_set():
            catch_up(TOTALS, batch_size=5)

    reader = in_thread(tail, errors)
    writers = [in_thread(writer(seed, slow=seed % 2 == 0), errors) for seed in range(1, 7)]
    for thread in writers:
        thread.join(120)
    stop.set()
    reader.join(60)
    assert not errors, errors
    catch_up(TOTALS)
    assert StoredEvent.objects.filter(event_type=Deposited.event_type).count() == 150
    assert_every_event_counted_once()
    assert_matches_rebuild(AccountTotalsProjection)


# -- 4. failures ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_poison_event_retries_then_parks_and_stops_the_projection(no_backoff: None) -> None:
    async_projections.POISON.add(Decimal("13"))
    account_id, (_ok, poison, _later) = open_and_deposit("10", "13", "20")

    catch_up(TOTALS)

    totals = AccountTotals.objects.get(pk=account_id)
    assert (totals.deposits, totals.deposited) == (1, Decimal("10"))  # before it: applied
    projection = state(TOTALS)
    assert projection.state == ProjectionState.State.STOPPED
    assert projection.position == poison - 1
    parked = ParkedEvent.objects.get(projection=TOTALS)
    assert parked.position == poison
    assert parked.event_type == Deposited.event_type
    assert parked.resolution == ParkedEvent.Resolution.PARKED
    assert parked.attempts == AccountTotalsProjection.max_retries + 1
    assert "ValueError: poisoned deposit of 13" in parked.error
    assert "Traceback" in parked.traceback
    assert "poisoned deposit" in parked.traceback
    # A stopped projection does nothing until an operator acts.
    assert catch_up(TOTALS) == 0
    assert state(TOTALS).position == poison - 1

    # Other projections keep going.
    catch_up(MOVEMENTS)
    assert AccountMovementCount.objects.get(pk=account_id).movements == 3
    assert status_of(MOVEMENTS)["lag_events"] == 0

    status = status_of(TOTALS)
    assert (status["status"], status["parked"]) == ("stopped", 1)
    assert status["lag_events"] == head() - (poison - 1)
    text = StringIO()
    call_command("cqrs_status", stdout=text)
    line = next(x for x in text.getvalue().splitlines() if x.startswith(TOTALS))
    assert line.split()[-1] == "1"

    # Retrying while the cause is still there parks it again.
    with pytest.raises(CommandError, match="failed again"):
        call_command("cqrs_retry", TOTALS, stdout=StringIO())
    assert state(TOTALS).state == ProjectionState.State.STOPPED

    # Fixed: retry resumes from the parked event.
    async_projections.POISON.clear()
    call_command("cqrs_retry", TOTALS, stdout=StringIO())
    totals = AccountTotals.objects.get(pk=account_id)
    assert (totals.deposits, totals.deposited) == (3, Decimal("43"))
    assert state(TOTALS).state == ProjectionState.State.LIVE
    assert state(TOTALS).position == head()
    assert ParkedEvent.objects.get(projection=TOTALS).resolution == "retried"
    assert status_of(TOTALS)["parked"] == 0
    assert_matches_rebuild(AccountTotalsProjection)


@pytest.mark.django_db
def test_on_failure_skip_parks_the_event_and_goes_on(
    no_backoff: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AccountTotalsProjection, "on_failure", "skip")
    async_projections.POISON.add(Decimal("13"))
    account_id, (_, poison, _) = open_and_deposit("10", "13", "20")

    catch_up(TOTALS)

    totals = AccountTotals.objects.get(pk=account_id)
    assert (totals.deposits, totals.deposited) == (2, Decimal("30"))
    assert state(TOTALS).state == ProjectionState.State.LIVE
    assert state(TOTALS).position == head()
    parked = ParkedEvent.objects.get(projection=TOTALS)
    assert (parked.position, parked.resolution) == (poison, "skipped")
    assert "poisoned deposit" in parked.traceback
    # A rebuild skips it too, even with the poison gone.
    async_projections.POISON.clear()
    assert_matches_rebuild(AccountTotalsProjection)


@pytest.mark.django_db
def test_cqrs_skip_passes_over_a_parked_event(no_backoff: None) -> None:
    async_projections.POISON.add(Decimal("13"))
    account_id, (_, poison, _) = open_and_deposit("10", "13", "20")
    catch_up(TOTALS)
    assert state(TOTALS).state == ProjectionState.State.STOPPED

    out = StringIO()
    call_command("cqrs_skip", TOTALS, str(poison), stdout=out)

    assert f"skipped position {poison}" in out.getvalue()
    totals = AccountTotals.objects.get(pk=account_id)
    assert (totals.deposits, totals.deposited) == (2, Decimal("30"))
    assert state(TOTALS).state == ProjectionState.State.LIVE
    assert state(TOTALS).position == head()
    assert ParkedEvent.objects.get(projection=TOTALS).resolution == "skipped"
    assert status_of(TOTALS)["parked"] == 0
    async_projections.POISON.clear()
    assert_matches_rebuild(AccountTotalsProjection)


@pytest.mark.django_db
def test_backoff_holds_the_projection_until_the_next_retry(settings: Any) -> None:
    settings.DJANGO_CQRS = {"RETRY_BACKOFF": 60}
    async_projections.POISON.add(Decimal("13"))
    account_id, (_, poison, _) = open_and_deposit("10", "13", "20")

    catch_up(TOTALS)

    projection = state(TOTALS)
    assert projection.state == ProjectionState.State.LIVE
    assert (projection.failing_position, projection.attempts) == (poison, 1)
    assert projection.position == poison - 1
    assert projection.next_retry_at is not None
    assert projection.next_retry_at > timezone.now() + timezone.timedelta(seconds=50)
    assert "poisoned deposit" in projection.last_error
    assert not ParkedEvent.objects.exists()

    # Fixed, but the backoff is not over: catch-up does nothing yet.
    async_projections.POISON.clear()
    assert catch_up(TOTALS) == 0
    assert state(TOTALS).position == poison - 1
    assert AccountTotals.objects.get(pk=account_id).deposits == 1

    # Once the retry time has come, it goes on.
    ProjectionState.objects.filter(name=TOTALS).update(next_retry_at=timezone.now())
    catch_up(TOTALS)
    assert AccountTotals.objects.get(pk=account_id).deposits == 3
    projection = state(TOTALS)
    assert (projection.position, projection.attempts, projection.next_retry_at) == (head(), 0, None)
    assert projection.failing_position is None
    assert projection.last_error == ""


@pytest.mark.django_db
def test_retry_and_skip_commands_reject_bad_input_and_change_nothing(no_backoff: None) -> None:
    async_projections.POISON.add(Decimal("13"))
    open_and_deposit("10", "13")
    catch_up(TOTALS)

    def snapshot() -> Any:
        return (
            list(ProjectionState.objects.order_by("name").values()),
            list(ParkedEvent.objects.values()),
            rows(),
        )

    before = snapshot()
    bad_calls: list[tuple[str, ...]] = [
        ("cqrs_retry", "testapp.NoSuchProjection"),
        ("cqrs_retry", "testapp.AccountViewProjection"),
        ("cqrs_skip", "testapp.NoSuchProjection", "3"),
        ("cqrs_skip", "testapp.AccountViewProjection", "3"),
        ("cqrs_skip", TOTALS, "0"),
        ("cqrs_skip", TOTALS, "-4"),
        ("cqrs_skip", TOTALS, str(head() + 100)),  # no such event
        ("cqrs_skip", TOTALS, "1"),  # already passed
    ]
    for args in bad_calls:
        with pytest.raises(CommandError):
            call_command(*args, stdout=StringIO())
        assert snapshot() == before, args


# -- 5. replay awareness ----------------------------------------------------------------


@pytest.mark.django_db
def test_handlers_see_replaying_false_live_and_true_in_a_rebuild() -> None:
    open_and_deposit("1", "2")
    async_projections.SEEN = []
    catch_up(TOTALS)
    assert len(async_projections.SEEN) == 3
    assert {replaying for _, replaying in async_projections.SEEN} == {False}

    async_projections.SEEN = []
    rebuild(TOTALS)
    assert len(async_projections.SEEN) == 3
    assert {replaying for _, replaying in async_projections.SEEN} == {True}


# -- 6. triggering ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_command_catches_the_async_projection_up_after_commit() -> None:
    account_id, _ = open_and_deposit("25")
    # Q_CLUSTER sync=True: the queued task ran inline once the command committed.
    totals = AccountTotals.objects.get(pk=account_id)
    assert (totals.owner, totals.deposits, totals.deposited) == ("alice", 1, Decimal("25"))
    assert state(TOTALS).position == head()
    assert status_of(TOTALS)["lag_events"] == 0
    assert AccountMovementCount.objects.get(pk=account_id).movements == 1


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_commands_queues_one_catch_up_per_projection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued: list[str] = []
    monkeypatch.setattr(tasks, "enqueue", queued.append)
    account_id, _ = open_and_deposit(*[str(n) for n in range(1, 21)])
    assert sorted(queued) == sorted([TOTALS, MOVEMENTS])
    assert ProjectionTrigger.objects.get(name=TOTALS).queued_at is not None
    assert not AccountTotals.objects.exists()

    # The task clears the flag and catches up; the next command queues again.
    assert tasks.catch_up_task(TOTALS) == 21
    assert ProjectionTrigger.objects.get(name=TOTALS).queued_at is None
    assert AccountTotals.objects.get(pk=account_id).deposits == 20
    command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("1")))
    assert queued.count(TOTALS) == 2
    assert queued.count(MOVEMENTS) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_commands_queue_one_catch_up_per_projection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued: list[str] = []
    monkeypatch.setattr(tasks, "enqueue", queued.append)
    account_ids = [command_bus.dispatch(OpenAccount(owner=f"o{i}")).value for i in range(4)]
    queued.clear()
    ProjectionTrigger.objects.all().delete()  # no flag rows: the writers race to create them
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def deposit(account_id: int) -> None:
        try:
            start.wait()
            for _ in range(10):
                command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("1")))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deposit, args=(a,)) for a in account_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(queued) == sorted([TOTALS, MOVEMENTS])
    assert StoredEvent.objects.filter(event_type__endswith="Deposited").count() == 40


@pytest.mark.django_db(transaction=True)
def test_a_failing_enqueue_after_commit_does_not_fail_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(name: str) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks, "enqueue", broken)
    result = command_bus.dispatch(OpenAccount(owner="bob"))
    deposit = command_bus.dispatch(Deposit(account_id=result.value, amount=Decimal("3")))
    assert deposit.value == Decimal("3")
    assert StoredEvent.objects.count() == 2
    assert not AccountTotals.objects.exists()

    # Once the broker is back, the next command catches the projection up.
    monkeypatch.undo()
    command_bus.dispatch(Deposit(account_id=result.value, amount=Decimal("4")))
    totals = AccountTotals.objects.get(pk=result.value)
    assert (totals.deposits, totals.deposited) == (2, Decimal("7"))
    assert state(TOTALS).position == head()


# -- 7. rebuild while live --------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_rebuild_while_commands_arrive_ends_consistent_and_never_serves_an_empty_table(
    no_trigger: None,
) -> None:
    bulk_events(6000, accounts=40)
    catch_up(TOTALS)
    live_rows = AccountTotals.objects.count()
    assert live_rows == 40
    stop = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []

    def writer() -> None:
        seed = 0
        while not stop.is_set():
            seed += 1
            deposit_commands(3, seed=seed)

    def live_catch_up() -> None:
        while not stop.is_set():
            catch_up(TOTALS, batch_size=50)

    def poll() -> None:
        while not stop.is_set():
            counts.append(AccountTotals.objects.count())

    threads = [in_thread(f, errors) for f in (writer, live_catch_up, poll)]
    try:
        time.sleep(0.2)
        rebuild(TOTALS, batch_size=300, restart=True)
        time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors, errors
    assert len(counts) > 10
    assert min(counts) >= live_rows
    catch_up(TOTALS)
    assert state(TOTALS).rebuild_position is None
    assert_every_event_counted_once()
    assert_matches_rebuild(AccountTotalsProjection)


@pytest.mark.django_db
def test_an_interrupted_rebuild_resumes_where_it_stopped() -> None:
    bulk_events(1000, accounts=10)
    catch_up(TOTALS)
    expected = rows()
    AccountTotals.objects.update(deposits=-1)  # damaged: the rebuild must repair it
    damaged = rows()

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rebuild(TOTALS, batch_size=100, progress=interrupt)
    reached = state(TOTALS).rebuild_position
    assert reached is not None
    assert 0 < reached < head()
    assert rows() == damaged  # the live table is untouched until the switch
    assert status_of(TOTALS)["rebuilding"] is True

    applied = rebuild(TOTALS, batch_size=100)
    handled_after = StoredEvent.objects.filter(position__gt=reached).count()
    assert applied == handled_after  # resumed, not restarted
    assert rows() == expected
    assert state(TOTALS).rebuild_position is None
    assert state(TOTALS).position == head()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_trigger")
def test_a_catch_up_that_waits_past_the_lock_timeout_leaves_it_to_the_busy_worker() -> None:
    open_and_deposit("1")
    ensure_state(TOTALS)
    with Holding(lambda: lock_state(TOTALS, "default")):  # a busy worker
        try:
            with override_settings(DJANGO_CQRS={"LOCK_TIMEOUT": 0.3, "TRIGGER_ON_COMMIT": False}):
                connections["default"].close()  # a new connection gets the short timeout
                outcome = run_catch_up(TOTALS)
        finally:
            connections["default"].close()

    assert outcome.read == 0  # it gave up the lock wait, and raised nothing
    assert state(TOTALS).position == 0
    assert catch_up(TOTALS) > 0  # the next catch-up finds the row free


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_trigger")
def test_a_catch_up_inside_a_writing_transaction_never_passes_its_later_events() -> None:
    # The reader's own events are visible to it, but it may append more with its own
    # transaction id: a later transaction's event, read now, would put the checkpoint
    # past them.
    mine = command_bus.dispatch(OpenAccount(owner="mine")).value
    other = command_bus.dispatch(OpenAccount(owner="other")).value
    catch_up(TOTALS)
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            command_bus.dispatch(Deposit(account_id=other, amount=Decimal("5")))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    with transaction.atomic():
        command_bus.dispatch(Deposit(account_id=mine, amount=Decimal("1")))
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join(10)
        assert errors == []
        catch_up(TOTALS)  # inside this transaction: sees its own deposit
        assert AccountTotals.objects.get(pk=mine).deposits == 1
        command_bus.dispatch(Deposit(account_id=mine, amount=Decimal("2")))
    catch_up(TOTALS)

    assert AccountTotals.objects.get(pk=mine).deposited == Decimal("3")
    assert AccountTotals.objects.get(pk=other).deposited == Decimal("5")
    assert_matches_rebuild(AccountTotalsProjection)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_trigger")
def test_events_held_back_by_an_open_transaction_ask_for_another_catch_up_soon() -> None:
    # The open transaction records no event for the projection: when it ends, nothing
    # would trigger a catch-up of the deposit that waited behind it.
    account = command_bus.dispatch(OpenAccount(owner="held")).value
    catch_up(TOTALS)
    # An unrelated write: its row lock gives the transaction an id.
    with Holding(lambda: Account.objects.filter(pk=account).select_for_update().get()):
        other = command_bus.dispatch(OpenAccount(owner="later")).value
        outcome = run_catch_up(TOTALS)
        assert outcome.read == 0
        assert outcome.retry_at is not None  # follow_up() schedules it
        assert outcome.retry_at <= timezone.now() + timezone.timedelta(seconds=2)
    assert catch_up(TOTALS) == 1
    assert AccountTotals.objects.filter(pk=other).exists()
    assert run_catch_up(TOTALS).retry_at is None
