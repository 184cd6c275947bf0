"""A rebuild's SQL redirected to its shadow tables; any other write refused before it is sent.

    from django_cqrs.db.redirect import redirect_writes

    tables = {"orders_orderview": "orders_orderview_rebuild"}    # live table -> shadow
    with redirect_writes("orders.OrderViewProjection", tables, alias="default") as guard:
        OrderView.objects.create(...)        # INSERT INTO "orders_orderview_rebuild" ...
        Customer.objects.update(name="x")    # RebuildWriteError, nothing sent
    guard.refused                            # the first refusal, even if a handler caught it

While the block runs, every statement of this thread's connection ``alias`` has the live
tables' names rewritten to their shadows': quoted identifiers (``"orders_orderview"``,
so qualified columns, joins and ``RETURNING`` too) and bare words (any case, whole
words; not a name that is an SQL keyword), never inside a string literal. Reads are
rewritten too: a handler reads the rows the rebuild has built so far. A statement that
writes (:func:`~django_cqrs.db.statements.write_reason`) must then write shadow tables
only (:func:`written_tables`); a write whose tables cannot be told (DDL, ``COPY``,
``CALL`` ...) is refused as well. On every other configured alias, every write is
refused. Connections are per thread, so other threads (the live site) are not affected.

The check reads SQL text, not the database's plan: a write hidden in a database function
that a ``SELECT`` calls is not seen.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from django.db import connections

from ..exceptions import RebuildWriteError
from .statements import first_word, write_reason

#: The fix for a write to a table that is not a read model's.
DECLARE = (
    "Declare its model in the projection's read_models (a rebuild empties and refills "
    "those), or write through self.put()/self.delete() on a declared read model."
)
#: The fix for a read model's live table spelled in a way the rewrite does not see.
SPELL = (
    "Write through the ORM, self.put() or self.delete(), whose statements the rebuild "
    "redirects, or spell the table as a quoted or bare identifier."
)

# Words never rewritten when bare (a table with such a name must be quoted anyway):
# the keywords the ORM's statements are made of.
_KEYWORDS = frozenset(
    """
    ALL AND ANY AS ASC BETWEEN BY CASE CAST COLLATE CONFLICT CROSS DEFAULT DELETE DESC
    DISTINCT DO ELSE END ESCAPE EXCEPT EXCLUDED EXISTS FALSE FETCH FILTER FIRST FOR FROM
    FULL GROUP HAVING IN INNER INSERT INTERSECT INTO IS JOIN KEY LAST LEFT LIKE LIMIT
    LOCKED NO NOT NOTHING NOWAIT NULL NULLS OF OFFSET ON ONLY OR ORDER OUTER OVER
    PARTITION RANGE RETURNING RIGHT ROWS SELECT SET SHARE SKIP TABLE THEN TRUE UNION
    UNNEST UPDATE USING VALUES WHEN WHERE WINDOW WITH
    """.split()  # noqa: SIM905 - a list literal of 80 words would take 80 lines
)
_LITERAL = r"'(?:[^']|'')*'"
_QUOTED = r'"(?:[^"]|"")*"'
# One token: a string literal, a quoted identifier (double quotes; SQLite's brackets and
# backticks too), a word, or any other character.
_TOKEN = re.compile(rf"{_LITERAL}|{_QUOTED}|\[[^\]]*\]|`(?:[^`]|``)*`|[A-Za-z_][\w$]*|\S")
_BLANKED = re.compile(rf"{_LITERAL}|{_QUOTED}")
_LOCKING = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|SHARE|KEY\s+SHARE)\b", re.IGNORECASE)
# After these words, UPDATE and DELETE are not a statement's verb (FOR UPDATE, DO UPDATE,
# ON DELETE, a trigger's BEFORE UPDATE OR DELETE, MERGE's THEN UPDATE ...).
_NOT_A_VERB_AFTER = frozenset({"FOR", "DO", "KEY", "ON", "OR", "BEFORE", "AFTER", "OF", "THEN"})
_CAN_BE_TOLD = frozenset(
    {"INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "TRUNCATE", "WITH", "SELECT", "EXPLAIN"}
)
_CACHE_SIZE = 512

Tokens = list[tuple[str, str]]  # (token, token.upper())


class TableRenamer:
    """Renames live tables to their shadows in SQL text (see the module's docstring)."""

    def __init__(self, tables: Mapping[str, str]):
        self.names = {live.lower(): shadow for live, shadow in tables.items()}
        pattern = f"{_LITERAL}|{_QUOTED}"
        bare = [re.escape(live) for live in tables if live.upper() not in _KEYWORDS]
        if bare:
            pattern += r"|(?<![\w$])(?:" + "|".join(bare) + r")(?![\w$])"
        self.pattern = re.compile(pattern, re.IGNORECASE)

    def __call__(self, sql: str) -> str:
        return self.pattern.sub(self._renamed, sql) if self.names else sql

    def _renamed(self, match: re.Match[str]) -> str:
        token = match.group()
        if token[0] == "'":
            return token
        if token[0] == '"':
            shadow = self.names.get(token[1:-1].replace('""', '"').lower())
            return token if shadow is None else '"' + shadow.replace('"', '""') + '"'
        return self.names.get(token.lower(), token)


def rewrite_tables(sql: str, tables: Mapping[str, str]) -> str:
    """``sql`` with each live table of ``tables`` renamed to its shadow; literals kept."""
    return TableRenamer(tables)(sql)


def written_tables(sql: str) -> list[str] | None:
    """The tables a statement writes or locks, unquoted; ``[]`` for a read; None: unknown.

    Written: the tables after ``INSERT INTO``, ``UPDATE``, ``DELETE FROM``, ``REPLACE
    INTO``, ``MERGE INTO`` and ``TRUNCATE`` anywhere in the statement (data-modifying CTEs
    included); locked: for ``SELECT ... FOR UPDATE``/``FOR SHARE``, the tables of its
    top-level ``FROM`` and ``JOIN``. A qualified name gives its last part
    (``main."t"`` -> ``t``).
    """
    if write_reason(sql) is None:
        return []
    if first_word(sql) not in _CAN_BE_TOLD:
        return None
    tokens: Tokens = [(t, t.upper()) for t in _TOKEN.findall(sql)]
    locking = bool(_LOCKING.search(_BLANKED.sub("''", sql)))
    found: list[str] = []
    depth = 0
    for i, (token, word) in enumerate(tokens):
        if token == "(" or token == ")":
            depth += 1 if token == "(" else -1
            continue
        before = tokens[i - 1][1] if i else ""
        j = i + 1
        if word == "INSERT" or word == "REPLACE":
            if word == "INSERT" and _word(tokens, j) == "OR":  # INSERT OR REPLACE INTO
                j += 2
            if _word(tokens, j) == "INTO":
                found += _names(tokens, j + 1)
        elif word == "UPDATE" and before not in _NOT_A_VERB_AFTER:
            j += 2 if _word(tokens, j) == "OR" else 0  # UPDATE OR IGNORE
            j += _word(tokens, j) == "ONLY"
            if _word(tokens, j) != "SET":
                found += _names(tokens, j)
        elif word == "DELETE" and before not in _NOT_A_VERB_AFTER:
            if _word(tokens, j) == "FROM":
                j += 1 + (_word(tokens, j + 1) == "ONLY")
                found += _names(tokens, j)
        elif word == "MERGE" and _word(tokens, j) == "INTO":
            found += _names(tokens, j + 1)
        elif word == "TRUNCATE":
            j += _word(tokens, j) == "TABLE"
            j += _word(tokens, j) == "ONLY"
            found += _names(tokens, j, many=True)
        elif locking and depth == 0 and word in ("FROM", "JOIN"):
            j += _word(tokens, j) == "ONLY"
            # Not a subquery, not a table function (FROM UNNEST(...)).
            if _word(tokens, j) != "(" and _word(tokens, _after_name(tokens, j)) != "(":
                found += _names(tokens, j)
    return found or None


def _word(tokens: Tokens, i: int) -> str:
    return tokens[i][1] if i < len(tokens) else ""


def _after_name(tokens: Tokens, i: int) -> int:
    """The index after the (possibly qualified) name that starts at ``i``."""
    i += 1
    while _word(tokens, i) == "." and i + 1 < len(tokens):
        i += 2
    return i


def _names(tokens: Tokens, i: int, *, many: bool = False) -> list[str]:
    names = []
    while i < len(tokens):
        end = _after_name(tokens, i)
        names.append(_unquote(tokens[end - 1][0]))
        if not (many and _word(tokens, end) == ","):
            break
        i = end + 1
    return names


def _unquote(name: str) -> str:
    if len(name) > 1 and name[0] in "\"'`":
        return name[1:-1].replace(name[0] * 2, name[0])
    if len(name) > 1 and name[0] == "[":
        return name[1:-1]
    return name


class ShadowRedirect:
    """The execute wrapper of :func:`redirect_writes`, for every alias of one block."""

    def __init__(self, owner: str, tables: Mapping[str, str], *, alias: str):
        self.owner = owner
        self.alias = alias
        self.rename = TableRenamer(tables)
        self.shadows = {shadow.lower() for shadow in tables.values()}
        self.live = {live.lower() for live in tables}
        #: The first write refused (a handler may have caught the error).
        self.refused: RebuildWriteError | None = None
        self._checked: dict[tuple[str, str], str] = {}  # statements let through

    def wrapper(self, alias: str) -> Any:
        """The execute wrapper for the connection ``alias``."""
        return functools.partial(self._execute, alias)

    def _execute(
        self, alias: str, execute: Any, sql: Any, params: Any, many: bool, context: Any
    ) -> Any:
        if not isinstance(sql, str):  # e.g. psycopg's sql.Composed: nothing to read
            refused = self._refusal("", "the rebuild cannot read the statement", "")
            self.refused = self.refused or refused
            raise refused
        key = (alias, sql)
        statement = self._checked.get(key)
        if statement is None:
            statement, refusal = self.check(sql, alias)
            if refusal is not None:
                self.refused = self.refused or refusal
                raise refusal
            if len(self._checked) >= _CACHE_SIZE:
                self._checked.clear()
            self._checked[key] = statement  # the same SQL comes again, with other params
        return execute(statement, params, many, context)

    def check(self, sql: str, alias: str) -> tuple[str, RebuildWriteError | None]:
        """The statement to send on ``alias``, and its refusal (None: send it)."""
        redirected = alias == self.alias
        statement = self.rename(sql) if redirected else sql
        written = written_tables(statement)
        if written is None:
            problem = "the rebuild cannot tell which table the statement writes"
            return statement, self._refusal("", problem, sql)
        for table in written:
            if redirected and table.lower() in self.shadows:
                continue
            if redirected and table.lower() in self.live:
                problem = (
                    f"the statement names the read model's live table {table!r} in a form "
                    "the rebuild cannot redirect to its shadow table"
                )
                return statement, self._refusal(table, problem, sql, fix=SPELL)
            on = "" if redirected else f" on database {alias!r}"
            problem = f"{table!r}{on} is not a table of its read_models"
            return statement, self._refusal(table, problem, sql)
        return statement, None

    def _refusal(
        self, table: str, problem: str, sql: str, *, fix: str = DECLARE
    ) -> RebuildWriteError:
        return RebuildWriteError(
            projection=self.owner, table=table, problem=problem, fix=fix, statement=sql
        )


@contextmanager
def redirect_writes(
    owner: str, tables: Mapping[str, str], *, alias: str
) -> Iterator[ShadowRedirect]:
    """Redirect ``alias``'s statements to the shadow tables; refuse every other write.

    ``tables`` maps each live table to its shadow; ``owner`` (who is rebuilt) is named in
    the errors. Every other configured alias refuses every write during the block.
    """
    guard = ShadowRedirect(owner, tables, alias=alias)
    with ExitStack() as stack:
        for name in connections:
            stack.enter_context(connections[name].execute_wrapper(guard.wrapper(name)))
        yield guard
