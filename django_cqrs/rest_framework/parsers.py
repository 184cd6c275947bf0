"""The JSON parser of the CQRS views: UTF-8, bounded nesting, unique keys, finite numbers.

    # every CQRS view parses with it; for your other DRF views:
    REST_FRAMEWORK = {"DEFAULT_PARSER_CLASSES": ["django_cqrs.rest_framework.parsers.JSONParser"]}

    JSONParser().parse(io.BytesIO(b'{"a": [1, 2]}'))     # {'a': [1, 2]}
    # '[' * 1000 + ']' * 1000  ->  400 nesting_too_deep (over DJANGO_CQRS["MAX_JSON_DEPTH"])
    # '{"a": 1, "a": 2}'       ->  400 parse_error (a duplicate key)
    # '{"a": 1e999}', 'NaN'    ->  400 parse_error (not a finite number)
    # b'{"a": "\\xff"}'        ->  400 parse_error (not UTF-8)

The nesting depth is measured before any object is built, by one linear scan over the
bytes (strings skipped, no recursion), so a deep body costs a scan and a 400, never a
``RecursionError``. The body is decoded as UTF-8 whatever ``charset`` the client
names (RFC 8259: JSON between systems is UTF-8).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers, renderers
from rest_framework.exceptions import ParseError

from ..conf import cqrs_settings
from .exceptions import NestingTooDeep

__all__ = ["JSONParser", "check_depth", "loads"]

# A JSON string (its escapes included) or one bracket. `"` and `\` never occur inside a
# multi-byte UTF-8 sequence, so the bytes can be scanned before they are decoded.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[][{}]', re.DOTALL)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


def check_depth(raw: bytes, limit: int) -> None:
    """Raise ``NestingTooDeep`` when arrays and objects nest more than ``limit`` deep."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return  # too few brackets to nest that deep: no scan
    depth = 0
    for match in _TOKENS.finditer(raw):
        char = raw[match.start()]
        if char in _OPEN:
            depth += 1
            if depth > limit:
                raise NestingTooDeep(
                    f"The JSON body nests arrays and objects more than {limit} levels deep."
                )
        elif char in _CLOSE:
            depth -= 1


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads(raw: bytes, *, max_depth: int | None = None) -> Any:
    """Parse a JSON body; ``ParseError`` (400) or ``NestingTooDeep`` (400) when it is bad."""
    check_depth(raw, int(cqrs_settings.MAX_JSON_DEPTH) if max_depth is None else max_depth)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"JSON parse error - the body is not UTF-8: {exc.reason}") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_float=_finite,
            parse_constant=_constant,
        )
    except ValueError as exc:  # JSONDecodeError, the hooks, integers over 4300 digits
        raise ParseError(f"JSON parse error - {exc}") from None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the limits above (``MAX_JSON_DEPTH``)."""

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        return loads(stream.read() if stream is not None else b"")
