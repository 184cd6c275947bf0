from __future__ import annotations

from django_cqrs.events import EventEnvelope
from django_cqrs.projections import Projection, handles

from .events import AccountOpened, Deposited, Withdrawn
from .models import AccountLedger, AccountView


class AccountViewProjection(Projection):
    read_models = [AccountView]
    mode = "sync"

    @handles(AccountOpened)
    def opened(self, event: AccountOpened, envelope: EventEnvelope) -> None:
        self.put(AccountView(account_id=event.account_id, owner=event.owner, balance="0.00"))

    @handles(Deposited, Withdrawn)
    def moved(self, event: Deposited | Withdrawn, envelope: EventEnvelope) -> None:
        view = self.get(AccountView, event.account_id)
        assert view is not None
        view.balance = f"{event.balance:.2f}"
        view.movements += 1
        self.put(view)


class AccountLedgerProjection(Projection):
    read_models = [AccountLedger]

    @handles(Deposited)
    def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
        self.put(
            AccountLedger(
                position=envelope.position, account_id=event.account_id, amount=event.amount
            )
        )

    @handles(Withdrawn)
    def withdrawn(self, event: Withdrawn, envelope: EventEnvelope) -> None:
        self.put(
            AccountLedger(
                position=envelope.position, account_id=event.account_id, amount=-event.amount
            )
        )
