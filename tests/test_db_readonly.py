"""Query handlers read; any write attempted inside a query dispatch is refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections, transaction
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


def raw(sql: str, params: Any = None, *, using: str = "default") -> Callable[[], Any]:
    def body() -> Any:
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else None

    return body


def script(sql: str, *, using: str = "default") -> Callable[[], Any]:
    """SQLite's ``executescript()`` on a Django cursor (it bypasses the execute wrappers)."""

    def body() -> None:
        with connections[using].cursor() as cursor:
            cursor.executescript(sql)

    return body


def owners(using: str = "default") -> list[str]:
    return list(AccountView.objects.using(using).values_list("owner", flat=True))


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


# -- one statement per call, read in the database's own lexical rules -----------------

SEVERAL = {
    "commit then update": f"SELECT 1; COMMIT; UPDATE {VIEW_TABLE} SET owner = 'mallory'",
    "update after a read": f"SELECT owner FROM {VIEW_TABLE}; UPDATE {VIEW_TABLE} SET owner = 'm'",
    "after a comment": f"SELECT 1 /* ; */; DELETE FROM {VIEW_TABLE}",
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sql", SEVERAL.values(), ids=SEVERAL.keys())
def test_a_second_statement_is_refused_before_it_is_sent(account_id, sql):
    # PostgreSQL ran all of them (COMMIT ended the read-only transaction, and the UPDATE
    # then committed on its own); SQLite's driver raised a ProgrammingError.
    error = assert_refused(raw(sql))

    assert "more than one statement" in str(error)
    assert "one statement per execute()" in str(error)
    assert owners() == ["ann"]
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_a_parameter_spliced_into_a_literal_cannot_add_a_statement(account_id):
    # psycopg binds parameters on the client: %s inside quotes is replaced too, and the
    # value's own quotes then close the literal around it.
    value = f"; COMMIT; UPDATE {VIEW_TABLE} SET owner = $$mallory$$; SELECT "

    error = assert_refused(raw("SELECT '%s'", [value]))

    assert "placeholder inside a quoted string" in str(error)
    assert owners() == ["ann"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_the_statement_check_alone_refuses_a_second_statement(account_id):
    with override_settings(DJANGO_CQRS={"QUERY_READ_ONLY_TRANSACTION": False}):
        assert_refused(raw(SEVERAL["commit then update"]))

    assert owners() == ["ann"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT owner FROM {VIEW_TABLE};",
        f"SELECT owner FROM {VIEW_TABLE} WHERE owner <> ';' -- ; DELETE FROM x",
        f"/* a comment; */ SELECT owner FROM {VIEW_TABLE} WHERE owner <> 'x;'",
        f'SELECT owner AS "a;b" FROM {VIEW_TABLE}',
        f"EXPLAIN SELECT owner FROM {VIEW_TABLE}",
        f"WITH v AS (SELECT owner FROM {VIEW_TABLE}) SELECT owner FROM v",
        "VALUES ('ann')",
    ],
    ids=[
        "trailing semicolon",
        "in a string and a comment",
        "block comment",
        "identifier",
        "explain",
        "with",
        "values",
    ],
)
def test_reads_with_semicolons_in_literals_or_comments_work(account_id, sql):
    rows = run_query(raw(sql))

    if not sql.startswith("EXPLAIN"):
        assert rows == [("ann",)]


@pytest.mark.django_db
@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT owner FROM {VIEW_TABLE} WHERE owner <> E'\\';' AND owner <> $$;$$",
        f"SELECT owner FROM {VIEW_TABLE} WHERE owner <> $tag$ ' ; $$ $tag$",
        f"/* nested /* ; */ still a comment; */ SELECT owner FROM {VIEW_TABLE}",
        f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT owner FROM {VIEW_TABLE}",
    ],
    ids=["escape and dollar strings", "dollar tag", "nested comment", "explain analyze"],
)
def test_postgres_literals_are_read_as_postgresql_reads_them(account_id, sql):
    rows = run_query(raw(sql))

    if not sql.startswith("EXPLAIN"):
        assert rows == [("ann",)]


# -- transaction control ---------------------------------------------------------------


class CallerChangesItsMind(Exception):
    pass


