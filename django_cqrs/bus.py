"""The command bus and the query bus.

    from django_cqrs import command_bus, query_bus

    result = command_bus.dispatch(PlaceOrder(customer_id=cid, items=items))
    result.value       # what the handler returned (typed by ``Command[R]``)
    result.position    # log position of the last event it recorded, or None
    view = query_bus.dispatch(GetOrder(order_id=result.value))

Each bus runs its message through the middleware chain configured in
``DJANGO_CQRS["COMMAND_MIDDLEWARE"]`` / ``["QUERY_MIDDLEWARE"]`` (outermost first) and
then through the one registered handler. A middleware is a callable that takes the next
step and returns ``step(message, context) -> value``, like Django's own middleware.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from django.core.signals import setting_changed

from . import metrics, telemetry
from .commands import Command
from .conf import RELOADING_SETTINGS, cqrs_settings
from .context import DispatchContext, activate, child_context, current_context
from .exceptions import ConfigurationError
from .messages import Message
from .queries import Query
from .registry import Registry

if TYPE_CHECKING:
    from django.db import models

R = TypeVar("R")
#: The message type a handler takes (its own class: ``PlaceOrder``, not ``Command``).
M = TypeVar("M")
Step = Callable[[Any, DispatchContext], Any]
MiddlewareFactory = Callable[[Step], Step]

#: Whether dispatches can be observed at all (spans, metrics): False when neither
#: opentelemetry nor prometheus_client is installed, and a dispatch then does nothing more.
OBSERVED = telemetry.AVAILABLE or metrics.AVAILABLE


@dataclasses.dataclass(frozen=True)
class CommandResult(Generic[R]):
    """What a command dispatch produced."""

    value: R
    #: Global log position of the last event recorded by the command (None if none).
    position: int | None
    #: Positions of every event the command recorded, in order.
    positions: tuple[int, ...] = ()
    correlation_id: str = ""
    command_id: str = ""
    #: The version each aggregate had after the command saved it, by
    #: ``(aggregate_type, str(aggregate_id))``.
    versions: Mapping[tuple[str, str], int] = dataclasses.field(default_factory=dict, hash=False)

    def version_of(self, aggregate: type[models.Model] | str, aggregate_id: Any) -> int | None:
        """The version the command left ``aggregate`` (a model or ``app_label.Model``) at."""
        label = aggregate if isinstance(aggregate, str) else aggregate._meta.label
        return self.versions.get((label, str(aggregate_id)))


class Bus:
    """Shared machinery: registry lookup and the middleware chain."""

    kind = "message"
    base: type[Message] = Message
    middleware_setting = ""

    def __init__(
        self, registry: Registry | None = None, middleware: Sequence[Any] | None = None
    ) -> None:
        self.registry = registry or Registry(self.kind, self.base)
        self._explicit_middleware = middleware
        self._chain: Step | None = None

    def reset_middleware(self) -> None:
        """Rebuild the chain from settings on the next dispatch."""
        self._chain = None

    def middleware(self) -> list[MiddlewareFactory]:
        if self._explicit_middleware is not None:
            return list(self._explicit_middleware)
        return list(getattr(cqrs_settings, self.middleware_setting))

    def chain(self) -> Step:
        if self._chain is None:
            step: Step = self._call_handler
            for factory in reversed(self.middleware()):
                if not callable(factory):
                    raise ConfigurationError(
                        f"{self.middleware_setting} entry {factory!r} is not callable"
                    )
                step = factory(step)
            self._chain = step
        return self._chain

    def _call_handler(self, message: Any, ctx: DispatchContext) -> Any:
        return self.registry.handler_for(type(message))(message)

    def _check_message(self, message: Any) -> None:
        if not isinstance(message, self.base):
            raise TypeError(
                f"{type(self).__name__}.dispatch() takes a {self.base.__name__}, "
                f"got {type(message).__name__}"
            )
        # Fail before any middleware opens a transaction.
        self.registry.handler_for(type(message))

    def handler(self, message_type: type) -> Callable[[Any], Any]:
        """Decorator registering a handler for ``message_type`` on this bus."""
        return self.registry.decorator(message_type)


class CommandBus(Bus):
    """Dispatches each command to its one handler through the command middleware."""

    kind = "command"
    base = Command
    middleware_setting = "COMMAND_MIDDLEWARE"

    def dispatch(
        self, command: Command[R], *, metadata: dict[str, Any] | None = None
    ) -> CommandResult[R]:
        """Run ``command`` through the middleware and its handler; return the result.

        ``metadata`` may carry ``user``, ``correlation_id``, ``causation_id`` and any
        other JSON values to store with the events the command records.
        """
        self._check_message(command)
        parent = current_context()
        ctx = child_context(command, metadata)
        with activate(ctx):
            step = self.chain()
            value = observe(step, command, ctx) if OBSERVED else step(command, ctx)
        if parent is not None:
            parent.saves.extend(ctx.saves)
        return CommandResult(
            value=value,
            position=ctx.positions[-1] if ctx.positions else None,
            positions=tuple(ctx.positions),
            correlation_id=ctx.correlation_id,
            command_id=ctx.message_id,
            versions=dict(ctx.versions),
        )


class QueryBus(Bus):
    """Dispatches each query to its one handler through the query middleware."""

    kind = "query"
    base = Query
    middleware_setting = "QUERY_MIDDLEWARE"

    def dispatch(self, query: Query[R], *, metadata: dict[str, Any] | None = None) -> R:
        """Run ``query`` through the middleware and its handler; return the handler's value."""
        self._check_message(query)
        ctx = child_context(query, metadata)
        step = self.chain()
        value: R = observe(step, query, ctx) if OBSERVED else step(query, ctx)
        return value


