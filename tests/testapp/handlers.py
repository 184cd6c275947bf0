from __future__ import annotations

from decimal import Decimal

from django_cqrs import command_handler, query_handler

from .commands import Deposit, GetBalance, OpenAccount, Withdraw
from .models import Account, AccountView


@command_handler(OpenAccount)
def open_account(command: OpenAccount) -> int:
    return Account.open(command.owner).pk


@command_handler(Deposit)
def deposit(command: Deposit) -> Decimal:
    account = Account.objects.get(pk=command.account_id)
    account.deposit(command.amount)
    account.save()
    return account.balance


@command_handler(Withdraw)
def withdraw(command: Withdraw) -> Decimal:
    account = Account.objects.get(pk=command.account_id)
    account.withdraw(command.amount)
    account.save()
    return account.balance


@query_handler(GetBalance)
def get_balance(query: GetBalance) -> str:
    return AccountView.objects.get(pk=query.account_id).balance