def then_rolled_back(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a transaction of the caller's, which the caller then rolls back."""
    try:
        with transaction.atomic():
            result = body()
            raise CallerChangesItsMind
    except CallerChangesItsMind:
        return result


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "body",
    [raw("SELECT 1; COMMIT"), raw("COMMIT"), raw("END")],
    ids=["after a read", "commit", "end"],
)
def test_a_query_cannot_commit_the_callers_pending_work(account_id, body):
    def caller() -> None:
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("5")))
        with pytest.raises(QueryWriteError):
            run_query(body)

    then_rolled_back(caller)

    # Rolled back with the caller's transaction, not committed early by the query.
    assert Account.objects.get(pk=account_id).balance == Decimal("10")
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
def test_sqlite_executescript_cannot_commit_the_callers_pending_work(account_id):
    if connection.vendor != "sqlite":
        pytest.skip("executescript() is SQLite's")

    # executescript() commits a pending transaction before it runs the script.
    def caller() -> QueryWriteError:
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("5")))
        return assert_refused(script("SELECT 1"))

    error = then_rolled_back(caller)

    assert "COMMIT" in str(error)
    assert Account.objects.get(pk=account_id).balance == Decimal("10")
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sql", ["ROLLBACK", "SELECT 1; ROLLBACK", "ROLLBACK TRANSACTION"])
def test_a_query_cannot_discard_the_callers_pending_work(account_id, sql):
    with transaction.atomic():
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("5")))

        with pytest.raises(QueryWriteError, match=r"ROLLBACK|more than one statement"):
            run_query(raw(sql))

        # The caller's transaction goes on with its work in it.
        assert Account.objects.get(pk=account_id).balance == Decimal("15")
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("1")))

    assert Account.objects.get(pk=account_id).balance == Decimal("16")
    assert AccountView.objects.get(pk=account_id).balance == "16.00"


@pytest.mark.django_db
@pytest.mark.parametrize("statement", ["rollback to", "release"])
def test_a_query_cannot_end_a_savepoint_of_its_caller(account_id, statement):
    with transaction.atomic():
        sid = transaction.savepoint()
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("5")))
        sql = (
            connection.ops.savepoint_rollback_sql(sid)
            if statement == "rollback to"
            else connection.ops.savepoint_commit_sql(sid)
        )

        error = assert_refused(raw(sql))

        assert "a savepoint this query did not create" in str(error)
        assert Account.objects.get(pk=account_id).balance == Decimal("15")
        # The caller's savepoint is still there for the caller.
        transaction.savepoint_rollback(sid)
        assert Account.objects.get(pk=account_id).balance == Decimal("10")


@pytest.mark.django_db
def test_a_savepoint_of_the_query_cannot_take_the_guards_name(account_id):
    # Inside a caller's transaction the guard rolls back to its own savepoint at the end:
    # a newer one of the same name would be found instead.
    with transaction.atomic():
        error = assert_refused(raw('SAVEPOINT "cqrs_query_guard"'))
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("1")))

    assert "the guard's name" in str(error)
    assert Account.objects.get(pk=account_id).balance == Decimal("11")


@pytest.mark.django_db(transaction=True)
def test_sqlite_a_query_cannot_open_a_transaction_of_its_own(account_id):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's BEGIN goes through the cursor; PostgreSQL's never does")

    error = assert_refused(raw("BEGIN"))

    assert "BEGIN statement" in str(error)
    assert not connection.connection.in_transaction
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "SET TRANSACTION READ WRITE",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET default_transaction_read_only = off",
        "START TRANSACTION",
        "PREPARE TRANSACTION 'cqrs_guard'",
        "CALL cqrs_guard_procedure()",
        "DO $$BEGIN COMMIT; END$$",
    ],
)
def test_postgres_transaction_control_is_refused_by_name(account_id, sql):
    error = assert_refused(raw(sql))

    assert "attempted transaction control" in str(error)
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_a_caller_transaction", [False, True], ids=["alone", "in a caller's"])
def test_savepoints_of_atomic_blocks_in_a_handler_work(account_id, in_a_caller_transaction):
    def body() -> Any:
        with transaction.atomic():
            balance = AccountView.objects.get(pk=account_id).balance
            try:
                with transaction.atomic():
                    AccountView.objects.count()
                    raise LookupError  # rolls back to the handler's own savepoint
            except LookupError:
                pass
            with transaction.atomic(), transaction.atomic():
                return balance, AccountView.objects.count()

    if in_a_caller_transaction:
        with transaction.atomic():
            assert run_query(body) == ("10.00", 1)
            assert_commands_still_work(account_id)
    else:
        assert run_query(body) == ("10.00", 1)
        assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
