"""Optimistic concurrency over HTTP: ``ETag`` out, ``If-Match`` in.

    # GET /api/orders/<id>/        ->  ETag: "3"          (the aggregate's version)
    # POST /api/orders/<id>/ship/  with  If-Match: "3"   ->  200, or 412 when it moved on

    expected = parse_if_match(request.headers.get("If-Match"))   # None: no precondition
    with transaction.atomic():
        check_version(Order, order_id, expected)   # locks the row, raises PreconditionFailedError
        command_bus.dispatch(ShipOrder(order_id=order_id))

The check runs in the command's transaction with the aggregate's row locked, so no other
writer can change the version between the comparison and the command's own save.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from django.db import models, router

from ..db.transactions import lock_rows
from ..exceptions import AggregateNotFoundError, PreconditionFailedError
from .exceptions import BadHeader

_ETAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)|\s*([0-9]+)\s*(?:,|$)')


@dataclasses.dataclass(frozen=True)
class IfMatch:
    """A parsed ``If-Match`` header: ``*`` or a set of strong versions."""

    any: bool = False
    versions: frozenset[int] = frozenset()

    def matches(self, version: int) -> bool:
        return self.any or version in self.versions


def etag(version: int) -> str:
    """The strong entity tag of an aggregate version."""
    return f'"{version}"'


def parse_if_match(value: str | None) -> IfMatch | None:
    """Parse ``If-Match``; None when absent, ``BadHeader`` (400) when malformed.

    Weak tags (``W/"3"``) never match: ``If-Match`` uses the strong comparison.
    """
    if value is None:
        return None
    value = value.strip()
    if value == "*":
        return IfMatch(any=True)
    versions: set[int] = set()
    pos = 0
    while pos < len(value):
        match = _ETAG.match(value, pos)
        if match is None or match.end() == pos:
            raise BadHeader(
                f"If-Match must be a list of quoted versions such as '\"3\"', not {value!r}"
            )
        weak, quoted, bare = match.groups()
        tag = quoted if quoted is not None else bare
        if not weak and tag.isdigit() and len(tag) < 19:
            versions.add(int(tag))
        pos = match.end()
    if not versions and not value:
        raise BadHeader("If-Match is empty")
    return IfMatch(versions=frozenset(versions))


def check_version(model: type[models.Model], pk: Any, expected: IfMatch) -> int:
    """Lock the aggregate's row and raise unless its version matches; return the version.

    Call it inside the transaction that runs the command.
    """
    using = router.db_for_write(model)
    queryset = lock_rows(model._default_manager.using(using).filter(pk=pk))
    version = queryset.values_list("version", flat=True).first()
    if version is None:
        raise AggregateNotFoundError(
            f"{model._meta.verbose_name} {pk} does not exist",
            aggregate_type=model._meta.label,
            aggregate_id=pk,
        )
    if not expected.matches(version):
        wanted = ", ".join(etag(v) for v in sorted(expected.versions)) or "(none)"
        raise PreconditionFailedError(
            f"{model._meta.verbose_name} {pk} is at version {version}, not {wanted}",
            aggregate_type=model._meta.label,
            aggregate_id=pk,
            expected_version=min(expected.versions) if expected.versions else None,
        )
    return int(version)
