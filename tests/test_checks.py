"""System checks (one test per id) and the DJANGO_CQRS settings object."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.checks import Error, Warning
from django.core.checks.registry import registry as check_registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections
from django.test import override_settings

from django_cqrs import Command, Event, Query, command_bus, query_bus
from django_cqrs import events as events_module
from django_cqrs import projections as projections_module
from django_cqrs.checks import (
    check_events,
    check_handlers,
    check_projections,
    check_q_cluster,
    check_query_guard,
    check_settings,
)
from django_cqrs.conf import DEFAULTS, cqrs_settings
from django_cqrs.exceptions import ConfigurationError, DuplicateHandlerError
from django_cqrs.middleware import LoggingMiddleware, TransactionMiddleware
from django_cqrs.projections import Projection, handles
from django_cqrs.read_models import ReadModel
from django_cqrs.registry import Registry
from tests.testapp.async_projections import AccountTotalsProjection
from tests.testapp.events import Deposited
from tests.testapp.models import Account, AccountView

CHECKS = (check_settings, check_handlers, check_projections, check_events, check_query_guard)


def only(messages: list[Any], check_id: str) -> list[Any]:
    found = [m for m in messages if m.id == check_id]
    for message in found:
        assert message.hint, f"{check_id} has no hint"
    return found


def run_all() -> list[Any]:
    return [message for check in CHECKS for message in check()]


# -- registration and a clean project ---------------------------------------------------


def test_checks_are_registered():
    registered = check_registry.get_checks()

    for check in CHECKS:
        assert check in registered


@pytest.mark.django_db
def test_the_test_project_passes_the_checks():
    call_command("check")

    assert [m for m in run_all() if m.id.startswith("django_cqrs.")] == []


# -- settings: E001, E002, E003 ------------------------------------------------------------


def test_e001_unknown_key():
    with override_settings(DJANGO_CQRS={"CONCURENCY_RETRIES": 3}):
        [message] = only(check_settings(), "django_cqrs.E001")

    assert isinstance(message, Error)
    assert "'CONCURENCY_RETRIES'" in message.msg
    assert "CONCURRENCY_RETRIES" in message.hint


def test_e001_fails_manage_py_check():
    with override_settings(DJANGO_CQRS={"NOPE": 1}), pytest.raises(SystemCheckError, match="E001"):
        call_command("check")


def test_e002_dotted_path_that_does_not_import():
    with override_settings(
        DJANGO_CQRS={"QUERY_MIDDLEWARE": ["django_cqrs.middleware.NoSuchMiddleware"]}
    ):
        [message] = only(check_settings(), "django_cqrs.E002")

    assert isinstance(message, Error)
    assert "'django_cqrs.middleware.NoSuchMiddleware'" in message.msg
    assert "QUERY_MIDDLEWARE" in message.msg


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"COMMAND_MIDDLEWARE": "django_cqrs.middleware.LoggingMiddleware"}, "list of dotted"),
        ({"COMMAND_MIDDLEWARE": [LoggingMiddleware]}, "list of dotted"),
        ({"CONCURRENCY_RETRIES": "3"}, "must be int"),
        ({"CONCURRENCY_RETRIES": -1}, "cannot be negative"),
        ({"REBUILD_BATCH_SIZE": 0}, "at least 1"),
        ({"AUTODISCOVER": "yes"}, "must be bool"),
        ({"DATABASE": "replica"}, "'replica', which is not in DATABASES"),
    ],
    ids=[
        "middleware string",
        "middleware class",
        "retries str",
        "retries negative",
        "batch size zero",
        "autodiscover str",
        "unknown database",
    ],
)
def test_e003_value_of_the_wrong_type(value, fragment):
    with override_settings(DJANGO_CQRS=value):
        [message] = only(check_settings(), "django_cqrs.E003")

    assert isinstance(message, Error)
    assert fragment in message.msg


def test_e003_setting_that_is_not_a_dict():
    with override_settings(DJANGO_CQRS=["CONCURRENCY_RETRIES"]):
        [message] = only(check_settings(), "django_cqrs.E003")

    assert "must be a dict" in message.msg


def test_valid_settings_pass():
    valid = {
        "COMMAND_MIDDLEWARE": ["django_cqrs.middleware.TransactionMiddleware"],
        "CONCURRENCY_RETRIES": 0,
        "DATABASE": "default",
        "AUTODISCOVER": False,
        "LOCK_TIMEOUT": 0.5,
    }
    with override_settings(DJANGO_CQRS=valid):
        assert check_settings() == []


# -- settings: E010 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [0, -1, 0.0, "10", True, float("inf"), float("nan"), [10]], ids=repr
)
def test_e010_lock_timeout_that_is_not_a_positive_number_or_none(value):
    with override_settings(DJANGO_CQRS={"LOCK_TIMEOUT": value}):
        [message] = only(check_settings(), "django_cqrs.E010")

    assert isinstance(message, Error)
    assert "LOCK_TIMEOUT" in message.msg
    assert "None" in message.hint


@pytest.mark.parametrize("value", [None, 10, 0.3, 0.001, 3600.0])
def test_e010_accepts_seconds_and_none(value):
    with override_settings(DJANGO_CQRS={"LOCK_TIMEOUT": value}):
        assert only(check_settings(), "django_cqrs.E010") == []


# -- settings: E011, E012, W006 (health) ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("paused", "is 'paused'"),  # a string, not a list: each letter would be a state
        (["paused", "stoped"], "lists 'stoped'"),
        (["live"], "lists 'live'"),  # live is never degraded
        (None, "is None"),
        ([1], "lists 1"),
    ],
    ids=repr,
)
def test_e011_health_degraded_activities_that_are_not_a_list_of_activities(value, fragment):
    with override_settings(DJANGO_CQRS={"HEALTH_DEGRADED_ACTIVITIES": value}):
        [message] = only(check_settings(), "django_cqrs.E011")

    assert isinstance(message, Error)
    assert "HEALTH_DEGRADED_ACTIVITIES" in message.msg
    assert fragment in message.msg
    assert "'stalled'" in message.hint
    assert "'catching up'" in message.hint


@pytest.mark.parametrize(
    "value",
    [[], ["stalled"], ("paused", "stalled", "failing", "catching up", "rebuilding")],
    ids=repr,
)
def test_e011_accepts_any_list_of_activities_but_live(value):
    with override_settings(DJANGO_CQRS={"HEALTH_DEGRADED_ACTIVITIES": value}):
        assert only(check_settings(), "django_cqrs.E011") == []


@pytest.mark.parametrize("value", [0, -5, "120", True, float("inf"), [60]], ids=repr)
def test_e012_stall_seconds_that_is_not_a_positive_number_or_none(value):
    with override_settings(DJANGO_CQRS={"STALL_SECONDS": value}):
        [message] = only(check_settings(), "django_cqrs.E012")

    assert isinstance(message, Error)
    assert "STALL_SECONDS" in message.msg


@pytest.mark.parametrize("value", [None, 61, 120.0, 3600])
def test_e012_accepts_seconds_and_none(value):
    with override_settings(DJANGO_CQRS={"STALL_SECONDS": value}):
        assert only(check_settings(), "django_cqrs.E012") == []


@pytest.mark.parametrize("value", ["Public", "staff", None, True, ["public"]], ids=repr)
def test_e014_health_details_outside_its_choices(value):
    with override_settings(DJANGO_CQRS={"HEALTH_DETAILS": value}):
        [message] = only(check_settings(), "django_cqrs.E014")

    assert isinstance(message, Error)
    assert "HEALTH_DETAILS" in message.msg


@pytest.mark.parametrize("value", ["permission", "public"])
def test_e014_accepts_its_choices(value):
    with override_settings(DJANGO_CQRS={"HEALTH_DETAILS": value}):
        assert only(check_settings(), "django_cqrs.E014") == []


@pytest.mark.parametrize(
    ("settings", "warned"),
    [
        ({}, False),  # 120 s against a schedule every minute
        ({"STALL_SECONDS": 60}, True),  # reported stalled while the schedule is due
        ({"STALL_SECONDS": 30}, True),
        ({"STALL_SECONDS": 200, "CATCHUP_SCHEDULE_MINUTES": 5}, True),
        ({"STALL_SECONDS": 400, "CATCHUP_SCHEDULE_MINUTES": 5}, False),
        ({"STALL_SECONDS": None}, False),  # stalls are never reported
        ({"STALL_SECONDS": "x"}, False),  # E012's business
    ],
    ids=repr,
)
def test_w006_stall_seconds_within_the_periodic_schedule(settings, warned):
    assert any(cls.mode == "async" for cls in projections_module.all_projections())
    with override_settings(DJANGO_CQRS=settings):
        found = only(check_q_cluster(), "django_cqrs.W006")

    assert len(found) == int(warned)
    if warned:
        assert isinstance(found[0], Warning)
        assert "CATCHUP_SCHEDULE_MINUTES" in found[0].msg


# -- handlers: E004, W001, W002 ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ArchiveThing(Command[None]):
    thing_id: int


def archive_one(command: ArchiveThing) -> None: ...


def archive_two(command: ArchiveThing) -> None: ...


def test_e004_duplicate_handler(monkeypatch):
    registry = Registry("command", Command)
    monkeypatch.setattr(command_bus, "registry", registry)
    registry.register(ArchiveThing, archive_one)
    with pytest.raises(DuplicateHandlerError, match="already has a command handler"):
        registry.register(ArchiveThing, archive_two)

    [message] = only(check_handlers(), "django_cqrs.E004")

    assert isinstance(message, Error)
    assert "tests.test_checks.archive_one" in message.msg
    assert "tests.test_checks.archive_two" in message.msg
    assert message.obj is ArchiveThing


def test_e004_duplicate_query_handler(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class FindThing(Query[int]):
        thing_id: int

    registry = Registry("query", Query)
    monkeypatch.setattr(query_bus, "registry", registry)
    registry.register(FindThing, lambda query: 1)
    with pytest.raises(DuplicateHandlerError, match="already has a query handler"):
        registry.register(FindThing, lambda query: 2)

    [message] = only(check_handlers(), "django_cqrs.E004")

    assert "two query handlers" in message.msg


@pytest.fixture
def installed_app_messages() -> Iterator[list[type]]:
    """Classes declared in a module of an installed app; silenced after the test."""
    declared: list[type] = []
    yield declared
    for cls in declared:
        cls.abstract = True  # the documented way to exempt a base class from W001/W002


def test_w001_command_without_handler(installed_app_messages):
    @dataclasses.dataclass(frozen=True)
    class CloseAccount(Command[None]):
        __module__ = "tests.testapp.commands"
        account_id: int

    installed_app_messages.append(CloseAccount)

    [message] = [m for m in only(check_handlers(), "django_cqrs.W001") if m.obj is CloseAccount]

    assert isinstance(message, Warning)
    assert message.msg.startswith("tests.testapp.commands.")
    assert message.msg.endswith("CloseAccount has no command handler.")
    assert "@command_handler(CloseAccount)" in message.hint


def test_w001_is_silenced_by_a_handler_or_abstract(installed_app_messages, monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class FreezeAccount(Command[None]):
        __module__ = "tests.testapp.commands"
        account_id: int

    @dataclasses.dataclass(frozen=True)
    class BaseAccountCommand(Command[None]):
        __module__ = "tests.testapp.commands"
        abstract = True
        account_id: int

    installed_app_messages.append(FreezeAccount)
    registry = Registry("command", Command)
    for message_type, handler in command_bus.registry.items():
        registry.register(message_type, handler)
    registry.register(FreezeAccount, lambda command: None)
    monkeypatch.setattr(command_bus, "registry", registry)

    silenced = (FreezeAccount, BaseAccountCommand)
    assert [m for m in check_handlers() if m.obj in silenced] == []


def test_w001_ignores_messages_outside_installed_apps():
    @dataclasses.dataclass(frozen=True)
    class LocalCommand(Command[None]):
        value: int

    assert [m for m in check_handlers() if m.obj is LocalCommand] == []


def test_w002_query_without_handler(installed_app_messages):
    @dataclasses.dataclass(frozen=True)
    class ListAccounts(Query[list]):
        __module__ = "tests.testapp.commands"
        owner: str

    installed_app_messages.append(ListAccounts)

    [message] = [m for m in only(check_handlers(), "django_cqrs.W002") if m.obj is ListAccounts]

    assert isinstance(message, Warning)
    assert "has no query handler" in message.msg
    assert "@query_handler(ListAccounts)" in message.hint


# -- projections: E005, E006, W003 -------------------------------------------------------


@pytest.fixture
def declared_projections() -> Iterator[list[type[Projection]]]:
    declared: list[type[Projection]] = []
    yield declared
    for cls in declared:
        projections_module.unregister(cls)


def test_e005_read_model_that_is_not_a_read_model(declared_projections):
    class AggregateAsReadModel(Projection):
        read_models = [Account]

        @handles(Deposited)
        def on_deposit(self, event: Deposited, envelope: Any) -> None: ...

    declared_projections.append(AggregateAsReadModel)

    [message] = [
        m for m in only(check_projections(), "django_cqrs.E005") if m.obj is AggregateAsReadModel
    ]

    assert isinstance(message, Error)
    assert "Account" in message.msg
    assert "not a concrete ReadModel" in message.msg


def test_e005_abstract_read_model(declared_projections):
    class AbstractReadModelProjection(Projection):
        read_models = [ReadModel]

        @handles(Deposited)
        def on_deposit(self, event: Deposited, envelope: Any) -> None: ...

    declared_projections.append(AbstractReadModelProjection)

    [message] = [
        m
        for m in only(check_projections(), "django_cqrs.E005")
        if m.obj is AbstractReadModelProjection
    ]

    assert "abstract" in message.msg


def test_e005_no_read_models(declared_projections):
    class NoReadModels(Projection):
        @handles(Deposited)
        def on_deposit(self, event: Deposited, envelope: Any) -> None: ...

    declared_projections.append(NoReadModels)

    [message] = [m for m in only(check_projections(), "django_cqrs.E005") if m.obj is NoReadModels]

    assert "declares no read_models" in message.msg


def test_e006_two_projections_with_the_same_name(declared_projections):
    class FirstTwin(Projection):
        name = "tests.Twin"
        read_models = [AccountView]

        @handles(Deposited)
        def on_deposit(self, event: Deposited, envelope: Any) -> None: ...

    class SecondTwin(Projection):
        name = "tests.Twin"
        read_models = [AccountView]

        @handles(Deposited)
        def on_deposit(self, event: Deposited, envelope: Any) -> None: ...

    declared_projections.extend([FirstTwin, SecondTwin])

    [message] = only(check_projections(), "django_cqrs.E006")

    assert isinstance(message, Error)
    assert "'tests.Twin'" in message.msg
    assert "FirstTwin" in message.msg
    assert "SecondTwin" in message.msg


def test_w003_projection_without_handlers(declared_projections):
    class Idle(Projection):
        read_models = [AccountView]

    declared_projections.append(Idle)

    [message] = only(check_projections(), "django_cqrs.W003")

    assert isinstance(message, Warning)
    assert message.obj is Idle
    assert "handles no events" in message.msg


def test_unregistered_projections_are_no_longer_checked(declared_projections):
    class Transient(Projection):
        read_models = [Account]

    projections_module.unregister(Transient)

    assert [m for m in check_projections() if m.obj is Transient] == []


# -- events: E008 --------------------------------------------------------------------------


@pytest.fixture
def event_registry() -> Iterator[None]:
    saved = dict(events_module._event_types)
    yield
    events_module._event_types.clear()
    events_module._event_types.update(saved)


def test_e008_event_field_type_that_cannot_be_stored(event_registry):
    @dataclasses.dataclass(frozen=True)
    class AccountFrozen(Event, name="tests.checks.AccountFrozen"):
        __module__ = "tests.testapp.events"
        account_id: int
        reasons: list[complex]
        photo: bytes | None = None

    [first, second] = [m for m in check_events() if m.obj is AccountFrozen]

    for message in (first, second):
        assert message.id == "django_cqrs.E008"
        assert isinstance(message, Error)
        assert message.hint
    assert "AccountFrozen.reasons: unsupported field type complex" in first.msg
    assert "AccountFrozen.photo: unsupported field type bytes" in second.msg


@dataclasses.dataclass(frozen=True)
class Attachment:
    data: bytearray


def test_e008_nested_dataclass_field(event_registry):
    # Real (not string) annotations, as a module without `from __future__` would have.
    statement_sent = dataclasses.make_dataclass(
        "StatementSent",
        [("account_id", int), ("attachment", Attachment)],
        bases=(Event,),
        frozen=True,
        namespace={"__module__": "tests.testapp.events", "event_type": "tests.checks.Sent"},
    )

    [message] = [m for m in only(check_events(), "django_cqrs.E008") if m.obj is statement_sent]

    assert "StatementSent.attachment.data: unsupported field type bytearray" in message.msg


def test_e008_annotation_that_cannot_be_resolved(event_registry):
    @dataclasses.dataclass(frozen=True)
    class Local:
        value: int

    @dataclasses.dataclass(frozen=True)
    class LimitChanged(Event, name="tests.checks.LimitChanged"):
        __module__ = "tests.testapp.events"
        limit: Local  # a string under `from __future__ import annotations`: unresolvable

    [message] = [m for m in only(check_events(), "django_cqrs.E008") if m.obj is LimitChanged]

    assert "cannot resolve a field annotation" in message.msg
    assert "Local" in message.msg


def test_e008_accepts_every_supported_type(event_registry):
    @dataclasses.dataclass(frozen=True)
    class Everything(Event, name="tests.checks.Everything"):
        __module__ = "tests.testapp.events"
        account_id: int
        amounts: dict[str, Decimal]
        history: list[Decimal] | None
        pair: tuple[int, str]
        tags: frozenset[str]

    assert [m for m in check_events() if m.obj is Everything] == []


# -- the query guard: W008 ----------------------------------------------------------------


def test_w008_an_alias_with_the_statement_check_only(monkeypatch):
    # A backend the guard knows no read-only mode of (only db/ reads the vendor).
    monkeypatch.setattr(connections["second"], "vendor", "mysql")

    (message,) = only(check_query_guard(), "django_cqrs.W008")

    assert isinstance(message, Warning)
    assert "'second'" in message.msg
    assert "'mysql'" in message.msg
    assert "statement check only" in message.msg


def test_w008_postgres_with_its_read_only_transaction_off(vendor):
    with override_settings(DJANGO_CQRS={"QUERY_READ_ONLY_TRANSACTION": False}):
        messages = only(check_query_guard(), "django_cqrs.W008")

    if vendor == "postgresql":
        assert [m.msg.split(":")[0] for m in messages] == [
            "Query handlers reading database 'default' get the statement check only",
            "Query handlers reading database 'second' get the statement check only",
        ]
        assert "QUERY_READ_ONLY_TRANSACTION = False" in messages[0].msg
    else:  # SQLite's authorizer does not depend on the setting
        assert messages == []


# -- settings object -----------------------------------------------------------------------


def test_settings_default_values():
    assert cqrs_settings.CONCURRENCY_RETRIES == DEFAULTS["CONCURRENCY_RETRIES"] == 3
    assert cqrs_settings.DATABASE == "default"


def test_override_settings_changes_values_and_restores_them():
    assert cqrs_settings.CONCURRENCY_RETRIES == 3

    with override_settings(
        DJANGO_CQRS={
            "CONCURRENCY_RETRIES": 7,
            "COMMAND_MIDDLEWARE": ["django_cqrs.middleware.TransactionMiddleware"],
        }
    ):
        assert cqrs_settings.CONCURRENCY_RETRIES == 7
        assert [TransactionMiddleware] == cqrs_settings.COMMAND_MIDDLEWARE
        assert DEFAULTS["REBUILD_BATCH_SIZE"] == cqrs_settings.REBUILD_BATCH_SIZE

    assert cqrs_settings.CONCURRENCY_RETRIES == 3
    assert TransactionMiddleware in cqrs_settings.COMMAND_MIDDLEWARE
    assert len(cqrs_settings.COMMAND_MIDDLEWARE) == 3


def test_unknown_key_raises_when_a_setting_is_read():
    with (
        override_settings(DJANGO_CQRS={"CONCURENCY_RETRIES": 7}),
        pytest.raises(ConfigurationError, match=r"CONCURENCY_RETRIES.*django_cqrs\.E001"),
    ):
        cqrs_settings.CONCURRENCY_RETRIES  # noqa: B018

    assert cqrs_settings.CONCURRENCY_RETRIES == 3


def test_bad_dotted_path_raises_naming_the_setting():
    with (
        override_settings(DJANGO_CQRS={"COMMAND_MIDDLEWARE": ["nowhere.Middleware"]}),
        pytest.raises(ConfigurationError, match=r"'nowhere\.Middleware'.*COMMAND_MIDDLEWARE"),
    ):
        cqrs_settings.COMMAND_MIDDLEWARE  # noqa: B018


def test_reading_an_attribute_that_is_not_a_setting_is_an_attribute_error():
    with pytest.raises(AttributeError, match="Invalid DJANGO_CQRS setting: 'NOT_A_SETTING'"):
        cqrs_settings.NOT_A_SETTING  # noqa: B018


# -- django-q2: W007 -----------------------------------------------------------------------


def _cluster_messages(check_id: str) -> list[Any]:
    assert AccountTotalsProjection.mode == "async"  # checked only where one exists
    return only(check_q_cluster(), check_id)


@pytest.mark.parametrize(
    ("cluster", "budget", "fragment"),
    [
        ({"timeout": 20, "retry": 30}, None, "budget of 10 s, which leaves 10 s of Q_CLUSTER"),
        ({"timeout": 60, "retry": 90}, 55, "leaves 5 s of Q_CLUSTER['timeout'] (60 s)"),
        ({"timeout": 60, "retry": 90}, 75, "leaves -15 s of Q_CLUSTER['timeout']"),
        ({"retry": 20}, None, "leaves 10 s of Q_CLUSTER['retry'] (20 s)"),
    ],
    ids=["small timeout", "budget near it", "budget beyond it", "no timeout, small retry"],
)
def test_w006_a_catch_up_budget_that_leaves_no_room_before_the_timeout(
    cluster: dict[str, Any], budget: float | None, fragment: str
) -> None:
    with override_settings(
        Q_CLUSTER={"orm": "default", "max_attempts": 3, **cluster},
        DJANGO_CQRS={"CATCHUP_TIME_BUDGET": budget},
    ):
        [message] = _cluster_messages("django_cqrs.W007")

    assert isinstance(message, Warning)
    assert fragment in message.msg
    assert "CATCHUP_TIME_BUDGET" in message.hint


@pytest.mark.parametrize(
    ("cluster", "settings_"),
    [
        ({"timeout": 60, "retry": 90}, {}),
        ({"timeout": 30, "retry": 45}, {}),
        ({"timeout": 12, "retry": 20}, {"LOCK_TIMEOUT": None}),
        ({"timeout": 20, "retry": 30}, {"CATCHUP_TIME_BUDGET": 2}),
        ({"timeout": 5, "sync": True}, {}),
    ],
    ids=["default", "30 s", "no lock timeout", "small budget", "sync"],
)
def test_w006_is_quiet_when_a_task_ends_in_time(
    cluster: dict[str, Any], settings_: dict[str, Any]
) -> None:
    with override_settings(
        Q_CLUSTER={"orm": "default", "max_attempts": 3, **cluster}, DJANGO_CQRS=settings_
    ):
        assert _cluster_messages("django_cqrs.W007") == []


@pytest.mark.parametrize("value", [0, -1, "30", True, float("inf")], ids=repr)
def test_e003_catch_up_budget_that_is_not_seconds(value: Any) -> None:
    with override_settings(DJANGO_CQRS={"CATCHUP_TIME_BUDGET": value}):
        [message] = only(check_settings(), "django_cqrs.E003")

    assert "CATCHUP_TIME_BUDGET" in message.msg
