"""What a SQL string is: its commands, each one's first keyword, whether it writes.

    from django_cqrs.db.statements import POSTGRESQL, first_word, judge, write_reason

    first_word("  (SELECT 1)")                    # "SELECT"
    write_reason("SELECT * FROM t FOR UPDATE")    # "SELECT that locks rows or creates a table"
    write_reason("SELECT 1")                      # None: a read
    judge("SELECT 1; COMMIT", POSTGRESQL)         # Refusal(SEVERAL, "SELECT; COMMIT")
    judge('RELEASE SAVEPOINT "s1_x2"', POSTGRESQL)  # Control("release", "s1_x2", ...)

Statements are allowed by their first keyword rather than blocked by a list of known
writes, so ``SELECT ... FOR UPDATE``, ``SELECT ... INTO`` and ``WITH ... INSERT`` are
caught. A string is cut into its commands by a tokenizer that follows the database's
lexical rules (a :class:`Dialect`): comments (``--``, and ``/* */``, nested on
PostgreSQL), strings with ``''`` escapes, PostgreSQL's ``E'...'`` strings with backslash
escapes and dollar quotes ``$tag$...$tag$``, and quoted identifiers (SQLite's backtick
and bracket quotes too). So a keyword or a ``;`` inside a literal does not count,
and a literal cannot hide a second command. A plain string with a backslash is read both
ways — as PostgreSQL reads it with ``standard_conforming_strings`` on and off, since a
query could turn it off — and both readings must pass.

:func:`judge` is the query guard's check: one command per call, a read, no transaction
control except savepoints (which it returns as a :class:`Control` for the guard to
decide), and, where the driver splices parameters into the SQL (psycopg, without
server-side binding), no placeholder inside a literal or comment, where a spliced value
could close the literal. :func:`write_reason` answers the narrower question "does this
write?" and lets transaction control pass, as it always has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

#: Statements that write nothing themselves; SQLite's BEGIN goes through the cursor.
READ_FIRST_WORDS = frozenset({"SELECT", "WITH", "EXPLAIN", "VALUES", "BEGIN"})

#: Reads, and transaction control (which writes nothing itself): ``write_reason``'s allowed list.
_ALLOWED_FIRST_WORDS = {
    *("SELECT", "WITH", "EXPLAIN", "SHOW", "VALUES"),
    *("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK"),
}
_READS = frozenset({"SELECT", "WITH", "EXPLAIN", "SHOW", "VALUES"})
#: Statements that start, end or change a transaction (CALL and DO can COMMIT inside).
_TRANSACTION_WORDS = frozenset(
    {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"}
    | {"CALL", "DO"}
)
_TRANSACTION_SETTING = re.compile(
    r"\b(?:TRANSACTION|CHARACTERISTICS|\w*transaction_\w+|ALL)\b", re.IGNORECASE
)

_WRITE_IN_SELECT = re.compile(
    r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|SHARE|KEY\s+SHARE)\b|\bINTO\b", re.IGNORECASE
)
_WRITE_IN_WITH = re.compile(r"\b(?:INSERT|UPDATE|DELETE|MERGE|TRUNCATE)\b", re.IGNORECASE)
_KEYWORD = re.compile(r"[\s(]*([A-Za-z_][A-Za-z0-9_]*)")
_EXPLAIN_PREFIX = re.compile(
    r"[\s(]*EXPLAIN\s*(?:\([^()]*\)\s*)?(?:(?:ANALYZE|ANALYSE|VERBOSE|QUERY\s+PLAN)\b\s*)*",
    re.IGNORECASE,
)
#: psycopg's placeholders (``%%`` is a literal percent sign, removed before the search).
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[sbt]")

# The kinds of refusal, worded to follow "attempted".
WRITE = "a write"
TRANSACTION_CONTROL = "transaction control"
SEVERAL = "more than one statement in one call"
SPLICED = "a parameter placeholder inside a quoted string, identifier or comment"
UNTERMINATED = "an unterminated string, quoted identifier or comment"
COMMENT = "a comment, on a database whose comment syntax the guard does not know"


@dataclass(frozen=True)
class Dialect:
    """A database's lexical rules, as far as the tokenizer needs them."""

    name: str
    #: ``/* /* */ */`` nests (PostgreSQL); elsewhere the first ``*/`` ends the comment.
    nested_comments: bool = False
    #: An unterminated ``/*`` comment runs to the end of the string (SQLite).
    open_comment_ok: bool = False
    #: ``E'...'`` strings with backslash escapes, and ``$tag$...$tag$`` strings (PostgreSQL).
    postgres_literals: bool = False
    #: Identifiers may also be quoted ```like this``` or ``[like this]`` (SQLite).
    extra_identifier_quotes: bool = False
    #: The driver splices parameters into the SQL text (psycopg's client-side binding).
    spliced_parameters: bool = True
    #: A plain string may take backslash escapes (PostgreSQL with
    #: ``standard_conforming_strings`` off, MySQL); never on SQLite.
    backslash_strings: bool = True
    #: Comments are refused: the database has comment syntax of its own (MySQL's ``#``).
    refuse_comments: bool = False


