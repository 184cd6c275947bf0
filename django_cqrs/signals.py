"""Signals of django_cqrs; ``sender`` is the event class (the model, for saga deadlines).

    from django.dispatch import receiver
    from django_cqrs.signals import event_committed

    @receiver(event_committed, sender=OrderPlaced)
    def send_confirmation(sender, event, envelope, **kwargs):
        ...   # runs after the command's transaction committed

``event_recorded`` is sent inside the command's transaction, right after the event is
appended: a receiver that raises rolls the whole command back (this is how sync
projections work). ``event_committed`` is sent after commit with ``send_robust``: a
receiver that raises is logged and cannot turn a committed command into a failure.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent inside the transaction for each appended event. kwargs: ``event``, ``envelope``.
event_recorded = Signal(use_caching=True)

#: Sent after the transaction commits, for each event. kwargs: ``event``, ``envelope``.
event_committed = Signal(use_caching=True)

#: Sent when a saga sets a deadline (inside the handler's transaction); ``sender`` is
#: ``SagaDeadline``. kwargs: ``saga``, ``key``, ``name``, ``due_at``. The queue adapter
#: (``django_cqrs.tasks``) queues a one-off task for ``due_at``.
saga_deadline_scheduled = Signal()
