"""Placeholder: OpenTelemetry spans (replaced by the telemetry branch)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any


class _NoSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def record_exception(self, exc: BaseException) -> None:
        pass


@contextlib.contextmanager
def span(
    name: str,
    attributes: dict[str, Any] | None = None,
    *,
    links_from: Mapping[str, str] | None = None,
) -> Iterator[_NoSpan]:
    yield _NoSpan()


def trace_headers() -> dict[str, str]:
    return {}


@contextlib.contextmanager
def use_trace_headers(headers: Mapping[str, str]) -> Iterator[None]:
    yield
