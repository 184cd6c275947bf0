"""Projections that write with plain ORM calls: applied live and rebuilt, they give the
rows a fresh replay of the log gives; a write a rebuild cannot redirect is refused."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections, models, transaction

from django_cqrs import command_bus, store
from django_cqrs.db.shadow import shadow_model, table_exists
from django_cqrs.events import EventEnvelope
from django_cqrs.exceptions import ConcurrencyError, InvariantViolationError, RebuildWriteError
from django_cqrs.models import ProjectionState
from django_cqrs.projections import Projection, handles, register, unregister
from django_cqrs.projections.catchup import catch_up
from django_cqrs.projections.rebuild import rebuild
from tests.testapp.commands import Deposit, OpenAccount, Withdraw
from tests.testapp.events import Deposited, Withdrawn
from tests.testapp.models import (
    Account,
    OrmAccountView,
    OrmDeposit,
    OrmLastWithdrawal,
    OrmMovement,
)
from tests.testapp.orm_projections import (
    OrmAsyncLedgerProjection,
    OrmDepositCounterProjection,
    OrmDepositLogProjection,
    OrmLedgerProjection,
)

pytestmark = pytest.mark.usefixtures("no_trigger")

READ_MODELS = (OrmAccountView, OrmMovement, OrmLastWithdrawal)


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of the ORM read models, as plain dicts in primary-key order."""
    return {m.__name__: list(m.objects.order_by("pk").values()) for m in READ_MODELS}


def fresh_replay(cls: type[Projection]) -> dict[str, list[dict[str, Any]]]:
    """The rows that applying the whole log, live, to empty read models gives.

    Runs in a transaction that is rolled back: the tables are as they were afterwards.
    """
    with transaction.atomic():
        for model in reversed(cls.read_models):
            model.objects.all().delete()
        projection = cls()
        for rows in store.iter_all(event_types=cls.handled_event_types()):
            for row in rows:
                projection.apply(*store.decode_row(row))
        rows = snapshot()
        transaction.set_rollback(True)
    return rows


@pytest.fixture
def registered(request: pytest.FixtureRequest) -> Iterator[type[Projection]]:
    """Register ``request.param`` (an ORM projection class) for the length of the test."""
    cls: type[Projection] = request.param
    register(cls)
    yield cls
    unregister(cls)


def build_live(cls: type[Projection]) -> None:
    """Apply what the commands recorded: sync projections already are; async catch up."""
    if cls.mode == "async":
        catch_up(cls.name, batch_size=25)


def dispatch_history(commands: int, *, accounts: int = 8, seed: int = 11) -> list[int]:
    """Open accounts, deposit and withdraw at random; empty and refill a few accounts."""
    rng = random.Random(seed)
    ids = [command_bus.dispatch(OpenAccount(owner=f"orm {i}")).value for i in range(accounts)]
    for n in range(commands):
        account_id = rng.choice(ids)
        amount = Decimal(rng.randint(1, 4000)) / 100
        try:
            if n % 40 == 39:  # withdraw everything: the account's row is deleted
                balance = command_bus.dispatch(Deposit(account_id=account_id, amount=amount)).value
                command_bus.dispatch(Withdraw(account_id=account_id, amount=balance))
            elif rng.random() < 0.6:
                command_bus.dispatch(Deposit(account_id=account_id, amount=amount))
            else:
                command_bus.dispatch(Withdraw(account_id=account_id, amount=amount))
        except InvariantViolationError:
            pass  # overdrawn: no event
    return ids


def check_history(rows: dict[str, list[dict[str, Any]]]) -> None:
    """The history used every ORM style the projection has."""
    kinds = {row["kind"] for row in rows["OrmMovement"]}
    assert {"opened", "deposit"} <= kinds
    assert any(row["owner"] == "reopened" for row in rows["OrmAccountView"])
    assert any(row["withdrawals"] for row in rows["OrmAccountView"])
    assert rows["OrmLastWithdrawal"]


def _name(cls: type[Projection]) -> str:
    return cls.__name__


BOTH_MODES = pytest.mark.parametrize(
    "registered", [OrmLedgerProjection, OrmAsyncLedgerProjection], indirect=True, ids=_name
)


@pytest.mark.django_db
@BOTH_MODES
def test_an_orm_projection_rebuilt_after_its_rows_were_deleted_has_them_back(
    registered: type[Projection],
) -> None:
    dispatch_history(160)
    build_live(registered)
    live = snapshot()
    check_history(live)
    assert live == fresh_replay(registered)
    OrmAccountView.objects.all().delete()  # the movements too, by cascade
    OrmLastWithdrawal.objects.all().delete()
    out = StringIO()

    call_command("cqrs_rebuild", registered.name, "--no-progress", "--batch-size", "9", stdout=out)

    assert f"Rebuilt {registered.name}: " in out.getvalue()
    assert snapshot() == live


