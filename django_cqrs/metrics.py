"""Prometheus metrics of django_cqrs, when ``prometheus_client`` is installed.

    from django_cqrs import metrics

    metrics.relay_published("bus", 20)                   # cqrs_relay_published_total{relay}
    metrics.observe_relay_batch("bus", 20, 0.012)        # cqrs_relay_publish_seconds{relay}

The buses count each dispatch and time it, the catch-up engine records the size of each
batch (docs/telemetry.md lists every metric); the metrics live in prometheus_client's
default registry, so any exposition of it shows them. Lag and parked events are read
from the database when the metrics are scraped, by :class:`LagCollector`, which
``django_cqrs.views.metrics`` feeds with the projections' status.

Without the ``prometheus`` extra (``prometheus-client``), or with
``DJANGO_CQRS["METRICS"] = False``, every function here does nothing. Whether the
package can be imported is decided once, when this module is imported
(:data:`AVAILABLE`). This module is the only one of django_cqrs that imports
``prometheus_client``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .conf import cqrs_settings

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError:  # the extra is not installed: everything below is a no-op
    AVAILABLE = False
else:
    AVAILABLE = True

logger = logging.getLogger("django_cqrs")

#: Upper bounds of the batch-size histograms (events per batch).
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)
#: The ``kind`` of a consumer that relays the log to a broker (``Projection.kind``).
RELAY = "relay"
#: A relay named ``bus`` is registered as the async projection ``relays.bus``.
RELAY_PREFIX = "relays."


def enabled() -> bool:
    """Whether metrics are recorded: ``prometheus_client`` is installed and ``METRICS`` is on."""
    return AVAILABLE and bool(cqrs_settings.METRICS)


if AVAILABLE:
    COMMANDS = Counter(
        "cqrs_commands_total",
        "Commands dispatched, by command and outcome.",
        ["command", "outcome"],
    )
    COMMAND_SECONDS = Histogram(
        "cqrs_command_duration_seconds", "Time to dispatch a command, by command.", ["command"]
    )
    QUERIES = Counter(
        "cqrs_queries_total", "Queries dispatched, by query and outcome.", ["query", "outcome"]
    )
    QUERY_SECONDS = Histogram(
        "cqrs_query_duration_seconds", "Time to dispatch a query, by query.", ["query"]
    )
    PROJECTION_BATCH = Histogram(
        "cqrs_projection_batch_events",
        "Events read by each catch-up batch of an async projection.",
        ["projection"],
        buckets=BATCH_BUCKETS,
    )
    RELAY_PUBLISHED = Counter(
        "cqrs_relay_published_total", "Events a relay published to its broker.", ["relay"]
    )
    RELAY_SECONDS = Histogram(
        "cqrs_relay_publish_seconds", "Time a relay took to publish a batch.", ["relay"]
    )
    RELAY_BATCH = Histogram(
        "cqrs_relay_batch_events",
        "Events in each batch a relay published.",
        ["relay"],
        buckets=BATCH_BUCKETS,
    )


def observe_dispatch(kind: str, name: str, outcome: str, seconds: float) -> None:
    """Count a dispatch of the ``kind`` ("command" or "query") ``name`` that ended with
    ``outcome`` ("ok" or "error"), and its duration."""
    if not enabled():
        return
    if kind == "command":
        COMMANDS.labels(name, outcome).inc()
        COMMAND_SECONDS.labels(name).observe(seconds)
    elif kind == "query":
        QUERIES.labels(name, outcome).inc()
        QUERY_SECONDS.labels(name).observe(seconds)


def observe_projection_batch(projection: str, events: int) -> None:
    """A catch-up batch of ``projection`` read ``events`` events."""
    if enabled():
        PROJECTION_BATCH.labels(projection).observe(events)


def relay_published(relay: str, count: int) -> None:
    """The relay ``relay`` published ``count`` events (``cqrs_relay_published_total``).

    Call it once the broker confirmed them; :func:`observe_relay_batch` does not count.
    """
    if enabled() and count:
        RELAY_PUBLISHED.labels(relay).inc(count)


def observe_relay_batch(relay: str, count: int, seconds: float) -> None:
    """The relay ``relay`` published a batch of ``count`` events in ``seconds``
    (``cqrs_relay_publish_seconds``, ``cqrs_relay_batch_events``)."""
    if enabled():
        RELAY_SECONDS.labels(relay).observe(seconds)
        RELAY_BATCH.labels(relay).observe(count)


@dataclasses.dataclass(frozen=True)
class ConsumerLag:
    """What the lag collector reports about one consumer of the log."""

    #: The projection's name (a relay's: ``relays.<relay>``).
    name: str
    #: ``Projection.kind``: "projection", "saga" or "relay".
    kind: str
    lag_events: int
    lag_seconds: float
    parked: int


def relay_name(consumer: str) -> str:
    """The relay's own name: ``"bus"`` for the consumer ``"relays.bus"``."""
    return consumer.removeprefix(RELAY_PREFIX)


