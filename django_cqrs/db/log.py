"""The event log's order, and the locks on its table.

    from django_cqrs.db.log import LogPoint, horizon, lock_log, points_after

    horizon("default")                       # PostgreSQL: no transaction below this id is open
    qs.filter(points_after(qs.model, LogPoint(0, 120)))   # events after a point, in SQL

**Order.** PostgreSQL hands out sequence values (positions) in the order transactions
ask for them, not in the order they commit, so a reader that has seen position 120 may
later find 119 committed by a slower transaction. Instead of serializing appends (a table
lock held to commit, as django_cqrs 0.1 did), every event stores the id of the
transaction that appended it (the column's default, ``pg_current_xact_id()``), and
readers order the log by ``(transaction_id, position)`` and read only events of
transactions older than the *horizon*: the oldest transaction still running (the
snapshot's ``xmin``, leaving out the reader's own transaction and other databases').
Below it every transaction has committed or rolled back, so no event can appear there
later, and the order never changes. A transaction
that stays open holds readers back (never makes them skip); ``oldest_open_transaction()``
says who and since when. The same approach as Emmett's and Eventuous's PostgreSQL stores.

SQLite has one writer at a time, so position order is commit order: ``transaction_id`` is
0 and there is no horizon (``None``).

**Locks.** A rebuild's switch takes ``LOCK TABLE ... IN SHARE MODE``: appenders wait
until it commits, and it waits for those still open.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal, NamedTuple

from django.db import connections, models
from django.db.models.expressions import RawSQL


class LogPoint(NamedTuple):
    """A place in the log's order: an event's, or a checkpoint's (the last event applied)."""

    transaction_id: int
    position: int


#: Before the first event.
START = LogPoint(0, 0)

#: The column default that stamps each event with its transaction (PostgreSQL).
_TRANSACTION_ID = "pg_current_xact_id()::text::bigint"


def stamp_transaction_ids(model: type[models.Model], schema_editor: Any) -> None:
    """Make ``transaction_id`` default to the appending transaction's id (PostgreSQL)."""
    _set_transaction_id_default(model, schema_editor, f"({_TRANSACTION_ID})")


def unstamp_transaction_ids(model: type[models.Model], schema_editor: Any) -> None:
    """Undo :func:`stamp_transaction_ids` (the default goes back to 0)."""
    _set_transaction_id_default(model, schema_editor, "0")


def _set_transaction_id_default(model: type[models.Model], schema_editor: Any, sql: str) -> None:
    conn = schema_editor.connection
    if conn.vendor == "postgresql":
        qn = conn.ops.quote_name
        schema_editor.execute(
            f"ALTER TABLE {qn(model._meta.db_table)} ALTER COLUMN "
            f"{qn(_column(model, 'transaction_id'))} SET DEFAULT {sql}"
        )


#: The oldest transaction still running that may append to this database's log.
#:
#: A reader without a transaction id of its own takes its snapshot's ``xmin`` (the oldest
#: id it lists as running, else ``xmax``: ids from ``xmax`` on may still run). A reader
#: with an id (a catch-up holding a row lock, a test's transaction) would then never see
#: its own events, so it reads up to its own id and no further — its events commit (or
#: roll back) with what it does with them, and it may append more with that id, so no
#: later transaction's event may be passed yet — and below that, it must wait for every
#: other running transaction: those its snapshot lists, and those with ids between
#: ``xmax`` and its own, which no snapshot lists, taken from pg_stat_activity (they got
#: their ids before the reader did, so the view shows them).
#:
#: Left out either way: transactions that pg_stat_activity shows connected to another
#: database (the snapshot's list is cluster-wide; a transaction writes to one database
#: only). An id the view does not show stays in (another role's session when the
#: database user lacks ``pg_read_all_stats``): the horizon errs on the side of waiting,
#: never of skipping. ``backend_xid`` is a 32-bit xid, the snapshot's ids are 64-bit xid8:
#: compared without the epoch, and widened with the reader's epoch.
_HORIZON = """
WITH now AS (
    SELECT pg_current_snapshot() AS snap, pg_current_xact_id_if_assigned()::text::bigint AS me
),
elsewhere AS (
    SELECT backend_xid::text::bigint AS xid32 FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
),
listed AS (
    SELECT xip::text::bigint AS xid FROM now, pg_snapshot_xip(now.snap) AS xip
    WHERE xip::text::bigint IS DISTINCT FROM now.me
      AND xip::text::bigint % 4294967296 NOT IN (SELECT xid32 FROM elsewhere)
),
here AS (
    SELECT CASE WHEN backend_xid::text::bigint <= now.me % 4294967296
                THEN now.me - now.me % 4294967296 + backend_xid::text::bigint
                ELSE now.me - now.me % 4294967296 - 4294967296 + backend_xid::text::bigint
           END AS xid
    FROM now, pg_stat_activity
    WHERE now.me IS NOT NULL AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()
      AND datname IS NOT DISTINCT FROM current_database()
)
SELECT CASE WHEN now.me IS NULL
    THEN LEAST((SELECT min(xid) FROM listed), pg_snapshot_xmax(now.snap)::text::bigint)
    ELSE LEAST((SELECT min(xid) FROM listed), (SELECT min(xid) FROM here), now.me + 1)
END
FROM now
"""


