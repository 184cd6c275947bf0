"""The command and query buses: dispatch, results, middleware, metadata."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from django_cqrs import Command, Query, command_bus, query_bus
from django_cqrs.bus import CommandBus, CommandResult, QueryBus
from django_cqrs.exceptions import (
    ConcurrencyError,
    ConfigurationError,
    HandlerNotFoundError,
    InvariantViolationError,
)
from django_cqrs.middleware import (
    BaseMiddleware,
    LoggingMiddleware,
    RetryMiddleware,
    TransactionMiddleware,
)
from django_cqrs.models import StoredEvent
from django_cqrs.registry import Registry
from tests.testapp.commands import Deposit, GetBalance, OpenAccount, Withdraw
from tests.testapp.models import Account, AccountLedger, AccountView

# -- test messages and middleware ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ping(Command[str]):
    text: str


@dataclasses.dataclass(frozen=True)
class Unhandled(Command[None]):
    value: int


@dataclasses.dataclass(frozen=True)
class OpenAndFund(Command[int]):
    owner: str
    amount: Decimal


@dataclasses.dataclass(frozen=True)
class Flaky(Command[str]):
    failures: int


@dataclasses.dataclass(frozen=True)
class OpenThenFail(Command[None]):
    owner: str


@dataclasses.dataclass(frozen=True)
class Echo(Query[str]):
    text: str


@dataclasses.dataclass(frozen=True)
class UnhandledQuery(Query[str]):
    text: str


CALLS: list[str] = []


class OuterRecorder(BaseMiddleware):
    def __call__(self, message: Any, ctx: Any) -> Any:
        CALLS.append(f"outer:{type(message).__name__}")
        try:
            return self.next(message, ctx)
        finally:
            CALLS.append("outer:done")


def inner_recorder(next_step: Any) -> Any:
    def step(message: Any, ctx: Any) -> Any:
        CALLS.append(f"inner:{type(message).__name__}")
        value = next_step(message, ctx)
        CALLS.append("inner:done")
        return value

    return step


RECORDING = [
    "tests.test_bus.OuterRecorder",
    "tests.test_bus.inner_recorder",
    "django_cqrs.middleware.TransactionMiddleware",
]


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()
    yield
    CALLS.clear()


def fresh_command_bus(middleware: list[Any] | None = None) -> CommandBus:
    return CommandBus(registry=Registry("command", Command), middleware=middleware)


def table_counts() -> dict[str, int]:
    return {
        model.__name__: model._base_manager.count()
        for model in (Account, AccountView, AccountLedger, StoredEvent)
    }


def open_account(owner: str = "ann", amount: Decimal | None = None) -> int:
    account_id = command_bus.dispatch(OpenAccount(owner=owner)).value
    if amount is not None:
        command_bus.dispatch(Deposit(account_id=account_id, amount=amount))
    return account_id


# -- dispatching -----------------------------------------------------------------------


@pytest.mark.django_db
def test_dispatch_runs_the_handler_and_returns_its_value():
    account_id = open_account()

    result = command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("7.50")))

    assert isinstance(result, CommandResult)
    assert result.value == Decimal("7.50")
    assert Account.objects.get(pk=account_id).balance == Decimal("7.50")
    assert query_bus.dispatch(GetBalance(account_id=account_id)) == "7.50"


@pytest.mark.django_db
def test_result_position_is_the_last_event_recorded():
    account_id = open_account()

    result = command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("1")))

    last = StoredEvent.objects.order_by("-position").first()
    assert result.position == last.position
    assert result.positions == (last.position,)
    assert last.event_type == "testapp.Deposited"


@pytest.mark.django_db
def test_result_positions_lists_every_event_in_order():
    bus = fresh_command_bus()

    @bus.handler(OpenAndFund)
    def handle(command: OpenAndFund) -> int:
        account = Account.open(command.owner)
        account.deposit(command.amount)
        account.deposit(command.amount)
        account.save()
        return account.pk

    result = bus.dispatch(OpenAndFund(owner="ann", amount=Decimal("2")))

    stored = list(
        StoredEvent.objects.filter(aggregate_id=str(result.value)).values_list(
            "position", "event_type"
        )
    )
    assert [event_type for _, event_type in stored] == [
        "testapp.AccountOpened",
        "testapp.Deposited",
        "testapp.Deposited",
    ]
    assert result.positions == tuple(position for position, _ in stored)
    assert result.position == stored[-1][0]


@pytest.mark.django_db
def test_result_versions_are_the_versions_each_aggregate_was_saved_at():
    bus = fresh_command_bus()

    @bus.handler(OpenAndFund)
    def handle(command: OpenAndFund) -> int:
        account = Account.open(command.owner)
        account.deposit(command.amount)
        account.save()
        other = Account.open("bob")
        other.save()
        return account.pk

    result = bus.dispatch(OpenAndFund(owner="ann", amount=Decimal("2")))

    account, bob = Account.objects.get(pk=result.value), Account.objects.get(owner="bob")
    assert account.version > 1
    assert result.version_of(Account, result.value) == account.version
    assert result.version_of("testapp.Account", str(result.value)) == account.version
    assert result.versions == {
        ("testapp.Account", str(account.pk)): account.version,
        ("testapp.Account", str(bob.pk)): bob.version,
    }
    assert result.version_of(Account, 10**9) is None


@pytest.mark.django_db
def test_saves_the_handler_rolled_back_itself_are_not_in_the_result():
    kept, dropped = open_account("kept"), open_account("dropped")
    before = Account.objects.get(pk=dropped).version
    bus = fresh_command_bus([TransactionMiddleware])

    @bus.handler(OpenAndFund)
    def handle(command: OpenAndFund) -> int:
        account = Account.objects.get(pk=kept)
        account.deposit(command.amount)
        account.save()
        try:
            with transaction.atomic():
                other = Account.objects.get(pk=dropped)
                other.deposit(command.amount)
                other.save()
                raise RuntimeError("changed my mind")
        except RuntimeError:
            pass
        return account.pk

    result = bus.dispatch(OpenAndFund(owner="ann", amount=Decimal("1")))

    stored = Account.objects.get(pk=kept)
    assert Account.objects.get(pk=dropped).version == before  # the inner save rolled back
    assert result.versions == {("testapp.Account", str(kept)): stored.version}
    assert result.positions == tuple(
        StoredEvent.objects.filter(
            aggregate_id=str(kept), aggregate_version=stored.version
        ).values_list("position", flat=True)
    )


@pytest.mark.django_db
def test_a_nested_command_rolled_back_by_its_caller_is_not_in_the_result():
    kept = open_account("kept")
    before = Account.objects.get(pk=kept).version
    bus = fresh_command_bus([TransactionMiddleware])

    @bus.handler(Deposit)
    def deposit(command: Deposit) -> Decimal:
        account = Account.objects.get(pk=command.account_id)
        account.deposit(command.amount)
        account.save()
        return account.balance

    @bus.handler(OpenAndFund)
    def handle(command: OpenAndFund) -> int:
        try:
            with transaction.atomic():
                bus.dispatch(Deposit(account_id=kept, amount=command.amount))
                raise RuntimeError("changed my mind")
        except RuntimeError:
            pass
        return kept

    result = bus.dispatch(OpenAndFund(owner="ann", amount=Decimal("1")))

    assert Account.objects.get(pk=kept).version == before
    assert (result.versions, result.positions, result.position) == ({}, (), None)


@pytest.mark.django_db
def test_a_retried_command_reports_the_versions_of_its_last_attempt_only():
    account_id = open_account()
    attempts: list[int] = []
    bus = fresh_command_bus([RetryMiddleware, TransactionMiddleware])

    @bus.handler(OpenAndFund)
    def handle(command: OpenAndFund) -> int:
        account = Account.objects.get(pk=account_id)
        if not attempts:
            # Someone else saves first: this attempt's save is stale.
            Account.objects.filter(pk=account_id).update(version=account.version + 1)
        attempts.append(1)
        account.deposit(command.amount)
        account.save()
        return account.pk

    result = bus.dispatch(OpenAndFund(owner="ann", amount=Decimal("1")))

    assert len(attempts) == 2
    saved = Account.objects.get(pk=account_id).version
    assert result.versions == {("testapp.Account", str(account_id)): saved}


@pytest.mark.django_db
def test_result_position_is_none_when_no_event_was_recorded():
    bus = fresh_command_bus()
    bus.handler(Ping)(lambda command: command.text.upper())

    result = bus.dispatch(Ping(text="hi"))

    assert result.value == "HI"
    assert result.position is None
    assert result.positions == ()
    assert result.command_id
    assert result.correlation_id == result.command_id


@pytest.mark.django_db
def test_missing_command_handler_names_the_type_and_writes_nothing():
    before = table_counts()

    with (
        override_settings(DJANGO_CQRS={"COMMAND_MIDDLEWARE": RECORDING}),
        pytest.raises(HandlerNotFoundError, match=r"tests\.test_bus\.Unhandled"),
    ):
        command_bus.dispatch(Unhandled(value=1))

    assert CALLS == []  # refused before any middleware opened a transaction
    assert table_counts() == before


def test_missing_query_handler_names_the_type():
    with pytest.raises(
        HandlerNotFoundError, match=r"No query handler .*tests\.test_bus\.UnhandledQuery"
    ):
        query_bus.dispatch(UnhandledQuery(text="x"))


def test_dispatching_the_wrong_kind_of_message_is_a_type_error():
    with pytest.raises(TypeError, match=r"CommandBus\.dispatch\(\) takes a Command, got Echo"):
        command_bus.dispatch(Echo(text="x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"QueryBus\.dispatch\(\) takes a Query, got Ping"):
        query_bus.dispatch(Ping(text="x"))  # type: ignore[arg-type]


@pytest.mark.django_db
def test_query_bus_returns_the_handler_value():
    bus = QueryBus(registry=Registry("query", Query))
    bus.handler(Echo)(lambda query: query.text * 2)

    assert bus.dispatch(Echo(text="ab")) == "abab"


# -- middleware ------------------------------------------------------------------------


@pytest.mark.django_db
def test_middleware_from_dotted_paths_runs_outermost_first():
    with override_settings(DJANGO_CQRS={"COMMAND_MIDDLEWARE": RECORDING}):
        bus = fresh_command_bus()

        @bus.handler(Ping)
        def handle(command: Ping) -> str:
            CALLS.append("handler")
            return "pong"

        result = bus.dispatch(Ping(text="x"))

    assert result.value == "pong"
    assert CALLS == ["outer:Ping", "inner:Ping", "handler", "inner:done", "outer:done"]


@pytest.mark.django_db
def test_global_bus_picks_up_changed_middleware_settings():
    account_id = open_account()
    assert CALLS == []

    with override_settings(DJANGO_CQRS={"COMMAND_MIDDLEWARE": RECORDING}):
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("1")))
    assert CALLS == ["outer:Deposit", "inner:Deposit", "inner:done", "outer:done"]

    CALLS.clear()
    command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("1")))
    assert CALLS == []  # back to the defaults when the override ends


def test_bad_middleware_path_names_the_setting():
    with override_settings(DJANGO_CQRS={"COMMAND_MIDDLEWARE": ["tests.test_bus.NoSuchThing"]}):
        bus = fresh_command_bus()
        bus.handler(Ping)(lambda command: "pong")

        with pytest.raises(
            ConfigurationError, match=r"'tests\.test_bus\.NoSuchThing'.*COMMAND_MIDDLEWARE"
        ):
            bus.dispatch(Ping(text="x"))


def test_explicit_middleware_overrides_settings():
    bus = fresh_command_bus(middleware=[OuterRecorder])
    bus.handler(Ping)(lambda command: "pong")

    assert bus.dispatch(Ping(text="x")).value == "pong"
    assert CALLS == ["outer:Ping", "outer:done"]


def test_middleware_that_is_not_callable_is_a_configuration_error():
    bus = fresh_command_bus(middleware=["not-callable-object", 42])
    bus.handler(Ping)(lambda command: "pong")

    with pytest.raises(ConfigurationError, match="COMMAND_MIDDLEWARE entry"):
        bus.dispatch(Ping(text="x"))


# -- retries ---------------------------------------------------------------------------


def flaky_bus(attempts: list[int]) -> CommandBus:
    bus = fresh_command_bus()

    @bus.handler(Flaky)
    def handle(command: Flaky) -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= command.failures:
            raise ConcurrencyError("somebody else saved first")
        return f"ok after {len(attempts)}"

    return bus


@pytest.mark.django_db
@pytest.mark.parametrize("failures", [0, 1, 3])
def test_retry_reruns_the_command_after_a_concurrency_error(failures):
    attempts: list[int] = []

    result = flaky_bus(attempts).dispatch(Flaky(failures=failures))

    assert result.value == f"ok after {failures + 1}"
    assert attempts == list(range(1, failures + 2))


@pytest.mark.django_db
def test_retry_gives_up_after_the_configured_retries():
    attempts: list[int] = []

    with pytest.raises(ConcurrencyError):
        flaky_bus(attempts).dispatch(Flaky(failures=10))

    assert len(attempts) == 1 + 3  # the default CONCURRENCY_RETRIES


@pytest.mark.django_db
@pytest.mark.parametrize(("retries", "expected_attempts"), [(0, 1), (1, 2), (5, 6)])
def test_retry_count_comes_from_settings(retries, expected_attempts):
    attempts: list[int] = []

    with (
        override_settings(DJANGO_CQRS={"CONCURRENCY_RETRIES": retries}),
        pytest.raises(ConcurrencyError),
    ):
        flaky_bus(attempts).dispatch(Flaky(failures=10))

    assert len(attempts) == expected_attempts


@pytest.mark.django_db
def test_retry_does_not_rerun_on_other_errors():
    attempts: list[int] = []
    bus = fresh_command_bus()

    @bus.handler(Flaky)
    def handle(command: Flaky) -> str:
        attempts.append(1)
        raise InvariantViolationError("no")

    with pytest.raises(InvariantViolationError):
        bus.dispatch(Flaky(failures=0))
    assert len(attempts) == 1


@pytest.mark.django_db
def test_retry_after_a_real_stale_save_rereads_and_keeps_only_the_winning_attempt():
    account_id = open_account(amount=Decimal("5"))
    stale = [Account.objects.get(pk=account_id)]
    command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("5")))  # someone else
    deposits_before = StoredEvent.objects.filter(event_type="testapp.Deposited").count()
    bus = fresh_command_bus()
    attempts: list[int] = []

    @bus.handler(Deposit)
    def deposit(command: Deposit) -> Decimal:
        attempts.append(1)
        account = stale.pop() if stale else Account.objects.get(pk=command.account_id)
        account.deposit(command.amount)
        account.save()
        return account.balance

    result = bus.dispatch(Deposit(account_id=account_id, amount=Decimal("7")))

    assert len(attempts) == 2
    assert result.value == Decimal("17")
    assert Account.objects.get(pk=account_id).balance == Decimal("17")
    assert StoredEvent.objects.filter(event_type="testapp.Deposited").count() == deposits_before + 1
    assert len(result.positions) == 1
    assert result.position == StoredEvent.objects.order_by("-position").first().position
    assert AccountView.objects.get(pk=account_id).balance == "17.00"


# -- transactions ----------------------------------------------------------------------


def open_then_fail_bus(middleware: list[Any] | None = None) -> CommandBus:
    bus = fresh_command_bus(middleware)

    @bus.handler(OpenThenFail)
    def handle(command: OpenThenFail) -> None:
        account = Account.open(command.owner)
        account.deposit(Decimal("3"))
        account.save()
        raise RuntimeError("boom after writing")

    return bus


@pytest.mark.django_db(transaction=True)
def test_transaction_middleware_rolls_back_everything_on_error():
    open_account("existing", Decimal("1"))
    before = table_counts()

    with pytest.raises(RuntimeError, match="boom after writing"):
        open_then_fail_bus().dispatch(OpenThenFail(owner="ann"))

    assert table_counts() == before
    assert not Account.objects.filter(owner="ann").exists()


@pytest.mark.django_db(transaction=True)
def test_without_transaction_middleware_earlier_saves_would_stay():
    # Shows what the middleware protects against: each save commits on its own.
    before = table_counts()

    with pytest.raises(RuntimeError):
        open_then_fail_bus(middleware=[]).dispatch(OpenThenFail(owner="ann"))

    assert Account.objects.filter(owner="ann").exists()
    assert table_counts() != before


# -- logging ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_logging_middleware_logs_success_with_structured_fields(caplog):
    caplog.set_level(logging.DEBUG, logger="django_cqrs")
    account_id = open_account()
    caplog.clear()

    result = command_bus.dispatch(
        Deposit(account_id=account_id, amount=Decimal("2")), metadata={"user": "alice"}
    )

    [record] = [r for r in caplog.records if getattr(r, "cqrs_message", None)]
    assert record.levelno == logging.DEBUG
    assert record.cqrs_kind == "command"
    assert record.cqrs_message == "tests.testapp.commands.Deposit"
    assert record.cqrs_outcome == "ok"
    assert record.cqrs_events == 1
    assert record.cqrs_user == "alice"
    assert record.cqrs_message_id == result.command_id
    assert record.cqrs_correlation_id == result.correlation_id
    assert record.cqrs_duration_ms >= 0
    assert "tests.testapp.commands.Deposit ok" in record.getMessage()


@pytest.mark.django_db
def test_logging_middleware_logs_failures_with_the_error(caplog):
    caplog.set_level(logging.INFO, logger="django_cqrs")
    account_id = open_account()
    caplog.clear()

    with pytest.raises(InvariantViolationError):
        command_bus.dispatch(Withdraw(account_id=account_id, amount=Decimal("1")))

    [record] = [r for r in caplog.records if getattr(r, "cqrs_message", None)]
    assert record.cqrs_outcome == "error"
    assert record.cqrs_error == "InvariantViolationError"
    assert record.cqrs_message == "tests.testapp.commands.Withdraw"
    assert "balance cannot go below zero" in record.getMessage()


@pytest.mark.django_db
def test_logging_middleware_logs_queries(caplog):
    caplog.set_level(logging.DEBUG, logger="django_cqrs")
    account_id = open_account()
    caplog.clear()

    query_bus.dispatch(GetBalance(account_id=account_id))

    [record] = [r for r in caplog.records if getattr(r, "cqrs_message", None)]
    assert record.cqrs_kind == "query"
    assert record.cqrs_message == "tests.testapp.commands.GetBalance"
    assert record.cqrs_outcome == "ok"


def test_logger_name_comes_from_settings(caplog):
    caplog.set_level(logging.DEBUG, logger="audit.cqrs")
    with override_settings(DJANGO_CQRS={"LOGGER": "audit.cqrs"}):
        bus = fresh_command_bus(middleware=[LoggingMiddleware])
        bus.handler(Ping)(lambda command: "pong")
        bus.dispatch(Ping(text="x"))

    assert [r.name for r in caplog.records if getattr(r, "cqrs_message", None)] == ["audit.cqrs"]


# -- metadata and correlation ------------------------------------------------------------


@pytest.mark.django_db
def test_dispatch_metadata_is_stored_with_the_events():
    result = command_bus.dispatch(
        OpenAccount(owner="ann"),
        metadata={"user": "alice", "correlation_id": "req-123", "ip": "10.0.0.1"},
    )

    stored = StoredEvent.objects.get(position=result.position)
    assert stored.metadata == {
        "command_type": "tests.testapp.commands.OpenAccount",
        "command_id": result.command_id,
        "correlation_id": "req-123",
        "causation_id": result.command_id,
        "user": "alice",
        "ip": "10.0.0.1",
    }
    assert result.correlation_id == "req-123"


@pytest.mark.django_db
def test_nested_dispatch_inherits_correlation_and_sets_causation():
    bus = fresh_command_bus()

    @bus.handler(OpenAndFund)
    def handle(command: OpenAndFund) -> int:
        account_id = command_bus.dispatch(OpenAccount(owner=command.owner)).value
        command_bus.dispatch(Deposit(account_id=account_id, amount=command.amount))
        return account_id

    result = bus.dispatch(
        OpenAndFund(owner="ann", amount=Decimal("4")),
        metadata={"user": "alice", "correlation_id": "req-9"},
    )

    events = list(StoredEvent.objects.filter(aggregate_id=str(result.value)))
    assert [e.event_type for e in events] == ["testapp.AccountOpened", "testapp.Deposited"]
    for event in events:
        assert event.metadata["correlation_id"] == "req-9"
        assert event.metadata["causation_id"] == result.command_id
        assert event.metadata["user"] == "alice"
        assert event.metadata["command_id"] != result.command_id
    assert [e.metadata["command_type"] for e in events] == [
        "tests.testapp.commands.OpenAccount",
        "tests.testapp.commands.Deposit",
    ]
    # The outer result reports what the nested commands recorded.
    assert result.positions == tuple(e.position for e in events)


@pytest.mark.django_db
def test_each_top_level_dispatch_gets_its_own_correlation_id():
    first = command_bus.dispatch(OpenAccount(owner="a"))
    second = command_bus.dispatch(OpenAccount(owner="b"))

    assert first.correlation_id != second.correlation_id
    meta = StoredEvent.objects.get(position=second.position).metadata
    assert meta["correlation_id"] == second.correlation_id
    assert "user" not in meta


def test_builtin_middleware_classes_are_the_defaults():
    from django_cqrs.conf import cqrs_settings

    assert [
        LoggingMiddleware,
        RetryMiddleware,
        TransactionMiddleware,
    ] == cqrs_settings.COMMAND_MIDDLEWARE