class LagCollector:
    """A Prometheus collector that reads ``source()`` at each scrape.

    Gauges by projection and kind: ``cqrs_projection_lag_events``,
    ``cqrs_projection_lag_seconds``, ``cqrs_parked_events``; by relay (consumers of kind
    "relay"): ``cqrs_relay_lag_events``, ``cqrs_relay_lag_seconds``; and
    ``cqrs_status_up``, 0 when ``source()`` failed (the error is logged).
    """

    def __init__(self, source: Callable[[], Iterable[ConsumerLag]]) -> None:
        self.source = source

    def describe(self) -> list[Any]:
        return []  # registering the collector must not read the database

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(
            "cqrs_status_up", "1 when the projections' status could be read, else 0."
        )
        try:
            lags = list(self.source())
        except Exception:
            logger.exception("Could not read the projections' status for the metrics")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        labels = ["projection", "kind"]
        events = GaugeMetricFamily(
            "cqrs_projection_lag_events", "Events after the projection's checkpoint.", labels=labels
        )
        seconds = GaugeMetricFamily(
            "cqrs_projection_lag_seconds",
            "Age of the projection's oldest event not applied yet.",
            labels=labels,
        )
        parked = GaugeMetricFamily(
            "cqrs_parked_events", "Events the projection parked (unresolved).", labels=labels
        )
        relay_events = GaugeMetricFamily(
            "cqrs_relay_lag_events", "Events a relay has not published yet.", labels=["relay"]
        )
        relay_seconds = GaugeMetricFamily(
            "cqrs_relay_lag_seconds",
            "Age of the oldest event a relay has not published yet.",
            labels=["relay"],
        )
        for lag in lags:
            events.add_metric([lag.name, lag.kind], lag.lag_events)
            seconds.add_metric([lag.name, lag.kind], lag.lag_seconds)
            parked.add_metric([lag.name, lag.kind], lag.parked)
            if lag.kind == RELAY:
                relay_events.add_metric([relay_name(lag.name)], lag.lag_events)
                relay_seconds.add_metric([relay_name(lag.name)], lag.lag_seconds)
        yield from (events, seconds, parked, relay_events, relay_seconds)


def render(source: Callable[[], Iterable[ConsumerLag]]) -> tuple[bytes, str]:
    """The exposition (Prometheus text format) and its content type: the default
    registry's metrics (with ``PROMETHEUS_MULTIPROC_DIR`` set, those of every process),
    then the lag of ``source()``."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = prometheus_client.REGISTRY
    status = CollectorRegistry(auto_describe=False)
    status.register(LagCollector(source))
    body = prometheus_client.generate_latest(registry) + prometheus_client.generate_latest(status)
    return body, prometheus_client.CONTENT_TYPE_LATEST
