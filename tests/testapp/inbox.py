"""An inbox handler of the test app: ``tests.Counted`` adds a tutorial task.

With ``INBOX_TEST_HANG_AFTER_COMMIT`` set, the process hangs once the message's
transaction has committed, before it is acknowledged (the test then kills it).
"""

from __future__ import annotations

import os
import time

from django.db import transaction

from django_cqrs import command_bus
from django_cqrs.inbox import IncomingEvent, inbox_handler
from tests.tutorial.commands import AddTask


@inbox_handler("tests.Counted")
def add_a_task(event: IncomingEvent) -> None:
    command_bus.dispatch(AddTask(title=f"counted {event.id}"), metadata=event.metadata)
    if os.environ.get("INBOX_TEST_HANG_AFTER_COMMIT"):
        transaction.on_commit(lambda: time.sleep(600))
