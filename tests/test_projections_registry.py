"""``projections.registry``: a ProjectionRegistry of the test's own, and its signal receivers.

The projection classes here are ``abstract`` so that they stay out of the global
registry (``base.projections``); each test registers them in its own registry, which
connects the sync ones to the real ``event_recorded`` signal. The fixture unregisters
every class it made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import models
from django.utils import timezone

from django_cqrs import command_bus
from django_cqrs.events import Event, EventEnvelope
from django_cqrs.exceptions import ProjectionError
from django_cqrs.projections import (
    ASYNC,
    SYNC,
    Projection,
    all_projections,
    get_projection,
    handles,
)
from django_cqrs.projections.registry import ProjectionRegistry
from django_cqrs.signals import event_recorded
from tests.testapp.commands import OpenAccount
from tests.testapp.events import AccountOpened
from tests.testapp.models import AccountLedger, AccountTotals, AccountView


@dataclass(frozen=True)
class Pinged(Event, name="tests.projections_registry.Pinged"):
    """An event only this module's projections handle."""

    n: int


#: (projection class, event value) for every event a projection's handler received.
received: list[tuple[type, int]] = []

Registry = ProjectionRegistry[type[Projection]]
Make = Callable[..., type[Projection]]


def make_recorder(
    *,
    called: str,
    run_mode: str = SYNC,
    owns: Sequence[type[models.Model]] = (),
) -> type[Projection]:
    """A new class on each call; classes of the same name share their module and qualname."""

    class Recorder(Projection):
        __qualname__ = f"Recorder[{called}]"
        abstract = True  # kept out of the global registry
        name = called
        mode = run_mode
        read_models = list(owns)

        @handles(Pinged)
        def pinged(self, event: Pinged, envelope: EventEnvelope) -> None:
            received.append((type(self), event.n))

        @handles(AccountOpened)
        def opened(self, event: AccountOpened, envelope: EventEnvelope) -> None:
            received.append((type(self), event.account_id))

    return Recorder


@pytest.fixture
def registry() -> Registry:
    return ProjectionRegistry()


@pytest.fixture
def make(registry: Registry) -> Iterator[Make]:
    made: list[type[Projection]] = []

    def factory(**kwargs: Any) -> type[Projection]:
        cls = make_recorder(**kwargs)
        made.append(cls)
        return cls

    received.clear()
    yield factory
    for cls in made:
        registry.unregister(cls)
    received.clear()


def record(n: int) -> None:
    """What an aggregate's save sends for each event it appends."""
    event = Pinged(n=n)
    envelope = EventEnvelope(
        position=n,
        event_type=Pinged.event_type,
        schema_version=1,
        aggregate_type="tests.Pinger",
        aggregate_id="1",
        aggregate_version=n,
        metadata={},
        recorded_at=timezone.now(),
    )
    event_recorded.send(sender=Pinged, event=event, envelope=envelope)


# -- register / all / get / owning -------------------------------------------------------


def test_registered_classes_are_listed_found_by_name_and_by_read_model(
    registry: Registry, make: Make
) -> None:
    views = make(called="tests.Views", owns=[AccountView, AccountLedger])
    totals = make(called="tests.Totals", run_mode=ASYNC, owns=[AccountTotals])
    assert registry.all() == []

    registry.register(views)
    registry.register(totals)

    assert registry.all() == [views, totals]
    assert registry.get("tests.Views") is views
    assert registry.get("tests.Totals") is totals
    assert registry.owning(AccountView) == [views]
    assert registry.owning(AccountLedger) == [views]
    assert registry.owning(AccountTotals) == [totals]
    assert registry.owning(models.Model) == []


def test_all_returns_a_copy(registry: Registry, make: Make) -> None:
    registry.register(make(called="tests.Views"))
    listed = registry.all()
    listed.clear()
    assert len(registry.all()) == 1


def test_an_unknown_name_raises_listing_the_known_names(registry: Registry, make: Make) -> None:
    with pytest.raises(ProjectionError, match=r"No projection is named 'tests.Nope'.*: none$"):
        registry.get("tests.Nope")

    registry.register(make(called="tests.Zeta"))
    registry.register(make(called="tests.Alpha", run_mode=ASYNC))

    with pytest.raises(ProjectionError) as info:
        registry.get("tests.Nope")
    assert str(info.value) == (
        "No projection is named 'tests.Nope'. Known projections: tests.Alpha, tests.Zeta"
    )


