"""``projections.batches``: apply_rows decodes and applies rows, skips, wraps errors, prefetches.

Rows are built as the store's readers return them (``EventRow``); only the prefetch
tests need the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_cqrs.events import Event, EventEnvelope
from django_cqrs.exceptions import ProjectionApplyError, SerializationError, UnknownEventTypeError
from django_cqrs.models import StoredEvent
from django_cqrs.projections import Projection, handles
from django_cqrs.projections.batches import apply_rows
from django_cqrs.serialization import to_json_dict
from django_cqrs.store import EventRow, read_rows
from tests.testapp.events import AccountOpened, Deposited, Withdrawn
from tests.testapp.models import AccountMovementCount, AccountView
from tests.testapp.projections import AccountViewProjection


def row(
    position: int, event: Event, *, aggregate_id: str | None = None, **changes: Any
) -> EventRow:
    account_id = getattr(event, "account_id", 0)
    return EventRow(
        position=position,
        event_type=event.event_type,
        schema_version=event.schema_version,
        aggregate_type="testapp.Account",
        aggregate_id=str(account_id) if aggregate_id is None else aggregate_id,
        aggregate_version=position,
        payload=to_json_dict(event),
        metadata={"correlation_id": f"c{position}"},
        recorded_at=timezone.now(),
    )._replace(**changes)


def deposit(account_id: int = 1, amount: str = "1.00") -> Deposited:
    return Deposited(account_id=account_id, amount=Decimal(amount), balance=Decimal(amount))


class Recorder(Projection):
    """Records (position, event, replaying) of each deposit and opening it applies."""

    abstract = True  # used directly, never registered
    name = "tests.BatchRecorder"
    seen: ClassVar[list[tuple[int, Event, bool]]] = []
    poison: ClassVar[set[Decimal]] = set()

    @handles(AccountOpened, Deposited)
    def applied(self, event: AccountOpened | Deposited, envelope: EventEnvelope) -> None:
        if isinstance(event, Deposited) and event.amount in self.poison:
            raise ValueError(f"poisoned deposit of {event.amount}")
        self.seen.append((envelope.position, event, envelope.replaying))


@pytest.fixture(autouse=True)
def _fresh_recorder() -> None:
    Recorder.seen = []
    Recorder.poison = set()


def positions() -> list[int]:
    return [position for position, _, _ in Recorder.seen]


# -- positions and skips ------------------------------------------------------------------


def test_apply_rows_applies_the_rows_in_order_and_returns_the_last_position() -> None:
    rows = [
        row(3, AccountOpened(account_id=1, owner="ann")),
        row(5, deposit(amount="2.50")),
        row(9, Withdrawn(account_id=1, amount=Decimal(1), balance=Decimal("1.50"))),
    ]

    last = apply_rows(Recorder(), rows, replaying=False)

    assert last == 9  # the withdrawal is not handled, but it was seen
    assert Recorder.seen == [
        (3, AccountOpened(account_id=1, owner="ann"), False),
        (5, deposit(amount="2.50"), False),
    ]


def test_apply_rows_of_no_rows_returns_none() -> None:
    assert apply_rows(Recorder(), [], replaying=False) is None
    assert apply_rows(Recorder(buffered=True), iter([]), replaying=True) is None
    assert Recorder.seen == []


def test_handlers_are_told_whether_the_batch_replays() -> None:
    apply_rows(Recorder(), [row(1, deposit())], replaying=True)
    apply_rows(Recorder(), [row(2, deposit())], replaying=False)

    assert [replaying for _, _, replaying in Recorder.seen] == [True, False]


def test_positions_in_skip_are_not_applied_but_count_as_seen() -> None:
    rows = [row(position, deposit(amount=str(position))) for position in (4, 5, 6, 7)]

    last = apply_rows(Recorder(), rows, replaying=False, skip=frozenset({5, 7, 100}))

    assert positions() == [4, 6]
    assert last == 7


def test_a_skipped_row_is_not_even_decoded() -> None:
    broken = row(2, deposit(), payload={"not": "a deposit"})

    last = apply_rows(Recorder(), [row(1, deposit()), broken], replaying=False, skip=frozenset({2}))

    assert (last, positions()) == (2, [1])


# -- errors -------------------------------------------------------------------------------


def test_a_handler_error_is_wrapped_naming_projection_position_and_event_type() -> None:
    Recorder.poison = {Decimal("6.66")}
    rows = [row(10, deposit()), row(11, deposit(amount="6.66")), row(12, deposit())]

    with pytest.raises(ProjectionApplyError) as info:
        apply_rows(Recorder(), rows, replaying=False)

    error = info.value
    assert (error.projection, error.position, error.event_type) == (
        "tests.BatchRecorder",
        11,
        "testapp.Deposited",
    )
    assert str(error) == (
        "tests.BatchRecorder failed on testapp.Deposited at position 11: "
        "ValueError: poisoned deposit of 6.66"
    )
    assert isinstance(error.__cause__, ValueError)
    assert positions() == [10]  # the rows after the failing one were not applied


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param({"account_id": 1}, "missing 2 required positional arguments", id="missing"),
        pytest.param(
            {"account_id": "one", "amount": "1", "balance": "1"},
            "Deposited.account_id: cannot read 'one' as int",
            id="wrong-type",
        ),
    ],
)
def test_a_payload_that_does_not_match_the_event_class_is_wrapped(
    payload: dict[str, Any], message: str
) -> None:
    rows = [row(1, deposit()), row(2, deposit(), payload=payload)]

    with pytest.raises(ProjectionApplyError) as info:
        apply_rows(Recorder(), rows, replaying=True)

    error = info.value
    assert (error.projection, error.position, error.event_type) == (
        "tests.BatchRecorder",
        2,
        "testapp.Deposited",
    )
    assert str(error).startswith(
        "tests.BatchRecorder failed on testapp.Deposited at position 2: SerializationError: "
    )
    assert message in str(error)
    assert isinstance(error.__cause__, SerializationError)
    assert positions() == [1]


def test_an_unknown_event_type_is_wrapped() -> None:
    rows = [row(8, deposit(), event_type="testapp.NoSuchEvent")]

    with pytest.raises(ProjectionApplyError) as info:
        apply_rows(Recorder(), rows, replaying=False)

    assert (info.value.position, info.value.event_type) == (8, "testapp.NoSuchEvent")
    assert isinstance(info.value.__cause__, UnknownEventTypeError)


# -- prefetch with a buffered projection ----------------------------------------------------


def existing_views(count: int) -> list[int]:
    ids = list(range(1, count + 1))
    AccountView.objects.bulk_create(
        [AccountView(account_id=i, owner=f"owner {i}", balance="0.00") for i in ids]
    )
    return ids


def queries_to_apply(projection: Projection, rows: Sequence[EventRow]) -> int:
    with CaptureQueriesContext(connection) as captured:
        apply_rows(projection, rows, replaying=True)
    return len(captured)


@pytest.mark.django_db
@pytest.mark.parametrize("accounts", [5, 60])
def test_a_buffered_batch_loads_the_rows_it_updates_in_one_query(accounts: int) -> None:
    ids = existing_views(accounts)
    rows = [row(i, deposit(account_id, "2.00")) for i, account_id in enumerate(ids * 2, start=1)]
    projection = AccountViewProjection(buffered=True)

    assert queries_to_apply(projection, rows) == 1  # not one per account
    projection.flush()

    views = AccountView.objects.order_by("pk")
    assert [(v.account_id, v.balance, v.movements) for v in views] == [
        (account_id, "2.00", 2) for account_id in ids
    ]


@pytest.mark.django_db
def test_a_batch_of_stored_rows_is_prefetched_too() -> None:
    ids = existing_views(20)
    StoredEvent.objects.bulk_create(
        [
            StoredEvent(
                event_type=Deposited.event_type,
                aggregate_type="testapp.Account",
                aggregate_id=str(account_id),
                aggregate_version=1,
                payload=to_json_dict(deposit(account_id, "3.00")),
            )
            for account_id in ids
        ]
    )
    rows = read_rows(after=0, limit=100)
    projection = AccountViewProjection(buffered=True)

    assert queries_to_apply(projection, rows) == 1
    projection.flush()
    assert set(AccountView.objects.values_list("balance", flat=True)) == {"3.00"}


class MovementsByField(Projection):
    """Rows keyed by an event field, not by the aggregate id."""

    abstract = True  # used directly, never registered
    name = "tests.MovementsByField"
    read_models = [AccountMovementCount]
    key_fields = {AccountMovementCount: "account_id"}

    @handles(Deposited)
    def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
        counted = self.get(AccountMovementCount, event.account_id) or AccountMovementCount(
            account_id=event.account_id
        )
        counted.movements += 1
        self.put(counted)


@pytest.mark.django_db
@pytest.mark.parametrize("accounts", [5, 60])
def test_key_fields_name_the_event_field_that_keys_the_rows(accounts: int) -> None:
    ids = list(range(1, accounts + 1))
    AccountMovementCount.objects.bulk_create(
        [AccountMovementCount(account_id=i, movements=10) for i in ids]
    )
    # The aggregate ids are not the read model's keys (nor even valid ones).
    rows = [
        row(position, deposit(account_id), aggregate_id=f"ledger-{position}")
        for position, account_id in enumerate(ids, start=1)
    ]
    projection = MovementsByField(buffered=True)

    assert queries_to_apply(projection, rows) == 1
    projection.flush()
    assert set(AccountMovementCount.objects.values_list("movements", flat=True)) == {11}


@pytest.mark.django_db
def test_an_unbuffered_projection_prefetches_nothing() -> None:
    ids = existing_views(3)
    rows = [row(i, deposit(account_id, "4.00")) for i, account_id in enumerate(ids, start=1)]

    # Each event reads and writes its row at once: two statements per event.
    assert queries_to_apply(AccountViewProjection(), rows) == 2 * len(ids)
    assert set(AccountView.objects.values_list("balance", flat=True)) == {"4.00"}
