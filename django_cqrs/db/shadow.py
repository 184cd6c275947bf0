"""Shadow tables: where a rebuild writes a read model's new rows, and the swap that puts them live.

    from django_cqrs.db import shadow

    targets = {OrderView: shadow.shadow_model(OrderView, "default")}  # table <table>_rebuild
    shadow.check_swappable(targets, "default")   # nothing outside depends on the live tables
    shadow.create_shadows(targets, "default")    # empty: columns, defaults, CHECKs, primary key
    ...                                          # fill them (through the shadow models)
    shadow.complete_shadows(targets, "default")  # secondary indexes, unique and foreign keys
    with transaction.atomic():                   # the switch, with new events held back
        shadow.swap_tables(targets, "default", lock_timeout=0.1)
    shadow.drop_old_tables(targets, "default", lock_timeout=0.1)

A shadow is the live table rebuilt from the database's own description of it, not from
the model: same columns, types, defaults, NOT NULL, CHECK constraints and primary key.
It is filled with nothing else, so filling it costs only the rows.

**PostgreSQL.** ``CREATE TABLE <shadow> (LIKE <live> INCLUDING DEFAULTS INCLUDING
CONSTRAINTS INCLUDING IDENTITY ...)``, then the primary key; grants and storage
parameters are copied. :func:`complete_shadows` then builds, outside any lock the site
waits for, every other index of the live table (``pg_get_indexdef``) and unique or
exclusion constraint (``pg_get_constraintdef``) under a temporary name, and its foreign
keys (a foreign key to another read model of the same rebuild points at that model's
shadow; ``NOT VALID``, then ``VALIDATE``, so the referenced table is not locked against
writes while the rows are checked), then ``ANALYZE``. :func:`swap_tables` is catalog
work only: ``LOCK TABLE`` the live and shadow tables (``lock_timeout``), rename each live
table, its indexes and identity sequences out of the way, rename the shadow to the live
name and its indexes and sequences to the live names (so migrations that later alter an
index or constraint by name find it), move sequence values forward. The old tables are
dropped by :func:`drop_old_tables` after the commit, since dropping a table with a
foreign key locks the table it references (and by the next rebuild, if they stayed
locked then).

**SQLite.** ``sqlite_master`` holds each table's CREATE statement. The live tables are
renamed to their shadow names inside a savepoint that is rolled back at once: SQLite
rewrites every reference to them on the way, so the statements read there are the
shadows' (a foreign key to another read model of the rebuild already names that
model's shadow), and every other schema object that changed depends on a live table
(:func:`check_swappable` refuses those). The swap drops the live tables, renames the
shadows (``legacy_alter_table`` off: the references of the other shadows follow) and
runs the live tables' saved ``CREATE INDEX`` statements: SQLite cannot rename an index,
so the secondary indexes are built there, under SQLite's one write lock.

Other backends: the shadow comes from the model (no secondary indexes) and the swap
copies its rows into the live table (:func:`replace_rows`), then drops it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from django.core.management.color import no_style
from django.db import connections, models, transaction
from django.db.backends.utils import truncate_name

from ..exceptions import RebuildSwitchError

#: A rebuild's read models, each with its shadow model.
Targets = Mapping[type[models.Model], type[models.Model]]

_shadows: dict[type[models.Model], type[models.Model]] = {}

#: What ``CREATE TABLE ... (LIKE live ...)`` copies on PostgreSQL (indexes come later).
_LIKE_INCLUDING = " ".join(
    f"INCLUDING {part}"
    for part in (
        "DEFAULTS",
        "CONSTRAINTS",
        "IDENTITY",
        "GENERATED",
        "STATISTICS",
        "STORAGE",
        "COMPRESSION",
        "COMMENTS",
    )
)

_FOREIGN_KEY_FIX = (
    "declare that ForeignKey with db_constraint=False (the column and its index stay; "
    "the database no longer checks the reference) or drop the constraint, or make its "
    "model a read model of the same projection"
)


def shadow_model(model: type[models.Model], using: str) -> type[models.Model]:
    """An unmanaged model with ``model``'s columns on a ``<table>_rebuild`` table."""
    if model in _shadows:
        return _shadows[model]
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "Meta": type(
            "Meta",
            (),
            {
                "app_label": "django_cqrs_shadow",
                "db_table": _name(model._meta.db_table, "rebuild", using),
                "managed": False,
            },
        ),
    }
    for field in model._meta.concrete_fields:
        clone: Any = field.clone()  # type: ignore[attr-defined]
        clone.db_index = False
        if clone.is_relation:
            clone.db_constraint = False
            clone.remote_field.related_name = "+"
        attrs[field.name] = clone
    shadow = type(f"{model.__name__}RebuildShadow", (models.Model,), attrs)
    _shadows[model] = shadow
    return shadow