POSTGRESQL = Dialect("postgresql", nested_comments=True, postgres_literals=True)
SQLITE = Dialect(
    "sqlite",
    open_comment_ok=True,
    extra_identifier_quotes=True,
    spliced_parameters=False,
    backslash_strings=False,
)
#: Any other backend: standard SQL strings and identifiers, no comments.
OTHER = Dialect("other", extra_identifier_quotes=True, refuse_comments=True)


def dialect_for(vendor: str) -> Dialect:
    """The lexical rules of a Django ``connection.vendor``."""
    return {"postgresql": POSTGRESQL, "sqlite": SQLITE}.get(vendor, OTHER)


class Command(NamedTuple):
    """One command of a SQL string: its first keyword, and its text without literals.

    In the ``skeleton`` strings are ``''``, comments a space, quoted identifiers as written.
    """

    keyword: str
    skeleton: str


class Refusal(NamedTuple):
    """Why the query guard refuses a SQL string: the kind, and the statement it names."""

    kind: str
    statement: str


class Control(NamedTuple):
    """A transaction-control statement the query guard decides on with what it knows.

    ``action`` is ``"begin"`` (SQLite's, the only one Django sends through a cursor),
    ``"savepoint"``, ``"release"`` or ``"rollback to"``; ``name`` is the savepoint's name
    as the database compares it (for ``begin``: the mode, ``"immediate"`` or "").
    """

    action: str
    name: str
    statement: str


Verdict = Refusal | Control | None


def first_word(sql: str) -> str:
    """The first keyword of ``sql``, upper case (leading blanks and parentheses skipped)."""
    stripped = sql.lstrip(" \t\r\n(")
    return stripped.split(None, 1)[0].upper() if stripped else ""


def write_reason(sql: str, dialect: Dialect = POSTGRESQL) -> str | None:
    """Why ``sql`` is not a read, or None when it is one (judged by each command's keyword).

    Transaction control (``BEGIN``, savepoints, ``ROLLBACK``) writes nothing itself and is
    not a write here; the query guard (:func:`judge`) refuses it all the same.
    """
    scan = _scan(sql, dialect, spliced=False, backslash_strings=False)
    if not scan.commands:
        return "empty statement"
    for command in scan.commands:
        if command.keyword not in _ALLOWED_FIRST_WORDS:
            return f"{command.keyword or 'empty'} statement"
        reason = _read_reason(command, dialect)
        if reason is not None:
            return reason
    return None


def judge(sql: str, dialect: Dialect = POSTGRESQL, *, bound: bool = False) -> Verdict:
    """The query guard's verdict on ``sql``: None for one read, else a Refusal or a Control.

    ``bound`` says parameters come with the statement (the driver may splice them in).
    """
    spliced = bound and dialect.spliced_parameters
    if not _has_literal(sql, dialect) and not (spliced and _in_identifier(sql)):
        # No literal, comment or ";": one command, as written (the usual ORM statement).
        match = _KEYWORD.match(sql)
        keyword = match.group(1).upper() if match else ""
        if keyword == "SELECT" and not _may_lock_or_create(sql):
            return None
        return _judge_commands([Command(keyword, sql)], dialect)
    scan = _scan(sql, dialect, spliced=spliced, backslash_strings=False)
    verdict = _judge_scan(scan, dialect)
    if not scan.ambiguous or verdict is not None:
        return verdict  # a command with a string is never a Control
    # A backslash in a plain string: read it as PostgreSQL does with
    # standard_conforming_strings off too (a query could turn it off with set_config).
    return _judge_scan(_scan(sql, dialect, spliced=spliced, backslash_strings=True), dialect)


