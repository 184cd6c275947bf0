"""Building blocks of the CQRS admin classes: read-only access and links to event streams.

from django.contrib import admin
from django_cqrs.admin.mixins import EventStreamLinkMixin, ReadOnlyAdminMixin

class LedgerAdmin(ReadOnlyAdminMixin, EventStreamLinkMixin, admin.ModelAdmin):
    aggregate_id_field = "account_id"     # the column holding the aggregate's id
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

if TYPE_CHECKING:  # django-stubs makes ModelAdmin generic; Django's class is not subscriptable
    AnyModelAdmin = admin.ModelAdmin[Any]
else:
    AnyModelAdmin = admin.ModelAdmin


class ReadOnlyAdminMixin:
    """No add, change or delete through the admin, and no bulk delete action.

    Every write view answers 403, even to a superuser and to a crafted POST: only the
    ``view`` permission (or the change permission, which implies it) opens the pages.
    """

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)  # type: ignore[misc]
        actions.pop("delete_selected", None)
        return actions


def event_stream_url(
    site: admin.AdminSite, aggregate_id: Any, aggregate_type: str | None = None
) -> str | None:
    """The admin URL of one aggregate's events in order, or None without an event log admin."""
    try:
        url = reverse(f"{site.name}:django_cqrs_storedevent_stream")
    except NoReverseMatch:
        return None
    query = {"aggregate_id": str(aggregate_id)}
    if aggregate_type:
        query["aggregate_type"] = aggregate_type
    return f"{url}?{urlencode(query)}"


_DEFAULT_LIST_DISPLAY = ("__str__",)


class EventStreamLinkMixin:
    """Every column by default, and an "events" link to the row's aggregate stream.

    ``aggregate_type`` (``"app_label.Model"``) narrows the stream to one aggregate type;
    ``aggregate_id_field`` names the field holding the aggregate's id (default: the
    primary key). Set ``events_link = False`` to drop the link.
    """

    model: type[models.Model]
    admin_site: admin.AdminSite
    list_display: Any
    fields: Any

    aggregate_type: str | None = None
    aggregate_id_field: str | None = None
    events_link: bool = True

    def get_aggregate_type(self) -> str | None:
        return self.aggregate_type

    def get_aggregate_id(self, obj: models.Model) -> Any:
        return getattr(obj, self.aggregate_id_field) if self.aggregate_id_field else obj.pk

    def get_list_display(self, request: HttpRequest) -> Any:
        if tuple(self.list_display) != _DEFAULT_LIST_DISPLAY:
            columns = list(self.list_display)
        else:
            columns = [field.name for field in self.model._meta.concrete_fields]
        if self.events_link and "cqrs_events" not in columns:
            columns.append("cqrs_events")
        return columns

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if self.fields:
            return self.fields
        names = [field.name for field in self.model._meta.concrete_fields]
        extra = self.get_readonly_fields(request, obj)
        return [*names, *(name for name in extra if name not in names)]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Fields a form cannot edit (primary keys, ``version``, ``auto_now``) are shown too.
        fields = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        for field in self.model._meta.concrete_fields:
            if (not field.editable or isinstance(field, models.AutoField)) and (
                field.name not in fields
            ):
                fields.append(field.name)
        if self.events_link and "cqrs_events" not in fields:
            fields.append("cqrs_events")
        return fields

    @admin.display(description="events")
    def cqrs_events(self, obj: models.Model) -> str:
        aggregate_id = self.get_aggregate_id(obj)
        url = event_stream_url(self.admin_site, aggregate_id, self.get_aggregate_type())
        if url is None or aggregate_id is None:
            return "-"
        return format_html('<a href="{}" class="cqrs-events-link">events</a>', url)
