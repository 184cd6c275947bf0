"""``InboxMessageAdmin``: the inboxes' messages, read-only; failed ones filterable.

A failed message is applied again with ``manage.py cqrs_inbox --retry ID`` (docs/inbox.md).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.utils.html import format_html

from ..models import InboxMessage
from .mixins import AnyModelAdmin, ReadOnlyAdminMixin


class InboxMessageAdmin(ReadOnlyAdminMixin, AnyModelAdmin):
    list_display = ("received_at", "inbox", "state", "type", "subject", "attempts", "error")
    list_filter = ("state", "inbox", "type")
    search_fields = ("message_id", "source", "subject", "type")
    date_hierarchy = "received_at"
    fields = (
        "inbox",
        "source",
        "message_id",
        "type",
        "subject",
        "state",
        "attempts",
        "received_at",
        "handled_at",
        "last_error_text",
        "pretty_body",
    )
    readonly_fields = fields

    @admin.display(description="last error")
    def error(self, obj: InboxMessage) -> str:
        lines = obj.last_error.strip().splitlines()
        return lines[-1][:120] if lines else ""

    @admin.display(description="last error")
    def last_error_text(self, obj: InboxMessage) -> Any:
        return format_html("<pre>{}</pre>", obj.last_error) if obj.last_error else "-"

    @admin.display(description="body (kept until handled)")
    def pretty_body(self, obj: InboxMessage) -> Any:
        if not obj.body:
            return "-"
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = obj.body
        return format_html("<pre>{}</pre>", text)
