"""The test toolkit (django_cqrs.testing): it passes what holds and fails what does not.

The scenarios run against the test domain (tests.testapp: accounts and transfers). Every
check has a test that makes it fail, and the failure's text is read: a diff of the
expected and recorded messages, the tables a refused command wrote to.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from django_cqrs import command_bus
from django_cqrs.events import Event, EventEnvelope
from django_cqrs.exceptions import ConfigurationError, InvariantViolationError
from django_cqrs.models import ProjectionState, SagaDeadline, StoredEvent
from django_cqrs.projections import Projection, handles, unregister
from django_cqrs.testing import (
    ANY,
    CommandScenario,
    FrozenClock,
    ProjectionScenario,
    SagaScenario,
    Snapshot,
    append_events,
    capture_commands,
    capture_events,
    events_of,
    instance_of,
    run_async_projections,
)
from django_cqrs.testing import scenarios as scenarios_module
from django_cqrs.testing.diff import describe, diff
from django_cqrs.testing.runner import async_consumers
from tests.conftest import requires_postgres
from tests.helpers import Holding
from tests.testapp import async_projections
from tests.testapp.commands import (
    ConfirmTransfer,
    Deposit,
    OpenAccount,
    RequestTransfer,
    Withdraw,
)
from tests.testapp.events import AccountOpened, Deposited, TransferRequested, Withdrawn
from tests.testapp.models import (
    Account,
    AccountLedger,
    AccountTotals,
    AccountView,
    Transfer,
    TransferRun,
)
from tests.testapp.projections import AccountViewProjection
from tests.testapp.sagas import CONFIRM_SECONDS, TransferSaga

pytestmark = pytest.mark.django_db

TOTALS = async_projections.AccountTotalsProjection


@pytest.fixture(autouse=True)
def _nothing_left_unexamined() -> Iterator[None]:
    """A test here that leaves an error unexamined on purpose does not fail: it says so."""
    yield
    scenarios_module.take_unexamined()


def accounts(*owners_and_balances: tuple[str, str]) -> CommandScenario:
    """A command scenario given accounts: ``values`` holds their ids, then the balances."""
    scenario = CommandScenario()
    for owner, balance in owners_and_balances:
        scenario.given(OpenAccount(owner=owner))
        if Decimal(balance):
            scenario.given(Deposit(account_id=scenario.value, amount=Decimal(balance)))
    return scenario


# -- command handlers: the events ---------------------------------------------------------


def test_then_events_passes_for_the_events_the_command_recorded_in_order() -> None:
    scenario = CommandScenario().given(OpenAccount(owner="alice"))
    alice = scenario.value

    outcome = scenario.when(Deposit(account_id=alice, amount=Decimal("10")))

    outcome.then_events(Deposited(account_id=alice, amount=Decimal("10"), balance=Decimal("10")))
    assert outcome.value == Decimal("10")
    assert [e.position for e in outcome.envelopes] == list(outcome.result.positions)  # type: ignore[union-attr]
    # ANY and instance_of stand for what the test cannot know.
    outcome.then_events(Deposited(account_id=ANY, amount=instance_of(Decimal), balance=ANY))
    outcome.then_events(ANY)


def test_the_events_are_read_back_from_the_log_not_taken_from_the_aggregate() -> None:
    outcome = CommandScenario().when(OpenAccount(owner="bob"))

    [event] = outcome.events
    assert type(event) is AccountOpened
    [stored] = StoredEvent.objects.filter(position=outcome.envelopes[0].position)
    assert stored.payload == {"account_id": outcome.value, "owner": "bob"}


def test_a_wrong_field_fails_with_a_diff_of_that_field_only() -> None:
    alice = CommandScenario().given(OpenAccount(owner="alice")).value
    outcome = CommandScenario().when(Deposit(account_id=alice, amount=Decimal("10")))

    with pytest.raises(AssertionError) as failure:
        outcome.then_events(Deposited(account_id=ANY, amount=Decimal("10"), balance=Decimal("9")))

    text = str(failure.value)
    assert text.startswith("Deposit recorded other events than expected (expected 1, recorded 1)")
    assert "- expected\n+ recorded\n" in text
    assert "-     balance=Decimal('9')," in text
    assert "+     balance=Decimal('10.00')," in text
    # The field ANY matched shows the recorded value on both sides: not a difference.
    assert f"      account_id={alice}," in text
    assert "ANY" not in text


def test_missing_extra_and_reordered_events_fail_with_the_count_and_the_diff() -> None:
    scenario = accounts(("alice", "0"))
    alice = scenario.value
    outcome = scenario.when(Deposit(account_id=alice, amount=Decimal("5")))
    deposited = Deposited(account_id=alice, amount=Decimal("5"), balance=Decimal("5"))
    withdrawn = Withdrawn(account_id=alice, amount=Decimal("5"), balance=Decimal("0"))

    with pytest.raises(AssertionError, match=r"\(expected 2, recorded 1\)") as extra:
        outcome.then_events(deposited, withdrawn)
    with pytest.raises(AssertionError, match=r"\(expected 0, recorded 1\)") as missing:
        outcome.then_no_events()

    assert "- Withdrawn(" in str(extra.value)
    assert "+ Deposited(" in str(missing.value)


def test_events_of_another_class_with_the_same_fields_do_not_match() -> None:
    alice = CommandScenario().given(OpenAccount(owner="alice")).value
    outcome = CommandScenario().when(Deposit(account_id=alice, amount=Decimal("5")))

    with pytest.raises(AssertionError, match="- Withdrawn") as failure:
        outcome.then_events(Withdrawn(account_id=alice, amount=Decimal("5"), balance=ANY))

    assert "+ Deposited(" in str(failure.value)


def test_then_events_of_a_command_that_raised_fails_with_its_error() -> None:
    outcome = CommandScenario().when(Deposit(account_id=999_999, amount=Decimal("5")))

    with pytest.raises(AssertionError, match="expected the events Deposited, but Deposit raised"):
        outcome.then_events(Deposited(account_id=999_999, amount=ANY, balance=ANY))
    with pytest.raises(AssertionError, match="expected a value, but Deposit raised"):
        _ = outcome.value


# -- command handlers: errors, and nothing written ----------------------------------------


def test_then_error_passes_for_a_refusal_that_wrote_nothing() -> None:
    scenario = accounts(("alice", "10"))
    alice = scenario.values[0]

    outcome = scenario.when(Withdraw(account_id=alice, amount=Decimal("11")))

    outcome.then_error(InvariantViolationError, match="below zero")
    assert isinstance(outcome.error, InvariantViolationError)
    assert outcome.writes == []
    assert Account.objects.get(pk=alice).balance == Decimal("10")


def test_then_error_fails_when_the_command_succeeded_and_shows_its_events() -> None:
    alice = accounts(("alice", "10")).values[0]
    outcome = CommandScenario().when(Withdraw(account_id=alice, amount=Decimal("10")))

    with pytest.raises(AssertionError) as failure:
        outcome.then_error(InvariantViolationError)

    text = str(failure.value)
    assert text.startswith(
        "expected Withdraw to raise InvariantViolationError, but it succeeded and recorded "
        "Withdrawn:"
    )
    assert "    balance=Decimal('0.00')," in text


def test_then_error_fails_for_another_error_or_another_message() -> None:
    outcome = CommandScenario().when(Deposit(account_id=1, amount=Decimal("-1")))

    with pytest.raises(AssertionError, match="but it raised DoesNotExist") as other:
        outcome.then_error(InvariantViolationError)
    with pytest.raises(AssertionError, match="does not match 'positive'"):
        outcome.then_error(Exception, match="positive")

    assert other.value.__cause__ is outcome.error
    outcome.then_error(Exception, match="does not exist")


def test_then_error_fails_when_the_refused_command_wrote_to_the_database(settings: Any) -> None:
    # Without the transaction middleware nothing rolls a failed handler's writes back: the
    # handler saved the deposit, then the second save was refused.
    settings.DJANGO_CQRS = {
        "COMMAND_MIDDLEWARE": ["django_cqrs.middleware.LoggingMiddleware"],
    }
    alice = accounts(("alice", "0")).values[0]

    @dataclass(frozen=True)
    class DepositTwice(OpenAccount):
        pass

    @command_bus.handler(DepositTwice)
    def deposit_twice(command: DepositTwice) -> None:
        account = Account.objects.get(pk=alice)
        account.deposit(Decimal("5"))
        account.save()
        account.deposit(Decimal("-1"))

    try:
        outcome = CommandScenario().when(DepositTwice(owner="alice"))
    finally:
        command_bus.registry.unregister(DepositTwice)

    with pytest.raises(AssertionError) as failure:
        outcome.then_error(InvariantViolationError, match="deposits must be positive")

    text = str(failure.value)
    assert text.startswith(
        "DepositTwice raised InvariantViolationError as expected, but wrote to the database:"
    )
    assert f"  testapp.Account: 1 row changed ({alice})" in text
    assert "  django_cqrs.StoredEvent: 1 row added (" in text
    assert "  testapp.AccountView: 1 row changed" in text  # the sync projection's update
    assert "  testapp.AccountLedger: 1 row added" in text


def test_an_error_no_then_looked_at_is_kept_for_the_plugin_and_then_forgotten() -> None:
    scenarios_module.take_unexamined()
    looked_at = CommandScenario().when(Deposit(account_id=1, amount=Decimal("1")))
    looked_at.then_error(Exception)
    unseen = CommandScenario().when(Deposit(account_id=2, amount=Decimal("1")))
    CommandScenario().when(OpenAccount(owner="fine"))  # no error: nothing to look at

    assert scenarios_module.take_unexamined() == [unseen]
    assert scenarios_module.take_unexamined() == []
    assert scenarios_module.unexamined_text([unseen]).endswith(
        "looked at:\n- Deposit raised DoesNotExist: Account matching query does not exist."
    )


# -- given steps -------------------------------------------------------------------------------


def test_given_steps_are_commands_aggregates_events_and_callables() -> None:
    opened = Account(owner="carol")
    scenario = CommandScenario().given(
        OpenAccount(owner="alice"),
        opened,  # a prepared aggregate, saved
        lambda: "anything",
    )

    alice, saved, anything = scenario.values
    assert Account.objects.get(pk=alice).owner == "alice"
    assert saved is opened
    assert Account.objects.filter(pk=opened.pk).exists()
    assert anything == "anything"


def test_given_events_are_appended_to_their_aggregates_stream_and_sent_nowhere() -> None:
    event = AccountOpened(account_id=41, owner="dave")
    one, zero = Decimal(1), Decimal(0)
    with capture_events() as captured:
        scenario = CommandScenario().given(
            events_of(Account, 41, event, Deposited(account_id=41, amount=one, balance=one)),
            events_of("testapp.Account", 41, Withdrawn(account_id=41, amount=one, balance=zero)),
            AccountOpened(account_id=42, owner="erin"),  # the scenario's own stream
        )

    assert len(captured) == 0  # no receiver ran: no sync projection either
    assert not AccountView.objects.exists()
    stored = StoredEvent.objects.order_by("position")
    assert [(e.aggregate_type, e.aggregate_id, e.aggregate_version) for e in stored] == [
        ("testapp.Account", "41", 1),
        ("testapp.Account", "41", 2),
        ("testapp.Account", "41", 3),
        ("testing.Given", scenario.stream_id, 1),
    ]
    assert {e.metadata["correlation_id"] for e in stored} == {scenario.correlation_id}
    assert [envelope.aggregate_version for envelope in scenario.values[0]] == [1, 2]


def test_what_is_not_a_step_is_refused_and_value_needs_a_step() -> None:
    with pytest.raises(ConfigurationError, match="a scenario step is a command"):
        CommandScenario().given(42)
    with pytest.raises(ConfigurationError, match="no given step has run yet"):
        _ = CommandScenario().value
    with pytest.raises(ConfigurationError, match="events_of"):
        events_of(Account, 1)
    with pytest.raises(ConfigurationError, match="when\\(\\) takes a command"):
        CommandScenario().when(AccountOpened(account_id=1, owner="x"))  # type: ignore[arg-type]


# -- the snapshot ------------------------------------------------------------------------------


def test_the_snapshot_sees_rows_added_removed_and_changed_in_every_table() -> None:
    alice = CommandScenario().given(OpenAccount(owner="alice")).value
    before = Snapshot.take()
    assert Snapshot.take().changes_since(before) == []

    Account.objects.filter(pk=alice).update(owner="changed in place")
    AccountView.objects.all().delete()
    AccountLedger.objects.create(position=77, account_id=alice, amount=1)

    assert sorted(Snapshot.take().changes_since(before)) == [
        f"testapp.Account: 1 row changed ({alice})",
        "testapp.AccountLedger: 1 row added (77)",
        f"testapp.AccountView: 1 row removed ({alice})",
    ]
    assert "auth.Permission" in before.tables  # Django's own tables too
    assert "auth.User_groups" in before.tables  # and the many-to-many ones


def test_a_large_table_is_compared_by_its_count_and_highest_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("django_cqrs.testing.snapshot.ROW_LIMIT", 1)
    for position in (1, 2):
        AccountLedger.objects.create(position=position, account_id=1, amount=1)
    before = Snapshot.take()
    AccountLedger.objects.filter(position=1).update(amount=5)  # not seen: rows are not kept

    assert before.tables["testapp.AccountLedger"].rows is None
    assert Snapshot.take().changes_since(before) == []
    AccountLedger.objects.create(position=3, account_id=1, amount=1)
    assert Snapshot.take().changes_since(before) == [
        "testapp.AccountLedger: 2 -> 3 rows, highest key 2 -> 3"
    ]


# -- projections -------------------------------------------------------------------------------


def test_a_sync_projection_given_events_gives_the_rows_and_the_same_after_a_rebuild() -> None:
    scenario = ProjectionScenario(AccountViewProjection).given(
        events_of(Account, 7, AccountOpened(account_id=7, owner="alice")),
        events_of(Account, 7, Deposited(account_id=7, amount=Decimal(5), balance=Decimal(5))),
        events_of(Account, 8, AccountOpened(account_id=8, owner="bob")),
    )

    scenario.then_rows(
        AccountView,
        [
            {"account_id": 8, "owner": "bob", "balance": "0.00", "movements": 0},
            {"account_id": 7, "owner": "alice", "balance": "5.00", "movements": 1},
        ],
    )
    scenario.then_rows(AccountView, [{"owner": ANY}, {"owner": "alice"}])  # fields named only
    assert ProjectionState.objects.get(name=AccountViewProjection.name).position == (
        StoredEvent.objects.order_by("-position").first().position  # type: ignore[union-attr]
    )  # rebuilt up to the head


def test_only_the_projection_under_test_gets_the_events_given() -> None:
    ProjectionScenario("testapp.AccountLedgerProjection").given(
        Deposited(account_id=7, amount=Decimal(5), balance=Decimal(5)),
    ).then_rows(AccountLedger, [{"account_id": 7, "amount": Decimal("5.00")}])

    assert not AccountView.objects.exists()  # AccountViewProjection did not run


def test_an_async_projection_is_caught_up_after_the_given_commands() -> None:
    scenario = accounts(("alice", "10"))
    alice = scenario.values[0]

    projection = ProjectionScenario(TOTALS).given(Withdraw(account_id=alice, amount=Decimal(3)))

    projection.then_rows(
        AccountTotals,
        [{"account_id": alice, "owner": "alice", "deposits": 1, "withdrawals": 1}],
    )


def test_then_rows_fails_with_a_diff_of_the_rows() -> None:
    scenario = ProjectionScenario(AccountViewProjection).given(
        events_of(Account, 7, AccountOpened(account_id=7, owner="alice")),
        events_of(Account, 8, AccountOpened(account_id=8, owner="bob")),
    )

    with pytest.raises(AssertionError) as failure:
        scenario.then_rows(AccountView, [{"owner": "alice"}, {"owner": "carol"}])
    with pytest.raises(AssertionError, match=r"\(expected 1, found 2\)"):
        scenario.then_rows(AccountView, [{"owner": "alice"}])

    text = str(failure.value)
    assert text.startswith(
        "testapp.AccountView holds other rows than expected (expected 2, found 2):"
    )
    assert "  {'owner': 'alice'}\n- {'owner': 'carol'}\n+ {'owner': 'bob'}" in text


@dataclass(frozen=True)
class Noted(Event, name="toolkit_tests.Noted"):
    account_id: int
    owner: str


@pytest.fixture
def replay_differs() -> Iterator[type[Projection]]:
    """A projection that writes something else when a rebuild replays its events."""

    class ReplayDiffers(Projection):
        read_models = [AccountView]

        @handles(Noted)
        def noted(self, event: Noted, envelope: EventEnvelope) -> None:
            owner = event.owner.upper() if envelope.replaying else event.owner
            self.put(AccountView(account_id=event.account_id, owner=owner, balance="0"))

    yield ReplayDiffers
    unregister(ReplayDiffers)


def test_a_rebuild_that_gives_other_rows_fails(replay_differs: type[Projection]) -> None:
    scenario = ProjectionScenario(replay_differs).given(Noted(account_id=1, owner="alice"))

    scenario.then_rows(AccountView, [{"owner": "alice"}], rebuild=False)
    with pytest.raises(AssertionError) as failure:
        scenario.then_rows(AccountView, [{"owner": "alice"}])

    text = str(failure.value)
    assert text.startswith(
        "A rebuild of tests.ReplayDiffers from the log left other rows in testapp.AccountView "
        "than applying the events live did:\n- live\n+ rebuilt\n"
    )
    assert "'owner': 'alice'" in text
    assert "'owner': 'ALICE'" in text


def test_a_saga_is_not_a_projection_scenario_nor_a_projection_a_saga_scenario() -> None:
    with pytest.raises(ConfigurationError, match="is a saga: test it with SagaScenario"):
        ProjectionScenario(TransferSaga)
    with pytest.raises(ConfigurationError, match="is not a saga"):
        SagaScenario(AccountViewProjection)  # type: ignore[arg-type]


# -- sagas -------------------------------------------------------------------------------------


def test_a_saga_given_events_dispatches_these_commands() -> None:
    scenario = SagaScenario(TransferSaga)
    alice, bob = (scenario.given(OpenAccount(owner=name)).value for name in ("alice", "bob"))
    scenario.given(Deposit(account_id=alice, amount=Decimal(100)))
    transfer_id = uuid.uuid4()

    outcome = scenario.when(
        events_of(
            Transfer,
            transfer_id,
            TransferRequested(
                transfer_id=transfer_id,
                source_id=alice,
                target_id=bob,
                amount=Decimal(30),
                fee=Decimal(1),
            ),
        )
    )

    outcome.then_commands(
        Withdraw(account_id=alice, amount=Decimal(30)),
        Deposit(account_id=bob, amount=Decimal(30)),
        Withdraw(account_id=bob, amount=Decimal(1)),
    )
    assert outcome.steps == [
        ("withdraw", "succeeded"),
        ("deposit", "succeeded"),
        ("fee", "succeeded"),
    ]
    outcome.then_events(
        TransferRequested(
            transfer_id=transfer_id, source_id=alice, target_id=bob, amount=ANY, fee=ANY
        ),
        Withdrawn(account_id=alice, amount=Decimal(30), balance=Decimal(70)),
        Deposited(account_id=bob, amount=Decimal(30), balance=Decimal(30)),
        Withdrawn(account_id=bob, amount=Decimal(1), balance=Decimal(29)),
    )
    assert scenario.instance(transfer_id).state == "awaiting_confirmation"


def test_saga_commands_that_differ_fail_with_a_diff() -> None:
    scenario = SagaScenario(TransferSaga)
    alice = scenario.given(OpenAccount(owner="alice")).value
    transfer_id = uuid.uuid4()
    outcome = scenario.when(
        RequestTransfer(
            transfer_id=transfer_id, source_id=alice, target_id=alice, amount=Decimal(5)
        )
    )  # alice has nothing: the withdrawal is refused, nothing to compensate

    with pytest.raises(AssertionError) as failure:
        outcome.then_commands(Withdraw(account_id=alice, amount=Decimal(50)))

    text = str(failure.value)
    assert text.startswith(
        "testapp.TransferSaga dispatched other commands than expected (expected 1, recorded 1)"
    )
    assert "-     amount=Decimal('50')," in text
    assert "+     amount=Decimal('5')," in text
    assert outcome.steps == [("withdraw", "failed")]
    assert scenario.instance(transfer_id).state == "compensated"
    with pytest.raises(AssertionError, match="has no instance nobody"):
        scenario.instance("nobody")


def test_deadlines_fire_when_the_test_clock_passes_them(clock: FrozenClock) -> None:
    scenario = SagaScenario(TransferSaga, clock=clock)
    alice, bob = (scenario.given(OpenAccount(owner=name)).value for name in ("alice", "bob"))
    scenario.given(Deposit(account_id=alice, amount=Decimal(100)))
    transfer_id = uuid.uuid4()
    started = clock.now()
    scenario.when(
        RequestTransfer(transfer_id=transfer_id, source_id=alice, target_id=bob, amount=Decimal(30))
    ).then_commands(
        Withdraw(account_id=alice, amount=Decimal(30)), Deposit(account_id=bob, amount=Decimal(30))
    )
    [deadline] = SagaDeadline.objects.filter(instance_key=str(transfer_id))
    assert deadline.due_at == started + dt.timedelta(seconds=CONFIRM_SECONDS)

    scenario.when_time_passes(seconds=CONFIRM_SECONDS - 1).then_no_commands()
    late = scenario.when_time_passes(seconds=1)

    late.then_commands(  # compensated, newest first
        Withdraw(account_id=bob, amount=Decimal(30)), Deposit(account_id=alice, amount=Decimal(30))
    )
    assert late.steps == [("compensate deposit", "succeeded"), ("compensate withdraw", "succeeded")]
    instance = scenario.instance(transfer_id)
    assert (instance.state, instance.finished_at) == (
        "compensated",
        started + dt.timedelta(seconds=30),
    )
    scenario.when(ConfirmTransfer(transfer_id=transfer_id)).then_no_commands()  # too late


def test_time_passes_only_on_a_running_clock() -> None:
    with pytest.raises(ConfigurationError, match="needs a running clock"):
        SagaScenario(TransferSaga).when_time_passes(seconds=1)


# -- the clock ---------------------------------------------------------------------------------


def test_the_clock_freezes_timezone_now_and_the_model_defaults_until_advanced() -> None:
    start = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with FrozenClock(start) as clock:
        assert timezone.now() == start
        alice = command_bus.dispatch(OpenAccount(owner="alice")).value
        assert clock.advance(minutes=2, seconds=3) == start + dt.timedelta(seconds=123)
        assert timezone.now() == start + dt.timedelta(seconds=123)
        run = TransferRun(key="k")  # a field whose default is timezone.now
        assert run.started_at == start + dt.timedelta(seconds=123)
        with FrozenClock(start - dt.timedelta(days=1)):  # one inside another
            assert timezone.now() == start - dt.timedelta(days=1)
            assert TransferRun(key="k").started_at == start - dt.timedelta(days=1)
        assert timezone.now() == clock.now()
        with pytest.raises(ValueError, match="does not go back"):
            clock.advance(seconds=-1)
        clock.set(start)
        assert timezone.now() == start

    assert {e.recorded_at for e in StoredEvent.objects.filter(aggregate_id=str(alice))} == {start}
    assert timezone.now().year < 2030
    assert TransferRun(key="k").started_at.year < 2030
    assert not clock.running
    with pytest.raises(ValueError, match="aware"):
        FrozenClock(dt.datetime(2030, 1, 1))


def test_the_clock_fixture_runs_for_the_test(clock: FrozenClock) -> None:
    assert clock.running
    assert timezone.now() == clock.now()
    clock.advance(seconds=5)
    assert timezone.now() == clock.now()


# -- capturing ---------------------------------------------------------------------------------


def test_capture_events_collects_what_was_recorded_inside_the_block() -> None:
    alice = command_bus.dispatch(OpenAccount(owner="alice")).value
    with capture_events() as captured:
        command_bus.dispatch(Deposit(account_id=alice, amount=Decimal(5)))
        command_bus.dispatch(Withdraw(account_id=alice, amount=Decimal(2)))
    command_bus.dispatch(Deposit(account_id=alice, amount=Decimal(1)))  # after the block

    assert captured.types == [Deposited, Withdrawn]
    assert captured.names == ["testapp.Deposited", "testapp.Withdrawn"]
    assert captured.of_type(Withdrawn) == [
        Withdrawn(account_id=alice, amount=Decimal(2), balance=Decimal(3))
    ]
    assert captured[0] == captured.events[0]
    assert len(captured) == 2
    assert captured.positions == [e.position for e in captured.envelopes]
    captured.assert_recorded(Deposited(account_id=alice, amount=ANY, balance=ANY), ANY)
    with pytest.raises(AssertionError, match="Other events were recorded than expected"):
        captured.assert_recorded(Deposited(account_id=alice, amount=ANY, balance=ANY))


def test_the_captured_events_fixture_sees_the_whole_test(captured_events: Any) -> None:
    command_bus.dispatch(OpenAccount(owner="alice"))

    assert captured_events.types == [AccountOpened]


def test_capture_commands_records_dispatches_in_the_order_they_began() -> None:
    with capture_commands() as outer:
        alice = command_bus.dispatch(OpenAccount(owner="alice")).value
        with capture_commands() as inner, pytest.raises(InvariantViolationError):
            command_bus.dispatch(Withdraw(account_id=alice, amount=Decimal(1)))

    assert outer.types == [OpenAccount, Withdraw]
    assert inner.commands == [Withdraw(account_id=alice, amount=Decimal(1))]
    assert isinstance(outer.dispatched[1].error, InvariantViolationError)
    assert outer.dispatched[0].result.value == alice  # type: ignore[union-attr]
    assert all(d.top_level for d in outer.dispatched)
    assert "dispatch" not in vars(command_bus)  # the bus is as it was
    outer.assert_dispatched(OpenAccount(owner="alice"), ANY)


# -- running the async projections and sagas ---------------------------------------------------


def test_run_async_projections_drains_the_log_through_every_saga_and_projection() -> None:
    alice = command_bus.dispatch(OpenAccount(owner="alice")).value
    bob = command_bus.dispatch(OpenAccount(owner="bob")).value
    command_bus.dispatch(Deposit(account_id=alice, amount=Decimal(100)))
    transfer_id = uuid.uuid4()
    command_bus.dispatch(
        RequestTransfer(transfer_id=transfer_id, source_id=alice, target_id=bob, amount=Decimal(30))
    )

    read = run_async_projections()

    assert TransferRun.objects.get(key=str(transfer_id)).state == "awaiting_confirmation"
    # The totals saw the saga's commands too: the rounds go on until nothing is left.
    totals = {row.account_id: row for row in AccountTotals.objects.all()}
    assert (totals[alice].withdrawals, totals[bob].deposits) == (1, 1)
    assert read > 0
    assert run_async_projections() == 0


def test_run_async_projections_fails_with_the_traceback_of_a_failing_event() -> None:
    async_projections.POISON.add(Decimal("13"))
    try:
        alice = command_bus.dispatch(OpenAccount(owner="alice")).value
        command_bus.dispatch(Deposit(account_id=alice, amount=Decimal("13")))

        with pytest.raises(AssertionError) as failure:
            run_async_projections(TOTALS)
        run_async_projections(TOTALS, raise_errors=False)  # the test looks itself
    finally:
        async_projections.POISON.clear()

    text = str(failure.value)
    assert "testapp.AccountTotalsProjection failed on the event at position" in text
    assert "ValueError: poisoned deposit of 13" in text
    assert ProjectionState.objects.get(name=TOTALS.name).failing_position is not None


@pytest.fixture
def failing_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, instance: Any) -> None:
        raise RuntimeError("the deadline handler broke")

    monkeypatch.setattr(TransferSaga, "not_confirmed", broken)


@pytest.mark.usefixtures("failing_deadline")
def test_run_async_projections_fires_due_deadlines_and_fails_when_one_raises(
    clock: FrozenClock,
) -> None:
    alice = command_bus.dispatch(OpenAccount(owner="alice")).value
    command_bus.dispatch(Deposit(account_id=alice, amount=Decimal(5)))
    command_bus.dispatch(
        RequestTransfer(
            transfer_id=uuid.uuid4(), source_id=alice, target_id=alice, amount=Decimal(5)
        )
    )
    run_async_projections(TransferSaga)
    clock.advance(seconds=CONFIRM_SECONDS)

    with pytest.raises(AssertionError, match=r"the deadline 'confirmation' of .* failed"):
        run_async_projections(TransferSaga)
    run_async_projections(TransferSaga, deadlines=False)  # not fired: nothing fails


@pytest.mark.django_db(transaction=True)
def test_the_toolkit_works_in_a_transactional_test_too(clock: FrozenClock) -> None:
    scenario = accounts(("alice", "100"), ("bob", "0"))
    alice, bob = scenario.values[0], scenario.values[2]
    scenario.when(Withdraw(account_id=alice, amount=Decimal(101))).then_error(
        InvariantViolationError
    )
    transfer_id = uuid.uuid4()
    # The commands commit: the saga runs inline after each commit (Q_CLUSTER["sync"]),
    # and the scenario sees its commands all the same.
    saga = SagaScenario(TransferSaga, clock=clock)
    saga.when(
        RequestTransfer(transfer_id=transfer_id, source_id=alice, target_id=bob, amount=Decimal(3))
    ).then_commands(Withdraw(account_id=alice, amount=ANY), Deposit(account_id=bob, amount=ANY))

    assert run_async_projections() == 0  # nothing left: it ran inline
    saga.when_time_passes(seconds=CONFIRM_SECONDS + 1).then_commands(
        Withdraw(account_id=bob, amount=Decimal(3)), Deposit(account_id=alice, amount=Decimal(3))
    )
    ProjectionScenario(TOTALS).then_rows(
        AccountTotals,
        [
            {"account_id": alice, "deposits": 2, "withdrawals": 1},
            {"account_id": bob, "deposits": 1, "withdrawals": 1},
        ],
    )


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_events_held_back_by_another_open_transaction_fail_after_the_timeout() -> None:
    alice = command_bus.dispatch(OpenAccount(owner="alice")).value

    def open_a_transaction() -> None:  # it writes: it has a transaction id
        append_events(
            [AccountOpened(account_id=0, owner="held")],
            aggregate_type="testapp.Account",
            aggregate_id=0,
        )

    with Holding(open_a_transaction) as holder:
        command_bus.dispatch(Deposit(account_id=alice, amount=Decimal(5)))  # commits after it
        with pytest.raises(AssertionError) as failure:
            run_async_projections(TOTALS, timeout=0.3)
        assert holder.thread.is_alive()

    assert "stayed unreadable for 0.3 s: they wait behind the transaction of backend pid" in (
        str(failure.value)
    )
    run_async_projections(TOTALS)  # once it ended
    assert AccountTotals.objects.get(pk=alice).deposits == 1


# -- the failure texts -------------------------------------------------------------------------


def test_describe_shows_one_field_a_line_and_long_values_over_lines() -> None:
    event = TransferRequested(
        transfer_id=uuid.UUID(int=1), source_id=1, target_id=2, amount=Decimal(3), fee=Decimal(0)
    )

    assert describe(event) == [
        "TransferRequested(",
        "    transfer_id=UUID('00000000-0000-0000-0000-000000000001'),",
        "    source_id=1,",
        "    target_id=2,",
        "    amount=Decimal('3'),",
        "    fee=Decimal('0'),",
        ")",
    ]
    long = describe(AccountOpened(account_id=1, owner="x" * 50 + " " + "y" * 50))
    assert long[2].startswith("    owner=('xxx")
    assert long[3].startswith("           'yyy")
    assert diff([1], [1]) == "- expected\n+ recorded\n  1"


def test_a_saga_named_runs_with_all_its_partitions(split: Any) -> None:
    # ``split``: TransferSaga in three partitions (tests/test_saga_partitions.py).
    assert [cls.name for cls in async_consumers([split.name])] == [
        part.name for part in split.partition_classes
    ]
    assert {cls.name for cls in async_consumers()} >= {f"{split.name}#2", TOTALS.name}
