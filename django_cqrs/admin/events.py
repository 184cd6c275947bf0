"""The event log in the admin: browse, filter and read events; never change them.

    # admin/django_cqrs/storedevent/                 every event, newest first
    # admin/django_cqrs/storedevent/?correlation_id=...&user=alice
    # admin/django_cqrs/storedevent/stream/?aggregate_type=orders.Order&aggregate_id=...

The log is append-only in the model too: ``StoredEvent.save()`` on a stored row,
``delete()`` and queryset ``update()``/``delete()`` raise ``AppendOnlyError``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Q
from django.db.models.lookups import Exact
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe

from ..db.jsontext import KeyText
from ..events import decode_event
from ..models import StoredEvent
from ..serialization import to_json_dict
from .filters import (
    AggregateIdFilter,
    AggregateTypeFilter,
    CorrelationIdFilter,
    EventTypeFilter,
    UserFilter,
)
from .mixins import AnyModelAdmin, ReadOnlyAdminMixin, event_stream_url
from .pagination import EstimatedCountPaginator

#: The largest position a search term is compared with (a bigint).
MAX_POSITION = 2**63 - 1

#: Where a long name may wrap: after a dot, and between the words of ``CustomerRegistered``.
_WRAP_POINTS = re.compile(r"(?<=\.)|(?<=[a-z])(?=[A-Z])")

#: Most events one stream page shows (the changelist pages through any number).
STREAM_LIMIT = 1000


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON in a ``<pre>`` block."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="cqrs-json">{}</pre>', text)


def shorten(value: Any) -> str:
    """An id cut to its first 8 characters (ids are long; a title shows them whole)."""
    text = str(value)
    return f"{text[:8]}…" if len(text) > 12 else text


def breakable(name: str) -> SafeString:
    """A dotted name (``orders.OrderPlaced``) that may wrap after a dot or inside a word."""
    parts = _WRAP_POINTS.split(name)
    return format_html_join(mark_safe("<wbr>"), "{}", ((part,) for part in parts))


def compact_time(value: datetime) -> str:
    """``2026-12-01 15:50:33`` in the current time zone: narrower than Django's format."""
    return date_format(timezone.localtime(value), "Y-m-d H:i:s")


def event_rows(events: list[StoredEvent], site: admin.AdminSite) -> list[dict[str, Any]]:
    """What the event table template shows for each event."""
    rows = []
    for event in events:
        try:
            url = reverse(f"{site.name}:django_cqrs_storedevent_change", args=[event.position])
        except NoReverseMatch:
            url = ""
        rows.append(
            {
                "event": event,
                "url": url,
                "payload": pretty_json(event.payload),
                "metadata": pretty_json(event.metadata),
            }
        )
    return rows


def render_event_table(
    events: list[StoredEvent], site: admin.AdminSite, *, show_aggregate: bool = False
) -> SafeString:
    """An HTML table of ``events`` (version, position, type, time, payload, metadata)."""
    html = render_to_string(
        "admin/django_cqrs/event_table.html",
        {"rows": event_rows(events, site), "show_aggregate": show_aggregate},
    )
    return SafeString(html)


def aggregate_admin_url(site: admin.AdminSite, aggregate_type: str, aggregate_id: str) -> str:
    """The admin page of the aggregate itself, or "" when it has none on ``site``."""
    try:
        model = apps.get_model(aggregate_type)
    except (LookupError, ValueError):
        return ""
    if not site.is_registered(model):
        return ""
    opts = model._meta
    try:
        return reverse(
            f"{site.name}:{opts.app_label}_{opts.model_name}_change", args=[aggregate_id]
        )
    except NoReverseMatch:
        return ""


