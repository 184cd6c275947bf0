"""Aggregates in the admin: their state, ``version`` and events, read-only by default.

    from django.contrib import admin
    from django_cqrs.admin import AggregateAdmin

    admin.site.register(Order, AggregateAdmin)

    @admin.register(Customer)
    class CustomerAdmin(AggregateAdmin):
        allow_edit = True      # escape hatch: see below

Changing an aggregate in a form bypasses the command bus: no command, no invariant
beyond ``check_*``, no event, so read models and the event log do not learn of the
change (``save()`` still checks the invariants and the version). That is why editing
is off; ``allow_edit = True`` turns add, change and delete back on for one admin, for
repairs by hand.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .events import events_of, render_event_table
from .mixins import AnyModelAdmin, EventStreamLinkMixin, event_stream_url


class AggregateAdmin(EventStreamLinkMixin, AnyModelAdmin):
    """Admin of an aggregate: every column incl. ``version``, and its latest events."""

    #: Allow add, change and delete through the admin (bypasses the command bus).
    allow_edit: ClassVar[bool] = False
    #: How many of the newest events the change page shows (all: the "events" link).
    events_shown: ClassVar[int] = 20

    def get_aggregate_type(self) -> str | None:
        return self.aggregate_type or self.model._meta.label

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.allow_edit and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.allow_edit and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.allow_edit and super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)
        if not self.allow_edit:
            actions.pop("delete_selected", None)
        return actions

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and "cqrs_event_stream" not in fields:
            fields.append("cqrs_event_stream")
        return fields

    @admin.display(description="latest events")
    def cqrs_event_stream(self, obj: Any) -> SafeString | str:
        events = events_of(obj, limit=self.events_shown)
        if not events:
            return "-"
        table = render_event_table(events, self.admin_site)
        url = event_stream_url(self.admin_site, obj.pk, self.get_aggregate_type())
        if url is None:
            return table
        return format_html('{}<p><a href="{}">All events of this aggregate</a></p>', table, url)
