"""Projections that write their read models with plain ORM calls, the way Django code does.

Not autodiscovered, and not registered on import (the end of this module unregisters
them): ``tests/test_projections_orm.py`` registers one for the length of a test, so that
the commands of other tests do not run them.

    register(OrmLedgerProjection)     # sync: applied in the command's transaction
    ...
    unregister(OrmLedgerProjection)

``OrmLedgerProjection`` (sync) and ``OrmAsyncLedgerProjection`` (async) share the
handlers and the read models; ``OrmDepositCounterProjection`` only updates counters
(creating a row when the update finds none); ``OrmDepositLogProjection`` creates rows
with auto-increment keys.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import F

from django_cqrs.events import EventEnvelope
from django_cqrs.projections import Projection, handles, unregister

from .events import AccountOpened, Deposited, Withdrawn
from .models import OrmAccountView, OrmDeposit, OrmLastWithdrawal, OrmMovement


class OrmLedgerHandlers(Projection):
    """Every ORM style: create, bulk_create, F() update, related manager, save,
    update_or_create, queryset and instance delete (the Collector cascading)."""

    abstract = True
    read_models = [OrmAccountView, OrmMovement, OrmLastWithdrawal]

    @handles(AccountOpened)
    def opened(self, event: AccountOpened, envelope: EventEnvelope) -> None:
        OrmAccountView.objects.create(account_id=event.account_id, owner=event.owner)
        OrmMovement.objects.bulk_create(
            [
                OrmMovement(
                    key=envelope.position * 10,
                    account_id=event.account_id,
                    kind="opened",
                    amount=Decimal("0"),
                ),
                OrmMovement(
                    key=envelope.position * 10 + 1,
                    account_id=event.account_id,
                    kind="welcome",
                    amount=Decimal("0"),
                ),
            ]
        )

    @handles(Deposited)
    def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
        updated = OrmAccountView.objects.filter(pk=event.account_id).update(
            balance=F("balance") + event.amount, deposits=F("deposits") + 1
        )
        if not updated:  # emptied and closed earlier: open it again
            OrmAccountView.objects.create(
                account_id=event.account_id, owner="reopened", balance=event.amount, deposits=1
            )
        account = OrmAccountView.objects.get(pk=event.account_id)
        account.movements.create(key=envelope.position * 10, kind="deposit", amount=event.amount)

    @handles(Withdrawn)
    def withdrawn(self, event: Withdrawn, envelope: EventEnvelope) -> None:
        account = OrmAccountView.objects.get(pk=event.account_id)
        account.balance -= event.amount
        account.withdrawals += 1
        account.save()
        OrmLastWithdrawal.objects.update_or_create(
            account_id=event.account_id,
            defaults={"amount": event.amount, "position": envelope.position},
        )
        # A withdrawal uses up the deposits no larger than it.
        account.movements.filter(kind="deposit", amount__lte=event.amount).delete()
        welcome = account.movements.filter(kind="welcome").first()
        if welcome is not None:
            welcome.delete()
        if account.balance == 0:
            account.delete()  # and its movements, by cascade


class OrmLedgerProjection(OrmLedgerHandlers):
    mode = "sync"


class OrmAsyncLedgerProjection(OrmLedgerHandlers):
    mode = "async"


class OrmDepositCounterProjection(Projection):
    """Counts deposits with F() updates; a row is created only when the update finds none."""

    read_models = [OrmAccountView]
    mode = "sync"

    @handles(Deposited)
    def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
        updated = OrmAccountView.objects.filter(pk=event.account_id).update(
            balance=F("balance") + event.amount, deposits=F("deposits") + 1
        )
        if not updated:
            OrmAccountView.objects.create(
                account_id=event.account_id, owner="", balance=event.amount, deposits=1
            )


class OrmDepositLogProjection(Projection):
    """One row per deposit, with the auto-increment id ``create()`` gives it."""

    read_models = [OrmDeposit]
    mode = "sync"

    @handles(Deposited)
    def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
        OrmDeposit.objects.create(
            account_id=event.account_id, amount=event.amount, position=envelope.position
        )


for _cls in (
    OrmLedgerProjection,
    OrmAsyncLedgerProjection,
    OrmDepositCounterProjection,
    OrmDepositLogProjection,
):
    unregister(_cls)
