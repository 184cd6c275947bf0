"""``projections.buffer``: RowBuffer reads once, prefetches in bulk, writes once per flush.

Query counts are what the buffer is for (a rebuild would otherwise cost one query per
event), so the tests count them with ``CaptureQueriesContext``.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, models
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_cqrs.db.shadow import create_shadows, drop_shadows, shadow_model
from django_cqrs.events import EventEnvelope
from django_cqrs.exceptions import RebuildWriteError
from django_cqrs.projections import Projection, handles
from django_cqrs.projections.buffer import RowBuffer, delete_rows, load_row
from tests.testapp.events import Deposited
from tests.testapp.models import AccountMovementCount, AccountView

pytestmark = pytest.mark.django_db


def view(account_id: int, owner: str = "ann", balance: str = "0.00") -> AccountView:
    return AccountView(account_id=account_id, owner=owner, balance=balance)


def envelope(event: Deposited, position: int) -> EventEnvelope:
    return EventEnvelope(
        position=position,
        event_type=event.event_type,
        schema_version=1,
        aggregate_type="testapp.Account",
        aggregate_id=str(event.account_id),
        aggregate_version=1,
        metadata={},
        recorded_at=timezone.now(),
        replaying=True,
    )


def rows(model: type[models.Model] = AccountView) -> list[tuple[Any, ...]]:
    return list(model._base_manager.order_by("pk").values_list("pk", "owner", "balance"))


def first_words(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"].split(None, 1)[0].upper() for query in captured.captured_queries]


# -- load_row / delete_rows ----------------------------------------------------------------


def test_load_row_and_delete_rows() -> None:
    AccountView.objects.bulk_create([view(1), view(2, "bob"), view(3, "cid")])

    loaded = load_row(AccountView, 2)
    assert loaded is not None
    assert loaded.owner == "bob"
    assert load_row(AccountView, 99) is None

    delete_rows(AccountView, [1, 3, 99])
    assert rows() == [(2, "bob", "0.00")]


# -- get ----------------------------------------------------------------------------------


def test_get_of_a_missing_row_returns_none_and_asks_only_once() -> None:
    buffer = RowBuffer()

    with CaptureQueriesContext(connection) as first:
        assert buffer.get(AccountView, 1) is None
    with CaptureQueriesContext(connection) as second:
        assert buffer.get(AccountView, 1) is None
        assert buffer.get(AccountView, "1") is None  # the same key, as the pk type reads it

    assert len(first) == 1
    assert len(second) == 0


def test_get_of_an_existing_row_returns_it_and_then_the_same_instance() -> None:
    AccountView.objects.create(account_id=1, owner="ann", balance="3.00")
    buffer = RowBuffer()

    with CaptureQueriesContext(connection) as captured:
        row = buffer.get(AccountView, 1)
        again = buffer.get(AccountView, 1)

    assert row is not None
    assert (row.owner, row.balance) == ("ann", "3.00")
    assert again is row
    assert len(captured) == 1


def test_get_returns_what_was_put_or_deleted_without_a_query() -> None:
    AccountView.objects.create(account_id=2, owner="bob", balance="1.00")
    buffer = RowBuffer()
    new = view(1)

    with CaptureQueriesContext(connection) as captured:
        buffer.put(new)
        buffer.delete(AccountView, 2)
        assert buffer.get(AccountView, 1) is new
        assert buffer.get(AccountView, 2) is None

    assert len(captured) == 0
    assert rows() == [(2, "bob", "1.00")]  # nothing written yet


# -- prefetch -----------------------------------------------------------------------------


def test_prefetch_loads_many_rows_in_one_query_then_get_sends_none() -> None:
    AccountView.objects.bulk_create([view(i, f"owner {i}") for i in range(1, 51)])
    buffer = RowBuffer()

    with CaptureQueriesContext(connection) as prefetching:
        buffer.prefetch(AccountView, range(1, 51))
    with CaptureQueriesContext(connection) as getting:
        loaded = [buffer.get(AccountView, i) for i in range(1, 51)]

    assert len(prefetching) == 1
    assert len(getting) == 0
    assert [row.owner for row in loaded if row is not None] == [f"owner {i}" for i in range(1, 51)]


def test_prefetch_sends_one_query_per_thousand_keys() -> None:
    AccountView.objects.bulk_create([view(1, "first"), view(1500, "middle"), view(2500, "last")])
    buffer = RowBuffer()

    with CaptureQueriesContext(connection) as prefetching:
        buffer.prefetch(AccountView, range(1, 2501))  # 2,500 keys
    with CaptureQueriesContext(connection) as getting:
        owners = [getattr(buffer.get(AccountView, pk), "owner", None) for pk in (1, 1500, 2500)]

    assert len(prefetching) == 3
    assert owners == ["first", "middle", "last"]
    assert len(getting) == 0


def test_prefetch_skips_keys_invalid_for_the_primary_key() -> None:
    AccountView.objects.bulk_create([view(7, "seven")])
    buffer = RowBuffer()

    with CaptureQueriesContext(connection) as nothing_valid:
        buffer.prefetch(AccountView, ["order-7", None, "", "7.5x"])
    with CaptureQueriesContext(connection) as some_valid:
        buffer.prefetch(AccountView, ["order-7", "7", None])
    with CaptureQueriesContext(connection) as getting:
        row = buffer.get(AccountView, 7)

    assert len(nothing_valid) == 0
    assert len(some_valid) == 1
    assert row is not None
    assert row.owner == "seven"
    assert len(getting) == 0


def test_prefetch_leaves_buffered_rows_alone_and_missing_rows_to_get() -> None:
    AccountView.objects.bulk_create([view(1, "stored"), view(2, "stored")])
    buffer = RowBuffer()
    changed = view(1, "changed in this batch")
    buffer.put(changed)

    with CaptureQueriesContext(connection) as only_buffered:
        buffer.prefetch(AccountView, [1])
    buffer.prefetch(AccountView, [1, 2, 3])
    assert buffer.get(AccountView, 1) is changed  # the pending write is not overwritten
    with CaptureQueriesContext(connection) as missing:
        assert buffer.get(AccountView, 3) is None

    assert len(only_buffered) == 0
    assert len(missing) == 1  # a row that does not exist is looked up by get()


# -- flush --------------------------------------------------------------------------------


def test_flush_writes_puts_and_deletes_in_one_statement_each_and_empties_the_buffer() -> None:
    AccountView.objects.bulk_create([view(1), view(2, "bob"), view(3, "cid")])
    buffer = RowBuffer()
    buffer.prefetch(AccountView, [1, 2, 3])
    first = buffer.get(AccountView, 1)
    assert first is not None
    first.balance = "10.00"
    buffer.put(first)
    buffer.put(view(4, "dan"))
    buffer.put(view(5, "eve"))
    buffer.delete(AccountView, 2)
    buffer.delete(AccountView, 3)
    buffer.delete(AccountView, 99)  # not there: nothing to delete
    assert rows() == [(1, "ann", "0.00"), (2, "bob", "0.00"), (3, "cid", "0.00")]

    with CaptureQueriesContext(connection) as flushing:
        buffer.flush()

    assert rows() == [(1, "ann", "10.00"), (4, "dan", "0.00"), (5, "eve", "0.00")]
    assert first_words(flushing) == ["DELETE", "INSERT"]  # deletes first
    assert buffer.rows == {}
    assert buffer.dirty == set()
    with CaptureQueriesContext(connection) as again:
        buffer.flush()
    assert len(again) == 0


def test_a_row_put_then_deleted_in_one_batch_is_deleted_and_vice_versa() -> None:
    AccountView.objects.bulk_create([view(1, "kept"), view(2, "gone")])
    buffer = RowBuffer()
    buffer.delete(AccountView, 1)
    buffer.put(view(1, "back again"))
    buffer.put(view(2, "briefly"))
    buffer.delete(AccountView, 2)

    buffer.flush()

    assert rows() == [(1, "back again", "0.00")]


def test_rows_read_only_are_not_written() -> None:
    AccountView.objects.create(account_id=1, owner="ann", balance="0.00")
    buffer = RowBuffer()
    row = buffer.get(AccountView, 1)
    assert buffer.get(AccountView, 2) is None
    assert row is not None
    row.owner = "changed but never put"

    with CaptureQueriesContext(connection) as flushing:
        buffer.flush()

    assert len(flushing) == 0
    assert rows() == [(1, "ann", "0.00")]


def test_after_a_flush_get_reads_the_table_again() -> None:
    buffer = RowBuffer()
    assert buffer.get(AccountView, 1) is None
    buffer.flush()
    AccountView.objects.create(account_id=1, owner="written meanwhile", balance="0.00")

    row = buffer.get(AccountView, 1)

    assert row is not None
    assert row.owner == "written meanwhile"


# -- targets: a rebuild's shadow table ------------------------------------------------------


@pytest.fixture
def shadow() -> Iterator[type[models.Model]]:
    model = shadow_model(AccountView, "default")
    create_shadows({AccountView: model}, "default")
    yield model
    drop_shadows({AccountView: model}, "default")


def test_with_a_target_rows_come_from_and_go_to_the_target_table(
    shadow: type[models.Model],
) -> None:
    AccountView.objects.bulk_create([view(1, "live"), view(2, "live"), view(3, "live")])
    shadow._base_manager.bulk_create(
        [shadow(account_id=1, owner="shadow", balance="1.00", movements=1)]
    )
    buffer = RowBuffer(targets={AccountView: shadow})

    row = buffer.get(AccountView, 1)
    assert type(row) is AccountView  # handlers see the read model
    assert row is not None
    assert (row.owner, row.balance) == ("shadow", "1.00")
    assert buffer.get(AccountView, 2) is None  # only in the live table
    row.balance = "2.00"
    buffer.put(row)
    buffer.put(view(3, "rebuilt"))
    buffer.flush()

    assert rows(shadow) == [(1, "shadow", "2.00"), (3, "rebuilt", "0.00")]
    assert rows() == [(1, "live", "0.00"), (2, "live", "0.00"), (3, "live", "0.00")]

    buffer.delete(AccountView, 1)
    buffer.flush()
    assert rows(shadow) == [(3, "rebuilt", "0.00")]
    assert len(rows()) == 3


def test_with_a_target_prefetch_reads_the_target_table(shadow: type[models.Model]) -> None:
    AccountView.objects.bulk_create([view(1, "live"), view(2, "live")])
    shadow._base_manager.bulk_create([shadow(account_id=1, owner="shadow", balance="0.00")])
    buffer = RowBuffer(targets={AccountView: shadow})

    with CaptureQueriesContext(connection) as prefetching:
        buffer.prefetch(AccountView, [1, 2])
    first = buffer.get(AccountView, 1)
    assert type(first) is AccountView
    assert first is not None
    assert first.owner == "shadow"
    with CaptureQueriesContext(connection) as missing:
        assert buffer.get(AccountView, 2) is None

    assert len(prefetching) == 1
    assert len(missing) == 1  # not in the shadow: get() looks it up there, finds nothing


def test_a_projection_with_targets_buffers_and_its_handlers_see_the_read_model(
    shadow: type[models.Model],
) -> None:
    seen: list[type] = []

    class Views(Projection):
        abstract = True
        read_models = [AccountView]

        @handles(Deposited)
        def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
            row = self.get(AccountView, event.account_id) or view(event.account_id)
            seen.append(type(row))
            row.balance = f"{event.balance:.2f}"
            self.put(row)

    shadow._base_manager.bulk_create([shadow(account_id=1, owner="shadow", balance="0.00")])
    projection = Views(targets={AccountView: shadow})
    assert projection.buffer is not None

    for position, account_id in enumerate((1, 2), start=1):
        event = Deposited(account_id=account_id, amount=Decimal(5), balance=Decimal(5))
        projection.apply(event, envelope(event, position))
    assert rows(shadow) == [(1, "shadow", "0.00")]
    projection.flush()

    assert seen == [AccountView, AccountView]
    assert rows(shadow) == [(1, "shadow", "5.00"), (2, "ann", "5.00")]
    assert rows() == []


def test_with_targets_a_model_without_one_is_refused_not_written_to_its_live_table(
    shadow: type[models.Model],
) -> None:
    # A rebuild's buffer: a model the projection does not declare has no shadow, and its
    # live table must not receive the replayed rows.
    buffer = RowBuffer(targets={AccountView: shadow}, owner="tests.Views")
    buffer.put(view(1))
    with pytest.raises(RebuildWriteError, match=r"tests\.Views .* AccountMovementCount is not"):
        buffer.put(AccountMovementCount(account_id=1, movements=2))
    with pytest.raises(RebuildWriteError, match="read_models"):
        buffer.delete(AccountMovementCount, 1)
    buffer.flush()

    assert not AccountMovementCount.objects.exists()
    assert rows(shadow) == [(1, "ann", "0.00")]
    assert rows() == []


def test_without_targets_every_model_writes_its_own_table() -> None:
    buffer = RowBuffer()
    buffer.put(AccountMovementCount(account_id=1, movements=2))
    buffer.put(view(1))
    buffer.flush()

    assert list(AccountMovementCount.objects.values_list("account_id", "movements")) == [(1, 2)]
    assert rows() == [(1, "ann", "0.00")]
