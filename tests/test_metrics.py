"""Prometheus metrics, read as Prometheus reads them: by scraping the metrics view.

The demo's URLs (the test settings' ``ROOT_URLCONF``) serve it at ``/metrics``. The
counters live in prometheus_client's default registry, shared by every test of the
process, so each test compares the values after with the values before.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from django_cqrs import command_bus, metrics, query_bus
from django_cqrs.checks import check_settings
from django_cqrs.events import EventEnvelope
from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.projections import Projection, handles, unregister
from django_cqrs.projections.catchup import catch_up
from tests.testapp.async_projections import AccountTotalsProjection
from tests.testapp.commands import Deposit, GetBalance, OpenAccount, Withdraw
from tests.testapp.events import AccountOpened

TOTALS = AccountTotalsProjection.name
OPEN = OpenAccount.message_name()

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_trigger")]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 when there is none (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_commands_and_queries_are_counted_by_outcome_and_timed(client: Client) -> None:
    before = scrape(client)

    account = command_bus.dispatch(OpenAccount(owner="ada")).value
    command_bus.dispatch(OpenAccount(owner="bob"))
    with pytest.raises(InvariantViolationError):
        command_bus.dispatch(Withdraw(account_id=account, amount=Decimal("5")))
    query_bus.dispatch(GetBalance(account_id=account))

    after = scrape(client)
    withdraw, balance = Withdraw.message_name(), GetBalance.message_name()
    for name, labels, more in [
        ("cqrs_commands_total", {"command": OPEN, "outcome": "ok"}, 2),
        ("cqrs_commands_total", {"command": OPEN, "outcome": "error"}, 0),
        ("cqrs_commands_total", {"command": withdraw, "outcome": "error"}, 1),
        ("cqrs_command_duration_seconds_count", {"command": OPEN}, 2),
        ("cqrs_command_duration_seconds_count", {"command": withdraw}, 1),
        ("cqrs_queries_total", {"query": balance, "outcome": "ok"}, 1),
        ("cqrs_query_duration_seconds_count", {"query": balance}, 1),
    ]:
        assert value(after, name, **labels) - value(before, name, **labels) == more, name


def test_with_metrics_off_nothing_is_counted_and_the_view_is_not_found(
    client: Client, settings: Any
) -> None:
    before = scrape(client)
    settings.DJANGO_CQRS = {"METRICS": False, "TRIGGER_ON_COMMIT": False}

    command_bus.dispatch(OpenAccount(owner="ada"))
    response = client.get("/metrics")

    assert response.status_code == 404
    assert b"METRICS" in response.content
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False}
    after = scrape(client)
    labels = {"command": OPEN, "outcome": "ok"}
    assert value(after, "cqrs_commands_total", **labels) == value(
        before, "cqrs_commands_total", **labels
    )


def test_each_catch_up_batch_is_measured_in_events(client: Client) -> None:
    account = command_bus.dispatch(OpenAccount(owner="ada")).value
    command_bus.dispatch(Deposit(account_id=account, amount=Decimal("5")))
    before = scrape(client)

    catch_up(TOTALS)  # one batch of 2 events, then one that finds nothing (not measured)

    after = scrape(client)
    name = "cqrs_projection_batch_events"
    for suffix, more in (("_count", 1), ("_sum", 2)):
        grew = value(after, name + suffix, projection=TOTALS) - value(
            before, name + suffix, projection=TOTALS
        )
        assert grew == more
    assert value(after, name + "_bucket", projection=TOTALS, le="1.0") == value(
        before, name + "_bucket", projection=TOTALS, le="1.0"
    )


def test_lag_and_parked_events_are_read_at_each_scrape(client: Client) -> None:
    account = command_bus.dispatch(OpenAccount(owner="ada")).value
    command_bus.dispatch(Deposit(account_id=account, amount=Decimal("5")))

    behind = scrape(client)
    catch_up(TOTALS)
    caught_up = scrape(client)

    totals = {"projection": TOTALS, "kind": "projection"}
    assert value(behind, "cqrs_status_up") == 1
    assert value(behind, "cqrs_projection_lag_events", **totals) == 2
    assert value(behind, "cqrs_projection_lag_seconds", **totals) >= 0
    assert value(caught_up, "cqrs_projection_lag_events", **totals) == 0
    assert value(caught_up, "cqrs_parked_events", **totals) == 0
    sync = {"projection": "testapp.AccountViewProjection", "kind": "projection"}
    assert (("cqrs_projection_lag_events", frozenset(sync.items()))) in behind
    saga = {"projection": "testapp.TransferSaga", "kind": "saga"}
    assert ("cqrs_projection_lag_events", frozenset(saga.items())) in behind


@pytest.fixture
def relay() -> Iterator[type[Projection]]:
    """A consumer of kind "relay", as a relay named ``fake`` registers one."""

    class FakeRelay(Projection):
        name = "relays.fake"
        mode = "async"
        kind = "relay"

        @handles(AccountOpened)
        def opened(self, event: AccountOpened, envelope: EventEnvelope) -> None:
            pass

    yield FakeRelay
    unregister(FakeRelay)


def test_a_relay_lag_has_a_family_of_its_own(client: Client, relay: type[Projection]) -> None:
    command_bus.dispatch(OpenAccount(owner="ada"))

    samples = scrape(client)

    assert value(samples, "cqrs_relay_lag_events", relay="fake") == 1
    assert value(samples, "cqrs_projection_lag_events", projection=relay.name, kind="relay") == 1
    relays = {dict(labels)["relay"] for name, labels in samples if name == "cqrs_relay_lag_events"}
    assert relays == {"fake"}  # projections and sagas are not relays


def test_the_relays_count_what_they_publish_and_time_their_batches(client: Client) -> None:
    before = scrape(client)

    metrics.relay_published("fake", 3)
    metrics.relay_published("fake", 2)
    metrics.observe_relay_batch("fake", 5, 0.25)

    after = scrape(client)
    for name, more in [
        ("cqrs_relay_published_total", 5),
        ("cqrs_relay_publish_seconds_count", 1),
        ("cqrs_relay_publish_seconds_sum", 0.25),
        ("cqrs_relay_batch_events_sum", 5),
    ]:
        assert value(after, name, relay="fake") - value(before, name, relay="fake") == more


def test_a_status_that_cannot_be_read_says_so_and_the_rest_is_served(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[Any]:
        raise RuntimeError("database down")

    monkeypatch.setattr("django_cqrs.views.projection_status", broken)

    samples = scrape(client)

    assert value(samples, "cqrs_status_up") == 0
    assert not any(name == "cqrs_projection_lag_events" for name, _ in samples)


def test_metrics_access_permission_lets_in_only_users_with_the_permission(
    client: Client, admin_client: Client, settings: Any
) -> None:
    settings.DJANGO_CQRS = {"METRICS_ACCESS": "permission", "TRIGGER_ON_COMMIT": False}

    denied = client.get("/metrics")

    assert denied.status_code == 403
    assert b"django_cqrs.view_projectionstate" in denied.content
    assert admin_client.get("/metrics").status_code == 200


def test_without_prometheus_client_the_view_says_what_to_install(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "AVAILABLE", False)

    response = client.get("/metrics")

    assert response.status_code == 501
    assert b"pip install 'django-cqrs-toolkit[prometheus]'" in response.content
    assert not metrics.enabled()


@pytest.mark.parametrize(
    ("key", "wrong"),
    [("TRACING", "yes"), ("METRICS", 1), ("METRICS_ACCESS", "open"), ("METRICS_ACCESS", None)],
)
def test_the_checks_refuse_a_wrong_telemetry_setting(settings: Any, key: str, wrong: Any) -> None:
    settings.DJANGO_CQRS = {key: wrong}

    errors = [message for message in check_settings() if message.id == "django_cqrs.E003"]

    assert [key in error.msg for error in errors] == [True]
