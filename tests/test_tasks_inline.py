"""A catch-up that django-q2 runs inline after a commit belongs to no command.

With ``Q_CLUSTER["sync"]`` (the test settings) a command's ``on_commit`` hook runs the
catch-up of a saga right away, while the command's dispatch context is still active.
The commands the saga sends there are commands of their own, as in a worker: the
committed command reports its own position and versions, not the saga's.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from django_cqrs import command_bus
from django_cqrs.models import StoredEvent
from tests.testapp.commands import Deposit, OpenAccount, RequestTransfer
from tests.testapp.models import Account, TransferRun


@pytest.mark.django_db(transaction=True)
def test_a_saga_run_inline_after_a_commit_is_not_part_of_the_committed_command() -> None:
    alice = command_bus.dispatch(OpenAccount(owner="alice")).value
    bob = command_bus.dispatch(OpenAccount(owner="bob")).value
    command_bus.dispatch(Deposit(account_id=alice, amount=Decimal("100")))
    transfer_id = uuid.uuid4()

    result = command_bus.dispatch(
        RequestTransfer(transfer_id=transfer_id, source_id=alice, target_id=bob, amount=Decimal(30))
    )

    # The saga ran inline: it withdrew and deposited ...
    assert TransferRun.objects.get(key=str(transfer_id)).state == "awaiting_confirmation"
    assert Account.objects.get(pk=bob).balance == Decimal("30")
    # ... in commands of its own: the request reports its one event, and its aggregate.
    requested = StoredEvent.objects.get(event_type="testapp.TransferRequested")
    assert (result.position, result.positions) == (requested.position, (requested.position,))
    assert set(result.versions) == {("testapp.Transfer", str(transfer_id))}
    later = StoredEvent.objects.filter(position__gt=requested.position)
    assert later.count() == 2
    assert {e.metadata["causation_id"] for e in later} == {
        f"saga:testapp.TransferSaga:{transfer_id}"
    }
