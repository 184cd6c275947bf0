"""Read-your-writes over HTTP: ``CQRS-Position`` out, ``CQRS-Min-Position`` in.

# POST /api/orders/            ->  201, CQRS-Position: 1042
# GET /api/orders/?customer_id=...   with  CQRS-Min-Position: 1042
#   waits (up to DJANGO_CQRS["MIN_POSITION_TIMEOUT"], 5 s) until the projections
#   behind the read model reached 1042, then answers; 503 + Retry-After otherwise.
#   A position beyond the head of the log (no command answered with it) is a 400.
"""

from __future__ import annotations

import re
from typing import Any

from .. import store
from ..conf import cqrs_settings
from ..projections.status import wait_for_position
from .exceptions import BadHeader, PositionNotReached, shown

POSITION_HEADER = "CQRS-Position"
MIN_POSITION_HEADER = "CQRS-Min-Position"
# ASCII digits only: str.isdigit() also accepts "¹" and "٣", which int() refuses or reads.
_POSITION = re.compile(r"[ \t]*([0-9]{1,18})[ \t]*")


def parse_min_position(value: str | None) -> int | None:
    """Parse ``CQRS-Min-Position``; None when absent, ``BadHeader`` (400) when malformed."""
    if value is None:
        return None
    match = _POSITION.fullmatch(value)
    if match is None:
        raise BadHeader(
            f"{MIN_POSITION_HEADER} must be a non-negative integer of at most 18 ASCII digits, "
            f"not {shown(value)}",
            header=MIN_POSITION_HEADER,
        )
    return int(match.group(1))


def require_position(read_models: Any, header_value: str | None) -> None:
    """Wait for the position a client asked for; raise ``PositionNotReached`` (503) on timeout."""
    position = parse_min_position(header_value)
    if position is None:
        return
    head = store.head(cqrs_settings.DATABASE)
    if position > head:
        raise BadHeader(
            f"{MIN_POSITION_HEADER} {position} is beyond the newest event ({head}): send the "
            f"{POSITION_HEADER} a command answered with",
            header=MIN_POSITION_HEADER,
        )
    if not wait_for_position(read_models, position):
        raise PositionNotReached(
            f"The projections behind this resource have not reached position {position} yet."
        )
