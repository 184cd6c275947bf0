"""Rebuilding read models from the log gives the rows that live updates built."""

from __future__ import annotations

import random
import threading
import time
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from django_cqrs import command_bus
from django_cqrs.events import EventEnvelope
from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.models import ProjectionState, StoredEvent
from django_cqrs.projections import Projection, handles, unregister
from django_cqrs.projections.rebuild import rebuild
from django_cqrs.sagas.base import all_sagas
from django_cqrs.serialization import to_json_dict
from tests.testapp.commands import Deposit, OpenAccount, Withdraw
from tests.testapp.events import AccountOpened, Deposited, Withdrawn
from tests.testapp.models import Account, AccountLedger, AccountView

#: Sagas: `migrate` started them at the head (their state rows exist in every test).
SAGAS = [part.name for cls in all_sagas() for part in cls.partition_classes]

VIEW = "testapp.AccountViewProjection"
LEDGER = "testapp.AccountLedgerProjection"


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of the test read models, as plain dicts in primary-key order."""
    return {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (AccountView, AccountLedger)
    }


def dispatch_varied_commands(count: int, *, accounts: int = 12, seed: int = 7) -> list[int]:
    """Open accounts, then deposit and withdraw at random; some withdrawals are refused."""
    rng = random.Random(seed)
    ids = [command_bus.dispatch(OpenAccount(owner=f"owner {i}")).value for i in range(accounts)]
    for _ in range(count):
        account_id = rng.choice(ids)
        amount = Decimal(rng.randint(1, 5000)) / 100
        try:
            if rng.random() < 0.6:
                command_bus.dispatch(Deposit(account_id=account_id, amount=amount))
            else:
                command_bus.dispatch(Withdraw(account_id=account_id, amount=amount))
        except InvariantViolationError:
            pass
    return ids


def events_of(*types: type) -> int:
    return StoredEvent.objects.filter(event_type__in=[t.event_type for t in types]).count()


@pytest.fixture
def history() -> dict[str, list[dict[str, Any]]]:
    """A few hundred commands applied live; returns the rows they built."""
    dispatch_varied_commands(300)
    rows = snapshot()
    assert len(rows["AccountView"]) == 12
    assert len(rows["AccountLedger"]) > 100
    assert StoredEvent.objects.filter(event_type=Withdrawn.event_type).exists()
    return rows


@pytest.mark.django_db
def test_rebuild_reproduces_the_rows_built_live(
    history: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    AccountView.objects.update(balance="garbage", movements=-1)
    AccountLedger.objects.filter(pk__in=AccountLedger.objects.values("pk")[:5]).delete()
    out = StringIO()

    call_command("cqrs_rebuild", VIEW, stdout=out)

    assert snapshot()["AccountView"] == history["AccountView"]
    applied = events_of(AccountOpened, Deposited, Withdrawn)
    assert f"Rebuilt {VIEW}: {applied} events applied." in out.getvalue()
    bar = capsys.readouterr().err
    assert VIEW in bar
    assert "100%" in bar


@pytest.mark.django_db
def test_rebuild_all_reproduces_every_read_model(
    history: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    AccountView.objects.all().delete()
    AccountLedger.objects.all().delete()
    out = StringIO()

    call_command("cqrs_rebuild", "--all", "--no-progress", stdout=out)

    assert snapshot() == history
    ledger_events = events_of(Deposited, Withdrawn)
    assert f"Rebuilt {LEDGER}: {ledger_events} events applied." in out.getvalue()
    assert f"Rebuilt {VIEW}: " in out.getvalue()
    assert capsys.readouterr().err == ""
    head = StoredEvent.objects.order_by("-position").first().position
    states = dict(ProjectionState.objects.values_list("name", "position"))
    assert states[VIEW] == states[LEDGER] == head


@pytest.mark.django_db
def test_rebuild_in_batches_smaller_than_the_log_gives_the_same_rows(
    history: dict[str, list[dict[str, Any]]],
) -> None:
    AccountLedger.objects.all().delete()
    reported: list[tuple[int, int]] = []

    applied = rebuild(
        LEDGER, batch_size=7, progress=lambda done, total: reported.append((done, total))
    )

    assert snapshot() == history
    assert applied == events_of(Deposited, Withdrawn) > 7 * 10
    head = StoredEvent.objects.order_by("-position").first().position
    done = [d for d, _ in reported]
    assert done == sorted(done)
    assert len(reported) >= applied // 7
    assert reported[-1] == (head, head)

    call_command(
        "cqrs_rebuild", VIEW, LEDGER, "--batch-size", "7", "--no-progress", stdout=StringIO()
    )
    assert snapshot() == history


@pytest.mark.django_db
def test_rebuild_of_an_unknown_projection_lists_the_known_ones_and_changes_nothing(
    history: dict[str, list[dict[str, Any]]],
) -> None:
    AccountView.objects.update(movements=-1)
    before = snapshot()

    with pytest.raises(CommandError, match=r"No projection is named 'testapp\.Nope'") as excinfo:
        call_command("cqrs_rebuild", VIEW, "testapp.Nope", stdout=StringIO())

    assert VIEW in str(excinfo.value)
    assert LEDGER in str(excinfo.value)
    # The known name given first was not rebuilt either.
    assert snapshot() == before
    assert not ProjectionState.objects.exclude(name__in=SAGAS).exists()  # sagas: migrate


@pytest.mark.django_db
@pytest.mark.parametrize("args", [(VIEW, "--all"), ()])
def test_rebuild_needs_either_names_or_all(args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError, match="--all"):
        call_command("cqrs_rebuild", *args, stdout=StringIO())
    assert not ProjectionState.objects.exclude(name__in=SAGAS).exists()  # sagas: migrate


@pytest.fixture
def flag_recorder() -> Iterator[type[Projection]]:
    """A sync projection that records ``envelope.replaying`` for each deposit it sees."""

    class ReplayFlagProjection(Projection):
        name = "tests.ReplayFlagProjection"
        flags: list[bool] = []

        @handles(Deposited)
        def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
            self.flags.append(envelope.replaying)

    yield ReplayFlagProjection
    unregister(ReplayFlagProjection)


@pytest.mark.django_db
def test_handlers_know_whether_they_replay(flag_recorder: type[Any]) -> None:
    account_id = command_bus.dispatch(OpenAccount(owner="flags")).value
    for amount in ("1.00", "2.00"):
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal(amount)))
    assert flag_recorder.flags == [False, False]
    view_before = snapshot()

    call_command("cqrs_rebuild", flag_recorder.name, "--no-progress", stdout=StringIO())

    assert flag_recorder.flags == [False, False, True, True]
    # Only the named projection ran: the other receivers did not see the events again.
    assert snapshot() == view_before


def run_writer(
    account_ids: list[int], stop: threading.Event, log: list[float], errors: list[BaseException]
) -> None:
    """Deposit on random accounts until ``stop`` is set, logging each command's start."""
    rng = random.Random(threading.current_thread().name)
    try:
        while not stop.is_set():
            log.append(time.monotonic())
            amount = Decimal(rng.randint(1, 900)) / 100
            command_bus.dispatch(Deposit(account_id=rng.choice(account_ids), amount=amount))
    except BaseException as exc:
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
# No inline async catch-ups after each command: once the suite has imported the async
# projections they would make the 600 set-up commands and the writers ten times slower,
# and they are not what this test is about (the sync projections' rebuild is).
@pytest.mark.usefixtures("no_trigger")
def test_commands_committed_during_a_rebuild_are_not_lost() -> None:
    account_ids = dispatch_varied_commands(600, accounts=20)
    stop = threading.Event()
    starts: dict[str, list[float]] = {"writer-a": [], "writer-b": []}
    errors: list[BaseException] = []
    writers = [
        threading.Thread(target=run_writer, args=(account_ids, stop, log, errors), name=name)
        for name, log in starts.items()
    ]
    for writer in writers:
        writer.start()

    def wait_for_commands(at_least: list[int]) -> None:
        deadline = time.monotonic() + 30
        while any(len(log) < n for log, n in zip(starts.values(), at_least, strict=True)):
            assert not errors, errors
            assert time.monotonic() < deadline, "the writers stalled"
            time.sleep(0.005)

    wait_for_commands([20, 20])
    windows: dict[str, list[float]] = {VIEW: [], LEDGER: []}
    for name, window in windows.items():

        def progress(done: int, total: int, window: list[float] = window) -> None:
            window.append(time.monotonic())
            time.sleep(0.002)  # long enough for the writers to arrive mid-rebuild

        rebuild(name, batch_size=10, progress=progress)
    wait_for_commands([len(log) + 20 for log in starts.values()])
    stop.set()
    for writer in writers:
        writer.join(timeout=60)
    assert not errors, errors

    for name, window in windows.items():
        during = [t for log in starts.values() for t in log if window[0] < t < window[-1]]
        assert during, f"no command was dispatched while {name} was rebuilt"
    live = snapshot()
    balances = dict(Account.objects.values_list("pk", "balance"))
    assert {row["account_id"]: Decimal(row["balance"]) for row in live["AccountView"]} == balances
    assert len(live["AccountLedger"]) == events_of(Deposited, Withdrawn)
    rebuild(VIEW)
    rebuild(LEDGER)
    assert snapshot() == live


