"""``/cqrs/health/``: 200 while every projection is healthy, 503 on lag or parked events."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_cqrs import command_bus
from django_cqrs.models import ProjectionState, StoredEvent
from django_cqrs.projections.catchup import catch_up, run_batch, set_paused
from django_cqrs.projections.checkpoints import ensure_state
from django_cqrs.serialization import to_json_dict
from tests.testapp import async_projections
from tests.testapp.async_projections import AccountMovementCountProjection, AccountTotalsProjection
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.events import Deposited

#: PostgreSQL's horizon is the whole cluster's: a long transaction in another test
#: database holds these lags up. Under ``pytest -n 2 --dist loadgroup`` (.ci/run) the
#: tests that hold long transactions run in this group, on the same worker, not beside.
pytestmark = [pytest.mark.django_db, pytest.mark.xdist_group("horizon")]

TOTALS = AccountTotalsProjection.name
MOVEMENTS = AccountMovementCountProjection.name


@pytest.fixture(autouse=True)
def _clean_poison() -> Iterator[None]:
    async_projections.POISON.clear()
    yield
    async_projections.POISON.clear()


def health(client: Client, *, as_user: str | None = "viewer") -> tuple[int, dict[str, Any]]:
    """The endpoint's answer to a user with the view permission (``as_user=None``:
    anonymous; a client logged in already, such as ``admin_client``, stays who it is)."""
    if as_user is not None and "_auth_user_id" not in client.session:
        client.force_login(viewer(as_user))
    response = client.get(reverse("django_cqrs:health"))
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def viewer(username: str, *, permitted: bool = True) -> Any:
    """A user with (or without) the permission that shows the health figures."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    if permitted:
        user.user_permissions.add(
            Permission.objects.get(
                codename="view_projectionstate", content_type__app_label="django_cqrs"
            )
        )
    return user


# -- who sees the figures ------------------------------------------------------------------


def test_anonymous_callers_get_the_verdict_only(client: Client) -> None:
    deposits(1)
    caught_up()

    status, body = health(client, as_user=None)

    assert status == 200
    assert body == {"status": "ok", "healthy": True}


def test_anonymous_callers_get_503_without_the_reasons(client: Client, settings: Any) -> None:
    settings.DJANGO_CQRS = {"HEALTH_MAX_LAG_EVENTS": 2}
    behind_the_head()
    deposits(3)

    status, body = health(client, as_user=None)

    assert status == 503
    assert body == {"status": "unhealthy", "healthy": False}


def test_a_user_without_the_permission_gets_the_verdict_only(client: Client) -> None:
    client.force_login(viewer("nobody", permitted=False))

    response = client.get(reverse("django_cqrs:health"))

    assert set(response.json()) == {"status", "healthy"}


def test_a_user_with_the_permission_gets_the_figures(client: Client) -> None:
    deposits(1)
    caught_up()

    status, body = health(client)

    assert status == 200
    assert {"head", "horizon", "projections"} <= set(body)
    assert TOTALS in body["projections"]


def test_health_details_public_shows_the_figures_to_everyone(client: Client, settings: Any) -> None:
    settings.DJANGO_CQRS = {"HEALTH_DETAILS": "public"}

    status, body = health(client, as_user=None)

    assert status == 200
    assert TOTALS in body["projections"]


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
    """Catch every async consumer up: the projections and the test app's saga."""
    names = (
        TOTALS,
        MOVEMENTS,
        "orders.CustomerSummaryProjection",
        "orders.CheckoutSaga",
        "testapp.TransferSaga",
    )
    for name in names:
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
        "activity": "live",
        "no_progress_seconds": 0.0,
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
    assert (totals["status"], totals["parked"], totals["activity"]) == ("stopped", 1, "failing")
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


# -- what each projection is doing: live, catching up, stalled, paused, failing, rebuilding


SUMMARY = "orders.CustomerSummaryProjection"
ORDER_VIEW = "orders.OrderViewProjection"
NO_LAG_LIMITS = {"HEALTH_MAX_LAG_EVENTS": None, "HEALTH_MAX_LAG_SECONDS": None}


def old_events(count: int, ago: dt.timedelta) -> None:
    """Append ``count`` deposits to a new account, recorded ``ago`` (time control: the
    log's ``recorded_at`` is what the stall clock reads, so no test sleeps)."""
    account = 500_000 + StoredEvent.objects.count()
    StoredEvent.objects.bulk_create(
        StoredEvent(
            event_type=Deposited.event_type,
            aggregate_type="testapp.Account",
            aggregate_id=str(account),
            aggregate_version=i + 1,
            payload=to_json_dict(
                Deposited(account_id=account, amount=Decimal("1"), balance=Decimal(i + 1))
            ),
            recorded_at=timezone.now() - ago,
        )
        for i in range(count)
    )


