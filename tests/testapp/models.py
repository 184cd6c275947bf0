"""Concrete models of the test domain: an Account aggregate and its read model."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models.functions import Upper

from django_cqrs.aggregates import Aggregate
from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.read_models import ReadModel
from django_cqrs.sagas import SagaInstance

from .events import AccountOpened, Deposited, TransferConfirmed, TransferRequested, Withdrawn


class Account(Aggregate):
    owner = models.CharField(max_length=100)
    balance = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))

    @classmethod
    def open(cls, owner: str) -> Account:
        account = cls(owner=owner)
        account.save()  # the id is needed for the event
        account.record_event(AccountOpened(account_id=account.pk, owner=owner))
        account.save()
        return account

    def deposit(self, amount: Decimal) -> None:
        if amount <= 0:
            raise InvariantViolationError("deposits must be positive", field="amount")
        self.balance += amount
        self.record_event(Deposited(account_id=self.pk, amount=amount, balance=self.balance))

    def withdraw(self, amount: Decimal) -> None:
        self.balance -= amount
        self.record_event(Withdrawn(account_id=self.pk, amount=amount, balance=self.balance))

    def check_balance_not_negative(self) -> None:
        if self.balance < 0:
            raise InvariantViolationError("balance cannot go below zero", field="balance")


class AccountView(ReadModel):
    account_id = models.BigIntegerField(primary_key=True)
    owner = models.CharField(max_length=100)
    balance = models.CharField(max_length=32)
    movements = models.IntegerField(default=0)


class AccountLedger(ReadModel):
    """One row per movement: lets tests see a projection that appends rows."""

    position = models.BigIntegerField(primary_key=True)
    account_id = models.BigIntegerField(db_index=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)


class AccountTotals(ReadModel):
    """Async read model (``tests.testapp.async_projections``): counters per account.

    Every event increments a counter, so an event applied twice shows as a wrong row.
    """

    account_id = models.BigIntegerField(primary_key=True)
    owner = models.CharField(max_length=100, blank=True, default="")
    deposits = models.IntegerField(default=0)
    deposited = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    withdrawals = models.IntegerField(default=0)
    withdrawn = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    last_position = models.BigIntegerField(default=0)


class AccountMovementCount(ReadModel):
    """A second async read model: movements per account (a projection that keeps going)."""

    account_id = models.BigIntegerField(primary_key=True)
    movements = models.IntegerField(default=0)


class OrmAccountView(ReadModel):
    """Written with plain ORM calls (``tests.testapp.orm_projections``): create, F(), save."""

    account_id = models.BigIntegerField(primary_key=True)
    owner = models.CharField(max_length=100)
    balance = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    deposits = models.IntegerField(default=0)
    withdrawals = models.IntegerField(default=0)


class OrmMovement(ReadModel):
    """Rows of an ``OrmAccountView``, written through its related manager and bulk_create."""

    key = models.BigIntegerField(primary_key=True)  # the event's position * 10 + n
    # No database constraint: OrmDepositCounterProjection rebuilds OrmAccountView on its
    # own, and a rebuild's swap refuses a constraint from another projection's table
    # (check E013). The ORM still cascades deletes.
    account = models.ForeignKey(
        OrmAccountView, on_delete=models.CASCADE, related_name="movements", db_constraint=False
    )
    kind = models.CharField(max_length=20)
    amount = models.DecimalField(max_digits=14, decimal_places=2)


class OrmLastWithdrawal(ReadModel):
    """The last withdrawal per account, written with ``update_or_create``."""

    account_id = models.BigIntegerField(primary_key=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    position = models.BigIntegerField()


class OrmDeposit(ReadModel):
    """One row per deposit, keyed by an auto-increment id (``Model.objects.create``)."""

    account_id = models.BigIntegerField(db_index=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    position = models.BigIntegerField()


class AccountCard(ReadModel):
    """A read model with every kind of index and constraint (tests/test_projections_switch.py).

    An identity primary key, a foreign key to the ``Account`` aggregate (one-to-one: unique
    too), single-column, composite, descending and expression indexes, a CHECK, a unique
    constraint and a partial unique index.
    """

    id = models.BigAutoField(primary_key=True)
    account = models.OneToOneField(Account, on_delete=models.DO_NOTHING, related_name="+")
    owner = models.CharField(max_length=100, db_index=True)
    balance = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    moves = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-balance"], name="card_owner_balance"),
            models.Index(Upper("owner"), name="card_upper_owner"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(balance__gte=-1_000_000), name="card_balance_floor"
            ),
            models.UniqueConstraint(fields=["owner", "account"], name="card_owner_account"),
            models.UniqueConstraint(
                fields=["owner"], condition=models.Q(balance__lt=-100_000), name="card_deep_debt"
            ),
        ]


class CardMovement(ReadModel):
    """One row per movement of a card: a foreign key between two read models."""

    position = models.BigIntegerField(primary_key=True)
    card = models.ForeignKey(AccountCard, on_delete=models.CASCADE, related_name="movements")
    amount = models.DecimalField(max_digits=14, decimal_places=2)


class Transfer(Aggregate):
    """A transfer between accounts, moved by ``tests.testapp.sagas.TransferSaga``."""

    id = models.UUIDField(primary_key=True)
    source_id = models.BigIntegerField()
    target_id = models.BigIntegerField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    fee = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    confirmed = models.BooleanField(default=False)

    @classmethod
    def request(
        cls, transfer_id: object, source_id: int, target_id: int, amount: Decimal, fee: Decimal
    ) -> Transfer:
        transfer = cls(
            id=transfer_id, source_id=source_id, target_id=target_id, amount=amount, fee=fee
        )
        transfer.record_event(
            TransferRequested(
                transfer_id=transfer.id,  # type: ignore[arg-type]
                source_id=source_id,
                target_id=target_id,
                amount=amount,
                fee=fee,
            )
        )
        return transfer

    def confirm(self) -> None:
        if self.confirmed:
            raise InvariantViolationError("the transfer is already confirmed")
        self.confirmed = True
        self.record_event(TransferConfirmed(transfer_id=self.id))  # type: ignore[arg-type]


class TransferRun(SagaInstance):
    """One ``TransferSaga`` instance per transfer."""

    transfer_id = models.UUIDField(null=True)
