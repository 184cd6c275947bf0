"""OpenTelemetry spans of django_cqrs (tracer ``"django_cqrs"``), when it is installed.

    from django_cqrs import telemetry

    with telemetry.span("cqrs.relay.publish", {"cqrs.relay": "bus"}) as span:
        ...                                   # an error raised here is recorded (status ERROR)
        span.set_attribute("cqrs.events", 20)
    headers = telemetry.trace_headers()       # {"traceparent": "00-...-01"}, or {}
    with telemetry.use_trace_headers(headers):
        ...                                   # spans here are children of the remote span

The buses, the catch-up engine, rebuilds and sagas open their spans through :func:`span`
(see docs/telemetry.md). Without the ``opentelemetry`` extra (``opentelemetry-api``),
or with ``DJANGO_CQRS["TRACING"] = False``, every function here is a no-op: ``span()``
gives an object whose methods do nothing, ``trace_headers()`` gives ``{}``. Whether the
package can be imported is decided once, when this module is imported (:data:`AVAILABLE`).
This module is the only one of django_cqrs that imports ``opentelemetry``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol

from .conf import cqrs_settings
from .context import current_context

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, Status, StatusCode
except ImportError:  # the extra is not installed: everything below is a no-op
    AVAILABLE = False
else:
    AVAILABLE = True

#: The name of django_cqrs's tracer (the instrumentation scope of its spans).
TRACER_NAME = "django_cqrs"
#: The attribute every span carries when a correlation id is known.
CORRELATION_ID = "cqrs.correlation_id"
#: The attribute saying how the span's work ended: "ok" or "error".
OUTCOME = "cqrs.outcome"

#: The correlation id of the innermost span that has one: the spans opened inside it
#: inherit it (a catch-up batch inside the task that a command queued).
_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "django_cqrs_span_correlation", default=None
)


class SpanLike(Protocol):
    """What :func:`span` gives: a live span, or one that does nothing."""

    def set_attribute(self, key: str, value: Any) -> None: ...

    def record_exception(self, exc: BaseException) -> None: ...


def enabled() -> bool:
    """Whether spans are recorded: ``opentelemetry`` is installed and ``TRACING`` is on."""
    return AVAILABLE and bool(cqrs_settings.TRACING)


class _NoSpan:
    """The span (and its context manager) when tracing is off: nothing is recorded."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def record_exception(self, exc: BaseException) -> None:
        pass

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


NO_SPAN = _NoSpan()


def _value(value: Any) -> Any:
    """An attribute value OpenTelemetry takes: str, bool, int, float, or a sequence of one."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Sequence | set | frozenset):
        items = list(value)
        kinds = {type(item) for item in items}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return tuple(items)
        return tuple(str(item) for item in items)
    return str(value)


class _Span:
    """A live span, current inside the block; an error leaving the block is recorded."""

    def __init__(self, name: str, attributes: dict[str, Any], links: list[Link]) -> None:
        self.name = name
        self.attributes = attributes
        self.links = links
        self.outcome_set = False

    def set_attribute(self, key: str, value: Any) -> None:
        if value is None:
            return
        if key == OUTCOME:
            self.outcome_set = True
        self.span.set_attribute(key, _value(value))

    def record_exception(self, exc: BaseException) -> None:
        """The span's work failed with ``exc`` (an error the block handles itself too)."""
        self.span.record_exception(exc)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        self.set_attribute(OUTCOME, "error")

    def __enter__(self) -> _Span:
        tracer = trace.get_tracer(TRACER_NAME)
        self.span = tracer.start_span(self.name, attributes=self.attributes, links=self.links)
        self._context = otel_context.attach(trace.set_span_in_context(self.span))
        self._correlation = _correlation.set(self.attributes.get(CORRELATION_ID))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                self.record_exception(exc)
            elif not self.outcome_set:
                self.span.set_attribute(OUTCOME, "ok")
        finally:
            _correlation.reset(self._correlation)
            otel_context.detach(self._context)
            self.span.end()


def span(
    name: str,
    attributes: dict[str, Any] | None = None,
    *,
    links_from: Mapping[str, str] | None = None,
) -> AbstractContextManager[SpanLike]:
    """A span named ``name``, current inside the ``with`` block, with ``attributes``.

    ``None`` values are left out; other values that are not str, bool, int or float (or
    a sequence of them) are stored as ``str()``. The span carries ``cqrs.correlation_id``:
    the one given, else the current command's, else the enclosing span's. On leaving the
    block it gets ``cqrs.outcome`` "ok" (unless the block set one), or "error", the
    exception recorded and the status ERROR when an exception leaves the block.
    ``links_from``: W3C headers (``traceparent``) of a span this one is linked to (a
    message that caused it without being its parent). A no-op when tracing is off.
    """
    if not enabled():
        return NO_SPAN
    attrs = {key: _value(value) for key, value in (attributes or {}).items() if value is not None}
    if not attrs.get(CORRELATION_ID):
        correlation = current_correlation_id()
        if correlation:
            attrs[CORRELATION_ID] = correlation
    links = []
    if links_from:
        linked = trace.get_current_span(propagate.extract(dict(links_from))).get_span_context()
        if linked.is_valid:
            links.append(Link(linked))
    return _Span(name, attrs, links)


def current_correlation_id() -> str | None:
    """The correlation id a span opened now carries: the current command's, else the
    enclosing span's (None: neither has one)."""
    ctx = current_context()
    return ctx.correlation_id if ctx is not None else _correlation.get()


def trace_headers() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, maybe ``tracestate``),
    with whatever else the configured propagator adds (``baggage``); ``{}`` when there is
    no current span, or tracing is off."""
    if not enabled():
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier if "traceparent" in carrier else {}


@contextlib.contextmanager
def _attached(headers: Mapping[str, str]) -> Iterator[None]:
    token = otel_context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        otel_context.detach(token)


def use_trace_headers(headers: Mapping[str, str] | None) -> AbstractContextManager[None]:
    """Inside the block, the spans opened are children of the remote span ``headers``
    (from :func:`trace_headers`) names. A no-op without headers, or with tracing off."""
    if not headers or not enabled():
        return contextlib.nullcontext()
    return _attached(headers)