def last_changed(name: str, ago: dt.timedelta) -> None:
    """The projection's state row last changed (its checkpoint last moved) ``ago``."""
    ensure_state(name)
    ProjectionState.objects.filter(name=name).update(updated_at=timezone.now() - ago)


def activity_everywhere(admin_client: Client, name: str) -> dict[str, str]:
    """The activity of ``name`` as /cqrs/health/, cqrs_status (JSON and text) and the
    dashboard show it."""
    as_json = StringIO()
    call_command("cqrs_status", "--json", stdout=as_json)
    [row] = [r for r in json.loads(as_json.getvalue()) if r["name"] == name]
    text = StringIO()
    call_command("cqrs_status", stdout=text)
    header, *lines = text.getvalue().splitlines()
    columns = re.split(r"\s{2,}", header)
    [line] = [re.split(r"\s{2,}", line) for line in lines if line.startswith(name + " ")]
    page = admin_client.get(reverse("admin:django_cqrs_projectionstate_changelist"))
    [cell] = re.findall(
        rf'data-projection="{re.escape(name)}">.*?data-field="activity" data-value="([^"]*)"',
        page.content.decode(),
        re.S,
    )
    return {
        "health": health(admin_client)[1]["projections"][name]["activity"],
        "cqrs_status --json": row["activity"],
        "cqrs_status": line[columns.index("activity")].split(" (")[0],
        "dashboard": cell,
    }


def everywhere(value: str) -> dict[str, str]:
    return dict.fromkeys(("health", "cqrs_status --json", "cqrs_status", "dashboard"), value)


def test_a_paused_projection_with_lag_is_degraded_unless_the_settings_say_otherwise(
    client: Client, admin_client: Client, settings: Any
) -> None:
    behind_the_head()
    set_paused(TOTALS, True)
    deposits(2)  # 3 events behind: within the lag limits

    status, body = health(client)

    assert status == 503
    totals = body["projections"][TOTALS]
    assert (totals["status"], totals["activity"]) == ("paused", "paused")
    assert totals["problems"] == ["paused, 3 events behind"]
    assert body["projections"][MOVEMENTS]["activity"] == "catching up"  # as far behind
    assert body["projections"][MOVEMENTS]["healthy"] is True
    assert activity_everywhere(admin_client, TOTALS) == everywhere("paused")
    page = admin_client.get(reverse("admin:django_cqrs_projectionstate_changelist"))
    assert 'id="cqrs-health">unhealthy' in page.content.decode()
    assert "paused, 3 events behind" in page.content.decode()

    # An operator who pauses on purpose keeps the health check green; it still says so.
    settings.DJANGO_CQRS = {"HEALTH_DEGRADED_ACTIVITIES": ["stalled"]}
    status, body = health(client)
    assert status == 200
    assert body["projections"][TOTALS]["activity"] == "paused"


def test_a_projection_behind_with_no_progress_for_stall_seconds_is_stalled(
    client: Client, admin_client: Client, settings: Any
) -> None:
    settings.DJANGO_CQRS = {**NO_LAG_LIMITS, "STALL_SECONDS": 60}
    caught_up()
    for name in (TOTALS, ORDER_VIEW):
        last_changed(name, dt.timedelta(minutes=10))
    # Pending for five minutes, and the checkpoint has not moved since ten.
    old_events(2, dt.timedelta(minutes=5))

    status, body = health(client)

    assert status == 503
    totals = body["projections"][TOTALS]
    assert totals["activity"] == "stalled"
    assert 300 <= totals["no_progress_seconds"] < 330
    [problem] = totals["problems"]
    assert re.fullmatch(r"stalled: no progress for 3[0-2]\d\.\d s, 2 events behind", problem)
    assert activity_everywhere(admin_client, TOTALS) == everywhere("stalled")
    # Sync projections are live by construction, however old their state row.
    assert body["projections"][ORDER_VIEW]["activity"] == "live"
    # MOVEMENTS moved a moment ago (caught_up above): catching up, not stalled.
    assert body["projections"][MOVEMENTS]["activity"] == "catching up"

    catch_up(TOTALS)
    status, body = health(client)
    assert status == 200
    assert (body["projections"][TOTALS]["activity"], body["projections"][TOTALS]["lag_events"]) == (
        "live",
        0,
    )


def test_a_projection_catching_up_slowly_is_catching_up_until_a_batch_takes_too_long(
    client: Client, admin_client: Client, settings: Any
) -> None:
    settings.DJANGO_CQRS = {**NO_LAG_LIMITS, "STALL_SECONDS": 60}
    caught_up()
    old_events(5, dt.timedelta(hours=1))  # an hour-old backlog
    run_batch(AccountTotalsProjection, batch_size=2)  # one batch: the checkpoint moves
    last_changed(TOTALS, dt.timedelta(seconds=30))  # ... 30 s ago: slow, but moving

    status, body = health(client)

    totals = body["projections"][TOTALS]
    assert status == 200
    assert (totals["activity"], totals["lag_events"]) == ("catching up", 3)
    assert totals["lag_seconds"] >= 3600  # the oldest pending event is an hour old
    assert 30 <= totals["no_progress_seconds"] < 60
    assert activity_everywhere(admin_client, TOTALS) == everywhere("catching up")

    last_changed(TOTALS, dt.timedelta(seconds=90))  # the next batch is overdue
    status, body = health(client)
    assert status == 503
    assert body["projections"][TOTALS]["activity"] == "stalled"


