"""``cqrs_inspect``: commands and queries to handlers, events to their readers, ``--check``.

Classes a test declares "in an installed app" set ``__module__`` to a module of
``tests.testapp`` (as in test_checks.py); the fixtures take them out again: messages are
made abstract, event names restored, projections unregistered, receivers disconnected.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_cqrs import Command, Event, Query, command_bus
from django_cqrs import events as events_module
from django_cqrs.inspection import inspect_project
from django_cqrs.projections import Projection, handles, unregister
from django_cqrs.registry import Registry
from django_cqrs.signals import event_committed, event_recorded
from tests.helpers import run_python
from tests.testapp.events import Deposited

ROOT = Path(__file__).resolve().parent.parent
COMMAND_MIDDLEWARE = (
    "django_cqrs.middleware.LoggingMiddleware, django_cqrs.middleware.RetryMiddleware, "
    "django_cqrs.middleware.TransactionMiddleware"
)


def inspect(*args: str) -> str:
    out = io.StringIO()
    call_command("cqrs_inspect", *args, stdout=out)
    return out.getvalue()


def check_fails(*args: str) -> str:
    """The message of the ``CommandError`` that ``cqrs_inspect --check`` ends with."""
    with pytest.raises(CommandError) as failed:
        inspect("--check", *args)
    return str(failed.value)


@pytest.fixture
def declared() -> Iterator[list[type]]:
    """Commands and queries of a test, declared in an installed app; abstract afterwards."""
    classes: list[type] = []
    yield classes
    for cls in classes:
        cls.abstract = True  # type: ignore[attr-defined]  # W001's way to leave out a base


@pytest.fixture
def event_names() -> Iterator[None]:
    """The stored names the log decodes, as they were before the test."""
    saved = dict(events_module._event_types)
    yield
    events_module._event_types.clear()
    events_module._event_types.update(saved)


@pytest.fixture
def connect() -> Iterator[Callable[..., None]]:
    """``connect(signal, receiver, sender)``, disconnected after the test."""
    connected: list[tuple[Any, Callable[..., Any], Any]] = []

    def connect_(signal: Any, receiver: Callable[..., Any], sender: Any) -> None:
        signal.connect(receiver, sender=sender, weak=False)
        connected.append((signal, receiver, sender))

    yield connect_
    for signal, receiver, sender in connected:
        signal.disconnect(receiver, sender=sender)


@pytest.fixture
def own_command_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The command bus's handlers in a registry of the test's own."""
    registry = Registry("command", Command)
    for message_type, handler in command_bus.registry.items():
        registry.register(message_type, handler)
    monkeypatch.setattr(command_bus, "registry", registry)
    return registry


def a_receiver(sender: Any, **kwargs: Any) -> None: ...


# -- the map ------------------------------------------------------------------------------


def test_the_text_names_each_handler_middleware_projection_and_saga() -> None:
    lines = inspect("orders", "testapp").splitlines()

    assert f"Commands (17), middleware outermost first: {COMMAND_MIDDLEWARE}" in lines
    assert (
        "  demo_project.orders.commands.PlaceOrder -> demo_project.orders.handlers.place_order"
        in lines
    )
    assert "  tests.testapp.commands.Deposit -> tests.testapp.handlers.deposit" in lines
    assert (
        "Queries (9), middleware outermost first: django_cqrs.middleware.LoggingMiddleware, "
        "django_cqrs.middleware.ReadOnlyMiddleware"
    ) in lines
    assert "  tests.testapp.commands.GetBalance -> tests.testapp.handlers.get_balance" in lines
    placed = lines.index("  orders.OrderPlaced v1 (demo_project.orders.events.OrderPlaced)")
    assert lines[placed + 1 : placed + 5] == [
        "    projection orders.CustomerSummaryProjection (async): placed()",
        "    projection orders.OrderCountProjection (sync): placed()",
        "    projection orders.OrderViewProjection (sync): placed()",
        "    saga orders.CheckoutSaga (async): placed(), @starts by order_id",
    ]
    assert (
        "    saga orders.CheckoutSaga (async): cancelled(), @on by order_id, finished instances too"
    ) in lines
    assert "    saga testapp.TransferSaga (async): requested(), @starts by transfer_id" in lines
    assert (
        "  orders.GatewayModeSet v1 (demo_project.orders.events.GatewayModeSet), history only"
        in lines
    )
    assert lines[-2:] == [
        "Receivers of every event (1)",
        "  event_recorded: django_cqrs.tasks.on_event_recorded",
    ]
    assert not any("todo." in line or "tests.tutorial" in line for line in lines)


