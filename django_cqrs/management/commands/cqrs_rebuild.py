"""Rebuild read models from the event log: ``manage.py cqrs_rebuild <name> | --all``."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from django_cqrs.exceptions import CQRSError
from django_cqrs.projections import all_projections, get_projection
from django_cqrs.projections.rebuild import rebuild


class Command(BaseCommand):
    help = (
        "Rebuild a projection's read models from the event log into shadow tables, then "
        "switch atomically; resumes an interrupted rebuild."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="Projection names (see cqrs_status).")
        parser.add_argument("--all", action="store_true", help="Rebuild every projection.")
        parser.add_argument("--batch-size", type=int, default=None, help="Events per batch.")
        parser.add_argument(
            "--no-progress", action="store_true", help="Do not draw a progress bar."
        )
        parser.add_argument(
            "--restart",
            action="store_true",
            help="Discard an interrupted rebuild's progress instead of resuming it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = options["names"]
        if options["all"] == bool(names):
            raise CommandError("Name one or more projections, or pass --all (not both).")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            classes = (
                [cls for cls in all_projections() if cls.rebuildable]  # not the sagas
                if options["all"]
                else [get_projection(n) for n in names]
            )
        except CQRSError as exc:
            raise CommandError(str(exc)) from exc
        for cls in classes:
            applied = self._rebuild(cls, options)
            self.stdout.write(self.style.SUCCESS(f"Rebuilt {cls.name}: {applied} events applied."))

    def _rebuild(self, cls: Any, options: dict[str, Any]) -> int:
        bar = None
        if not options["no_progress"] and options["verbosity"] > 0:
            bar = tqdm(desc=cls.name, unit=" pos", file=sys.stderr, leave=True)

        def progress(done: int, total: int) -> None:
            if bar is not None:
                if bar.total != total:
                    bar.reset(total=total)
                bar.update(done - bar.n)

        try:
            return rebuild(
                cls,
                batch_size=options["batch_size"],
                progress=progress,
                restart=options["restart"],
            )
        except CQRSError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if bar is not None:
                bar.close()
