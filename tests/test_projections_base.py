"""``projections.base``: ``@handles``, handler discovery, names, validation, and the writes.

Projections defined inside a test register themselves in the global registry (and, when
sync, on ``event_recorded``); the autouse fixture unregisters them after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_cqrs.events import Event, EventEnvelope
from django_cqrs.exceptions import ConfigurationError
from django_cqrs.projections import (
    Projection,
    all_projections,
    get_projection,
    handles,
    projections_for,
    unregister,
)
from tests.testapp.commands import Deposit
from tests.testapp.events import AccountOpened, Deposited, Withdrawn
from tests.testapp.models import AccountTotals, AccountView
from tests.testapp.projections import AccountLedgerProjection, AccountViewProjection


@pytest.fixture(autouse=True)
def _forget_projections_defined_in_the_test() -> Iterator[None]:
    before = set(all_projections())
    yield
    for cls in all_projections():
        if cls not in before:
            unregister(cls)


def envelope(event: Event, position: int = 1) -> EventEnvelope:
    return EventEnvelope(
        position=position,
        event_type=event.event_type,
        schema_version=event.schema_version,
        aggregate_type="testapp.Account",
        aggregate_id="1",
        aggregate_version=position,
        metadata={},
        recorded_at=timezone.now(),
    )


def opened(account_id: int = 1) -> AccountOpened:
    return AccountOpened(account_id=account_id, owner="ann")


def deposited(account_id: int = 1, amount: str = "5.00") -> Deposited:
    return Deposited(account_id=account_id, amount=Decimal(amount), balance=Decimal(amount))


def withdrawn(account_id: int = 1, amount: str = "1.00") -> Withdrawn:
    return Withdrawn(account_id=account_id, amount=Decimal(amount), balance=Decimal("0"))


# -- @handles -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "not_an_event",
    [
        pytest.param(deposited(), id="an-event-instance"),
        pytest.param("testapp.Deposited", id="an-event-name"),
        pytest.param(Deposit, id="a-command-class"),
        pytest.param(int, id="another-class"),
    ],
)
def test_handles_refuses_anything_but_event_classes(not_an_event: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"@handles\(\) takes Event subclasses") as info:
        handles(Deposited, not_an_event)
    assert repr(not_an_event) in str(info.value)


def test_handles_returns_the_method_and_one_method_can_handle_several_types() -> None:
    def moved(self: Any, event: Any, envelope: EventEnvelope) -> None:
        pass

    assert handles(Deposited, Withdrawn)(moved) is moved

    class Movements(Projection):
        abstract = True
        moved = handles(Deposited, Withdrawn)(lambda self, event, envelope: None)

    assert Movements.handlers == {Deposited: "moved", Withdrawn: "moved"}
    assert Movements.handled_event_types() == ["testapp.Deposited", "testapp.Withdrawn"]


# -- handler discovery through inheritance ------------------------------------------------


def test_a_subclass_inherits_handlers_and_its_own_handlers_override() -> None:
    class Base(Projection):
        abstract = True
        read_models = [AccountView]
        calls: ClassVar[list[str]] = []

        @handles(AccountOpened)
        def opened(self, event: AccountOpened, envelope: EventEnvelope) -> None:
            self.calls.append("Base.opened")

        @handles(Deposited)
        def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
            self.calls.append("Base.deposited")

        @handles(Withdrawn)
        def withdrawn(self, event: Withdrawn, envelope: EventEnvelope) -> None:
            self.calls.append("Base.withdrawn")

    class Child(Base):
        mode = "async"  # not connected to event_recorded: this test applies events itself

        # Same method name, no decorator: still the handler of AccountOpened.
        def opened(self, event: AccountOpened, envelope: EventEnvelope) -> None:
            self.calls.append("Child.opened")

        # Another method for Deposited: it replaces Base.deposited.
        @handles(Deposited)
        def on_deposit(self, event: Deposited, envelope: EventEnvelope) -> None:
            self.calls.append("Child.on_deposit")

    assert Child.handlers == {
        AccountOpened: "opened",
        Deposited: "on_deposit",
        Withdrawn: "withdrawn",
    }
    child = Child()
    for event in (opened(), deposited(), withdrawn()):
        child.apply(event, envelope(event))
    assert Base.calls == ["Child.opened", "Child.on_deposit", "Base.withdrawn"]
    # The base's own table is untouched by its subclass.
    assert Base.handlers == {
        AccountOpened: "opened",
        Deposited: "deposited",
        Withdrawn: "withdrawn",
    }


def test_handlers_of_a_mixin_are_found() -> None:
    class WithdrawalsMixin:
        @handles(Withdrawn)
        def withdrawn(self, event: Withdrawn, envelope: EventEnvelope) -> None:
            pass

    class Mixed(WithdrawalsMixin, Projection):
        abstract = True

    assert Mixed.handlers == {Withdrawn: "withdrawn"}


def test_an_abstract_base_is_not_registered_but_its_concrete_subclass_is() -> None:
    class AbstractBase(Projection):
        abstract = True
        read_models = [AccountTotals]
        mode = "async"

        @handles(Deposited)
        def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
            pass

    class Concrete(AbstractBase):
        pass  # not abstract: ``abstract`` is not inherited

    assert AbstractBase.abstract
    assert not Concrete.abstract
    assert AbstractBase not in all_projections()
    assert Concrete in all_projections()
    assert get_projection(Concrete.name) is Concrete
    assert AbstractBase not in projections_for(AccountTotals)
    assert Concrete in projections_for(AccountTotals)
    assert Concrete.handlers == {Deposited: "deposited"}


# -- names --------------------------------------------------------------------------------


def test_the_default_name_is_the_app_label_and_the_class_name() -> None:
    # tests/testapp's label is "testapp", not its module path "tests.testapp".
    assert AccountViewProjection.name == "testapp.AccountViewProjection"
    assert get_projection("testapp.AccountLedgerProjection") is AccountLedgerProjection

    class InTheApp(Projection):
        __module__ = "tests.testapp.projections"
        abstract = True

    assert InTheApp.name == "testapp.InTheApp"


def test_outside_any_app_the_default_name_uses_the_package_of_the_module() -> None:
    class Elsewhere(Projection):
        __module__ = "somewhere.not_an_app.projections"
        abstract = True

    class Here(Projection):  # tests.test_projections_base: "tests" is no installed app
        abstract = True

    assert Elsewhere.name == "somewhere.not_an_app.Elsewhere"
    assert Here.name == "tests.Here"


def test_an_explicit_name_is_kept_and_not_inherited() -> None:
    class Named(Projection):
        __module__ = "tests.testapp.projections"
        abstract = True
        name = "custom.Named"

    class SubOfNamed(Named):  # defined here, in tests.test_projections_base
        abstract = True

    assert Named.name == "custom.Named"
    assert SubOfNamed.name == "tests.SubOfNamed"


# -- validation ---------------------------------------------------------------------------


def test_an_unknown_mode_is_refused_naming_the_class() -> None:
    before = all_projections()
    with pytest.raises(
        ConfigurationError,
        match=r"\.WrongMode\.mode must be one of \('sync', 'async'\), not 'later'",
    ):

        class WrongMode(Projection):
            mode = "later"

    assert all_projections() == before


def test_an_unknown_on_failure_is_refused_naming_the_class() -> None:
    before = all_projections()
    with pytest.raises(
        ConfigurationError,
        match=r"\.WrongFailure\.on_failure must be 'stop' or 'skip', not 'retry'",
    ):

        class WrongFailure(Projection):
            mode = "async"
            on_failure = "retry"

    assert all_projections() == before

    class Skipping(Projection):
        mode = "async"
        on_failure = "skip"

    assert Skipping in all_projections()


# -- apply --------------------------------------------------------------------------------


def test_apply_calls_the_handler_of_the_event_type_and_ignores_other_events() -> None:
    class OnlyDeposits(Projection):
        abstract = True
        seen: ClassVar[list[tuple[Decimal, int]]] = []

        @handles(Deposited)
        def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
            self.seen.append((event.amount, envelope.position))

    projection = OnlyDeposits()
    projection.apply(opened(), envelope(opened(), 1))
    projection.apply(withdrawn(), envelope(withdrawn(), 2))
    projection.apply(deposited(amount="7.00"), envelope(deposited(), 3))

    assert OnlyDeposits.seen == [(Decimal("7.00"), 3)]


# -- get / put / add / delete ---------------------------------------------------------------


def views() -> list[tuple[int, str, str, int]]:
    return list(
        AccountView.objects.order_by("pk").values_list(
            "account_id", "owner", "balance", "movements"
        )
    )


def totals() -> list[tuple[int, str, int]]:
    return list(AccountTotals.objects.order_by("pk").values_list("account_id", "owner", "deposits"))


@pytest.mark.django_db
def test_unbuffered_writes_reach_the_tables_at_once() -> None:
    projection = Projection()
    assert projection.buffer is None

    projection.put(AccountView(account_id=1, owner="ann", balance="0.00"))
    assert views() == [(1, "ann", "0.00", 0)]

    view = projection.get(AccountView, 1)
    assert view is not None
    view.balance = "5.00"
    view.movements = 1
    projection.put(view)
    assert views() == [(1, "ann", "5.00", 1)]

    projection.add(AccountTotals(account_id=1, owner="ann"), deposits=1)
    assert totals() == [(1, "ann", 1)]
    projection.add(AccountTotals(account_id=1, owner="ann"), deposits=2)
    assert totals() == [(1, "ann", 3)]

    projection.delete(AccountView, 1)
    assert views() == []
    assert projection.get(AccountView, 1) is None
    projection.flush()  # nothing buffered: nothing happens
    assert totals() == [(1, "ann", 3)]


@pytest.mark.django_db
def test_buffered_writes_wait_for_flush_and_handlers_see_them_before() -> None:
    AccountView.objects.create(account_id=2, owner="bob", balance="9.00")
    projection = Projection(buffered=True)
    assert projection.buffer is not None

    with CaptureQueriesContext(connection) as puts_and_deletes:
        projection.put(AccountView(account_id=1, owner="ann", balance="0.00"))
        projection.delete(AccountView, 2)
    projection.add(AccountTotals(account_id=1, owner="ann"), deposits=1)
    projection.add(AccountTotals(account_id=1, owner="ann"), deposits=2)

    assert len(puts_and_deletes) == 0
    assert views() == [(2, "bob", "9.00", 0)]
    assert totals() == []
    # Handlers of the same batch read the buffered rows, not the table.
    buffered = projection.get(AccountView, 1)
    assert buffered is not None
    assert buffered.owner == "ann"
    assert projection.get(AccountView, 2) is None

    projection.flush()

    assert views() == [(1, "ann", "0.00", 0)]
    assert totals() == [(1, "ann", 3)]