def test_json_is_one_sorted_document_with_every_part_of_the_map() -> None:
    out = inspect("orders", "--json")
    document = json.loads(out)

    assert out.rstrip("\n") == json.dumps(document, indent=2, sort_keys=True)
    assert sorted(document) == [
        "command_middleware",
        "commands",
        "events",
        "problems",
        "queries",
        "query_middleware",
        "receivers_of_every_event",
    ]
    assert ", ".join(document["command_middleware"]) == COMMAND_MIDDLEWARE
    commands = {entry["name"]: entry for entry in document["commands"]}
    assert commands["demo_project.orders.commands.PlaceOrder"] == {
        "name": "demo_project.orders.commands.PlaceOrder",
        "class": "demo_project.orders.commands.PlaceOrder",
        "handler": "demo_project.orders.handlers.place_order",
    }
    assert [entry["name"] for entry in document["commands"]] == sorted(commands)
    events = {entry["name"]: entry for entry in document["events"]}
    assert events["orders.OrderCancelled"] == {
        "name": "orders.OrderCancelled",
        "class": "demo_project.orders.events.OrderCancelled",
        "schema_version": 1,
        "history_only": False,
        "projections": [
            {"name": "orders.CustomerSummaryProjection", "mode": "async", "method": "cancelled"},
            {"name": "orders.OrderCountProjection", "mode": "sync", "method": "cancelled"},
            {"name": "orders.OrderViewProjection", "mode": "sync", "method": "cancelled"},
        ],
        "sagas": [
            {
                "name": "orders.CheckoutSaga",
                "mode": "async",
                "method": "cancelled",
                "route": "on",
                "key": "order_id",
                "when_finished": True,
                "partitions": 1,
            }
        ],
        "receivers": [],
        "relays": [],
    }
    assert events["orders.GatewayModeSet"]["history_only"] is True
    assert document["receivers_of_every_event"] == [
        {"signal": "event_recorded", "receiver": "django_cqrs.tasks.on_event_recorded"}
    ]
    assert document["problems"] == []


def test_the_middleware_is_the_configured_chain_in_order() -> None:
    chain = [
        "django_cqrs.middleware.TransactionMiddleware",
        "django_cqrs.middleware.LoggingMiddleware",
    ]
    with override_settings(DJANGO_CQRS={"COMMAND_MIDDLEWARE": chain, "QUERY_MIDDLEWARE": []}):
        document = json.loads(inspect("todo", "--json"))

    assert document["command_middleware"] == chain
    assert document["query_middleware"] == []


def test_receivers_of_an_event_class_and_of_every_event(connect) -> None:
    connect(event_committed, a_receiver, Deposited)
    connect(event_recorded, a_receiver, None)

    [deposited] = [e for e in inspect_project(["testapp"]).events if e.name == "testapp.Deposited"]
    every = inspect_project(["testapp"]).receivers_of_every_event

    # The sync projections' own receivers are the projections, not receivers.
    assert [dataclasses.asdict(r) for r in deposited.receivers] == [
        {"signal": "event_committed", "receiver": "tests.test_cqrs_inspect.a_receiver"}
    ]
    sync = {p.name for p in deposited.projections if p.mode == "sync"}
    assert {"testapp.AccountLedgerProjection", "testapp.AccountViewProjection"} <= sync
    assert [r.receiver for r in every] == [
        "django_cqrs.tasks.on_event_recorded",
        "tests.test_cqrs_inspect.a_receiver",
    ]


