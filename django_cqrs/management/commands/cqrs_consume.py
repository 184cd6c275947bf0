"""Consume an inbox: ``manage.py cqrs_consume <name> [--max-messages N] [--idle-timeout S]``.

Connects to the broker of ``DJANGO_CQRS["INBOXES"][name]`` and applies its messages
(docs/inbox.md) until SIGTERM or SIGINT, which let the message in hand finish first.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cqrs.exceptions import CQRSError
from django_cqrs.inbox.base import BrokerUnavailable
from django_cqrs.inbox.config import inbox_config, missing_package
from django_cqrs.inbox.consumer import Consumer


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise ValueError(text)
        return value

    parse.__name__ = kind.__name__
    return parse


class Command(BaseCommand):
    help = (
        "Receive the messages of an inbox (DJANGO_CQRS['INBOXES']) and apply each once, "
        "until SIGTERM or SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("inbox", help="The inbox's name in DJANGO_CQRS['INBOXES'].")
        parser.add_argument(
            "--max-messages",
            type=_positive(int),
            metavar="N",
            help="Stop after N messages (whatever their outcome).",
        )
        parser.add_argument(
            "--idle-timeout",
            type=_positive(float),
            metavar="SECONDS",
            help="Stop when no message has come for this many seconds.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["inbox"]
        try:
            config = inbox_config(name)
        except CQRSError as exc:
            raise CommandError(str(exc)) from None
        package = missing_package(config.backend)
        if package is not None:
            raise CommandError(
                f"{config.setting('BACKEND')} is {config.backend!r}, which needs the package "
                f"{package!r}: pip install 'django-cqrs-toolkit[{config.backend}]'."
            )
        consumer = Consumer(
            config,
            max_messages=options["max_messages"],
            idle_timeout=options["idle_timeout"],
            on_connect=lambda where: self.stdout.write(
                f"Inbox {name!r}: consuming from {where}.", ending="\n"
            ),
        )
        with _stop_on_signals(consumer):
            try:
                stats = consumer.run()
            except BrokerUnavailable as exc:
                raise CommandError(f"Inbox {name!r}: {exc}") from None
        why = f" ({stats.stopped_by})" if stats.stopped_by else ""
        self.stdout.write(f"Inbox {name!r} stopped{why}: {stats.summary()}.")


@contextmanager
def _stop_on_signals(consumer: Consumer) -> Iterator[None]:
    """SIGTERM and SIGINT stop the consumer after the message in hand (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        consumer.stop(signal.Signals(signum).name)

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