# -- the tokenizer ---------------------------------------------------------------------

_STANDARD_STRING_END = re.compile(r"(?:[^']|'')*'")
_ESCAPE_STRING_END = re.compile(r"(?:[^'\\]|''|\\.)*'", re.DOTALL)
_DOUBLE_QUOTED_END = re.compile(r'(?:[^"]|"")*"')
_BACKTICK_END = re.compile(r"(?:[^`]|``)*`")
_BRACKET_END = re.compile(r"[^\]]*\]")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_NESTED_COMMENT_MARK = re.compile(r"/\*|\*/")
_TOKEN_START = {
    "postgresql": re.compile(r"""['";$]|--|/\*"""),
    "sqlite": re.compile(r"""['";`\[]|--|/\*"""),
    "other": re.compile(r"""['";`\[]|--|/\*"""),
}
_IDENTIFIER_ENDS = {'"': _DOUBLE_QUOTED_END, "`": _BACKTICK_END, "[": _BRACKET_END}


def _is_identifier_char(char: str) -> bool:
    return char.isalnum() or char in "_$" or char > "\x7f"


def _has_literal(sql: str, dialect: Dialect) -> bool:
    """Whether ``sql`` may hold a string, a comment or a ``;`` (``in`` is faster than a regex)."""
    return (
        "'" in sql
        or ";" in sql
        or "--" in sql
        or "/*" in sql
        or (dialect.postgres_literals and "$" in sql)
        or (dialect.extra_identifier_quotes and ("`" in sql or "[" in sql))
    )


def _in_identifier(sql: str) -> bool:
    """Whether a ``%`` sits inside a double-quoted identifier (``sql`` has no string)."""
    if "%" not in sql or '"' not in sql:
        return False
    inside, start, percent = 0, 0, sql.find("%")
    while percent != -1:
        inside ^= sql.count('"', start, percent) & 1
        if inside:
            return True
        start, percent = percent, sql.find("%", percent + 1)
    return False


def _may_lock_or_create(sql: str) -> bool:
    """Whether a SELECT without literals has ``FOR UPDATE``/``FOR SHARE`` or ``INTO``."""
    lowered = sql.lower()
    return ("for" in lowered or "into" in lowered) and _WRITE_IN_SELECT.search(sql) is not None


class _Scan(NamedTuple):
    commands: list[Command]
    problem: Refusal | None
    #: A plain string holds a backslash: PostgreSQL reads it differently with
    #: standard_conforming_strings off.
    ambiguous: bool


