"""Events of the test domain: bank accounts."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from django_cqrs import Event


@dataclass(frozen=True)
class AccountOpened(Event, name="testapp.AccountOpened"):
    account_id: int
    owner: str


@dataclass(frozen=True)
class Deposited(Event, name="testapp.Deposited"):
    account_id: int
    amount: Decimal
    balance: Decimal


@dataclass(frozen=True)
class Withdrawn(Event, name="testapp.Withdrawn"):
    account_id: int
    amount: Decimal
    balance: Decimal


@dataclass(frozen=True)
class TransferRequested(Event, name="testapp.TransferRequested"):
    transfer_id: UUID
    source_id: int
    target_id: int
    amount: Decimal
    fee: Decimal


@dataclass(frozen=True)
class TransferConfirmed(Event, name="testapp.TransferConfirmed"):
    transfer_id: UUID
