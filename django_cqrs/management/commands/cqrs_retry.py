"""Resume a stopped async projection at its parked event: ``manage.py cqrs_retry <name>``.

For a saga, retry its parked instances: every one, or ``--instance <key>``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cqrs.exceptions import CQRSError
from django_cqrs.models import ParkedEvent
from django_cqrs.projections import ASYNC, get_projection
from django_cqrs.projections.catchup import retry
from django_cqrs.sagas import Saga, retry_instance
from django_cqrs.tasks import catch_up_now, follow_up


class Command(BaseCommand):
    help = "Retry the parked event(s) of an async projection and resume it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Async projection or saga name (see cqrs_status).")
        parser.add_argument(
            "--instance",
            metavar="KEY",
            help="A saga: retry only this parked instance (default: every parked one).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            cls = get_projection(options["name"])
            if issubclass(cls, Saga):
                self._retry_instances(cls, options["instance"])
                return
            if options["instance"] is not None:
                raise CommandError(f"{cls.name} is not a saga: --instance is for sagas.")
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

    def _retry_instances(self, cls: type[Saga], key: str | None) -> None:
        """Apply each parked instance's events again, in order, one transaction each."""
        manager = cls.instance_model._default_manager
        keys = (
            [key]
            if key is not None
            else list(
                manager.filter(parked=True).order_by("updated_at").values_list("key", flat=True)
            )
        )
        if not keys:
            self.stdout.write(f"{cls.name} has no parked instance.")
            return
        failed = []
        for name in keys:
            try:
                applied = retry_instance(cls, name)
            except Exception as exc:  # the instance stays parked, as it was
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            self.stdout.write(self.style.SUCCESS(f"{cls.name} {name}: {applied} events applied."))
        catch_up_now(cls.name)
        if failed:
            raise CommandError(
                f"{len(failed)} instance(s) of {cls.name} failed again and stay parked:\n"
                + "\n".join(failed)
            )
