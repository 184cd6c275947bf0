"""Catch async projections up now: ``manage.py cqrs_catchup <name> | --all``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cqrs.exceptions import CQRSError
from django_cqrs.projections import ASYNC, all_projections, get_projection
from django_cqrs.projections.catchup import run_catch_up
from django_cqrs.tasks import follow_up


class Command(BaseCommand):
    help = "Apply the events an async projection has not seen yet (in this process)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="Async projection names (see cqrs_status).")
        parser.add_argument("--all", action="store_true", help="Every async projection.")

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = options["names"]
        if options["all"] == bool(names):
            raise CommandError("Name one or more async projections, or pass --all (not both).")
        try:
            if options["all"]:
                classes = [cls for cls in all_projections() if cls.mode == ASYNC]
            else:
                classes = [get_projection(name) for name in names]
            for cls in classes:
                if cls.mode != ASYNC:
                    raise CommandError(f"{cls.name} is a sync projection; it is always current.")
                read = follow_up(cls.name, run_catch_up(cls))
                self.stdout.write(f"{cls.name}: {read} events read.")
        except CQRSError as exc:
            raise CommandError(str(exc)) from exc