def bulk_history(accounts: int, deposits_each: int) -> int:
    """Store an account history straight into the log, bypassing commands (fast)."""
    rows = []
    for account_id in range(1, accounts + 1):
        events: list[Any] = [AccountOpened(account_id=account_id, owner=f"bulk {account_id}")]
        events += [
            Deposited(account_id=account_id, amount=Decimal("1.00"), balance=Decimal(n))
            for n in range(1, deposits_each + 1)
        ]
        rows += [
            StoredEvent(
                event_type=event.event_type,
                aggregate_type="testapp.Account",
                aggregate_id=str(account_id),
                aggregate_version=version,
                payload=to_json_dict(event),
                metadata={"command_type": "bulk"},
            )
            for version, event in enumerate(events, start=1)
        ]
    StoredEvent.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


@pytest.mark.django_db
def test_rebuild_memory_stays_bounded_by_the_batch_size() -> None:
    total = bulk_history(accounts=100, deposits_each=199)
    assert total == 20_000

    tracemalloc.start()
    try:
        applied = rebuild(LEDGER, batch_size=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert applied == 19_900
    assert AccountLedger.objects.count() == 19_900
    # About 3 MiB in batches of 1,000; reading all 20,000 events at once peaks above 30 MiB.
    assert peak < 10 * 2**20, f"rebuild peaked at {peak / 2**20:.1f} MiB"
    # Rows a projection updates carry over from one batch to the next.
    assert rebuild(VIEW, batch_size=1000) == 20_000
    assert AccountView.objects.filter(balance="199.00", movements=199).count() == 100
