"""Query handlers read; any write attempted inside a query dispatch is refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Count, Sum
from django.test import override_settings

from django_cqrs import Query, command_bus
from django_cqrs.bus import QueryBus
from django_cqrs.db.statements import write_reason
from django_cqrs.exceptions import QueryWriteError
from django_cqrs.registry import Registry
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.models import Account, AccountView

VIEW_TABLE = AccountView._meta.db_table


@dataclasses.dataclass(frozen=True)
class RunInQuery(Query[Any]):
    label: str


def run_query(body: Callable[[], Any]) -> Any:
    """Dispatch a query whose handler runs ``body`` (through the configured middleware)."""
    bus = QueryBus(registry=Registry("query", Query))
    bus.handler(RunInQuery)(lambda query: body())
    return bus.dispatch(RunInQuery(label="test"))


def counts() -> tuple[int, int]:
    return AccountView.objects.count(), Account.objects.count()


def views() -> list[tuple[Any, ...]]:
    return list(AccountView.objects.order_by("pk").values_list("pk", "owner", "balance"))


@pytest.fixture
def account_id() -> int:
    account_id = command_bus.dispatch(OpenAccount(owner="ann")).value
    command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("10")))
    return account_id


def raw(sql: str, params: Any = None) -> Callable[[], Any]:
    def body() -> Any:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else None

    return body


def assert_refused(body: Callable[[], Any]) -> QueryWriteError:
    before = views()
    before_counts = counts()

    with pytest.raises(QueryWriteError) as excinfo:
        run_query(body)

    assert views() == before
    assert counts() == before_counts
    message = str(excinfo.value)
    assert "tests.test_db_readonly.RunInQuery" in message
    return excinfo.value


def assert_commands_still_work(account_id: int) -> None:
    result = command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("1")))
    assert result.position is not None
    assert Account.objects.get(pk=account_id).balance == result.value
    assert AccountView.objects.get(pk=account_id).balance == f"{result.value:.2f}"


WRITES: dict[str, Callable[[], Any]] = {
    "orm create": lambda: AccountView.objects.create(account_id=999, owner="x", balance="0"),
    "orm update": lambda: AccountView.objects.update(balance="1000000.00"),
    "orm delete": lambda: AccountView.objects.all().delete(),
    "instance save": lambda: _save_first_view(),
    "bulk create": lambda: AccountView.objects.bulk_create(
        [AccountView(account_id=998, owner="y", balance="0")]
    ),
    "aggregate save": lambda: Account.objects.create(owner="sneaky"),
    "raw insert": raw(
        f"INSERT INTO {VIEW_TABLE} (account_id, owner, balance, movements) "
        "VALUES (997, 'z', '0', 0)"
    ),
    "raw update lowercase": raw(f"  update {VIEW_TABLE} set owner = 'mallory'"),
    "raw delete in parens": raw(f"(DELETE FROM {VIEW_TABLE})"),
    "with insert": raw(
        f"WITH src(n) AS (SELECT 996) "
        f"INSERT INTO {VIEW_TABLE} (account_id, owner, balance, movements) "
        f"SELECT n, 'cte', '0', 0 FROM src"
    ),
    "select for update raw": raw(f"SELECT * FROM {VIEW_TABLE} FOR UPDATE"),
    "create table": raw("CREATE TABLE cqrs_guard_sneaky (id integer)"),
    "drop table": raw(f"DROP TABLE {VIEW_TABLE}"),
}


def _save_first_view() -> None:
    view = AccountView.objects.first()
    assert view is not None
    view.owner = "mallory"
    view.save()


@pytest.mark.django_db
@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_write_in_query_handler_is_refused_and_changes_nothing(account_id, write):
    assert_refused(write)

    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "write", [WRITES["orm create"], WRITES["orm delete"], WRITES["raw insert"]]
)
def test_write_in_query_handler_is_refused_outside_a_transaction(account_id, write):
    assert_refused(write)

    assert_commands_still_work(account_id)


@pytest.mark.django_db
def test_refusal_names_the_statement(account_id):
    error = assert_refused(WRITES["raw update lowercase"])

    assert "UPDATE statement" in str(error)
    assert "dispatch a command" in str(error)


@pytest.mark.django_db
def test_a_caught_refusal_does_not_spoil_the_surrounding_transaction(account_id):
    with transaction.atomic():
        with pytest.raises(QueryWriteError):
            run_query(WRITES["orm create"])
        # Still usable: reads and writes in the same transaction go on.
        assert AccountView.objects.filter(pk=account_id).exists()
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("2")))

    assert Account.objects.get(pk=account_id).balance == Decimal("12")


@pytest.mark.django_db
@pytest.mark.postgres
def test_select_for_update_is_refused(account_id):
    assert_refused(lambda: list(AccountView.objects.select_for_update()))

    assert_commands_still_work(account_id)


@pytest.mark.django_db
@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        f"WITH gone AS (DELETE FROM {VIEW_TABLE} RETURNING account_id) SELECT count(*) FROM gone",
        f"WITH moved AS (UPDATE {VIEW_TABLE} SET owner = 'm' RETURNING 1) SELECT 1",
        f"EXPLAIN ANALYZE DELETE FROM {VIEW_TABLE}",
        f"SELECT * INTO cqrs_guard_copy FROM {VIEW_TABLE}",
        f"SELECT * FROM {VIEW_TABLE} FOR NO KEY UPDATE",
        f"SELECT * FROM {VIEW_TABLE} FOR SHARE",
    ],
    ids=["cte delete", "cte update", "explain analyze", "select into", "no key update", "share"],
)
def test_postgres_writes_hidden_in_selects_are_refused(account_id, sql):
    assert_refused(raw(sql))

    assert_commands_still_work(account_id)


@pytest.mark.django_db
@pytest.mark.postgres
def test_write_hidden_in_a_function_is_refused_by_the_read_only_transaction(account_id):
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            CREATE FUNCTION cqrs_guard_sneaky_insert() RETURNS integer AS $$
            BEGIN
                INSERT INTO {VIEW_TABLE} (account_id, owner, balance, movements)
                VALUES (995, 'sneaky', '0', 0);
                RETURN 1;
            END $$ LANGUAGE plpgsql
            """
        )
    # The statement starts with SELECT: only PostgreSQL itself can see the write.
    assert write_reason("SELECT cqrs_guard_sneaky_insert()") is None

    error = assert_refused(raw("SELECT cqrs_guard_sneaky_insert()"))

    assert "read-only transaction" in str(error)
    assert not AccountView.objects.filter(pk=995).exists()
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_connection_is_not_left_read_only_after_a_query(account_id):
    run_query(lambda: AccountView.objects.count())

    with connection.cursor() as cursor:
        cursor.execute("SHOW transaction_read_only")
        assert cursor.fetchone() == ("off",)
    assert_commands_still_work(account_id)