def table_exists(model: type[models.Model], using: str) -> bool:
    """Does ``model``'s table exist?"""
    conn = connections[using]
    with conn.cursor() as cursor:
        return model._meta.db_table in conn.introspection.table_names(cursor)


def drop_table(model: type[models.Model], using: str) -> None:
    """Drop ``model``'s table if it exists."""
    conn = connections[using]
    with conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {conn.ops.quote_name(model._meta.db_table)}")


def check_swappable(targets: Targets, using: str) -> None:
    """Raise :class:`RebuildSwitchError` if a swap would break something outside ``targets``.

    A foreign key from another table into a live table, a view over one, a trigger or a
    row-security policy on one: the swap replaces the table, which would break or lose
    them. Writes nothing.
    """
    vendor = connections[using].vendor
    if not targets:
        return
    if vendor == "postgresql":
        problems = _pg_dependents(targets, using)
    elif vendor == "sqlite":
        problems = _sqlite_probe(targets, using).dependents
    else:
        problems = []
    if problems:
        names = ", ".join(live._meta.label for live in targets)
        raise RebuildSwitchError(
            f"Cannot rebuild {names}: a rebuild puts new tables in place of the live ones, "
            "which would break what depends on them: " + "; ".join(problems) + "."
        )


def create_shadows(targets: Targets, using: str) -> None:
    """(Re)create every shadow table, empty, with its live table's columns and primary key.

    The shadows of an earlier rebuild are dropped first.
    """
    conn = connections[using]
    with transaction.atomic(using=using):
        if conn.vendor == "postgresql":
            _pg_drop([s._meta.db_table for s in targets.values()], using, cascade=True)
            for live, shadow in targets.items():
                _pg_create_shadow(live._meta.db_table, shadow._meta.db_table, using)
        elif conn.vendor == "sqlite":
            statements = _sqlite_probe(targets, using).shadows
            _sqlite_drop([s._meta.db_table for s in targets.values()], using)
            with conn.cursor() as cursor:
                for live in targets:
                    cursor.execute(statements[live._meta.db_table])
        else:
            for shadow in targets.values():
                _create_from_model(shadow, using)


def shadows_match(targets: Targets, using: str) -> bool:
    """Does every shadow exist with its live table's columns (a rebuild can resume)?"""
    conn = connections[using]
    with conn.cursor() as cursor:
        existing = set(conn.introspection.table_names(cursor))
        for live, shadow in targets.items():
            if shadow._meta.db_table not in existing:
                return False
            columns = [
                _column_key(conn.introspection.get_table_description(cursor, m._meta.db_table))
                for m in (live, shadow)
            ]
            if columns[0] != columns[1]:
                return False
    return True


