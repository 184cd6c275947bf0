"""``db.redirect``: a rebuild's statements go to its shadow tables; other writes are refused.

The string functions first (the same answers on every database), then the execute
wrapper on the test database: ORM calls land in the shadow, refused writes are not sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from decimal import Decimal

import pytest
from django.db import connection, connections, models, transaction

from django_cqrs.db.redirect import ShadowRedirect, redirect_writes, rewrite_tables, written_tables
from django_cqrs.db.shadow import create_shadows, drop_shadows, shadow_model
from django_cqrs.exceptions import RebuildWriteError
from tests.testapp.models import AccountLedger, AccountView

TABLES = {"app_view": "app_view_rebuild", "order": "order_rebuild"}


@pytest.mark.parametrize(
    ("sql", "rewritten"),
    [
        (
            'SELECT "app_view"."id" FROM "app_view" WHERE "app_view"."id" = %s',
            'SELECT "app_view_rebuild"."id" FROM "app_view_rebuild" '
            'WHERE "app_view_rebuild"."id" = %s',
        ),
        (
            'INSERT INTO "APP_VIEW" ("id") VALUES (%s) RETURNING "App_View"."id"',
            'INSERT INTO "app_view_rebuild" ("id") VALUES (%s) RETURNING "app_view_rebuild"."id"',
        ),
        ("update APP_VIEW set n = n + 1", "update app_view_rebuild set n = n + 1"),
        ("DELETE FROM public.app_view", "DELETE FROM public.app_view_rebuild"),
        # String literals, longer names and the shadow itself are left alone.
        (
            'SELECT \'app_view\', "app_view_x", app_view_x, x_app_view FROM "app_view_rebuild"',
            'SELECT \'app_view\', "app_view_x", app_view_x, x_app_view FROM "app_view_rebuild"',
        ),
        ("SELECT 'it''s app_view' FROM app_view", "SELECT 'it''s app_view' FROM app_view_rebuild"),
        ("DELETE FROM [app_view]", "DELETE FROM [app_view_rebuild]"),
        # A table named like a keyword: only its quoted form is the table.
        (
            'SELECT * FROM "order" ORDER BY "order"."id"',
            'SELECT * FROM "order_rebuild" ORDER BY "order_rebuild"."id"',
        ),
    ],
)
def test_live_tables_are_renamed_to_their_shadows(sql: str, rewritten: str) -> None:
    assert rewrite_tables(sql, TABLES) == rewritten


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("SELECT * FROM t WHERE x IN (SELECT y FROM u)", []),
        ("SELECT 'DELETE FROM t'", []),
        ("SAVEPOINT s1", []),
        ('INSERT INTO "t" ("a") VALUES (%s) RETURNING "t"."id"', ["t"]),
        (
            'INSERT INTO "t" ("id", "n") VALUES (%s, %s) ON CONFLICT("id") DO UPDATE SET '
            '"n" = EXCLUDED."n"',
            ["t"],
        ),
        ('INSERT INTO "t" ("a") SELECT * FROM UNNEST((%s)::integer[])', ["t"]),
        (
            'UPDATE "t" SET "n" = ("t"."n" + %s) WHERE "t"."id" IN (SELECT U0."id" FROM "u" U0)',
            ["t"],
        ),
        ("UPDATE ONLY t SET n = 1", ["t"]),
        ('DELETE FROM "t" WHERE "t"."id" IN (%s, %s)', ["t"]),
        ("INSERT OR REPLACE INTO t VALUES (1)", ["t", "t"]),
        ("REPLACE INTO t VALUES (1)", ["t"]),
        ("UPDATE OR IGNORE t SET n = 1", ["t"]),
        ("WITH gone AS (DELETE FROM a RETURNING *) SELECT * FROM gone", ["a"]),
        ("WITH x AS (SELECT 1) INSERT INTO b SELECT * FROM x", ["b"]),
        ("EXPLAIN ANALYZE UPDATE t SET n = 1", ["t"]),
        ('SELECT * FROM "t" INNER JOIN "u" ON ("t"."u_id" = "u"."id") FOR UPDATE', ["t", "u"]),
        ('SELECT EXTRACT(YEAR FROM "t"."at") FROM "t" WHERE "t"."id" = 1 FOR UPDATE', ["t"]),
        ("SELECT * FROM t FOR NO KEY UPDATE", ["t"]),
        ("SELECT * FROM (SELECT * FROM t) s FOR SHARE", None),
        ('TRUNCATE TABLE a, "b"', ["a", "b"]),
        ('DELETE FROM main."t"', ["t"]),
        ("DELETE FROM [t]", ["t"]),
        ("DELETE FROM 't'", ["t"]),
        ("UPDATE `t` SET n = 1", ["t"]),
        ("CREATE TABLE t (id int)", None),
        ("DROP TABLE t", None),
        ("ALTER TABLE t ADD COLUMN n int", None),
        ("COPY t FROM STDIN", None),
        ("CALL refill()", None),
        ("SELECT * INTO t2 FROM t", None),
    ],
)
def test_written_tables_are_read_from_the_statement(sql: str, tables: list[str] | None) -> None:
    assert written_tables(sql) == tables


# -- the execute wrapper --------------------------------------------------------------


@pytest.fixture
def shadow() -> Iterator[type[models.Model]]:
    model = shadow_model(AccountView, "default")
    create_shadows({AccountView: model}, "default")
    yield model
    drop_shadows({AccountView: model}, "default")


def view_rows(model: type[models.Model]) -> list[tuple[object, ...]]:
    return list(
        model._base_manager.order_by("pk").values_list("pk", "owner", "balance", "movements")
    )


def redirected(shadow: type[models.Model]) -> AbstractContextManager[ShadowRedirect]:
    return redirect_writes(
        "tests.Views", {AccountView._meta.db_table: shadow._meta.db_table}, alias="default"
    )


@pytest.mark.django_db
def test_orm_calls_read_and_write_the_shadow_and_leave_the_live_table_alone(
    shadow: type[models.Model],
) -> None:
    AccountView.objects.create(account_id=9, owner="live", balance="1.00")
    with redirected(shadow) as guard:
        AccountView.objects.create(account_id=1, owner="ann", balance="0.00")
        AccountView.objects.bulk_create(
            [AccountView(account_id=n, owner=f"b{n}", balance="0.00") for n in (2, 3)]
        )
        AccountView.objects.filter(pk=1).update(movements=models.F("movements") + 2)
        view, created = AccountView.objects.update_or_create(
            account_id=2, defaults={"balance": "5.00"}
        )
        assert not created
        view.owner = "bob"
        view.save()
        AccountView.objects.get(pk=3).delete()
        AccountView.objects.filter(owner="nobody").delete()
        assert not AccountView.objects.filter(pk=9).exists()  # reads see the shadow
        assert AccountView.objects.count() == 2
    assert guard.refused is None
    assert view_rows(shadow) == [(1, "ann", "0.00", 2), (2, "bob", "5.00", 0)]
    assert view_rows(AccountView) == [(9, "live", "1.00", 0)]


@pytest.mark.django_db
def test_a_write_to_another_table_is_refused_before_it_is_sent(
    shadow: type[models.Model],
) -> None:
    with transaction.atomic(), redirected(shadow) as guard:
        with pytest.raises(RebuildWriteError) as excinfo, transaction.atomic():
            AccountLedger.objects.create(position=1, account_id=1, amount=Decimal(1))
        # Not sent: a statement the database rejected would have aborted the
        # transaction on PostgreSQL; this one is still usable.
        refused = pytest.raises(RebuildWriteError, match="cannot tell which table")
        with refused, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE app_refused (id integer)")
        AccountView.objects.create(account_id=1, owner="ann", balance="0.00")
    error = excinfo.value
    assert guard.refused is error
    assert error.table == AccountLedger._meta.db_table
    assert error.projection == "tests.Views"
    assert f"{AccountLedger._meta.db_table!r} is not a table of its read_models" in str(error)
    assert "Declare its model in the projection's read_models" in str(error)
    assert not AccountLedger.objects.exists()
    assert view_rows(shadow) == [(1, "ann", "0.00", 0)]
    assert "app_refused" not in connection.introspection.table_names()


@pytest.mark.django_db
def test_a_live_table_spelled_in_a_way_the_rewrite_misses_is_refused(
    shadow: type[models.Model],
) -> None:
    table = AccountView._meta.db_table
    refused = pytest.raises(RebuildWriteError, match="in a form the rebuild cannot redirect")
    with redirected(shadow), connection.cursor() as cursor, refused:
        # SQLite takes a string literal for a table name here; literals are not rewritten.
        cursor.execute(f"DELETE FROM '{table}'")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_other_threads_write_the_live_tables_meanwhile(shadow: type[models.Model]) -> None:
    errors: list[BaseException] = []

    def live_command() -> None:
        try:
            AccountView.objects.create(account_id=2, owner="live", balance="0.00")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    with redirected(shadow):
        AccountView.objects.create(account_id=1, owner="rebuilt", balance="0.00")
        thread = threading.Thread(target=live_command)
        thread.start()
        thread.join(10)
    assert not errors, errors
    assert view_rows(shadow) == [(1, "rebuilt", "0.00", 0)]
    assert view_rows(AccountView) == [(2, "live", "0.00", 0)]