def test_sqlite_a_handlers_transaction_takes_no_write_lock(account_id):
    if connection.vendor != "sqlite":
        pytest.skip("transaction_mode is SQLite's")
    # As the demo's settings have it: Django's atomic() then sends BEGIN IMMEDIATE, which
    # takes SQLite's one write lock. A query's transaction only reads.
    default = connections["default"]
    default.ensure_connection()
    sent: list[str] = []
    default.connection.set_trace_callback(sent.append)
    mode, default.transaction_mode = default.transaction_mode, "IMMEDIATE"

    def body() -> Any:
        with transaction.atomic():
            return AccountView.objects.get(pk=account_id).balance

    try:
        assert run_query(body) == "10.00"
    finally:
        default.transaction_mode = mode
        default.connection.set_trace_callback(None)
    assert [sql for sql in sent if sql.startswith("BEGIN")] == ["BEGIN"]
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
def test_sqlite_begin_immediate_of_its_own_is_refused(account_id):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's BEGIN goes through the cursor; PostgreSQL's never does")

    error = assert_refused(raw("BEGIN IMMEDIATE"))

    assert "BEGIN IMMEDIATE statement outside Django's atomic()" in str(error)


@pytest.mark.django_db
def test_a_refused_first_statement_does_not_spoil_the_callers_transaction(account_id):
    # Nothing was sent on the connection before the refusal: no savepoint of the guard
    # exists yet, and the caller's transaction must still be usable.
    with transaction.atomic():
        with pytest.raises(QueryWriteError):
            run_query(WRITES["aggregate save"])
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("2")))

    assert Account.objects.get(pk=account_id).balance == Decimal("12")


# -- every alias a query touches ---------------------------------------------------------

BOTH = ["default", "second"]