def complete_shadows(targets: Targets, using: str) -> None:
    """Give the filled shadows their live tables' other indexes, constraints and statistics.

    PostgreSQL only, and meant for outside the switch (it takes as long as building the
    indexes): secondary indexes, unique and exclusion constraints under temporary names,
    then foreign keys under their own names, then ``ANALYZE``. Idempotent: what a resumed
    rebuild's shadow already has is kept. SQLite builds its indexes in :func:`swap_tables`.
    """
    if connections[using].vendor != "postgresql":
        return
    shadow_of = _pg_shadow_oids(targets, using)
    for live, shadow in targets.items():
        _pg_complete_indexes(live._meta.db_table, shadow._meta.db_table, using)
    # Then the foreign keys: one to another read model needs that shadow's unique index.
    for live, shadow in targets.items():
        _pg_complete_foreign_keys(live._meta.db_table, shadow._meta.db_table, shadow_of, using)
    conn = connections[using]
    with conn.cursor() as cursor:
        for shadow in targets.values():
            cursor.execute(f"ANALYZE {conn.ops.quote_name(shadow._meta.db_table)}")


def swap_tables(targets: Targets, using: str, *, lock_timeout: float) -> None:
    """Inside the switch's transaction: put every shadow in place of its live table.

    The shadows must be complete (:func:`complete_shadows`). On PostgreSQL this waits at
    most ``lock_timeout`` seconds for the live tables' lock (readers still in a
    transaction that read them), then fails with ``lock_timeout``'s error (SQLSTATE
    55P03), which rolls the switch back: run it again later.
    """
    vendor = connections[using].vendor
    if not targets:
        return
    if vendor == "postgresql":
        _pg_swap(targets, using, lock_timeout)
    elif vendor == "sqlite":
        _sqlite_swap(targets, using)
    else:
        for live, shadow in targets.items():
            replace_rows(live, shadow, using)
            drop_table(shadow, using)


def drop_old_tables(targets: Targets, using: str, *, lock_timeout: float) -> None:
    """After the switch committed: drop the tables it replaced (PostgreSQL), if any.

    Dropping a table with a foreign key locks the table it references (an aggregate's,
    say), so this waits at most ``lock_timeout`` seconds for the locks and fails like
    :func:`swap_tables`. SQLite's swap dropped them itself; other backends' swap copies.
    """
    if connections[using].vendor == "postgresql" and targets:
        with transaction.atomic(using=using), _pg_lock_timeout(using, lock_timeout):
            _pg_drop([_name(t, "retired", using) for t in _tables(targets)], using)


def drop_shadows(targets: Targets, using: str) -> None:
    """Drop the shadow tables (an abandoned rebuild)."""
    conn = connections[using]
    names = [s._meta.db_table for s in targets.values()]
    with transaction.atomic(using=using):
        if conn.vendor == "postgresql":
            _pg_drop(names, using, cascade=True)
        elif conn.vendor == "sqlite":
            _sqlite_drop(names, using)
        else:
            for shadow in targets.values():
                drop_table(shadow, using)


def replace_rows(live: type[models.Model], shadow: type[models.Model], using: str) -> None:
    """Replace every row of ``live`` with the rows of ``shadow`` (same columns): a copy."""
    conn = connections[using]
    qn = conn.ops.quote_name
    columns = ", ".join(qn(f.column) for f in live._meta.concrete_fields)
    with conn.cursor() as cursor:
        cursor.execute(f"DELETE FROM {qn(live._meta.db_table)}")
        cursor.execute(
            f"INSERT INTO {qn(live._meta.db_table)} ({columns}) "
            f"SELECT {columns} FROM {qn(shadow._meta.db_table)}"
        )
        # Auto-increment keys copied in: the live table's sequence goes past them
        # (PostgreSQL; SQLite's AUTOINCREMENT follows inserted keys by itself).
        for sql in conn.ops.sequence_reset_sql(no_style(), [live]):
            cursor.execute(sql)