def _scan(sql: str, dialect: Dialect, *, spliced: bool, backslash_strings: bool) -> _Scan:
    """Cut ``sql`` into commands at each ``;`` outside literals and comments."""
    token_start = _TOKEN_START[dialect.name]
    commands: list[Command] = []
    pieces: list[str] = []
    problem: Refusal | None = None
    ambiguous = False
    pos = 0
    length = len(sql)
    while True:
        match = token_start.search(sql, pos)
        if match is None:
            break
        start = match.start()
        token = match.group()
        pieces.append(sql[pos:start])
        end: int
        if token == ";":
            _add_command(commands, "".join(pieces))
            pieces = []
            pos = start + 1
            continue
        if token == "'":
            escapes = backslash_strings or (
                dialect.postgres_literals
                and start > 0
                and sql[start - 1] in "Ee"
                and (start < 2 or not _is_identifier_char(sql[start - 2]))
            )
            body = (_ESCAPE_STRING_END if escapes else _STANDARD_STRING_END).match(sql, start + 1)
            if body is None:
                return _Scan(commands, Refusal(UNTERMINATED, "string"), ambiguous)
            end = body.end()
            if not escapes and dialect.backslash_strings and "\\" in sql[start:end]:
                ambiguous = True
            pieces.append("''")
        elif token in _IDENTIFIER_ENDS:
            body = _IDENTIFIER_ENDS[token].match(sql, start + 1)
            if body is None:
                return _Scan(commands, Refusal(UNTERMINATED, "quoted identifier"), ambiguous)
            end = body.end()
            pieces.append(sql[start:end])
        elif token == "$":
            tag = _DOLLAR_TAG.match(sql, start)
            if tag is None or (start > 0 and _is_identifier_char(sql[start - 1])):
                pieces.append("$")  # a parameter ($1) or part of a name
                pos = start + 1
                continue
            close = sql.find(tag.group(), tag.end())
            if close == -1:
                return _Scan(commands, Refusal(UNTERMINATED, "dollar-quoted string"), ambiguous)
            end = close + len(tag.group())
            pieces.append("''")
        else:  # a comment
            if dialect.refuse_comments:
                return _Scan(commands, Refusal(COMMENT, token), ambiguous)
            if token == "--":
                newline = sql.find("\n", start)
                end = length if newline == -1 else newline
            else:
                end = _comment_end(sql, start, dialect)
                if end == -1:
                    return _Scan(commands, Refusal(UNTERMINATED, "comment"), ambiguous)
            pieces.append(" ")
        literal = sql[start:end]
        if spliced and problem is None and _PLACEHOLDER.search(literal.replace("%%", "")):
            problem = Refusal(SPLICED, sql[start : min(end, start + 40)])
        pos = end
    pieces.append(sql[pos:])
    _add_command(commands, "".join(pieces))
    return _Scan(commands, problem, ambiguous)


def _comment_end(sql: str, start: int, dialect: Dialect) -> int:
    """The index after a ``/* */`` comment, or -1 when it does not end."""
    if not dialect.nested_comments:
        close = sql.find("*/", start + 2)
        if close == -1:
            return len(sql) if dialect.open_comment_ok else -1
        return close + 2
    depth = 1
    for mark in _NESTED_COMMENT_MARK.finditer(sql, start + 2):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return mark.end()
    return -1


def _add_command(commands: list[Command], skeleton: str) -> None:
    if skeleton.strip():
        match = _KEYWORD.match(skeleton)
        commands.append(Command(match.group(1).upper() if match else "", skeleton))


# -- the verdicts ----------------------------------------------------------------------


def _judge_scan(scan: _Scan, dialect: Dialect) -> Verdict:
    if scan.problem is not None:
        return scan.problem
    if not scan.commands:
        return Refusal(WRITE, "empty statement")
    return _judge_commands(scan.commands, dialect)


def _judge_commands(commands: list[Command], dialect: Dialect) -> Verdict:
    if len(commands) > 1:
        return Refusal(SEVERAL, "; ".join(command.keyword or "?" for command in commands))
    command = commands[0]
    keyword = command.keyword
    if keyword in _READS:
        reason = _read_reason(command, dialect)
        return None if reason is None else Refusal(WRITE, reason)
    if keyword in _TRANSACTION_WORDS:
        return _transaction_control(command, dialect)
    if keyword in ("SET", "RESET") and _TRANSACTION_SETTING.search(command.skeleton):
        return Refusal(TRANSACTION_CONTROL, _statement_name(command))
    if keyword == "PREPARE" and _second_word(command) == "TRANSACTION":
        return Refusal(TRANSACTION_CONTROL, "PREPARE TRANSACTION statement")
    return Refusal(WRITE, f"{keyword or 'empty'} statement")


