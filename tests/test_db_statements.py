"""``db.statements``: what kind of statement a SQL string is, command by command.

Pure string functions: the same answers on every database (each test names the dialect
it reads in). What the query guard does with them is in ``test_db_readonly.py``.
"""

from __future__ import annotations

import pytest

from django_cqrs.db.statements import (
    OTHER,
    POSTGRESQL,
    SEVERAL,
    SPLICED,
    SQLITE,
    TRANSACTION_CONTROL,
    UNTERMINATED,
    WRITE,
    Control,
    Refusal,
    dialect_for,
    first_word,
    judge,
    write_reason,
)


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("SELECT 1", "SELECT"),
        ("  \n\t select 1", "SELECT"),
        ("((SELECT 1) UNION (SELECT 2))", "SELECT"),
        ("insert into t values (1)", "INSERT"),
        ("BEGIN IMMEDIATE", "BEGIN"),
        ("", ""),
        ("  ( ", ""),
    ],
)
def test_first_word_is_the_first_keyword_upper_case(sql: str, word: str) -> None:
    assert first_word(sql) == word


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t WHERE a = 1",
        "select count(*) from t",
        "(SELECT 1) UNION (SELECT 2)",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "EXPLAIN SELECT * FROM t",
        "VALUES (1), (2)",
        "SHOW transaction_read_only",
        "BEGIN",
        'SAVEPOINT "s1"',
        'RELEASE SAVEPOINT "s1"',
        "ROLLBACK",
        # Keywords inside string literals and quoted names do not count.
        "SELECT * FROM t WHERE note = 'FOR UPDATE'",
        "SELECT 'it''s INTO the void'",
        'SELECT "into" FROM t',
        "WITH x AS (SELECT 'DELETE' AS word) SELECT * FROM x",
    ],
)
def test_reads_and_transaction_control_are_not_writes(sql: str) -> None:
    assert write_reason(sql) is None


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("INSERT INTO t VALUES (1)", "INSERT statement"),
        ("update t set a = 1", "UPDATE statement"),
        ("DELETE FROM t", "DELETE statement"),
        ("CREATE TABLE t (a int)", "CREATE statement"),
        ("PRAGMA query_only = OFF", "PRAGMA statement"),
        ("SET transaction_read_only = off", "SET statement"),
        ("COMMIT", "COMMIT statement"),
        ("", "empty statement"),
        ("SELECT * FROM t FOR UPDATE", "SELECT that locks rows or creates a table"),
        ("SELECT * FROM t FOR NO KEY UPDATE", "SELECT that locks rows or creates a table"),
        ("SELECT * FROM t for share", "SELECT that locks rows or creates a table"),
        ("SELECT * FROM t FOR KEY SHARE", "SELECT that locks rows or creates a table"),
        ("SELECT * INTO copy FROM t", "SELECT that locks rows or creates a table"),
        ("WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone", "data-modifying statement"),
        ("WITH x AS (INSERT INTO t VALUES (1)) SELECT 1", "data-modifying statement"),
        ("EXPLAIN ANALYZE UPDATE t SET a = 1", "data-modifying statement"),
        ("EXPLAIN ANALYZE TRUNCATE t", "data-modifying statement"),
    ],
)
def test_writes_are_named_by_why_they_write(sql: str, reason: str) -> None:
    assert write_reason(sql) == reason


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT 1; UPDATE t SET a = 1", "UPDATE statement"),
        ("SELECT 1; COMMIT", "COMMIT statement"),
        # E'\'' is one string holding a quote: the DELETE is outside it.
        (
            "WITH x AS (SELECT E'\\''), g AS (DELETE FROM t RETURNING 1) SELECT 1 --'",
            "data-modifying statement",
        ),
        (
            "WITH x AS (SELECT 1) SELECT * FROM t FOR SHARE",
            "SELECT that locks rows or creates a table",
        ),
        (
            "WITH x AS (SELECT 1) SELECT * INTO t2 FROM x",
            "SELECT that locks rows or creates a table",
        ),
        ("EXPLAIN ANALYZE CREATE TABLE t2 AS SELECT 1", "CREATE statement"),
        ("EXPLAIN ANALYZE EXECUTE prepared_write", "EXECUTE statement"),
    ],
)
def test_every_command_is_judged(sql: str, reason: str) -> None:
    assert write_reason(sql) == reason


