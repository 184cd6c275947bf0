"""Commands, queries and events: plain frozen dataclasses with class-level metadata."""

from __future__ import annotations

import dataclasses
import subprocess
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from django_cqrs import Command, Event, Query
from django_cqrs.bus import CommandBus, QueryBus
from django_cqrs.commands import Command as CommandBase
from django_cqrs.exceptions import ConfigurationError
from django_cqrs.registry import Registry
from tests.helpers import run_python


@dataclasses.dataclass(frozen=True)
class RenameThing(Command[None]):
    thing_id: UUID
    new_name: str


@dataclasses.dataclass(frozen=True)
class FindThing(Query[str]):
    thing_id: UUID


@dataclasses.dataclass(frozen=True)
class ThingRenamed(Event):
    thing_id: UUID
    new_name: str


@dataclasses.dataclass(frozen=True)
class ThingPriced(Event, name="tests.messages.ThingPriced", version=3):
    thing_id: UUID
    price: Decimal


@dataclasses.dataclass(frozen=True)
class ThingArchived(Event):
    event_type = "tests.messages.ThingArchived"
    schema_version = 2

    thing_id: UUID


class Outer:
    @dataclasses.dataclass(frozen=True)
    class InnerHappened(Event):
        value: int


@dataclasses.dataclass(frozen=True)
class ThingTagged(ThingRenamed, name="tests.messages.ThingTagged"):
    tag: str = "none"


# -- fields ----------------------------------------------------------------------------


def test_bases_add_no_dataclass_fields():
    assert dataclasses.fields(Command) == ()
    assert dataclasses.fields(Query) == ()
    assert dataclasses.fields(Event) == ()


def test_subclasses_with_required_fields_construct():
    thing_id = uuid4()

    command = RenameThing(thing_id=thing_id, new_name="lamp")
    query = FindThing(thing_id)
    event = ThingRenamed(thing_id=thing_id, new_name="lamp")

    assert (command.thing_id, command.new_name) == (thing_id, "lamp")
    assert query.thing_id == thing_id
    assert [f.name for f in dataclasses.fields(event)] == ["thing_id", "new_name"]


def test_required_fields_are_required():
    with pytest.raises(TypeError, match="new_name"):
        RenameThing(thing_id=uuid4())  # type: ignore[call-arg]


def test_subclass_of_an_event_adds_fields_with_defaults():
    event = ThingTagged(thing_id=uuid4(), new_name="lamp")

    assert event.tag == "none"
    assert ThingTagged.event_type == "tests.messages.ThingTagged"


# -- event metadata --------------------------------------------------------------------


def test_event_type_defaults_to_module_and_qualname():
    assert ThingRenamed.event_type == "tests.test_messages.ThingRenamed"
    assert ThingRenamed.schema_version == 1
    assert Outer.InnerHappened.event_type == "tests.test_messages.Outer.InnerHappened"


def test_explicit_name_and_version():
    assert ThingPriced.event_type == "tests.messages.ThingPriced"
    assert ThingPriced.schema_version == 3


def test_name_and_version_as_class_attributes():
    assert ThingArchived.event_type == "tests.messages.ThingArchived"
    assert ThingArchived.schema_version == 2


def test_event_metadata_is_not_part_of_the_payload():
    event = ThingPriced(thing_id=UUID(int=1), price=Decimal("1.50"))

    assert event.to_dict() == {
        "thing_id": "00000000-0000-0000-0000-000000000001",
        "price": "1.50",
    }
    assert ThingPriced.from_dict(event.to_dict()) == event


@pytest.mark.parametrize("version", [0, -1, "2"])
def test_invalid_schema_version_is_rejected(version):
    with pytest.raises(ConfigurationError, match="schema version"):

        @dataclasses.dataclass(frozen=True)
        class BadVersion(Event, name=f"tests.messages.BadVersion{version}", version=version):
            value: int


def test_message_name():
    assert RenameThing.message_name() == "tests.test_messages.RenameThing"


# -- immutability ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        RenameThing(thing_id=UUID(int=1), new_name="a"),
        FindThing(thing_id=UUID(int=1)),
        ThingRenamed(thing_id=UUID(int=1), new_name="a"),
    ],
)
def test_messages_are_frozen(message):
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.thing_id = UUID(int=2)
    assert message.thing_id == UUID(int=1)


def test_messages_are_hashable_and_compare_by_value():
    a = RenameThing(thing_id=UUID(int=1), new_name="a")
    b = RenameThing(thing_id=UUID(int=1), new_name="a")

    assert a == b
    assert len({a, b}) == 1


# -- handler registration requires frozen dataclasses ------------------------------------


@pytest.mark.parametrize("base", [Command, Query, Event])
def test_a_mutable_message_cannot_be_declared(base):
    # The bases are frozen, so a non-frozen subclass fails where it is written.
    with pytest.raises(TypeError, match="cannot inherit non-frozen dataclass from a frozen one"):

        @dataclasses.dataclass
        class Mutable(base):
            value: int


def test_handler_for_command_that_is_not_a_dataclass_is_refused():
    class Plain(Command[None]):
        pass

    bus = CommandBus(registry=Registry("command", CommandBase))

    with pytest.raises(ConfigurationError, match=r"Plain must be decorated with @dataclass"):

        @bus.handler(Plain)
        def handle(command: Plain) -> None: ...

    assert Plain not in bus.registry


def test_handler_for_undecorated_subclass_of_a_frozen_command_is_refused():
    # It inherits __dataclass_fields__ but its own annotations would be silently ignored.
    class Sub(RenameThing):
        extra: int

    bus = CommandBus(registry=Registry("command", CommandBase))

    with pytest.raises(ConfigurationError, match="Sub must be decorated"):
        bus.registry.register(Sub, lambda command: None)


def test_query_handler_for_undecorated_query_subclass_is_refused():
    class SubQuery(FindThing):
        extra: int

    bus = QueryBus(registry=Registry("query", Query))

    with pytest.raises(ConfigurationError, match="SubQuery must be decorated"):
        bus.registry.register(SubQuery, lambda query: "x")


def test_command_handler_for_a_query_is_refused():
    bus = CommandBus(registry=Registry("command", CommandBase))

    with pytest.raises(ConfigurationError, match="expects a Command subclass"):
        bus.registry.register(FindThing, lambda query: "x")


# -- importing without Django ------------------------------------------------------------


def _run_without_django(code: str) -> subprocess.CompletedProcess[str]:
    return run_python(code, timeout=60)


def test_import_works_before_django_is_set_up():
    result = _run_without_django(
        "import django_cqrs\n"
        "print(django_cqrs.__version__)\n"
        "from django.conf import settings\n"
        "print(settings.configured)\n"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.1.0", "False"]


def test_messages_can_be_declared_before_django_is_set_up():
    result = _run_without_django(
        "import dataclasses\n"
        "from django_cqrs import Command, Event, Query\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class Happened(Event, name='x.Happened'):\n"
        "    value: int\n"
        "print(Happened(value=1).to_dict())\n"
        "from django.conf import settings\n"
        "print(settings.configured)\n"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["{'value': 1}", "False"]
