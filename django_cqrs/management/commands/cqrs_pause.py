"""Pause or resume an async projection: ``manage.py cqrs_pause <name> [--resume]``.

Resuming queues a catch-up for the workers at once (``tasks.catch_up_now``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cqrs.exceptions import CQRSError
from django_cqrs.projections import ASYNC, get_projection
from django_cqrs.projections.catchup import set_paused
from django_cqrs.tasks import catch_up_now


class Command(BaseCommand):
    help = "Pause an async projection (no catch-up runs), or resume it and queue a catch-up."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Async projection name (see cqrs_status).")
        parser.add_argument("--resume", action="store_true", help="Resume instead of pausing.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            cls = get_projection(options["name"])
            if cls.mode != ASYNC:
                raise CommandError(f"{cls.name} is a sync projection; it cannot be paused.")
            set_paused(cls, not options["resume"])
            if options["resume"]:
                catch_up_now(cls.name)
        except CQRSError as exc:
            raise CommandError(str(exc)) from exc
        if options["resume"]:
            self.stdout.write(f"{cls.name} resumed: a catch-up is queued.")
        else:
            self.stdout.write(f"{cls.name} paused.")
