"""The row buffer: read-model rows a batch changes, written in bulk once per batch.

    from django_cqrs.projections.buffer import RowBuffer

    buffer = RowBuffer(targets={OrderView: OrderViewShadow})   # rebuild: rows go to the shadow
    buffer.prefetch(OrderView, order_ids)       # one query per 1,000 keys
    view = buffer.get(OrderView, order_id)      # buffered rows first, then the table
    buffer.put(view)
    buffer.flush()                              # one upsert per table, deletes first

Projections write through it during catch-up batches and rebuilds (``Projection(buffered=True)``);
applied live, they write at once with the same functions (:func:`load_row`,
:func:`delete_rows` and :mod:`django_cqrs.db.upserts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import models, router

from ..db.redirect import DECLARE
from ..db.upserts import upsert
from ..exceptions import RebuildWriteError

M = TypeVar("M", bound=models.Model)

_DELETED = object()


class RowBuffer:
    """Read-model rows changed by a batch, written in bulk by :meth:`flush`.

    ``targets`` maps a read model to the table that really receives its rows (a
    rebuild's shadow table); handlers keep working with the read-model class. With
    targets, a write of any other model raises
    :class:`~django_cqrs.exceptions.RebuildWriteError` naming ``owner``.
    """

    def __init__(
        self,
        targets: dict[type[models.Model], type[models.Model]] | None = None,
        *,
        owner: str = "",
    ):
        self.rows: dict[tuple[type[models.Model], Any], Any] = {}
        self.dirty: set[tuple[type[models.Model], Any]] = set()
        self.targets = targets or {}
        self.owner = owner

    def get(self, model: type[M], pk: Any) -> M | None:
        key = (model, _pk_key(model, pk))
        if key not in self.rows:
            target = self.targets.get(model)
            loaded = (
                load_row(model, pk) if target is None else _convert(load_row(target, pk), model)
            )
            self.rows[key] = loaded or _DELETED
        row = self.rows[key]
        return None if row is _DELETED else row

    def prefetch(self, model: type[models.Model], pks: Iterable[Any]) -> None:
        """Load the existing rows of ``model`` among ``pks`` in one query per 1,000 keys.

        Keys already buffered, keys that are not valid for the primary key (a stored
        payload may hold anything: text for a number, a number out of the column's
        range), and rows that do not exist are left alone (:meth:`get` loads those one
        by one, as before, where an error is the event's).
        """
        wanted: dict[Any, None] = {}
        field = model._meta.pk
        for pk in pks:
            try:
                key = _pk_key(model, pk)
                field.run_validators(key)
                if key is not None and (model, key) not in self.rows:
                    wanted[key] = None
            except (ValidationError, ValueError, TypeError):
                continue
        if not wanted:
            return
        target = self.targets.get(model)
        source = target or model
        manager = source._base_manager.using(router.db_for_write(source))
        keys = list(wanted)
        for start in range(0, len(keys), 1000):
            for row in manager.filter(pk__in=keys[start : start + 1000]).order_by():
                instance = row if target is None else _convert_existing(row, model)
                self.rows.setdefault((model, _pk_key(model, row.pk)), instance)

    def put(self, instance: models.Model) -> None:
        if self.targets and type(instance) not in self.targets:
            self._refuse(type(instance))
        key = (type(instance), _pk_key(type(instance), instance.pk))
        self.rows[key] = instance
        self.dirty.add(key)

    def delete(self, model: type[models.Model], pk: Any) -> None:
        if self.targets and model not in self.targets:
            self._refuse(model)
        key = (model, _pk_key(model, pk))
        self.rows[key] = _DELETED
        self.dirty.add(key)

    def _refuse(self, model: type[models.Model]) -> None:
        raise RebuildWriteError(
            projection=self.owner,
            table=model._meta.db_table,
            problem=f"{model.__name__} is not one of its read_models",
            fix=DECLARE,
        )

    def flush(self) -> None:
        upserts: dict[type[models.Model], list[models.Model]] = {}
        deletes: dict[type[models.Model], list[Any]] = {}
        for key in self.dirty:
            model, pk = key
            row = self.rows[key]
            target = self.targets.get(model)
            if row is _DELETED:
                deletes.setdefault(target or model, []).append(pk)
            else:
                upserts.setdefault(target or model, []).append(
                    row if target is None else _convert_existing(row, target)
                )
        for model, pks in deletes.items():
            delete_rows(model, pks)
        for model, instances in upserts.items():
            upsert(model, instances)
        self.rows.clear()
        self.dirty.clear()


def _convert_existing(instance: models.Model, to: type[M]) -> M:
    converted = _convert(instance, to)
    assert converted is not None
    return converted


def _convert(instance: models.Model | None, to: type[M]) -> M | None:
    """The same row as an instance of ``to`` (a read model or its shadow)."""
    if instance is None:
        return None
    # Positional arguments, in ``to``'s field order: Model.__init__'s fast path.
    converted = to(*[getattr(instance, f.attname) for f in to._meta.concrete_fields])
    converted._state.adding = instance._state.adding
    return converted


def _pk_key(model: type[models.Model], pk: Any) -> Any:
    return model._meta.pk.to_python(pk)


def load_row(model: type[M], pk: Any) -> M | None:
    """The row of ``model`` with primary key ``pk``, or None."""
    return model._base_manager.using(router.db_for_write(model)).filter(pk=pk).first()


def delete_rows(model: type[models.Model], pks: Sequence[Any]) -> None:
    """Delete the rows of ``model`` with these primary keys."""
    model._base_manager.using(router.db_for_write(model)).filter(pk__in=list(pks)).delete()
