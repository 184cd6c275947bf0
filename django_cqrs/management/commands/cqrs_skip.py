"""Pass over one event for good: ``manage.py cqrs_skip <name> <position>``.

For a saga, ``cqrs_skip <saga> --instance <key>`` gives up the failing event of a parked
instance and applies the events held after it.

An async projection skips an event it has not reached (or has parked) and catches up; a
sync projection, an event its rebuild parked or has not replayed yet.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cqrs.exceptions import CQRSError
from django_cqrs.projections import ASYNC, get_projection
from django_cqrs.projections.catchup import skip
from django_cqrs.sagas import Saga, skip_instance
from django_cqrs.tasks import catch_up_now, follow_up


class Command(BaseCommand):
    help = (
        "Skip the event at <position>: an async projection resumes past it, a sync "
        "projection's rebuild passes over it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Projection name (see cqrs_status).")
        parser.add_argument(
            "position", type=int, nargs="?", help="Log position of the event to skip."
        )
        parser.add_argument(
            "--instance", metavar="KEY", help="A saga: skip this parked instance's failing event."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["instance"] is not None:
            self._skip_instance(options["name"], options["instance"], options["position"])
            return
        if options["position"] is None:
            raise CommandError("Name the position to skip (or --instance <key> for a saga).")
        if options["position"] < 1:
            raise CommandError("position must be a positive log position.")
        try:
            cls = get_projection(options["name"])
            if issubclass(cls, Saga) and _held(cls, options["position"]):
                raise CommandError(
                    f"Position {options['position']} belongs to a parked instance of "
                    f"{cls.name}: skip it with --instance <key> (see the admin or cqrs_status)."
                )
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

    def _skip_instance(self, name: str, key: str, position: int | None) -> None:
        if position is not None:
            raise CommandError("--instance skips the instance's failing event: give no position.")
        try:
            cls = get_projection(name)
            if not issubclass(cls, Saga):
                raise CommandError(f"{cls.name} is not a saga: --instance is for sagas.")
            applied = skip_instance(cls, key)
            catch_up_now(cls.name)
        except CQRSError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{cls.name} {key}: skipped its failing event, {applied} held events applied."
            )
        )


def _held(cls: type[Saga], position: int) -> bool:
    """Is ``position`` the failing or a held event of a parked instance of ``cls``?"""
    parked = cls.instance_model._default_manager.filter(parked=True)
    return any(
        position in positions for positions in parked.values_list("parked_positions", flat=True)
    )
