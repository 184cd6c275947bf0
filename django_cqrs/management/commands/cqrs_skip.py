"""Pass over one event for good: ``manage.py cqrs_skip <name> <position>``.

An async projection skips an event it has not reached (or has parked) and catches up; a
sync projection, an event its rebuild parked or has not replayed yet.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cqrs.exceptions import CQRSError
from django_cqrs.projections import ASYNC, get_projection
from django_cqrs.projections.catchup import skip
from django_cqrs.tasks import catch_up_now, follow_up


class Command(BaseCommand):
    help = (
        "Skip the event at <position>: an async projection resumes past it, a sync "
        "projection's rebuild passes over it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Projection name (see cqrs_status).")
        parser.add_argument("position", type=int, help="Log position of the event to skip.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["position"] < 1:
            raise CommandError("position must be a positive log position.")
        try:
            cls = get_projection(options["name"])
            read = follow_up(cls.name, skip(cls, options["position"]))
            catch_up_now(cls.name)  # whatever the skip left goes to the workers at once
        except CQRSError as exc:
            raise CommandError(str(exc)) from exc
        done = f"{cls.name} skipped position {options['position']}"
        if cls.mode == ASYNC:
            self.stdout.write(self.style.SUCCESS(f"{done}: {read} events read."))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{done}: its rebuild passes over it (manage.py cqrs_rebuild {cls.name} "
                    "resumes an interrupted one)."
                )
            )