def test_a_projection_idle_for_an_hour_that_just_got_events_is_catching_up(
    client: Client, settings: Any
) -> None:
    settings.DJANGO_CQRS = {"STALL_SECONDS": 60}
    caught_up()
    for name in (TOTALS, MOVEMENTS, SUMMARY):
        last_changed(name, dt.timedelta(hours=1))  # nothing to do for an hour
    deposits(2)  # and now new events, not applied yet

    status, body = health(client)

    assert status == 200
    totals = body["projections"][TOTALS]
    assert (totals["activity"], totals["lag_events"]) == ("catching up", 3)
    assert totals["no_progress_seconds"] < 30  # since the events came, not since the hour
    assert totals["problems"] == []


def test_a_projection_retrying_a_failed_event_is_failing(
    client: Client, admin_client: Client, settings: Any
) -> None:
    settings.DJANGO_CQRS = {"RETRY_BACKOFF": 60}
    async_projections.POISON.add(Decimal("13"))
    account = command_bus.dispatch(OpenAccount(owner="alice")).value
    poison = command_bus.dispatch(Deposit(account_id=account, amount=Decimal("13"))).position
    caught_up()  # the deposit fails; its retry is due in 60 s

    status, body = health(client)

    totals = body["projections"][TOTALS]
    assert (totals["status"], totals["activity"], totals["parked"]) == ("live", "failing", 0)
    # A retry usually succeeds, and when it does not the event is parked (unhealthy): a
    # failing projection is reported, and counts only when the settings say so.
    assert status == 200
    assert activity_everywhere(admin_client, TOTALS) == everywhere("failing")

    settings.DJANGO_CQRS = {"RETRY_BACKOFF": 60, "HEALTH_DEGRADED_ACTIVITIES": ["failing"]}
    status, body = health(client)
    assert status == 503
    assert body["projections"][TOTALS]["problems"] == [f"failing on the event at position {poison}"]


def test_a_stopped_projection_is_failing_and_unhealthy_whatever_the_settings(
    client: Client, admin_client: Client, settings: Any
) -> None:
    settings.DJANGO_CQRS = {"RETRY_BACKOFF": 0, "HEALTH_DEGRADED_ACTIVITIES": []}
    async_projections.POISON.add(Decimal("13"))
    account = command_bus.dispatch(OpenAccount(owner="alice")).value
    command_bus.dispatch(Deposit(account_id=account, amount=Decimal("13")))
    caught_up()

    status, body = health(client)

    assert status == 503
    totals = body["projections"][TOTALS]
    assert (totals["status"], totals["activity"]) == ("stopped", "failing")
    assert totals["problems"] == ["1 parked event"]
    assert activity_everywhere(admin_client, TOTALS) == everywhere("failing")


def test_a_rebuild_in_progress_is_rebuilding(
    client: Client, admin_client: Client, settings: Any
) -> None:
    caught_up()
    for name in (TOTALS, ORDER_VIEW):  # an async and a sync projection, each mid-rebuild
        ensure_state(name)
        ProjectionState.objects.filter(name=name).update(
            rebuild_position=0, rebuild_transaction_id=0, rebuild_started_at=timezone.now()
        )

    status, body = health(client)

    assert status == 200  # the live tables keep serving and keep being updated
    for name in (TOTALS, ORDER_VIEW):
        row = body["projections"][name]
        assert (row["status"], row["rebuilding"], row["activity"]) == ("live", True, "rebuilding")
        assert activity_everywhere(admin_client, name) == everywhere("rebuilding")

    settings.DJANGO_CQRS = {"HEALTH_DEGRADED_ACTIVITIES": ["rebuilding"]}
    status, body = health(client)
    assert status == 503
    assert body["projections"][ORDER_VIEW]["problems"] == ["rebuilding"]


def test_stall_seconds_none_never_reports_a_stall(client: Client, settings: Any) -> None:
    settings.DJANGO_CQRS = {**NO_LAG_LIMITS, "STALL_SECONDS": None}
    caught_up()
    last_changed(TOTALS, dt.timedelta(days=1))
    old_events(2, dt.timedelta(days=1))

    status, body = health(client)

    assert status == 200
    assert body["projections"][TOTALS]["activity"] == "catching up"
    assert body["projections"][TOTALS]["no_progress_seconds"] >= 86_400
