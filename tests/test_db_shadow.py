"""``db.shadow``: a rebuild's shadow table, filled apart and switched in inside a transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, models, transaction

from django_cqrs.db.shadow import create_table, drop_table, replace_rows, shadow_model, table_exists
from tests.testapp.models import AccountLedger, AccountView

pytestmark = pytest.mark.django_db


def rows(model: type[models.Model]) -> list[tuple[Any, ...]]:
    return list(
        model._base_manager.order_by("pk").values_list(
            "account_id", "owner", "balance", "movements"
        )
    )


class Undo(Exception):
    pass


@pytest.fixture
def shadow() -> Any:
    model = shadow_model(AccountView, "default")
    yield model
    drop_table(model, "default")


def test_the_shadow_has_the_live_columns_on_a_table_of_its_own(shadow: Any) -> None:
    assert shadow is shadow_model(AccountView, "default")  # one class per live model
    assert shadow._meta.db_table == f"{AccountView._meta.db_table}_rebuild"
    assert [f.column for f in shadow._meta.concrete_fields] == [
        f.column for f in AccountView._meta.concrete_fields
    ]


def test_create_fill_switch_and_drop(shadow: Any) -> None:
    AccountView.objects.create(account_id=1, owner="old", balance="1.00", movements=1)
    AccountView.objects.create(account_id=2, owner="stale", balance="2.00", movements=2)
    assert not table_exists(shadow, "default")

    with transaction.atomic():
        create_table(shadow, "default")
        assert table_exists(shadow, "default")
        shadow.objects.bulk_create(
            [
                shadow(account_id=2, owner="bob", balance="20.00", movements=3),
                shadow(account_id=3, owner="cy", balance="30.00", movements=4),
            ]
        )
        replace_rows(AccountView, shadow, "default")

    # The live table holds exactly the shadow's rows: row 1 is gone, row 2 replaced.
    assert rows(AccountView) == [(2, "bob", "20.00", 3), (3, "cy", "30.00", 4)]
    assert rows(AccountView) == rows(shadow)
    drop_table(shadow, "default")
    assert not table_exists(shadow, "default")
    drop_table(shadow, "default")  # dropping a missing table is no error


def test_create_table_recreates_an_existing_shadow_empty(shadow: Any) -> None:
    create_table(shadow, "default")
    shadow.objects.create(account_id=7, owner="left over", balance="0", movements=0)

    create_table(shadow, "default")  # e.g. after a rebuild that died half way

    assert rows(shadow) == []


def test_a_switch_rolled_back_leaves_the_live_rows(shadow: Any) -> None:
    AccountView.objects.create(account_id=1, owner="ann", balance="1.00", movements=1)
    create_table(shadow, "default")
    shadow.objects.create(account_id=5, owner="new", balance="5.00", movements=5)

    seen: list[Any] = []

    def switch_then_fail() -> None:
        with transaction.atomic():
            replace_rows(AccountView, shadow, "default")
            seen.extend(rows(AccountView))
            raise Undo

    with pytest.raises(Undo):
        switch_then_fail()

    assert seen == [(5, "new", "5.00", 5)]

    assert rows(AccountView) == [(1, "ann", "1.00", 1)]


def test_the_shadow_has_no_secondary_index_and_no_foreign_key() -> None:
    # AccountLedger.account_id has db_index=True on the live table.
    shadow = shadow_model(AccountLedger, "default")
    create_table(shadow, "default")
    try:
        with connection.cursor() as cursor:
            live = connection.introspection.get_constraints(cursor, AccountLedger._meta.db_table)
            copy = connection.introspection.get_constraints(cursor, shadow._meta.db_table)
        shadow.objects.create(position=1, account_id=3, amount=Decimal("1.50"))
    finally:
        drop_table(shadow, "default")

    assert any(c["index"] and c["columns"] == ["account_id"] for c in live.values())
    assert not any((c["index"] and not c["primary_key"]) or c["foreign_key"] for c in copy.values())