def lock_holders(targets: Targets, using: str) -> list[str]:
    """PostgreSQL: the other sessions holding a lock on a live table, as ``pid N (state)``."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        return []
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT l.pid, COALESCE(a.state, ''), COALESCE(a.xact_start::text, '') "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.granted AND l.pid <> pg_backend_pid() "
            "AND l.relation = ANY(SELECT to_regclass(t)::oid FROM unnest(%s::text[]) t) "
            "ORDER BY l.pid",
            [[conn.ops.quote_name(t) for t in _tables(targets)]],
        )
        return [
            f"pid {pid} ({state}, transaction started {started})"
            for pid, state, started in cursor.fetchall()
        ]


# -- shared ------------------------------------------------------------------------------


def _name(base: str, suffix: str, using: str) -> str:
    """``<base>_<suffix>``, shortened with a hash to the database's longest name."""
    max_len = connections[using].ops.max_name_length() or 200
    return truncate_name(f"{base}_{suffix}", max_len)


def _tables(targets: Targets) -> list[str]:
    return [live._meta.db_table for live in targets]


def _column_key(description: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [
        (c.name, c.type_code, c.internal_size, c.precision, c.scale, c.null_ok) for c in description
    ]


def _create_from_model(model: type[models.Model], using: str) -> None:
    conn = connections[using]
    # Not the schema editor's context manager: SQLite refuses it inside a transaction.
    editor = conn.SchemaEditorClass(conn, collect_sql=True)
    sql, params = editor.table_sql(model)
    with conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {conn.ops.quote_name(model._meta.db_table)}")
        cursor.execute(sql, params or None)


# -- PostgreSQL --------------------------------------------------------------------------


class _PgIndex(NamedTuple):
    name: str
    #: ``PRIMARY KEY (...)``, ``UNIQUE (...)``, ``EXCLUDE ...`` when a constraint owns it.
    constraint: str
    primary: bool
    #: ``CREATE [UNIQUE] INDEX <name> ON <schema>.<table> `` and what follows it.
    head: str
    definition: str


_PG_INDEXES = """
SELECT ic.relname, COALESCE(pg_get_constraintdef(con.oid), ''), i.indisprimary,
       'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX '
       || quote_ident(ic.relname) || ' ON ' || quote_ident(n.nspname) || '.'
       || quote_ident(t.relname) || ' ',
       pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_constraint con
  ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
WHERE i.indrelid = %s::oid
ORDER BY ic.relname
"""

_PG_FOREIGN_KEYS = """
SELECT conname, pg_get_constraintdef(oid), confrelid, confrelid::regclass::text, convalidated
FROM pg_constraint WHERE conrelid = %s::oid AND contype = 'f' ORDER BY conname
"""

# Sequences owned by a column: 'i' an identity's, 'a' a serial's (OWNED BY).
_PG_SEQUENCES = """
SELECT a.attname, s.relname, s.oid::regclass::text, d.deptype
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = %s::oid AND d.deptype IN ('a', 'i')
"""

# What depends on the live tables and would break or be lost when they are replaced.
_PG_DEPENDENTS = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid), d.refobjid::regclass::text,
       d.classid = 'pg_constraint'::regclass
FROM pg_depend d
LEFT JOIN pg_constraint con ON d.classid = 'pg_constraint'::regclass AND con.oid = d.objid
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY(%s::oid[]) AND d.deptype = 'n'
  AND NOT (con.oid IS NOT NULL AND con.conrelid = ANY(%s::oid[]))
