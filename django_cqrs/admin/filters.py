"""Changelist filters of the event log: by event type, aggregate, correlation id and user.

    class StoredEventAdmin(admin.ModelAdmin):
        list_filter = [EventTypeFilter, AggregateTypeFilter, AggregateIdFilter,
                       CorrelationIdFilter, UserFilter]

The choices of the type filters come from the registered classes, not from a
``SELECT DISTINCT`` over the log, so the changelist stays cheap on a long log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.db.models import QuerySet
from django.db.models.lookups import Exact
from django.http import HttpRequest

from ..aggregates import Aggregate
from ..db.jsontext import KeyText
from ..events import registered_event_types


class InputFilter(admin.SimpleListFilter):
    """A filter with a text box: ``?<parameter_name>=<value>`` matches ``lookup`` exactly.

    With ``json_key`` the value is compared with that key of the JSON field ``lookup``
    names, as text (``KeyText("metadata", "user")``): the expression the event log's
    indexes are built on, so the filter reads the index instead of the whole log.
    """

    template = "admin/django_cqrs/input_filter.html"
    #: The queryset lookup the value is matched with, e.g. ``"metadata__user"``.
    lookup: str = ""
    #: Compare this key of the JSON field ``lookup`` as text (``KeyText``).
    json_key: str = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        if not value:
            return queryset
        if self.json_key:
            return queryset.filter(Exact(KeyText(self.lookup, self.json_key), value.strip()))
        return queryset.filter(**{self.lookup: value.strip()})

    def choices(self, changelist: ChangeList) -> Iterator[Any]:
        # One "choice": what the template needs to render a GET form that keeps the
        # other filters, the search and the ordering.
        name = str(self.parameter_name)
        kept = [
            (key, value)
            for key, values in changelist.filter_params.items()
            if key not in (name, PAGE_VAR)
            for value in values
        ]
        yield {
            "parameter_name": name,
            "value": self.value() or "",
            "kept": kept,
            "clear_query_string": changelist.get_query_string(remove=[name, PAGE_VAR]),
        }


class AggregateIdFilter(InputFilter):
    title = "aggregate id"
    parameter_name = "aggregate_id"
    lookup = "aggregate_id"


class CorrelationIdFilter(InputFilter):
    title = "correlation id"
    parameter_name = "correlation_id"
    lookup = "metadata"
    json_key = "correlation_id"


class UserFilter(InputFilter):
    title = "user"
    parameter_name = "user"
    lookup = "metadata"
    json_key = "user"


class ExactFilter(admin.SimpleListFilter):
    """A choice list filter: the rows whose column ``parameter_name`` is the value chosen."""

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        return queryset.filter(**{str(self.parameter_name): value}) if value else queryset


class EventTypeFilter(ExactFilter):
    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(registered_event_types())]


class AggregateTypeFilter(ExactFilter):
    title = "aggregate type"
    parameter_name = "aggregate_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        labels = sorted(
            model._meta.label for model in apps.get_models() if issubclass(model, Aggregate)
        )
        return [(label, label) for label in labels]