# -- judge: the query guard's verdict ------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "t"."id", "t"."owner" FROM "t" WHERE "t"."id" = %s LIMIT 21',
        "SELECT 1;",
        "SELECT 1; -- the end",
        "SELECT 1 ;  /* really */ ;",
        "  -- a comment first\nSELECT 1",
        "SELECT ';' AS semicolon",
        "SELECT 'it''s; fine'",
        'SELECT 1 AS "a;b"',
        "SELECT E'\\';' AS escaped_quote",
        "SELECT $$ ; $$, $tag$ ' ; $$ $tag$",
        "SELECT $1",
        "/* nested /* ; */ still ; a comment */ SELECT 1",
        "WITH v AS (SELECT 'DELETE' AS word) SELECT * FROM v",
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM t",
        "EXPLAIN ANALYZE VERBOSE WITH v AS (SELECT 1) SELECT * FROM v",
        "VALUES (1), (2)",
        "SHOW transaction_read_only",
        "SELECT 'C:\\dir'",  # a backslash, the same string either way
    ],
)
def test_postgres_reads_pass(sql: str) -> None:
    assert judge(sql, POSTGRESQL, bound="%s" in sql) is None


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        ("SELECT 1; COMMIT; UPDATE t SET a = 1", "SELECT; COMMIT; UPDATE"),
        ("SELECT 1;SELECT 2", "SELECT; SELECT"),
        ("SELECT 1 -- x\n; DELETE FROM t", "SELECT; DELETE"),
        ("SELECT a$b$ FROM t; DELETE FROM t", "SELECT; DELETE"),  # a$b$ is a name, not a tag
        # The quote is escaped inside E'...': the string ends later than '' rules say.
        ("SELECT E'\\''; DELETE FROM t; --'", "SELECT; DELETE"),
        # A backslash in a plain string is read both ways (standard_conforming_strings
        # could be off): either reading with a second command is refused.
        ("SELECT 'a\\', '; DELETE FROM t; --'", "SELECT; DELETE"),
        ("SELECT $q$ ' $q$; DELETE FROM t; --'", "SELECT; DELETE"),
    ],
)
def test_postgres_a_second_command_is_found_whatever_the_literals(
    sql: str, statements: str
) -> None:
    assert judge(sql, POSTGRESQL) == Refusal(SEVERAL, statements)


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        # SQLite comments do not nest: the first */ ends this one.
        ("/* a /* b */ ; DELETE FROM t */ SELECT 1", Refusal(WRITE, "DELETE statement")),
        ("SELECT [a;b]; DELETE FROM t", Refusal(SEVERAL, "SELECT; DELETE")),
    ],
)
def test_sqlite_comments_and_names_follow_sqlite(sql: str, refusal: Refusal) -> None:
    assert judge(sql, SQLITE) == refusal


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT `a;b`, [c;d] FROM t",
        "SELECT 1 /* a comment SQLite lets run to the end",
        "SELECT 'C:\\'",  # SQLite strings take no backslash escapes
    ],
)
def test_sqlite_reads_pass(sql: str) -> None:
    assert judge(sql, SQLITE) is None


@pytest.mark.parametrize(
    ("sql", "statement"),
    [
        ("SELECT 'unterminated", "string"),
        ('SELECT "unterminated; DELETE FROM t', "quoted identifier"),
        ("SELECT $$ unterminated", "dollar-quoted string"),
        ("SELECT 1 /* unterminated", "comment"),
        ("SELECT 'C:\\'", "string"),  # unterminated when backslashes escape
    ],
)
def test_postgres_unterminated_literals_are_refused(sql: str, statement: str) -> None:
    assert judge(sql, POSTGRESQL) == Refusal(UNTERMINATED, statement)


@pytest.mark.parametrize(
    "sql",
    ["SELECT '%s'", 'SELECT "%s" FROM t', "SELECT 1 -- %s\n", "SELECT $$%(name)s$$"],
)
def test_postgres_a_placeholder_inside_a_literal_is_refused_with_parameters(sql: str) -> None:
    verdict = judge(sql, POSTGRESQL, bound=True)

    assert isinstance(verdict, Refusal)
    assert verdict.kind == SPLICED
    # Without parameters the driver splices nothing; SQLite binds them in the database.
    assert judge(sql, POSTGRESQL, bound=False) is None
    assert judge(sql.replace("$$", "'"), SQLITE, bound=True) is None


def test_a_literal_percent_sign_is_not_a_placeholder() -> None:
    assert judge("SELECT '100%%'", POSTGRESQL, bound=True) is None


