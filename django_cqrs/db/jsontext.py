"""A JSON key of a column as text, in SQL an index on the expression can match.

    from django_cqrs.db.jsontext import KeyText

    models.Index(KeyText("metadata", "user"), name="django_cqrs_event_user")
    StoredEvent.objects.filter(Exact(KeyText("metadata", "user"), "alice"))

The index and the query must spell the expression the same way, constants included, or
the database reads the whole table. Django's ``KT()`` cannot serve: on SQLite it binds
the JSON path as a parameter (an index holds a constant) and wraps it in a ``CASE`` whose
``IN`` list comes from a set, in an order that changes from one process to the next.
``KeyText`` writes the key as a constant: PostgreSQL ``("metadata" ->> 'user')``, SQLite
``json_extract("metadata", '$."user"')`` (a JSON string comes back as its text, as
``->>`` does); other databases get ``KT()``.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import models
from django.db.models.fields.json import KeyTextTransform

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KeyText(models.Func):
    """``field``'s JSON key ``key`` as text (``key`` a plain identifier)."""

    output_field = models.TextField()

    def __init__(self, field: str, key: str, **extra: Any) -> None:
        if not _KEY.match(key):
            raise ValueError(f"KeyText needs a plain identifier as its key, not {key!r}")
        self.key = key
        super().__init__(models.F(field), **extra)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template=f"(%(expressions)s ->> '{self.key}')")

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler, connection, template=f"json_extract(%(expressions)s, '$.\"{self.key}\"')"
        )

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:  # type: ignore[override]
        if "template" in extra:
            return super().as_sql(compiler, connection, **extra)
        (field,) = self.get_source_expressions()
        return compiler.compile(KeyTextTransform(self.key, field))

    def deconstruct(self) -> Any:
        (field,) = self.get_source_expressions()
        return (f"{__name__}.KeyText", (field.name, self.key), {})