UNION ALL
SELECT 'trigger ' || quote_ident(tgname), tgrelid::regclass::text, false
FROM pg_trigger WHERE tgrelid = ANY(%s::oid[]) AND NOT tgisinternal
UNION ALL
SELECT 'row-level security policy ' || quote_ident(polname), polrelid::regclass::text, false
FROM pg_policy WHERE polrelid = ANY(%s::oid[])
UNION ALL
SELECT 'publication ' || quote_ident(p.pubname), r.prrelid::regclass::text, false
FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
WHERE r.prrelid = ANY(%s::oid[])
UNION ALL
SELECT 'its kind (' || relkind::text || ', not a plain table)', oid::regclass::text, false
FROM pg_class WHERE oid = ANY(%s::oid[]) AND relkind <> 'r'
ORDER BY 2, 1
"""


def _pg_oid(cursor: Any, qn: Any, table: str) -> int:
    cursor.execute("SELECT to_regclass(%s)::oid", [qn(table)])
    oid = cursor.fetchone()[0]
    if oid is None:
        raise RebuildSwitchError(f"Table {table} does not exist.")
    return int(oid)


def _pg_dependents(targets: Targets, using: str) -> list[str]:
    conn = connections[using]
    with conn.cursor() as cursor:
        oids = [_pg_oid(cursor, conn.ops.quote_name, t) for t in _tables(targets)]
        cursor.execute(_PG_DEPENDENTS, [oids] * 6)
        return [
            f"{what} depends on table {table}" + (f" ({_FOREIGN_KEY_FIX})" if is_fk else "")
            for what, table, is_fk in cursor.fetchall()
        ]


def _pg_drop(tables: Sequence[str], using: str, *, cascade: bool = False) -> None:
    if not tables:
        return
    conn = connections[using]
    names = ", ".join(conn.ops.quote_name(t) for t in tables)
    with conn.cursor() as cursor:
        # Inside a caller's transaction that wrote the tables, their deferred foreign-key
        # checks are still queued, and PostgreSQL refuses to drop a table with pending
        # trigger events: run the checks now, as Django's check_constraints() does.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"DROP TABLE IF EXISTS {names}{' CASCADE' if cascade else ''}")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _pg_create_shadow(live: str, shadow: str, using: str) -> None:
    conn = connections[using]
    qn = conn.ops.quote_name
    with conn.cursor() as cursor:
        live_oid = _pg_oid(cursor, qn, live)
        cursor.execute(
            "SELECT relpersistence, COALESCE(array_to_string(reloptions, ', '), '') "
            "FROM pg_class WHERE oid = %s::oid",
            [live_oid],
        )
        persistence, options = cursor.fetchone()
        unlogged = "UNLOGGED " if persistence == "u" else ""
        cursor.execute(f"CREATE {unlogged}TABLE {qn(shadow)} (LIKE {qn(live)} {_LIKE_INCLUDING})")
        if options:
            cursor.execute(f"ALTER TABLE {qn(shadow)} SET ({options})")
        cursor.execute("SELECT obj_description(%s::oid, 'pg_class')", [live_oid])
        comment = cursor.fetchone()[0]
        if comment is not None:
            cursor.execute(f"COMMENT ON TABLE {qn(shadow)} IS %s", [comment])
        for index in _pg_indexes(cursor, live_oid):
            if index.primary:  # the upserts of the fill need it
                _pg_create_index(cursor, qn, shadow, index, _name(index.name, "rebuild", using))
        # Privileges granted to other roles (the owner's are implicit).
        cursor.execute(
            "SELECT a.privilege_type, COALESCE(quote_ident(r.rolname), 'PUBLIC'), a.is_grantable "
            "FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE c.oid = %s::oid AND a.grantee <> c.relowner",
            [live_oid],
        )
        for privilege, grantee, grantable in cursor.fetchall():
            option = " WITH GRANT OPTION" if grantable else ""
            cursor.execute(f"GRANT {privilege} ON {qn(shadow)} TO {grantee}{option}")


def _pg_indexes(cursor: Any, oid: int) -> list[_PgIndex]:
    cursor.execute(_PG_INDEXES, [oid])
    return [_PgIndex(*row) for row in cursor.fetchall()]


def _pg_create_index(cursor: Any, qn: Any, table: str, index: _PgIndex, name: str) -> None:
    if index.constraint:
        cursor.execute(f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(name)} {index.constraint}")
        return
    if not index.definition.startswith(index.head):
        raise RebuildSwitchError(
            f"Cannot copy index {index.name}: unexpected definition {index.definition!r}."
        )
    unique = "UNIQUE " if index.head.startswith("CREATE UNIQUE") else ""
    rest = index.definition[len(index.head) :]
    cursor.execute(f"CREATE {unique}INDEX {qn(name)} ON {qn(table)} {rest}")


def _pg_shadow_oids(targets: Targets, using: str) -> dict[int, str]:
    """The oid of each live table -> the name of its shadow table."""
    conn = connections[using]
    with conn.cursor() as cursor:
        return {
            _pg_oid(cursor, conn.ops.quote_name, live._meta.db_table): shadow._meta.db_table
            for live, shadow in targets.items()
        }


def _pg_complete_indexes(live: str, shadow: str, using: str) -> None:
    conn = connections[using]
    qn = conn.ops.quote_name
    with conn.cursor() as cursor:
        live_oid, shadow_oid = _pg_oid(cursor, qn, live), _pg_oid(cursor, qn, shadow)
        present = {index.name for index in _pg_indexes(cursor, shadow_oid)}
        for index in _pg_indexes(cursor, live_oid):
            name = _name(index.name, "rebuild", using)
            if name not in present:
                _pg_create_index(cursor, qn, shadow, index, name)


def _pg_complete_foreign_keys(
    live: str, shadow: str, shadow_of: dict[int, str], using: str
) -> None:
    conn = connections[using]
    qn = conn.ops.quote_name
    with conn.cursor() as cursor:
        live_oid, shadow_oid = _pg_oid(cursor, qn, live), _pg_oid(cursor, qn, shadow)
        cursor.execute(_PG_FOREIGN_KEYS, [shadow_oid])
        done = {row[0]: row[4] for row in cursor.fetchall()}
        cursor.execute(_PG_FOREIGN_KEYS, [live_oid])
        for name, definition, target_oid, target, validated in cursor.fetchall():
            if name not in done:
                if target_oid in shadow_of:  # another read model of this rebuild
                    head, sep, tail = definition.partition(f" REFERENCES {target}(")
                    if not sep:
                        raise RebuildSwitchError(
                            f"Cannot copy foreign key {name} of {live}: unexpected "
                            f"definition {definition!r}."
                        )
                    definition = f"{head} REFERENCES {qn(shadow_of[target_oid])}({tail}"
                if validated:
                    # NOT VALID, then VALIDATE: the referenced table stays open to writes
                    # while the rows are checked.
                    definition += " NOT VALID"
                cursor.execute(f"ALTER TABLE {qn(shadow)} ADD CONSTRAINT {qn(name)} {definition}")
            if validated and not done.get(name):
                cursor.execute(f"ALTER TABLE {qn(shadow)} VALIDATE CONSTRAINT {qn(name)}")


@contextmanager
def _pg_lock_timeout(using: str, seconds: float) -> Iterator[None]:
    """``lock_timeout`` for the statements of the block (inside a transaction)."""
    conn = connections[using]
    with conn.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout')")
        previous = cursor.fetchone()[0]
        milliseconds = max(1, math.ceil(seconds * 1000))
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{milliseconds}ms"])
        yield
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])


def _pg_swap(targets: Targets, using: str, lock_timeout: float) -> None:
    conn = connections[using]
    qn = conn.ops.quote_name
    tables = [*_tables(targets), *(s._meta.db_table for s in targets.values())]
    with conn.cursor() as cursor:
        with _pg_lock_timeout(using, lock_timeout):
            cursor.execute(f"LOCK TABLE {', '.join(map(qn, tables))} IN ACCESS EXCLUSIVE MODE")
        for live, shadow in targets.items():
            _pg_swap_one(cursor, qn, live._meta.db_table, shadow._meta.db_table, using)


def _pg_swap_one(cursor: Any, qn: Any, live: str, shadow: str, using: str) -> None:
    live_oid, shadow_oid = _pg_oid(cursor, qn, live), _pg_oid(cursor, qn, shadow)
    indexes = _pg_indexes(cursor, live_oid)
    present = {index.name for index in _pg_indexes(cursor, shadow_oid)}
    missing = [i.name for i in indexes if _name(i.name, "rebuild", using) not in present]
    if missing:
        raise RebuildSwitchError(
            f"The shadow of {live} lacks the indexes {', '.join(missing)} (the live table "
            "changed during the rebuild?): run the rebuild again."
        )
    cursor.execute(_PG_SEQUENCES, [live_oid])
    live_sequences = {column: (name, qualified, kind) for column, name, qualified, kind in cursor}
    cursor.execute(_PG_SEQUENCES, [shadow_oid])
    shadow_sequences = {column: (name, qualified, kind) for column, name, qualified, kind in cursor}
    floors: dict[str, int] = {}
    # Out of the way: the live table, its indexes and identity sequences get other names.
    for column, (name, qualified, kind) in live_sequences.items():
        floors[column] = _pg_handed_out(cursor, qualified)
        if kind == "a":  # a serial: the shadow's default already takes from it; keep it
            cursor.execute(f"ALTER SEQUENCE {qualified} OWNED BY {qn(shadow)}.{qn(column)}")
        else:
            cursor.execute(
                f"ALTER SEQUENCE {qualified} RENAME TO {qn(_name(name, 'retired', using))}"
            )
    cursor.execute(f"ALTER TABLE {qn(live)} RENAME TO {qn(_name(live, 'retired', using))}")
    for index in indexes:
        cursor.execute(
            f"ALTER INDEX {qn(index.name)} RENAME TO {qn(_name(index.name, 'retired', using))}"
        )
    # In place: the shadow takes the live names.
    cursor.execute(f"ALTER TABLE {qn(shadow)} RENAME TO {qn(live)}")
    for index in indexes:
        cursor.execute(
            f"ALTER INDEX {qn(_name(index.name, 'rebuild', using))} RENAME TO {qn(index.name)}"
        )
    for column, (_, qualified, kind) in shadow_sequences.items():
        floors[column] = max(floors.get(column, 0), _pg_handed_out(cursor, qualified))
        if kind == "i" and live_sequences.get(column, ("", "", ""))[2] == "i":
            cursor.execute(f"ALTER SEQUENCE {qualified} RENAME TO {qn(live_sequences[column][0])}")
    # Ids handed out before never come back, and none collides with a rebuilt row.
    for column, floor in floors.items():
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence(%s, %s), "
            f"GREATEST(%s, (SELECT max({qn(column)}) FROM {qn(live)}))) "
            f"WHERE GREATEST(%s, (SELECT max({qn(column)}) FROM {qn(live)})) > 0",
            [qn(live), column, floor, floor],
        )


def _pg_handed_out(cursor: Any, qualified: str) -> int:
    """The last value a sequence handed out (0 if none)."""
    cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {qualified}")
    return int(cursor.fetchone()[0])


# -- SQLite ------------------------------------------------------------------------------


class _Probe(NamedTuple):
    #: Live table -> the CREATE TABLE statement of its shadow.
    shadows: dict[str, str]
    #: Schema objects outside the rebuild that refer to a live table.
    dependents: list[str]


class _Undo(Exception):
    pass


def _sqlite_schema(cursor: Any) -> dict[tuple[str, str], tuple[str, str]]:
    cursor.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL")
    return {(kind, name): (table, sql) for kind, name, table, sql in cursor.fetchall()}


@contextmanager
def _sqlite_renames_follow(cursor: Any) -> Iterator[None]:
    """``PRAGMA legacy_alter_table = OFF``: a rename rewrites the references to the table."""
    cursor.execute("PRAGMA legacy_alter_table")
    previous = cursor.fetchone()[0]
    cursor.execute("PRAGMA legacy_alter_table = OFF")
    try:
        yield
    finally:
        cursor.execute(f"PRAGMA legacy_alter_table = {'ON' if previous else 'OFF'}")


def _sqlite_probe(targets: Targets, using: str) -> _Probe:
    """Rename the live tables to their shadows' names in a savepoint, read, roll back."""
    conn = connections[using]
    qn = conn.ops.quote_name
    names = {live._meta.db_table: shadow._meta.db_table for live, shadow in targets.items()}
    ours = {*names, *names.values()}
    with conn.cursor() as cursor:
        try:
            with transaction.atomic(using=using), _sqlite_renames_follow(cursor):
                _sqlite_drop(list(names.values()), using)
                before = _sqlite_schema(cursor)
                for live, shadow in names.items():
                    cursor.execute(f"ALTER TABLE {qn(live)} RENAME TO {qn(shadow)}")
                after = _sqlite_schema(cursor)
                raise _Undo
        except _Undo:
            pass
    dependents = [
        f"{kind} {name} refers to "
        + ", ".join(live for live, shadow in names.items() if shadow in sql)
        + (f" ({_FOREIGN_KEY_FIX})" if kind == "table" else "")
        for (kind, name), (table, sql) in sorted(after.items())
        if before.get((kind, name), ("", ""))[1] != sql
        and name not in ours
        and not (kind == "index" and table in ours)
    ]
    return _Probe({live: after[("table", shadow)][1] for live, shadow in names.items()}, dependents)


