"""Receive another service's events from a broker, each applied once (docs/inbox.md).

    # billing/inbox.py  (imported at start-up, like handlers.py)
    from django_cqrs.inbox import IncomingEvent, inbox_handler

    @inbox_handler("orders.OrderPlaced")
    def open_invoice(event: IncomingEvent) -> None:
        Invoice.objects.create(order_id=event.data["order_id"], total=event.data["total"])

    $ python manage.py cqrs_consume orders     # DJANGO_CQRS["INBOXES"]["orders"]

This module imports neither the app's models nor a broker client: ``apply`` (the
transaction), ``consumer`` (the loop of ``cqrs_consume``) and the backends (``amqp``,
``jetstream``) are imported where they are used.
"""

from .events import IncomingEvent, InvalidMessage
from .registry import handlers_for, inbox_handler

__all__ = ["IncomingEvent", "InvalidMessage", "handlers_for", "inbox_handler"]
