"""One asyncio event loop per process, in a thread of its own, for the brokers' clients.

    from django_cqrs.relays.loop import run
    run(publisher.publish(messages), timeout=10.0)   # from synchronous code: a worker's task

django-q2 runs tasks in synchronous worker processes; the broker clients (pika,
nats-py) are asyncio libraries whose connections live on a loop. The loop here outlives
each call, so a worker keeps its connections from one batch to the next. A forked
process (django-q2 forks its workers) starts a loop of its own on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """This process's relay loop, started on first use."""
    global _loop, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="django_cqrs-relays", daemon=True
            )
            thread.start()
            _loop, _pid = loop, os.getpid()
        return _loop


def run(coro: Coroutine[Any, Any, T], *, timeout: float | None) -> T:
    """Run ``coro`` on the relay loop and wait for its result (``TimeoutError`` after
    ``timeout`` seconds, with the coroutine cancelled)."""
    future = asyncio.run_coroutine_threadsafe(coro, get_loop())
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"no answer from the broker within {timeout:g}s") from None
