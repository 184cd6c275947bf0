"""The test domain's saga: a transfer between accounts, with a fee and a confirmation.

withdraw from the source (compensated by a deposit back) -> deposit to the target
(compensated by a withdrawal) -> take the fee from the target -> wait for the transfer's
confirmation, at most ``CONFIRM_SECONDS`` -> completed. A refused step or the deadline
compensates what succeeded, newest first.

The qcluster tests (``tests/test_sagas_workers.py``) set two knobs through the
environment of the cluster: ``CQRS_TEST_CONFIRM_SECONDS`` (a window longer than the test,
so no deadline fires while it runs) and ``CQRS_TEST_SAGA_STEP_DELAY`` (seconds between
the withdrawal and the deposit: a kill lands between the steps, whatever the machine).
"""

from __future__ import annotations

import os
import time
from typing import Any

from django_cqrs.events import EventEnvelope
from django_cqrs.sagas import Saga, on, on_deadline, starts

from .commands import Deposit, Withdraw
from .events import TransferConfirmed, TransferRequested
from .models import TransferRun

CONFIRM_SECONDS = int(os.environ.get("CQRS_TEST_CONFIRM_SECONDS", "30"))
#: Seconds the handler waits between the withdrawal and the deposit.
STEP_DELAY = float(os.environ.get("CQRS_TEST_SAGA_STEP_DELAY", "0"))
#: Source account ids whose transfer the handler cannot process (a poison event).
POISON_SOURCES: set[int] = set()


class TransferSaga(Saga):
    instance_model = TransferRun

    @starts(TransferRequested, key="transfer_id")
    def requested(self, instance: Any, event: TransferRequested, envelope: EventEnvelope) -> None:
        if event.source_id in POISON_SOURCES:
            raise RuntimeError(f"cannot process transfers from account {event.source_id}")
        instance.transfer_id = event.transfer_id
        self.dispatch(
            Withdraw(account_id=event.source_id, amount=event.amount),
            step="withdraw",
            compensation=Deposit(account_id=event.source_id, amount=event.amount),
        )
        if STEP_DELAY:
            time.sleep(STEP_DELAY)
        self.dispatch(
            Deposit(account_id=event.target_id, amount=event.amount),
            step="deposit",
            compensation=Withdraw(account_id=event.target_id, amount=event.amount),
        )
        if event.fee:
            self.dispatch(Withdraw(account_id=event.target_id, amount=event.fee), step="fee")
        instance.state = "awaiting_confirmation"
        self.schedule("confirmation", seconds=CONFIRM_SECONDS)

    @on(TransferConfirmed, key="transfer_id")
    def confirmed(self, instance: Any, event: TransferConfirmed, envelope: EventEnvelope) -> None:
        self.record("confirmed")
        self.complete()

    @on_deadline("confirmation")
    def not_confirmed(self, instance: Any) -> None:
        self.fail(f"not confirmed within {CONFIRM_SECONDS} s")
