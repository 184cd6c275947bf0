"""How many rows a table holds, from the planner's statistics instead of ``COUNT(*)``.

    from django_cqrs.db.estimates import estimated_rows

    estimated_rows(StoredEvent, "default")   # PostgreSQL: about 3_000_000; elsewhere None

PostgreSQL keeps ``pg_class.reltuples`` (rows) and ``relpages`` (pages) from the last
``ANALYZE`` or ``VACUUM``; scaled to the table's current size in pages, as the planner
does, the estimate follows the appends made since. It costs one catalogue lookup,
where ``COUNT(*)`` reads the whole table. ``None`` when the table was never analysed,
and on every other database: the caller counts instead.
"""

from __future__ import annotations

from django.db import connections, models

_ESTIMATE = """
SELECT CASE
    WHEN c.reltuples < 0 OR c.relpages <= 0 THEN NULL
    ELSE (c.reltuples / c.relpages
          * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint
END
FROM pg_class c
WHERE c.oid = to_regclass(%s)
"""


def estimated_rows(model: type[models.Model], using: str) -> int | None:
    """About how many rows ``model``'s table holds (PostgreSQL), or None."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        return None
    with conn.cursor() as cursor:
        cursor.execute(_ESTIMATE, [conn.ops.quote_name(model._meta.db_table)])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return None
    return max(int(row[0]), 0)