@pytest.mark.django_db
@pytest.mark.postgres
def test_connection_is_not_left_read_only_inside_an_outer_transaction(account_id):
    with transaction.atomic():
        run_query(lambda: AccountView.objects.count())
        with connection.cursor() as cursor:
            cursor.execute("SHOW transaction_read_only")
            assert cursor.fetchone() == ("off",)
        assert_commands_still_work(account_id)


# -- reads -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_plain_reads_work(account_id):
    def body() -> Any:
        view = AccountView.objects.get(pk=account_id)
        totals = AccountView.objects.aggregate(n=Count("pk"), moves=Sum("movements"))
        owners = list(
            AccountView.objects.filter(owner__startswith="a").values_list("owner", flat=True)
        )
        return view.balance, totals, owners

    assert run_query(body) == ("10.00", {"n": 1, "moves": 1}, ["ann"])
    assert_commands_still_work(account_id)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT owner FROM {VIEW_TABLE} WHERE owner <> 'DELETE FROM x; FOR UPDATE'",
        f"WITH v AS (SELECT owner FROM {VIEW_TABLE}) SELECT owner FROM v",
        f"  select owner from {VIEW_TABLE}",
        f'SELECT owner AS "updated by" FROM {VIEW_TABLE}',
    ],
    ids=["keywords in a string", "read cte", "lowercase", "quoted alias"],
)
def test_raw_reads_work(account_id, sql):
    assert run_query(raw(sql)) == [("ann",)]


@pytest.mark.django_db(transaction=True)
def test_reads_inside_an_atomic_block_work(account_id):
    def body() -> Any:
        with transaction.atomic():
            return AccountView.objects.get(pk=account_id).balance

    assert run_query(body) == "10.00"
    assert_commands_still_work(account_id)


@pytest.mark.django_db
def test_the_real_query_bus_guards_registered_handlers(account_id):
    from django_cqrs import query_bus
    from tests.testapp.commands import GetBalance

    assert query_bus.dispatch(GetBalance(account_id=account_id)) == "10.00"


@pytest.mark.django_db
def test_without_the_read_only_middleware_nothing_is_guarded(account_id):
    # Guarding is the middleware's job: removing it from the setting turns it off.
    with override_settings(DJANGO_CQRS={"QUERY_MIDDLEWARE": []}):
        run_query(WRITES["orm create"])

    assert AccountView.objects.filter(pk=999).exists()


# -- what the database itself refuses, and what the guard costs ------------------------


@pytest.mark.django_db
def test_the_database_refuses_a_write_the_statement_check_misses(account_id, monkeypatch):
    # Pretend the statement check misses an INSERT: the database must refuse it anyway
    # (SQLite: the read-only authorizer; PostgreSQL: the READ ONLY transaction).
    monkeypatch.setattr("django_cqrs.db.readonly.judge", lambda sql, dialect, bound: None)

    error = assert_refused(WRITES["raw insert"])

    assert "read" in str(error).lower()
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
def test_a_query_outside_a_transaction_sends_only_its_own_statements(account_id):
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert run_query(lambda: AccountView.objects.get(pk=account_id).owner) == "ann"

    # SQLite: no transaction (its BEGIN would take the write lock and queue readers
    # behind writers). PostgreSQL: the READ ONLY transaction's BEGIN and ROLLBACK, and no
    # SET LOCAL statement of its own (psycopg sends BEGIN READ ONLY).
    statements = [q["sql"].split(None, 1)[0].upper() for q in captured.captured_queries]
    if connection.vendor == "postgresql":
        assert statements == ["BEGIN", "SELECT", "ROLLBACK"]
    else:
        assert statements == ["SELECT"]
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_a_query_outside_a_transaction_runs_read_only(account_id):
    def body() -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SHOW transaction_read_only")
            return cursor.fetchone()

    assert run_query(body) == ("on",)


@pytest.mark.django_db(transaction=True)
def test_sqlite_connection_is_not_left_query_only(account_id):
    if connection.vendor != "sqlite":
        pytest.skip("PRAGMA query_only is SQLite's")
    run_query(lambda: AccountView.objects.count())

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA query_only")
        assert cursor.fetchone() == (0,)
    assert_commands_still_work(account_id)
