"""The Django admin as the operator's console of a CQRS system.

    # <app>/admin.py
    from django.contrib import admin
    from django_cqrs.admin import AggregateAdmin, ReadModelAdmin

    admin.site.register(OrderView, ReadModelAdmin)     # read-only, every column, search
    admin.site.register(Order, AggregateAdmin)         # read-only, version and events

Importing this package (the admin's autodiscovery does) registers the app's own models:
the event log (read-only, filters, pretty JSON, per-aggregate streams), the projections
dashboard (lag, state, parked events; catch up, rebuild, pause, resume, retry, skip),
the parked events, the sagas' deadlines and the inboxes' messages. Every saga instance
model of the installed apps gets a ``SagaInstanceAdmin`` at start-up (state, steps,
deadlines, parked events; retry and skip), unless an ``admin.py`` registered one
(``autoregister_sagas``).
"""

from __future__ import annotations

from django.contrib import admin

from ..models import InboxMessage, ParkedEvent, ProjectionState, SagaDeadline, StoredEvent
from .aggregates import AggregateAdmin
from .events import StoredEventAdmin
from .inbox import InboxMessageAdmin
from .mixins import EventStreamLinkMixin, ReadOnlyAdminMixin, event_stream_url
from .projections import ParkedEventAdmin, ProjectionStateAdmin
from .read_models import ReadModelAdmin, autoregister_read_models
from .sagas import SagaDeadlineAdmin, SagaInstanceAdmin, autoregister_sagas

__all__ = [
    "AggregateAdmin",
    "EventStreamLinkMixin",
    "InboxMessageAdmin",
    "ParkedEventAdmin",
    "ProjectionStateAdmin",
    "ReadModelAdmin",
    "ReadOnlyAdminMixin",
    "SagaDeadlineAdmin",
    "SagaInstanceAdmin",
    "StoredEventAdmin",
    "autoregister_read_models",
    "autoregister_sagas",
    "event_stream_url",
]

admin.site.register(StoredEvent, StoredEventAdmin)
admin.site.register(ProjectionState, ProjectionStateAdmin)
admin.site.register(ParkedEvent, ParkedEventAdmin)
admin.site.register(SagaDeadline, SagaDeadlineAdmin)
admin.site.register(InboxMessage, InboxMessageAdmin)