@pytest.mark.parametrize(
    ("sql", "dialect", "statement"),
    [
        ("COMMIT", POSTGRESQL, "COMMIT statement"),
        ("END", SQLITE, "END statement"),
        ("ROLLBACK", POSTGRESQL, "ROLLBACK statement"),
        ("ROLLBACK AND CHAIN", POSTGRESQL, "ROLLBACK statement"),
        ("ABORT", POSTGRESQL, "ABORT statement"),
        ("BEGIN", POSTGRESQL, "BEGIN statement"),
        ("START TRANSACTION READ WRITE", POSTGRESQL, "START TRANSACTION statement"),
        ("PREPARE TRANSACTION 'x'", POSTGRESQL, "PREPARE TRANSACTION statement"),
        ("COMMIT PREPARED 'x'", POSTGRESQL, "COMMIT PREPARED statement"),
        ("ROLLBACK PREPARED 'x'", POSTGRESQL, "ROLLBACK PREPARED statement"),
        ("SET TRANSACTION READ WRITE", POSTGRESQL, "SET TRANSACTION statement"),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            POSTGRESQL,
            "SET SESSION statement",
        ),
        ("SET transaction_read_only = off", POSTGRESQL, "SET TRANSACTION_READ_ONLY statement"),
        ("RESET ALL", POSTGRESQL, "RESET ALL statement"),
        ("CALL commits()", POSTGRESQL, "CALL statement"),
        ("DO $$BEGIN COMMIT; END$$", POSTGRESQL, "DO statement"),
    ],
)
def test_transaction_control_is_refused_by_name(sql: str, dialect, statement: str) -> None:
    assert judge(sql, dialect) == Refusal(TRANSACTION_CONTROL, statement)


@pytest.mark.parametrize(
    ("sql", "statement"),
    [
        ("PRAGMA query_only = OFF", "PRAGMA statement"),
        ("ATTACH 'other.db' AS other", "ATTACH statement"),
        ("VACUUM", "VACUUM statement"),
        ("VACUUM INTO 'copy.db'", "VACUUM statement"),
        ("REINDEX", "REINDEX statement"),
        (
            "WITH s(n) AS (SELECT 1) REPLACE INTO t SELECT n FROM s",
            "SELECT that locks rows or creates a table",
        ),
    ],
)
def test_sqlite_statements_that_write_outside_the_tables_are_refused(
    sql: str, statement: str
) -> None:
    assert judge(sql, SQLITE) == Refusal(WRITE, statement)


@pytest.mark.parametrize(
    ("sql", "dialect", "control"),
    [
        ('SAVEPOINT "s1_x2"', POSTGRESQL, Control("savepoint", "s1_x2", "SAVEPOINT s1_x2")),
        (
            'RELEASE SAVEPOINT "s1_x2"',
            POSTGRESQL,
            Control("release", "s1_x2", "RELEASE SAVEPOINT s1_x2"),
        ),
        ("RELEASE s1", POSTGRESQL, Control("release", "s1", "RELEASE SAVEPOINT s1")),
        # Unquoted names fold to lower case; PostgreSQL keeps a quoted name's case.
        (
            "ROLLBACK TO SAVEPOINT Mixed",
            POSTGRESQL,
            Control("rollback to", "mixed", "ROLLBACK TO SAVEPOINT mixed"),
        ),
        (
            'ROLLBACK WORK TO "Mixed"',
            POSTGRESQL,
            Control("rollback to", "Mixed", "ROLLBACK TO SAVEPOINT Mixed"),
        ),
        # SQLite compares savepoint names without regard to case.
        (
            'ROLLBACK TO "Mixed"',
            SQLITE,
            Control("rollback to", "mixed", "ROLLBACK TO SAVEPOINT mixed"),
        ),
        ("BEGIN", SQLITE, Control("begin", "", "BEGIN statement")),
        (
            "BEGIN DEFERRED TRANSACTION",
            SQLITE,
            Control("begin", "deferred", "BEGIN DEFERRED statement"),
        ),
        ("BEGIN IMMEDIATE", SQLITE, Control("begin", "immediate", "BEGIN IMMEDIATE statement")),
    ],
)
def test_savepoints_and_sqlites_begin_are_left_to_the_guard(sql: str, dialect, control) -> None:
    assert judge(sql, dialect) == control


def test_postgres_savepoint_names_are_cut_as_postgresql_cuts_them() -> None:
    long_name = "s" * 70

    verdict = judge(f"RELEASE SAVEPOINT {long_name}", POSTGRESQL)

    assert isinstance(verdict, Control)
    assert verdict.name == "s" * 63


@pytest.mark.parametrize(
    ("sql", "verdict"),
    [
        ("SELECT * FROM t FOR SHARE", Refusal(WRITE, "SELECT that locks rows or creates a table")),
        ('SELECT * FROM "for share"', None),
        (
            "SELECT 1 -- x",
            Refusal("a comment, on a database whose comment syntax the guard does not know", "--"),
        ),
    ],
)
def test_other_databases_get_standard_sql_and_no_comments(sql: str, verdict) -> None:
    assert judge(sql, OTHER) == verdict


def test_dialects_of_django_vendors() -> None:
    assert dialect_for("postgresql") is POSTGRESQL
    assert dialect_for("sqlite") is SQLITE
    assert dialect_for("mysql") is OTHER