@pytest.fixture
def writing_function(account_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            CREATE FUNCTION cqrs_guard_second_insert() RETURNS integer AS $$
            BEGIN
                UPDATE {VIEW_TABLE} SET owner = 'mallory';
                RETURN 1;
            END $$ LANGUAGE plpgsql
            """
        )
    yield "SELECT cqrs_guard_second_insert()"
    with connection.cursor() as cursor:
        cursor.execute("DROP FUNCTION cqrs_guard_second_insert()")


@pytest.mark.django_db(transaction=True, databases=BOTH)
@pytest.mark.parametrize(
    "sql",
    [
        SEVERAL["update after a read"],
        f"UPDATE {VIEW_TABLE} SET owner = 'mallory'",
    ],
    ids=["second statement", "update"],
)
def test_a_second_alias_is_guarded(account_id, sql):
    assert_refused(raw(sql, using="second"))

    assert owners("second") == owners() == ["ann"]
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True, databases=BOTH)
@pytest.mark.postgres
def test_postgres_a_second_alias_refuses_a_write_hidden_in_a_function(account_id, writing_function):
    error = assert_refused(raw(writing_function, using="second"))

    assert "read-only transaction" in str(error)
    assert owners() == ["ann"]


@pytest.mark.django_db(transaction=True, databases=BOTH)
@pytest.mark.postgres
def test_postgres_an_escape_string_cannot_hide_a_data_modifying_cte(account_id):
    # E'\'' is one string holding a quote; read with '' escapes only, the string would run
    # on to the last quote and hide the DELETE.
    sql = (
        f"WITH x AS (SELECT E'\\''), gone AS (DELETE FROM {VIEW_TABLE} RETURNING 1) "
        "SELECT count(*) FROM gone --'"
    )
    for using in BOTH:
        error = assert_refused(raw(sql, using=using))
        assert "data-modifying statement" in str(error)

    assert owners() == ["ann"]


@pytest.mark.django_db(transaction=True, databases=BOTH)
@pytest.mark.postgres
def test_postgres_copy_on_a_second_alias_is_refused_by_the_database(account_id):
    # psycopg's cursor.copy() does not go through Django's execute wrappers; and the
    # connection opens inside the handler, so the guard protects it as it opens.
    connections["second"].close()

    def body() -> None:
        with connections["second"].cursor() as cursor:
            columns = "(account_id, owner, balance, movements)"
            with cursor.copy(f"COPY {VIEW_TABLE} {columns} FROM STDIN") as copy:
                copy.write_row((994, "copied", "0", 0))

    error = assert_refused(body)

    assert "read-only transaction" in str(error)
    assert owners() == ["ann"]


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_sqlite_a_second_alias_is_read_only_in_the_database(account_id):
    if connection.vendor != "sqlite":
        pytest.skip("REPLACE INTO and executescript() are SQLite's")
    replace = (
        f"WITH src(n) AS (SELECT 1) REPLACE INTO {VIEW_TABLE} "
        "(account_id, owner, balance, movements) "
        f"SELECT account_id, 'mallory', balance, movements FROM {VIEW_TABLE}"
    )

    assert_refused(raw(replace, using="second"))
    error = assert_refused(script(f"UPDATE {VIEW_TABLE} SET owner = 'mallory'", using="second"))

    assert "SQLite's read-only authorizer refused" in str(error)
    assert owners("second") == ["ann"]
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True)
def test_sqlite_executescript_cannot_switch_the_guard_off(account_id):
    if connection.vendor != "sqlite":
        pytest.skip("executescript() and PRAGMA are SQLite's")

    error = assert_refused(
        script(f"PRAGMA query_only = OFF; UPDATE {VIEW_TABLE} SET owner = 'mallory'")
    )

    assert "PRAGMA query_only" in str(error)
    assert owners() == ["ann"]
    assert_commands_still_work(account_id)


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_reads_on_a_second_alias_work_and_leave_it_as_it_was(account_id):
    # The handler's atomic() opens the second connection (PostgreSQL: closed here first),
    # and the guard's transaction with it.
    connections["second"].close()

    def body() -> Any:
        with transaction.atomic(using="second"):
            owner = AccountView.objects.using("second").get(pk=account_id).owner
        return owner, AccountView.objects.using("second").count(), AccountView.objects.count()

    assert run_query(body) == ("ann", 1, 1)

    second = connections["second"]
    assert not second.in_atomic_block
    AccountView.objects.using("second").filter(pk=account_id).update(owner="bob")
    assert owners() == ["bob"]


@pytest.mark.django_db(transaction=True, databases=BOTH)
@pytest.mark.postgres
def test_an_alias_the_query_does_not_use_is_not_connected(account_id):
    second = connections["second"]
    second.close()

    assert run_query(lambda: AccountView.objects.get(pk=account_id).owner) == "ann"

    assert second.connection is None


# -- legitimate reads, in every setting --------------------------------------------------


@pytest.mark.django_db
def test_django_reads_work_explain_and_iterator_included(account_id):
    def body() -> Any:
        plan = AccountView.objects.filter(pk=account_id).explain()
        rows = [view.owner for view in AccountView.objects.iterator(chunk_size=1)]
        return bool(plan), rows, AccountView.objects.filter(pk=account_id).exists()

    assert run_query(body) == (True, ["ann"], True)


@pytest.mark.django_db(transaction=True)
def test_a_query_inside_a_commands_transaction_leaves_it_to_the_command(account_id):
    from django_cqrs.db.transactions import command_transaction

    # On SQLite the command's transaction sends BEGIN IMMEDIATE only at its first write:
    # the query runs before it, and the write after it still takes the lock and commits.
    with command_transaction("default"):
        assert run_query(lambda: AccountView.objects.get(pk=account_id).owner) == "ann"
        AccountView.objects.filter(pk=account_id).update(owner="bob")

    assert owners() == ["bob"]


@pytest.mark.django_db
def test_a_query_dispatched_inside_a_query_is_guarded_under_its_own_name(account_id):
    inner_bus = QueryBus(registry=Registry("query", Query))

    @dataclasses.dataclass(frozen=True)
    class Inner(Query[Any]):
        pass

    inner_bus.handler(Inner)(lambda query: AccountView.objects.update(owner="mallory"))

    def outer() -> Any:
        with pytest.raises(QueryWriteError) as excinfo:
            inner_bus.dispatch(Inner())
        return str(excinfo.value), AccountView.objects.get(pk=account_id).owner

    message, owner = run_query(outer)

    assert "Inner" in message
    assert owner == "ann"
    # Writes after the inner query are still refused under the outer query's name.
    error = assert_refused(raw(f"UPDATE {VIEW_TABLE} SET owner = 'mallory'"))
    assert "RunInQuery" in str(error)
