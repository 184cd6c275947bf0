"""Locks on the event log's table.

    from django_cqrs.db.log import lock_log

    lock_log(StoredEvent, "default", "EXCLUSIVE")   # appends: position order = commit order
    lock_log(StoredEvent, "default", "SHARE")       # a rebuild's switch: appends wait

PostgreSQL hands out sequence values in the order transactions ask, not the order they
commit, so appends hold ``LOCK TABLE ... IN EXCLUSIVE MODE`` to commit. SQLite has one
writer at a time, which gives the same guarantee: it needs no lock. Readers are never
blocked.
"""

from __future__ import annotations

from typing import Literal

from django.db import connections, models


def lock_log(model: type[models.Model], using: str, mode: Literal["EXCLUSIVE", "SHARE"]) -> None:
    """Take PostgreSQL's ``LOCK TABLE <table> IN <mode> MODE`` until the transaction ends."""
    conn = connections[using]
    if conn.vendor == "postgresql":
        with conn.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {conn.ops.quote_name(model._meta.db_table)} IN {mode} MODE")
