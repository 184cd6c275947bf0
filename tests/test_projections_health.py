"""``/cqrs/health/``: 200 while every projection is healthy, 503 on lag or parked events."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_cqrs import command_bus
from django_cqrs.models import StoredEvent
from django_cqrs.projections.catchup import catch_up
from django_cqrs.serialization import to_json_dict
from tests.testapp import async_projections
from tests.testapp.async_projections import AccountMovementCountProjection, AccountTotalsProjection
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.events import Deposited

pytestmark = pytest.mark.django_db

TOTALS = AccountTotalsProjection.name
MOVEMENTS = AccountMovementCountProjection.name


@pytest.fixture(autouse=True)
def _clean_poison() -> Iterator[None]:
    async_projections.POISON.clear()
    yield
    async_projections.POISON.clear()


def health(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get(reverse("django_cqrs:health"))
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def deposits(count: int, *, recorded_at: dt.datetime | None = None) -> int:
    """Append ``count`` deposits to one account; return the account id."""
    if recorded_at is None:
        account = command_bus.dispatch(OpenAccount(owner="alice")).value
        for _ in range(count):
            command_bus.dispatch(Deposit(account_id=account, amount=Decimal("1")))
        return account
    # Old events, written straight to the log: their lag in seconds is known.
    account = 999_999
    StoredEvent.objects.bulk_create(
        StoredEvent(
            event_type=Deposited.event_type,
            aggregate_type="testapp.Account",
            aggregate_id=str(account),
            aggregate_version=100 + i,
            payload=to_json_dict(
                Deposited(account_id=account, amount=Decimal("1"), balance=Decimal(i + 1))
            ),
            recorded_at=recorded_at,
        )
        for i in range(count)
    )
    return account


def caught_up() -> None:
    for name in (TOTALS, MOVEMENTS, "orders.CustomerSummaryProjection"):
        catch_up(name)


def behind_the_head() -> None:
    """Catch up with one event: lag is head minus checkpoint, and on PostgreSQL positions
    go on from earlier tests, so an empty log would count those too."""
    deposits(0)
    caught_up()


def test_healthy_projections_answer_200_with_their_figures(client: Client) -> None:
    deposits(3)
    caught_up()

    status, body = health(client)

    assert status == 200
    assert body["status"] == "ok"
    assert body["healthy"] is True
    assert body["head"] == StoredEvent.objects.order_by("-position").first().position  # type: ignore[union-attr]
    totals = body["projections"][TOTALS]
    assert totals == {
        "mode": "async",
        "status": "live",
        "position": body["head"],
        "lag_events": 0,
        "lag_seconds": 0.0,
        "parked": 0,
        "rebuilding": False,
        "healthy": True,
        "problems": [],
    }
    assert body["projections"]["orders.OrderViewProjection"]["mode"] == "sync"


def test_a_small_lag_within_the_limits_is_healthy(client: Client) -> None:
    behind_the_head()
    deposits(2)  # 3 events behind, default limits: 1000 events, 300 s

    status, body = health(client)

    assert status == 200
    assert body["projections"][TOTALS]["lag_events"] == 3


def test_a_projection_over_the_event_lag_limit_answers_503(client: Client, settings: Any) -> None:
    settings.DJANGO_CQRS = {"HEALTH_MAX_LAG_EVENTS": 2}
    behind_the_head()
    deposits(2)

    status, body = health(client)

    assert status == 503
    assert body["status"] == "unhealthy"
    totals = body["projections"][TOTALS]
    assert totals["healthy"] is False
    assert totals["problems"] == ["lag of 3 events is over 2"]
    assert body["projections"]["orders.OrderViewProjection"]["healthy"] is True

    caught_up()
    assert health(client)[0] == 200


def test_a_projection_over_the_time_lag_limit_answers_503(client: Client, settings: Any) -> None:
    settings.DJANGO_CQRS = {"HEALTH_MAX_LAG_EVENTS": None, "HEALTH_MAX_LAG_SECONDS": 60}
    caught_up()
    deposits(2, recorded_at=timezone.now() - dt.timedelta(minutes=10))

    status, body = health(client)

    assert status == 503
    [problem] = body["projections"][TOTALS]["problems"]
    assert re.fullmatch(r"lag of 6\d\d\.\d s is over 60 s", problem)
    assert body["projections"][TOTALS]["lag_seconds"] >= 600

    settings.DJANGO_CQRS = {"HEALTH_MAX_LAG_EVENTS": None, "HEALTH_MAX_LAG_SECONDS": None}
    assert health(client)[0] == 200


def test_parked_events_answer_503_until_resolved(client: Client, settings: Any) -> None:
    settings.DJANGO_CQRS = {"RETRY_BACKOFF": 0}
    async_projections.POISON.add(Decimal("13"))
    account = command_bus.dispatch(OpenAccount(owner="alice")).value
    command_bus.dispatch(Deposit(account_id=account, amount=Decimal("13")))
    caught_up()

    status, body = health(client)

    assert status == 503
    totals = body["projections"][TOTALS]
    assert (totals["status"], totals["parked"]) == ("stopped", 1)
    assert totals["problems"] == ["1 parked event"]
    assert body["projections"][MOVEMENTS]["healthy"] is True  # the others keep going
    assert "poisoned" not in str(body)  # errors stay in the admin

    async_projections.POISON.clear()
    from django_cqrs.projections.catchup import retry

    retry(TOTALS)
    assert health(client)[0] == 200


def test_the_endpoint_is_public_uncached_and_read_only(client: Client) -> None:
    path = reverse("django_cqrs:health")
    assert path == "/cqrs/health/"

    response = client.get(path)
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    assert client.head(path).status_code == 200
    assert client.post(path).status_code == 405
