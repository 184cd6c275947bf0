"""``db.shadow``: a rebuild's shadow tables, filled apart and swapped in inside a transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, models, transaction

from django_cqrs.db.shadow import (
    complete_shadows,
    create_shadows,
    drop_old_tables,
    drop_shadows,
    replace_rows,
    shadow_model,
    shadows_match,
    swap_tables,
    table_exists,
)
from tests.testapp.models import AccountLedger, AccountView

pytestmark = pytest.mark.django_db


def rows(model: type[models.Model]) -> list[tuple[Any, ...]]:
    return list(
        model._base_manager.order_by("pk").values_list(
            "account_id", "owner", "balance", "movements"
        )
    )


def tables() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


def indexes(model: type[models.Model]) -> dict[str, dict[str, Any]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {name: c for name, c in found.items() if c["index"] and not c["primary_key"]}


class Undo(Exception):
    pass


@pytest.fixture
def shadow() -> Any:
    model = shadow_model(AccountView, "default")
    yield model
    drop_shadows({AccountView: model}, "default")


def test_the_shadow_has_the_live_columns_on_a_table_of_its_own(shadow: Any) -> None:
    assert shadow is shadow_model(AccountView, "default")  # one class per live model
    assert shadow._meta.db_table == f"{AccountView._meta.db_table}_rebuild"
    assert [f.column for f in shadow._meta.concrete_fields] == [
        f.column for f in AccountView._meta.concrete_fields
    ]


def test_create_fill_swap(shadow: Any) -> None:
    AccountView.objects.create(account_id=1, owner="old", balance="1.00", movements=1)
    AccountView.objects.create(account_id=2, owner="stale", balance="2.00", movements=2)
    targets = {AccountView: shadow}
    assert not table_exists(shadow, "default")

    create_shadows(targets, "default")
    assert table_exists(shadow, "default")
    shadow.objects.bulk_create(
        [
            shadow(account_id=2, owner="bob", balance="20.00", movements=3),
            shadow(account_id=3, owner="cy", balance="30.00", movements=4),
        ]
    )
    filled = rows(shadow)
    complete_shadows(targets, "default")
    with transaction.atomic():
        swap_tables(targets, "default", lock_timeout=1)
    drop_old_tables(targets, "default", lock_timeout=1)

    # The live table is the filled shadow: row 1 is gone, row 2 replaced.
    assert rows(AccountView) == filled == [(2, "bob", "20.00", 3), (3, "cy", "30.00", 4)]
    assert not table_exists(shadow, "default")  # it took the live table's name
    assert not {t for t in tables() if t.endswith(("_rebuild", "_retired"))}


def test_the_portable_switch_copies_the_rows(shadow: Any) -> None:
    AccountView.objects.create(account_id=1, owner="old", balance="1.00", movements=1)
    create_shadows({AccountView: shadow}, "default")
    shadow.objects.create(account_id=3, owner="cy", balance="30.00", movements=4)

    with transaction.atomic():
        replace_rows(AccountView, shadow, "default")

    assert rows(AccountView) == rows(shadow) == [(3, "cy", "30.00", 4)]


def test_create_shadows_recreates_an_existing_shadow_empty(shadow: Any) -> None:
    create_shadows({AccountView: shadow}, "default")
    shadow.objects.create(account_id=7, owner="left over", balance="0", movements=0)

    create_shadows({AccountView: shadow}, "default")  # e.g. after a rebuild that died half way

    assert rows(shadow) == []


def test_a_swap_rolled_back_leaves_the_live_table_and_the_shadow(shadow: Any) -> None:
    AccountView.objects.create(account_id=1, owner="ann", balance="1.00", movements=1)
    targets = {AccountView: shadow}
    create_shadows(targets, "default")
    shadow.objects.create(account_id=5, owner="new", balance="5.00", movements=5)
    complete_shadows(targets, "default")

    seen: list[Any] = []

    def switch_then_fail() -> None:
        with transaction.atomic():
            swap_tables(targets, "default", lock_timeout=1)
            seen.extend(rows(AccountView))
            raise Undo

    with pytest.raises(Undo):
        switch_then_fail()

    assert seen == [(5, "new", "5.00", 5)]
    assert rows(AccountView) == [(1, "ann", "1.00", 1)]
    assert rows(shadow) == [(5, "new", "5.00", 5)]  # kept for the next attempt
    assert shadows_match(targets, "default")


def test_the_shadow_is_filled_without_its_secondary_indexes() -> None:
    # AccountLedger.account_id has db_index=True on the live table.
    shadow = shadow_model(AccountLedger, "default")
    targets = {AccountLedger: shadow}
    create_shadows(targets, "default")
    try:
        shadow.objects.create(position=1, account_id=3, amount=Decimal("1.50"))
        while_filled = indexes(shadow)
        complete_shadows(targets, "default")
        completed = indexes(shadow)
    finally:
        drop_shadows(targets, "default")

    live = indexes(AccountLedger)
    assert [c["columns"] for c in live.values()] == [["account_id"]]
    assert while_filled == {}
    if connection.vendor == "postgresql":  # built before the switch, under another name
        assert [c["columns"] for c in completed.values()] == [["account_id"]]
        assert set(completed).isdisjoint(live)
    else:  # SQLite: built by the swap, under the live name
        assert completed == {}


def test_a_shadow_whose_columns_differ_from_the_live_table_does_not_match(shadow: Any) -> None:
    targets = {AccountView: shadow}
    assert not shadows_match(targets, "default")
    create_shadows(targets, "default")
    assert shadows_match(targets, "default")

    with connection.cursor() as cursor:  # the live table migrated since the shadow was made
        cursor.execute(f'ALTER TABLE "{AccountView._meta.db_table}" ADD COLUMN "extra" integer')

    assert not shadows_match(targets, "default")
