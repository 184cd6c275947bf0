"""The Django admin as the operator's console of a CQRS system.

    # <app>/admin.py
    from django.contrib import admin
    from django_cqrs.admin import AggregateAdmin, ReadModelAdmin

    admin.site.register(OrderView, ReadModelAdmin)     # read-only, every column, search
    admin.site.register(Order, AggregateAdmin)         # read-only, version and events

Importing this package (the admin's autodiscovery does) registers the app's own models:
the event log (read-only, filters, pretty JSON, per-aggregate streams), the projections
dashboard (lag, state, parked events; catch up, rebuild, pause, resume, retry, skip)
and the parked events.
"""

from __future__ import annotations

from django.contrib import admin

from ..models import ParkedEvent, ProjectionState, StoredEvent
from .aggregates import AggregateAdmin
from .events import StoredEventAdmin
from .mixins import EventStreamLinkMixin, ReadOnlyAdminMixin, event_stream_url
from .projections import ParkedEventAdmin, ProjectionStateAdmin
from .read_models import ReadModelAdmin, autoregister_read_models

__all__ = [
    "AggregateAdmin",
    "EventStreamLinkMixin",
    "ParkedEventAdmin",
    "ProjectionStateAdmin",
    "ReadModelAdmin",
    "ReadOnlyAdminMixin",
    "StoredEventAdmin",
    "autoregister_read_models",
    "event_stream_url",
]

admin.site.register(StoredEvent, StoredEventAdmin)
admin.site.register(ProjectionState, ProjectionStateAdmin)
admin.site.register(ParkedEvent, ParkedEventAdmin)
