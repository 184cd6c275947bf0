from __future__ import annotations

from decimal import Decimal

from django_cqrs import command_handler, query_handler

from .commands import ConfirmTransfer, Deposit, GetBalance, OpenAccount, RequestTransfer, Withdraw
from .models import Account, AccountView, Transfer


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


@command_handler(RequestTransfer)
def request_transfer(command: RequestTransfer) -> None:
    Transfer.request(
        command.transfer_id, command.source_id, command.target_id, command.amount, command.fee
    ).save()


@command_handler(ConfirmTransfer)
def confirm_transfer(command: ConfirmTransfer) -> None:
    transfer = Transfer.load(command.transfer_id)
    transfer.confirm()
    transfer.save()
