"""Read models in the admin: see what the projections wrote, change nothing.

    # <app>/admin.py
    from django.contrib import admin
    from django_cqrs.admin import ReadModelAdmin

    admin.site.register(OrderView, ReadModelAdmin)          # one line

    @admin.register(OrderView)
    class OrderViewAdmin(ReadModelAdmin):
        aggregate_type = "orders.Order"      # the "events" link opens that order's stream
        list_filter = ["status", "placed_at"]

Or set ``DJANGO_CQRS["ADMIN_AUTOREGISTER_READ_MODELS"] = True`` to register every read
model that has no admin of its own.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.db import models
from django.http import HttpRequest

from ..read_models import ReadModel
from .mixins import AnyModelAdmin, EventStreamLinkMixin, ReadOnlyAdminMixin

_SEARCHABLE = (models.CharField, models.TextField, models.UUIDField)
_FILTERABLE = (models.BooleanField, models.DateField)


class ReadModelAdmin(ReadOnlyAdminMixin, EventStreamLinkMixin, AnyModelAdmin):
    """Read-only admin of a read model: every column, search, filters, ordering, events.

    Defaults, each overridden by setting the usual ``ModelAdmin`` attribute: every
    column is listed (and sortable); text and UUID columns are searched; columns with
    choices, booleans and dates get a filter. A row's "events" link opens the event
    stream of the aggregate whose id is the row's primary key (see ``aggregate_type``
    and ``aggregate_id_field``).
    """

    def get_search_fields(self, request: HttpRequest) -> Any:
        if self.search_fields:
            return self.search_fields
        return [
            field.name
            for field in self.model._meta.concrete_fields
            if isinstance(field, _SEARCHABLE) and not field.is_relation
        ]

    def get_list_filter(self, request: HttpRequest) -> Any:
        if self.list_filter:
            return self.list_filter
        return [
            field.name
            for field in self.model._meta.concrete_fields
            if field.choices or isinstance(field, _FILTERABLE)
        ]


def read_models() -> list[type[models.Model]]:
    """Every concrete read model of the installed apps."""
    return [model for model in apps.get_models() if issubclass(model, ReadModel)]


def autoregister_read_models(site: admin.AdminSite | None = None) -> list[type[models.Model]]:
    """Register every read model without an admin on ``site`` with ReadModelAdmin.

    Runs after the apps' ``admin`` modules are imported (``admin.autodiscover()``), so
    a read model registered there keeps its own admin. Returns the models registered.
    """
    site = site or admin.site
    if site is admin.site and _admin_autodiscovers():
        admin.autodiscover()
    added = [model for model in read_models() if not site.is_registered(model)]
    for model in added:
        site.register(model, ReadModelAdmin)
    return added


def _admin_autodiscovers() -> bool:
    return any(isinstance(config, AdminConfig) for config in apps.get_app_configs())
