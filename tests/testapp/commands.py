from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

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
