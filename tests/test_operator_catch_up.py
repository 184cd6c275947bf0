"""Resume, retry and skip catch the projection up at once: a task is queued for the workers.

The admin's actions and the management commands call ``tasks.catch_up_now`` once the
state has changed, so a resumed projection does not wait for the periodic schedule (the
task runs after the caller's transaction commits). ``tasks.enqueue`` is replaced by a
recorder here; ``tests/test_async_workers.py`` resumes a projection under a real cluster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from django_cqrs import command_bus, tasks
from django_cqrs.models import ProjectionState, ProjectionTrigger
from django_cqrs.projections.catchup import catch_up, set_paused
from tests.test_admin import action_url, staff
from tests.testapp import async_projections
from tests.testapp.async_projections import AccountTotalsProjection
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.models import AccountTotals

pytestmark = pytest.mark.django_db

TOTALS = AccountTotalsProjection.name


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the catch-up tasks queued (recorded, not run)."""
    names: list[str] = []
    monkeypatch.setattr(tasks, "enqueue", names.append)
    return names


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """Run the block's on-commit callbacks at its end, as the commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def operator(django_user_model: Any) -> Client:
    return staff(
        django_user_model,
        "operator",
        "django_cqrs.view_projectionstate",
        "django_cqrs.operate_projection",
    )


@pytest.fixture
def account(settings: Any) -> int:
    """An account with two deposits; commands queue nothing themselves."""
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    account = command_bus.dispatch(OpenAccount(owner="ada")).value
    for amount in ("10", "20"):
        command_bus.dispatch(Deposit(account_id=account, amount=Decimal(amount)))
    return int(account)


@pytest.fixture
def paused(account: int) -> int:
    """AccountTotalsProjection paused, three events behind."""
    set_paused(TOTALS, True)
    return account


@pytest.fixture
def stopped(account: int) -> Iterator[int]:
    """AccountTotalsProjection stopped on a parked deposit of 13 (the cause now fixed);
    returns the poisoned position."""
    async_projections.POISON.add(Decimal("13"))
    poison = command_bus.dispatch(Deposit(account_id=account, amount=Decimal("13"))).position
    catch_up(TOTALS)
    assert ProjectionState.objects.get(name=TOTALS).state == "stopped"
    async_projections.POISON.clear()
    yield poison
    async_projections.POISON.clear()


def lost_task_flag() -> None:
    """The trigger flag says a task is queued, but that task was lost with its worker."""
    ProjectionTrigger.objects.update_or_create(
        name=TOTALS, defaults={"queued_at": timezone.now() - dt.timedelta(hours=1)}
    )


def test_resume_in_the_admin_queues_a_catch_up_and_answers_at_once(
    operator: Client, paused: int, queued: list[str], committed: Callable[..., Any]
) -> None:
    lost_task_flag()

    with committed():
        response = operator.post(action_url(TOTALS, "resume"), follow=True)

    assert ProjectionState.objects.get(name=TOTALS).state == "live"
    assert queued == [TOTALS]
    # The request changed the state and left the backlog to the workers.
    assert not AccountTotals.objects.exists()
    assert any("a catch-up is queued" in str(m) for m in response.context["messages"])


def test_cqrs_pause_resume_queues_a_catch_up(
    paused: int, queued: list[str], committed: Callable[..., Any]
) -> None:
    lost_task_flag()
    out = StringIO()

    with committed():
        call_command("cqrs_pause", TOTALS, "--resume", stdout=out)

    assert queued == [TOTALS]
    assert f"{TOTALS} resumed: a catch-up is queued." in out.getvalue()
    # Pausing queues nothing.
    with committed():
        call_command("cqrs_pause", TOTALS, stdout=StringIO())
    assert queued == [TOTALS]


def test_nothing_is_queued_before_the_resume_commits(
    paused: int, queued: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("cqrs_pause", TOTALS, "--resume", stdout=StringIO())
        assert queued == []  # a worker must not find the projection still paused

    assert len(callbacks) == 1
    callbacks[0]()
    assert queued == [TOTALS]


@pytest.mark.parametrize("action", ["retry", "skip"])
def test_retry_and_skip_in_the_admin_queue_a_catch_up(
    action: str, operator: Client, stopped: int, queued: list[str], committed: Callable[..., Any]
) -> None:
    with committed():
        operator.post(action_url(TOTALS, action), {"position": str(stopped)})

    assert ProjectionState.objects.get(name=TOTALS).state == "live"
    assert queued == [TOTALS]


@pytest.mark.parametrize("command", ["cqrs_retry", "cqrs_skip"])
def test_cqrs_retry_and_cqrs_skip_queue_a_catch_up(
    command: str, stopped: int, queued: list[str], committed: Callable[..., Any]
) -> None:
    args = [TOTALS, str(stopped)] if command == "cqrs_skip" else [TOTALS]

    with committed():
        call_command(command, *args, stdout=StringIO())

    assert ProjectionState.objects.get(name=TOTALS).state == "live"
    assert queued == [TOTALS]


def test_a_broker_that_cannot_be_reached_does_not_fail_the_resume(
    paused: int, monkeypatch: pytest.MonkeyPatch, committed: Callable[..., Any]
) -> None:
    def down(name: str) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks, "enqueue", down)
    out = StringIO()

    with committed():
        call_command("cqrs_pause", TOTALS, "--resume", stdout=out)

    assert ProjectionState.objects.get(name=TOTALS).state == "live"
    # The flag is down again: the next command or the schedule queues a catch-up.
    assert ProjectionTrigger.objects.get(name=TOTALS).queued_at is None


def test_with_a_synchronous_cluster_the_resume_catches_up(
    paused: int, settings: Any, committed: Callable[..., Any]
) -> None:
    # tests/settings.py runs django-q2 tasks synchronously: the queued task runs at commit.
    with committed():
        call_command("cqrs_pause", TOTALS, "--resume", stdout=StringIO())

    totals = AccountTotals.objects.get(pk=paused)
    assert (totals.deposits, totals.deposited) == (2, Decimal("30"))