def horizon(using: str) -> int | None:
    """Events of transactions below this id are final (PostgreSQL); None where every
    committed event is (SQLite: one writer at a time).

    The reader's own transaction does not count: events it appended itself are visible to
    it and commit (or roll back) together with whatever it does with them — a catch-up
    inside a test's transaction, say, or right after commands in one ``atomic()`` block.
    Nor do transactions of other databases on the same server.
    """
    conn = connections[using]
    if conn.vendor != "postgresql":
        return None
    with conn.cursor() as cursor:
        # pg_stat_activity is read once per transaction and then served from a copy:
        # a long transaction would keep counting what was open when it first looked.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(_HORIZON)
        (value,) = cursor.fetchone()
    return int(value)


def points_after(model: type[models.Model], point: LogPoint, *, inclusive: bool = False) -> RawSQL:
    """A condition: the event's ``(transaction_id, position)`` is after ``point``
    (``inclusive``: or at it). A row comparison, which an index on both columns serves."""
    return _compare(model, ">=" if inclusive else ">", point)


def points_before(model: type[models.Model], point: LogPoint, *, inclusive: bool = False) -> RawSQL:
    """A condition: the event's ``(transaction_id, position)`` is before ``point``."""
    return _compare(model, "<=" if inclusive else "<", point)


def _compare(model: type[models.Model], operator: str, point: LogPoint) -> RawSQL:
    table = model._meta.db_table
    # Quoted as every backend django_cqrs supports quotes (SQLite and PostgreSQL both
    # take the SQL standard's double quotes and row values).
    columns = ", ".join(f'"{table}"."{_column(model, name)}"' for name in LogPoint._fields)
    return RawSQL(
        f"({columns}) {operator} (%s, %s)", list(point), output_field=models.BooleanField()
    )


def _column(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    assert field.column
    return field.column


@dataclasses.dataclass(frozen=True)
class OpenTransaction:
    """The oldest open transaction that holds the horizon back."""

    pid: int
    started_at: dt.datetime
    state: str
    database: str


def oldest_open_transaction(using: str) -> OpenTransaction | None:
    """The oldest open transaction of this database with a transaction id (PostgreSQL):
    the one that holds the horizon back when events wait above it."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        return None
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pid, xact_start, state, datname FROM pg_stat_activity "
            "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() "
            "AND datname = current_database() ORDER BY age(backend_xid) DESC LIMIT 1"
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return OpenTransaction(pid=row[0], started_at=row[1], state=row[2] or "", database=row[3])


def lock_log(model: type[models.Model], using: str, mode: Literal["EXCLUSIVE", "SHARE"]) -> None:
    """Take PostgreSQL's ``LOCK TABLE <table> IN <mode> MODE`` until the transaction ends."""
    conn = connections[using]
    if conn.vendor == "postgresql":
        with conn.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {conn.ops.quote_name(model._meta.db_table)} IN {mode} MODE")
