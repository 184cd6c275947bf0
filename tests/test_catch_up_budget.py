"""A catch-up task fits its worker: it stops after its time budget and queues the next one.

The budget is a share of the cluster's ``timeout`` (or ``retry``), or
``CATCHUP_TIME_BUDGET``; here tasks run in this process and ``tasks.enqueue`` only
records what would be queued (the real cluster: ``tests/test_async_workers.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from django_cqrs import tasks
from django_cqrs.models import ProjectionState, ProjectionTrigger
from django_cqrs.projections import ASYNC, all_projections
from tests.test_projections_catchup import (
    TOTALS,
    assert_every_event_counted_once,
    assert_matches_rebuild,
    bulk_events,
    head,
    state,
)
from tests.testapp.async_projections import AccountTotalsProjection

pytestmark = pytest.mark.django_db

CLUSTER = {"name": "budget", "orm": "default", "sync": False, "timeout": 60, "retry": 90}


@pytest.mark.parametrize(
    ("cluster", "budget", "expected"),
    [
        pytest.param(CLUSTER, None, 30.0, id="half the timeout"),
        pytest.param({**CLUSTER, "timeout": None}, None, 45.0, id="half the retry"),
        pytest.param({**CLUSTER, "retry": 40}, None, 20.0, id="retry below the timeout"),
        pytest.param({"orm": "default", "timeout": 200}, None, 30.0, id="default retry"),
        pytest.param(CLUSTER, 5, 5.0, id="set"),
        pytest.param({**CLUSTER, "sync": True}, 5, None, id="sync: nothing kills it"),
    ],
)
def test_the_budget_is_a_share_of_the_clusters_limits(
    settings: Any, cluster: dict[str, Any], budget: float | None, expected: float | None
) -> None:
    settings.Q_CLUSTER = cluster
    settings.DJANGO_CQRS = {"CATCHUP_TIME_BUDGET": budget}

    assert tasks.catch_up_budget() == expected


@pytest.fixture
def queued(settings: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A cluster that kills tasks; a budget spent after one batch of 100; enqueue recorded."""
    settings.Q_CLUSTER = CLUSTER
    settings.DJANGO_CQRS = {
        "TRIGGER_ON_COMMIT": False,
        "CATCHUP_BATCH_SIZE": 100,
        "CATCHUP_TIME_BUDGET": 0.000_001,
    }
    names: list[str] = []
    monkeypatch.setattr(tasks, "enqueue", names.append)
    return names


def test_a_catch_up_task_stops_after_its_budget_and_queues_the_next(queued: list[str]) -> None:
    bulk_events(350, accounts=5)

    assert tasks.catch_up_task(TOTALS) == 100  # one batch, then the budget is spent

    assert queued == [TOTALS]
    assert ProjectionTrigger.objects.get(name=TOTALS).queued_at is not None
    reads = [100]
    while queued:  # the worker runs each queued task in turn
        queued.pop()
        reads.append(tasks.catch_up_task(TOTALS))
    assert max(reads) == 100
    assert sum(reads) == 350
    assert state(TOTALS).position == head()
    assert_every_event_counted_once()
    assert_matches_rebuild(AccountTotalsProjection)


def test_a_task_queued_meanwhile_is_not_queued_twice(
    queued: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk_events(250, accounts=5)
    real = tasks.run_catch_up

    def run_while_a_command_queues(name: str, **kwargs: Any) -> Any:
        tasks.request_catch_up(name)  # a command's trigger, while the task runs
        return real(name, **kwargs)

    monkeypatch.setattr(tasks, "run_catch_up", run_while_a_command_queues)

    assert tasks.catch_up_task(TOTALS) == 100

    assert queued == [TOTALS]  # the command's task only: it goes on where this one stopped


def test_the_periodic_task_shares_one_budget_and_queues_what_it_leaves(queued: list[str]) -> None:
    bulk_events(350, accounts=5)

    tasks.catch_up_all()

    names = [cls.name for cls in all_projections() if cls.mode == ASYNC]
    assert sorted(queued) == sorted(names)  # the first after its batch, the others at once
    moved = ProjectionState.objects.filter(name__in=names, position__gt=0)
    assert moved.count() == 1
