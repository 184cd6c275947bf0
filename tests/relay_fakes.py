"""An in-memory relay backend: what a relay published, and a broker that can refuse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django_cqrs.relays import Message


class MemoryPublisher:
    """``BACKEND: "tests.relay_fakes.MemoryPublisher"``: keeps what it was sent.

    ``refuse`` batches in a row raise ``ConnectionError`` (a broker that is down) before
    anything counts as confirmed.
    """

    OPTIONS: ClassVar[dict[str, Any]] = {"TOPIC": "memory"}
    sent: ClassVar[list[Message]] = []
    batches: ClassVar[list[int]] = []
    refuse: ClassVar[int] = 0
    connections: ClassVar[int] = 0

    def __init__(self, relay: str, options: Mapping[str, Any]) -> None:
        type(self).connections += 1
        self.relay = relay

    async def publish(self, messages: Sequence[Message]) -> None:
        cls = type(self)
        if cls.refuse:
            cls.refuse -= 1
            raise ConnectionError("connection refused (the broker is down)")
        cls.sent.extend(messages)
        cls.batches.append(len(messages))

    async def close(self) -> None:
        pass

    @classmethod
    def reset(cls) -> None:
        cls.sent = []
        cls.batches = []
        cls.refuse = 0
        cls.connections = 0