def _read_reason(command: Command, dialect: Dialect) -> str | None:
    """Why a command starting with a read keyword writes after all, or None."""
    keyword, skeleton = command
    if keyword == "SELECT":
        if _WRITE_IN_SELECT.search(skeleton) and _WRITE_IN_SELECT.search(_bare(skeleton)):
            return "SELECT that locks rows or creates a table"
        return None
    if keyword not in ("WITH", "EXPLAIN"):
        return None
    bare = _bare(skeleton)
    if _WRITE_IN_WITH.search(bare):
        return "data-modifying statement"
    if keyword == "EXPLAIN":
        prefix = _EXPLAIN_PREFIX.match(skeleton)
        match = _KEYWORD.match(skeleton, prefix.end() if prefix else 0)
        inner_keyword = match.group(1).upper() if match else ""
        if prefix is None or inner_keyword not in ("SELECT", "WITH", "VALUES"):
            return f"{inner_keyword or 'empty'} statement"
    if _WRITE_IN_SELECT.search(bare):
        return "SELECT that locks rows or creates a table"
    return None


def _bare(skeleton: str) -> str:
    """The skeleton with quoted identifiers blanked, so a quoted ``"into"`` does not count."""
    return _QUOTED_IDENTIFIER.sub('""', skeleton)


_QUOTED_IDENTIFIER = re.compile(r'"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]')

# Savepoint statements, on a skeleton (comments are blanks there, identifiers as written).
_NAME = (
    r'("(?:[^"]|"")+"|`(?:[^`]|``)+`|\[[^\]]+\]'
    r"|[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)"
)
_SAVEPOINT = re.compile(rf"\s*SAVEPOINT\s+{_NAME}\s*$", re.IGNORECASE)
_RELEASE = re.compile(rf"\s*RELEASE\s+(?:SAVEPOINT\s+)?{_NAME}\s*$", re.IGNORECASE)
_ROLLBACK_TO = re.compile(
    rf"\s*ROLLBACK\s+(?:(?:WORK|TRANSACTION)\s+)?TO\s+(?:SAVEPOINT\s+)?{_NAME}\s*$",
    re.IGNORECASE,
)
_SQLITE_BEGIN = re.compile(
    r"\s*BEGIN(?:\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(?:\s+TRANSACTION)?\s*$", re.IGNORECASE
)
_SAVEPOINT_STATEMENTS = {
    "savepoint": "SAVEPOINT",
    "release": "RELEASE SAVEPOINT",
    "rollback to": "ROLLBACK TO SAVEPOINT",
}
#: PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
_NAME_BYTES = 63


def _transaction_control(command: Command, dialect: Dialect) -> Verdict:
    skeleton = command.skeleton
    for action, pattern in (
        ("savepoint", _SAVEPOINT),
        ("release", _RELEASE),
        ("rollback to", _ROLLBACK_TO),
    ):
        match = pattern.match(skeleton)
        if match:
            name = _savepoint_name(match.group(1), dialect)
            return Control(action, name, f"{_SAVEPOINT_STATEMENTS[action]} {name}")
    begin = _SQLITE_BEGIN.match(skeleton) if dialect.name == "sqlite" else None
    if begin is not None:
        return Control("begin", (begin.group(1) or "").lower(), _statement_name(command))
    return Refusal(TRANSACTION_CONTROL, _statement_name(command))


def _savepoint_name(written: str, dialect: Dialect) -> str:
    """A savepoint's name as the database compares it.

    Unquoted names fold to lower case (ASCII only); PostgreSQL keeps quoted names as they
    are, SQLite compares every name without regard to ASCII case.
    """
    quoted = written[0] in '"`['
    name = written[1:-1].replace(written[0] * 2, written[0]) if quoted else written
    postgres = dialect.name == "postgresql"
    if not quoted or not postgres:
        name = name.translate(_ASCII_LOWER)
    if postgres:
        name = name.encode()[:_NAME_BYTES].decode(errors="ignore")
    return name


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _second_word(command: Command) -> str:
    words = command.skeleton.split(None, 2)
    return words[1].upper() if len(words) > 1 else ""


def _statement_name(command: Command) -> str:
    """``COMMIT statement``, ``SET TRANSACTION statement``, ``START TRANSACTION statement``."""
    second = _second_word(command)
    if command.keyword in ("SET", "RESET", "START", "PREPARE", "BEGIN") or second in (
        "PREPARED",
        "TO",
    ):
        return f"{command.keyword} {second} statement".replace("  ", " ")
    return f"{command.keyword} statement"
