"""Resume a stopped async projection at its parked event: ``manage.py cqrs_retry <name>``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cqrs.exceptions import CQRSError
from django_cqrs.models import ParkedEvent
from django_cqrs.projections import ASYNC, get_projection
from django_cqrs.projections.catchup import retry
from django_cqrs.tasks import catch_up_now, follow_up


class Command(BaseCommand):
    help = "Retry the parked event(s) of an async projection and resume it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Async projection name (see cqrs_status).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            cls = get_projection(options["name"])
            if cls.mode != ASYNC:
                raise CommandError(
                    f"{cls.name} is a sync projection: its rebuild retries the events it "
                    f"parked (manage.py cqrs_rebuild {cls.name} resumes it)."
                )
            read = follow_up(cls.name, retry(cls))
            catch_up_now(cls.name)  # whatever the retry left goes to the workers at once
        except CQRSError as exc:
            raise CommandError(str(exc)) from exc
        parked = ParkedEvent.objects.filter(
            projection=cls.name, resolution=ParkedEvent.Resolution.PARKED
        )
        if parked.exists():
            first = parked.first()
            assert first is not None
            raise CommandError(
                f"{cls.name} failed again and parked position {first.position}: {first.error}"
            )
        self.stdout.write(self.style.SUCCESS(f"{cls.name} resumed: {read} events read."))