@pytest.mark.django_db
@BOTH_MODES
def test_an_orm_projection_rebuilt_with_its_rows_present_keeps_them_and_readers_see_them(
    registered: type[Projection],
) -> None:
    dispatch_history(160)
    build_live(registered)
    live = snapshot()
    seen_during_fill: list[dict[str, list[dict[str, Any]]]] = []

    applied = rebuild(
        registered, batch_size=13, progress=lambda done, total: seen_during_fill.append(snapshot())
    )

    assert applied == len(store.read_rows(after=0, limit=10_000))  # it handles every type
    assert snapshot() == live == fresh_replay(registered)
    assert len(seen_during_fill) > 10
    assert all(rows == live for rows in seen_during_fill)
    state = ProjectionState.objects.get(name=registered.name)
    assert state.position == store.head()
    assert state.rebuild_position is None


@pytest.mark.django_db
@pytest.mark.parametrize("registered", [OrmDepositCounterProjection], indirect=True, ids=_name)
def test_counters_updated_with_f_expressions_are_not_doubled_by_a_rebuild(
    registered: type[Projection],
) -> None:
    dispatch_history(120)
    counted = list(OrmAccountView.objects.order_by("pk").values())
    assert sum(row["deposits"] for row in counted) > 50
    seen_during_fill: list[list[dict[str, Any]]] = []

    rebuild(
        registered,
        batch_size=10,
        progress=lambda done, total: seen_during_fill.append(
            list(OrmAccountView.objects.order_by("pk").values())
        ),
    )

    assert list(OrmAccountView.objects.order_by("pk").values()) == counted
    assert len(seen_during_fill) > 5
    assert all(rows == counted for rows in seen_during_fill)


@pytest.mark.django_db
@BOTH_MODES
def test_an_orm_projection_keeps_working_live_after_a_rebuild(
    registered: type[Projection],
) -> None:
    dispatch_history(80)
    build_live(registered)
    rebuild(registered, batch_size=20)

    # Close an account (its row and movements are deleted by the ORM's cascade), open
    # another one, move money: live again, in the same process as the rebuild.
    closed = OrmAccountView.objects.filter(balance__gt=0, movements__kind="deposit").first()
    assert closed is not None
    command_bus.dispatch(Withdraw(account_id=closed.pk, amount=closed.balance))
    new = command_bus.dispatch(OpenAccount(owner="after the rebuild")).value
    command_bus.dispatch(Deposit(account_id=new, amount=Decimal("12.50")))
    command_bus.dispatch(Withdraw(account_id=new, amount=Decimal("2.50")))
    build_live(registered)

    assert not OrmAccountView.objects.filter(pk=closed.pk).exists()
    assert not OrmMovement.objects.filter(account_id=closed.pk).exists()
    assert OrmAccountView.objects.get(pk=new).balance == Decimal("10.00")
    assert snapshot() == fresh_replay(registered)


@pytest.mark.django_db
def test_a_new_projection_with_auto_increment_keys_is_built_by_a_rebuild_and_goes_on_live() -> None:
    ids = dispatch_history(50)
    deposits = [
        (int(row.aggregate_id), Decimal(row.payload["amount"]), row.position)
        for row in store.read_rows(after=0, limit=10_000, event_types=[Deposited.event_type])
    ]
    # Added to a site that has been running: its table is new, a rebuild fills it.
    register(OrmDepositLogProjection)
    try:
        rebuild(OrmDepositLogProjection, batch_size=7)
        fields = ("account_id", "amount", "position")
        assert list(OrmDeposit.objects.order_by("position").values_list(*fields)) == deposits

        # The next row gets a key after the rebuilt ones (on PostgreSQL the live table's
        # sequence must know them), and the command succeeds.
        command_bus.dispatch(Deposit(account_id=ids[1], amount=Decimal("3.00")))
    finally:
        unregister(OrmDepositLogProjection)
    newest = OrmDeposit.objects.order_by("position").last()
    assert newest is not None
    assert newest.amount == Decimal("3.00")
    assert newest.pk == len(deposits) + 1


# -- refused writes -----------------------------------------------------------------


class UndeclaredWrites(Projection):
    """Declares OrmLastWithdrawal only, and writes OrmAccountView as well (``style``)."""

    abstract = True
    read_models = [OrmLastWithdrawal]
    style = "orm"

    @handles(Withdrawn)
    def withdrawn(self, event: Withdrawn, envelope: EventEnvelope) -> None:
        OrmLastWithdrawal.objects.update_or_create(
            account_id=event.account_id,
            defaults={"amount": event.amount, "position": envelope.position},
        )
        if self.style == "orm":
            OrmAccountView.objects.filter(pk=event.account_id).update(
                withdrawals=models.F("withdrawals") + 1
            )
        elif self.style == "caught":
            # A handler that hides the refusal does not hide it from the rebuild.
            with contextlib.suppress(Exception):
                OrmAccountView.objects.filter(pk=event.account_id).update(withdrawals=0)
        else:
            self.put(OrmAccountView(account_id=event.account_id, owner="put"))


