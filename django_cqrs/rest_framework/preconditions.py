"""Optimistic concurrency over HTTP: ``ETag`` out, ``If-Match`` and ``If-None-Match`` in.

    # GET /api/orders/<id>/        ->  ETag: "3"          (the aggregate's version)
    # GET /api/orders/<id>/        with  If-None-Match: "3"   ->  304
    # GET /api/customers/<id>/summary/  ->  ETag: W/"9f86d081884c7d65"  (no version: a digest)
    # POST /api/orders/<id>/ship/  with  If-Match: "3"   ->  200, or 412 when it moved on
    # If-Match: 3  (unquoted), If-Match: "²"  (not ASCII)  ->  400, the problem names the header

    expected = parse_if_match(request.headers.get("If-Match"))   # None: no precondition
    with transaction.atomic():
        check_version(Order, order_id, expected)   # locks the row, raises PreconditionFailedError
        command_bus.dispatch(ShipOrder(order_id=order_id))

The check runs in the command's transaction with the aggregate's row locked, so no other
writer can change the version between the comparison and the command's own save.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from django.db import models, router

from ..db.transactions import lock_rows
from ..exceptions import AggregateNotFoundError, PreconditionFailedError
from .exceptions import BadHeader, shown

IF_MATCH_HEADER = "If-Match"
IF_NONE_MATCH_HEADER = "If-None-Match"

# One element of an entity-tag list (RFC 9110 section 8.8.3), ASCII only: optional
# whitespace, then an entity tag or nothing (empty elements are allowed), then a comma
# or the end.
_ELEMENT = re.compile(r'[ \t]*(?:(W/)?"([\x21\x23-\x7e]*)")?[ \t]*(?:,|\Z)')
# The tags this API sends: a version in canonical decimal form (no sign, no leading 0).
_VERSION = re.compile(r"0|[1-9][0-9]{0,17}")


@dataclasses.dataclass(frozen=True)
class IfMatch:
    """A parsed ``If-Match`` or ``If-None-Match`` header: ``*`` or a set of entity tags."""

    any: bool = False
    #: The tags that are versions this API sends (``"3"``).
    versions: frozenset[int] = frozenset()
    #: Every tag taking part in the comparison, as sent between the quotes.
    tags: frozenset[str] = frozenset()

    def matches(self, version: int) -> bool:
        return self.any or version in self.versions

    def matches_tag(self, tag: str) -> bool:
        """Does the opaque tag ``tag`` (without quotes) match?"""
        return self.any or tag in self.tags


def etag(version: int) -> str:
    """The strong entity tag of an aggregate version."""
    return f'"{version}"'


def digest(data: Any) -> str:
    """A short digest of a JSON-ready representation: the tag of a resource without a version.

    Sent as a weak tag (``W/"..."``): it changes when the representation does, and says
    nothing about a version a command could be conditioned on (``If-Match`` never matches
    it).
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def parse_entity_tags(value: str, header: str, *, weak: bool) -> IfMatch:
    """``*`` or a list of entity tags; ``BadHeader`` (400) naming ``header`` when malformed.

    Tags that are not a version this API sends (``"abc"``, ``"007"``) are valid and match
    nothing. ``weak=False`` is the strong comparison (weak tags never match).
    """
    if value.strip(" \t") == "*":
        return IfMatch(any=True)
    versions: set[int] = set()
    compared: set[str] = set()
    tags = 0
    pos = 0
    while pos < len(value):
        match = _ELEMENT.match(value, pos)
        if match is None or match.end() == pos:
            raise BadHeader(
                f"{header} must be * or a list of quoted entity tags such as '\"3\"' "
                f"(ASCII), not {shown(value)}",
                header=header,
            )
        is_weak, tag = match.groups()
        if tag is not None:
            tags += 1
            if weak or not is_weak:
                compared.add(tag)
                if _VERSION.fullmatch(tag):
                    versions.add(int(tag))
        pos = match.end()
    if not tags:
        raise BadHeader(f"{header} names no entity tag", header=header)
    return IfMatch(versions=frozenset(versions), tags=frozenset(compared))


def parse_if_match(value: str | None) -> IfMatch | None:
    """Parse ``If-Match``; None when absent, ``BadHeader`` (400) when malformed.

    Weak tags (``W/"3"``) never match: ``If-Match`` uses the strong comparison.
    """
    if value is None:
        return None
    return parse_entity_tags(value, IF_MATCH_HEADER, weak=False)


def parse_if_none_match(value: str | None) -> IfMatch | None:
    """Parse ``If-None-Match`` (the weak comparison); None when absent, 400 when malformed."""
    if value is None:
        return None
    return parse_entity_tags(value, IF_NONE_MATCH_HEADER, weak=True)


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
