"""Async projections of the test domain, driven by django-q2 (imported by the async tests).

Not autodiscovered (the module is not called ``projections``): tests import it, and the
qcluster settings of ``tests/test_async_workers.py`` list it in ``AUTODISCOVER_MODULES``.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal

from django_cqrs.events import EventEnvelope
from django_cqrs.projections import Projection, handles

from .events import AccountOpened, Deposited, Withdrawn
from .models import AccountMovementCount, AccountTotals

#: Deposit amounts that make AccountTotalsProjection fail (a poison event); tests set it.
POISON: set[Decimal] = set()
#: When a list, every applied event appends ``(position, envelope.replaying)`` to it.
SEEN: list[tuple[int, bool]] | None = None
#: Seconds AccountTotalsProjection spends on each event (a qcluster test sets it through
#: the environment: catch-ups that take a known time, however fast the machine).
APPLY_DELAY = float(os.environ.get("CQRS_TEST_APPLY_DELAY", "0"))


class AccountTotalsProjection(Projection):
    """Counters per account: applying an event twice would double-count it."""

    read_models = [AccountTotals]
    mode = "async"

    @handles(AccountOpened)
    def opened(self, event: AccountOpened, envelope: EventEnvelope) -> None:
        row = self._row(event.account_id, envelope)
        row.owner = event.owner
        self.put(row)

    @handles(Deposited)
    def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
        if event.amount in POISON:
            raise ValueError(f"poisoned deposit of {event.amount}")
        row = self._row(event.account_id, envelope)
        row.deposits += 1
        row.deposited += event.amount
        self.put(row)

    @handles(Withdrawn)
    def withdrawn(self, event: Withdrawn, envelope: EventEnvelope) -> None:
        row = self._row(event.account_id, envelope)
        row.withdrawals += 1
        row.withdrawn += event.amount
        self.put(row)

    def _row(self, account_id: int, envelope: EventEnvelope) -> AccountTotals:
        if SEEN is not None:
            SEEN.append((envelope.position, envelope.replaying))
        if APPLY_DELAY:
            time.sleep(APPLY_DELAY)
        row = self.get(AccountTotals, account_id) or AccountTotals(account_id=account_id)
        row.last_position = envelope.position
        return row


class AccountMovementCountProjection(Projection):
    """Movements per account (handles deposits and withdrawals only), keyed by a field."""

    read_models = [AccountMovementCount]
    key_fields = {AccountMovementCount: "account_id"}  # batches load rows by the event's field
    mode = "async"

    @handles(Deposited, Withdrawn)
    def moved(self, event: Deposited | Withdrawn, envelope: EventEnvelope) -> None:
        row = self.get(AccountMovementCount, event.account_id) or AccountMovementCount(
            account_id=event.account_id
        )
        row.movements += 1
        self.put(row)