def _sqlite_children_first(cursor: Any, qn: Any, tables: Sequence[str]) -> list[str]:
    """``tables`` ordered so that no table is dropped before one that references it."""
    refs: dict[str, set[str]] = {}
    for table in tables:
        cursor.execute(f"PRAGMA foreign_key_list({qn(table)})")
        refs[table] = {row[2] for row in cursor.fetchall()} & set(tables) - {table}
    order: list[str] = []
    remaining = list(tables)
    while remaining:
        free = [t for t in remaining if not any(t in refs[o] for o in remaining if o != t)]
        pick = free[0] if free else remaining[0]  # a cycle: deferred checks sort it out
        order.append(pick)
        remaining.remove(pick)
    return order


def _sqlite_drop(tables: Sequence[str], using: str) -> None:
    conn = connections[using]
    qn = conn.ops.quote_name
    with conn.cursor() as cursor:
        existing = set(conn.introspection.table_names(cursor))
        for table in _sqlite_children_first(cursor, qn, [t for t in tables if t in existing]):
            cursor.execute(f"DROP TABLE {qn(table)}")


def _sqlite_swap(targets: Targets, using: str) -> None:
    conn = connections[using]
    qn = conn.ops.quote_name
    lives = _tables(targets)
    marks = ", ".join(["%s"] * len(lives))
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({marks}) ORDER BY name",
            lives,
        )
        indexes = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
        counters: list[tuple[str, int]] = []
        if cursor.fetchone():
            cursor.execute(f"SELECT name, seq FROM sqlite_sequence WHERE name IN ({marks})", lives)
            counters = cursor.fetchall()
        with _sqlite_renames_follow(cursor):
            for table in _sqlite_children_first(cursor, qn, lives):
                cursor.execute(f"DROP TABLE {qn(table)}")
            for live, shadow in targets.items():
                cursor.execute(
                    f"ALTER TABLE {qn(shadow._meta.db_table)} RENAME TO {qn(live._meta.db_table)}"
                )
        for sql in indexes:
            cursor.execute(sql)
        # AUTOINCREMENT: ids handed out before never come back.
        for table, seq in counters:
            cursor.execute(
                "UPDATE sqlite_sequence SET seq = MAX(seq, %s) WHERE name = %s", [seq, table]
            )
            if not cursor.rowcount:
                cursor.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, seq]
                )