def test_bases_are_not_listed(declared, event_names) -> None:
    @dataclasses.dataclass(frozen=True)
    class AccountCommand(Command[None]):
        __module__ = "tests.testapp.commands"
        abstract = True
        account_id: int

    class AccountEvent(Event):  # not a dataclass itself
        __module__ = "tests.testapp.events"

    @dataclasses.dataclass(frozen=True)
    class AuditedEvent(Event, name="testapp.AuditedEvent"):
        __module__ = "tests.testapp.events"
        abstract = True
        who: str

    declared.append(AccountCommand)
    found = inspect_project(["testapp"])

    assert "AccountCommand" not in " ".join(entry.path for entry in found.commands)
    assert {"AccountEvent", "AuditedEvent"}.isdisjoint(
        entry.path.rsplit(".", 1)[-1] for entry in found.events
    )
    assert found.problems() == []


def test_an_unknown_app_label_is_a_command_error() -> None:
    with pytest.raises(CommandError, match=r"No installed app has the label 'ordres'.*orders"):
        inspect("ordres")


def test_a_middleware_that_does_not_import_is_a_command_error() -> None:
    with (
        override_settings(DJANGO_CQRS={"COMMAND_MIDDLEWARE": ["nowhere.Middleware"]}),
        pytest.raises(CommandError, match=r"nowhere\.Middleware"),
    ):
        inspect("todo")


# -- --check ------------------------------------------------------------------------------


def test_check_passes_on_the_test_project() -> None:
    assert inspect("--check") == "No problems found.\n"


def test_check_passes_on_the_demo_with_its_own_settings() -> None:
    result = run_python(
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', 'cqrs_inspect', '--check'])",
        settings="demo_project.settings",
    )

    assert (result.returncode, result.stdout) == (0, "No problems found.\n"), result.stderr


def test_check_fails_on_a_command_or_a_query_without_a_handler(declared) -> None:
    @dataclasses.dataclass(frozen=True)
    class CloseAccount(Command[None]):
        __module__ = "tests.testapp.commands"
        account_id: int

    @dataclasses.dataclass(frozen=True)
    class ListAccounts(Query[list[int]]):
        __module__ = "tests.testapp.commands"

    declared.extend([CloseAccount, ListAccounts])
    text = inspect("testapp")
    message = check_fails()

    assert "  tests.testapp.commands." in text
    assert re.search(r"CloseAccount -> no handler$", text, re.MULTILINE)
    assert "found 2 problem(s)" in message
    assert re.search(
        r"^- \[unhandled_command\] tests\.testapp\.commands\.\S+CloseAccount has no command "
        r"handler: decorate a function with @command_handler\(CloseAccount\)",
        message,
        re.MULTILINE,
    )
    assert "[unhandled_query] " in message
    assert "@query_handler(ListAccounts)" in message
    assert "orders" not in message


def test_check_fails_on_an_event_nothing_reads(event_names) -> None:
    @dataclasses.dataclass(frozen=True)
    class AccountAudited(Event, name="testapp.AccountAudited"):
        __module__ = "tests.testapp.events"
        account_id: int

    message = check_fails("testapp")

    assert message.startswith("cqrs_inspect found 1 problem(s):\n- [unread_event] ")
    assert "testapp.AccountAudited (tests.testapp.events." in message
    assert "@handles(AccountAudited)" in message
    assert "history_only = True" in message
    assert "    read by nothing" in inspect("testapp")


def test_an_event_only_a_receiver_reads_is_read(event_names, connect) -> None:
    @dataclasses.dataclass(frozen=True)
    class StatementMailed(Event, name="testapp.StatementMailed"):
        __module__ = "tests.testapp.events"
        account_id: int

    assert "[unread_event]" in check_fails("testapp")

    connect(event_committed, a_receiver, StatementMailed)

    assert inspect("testapp", "--check") == "No problems found.\n"


