from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from django_cqrs import Command, Query


@dataclass(frozen=True)
class OpenAccount(Command[int]):
    owner: str


@dataclass(frozen=True)
class Deposit(Command[Decimal]):
    account_id: int
    amount: Decimal


@dataclass(frozen=True)
class Withdraw(Command[Decimal]):
    account_id: int
    amount: Decimal


@dataclass(frozen=True)
class GetBalance(Query[str]):
    account_id: int


@dataclass(frozen=True)
class RequestTransfer(Command[None]):
    """Starts a TransferSaga: withdraw from source, deposit to target, take the fee."""

    transfer_id: UUID
    source_id: int
    target_id: int
    amount: Decimal
    fee: Decimal = Decimal("0")


@dataclass(frozen=True)
class ConfirmTransfer(Command[None]):
    transfer_id: UUID
