"""What the database holds, table by table: to prove that a refused command wrote nothing.

    from django_cqrs.testing.snapshot import Snapshot

    before = Snapshot.take()
    ...                                  # something that must write nothing
    assert not Snapshot.take().changes_since(before)

A snapshot covers the table of every model of every installed app (aggregates, the event
log, read models, saga instances and deadlines, the apps' own tables, many-to-many
tables), on the database each model writes to. A table of up to :data:`ROW_LIMIT` rows is
kept whole, so a row added, removed or changed in place shows up, and is named by its
primary key; a larger one is kept as its row count and highest primary key. A test's
tables are small: a snapshot costs one query per table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.db import connections, models, router

#: Tables with more rows than this are compared by their row count and highest key only.
ROW_LIMIT = 1000
#: Keys named per kind of change in a description.
SHOWN_KEYS = 3


@dataclasses.dataclass(frozen=True)
class Table:
    """One table's content: every row by primary key, or its count and highest key."""

    label: str
    count: int
    #: Primary key -> the row's values; None when the table has more than ROW_LIMIT rows.
    rows: dict[Any, tuple[Any, ...]] | None
    top: Any

    @classmethod
    def read(cls, model: type[models.Model], using: str) -> Table:
        manager = model._base_manager.db_manager(using)
        fields = [field.attname for field in model._meta.concrete_fields]
        pk = model._meta.pk
        assert pk is not None
        index = fields.index(pk.attname)
        rows = list(manager.order_by("pk").values_list(*fields)[: ROW_LIMIT + 1])
        label = model._meta.label
        if len(rows) <= ROW_LIMIT:
            top = rows[-1][index] if rows else None
            return cls(label, len(rows), {row[index]: row for row in rows}, top)
        top = manager.aggregate(top=models.Max("pk"))["top"]
        return cls(label, manager.count(), None, top)

    def changes_since(self, before: Table) -> str:
        """What differs from ``before`` (empty: nothing), in words."""
        if self.rows is None or before.rows is None:
            if (self.count, self.top) == (before.count, before.top):
                return ""
            return (
                f"{self.label}: {before.count} -> {self.count} rows, highest key "
                f"{before.top!r} -> {self.top!r}"
            )
        added = [key for key in self.rows if key not in before.rows]
        removed = [key for key in before.rows if key not in self.rows]
        changed = [
            key for key, row in self.rows.items() if key in before.rows and before.rows[key] != row
        ]
        parts = [
            _keys(what, keys)
            for what, keys in (("added", added), ("removed", removed), ("changed", changed))
            if keys
        ]
        return f"{self.label}: {'; '.join(parts)}" if parts else ""


def _keys(what: str, keys: list[Any]) -> str:
    shown = ", ".join(repr(key) for key in keys[:SHOWN_KEYS])
    more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return f"{len(keys)} row{'s' if len(keys) != 1 else ''} {what} ({shown}{more})"


def stored_models() -> list[tuple[type[models.Model], str]]:
    """Every model with a table of its own, with the database it writes to."""
    found = []
    tables: dict[str, set[str]] = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy:
            continue
        using = router.db_for_write(model)
        if using not in tables:
            tables[using] = set(connections[using].introspection.table_names())
        if model._meta.db_table in tables[using]:
            found.append((model, using))
    return found


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The content of every model's table at one moment."""

    tables: dict[str, Table]

    @classmethod
    def take(cls, stored: Iterable[tuple[type[models.Model], str]] | None = None) -> Snapshot:
        """Read every table (``stored``: these models and databases; default: all)."""
        pairs = stored_models() if stored is None else stored
        return cls({model._meta.label: Table.read(model, using) for model, using in pairs})

    def changes_since(self, before: Snapshot) -> list[str]:
        """One line per table whose content differs from ``before`` (empty: none)."""
        found = []
        for label, table in self.tables.items():
            earlier = before.tables.get(label)
            change = table.changes_since(earlier) if earlier else f"{label}: new table"
            if change:
                found.append(change)
        return found
