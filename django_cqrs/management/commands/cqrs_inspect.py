"""Show what handles each command and query and what reads each event (``cqrs_inspect``).

    python manage.py cqrs_inspect                 # every installed app
    python manage.py cqrs_inspect orders --json   # one JSON document, for a diff in CI
    python manage.py cqrs_inspect --check         # exit 1 on a problem (listed on stderr)

The map is built by :func:`django_cqrs.inspection.inspect_project`. ``--check`` fails on
a command or query without a handler, an event that no projection, saga or receiver
reads (unless it sets ``history_only = True``), a ``history_only`` event that something
reads, and a name two classes share; it prints the map only with ``--json``.
"""

from __future__ import annotations

import json
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cqrs.exceptions import CQRSError
from django_cqrs.inspection import inspect_project


class Command(BaseCommand):
    help = (
        "Show each command's and query's handler and bus middleware, and the projections, "
        "sagas and signal receivers that read each event."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "args", nargs="*", metavar="app_label", help="Only these apps (default: all)."
        )
        parser.add_argument("--json", action="store_true", help="Print JSON.")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Exit with status 1 on unhandled commands or queries, unread events and "
            "duplicate names.",
        )

    def handle(self, *app_labels: str, **options: Any) -> None:
        for label in app_labels:
            try:
                apps.get_app_config(label)
            except LookupError:
                raise CommandError(
                    f"No installed app has the label {label!r}. Installed: "
                    + ", ".join(sorted(config.label for config in apps.get_app_configs()))
                ) from None
        try:
            found = inspect_project(set(app_labels) or None)
            problems = found.problems()
            document = found.as_dict() if options["json"] else None
        except CQRSError as exc:  # a middleware setting that does not import, say
            raise CommandError(str(exc)) from exc
        if document is not None:
            self.stdout.write(json.dumps(document, indent=2, sort_keys=True))
        elif not options["check"]:
            for line in found.lines():
                self.stdout.write(line)
        if not options["check"]:
            return
        if problems:
            listed = "\n".join(f"- [{p.kind}] {p.message}" for p in problems)
            raise CommandError(f"cqrs_inspect found {len(problems)} problem(s):\n{listed}")
        if document is None:
            self.stdout.write("No problems found.")
