"""Event schema evolution: upcasters, aliases, their checks, and every reader of the log.

The story of one event, told by the classes below: it was stored as
``tests.upcasting.MoneyMoved`` with the amount in cents (version 1), then with a decimal
amount (version 2), then renamed ``tests.upcasting.LedgerEntry`` with ``account`` called
``account_id`` (version 3). All three shapes are in the log at once, and every reader
gets the version-3 event.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.checks import Error, Tags, Warning
from django.core.checks.registry import registry as check_registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_cqrs import Event, store
from django_cqrs import events as events_module
from django_cqrs.checks import check_events, check_stored_events, check_upcasting
from django_cqrs.events import (
    EventEnvelope,
    decode_event,
    event_class,
    register_upcaster,
    upcast_payload,
    upcaster,
)
from django_cqrs.exceptions import (
    ConfigurationError,
    RebuildWriteError,
    SerializationError,
    UnknownEventTypeError,
)
from django_cqrs.models import ProjectionState, StoredEvent
from django_cqrs.projections import Projection, handles, unregister
from django_cqrs.projections.batches import apply_rows
from django_cqrs.projections.catchup import catch_up
from django_cqrs.projections.checkpoints import ensure_state
from django_cqrs.projections.rebuild import rebuild
from tests.testapp.models import AccountLedger, AccountMovementCount, AccountView

OLD = "tests.upcasting.MoneyMoved"
NEW = "tests.upcasting.LedgerEntry"


@dataclasses.dataclass(frozen=True)
class LedgerEntry(Event, name=NEW, version=3, aliases=(OLD,)):
    account_id: int
    amount: Decimal
    note: str = ""


@upcaster(OLD, 1)  # registered under the old name: only payloads stored under it
def cents_to_amount(payload: dict[str, Any]) -> dict[str, Any]:
    payload["amount"] = str(Decimal(payload.pop("cents")).scaleb(-2))  # 1250 -> "12.50"
    return payload


@upcaster(LedgerEntry, 2)  # under the class (its current name): any stored name
def account_to_account_id(payload: dict[str, Any]) -> dict[str, Any]:
    payload["account_id"] = payload.pop("account")
    return payload


#: The same entry, as each version stored it.
SHAPES = [
    (OLD, 1, {"account": 7, "cents": 1250}),
    (OLD, 2, {"account": 7, "amount": "12.50"}),
    (NEW, 2, {"account": 7, "amount": "12.50"}),  # renamed before the version 3 change
    (NEW, 3, {"account_id": 7, "amount": "12.50"}),
]
CURRENT = LedgerEntry(account_id=7, amount=Decimal("12.50"))


def store_raw(name: str, version: int, payload: Any, *, aggregate_id: str = "") -> int:
    """A row in the log as older code stored it (appending is what the log allows)."""
    row = StoredEvent.objects.create(
        event_type=name,
        schema_version=version,
        aggregate_type="tests.Upcasting",
        aggregate_id=aggregate_id or str(uuid.uuid4()),
        aggregate_version=1,
        payload=payload,
        metadata={},
    )
    return row.position


# -- decoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "payload"), SHAPES, ids=[f"{n}-v{v}" for n, v, _ in SHAPES]
)
def test_each_stored_shape_upcasts_to_the_current_payload(name, version, payload):
    assert upcast_payload(name, payload, version) == {"account_id": 7, "amount": "12.50"}
    assert decode_event(name, version, payload) == CURRENT


def test_upcasting_leaves_the_stored_payload_as_it_is():
    payload = {"account": 7, "cents": 1250}

    upcast_payload(OLD, payload, 1)

    assert payload == {"account": 7, "cents": 1250}


@pytest.mark.django_db
def test_the_store_reads_every_shape_as_the_current_event():
    positions = [store_raw(name, version, payload) for name, version, payload in SHAPES]

    read = store.read(after=positions[0] - 1)

    assert [event for event, _ in read] == [CURRENT] * len(SHAPES)
    stored = [(name, version) for name, version, _ in SHAPES]
    assert [(e.position, (e.event_type, e.schema_version)) for _, e in read] == list(
        zip(positions, stored, strict=True)
    )


@pytest.mark.django_db
def test_new_events_are_stored_under_the_current_name_and_version():
    store.append(
        [CURRENT],
        aggregate_type="tests.Upcasting",
        aggregate_id="new",
        first_version=1,
        metadata={},
        using="default",
    )

    row = StoredEvent.objects.get(aggregate_id="new")
    assert (row.event_type, row.schema_version) == (NEW, 3)
    assert row.payload == {"account_id": 7, "amount": "12.50", "note": ""}


def test_an_alias_names_the_class_too():
    assert event_class(OLD) is event_class(NEW) is LedgerEntry
    assert LedgerEntry.aliases == (OLD,)


def test_a_step_with_no_upcaster_is_an_error_naming_it():
    @dataclasses.dataclass(frozen=True)
    class Bumped(Event, name="tests.upcasting.Bumped", version=3):
        value: int

    @upcaster(Bumped, 2)
    def second(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    with pytest.raises(SerializationError, match=r"no upcaster from schema version 1 to 2"):
        decode_event("tests.upcasting.Bumped", 1, {"value": 1})
    assert decode_event("tests.upcasting.Bumped", 2, {"value": 1}) == Bumped(value=1)


def test_an_upcaster_that_fails_or_returns_no_dict_is_an_error_naming_it():
    @dataclasses.dataclass(frozen=True)
    class Fragile(Event, name="tests.upcasting.Fragile", version=3):
        value: int

    @upcaster(Fragile, 1)
    def needs_old(payload: dict[str, Any]) -> dict[str, Any]:
        return {"value": payload["old"]}

    @upcaster(Fragile, 2)
    def forgets_to_return(payload: dict[str, Any]) -> Any:
        payload["value"] += 1

    failed = r"from version 1 \(.*needs_old\) failed: KeyError"
    with pytest.raises(SerializationError, match=failed):
        decode_event("tests.upcasting.Fragile", 1, {})
    with pytest.raises(SerializationError, match=r"forgets_to_return\) returned NoneType"):
        decode_event("tests.upcasting.Fragile", 1, {"old": 1})


def test_the_older_upcast_classmethod_takes_the_steps_no_upcaster_starts_from():
    @dataclasses.dataclass(frozen=True)
    class Legacy(Event, name="tests.upcasting.Legacy", version=3):
        total: Decimal

        @classmethod
        def upcast(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
            assert from_version == 2  # version 1 went through the upcaster first
            return {"total": data.pop("sum")}

    register_upcaster(Legacy, 1, lambda payload: {"sum": payload["amount"]})

    assert decode_event("tests.upcasting.Legacy", 1, {"amount": "3"}) == Legacy(Decimal(3))


# -- registration ---------------------------------------------------------------------


@pytest.fixture
def registries() -> Iterator[None]:
    """Put the event names, upcasters and recorded conflicts back as they were."""
    names, steps = dict(events_module._event_types), dict(events_module._upcasters)
    recorded = list(events_module.conflicts)
    yield
    events_module._event_types.clear()
    events_module._event_types.update(names)
    events_module._upcasters.clear()
    events_module._upcasters.update(steps)
    events_module.conflicts[:] = recorded


def in_the_test_app(func: Any) -> Any:
    """A function of an installed app, as the checks see it."""
    func.__module__ = "tests.testapp.events"
    return func


def test_an_alias_another_class_has_as_its_name_is_refused_and_reported(registries):
    with pytest.raises(ConfigurationError, match=r"'tests.upcasting.LedgerEntry' is used by"):

        @dataclasses.dataclass(frozen=True)
        class Thief(Event, name="tests.upcasting.Thief", aliases=(NEW,)):
            __module__ = "tests.testapp.events"
            value: int

    assert event_class(NEW) is LedgerEntry
    with pytest.raises(UnknownEventTypeError):
        event_class("tests.upcasting.Thief")
    [message] = [m for m in check_upcasting() if m.id == "django_cqrs.E015"]
    assert isinstance(message, Error)
    assert "Event name 'tests.upcasting.LedgerEntry' is defined twice" in message.msg
    assert "tests.test_upcasting.LedgerEntry" in message.msg
    assert "Thief" in message.msg
    assert message.hint


def test_a_second_upcaster_for_one_step_is_refused_and_reported(registries):
    with pytest.raises(ConfigurationError, match=r"already has an upcaster from version 1"):
        register_upcaster(OLD, 1, in_the_test_app(lambda payload: payload))

    assert upcast_payload(OLD, {"account": 7, "cents": 100}, 1)["amount"] == "1.00"
    [message] = [m for m in check_upcasting() if m.id == "django_cqrs.E015"]
    assert f"The upcaster of {OLD!r} from version 1 is defined twice" in message.msg


@pytest.mark.parametrize("aliases", ["tests.upcasting.Old", ("ok", 3), ("",)], ids=repr)
def test_aliases_must_be_a_tuple_of_names(registries, aliases):
    with pytest.raises(ConfigurationError, match="aliases must be a tuple of stored names"):

        @dataclasses.dataclass(frozen=True)
        class Odd(Event, name="tests.upcasting.Odd", aliases=aliases):
            value: int


@pytest.mark.parametrize("version", [0, "1", True])
def test_an_upcaster_starts_from_a_version_of_one_or_more(version):
    with pytest.raises(ConfigurationError, match="from_version must be an int >= 1"):
        register_upcaster(NEW, version, lambda payload: payload)


def test_a_subclass_does_not_inherit_the_aliases(registries):
    @dataclasses.dataclass(frozen=True)
    class Special(LedgerEntry, name="tests.upcasting.Special"):
        pass

    assert Special.aliases == ()
    assert event_class(OLD) is LedgerEntry


# -- code checks: W009, W010 ----------------------------------------------------------


def test_w009_a_bumped_version_no_upcaster_starts_from(registries):
    @dataclasses.dataclass(frozen=True)
    class Reshaped(Event, name="tests.checks.Reshaped", version=4, aliases=("tests.checks.Was",)):
        __module__ = "tests.testapp.events"
        value: int

    register_upcaster("tests.checks.Was", 2, in_the_test_app(lambda payload: payload))

    [message] = [m for m in check_upcasting() if m.obj is Reshaped]

    assert (message.id, type(message)) == ("django_cqrs.W009", Warning)
    assert "is at schema version 4, but no upcaster starts from version 1, 3" in message.msg
    assert "@upcaster('tests.checks.Reshaped', 1)" in message.hint


def test_w009_is_quiet_once_every_step_has_an_upcaster(registries):
    @dataclasses.dataclass(frozen=True)
    class Complete(Event, name="tests.checks.Complete", version=3):
        __module__ = "tests.testapp.events"
        value: int

    assert [m for m in check_upcasting() if m.obj is Complete] != []
    register_upcaster(Complete, 1, in_the_test_app(lambda payload: payload))
    register_upcaster(Complete, 2, in_the_test_app(lambda payload: payload))

    assert [m for m in check_upcasting() if m.obj is Complete] == []


def test_w010_an_upcaster_that_never_runs(registries):
    @dataclasses.dataclass(frozen=True)
    class Current(Event, name="tests.checks.Current", version=2):
        __module__ = "tests.testapp.events"
        value: int

    typo = in_the_test_app(lambda payload: payload)
    unbumped = in_the_test_app(lambda payload: payload)
    register_upcaster("tests.checks.Curent", 1, typo)
    register_upcaster(Current, 1, in_the_test_app(lambda payload: payload))
    register_upcaster(Current, 2, unbumped)  # the version was not bumped to 3

    by_function = {m.obj: m for m in check_upcasting() if m.id == "django_cqrs.W010"}

    assert "no event class has the name or alias 'tests.checks.Curent'" in by_function[typo].msg
    assert "tests.checks.Current is at schema version 2" in by_function[unbumped].msg
    assert "Bump the class's version= to 3" in by_function[unbumped].hint


def test_the_test_project_passes_the_upcasting_checks():
    assert check_upcasting() == []


def test_an_event_class_with_aliases_is_checked_once(registries):
    @dataclasses.dataclass(frozen=True)
    class Unstorable(Event, name="tests.checks.Unstorable", aliases=("tests.checks.U",)):
        __module__ = "tests.testapp.events"
        blob: bytes

    assert len([m for m in check_events() if m.obj is Unstorable]) == 1


# -- database checks: E016, W011, W012 ------------------------------------------------


def test_the_log_check_is_a_database_check():
    assert check_stored_events in check_registry.get_checks()
    assert Tags.database in check_stored_events.tags  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_the_log_check_reads_the_database_only_when_asked():
    store_raw("tests.upcasting.NeverDefined", 1, {})

    assert check_stored_events(databases=None) == []
    assert check_stored_events(databases=["other"]) == []
    assert [m.id for m in check_stored_events(databases=["default"])] == ["django_cqrs.W011"]


@pytest.mark.django_db
def test_w011_stored_names_no_class_has(registries):
    for version in (1, 1, 2):
        store_raw("shop.OrderCreated", version, {})
    for name, version, payload in SHAPES:  # known names, readable versions: nothing to say
        store_raw(name, version, payload)

    [message] = check_stored_events(databases=["default"])

    assert (message.id, type(message)) == ("django_cqrs.W011", Warning)
    assert "3 events named 'shop.OrderCreated' (schema version 1, 2)" in message.msg
    assert "aliases=(...)" in message.hint

    @dataclasses.dataclass(frozen=True)
    class OrderPlaced(Event, name="shop.OrderPlaced", version=2, aliases=("shop.OrderCreated",)):
        pass

    register_upcaster("shop.OrderCreated", 1, lambda payload: payload)

    assert check_stored_events(databases=["default"]) == []


@pytest.mark.django_db
def test_e016_stored_versions_no_upcaster_brings_to_the_current_one(registries):
    @dataclasses.dataclass(frozen=True)
    class Rated(Event, name="tests.checks.Rated", version=3, aliases=("tests.checks.Scored",)):
        stars: int

    register_upcaster("tests.checks.Scored", 1, lambda payload: payload)
    register_upcaster(Rated, 2, lambda payload: payload)
    store_raw("tests.checks.Scored", 1, {"stars": 1})  # Scored 1 -> 2 -> 3: readable
    store_raw("tests.checks.Rated", 1, {"stars": 1})  # no step 1 under Rated's own name
    store_raw("tests.checks.Rated", 1, {"stars": 2})
    store_raw("tests.checks.Rated", 5, {"stars": 3})  # newer than the code

    messages = check_stored_events(databases=["default"])

    [error] = [m for m in messages if m.id == "django_cqrs.E016"]
    assert isinstance(error, Error)
    assert "2 events 'tests.checks.Rated' at schema version 1" in error.msg
    assert "none starts from version 1" in error.msg
    assert "@upcaster('tests.checks.Rated', 1)" in error.hint
    [newer] = [m for m in messages if m.id == "django_cqrs.W012"]
    assert "1 event 'tests.checks.Rated' at schema version 5, newer than" in newer.msg
    with pytest.raises(SerializationError):
        store.read(after=0)


@pytest.mark.django_db
def test_e016_fails_manage_py_check_database(registries):
    @dataclasses.dataclass(frozen=True)
    class Gapped(Event, name="tests.checks.Gapped", version=2):
        value: int

    store_raw("tests.checks.Gapped", 1, {"value": 1})

    call_command("check", stdout=StringIO())  # without --database the log is not read
    with pytest.raises(SystemCheckError, match=r"django_cqrs\.E016"):
        call_command("check", "--database", "default", stdout=StringIO(), stderr=StringIO())


# -- the readers of the log: rebuild, catch-up, the admin -------------------------------


@pytest.fixture
def ledger_projection() -> Iterator[type[Projection]]:
    """An async projection of ``LedgerEntry`` into ``AccountLedger`` (one row per entry)."""

    class LedgerEntryProjection(Projection):
        name = "tests.LedgerEntryProjection"
        read_models = [AccountLedger]
        mode = "async"

        @handles(LedgerEntry)
        def entry(self, event: LedgerEntry, envelope: EventEnvelope) -> None:
            self.put(
                AccountLedger(
                    position=envelope.position, account_id=event.account_id, amount=event.amount
                )
            )

    yield LedgerEntryProjection
    unregister(LedgerEntryProjection)


def old_history() -> list[int]:
    return [store_raw(name, version, payload) for name, version, payload in SHAPES]


def ledger() -> list[tuple[int, int, Decimal]]:
    return list(AccountLedger.objects.order_by("pk").values_list("pk", "account_id", "amount"))


def test_a_projection_reads_the_old_names_of_its_events(ledger_projection):
    assert ledger_projection.handled_event_types() == [NEW, OLD]


@pytest.mark.django_db
def test_a_rebuild_reads_events_stored_in_every_old_shape(ledger_projection):
    positions = old_history()

    applied = rebuild(ledger_projection.name)

    assert applied == len(SHAPES)
    assert ledger() == [(position, 7, Decimal("12.50")) for position in positions]


@pytest.mark.django_db
def test_a_refused_write_of_a_rebuild_names_the_handler_of_an_event_stored_under_an_alias():
    class Careless(Projection):
        name = "tests.Careless"
        read_models = [AccountLedger]
        mode = "async"

        @handles(LedgerEntry)
        def entry(self, event: LedgerEntry, envelope: EventEnvelope) -> None:
            AccountView.objects.create(account_id=event.account_id, owner="", balance="0")

    position = store_raw(OLD, 1, {"account": 7, "cents": 1250})
    try:
        with pytest.raises(RebuildWriteError) as excinfo:
            rebuild(Careless)
    finally:
        unregister(Careless)

    assert excinfo.value.handler.endswith("<locals>.Careless.entry")
    assert f"({OLD} at position {position})" in str(excinfo.value)


@pytest.mark.django_db
def test_an_async_catch_up_reads_events_stored_in_every_old_shape(ledger_projection, no_trigger):
    ensure_state(ledger_projection.name)
    positions = old_history()

    catch_up(ledger_projection.name)

    assert ledger() == [(position, 7, Decimal("12.50")) for position in positions]
    state = ProjectionState.objects.get(name=ledger_projection.name)
    assert (state.state, state.position) == ("live", positions[-1])


@pytest.mark.django_db
def test_an_event_page_in_the_admin_shows_what_the_code_reads(admin_client: Client):
    old = store_raw(OLD, 1, {"account": 7, "cents": 1250})
    current = store_raw(NEW, 3, {"account_id": 7, "amount": "12.50"})
    unknown = store_raw("tests.upcasting.Forgotten", 1, {})

    def page(position: int) -> str:
        url = reverse("admin:django_cqrs_storedevent_change", args=[position])
        return admin_client.get(url).content.decode()

    upcast = page(old)
    assert "tests.test_upcasting.LedgerEntry, tests.upcasting.LedgerEntry version 3" in upcast
    assert f"(upcast from {OLD} version 1)" in upcast
    assert "&quot;account_id&quot;: 7" in upcast
    assert "&quot;amount&quot;: &quot;12.50&quot;" in upcast
    assert "tests.test_upcasting.LedgerEntry (the payload as stored)" in page(current)
    assert "UnknownEventTypeError: No event class is named" in page(unknown)


class EntriesPerAccount(Projection):
    """Rows keyed by an event field that an upcaster renamed (``account``: ``account_id``)."""

    abstract = True  # used directly, never registered
    name = "tests.EntriesPerAccount"
    read_models = [AccountMovementCount]
    key_fields = {AccountMovementCount: "account_id"}

    @handles(LedgerEntry)
    def entry(self, event: LedgerEntry, envelope: EventEnvelope) -> None:
        self.add(AccountMovementCount(account_id=event.account_id), movements=1)


@pytest.mark.django_db
def test_a_batch_prefetches_the_rows_named_by_old_payloads_after_upcasting():
    AccountMovementCount.objects.bulk_create(
        [AccountMovementCount(account_id=i, movements=10) for i in range(1, 6)]
    )
    for account in range(1, 6):
        store_raw(OLD, 1, {"account": account, "cents": 100})
    rows = store.read_rows(limit=10)
    projection = EntriesPerAccount(buffered=True)

    with CaptureQueriesContext(connection) as captured:
        apply_rows(projection, rows, replaying=True)

    assert len(captured) == 1  # one prefetch, not one query per account
    projection.flush()
    assert set(AccountMovementCount.objects.values_list("movements", flat=True)) == {11}