@pytest.mark.django_db
@pytest.mark.parametrize("registered", [OrmLedgerProjection], indirect=True, ids=_name)
@pytest.mark.parametrize("style", ["orm", "caught", "put"])
def test_a_write_to_a_table_the_projection_does_not_declare_is_refused_and_nothing_changes(
    registered: type[Projection], style: str
) -> None:
    dispatch_history(60)
    live = snapshot()
    assert live["OrmLastWithdrawal"]
    # Registered after the commands: only the rebuild runs it.
    cls = type(
        "UndeclaredWrites", (UndeclaredWrites,), {"style": style, "name": "tests.Undeclared"}
    )
    try:
        with pytest.raises(CommandError) as excinfo:
            call_command("cqrs_rebuild", cls.name, "--no-progress", stdout=StringIO())
    finally:
        unregister(cls)

    refusal = excinfo.value.__cause__
    assert isinstance(refusal, RebuildWriteError)
    message = str(excinfo.value)
    assert message.startswith("Rebuild of tests.Undeclared refused a write to table ")
    assert refusal.table == OrmAccountView._meta.db_table
    assert repr(OrmAccountView._meta.db_table) in message
    assert "Declare its model in the projection's read_models" in message
    assert "self.put()" in message
    assert "the live tables are untouched" in message
    if style != "caught":
        first = store.read_rows(after=0, limit=10_000, event_types=[Withdrawn.event_type])[0]
        assert refusal.handler == "UndeclaredWrites.withdrawn"
        assert (
            f"by UndeclaredWrites.withdrawn (testapp.Withdrawn at position {first.position})"
            in message
        )
    # Nothing changed: not the table refused, not the declared one; the shadow is gone and
    # the projection is not left "rebuilding".
    assert snapshot() == live
    assert not table_exists(shadow_model(OrmLastWithdrawal, "default"), "default")
    state = ProjectionState.objects.get(name=cls.name)
    assert state.rebuild_position is None
    assert state.rebuild_started_at is None


# -- concurrency --------------------------------------------------------------------


def run_writer(ids: list[int], stop: threading.Event, log: list[float], errors: list[Any]) -> None:
    rng = random.Random(threading.current_thread().name)
    try:
        while not stop.is_set():
            log.append(time.monotonic())
            amount = Decimal(rng.randint(1, 900)) / 100
            try:
                if rng.random() < 0.7:
                    command_bus.dispatch(Deposit(account_id=rng.choice(ids), amount=amount))
                else:
                    command_bus.dispatch(Withdraw(account_id=rng.choice(ids), amount=amount))
            except (InvariantViolationError, ConcurrencyError):
                pass  # overdrawn, or the other writer saved the account first
    except BaseException as exc:
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("registered", [OrmLedgerProjection], indirect=True, ids=_name)
def test_an_orm_projection_rebuilt_while_commands_commit_matches_a_fresh_replay(
    registered: type[Projection],
) -> None:
    ids = dispatch_history(200, accounts=10)
    stop = threading.Event()
    starts: dict[str, list[float]] = {"writer-a": [], "writer-b": []}
    errors: list[Any] = []
    writers = [
        threading.Thread(target=run_writer, args=(ids, stop, log, errors), name=name)
        for name, log in starts.items()
    ]
    for writer in writers:
        writer.start()

    def wait_for_commands(at_least: int) -> None:
        deadline = time.monotonic() + 30
        while any(len(log) < at_least for log in starts.values()):
            assert not errors, errors
            assert time.monotonic() < deadline, "the writers stalled"
            time.sleep(0.005)

    wait_for_commands(10)
    window: list[float] = []

    def progress(done: int, total: int) -> None:
        window.append(time.monotonic())
        time.sleep(0.003)  # long enough for the writers to commit mid-rebuild

    rebuild(registered, batch_size=10, progress=progress)
    wait_for_commands(max(len(log) for log in starts.values()) + 10)
    stop.set()
    for writer in writers:
        writer.join(timeout=60)
    assert not errors, errors

    during = [t for log in starts.values() for t in log if window[0] < t < window[-1]]
    assert len(during) > 5, "no command was dispatched during the rebuild"
    rebuilt = snapshot()
    assert rebuilt == fresh_replay(registered)
    # Accounts emptied are deleted from the read model; the others carry the balance.
    balances = dict(OrmAccountView.objects.values_list("pk", "balance"))
    assert balances == dict(Account.objects.filter(balance__gt=0).values_list("pk", "balance"))
