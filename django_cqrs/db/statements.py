"""What kind of statement a SQL string is, judged by its first keyword.

    from django_cqrs.db.statements import first_word, write_reason

    first_word("  (SELECT 1)")                    # "SELECT"
    write_reason("SELECT * FROM t FOR UPDATE")    # "SELECT that locks rows or creates a table"
    write_reason("SELECT 1")                      # None: a read

Statements are allowed by their first keyword rather than blocked by a list of known
writes, so ``SELECT ... FOR UPDATE``, ``SELECT ... INTO`` and ``WITH ... INSERT`` are
caught; string literals are blanked first so a quoted keyword does not count.
"""

from __future__ import annotations

import re

#: Statements that write nothing themselves; SQLite's BEGIN goes through the cursor.
READ_FIRST_WORDS = frozenset({"SELECT", "WITH", "EXPLAIN", "VALUES", "BEGIN"})

#: Reads, and transaction control (which writes nothing itself).
_ALLOWED_FIRST_WORDS = {
    *("SELECT", "WITH", "EXPLAIN", "SHOW", "VALUES"),
    *("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK"),
}
_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_WRITE_IN_SELECT = re.compile(
    r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|SHARE|KEY\s+SHARE)\b|\bINTO\b", re.IGNORECASE
)
_WRITE_IN_WITH = re.compile(r"\b(?:INSERT|UPDATE|DELETE|MERGE|TRUNCATE)\b", re.IGNORECASE)


def first_word(sql: str) -> str:
    """The first keyword of ``sql``, upper case (leading blanks and parentheses skipped)."""
    stripped = sql.lstrip(" \t\r\n(")
    return stripped.split(None, 1)[0].upper() if stripped else ""


def write_reason(sql: str) -> str | None:
    """Why ``sql`` is not a read, or None when it is one (judged by its first keyword)."""
    first = first_word(sql)
    if first not in _ALLOWED_FIRST_WORDS:
        return f"{first or 'empty'} statement"
    bare = _STRINGS.sub("''", sql)
    if first == "SELECT" and _WRITE_IN_SELECT.search(bare):
        return "SELECT that locks rows or creates a table"
    if first in ("WITH", "EXPLAIN") and _WRITE_IN_WITH.search(bare):
        return "data-modifying statement"
    return None
