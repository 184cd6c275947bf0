"""One handler per command or query type; duplicates fail at once and are remembered."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from django_cqrs import Command, Query, command_bus, command_handler, query_bus
from django_cqrs.exceptions import (
    ConfigurationError,
    DuplicateHandlerError,
    HandlerNotFoundError,
)
from django_cqrs.registry import Conflict, Registry
from tests.testapp import handlers
from tests.testapp.commands import Deposit, GetBalance


@dataclasses.dataclass(frozen=True)
class ShipParcel(Command[str]):
    parcel_id: int


@dataclasses.dataclass(frozen=True)
class TrackParcel(Query[str]):
    parcel_id: int


def ship_by_road(command: ShipParcel) -> str:
    return "road"


def ship_by_air(command: ShipParcel) -> str:
    return "air"


@pytest.fixture
def registry() -> Registry:
    return Registry("command", Command)


def test_registered_handler_is_found(registry):
    registry.register(ShipParcel, ship_by_road)

    assert registry.handler_for(ShipParcel) is ship_by_road
    assert ShipParcel in registry
    assert registry.items() == [(ShipParcel, ship_by_road)]


def test_decorator_registers_and_returns_the_function(registry):
    decorated = registry.decorator(ShipParcel)(ship_by_air)

    assert decorated is ship_by_air
    assert registry.handler_for(ShipParcel) is ship_by_air


def test_duplicate_handler_fails_at_once_naming_both(registry):
    registry.register(ShipParcel, ship_by_road)

    with pytest.raises(DuplicateHandlerError) as excinfo:
        registry.register(ShipParcel, ship_by_air)

    message = str(excinfo.value)
    assert "tests.test_registry.ShipParcel" in message
    assert "tests.test_registry.ship_by_road" in message
    assert "tests.test_registry.ship_by_air" in message
    assert registry.conflicts == [Conflict(ShipParcel, ship_by_road, ship_by_air)]
    # The first registration stays in force.
    assert registry.handler_for(ShipParcel) is ship_by_road


def test_duplicate_local_handlers_with_the_same_name_conflict(registry):
    def make() -> object:
        def handle(command: ShipParcel) -> str:
            return "x"

        return handle

    registry.register(ShipParcel, make())

    with pytest.raises(DuplicateHandlerError):
        registry.register(ShipParcel, make())
    assert len(registry.conflicts) == 1


def test_registering_the_same_function_again_is_not_a_conflict(registry):
    registry.register(ShipParcel, ship_by_road)
    registry.register(ShipParcel, ship_by_road)

    assert registry.conflicts == []
    assert registry.handler_for(ShipParcel) is ship_by_road


def test_missing_handler_names_the_type_and_how_to_register(registry):
    with pytest.raises(HandlerNotFoundError) as excinfo:
        registry.handler_for(ShipParcel)

    message = str(excinfo.value)
    assert "tests.test_registry.ShipParcel" in message
    assert "@command_handler(ShipParcel)" in message


def test_unregister_forgets_the_handler(registry):
    registry.register(ShipParcel, ship_by_road)

    registry.unregister(ShipParcel)

    assert ShipParcel not in registry
    with pytest.raises(HandlerNotFoundError):
        registry.handler_for(ShipParcel)
    registry.register(ShipParcel, ship_by_air)  # no conflict with a forgotten handler
    assert registry.conflicts == []


def test_handler_must_be_callable(registry):
    with pytest.raises(ConfigurationError, match="not callable"):
        registry.register(ShipParcel, "tests.test_registry.ship_by_road")  # type: ignore[arg-type]


def test_query_registry_refuses_commands():
    registry = Registry("query", Query)

    with pytest.raises(ConfigurationError, match="@query_handler expects a Query subclass"):
        registry.register(ShipParcel, ship_by_road)


def test_query_registry_reports_query_wording():
    registry = Registry("query", Query)

    with pytest.raises(HandlerNotFoundError, match=r"No query handler .* @query_handler\("):
        registry.handler_for(TrackParcel)


# -- the global registries -------------------------------------------------------------


def test_autodiscovered_handlers_are_registered_on_the_global_buses():
    assert command_bus.registry.handler_for(Deposit) is handlers.deposit
    assert query_bus.registry.handler_for(GetBalance) is handlers.get_balance


def test_global_decorator_refuses_a_second_handler_at_import_time():
    conflicts_before = list(command_bus.registry.conflicts)

    def deposit(command: Deposit) -> Decimal: ...

    try:
        with pytest.raises(DuplicateHandlerError, match=r"tests\.testapp\.handlers\.deposit"):
            command_handler(Deposit)(deposit)
        assert command_bus.registry.handler_for(Deposit) is handlers.deposit
        assert command_bus.registry.conflicts[-1].second is deposit
    finally:
        command_bus.registry.conflicts[:] = conflicts_before
