from decimal import Decimal

import pytest

from django_cqrs import command_bus, query_bus
from django_cqrs.models import StoredEvent
from tests.testapp.commands import Deposit, GetBalance, OpenAccount, Withdraw
from tests.testapp.models import Account, AccountView
from django_cqrs.exceptions import InvariantViolationError, QueryWriteError
from django_cqrs.rebuild import rebuild

pytestmark = pytest.mark.django_db(transaction=True)


def test_flow():
    r = command_bus.dispatch(OpenAccount(owner="ann"))
    assert r.position == 1
    r2 = command_bus.dispatch(Deposit(account_id=r.value, amount=Decimal("10.50")))
    assert r2.value == Decimal("10.50")
    assert r2.position == 2
    assert query_bus.dispatch(GetBalance(account_id=r.value)) == "10.50"
    with pytest.raises(InvariantViolationError):
        command_bus.dispatch(Withdraw(account_id=r.value, amount=Decimal("100")))
    assert StoredEvent.objects.count() == 2
    assert Account.objects.get().version == 3
    ev = StoredEvent.objects.last()
    print(ev.metadata, ev.payload)
    assert rebuild("testapp.AccountViewProjection") == 2
    assert AccountView.objects.get().balance == "10.50"
