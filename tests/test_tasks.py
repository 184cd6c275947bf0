"""The django-q2 adapter: tasks schedule the retries the catch-up engine asks for."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django_q.models import Schedule

from django_cqrs import command_bus, tasks
from django_cqrs.models import ProjectionState
from django_cqrs.projections.catchup import run_catch_up
from tests.testapp import async_projections
from tests.testapp.async_projections import AccountTotalsProjection
from tests.testapp.commands import Deposit, OpenAccount

TOTALS = AccountTotalsProjection.name

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def poisoned(settings: Any) -> Iterator[int]:
    """A deposit of 13 fails in AccountTotalsProjection; commands queue no catch-up."""
    settings.DJANGO_CQRS = {"RETRY_BACKOFF": 60, "TRIGGER_ON_COMMIT": False}
    async_projections.POISON.add(Decimal("13"))
    account = command_bus.dispatch(OpenAccount(owner="ada")).value
    yield command_bus.dispatch(Deposit(account_id=account, amount=Decimal("13"))).position
    async_projections.POISON.clear()


def retries() -> list[tuple[str, str, Any]]:
    return list(
        Schedule.objects.filter(func=tasks.CATCH_UP_TASK).values_list("args", "name", "next_run")
    )


def test_the_catch_up_engine_says_when_to_retry_and_schedules_nothing(poisoned: int) -> None:
    outcome = run_catch_up(TOTALS)

    state = ProjectionState.objects.get(name=TOTALS)
    assert (state.failing_position, state.attempts) == (poisoned, 1)
    assert outcome.retry_at == state.next_retry_at
    assert outcome.retry_at is not None
    assert retries() == []  # no task queue below the tasks module


def test_the_catch_up_task_schedules_the_retry_at_the_backoff(poisoned: int) -> None:
    tasks.catch_up_task(TOTALS)

    state = ProjectionState.objects.get(name=TOTALS)
    assert state.position == poisoned - 1  # AccountOpened applied, the deposit failed
    [(args, _name, next_run)] = retries()
    assert args == repr(TOTALS)
    assert next_run == state.next_retry_at


def test_a_catch_up_with_nothing_failing_schedules_no_retry() -> None:
    async_projections.POISON.clear()

    assert tasks.catch_up_task(TOTALS) == 2
    assert retries() == []


def test_the_management_commands_schedule_the_retry_too(poisoned: int) -> None:
    call_command("cqrs_catchup", TOTALS, stdout=io.StringIO())

    state = ProjectionState.objects.get(name=TOTALS)
    assert [next_run for _, _, next_run in retries()] == [state.next_retry_at]


def test_the_schedule_waits_for_django_q_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    # `migrate django_cqrs` on a new database runs post_migrate before django_q's tables
    # exist; it used to fail with "no such table: django_q_schedule".
    Schedule.objects.all().delete()
    monkeypatch.setattr(connection.introspection, "table_names", lambda cursor=None: [])

    tasks.ensure_schedule(using="default")

    monkeypatch.undo()
    assert not Schedule.objects.filter(name=tasks.SCHEDULE_NAME).exists()
    tasks.ensure_schedule(using="default")
    assert Schedule.objects.filter(name=tasks.SCHEDULE_NAME).exists()