class StoredEventAdmin(ReadOnlyAdminMixin, AnyModelAdmin):
    """Read-only browser of the event log, with filters and per-aggregate streams."""

    # Short headers, short ids and names that may wrap after a dot: the list fits a
    # 1280-px screen beside the navigation sidebar and the filters.
    list_display = ("number", "event", "aggregate", "version", "recorded", "correlation", "user")
    list_display_links = ("number", "event")
    list_filter = (
        AggregateIdFilter,
        CorrelationIdFilter,
        UserFilter,
        ("recorded_at", admin.DateFieldListFilter),
        EventTypeFilter,
        AggregateTypeFilter,
    )
    # The search box matches indexed columns exactly (see get_search_results): a substring
    # search would read the whole log.
    search_fields = ("=position", "=aggregate_id", "=event_type", "=correlation_id")
    search_help_text = (
        "Exact match: a position, an aggregate id, an event type (orders.OrderPlaced) "
        "or a correlation id."
    )
    ordering = ("-position",)
    list_per_page = 50
    # Never a full COUNT(*) of a long log: the whole log's size is PostgreSQL's estimate,
    # a filtered one's is counted up to 10,000 ("10,000+"); facets would count per choice.
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    fields = (
        "position",
        "event_type",
        "schema_version",
        "aggregate",
        "aggregate_version",
        "recorded_at",
        "pretty_payload",
        "read_as",
        "pretty_metadata",
    )
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: models.QuerySet[Any], search_term: str
    ) -> tuple[models.QuerySet[Any], bool]:
        """Events whose position, aggregate id, event type or correlation id is the term.

        An OR of equalities on indexed columns (the primary key, ``django_cqrs_event_agg_id``,
        the event type's index and ``django_cqrs_event_corr``), never a ``LIKE`` scan.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        match = (
            Q(aggregate_id=term)
            | Q(event_type=term)
            | Q(Exact(KeyText("metadata", "correlation_id"), term))
        )
        if term.isdigit() and int(term) <= MAX_POSITION:
            match |= Q(position=int(term))
        return queryset.filter(match), False

    # -- columns --------------------------------------------------------------------

    @admin.display(description="#", ordering="position")
    def number(self, event: StoredEvent) -> int:
        """The position, under the header ``#`` (``#42`` is how events are named)."""
        return event.position

    @admin.display(description="event type", ordering="event_type")
    def event(self, event: StoredEvent) -> str:
        return breakable(event.event_type)

    @admin.display(description="aggregate", ordering="aggregate_id")
    def aggregate(self, event: StoredEvent) -> str:
        url = event_stream_url(self.admin_site, event.aggregate_id, event.aggregate_type)
        return format_html(
            '<a href="{}" title="{} {}: this aggregate\'s events, in order">{} {}</a>',
            url,
            event.aggregate_type,
            event.aggregate_id,
            breakable(event.aggregate_type),
            shorten(event.aggregate_id),
        )

    @admin.display(description="version", ordering="aggregate_version")
    def version(self, event: StoredEvent) -> int:
        return event.aggregate_version

    @admin.display(description="recorded", ordering="recorded_at")
    def recorded(self, event: StoredEvent) -> str:
        return compact_time(event.recorded_at)

    @admin.display(description="correlation")
    def correlation(self, event: StoredEvent) -> str:
        return self._filter_link("correlation_id", event.metadata.get("correlation_id"))

    @admin.display(description="user")
    def user(self, event: StoredEvent) -> str:
        return self._filter_link("user", event.metadata.get("user"))

    def _filter_link(self, parameter: str, value: Any) -> str:
        if not value:
            return "-"
        url = reverse(f"{self.admin_site.name}:django_cqrs_storedevent_changelist")
        text = str(value)
        return format_html(
            '<a href="{}?{}" title="{}">{}</a>',
            url,
            urlencode({parameter: text}),
            text,
            shorten(text),
        )

    @admin.display(description="payload")
    def pretty_payload(self, event: StoredEvent) -> str:
        return pretty_json(event.payload)

    @admin.display(description="read as")
    def read_as(self, event: StoredEvent) -> str:
        """What the code reads at this event: the payload upcast to the class's current
        version (or under its current name), or the error a reader of the log meets."""
        try:
            decoded = decode_event(event.event_type, event.schema_version, event.payload)
        except Exception as exc:
            return format_html('<span class="cqrs-problem">{}: {}</span>', type(exc).__name__, exc)
        cls = type(decoded)
        where = f"{cls.__module__}.{cls.__qualname__}"
        if (event.event_type, event.schema_version) == (cls.event_type, cls.schema_version):
            return format_html("{} (the payload as stored)", where)
        return format_html(
            "{}, {} version {} (upcast from {} version {}){}",
            where,
            cls.event_type,
            cls.schema_version,
            event.event_type,
            event.schema_version,
            pretty_json(to_json_dict(decoded)),
        )

    @admin.display(description="metadata")
    def pretty_metadata(self, event: StoredEvent) -> str:
        return pretty_json(event.metadata)

    # -- one aggregate's stream -----------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        stream = path(
            "stream/",
            self.admin_site.admin_view(self.stream_view),
            name="django_cqrs_storedevent_stream",
        )
        return [stream, *super().get_urls()]

    def stream_view(self, request: HttpRequest) -> HttpResponse:
        """One aggregate's events in version order (``?aggregate_type=&aggregate_id=``)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        aggregate_type = request.GET.get("aggregate_type", "").strip()
        aggregate_id = request.GET.get("aggregate_id", "").strip()
        qs = StoredEvent.objects.filter(aggregate_id=aggregate_id)
        if aggregate_type:
            qs = qs.filter(aggregate_type=aggregate_type)
        events = list(qs.order_by("aggregate_type", "aggregate_version")[: STREAM_LIMIT + 1])
        truncated = len(events) > STREAM_LIMIT
        events = events[:STREAM_LIMIT]
        types = sorted({event.aggregate_type for event in events})
        single_type = aggregate_type or (types[0] if len(types) == 1 else "")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Events of {single_type or 'aggregate'} {aggregate_id}",
            "aggregate_type": single_type,
            "aggregate_id": aggregate_id,
            "aggregate_url": (
                aggregate_admin_url(self.admin_site, single_type, aggregate_id)
                if single_type
                else ""
            ),
            "event_table": render_event_table(
                events, self.admin_site, show_aggregate=len(types) > 1
            ),
            "count": len(events),
            "truncated": truncated,
            "limit": STREAM_LIMIT,
            "changelist_url": reverse(f"{self.admin_site.name}:django_cqrs_storedevent_changelist")
            + "?"
            + urlencode({"aggregate_id": aggregate_id}),
        }
        return TemplateResponse(request, "admin/django_cqrs/storedevent/stream.html", context)


def events_of(instance: models.Model, *, limit: int) -> list[StoredEvent]:
    """The newest ``limit`` events of an aggregate instance, oldest first."""
    qs = StoredEvent.objects.for_aggregate(instance)
    newest = list(qs.order_by("-aggregate_version")[:limit])
    return newest[::-1]