def test_a_history_only_event_needs_no_reader_and_must_have_none(event_names, connect) -> None:
    @dataclasses.dataclass(frozen=True)
    class AccountViewed(Event, name="testapp.AccountViewed"):
        __module__ = "tests.testapp.events"
        history_only = True
        account_id: int

    assert inspect("testapp", "--check") == "No problems found.\n"
    assert "  testapp.AccountViewed v1 (" in inspect("testapp")

    connect(event_recorded, a_receiver, AccountViewed)
    message = check_fails("testapp")

    assert "- [read_history_only_event] testapp.AccountViewed (" in message
    assert "sets `history_only = True` but is read by receiver of event_recorded: " in message
    assert "tests.test_cqrs_inspect.a_receiver" in message


def test_check_fails_on_two_commands_of_one_name(declared, own_command_registry) -> None:
    def twin_class() -> type:
        @dataclasses.dataclass(frozen=True)
        class Twin(Command[None]):
            __module__ = "tests.testapp.commands"
            __qualname__ = "Twin"

        return Twin

    first, second = twin_class(), twin_class()
    declared.extend([first, second])
    own_command_registry.register(first, a_receiver)
    own_command_registry.register(second, lambda command: None)

    message = check_fails("testapp")

    assert "found 1 problem(s)" in message
    assert (
        "- [duplicate_name] 2 command classes are named 'tests.testapp.commands.Twin': "
        "tests.testapp.commands.Twin (tests.test_cqrs_inspect.a_receiver); "
        "tests.testapp.commands.Twin (tests.test_cqrs_inspect."
    ) in message


def test_check_fails_on_two_events_of_one_stored_name(event_names) -> None:
    # A module imported again: the log decodes to the new class, a projection still
    # handles the old one, so nothing reads what the log holds.
    def renewed() -> type[Event]:
        @dataclasses.dataclass(frozen=True)
        class Renewed(Event, name="testapp.Renewed"):
            __module__ = "tests.testapp.events"
            __qualname__ = "Renewed"
            account_id: int

        return Renewed

    old = renewed()

    class RenewalsProjection(Projection):
        mode = "async"

        @handles(old)
        def renewed(self, event: Any, envelope: Any) -> None: ...

    try:
        renewed()
        message = check_fails("testapp")
        document = json.loads(inspect("testapp", "--json"))
    finally:
        unregister(RenewalsProjection)

    assert "found 2 problem(s)" in message
    assert "- [unread_event] testapp.Renewed (tests.testapp.events.Renewed)" in message
    assert (
        "- [duplicate_name] 2 event classes are named 'testapp.Renewed': "
        "tests.testapp.events.Renewed (the log decodes the name to it); "
        "tests.testapp.events.Renewed (not what the log decodes)."
    ) in message
    assert "give all but one another `name=`" in message
    kinds = [(p["kind"], p["name"]) for p in document["problems"]]
    assert kinds == [("unread_event", "testapp.Renewed"), ("duplicate_name", "testapp.Renewed")]


def test_check_with_json_prints_the_document_and_still_fails(declared) -> None:
    @dataclasses.dataclass(frozen=True)
    class SuspendAccount(Command[None]):
        __module__ = "tests.testapp.commands"

    declared.append(SuspendAccount)
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"\[unhandled_command\]"):
        call_command("cqrs_inspect", "testapp", "--json", "--check", stdout=out)

    [problem] = json.loads(out.getvalue())["problems"]
    assert problem["kind"] == "unhandled_command"
    assert problem["name"].endswith("SuspendAccount")


# -- the docs ------------------------------------------------------------------------------


def test_the_example_in_the_operations_doc_is_the_demo_s_output() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    [example] = re.findall(r"^```text\n(Commands \(12\).*?)^```$", doc, re.MULTILINE | re.DOTALL)
    shown = [line for line in example.splitlines() if line.strip() != "..."]
    lines = iter(inspect("orders").splitlines())

    # Each line shown is a line of the output, in the output's order ("..." skips some).
    assert [line for line in shown if line not in lines] == []
