"""The inboxes' messages: ``manage.py cqrs_inbox [--inbox NAME] [--retry ID ... | --retry-failed]``.

Without options: how many messages each inbox handled, is retrying and recorded
failed, then each failed or retrying message with its last error. ``--retry`` applies
the named failed messages again from their stored body (``--retry-failed``: all of
them), with the inbox's attempts and no backoff between them.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from django_cqrs.conf import cqrs_settings
from django_cqrs.exceptions import CQRSError
from django_cqrs.inbox.apply import retry_failed
from django_cqrs.inbox.config import inbox_config
from django_cqrs.models import InboxMessage

State = InboxMessage.State


class Command(BaseCommand):
    help = "Show the inboxes' failed messages, and apply them again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--inbox", help="Only this inbox (DJANGO_CQRS['INBOXES']).")
        parser.add_argument(
            "--retry", type=int, nargs="+", metavar="ID", help="Apply these failed messages again."
        )
        parser.add_argument(
            "--retry-failed", action="store_true", help="Apply every failed message again."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        messages = InboxMessage.objects.using(cqrs_settings.DATABASE).all()
        if options["inbox"]:
            messages = messages.filter(inbox=options["inbox"])
        if options["retry"] or options["retry_failed"]:
            failed = messages.filter(state=State.FAILED).order_by("id")
            if options["retry"]:
                failed = failed.filter(pk__in=options["retry"])
                missing = set(options["retry"]) - set(failed.values_list("pk", flat=True))
                if missing:
                    raise CommandError(
                        "No failed inbox message with the id "
                        + ", ".join(map(str, sorted(missing)))
                        + " (cqrs_inbox lists them)."
                    )
            self._retry(list(failed))
            return
        self._show(messages)

    def _retry(self, rows: list[InboxMessage]) -> None:
        for row in rows:
            try:
                outcome = retry_failed(inbox_config(row.inbox), row)
            except CQRSError as exc:
                raise CommandError(f"Message {row.pk}: {exc}") from None
            row.refresh_from_db()
            self.stdout.write(f"{row.pk} {row.type} {row.message_id}: {outcome} ({row.state}).")
        if not rows:
            self.stdout.write("No failed inbox messages.")

    def _show(self, messages: Any) -> None:
        counts: dict[str, dict[str, int]] = {}
        for inbox, state, n in (
            messages.order_by().values_list("inbox", "state").annotate(n=Count("id"))
        ):
            counts.setdefault(inbox, {})[state] = n
        if not counts:
            self.stdout.write("No inbox messages.")
            return
        for inbox, by_state in sorted(counts.items()):
            figures = ", ".join(f"{by_state.get(state, 0)} {state}" for state in State.values)
            self.stdout.write(f"{inbox}: {figures}")
        unhandled = messages.exclude(state=State.HANDLED).order_by("received_at", "id")
        for row in unhandled[:100]:
            error = (row.last_error.strip().splitlines() or [""])[-1]
            self.stdout.write(
                f"  {row.pk} {row.state} {row.type or '?'} {row.source} {row.message_id} "
                f"after {row.attempts} attempt(s): {error}"
            )
