"""``db.statements``: what kind of statement a SQL string is, by its first keyword.

Pure string functions: the same answers on every database. What the query guard does
with them is in ``test_db_readonly.py``.
"""

from __future__ import annotations

import pytest

from django_cqrs.db.statements import first_word, write_reason


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
