"""Send a relay's events again from a position: ``manage.py cqrs_replay <relay> --from N``.

The relay's checkpoint moves back before position N and a catch-up is queued; the
messages carry the same CloudEvents ids as the first time, so consumers that
deduplicate (an inbox) apply none twice.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cqrs.exceptions import CQRSError
from django_cqrs.relays import get_relay, replay
from django_cqrs.tasks import catch_up_now


class Command(BaseCommand):
    help = "Send a relay's events again, from a position of the log on."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("relay", help="The relay's name in DJANGO_CQRS['RELAYS'].")
        parser.add_argument(
            "--from",
            dest="position",
            type=int,
            required=True,
            help="The first position to send again (see cqrs_status, the admin's event log).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            cls = get_relay(options["relay"])
            replay(cls, options["position"])
            catch_up_now(cls.name)
        except CQRSError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{cls.name} sends again from position {options['position']}: a catch-up is queued."
        )
