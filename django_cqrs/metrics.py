"""Placeholder: Prometheus metrics (replaced by the telemetry branch)."""

from __future__ import annotations


def relay_published(relay: str, count: int) -> None:
    pass


def observe_relay_batch(relay: str, count: int, seconds: float) -> None:
    pass