def observe(step: Step, message: Any, ctx: DispatchContext) -> Any:
    """Run ``step`` in a ``cqrs.command <name>`` (or ``cqrs.query``) span, counted and
    timed by the metrics; just run it when both are off (``TRACING``, ``METRICS``)."""
    tracing, counting = telemetry.enabled(), metrics.enabled()
    if not (tracing or counting):
        return step(message, ctx)
    kind, name = message.kind, ctx.message_type
    outcome = "error"
    started = time.perf_counter()
    try:
        attributes = {
            f"cqrs.{kind}": name,
            "cqrs.message_id": ctx.message_id,
            "cqrs.causation_id": ctx.causation_id,
            telemetry.CORRELATION_ID: ctx.correlation_id,
        }
        with telemetry.span(f"cqrs.{kind} {name}", attributes) as span:
            value = step(message, ctx)
            if tracing and ctx.saves:
                saved = dict.fromkeys(f"{s.aggregate_type}:{s.aggregate_id}" for s in ctx.saves)
                span.set_attribute("cqrs.aggregate", list(saved))
                span.set_attribute("cqrs.events", len(ctx.positions))
                if ctx.positions:
                    span.set_attribute("cqrs.position", ctx.positions[-1])
            if tracing and ctx.attempt > 1:
                span.set_attribute("cqrs.attempts", ctx.attempt)
        outcome = "ok"
    finally:
        if counting:
            metrics.observe_dispatch(kind, name, outcome, time.perf_counter() - started)
    return value


command_bus = CommandBus()
query_bus = QueryBus()


def _reset_middleware(*, setting: str, **kwargs: Any) -> None:
    # The chains are built from COMMAND_MIDDLEWARE / QUERY_MIDDLEWARE once.
    if setting in RELOADING_SETTINGS:
        command_bus.reset_middleware()
        query_bus.reset_middleware()


setting_changed.connect(_reset_middleware, dispatch_uid="django_cqrs.bus.reset_middleware")


def command_handler(
    command_type: type[Command[R]],
) -> Callable[[Callable[[M], R]], Callable[[M], R]]:
    """Register the decorated function as the handler of ``command_type``.

    Typed: mypy refuses a handler of a ``Command[R]`` that does not return ``R``
    (``PlaceOrder(Command[UUID])`` handled by a function ``-> str``), and so does the
    registration, where the annotations say it for certain.
    """
    decorate: Callable[[Callable[[M], R]], Callable[[M], R]] = command_bus.handler(command_type)
    return decorate


def query_handler(query_type: type[Query[R]]) -> Callable[[Callable[[M], R]], Callable[[M], R]]:
    """Register the decorated function as the handler of ``query_type`` (typed likewise)."""
    decorate: Callable[[Callable[[M], R]], Callable[[M], R]] = query_bus.handler(query_type)
    return decorate