def test_the_registry_is_its_own(registry: Registry, make: Make) -> None:
    recorder = make(called="tests.OnlyHere")
    registry.register(recorder)

    assert registry.all() == [recorder]  # not the global registry's projections
    assert recorder not in all_projections()
    with pytest.raises(ProjectionError):
        get_projection("tests.OnlyHere")
    with pytest.raises(ProjectionError):
        registry.get(get_projection("testapp.AccountViewProjection").name)


# -- sync receivers ----------------------------------------------------------------------


def test_a_sync_projection_receives_each_recorded_event_once(
    registry: Registry, make: Make
) -> None:
    recorder = make(called="tests.Sync")
    record(1)
    assert received == []  # not registered: not connected

    registry.register(recorder)
    record(2)
    record(3)

    assert received == [(recorder, 2), (recorder, 3)]


def test_registering_the_same_class_again_replaces_it_and_its_receivers(
    registry: Registry, make: Make
) -> None:
    first = make(called="tests.Reloaded")
    second = make(called="tests.Reloaded")  # the module imported again
    assert first is not second
    assert (first.__module__, first.__qualname__) == (second.__module__, second.__qualname__)

    registry.register(first)
    registry.register(second)
    record(7)

    assert registry.all() == [second]
    assert registry.get("tests.Reloaded") is second
    assert received == [(second, 7)]  # once, by the new class


def test_registering_again_as_async_leaves_no_receiver(registry: Registry, make: Make) -> None:
    registry.register(make(called="tests.Changed"))
    now_async = make(called="tests.Changed", run_mode=ASYNC)
    registry.register(now_async)
    record(1)

    assert registry.all() == [now_async]
    assert received == []


def test_registering_the_same_class_object_twice_keeps_one_receiver(
    registry: Registry, make: Make
) -> None:
    recorder = make(called="tests.Twice")
    registry.register(recorder)
    registry.register(recorder)
    record(4)

    assert registry.all() == [recorder]
    assert received == [(recorder, 4)]


def test_classes_with_other_qualnames_are_not_replaced(registry: Registry, make: Make) -> None:
    recorder = make(called="tests.One")

    class Other(Projection):
        abstract = True
        name = "tests.Other"

        @handles(Pinged)
        def pinged(self, event: Pinged, envelope: EventEnvelope) -> None:
            received.append((type(self), event.n))

    registry.register(recorder)
    registry.register(Other)
    try:
        record(5)
        assert registry.all() == [recorder, Other]
        assert sorted(received, key=repr) == sorted([(recorder, 5), (Other, 5)], key=repr)
    finally:
        registry.unregister(Other)


def test_unregister_forgets_the_class_and_disconnects_it(registry: Registry, make: Make) -> None:
    recorder = make(called="tests.Leaving")
    registry.register(recorder)
    record(1)

    registry.unregister(recorder)
    record(2)

    assert received == [(recorder, 1)]
    assert registry.all() == []
    with pytest.raises(ProjectionError):
        registry.get("tests.Leaving")
    registry.unregister(recorder)  # unregistering twice is harmless


def test_unregistering_a_class_already_replaced_leaves_its_replacement_connected(
    registry: Registry, make: Make
) -> None:
    old = make(called="tests.Stale")
    new = make(called="tests.Stale")  # the module imported again
    registry.register(old)
    registry.register(new)

    registry.unregister(old)  # e.g. a fixture still holding the class of the first import
    record(1)

    assert registry.all() == [new]
    assert received == [(new, 1)]


@pytest.mark.django_db
@pytest.mark.usefixtures("no_trigger")
def test_an_event_recorded_by_a_command_after_unregister_does_not_reach_it(
    registry: Registry, make: Make
) -> None:
    recorder = make(called="tests.Accounts")
    registry.register(recorder)
    first = command_bus.dispatch(OpenAccount(owner="ann")).value

    registry.unregister(recorder)
    second = command_bus.dispatch(OpenAccount(owner="bob")).value

    assert received == [(recorder, first)]
    assert second != first


def test_an_async_projection_is_never_connected(registry: Registry, make: Make) -> None:
    receivers = len(event_recorded.receivers)
    recorder = make(called="tests.Async", run_mode=ASYNC)
    registry.register(recorder)
    record(1)

    assert registry.all() == [recorder]
    assert received == []
    assert len(event_recorded.receivers) == receivers


def test_a_sync_projection_connects_one_receiver_per_handled_event_type(
    registry: Registry, make: Make
) -> None:
    receivers = len(event_recorded.receivers)
    recorder = make(called="tests.Counted")  # handles Pinged and AccountOpened
    registry.register(recorder)
    assert len(event_recorded.receivers) == receivers + 2

    registry.unregister(recorder)
    assert len(event_recorded.receivers) == receivers
