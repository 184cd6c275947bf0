"""Relays: the event log published to brokers as CloudEvents, at least once, in order.

    from django_cqrs.relays import all_relays, get_relay, replay
    replay("bus", position=1200)     # send everything from position 1200 on again

Configure them in ``DJANGO_CQRS["RELAYS"]`` (docs/relays.md); each runs on the django-q2
workers as the async projection ``relays.<name>``.
"""

from __future__ import annotations

from .base import (
    BACKENDS,
    Message,
    Publisher,
    Relay,
    RelayError,
    all_relays,
    configure,
    get_relay,
    replay,
    run_relay_batch,
)

__all__ = [
    "BACKENDS",
    "Message",
    "Publisher",
    "Relay",
    "RelayError",
    "all_relays",
    "configure",
    "get_relay",
    "replay",
    "run_relay_batch",
]
