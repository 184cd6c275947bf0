"""Relays against an in-memory broker: what is sent, when the checkpoint moves, failures,
parking, pause and replay, status, health and checks (real brokers: test_relays_brokers)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from cloudevents.conversion import from_json
from cloudevents.http import CloudEvent
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from django_cqrs import command_bus
from django_cqrs.checks import check_relays
from django_cqrs.models import ParkedEvent, ProjectionState, StoredEvent
from django_cqrs.projections.catchup import catch_up, run_catch_up, set_paused
from django_cqrs.projections.health import health_report
from django_cqrs.projections.status import projection_status
from django_cqrs.relays import all_relays, get_relay
from tests import test_telemetry
from tests.relay_fakes import MemoryPublisher
from tests.testapp.commands import Deposit, OpenAccount

pytestmark = pytest.mark.django_db(transaction=True)

# The in-memory span exporter of test_telemetry.
recorder = test_telemetry.recorder
spans = test_telemetry.spans

MEMORY = "tests.relay_fakes.MemoryPublisher"
NAME = "relays.feed"


def relay_settings(**options: Any) -> dict[str, Any]:
    return {
        "TRIGGER_ON_COMMIT": False,
        "EVENT_SOURCE": "/bank",
        "RELAYS": {"feed": {"BACKEND": MEMORY, "EVENTS": ["testapp.*"], **options}},
    }


@pytest.fixture
def relay() -> Iterator[None]:
    MemoryPublisher.reset()
    with override_settings(DJANGO_CQRS=relay_settings()):
        yield
    MemoryPublisher.reset()


def accounts(count: int = 2, deposits: int = 3) -> list[int]:
    ids = []
    for i in range(count):
        account = command_bus.dispatch(OpenAccount(owner=f"owner {i}")).value
        ids.append(account)
        for n in range(deposits):
            command_bus.dispatch(Deposit(account_id=account, amount=Decimal(n + 1)))
    return ids


def checkpoint() -> int:
    return ProjectionState.objects.get(name=NAME).position


def positions() -> list[int]:
    return list(StoredEvent.objects.order_by("position").values_list("position", flat=True))


def head() -> int:
    return StoredEvent.objects.order_by("-position").values_list("position", flat=True).first() or 0


def test_a_relay_is_an_async_projection_named_after_its_setting(relay: None) -> None:
    cls = get_relay("feed")
    assert cls.name == NAME
    assert cls.mode == "async"
    assert get_relay(NAME) is cls
    assert [r.relay_name for r in all_relays()] == ["feed"]


def test_every_event_is_published_as_a_valid_cloudevent(relay: None) -> None:
    ids = accounts(1, deposits=2)
    assert catch_up(NAME) == 3
    events = [from_json(CloudEvent, m.body) for m in MemoryPublisher.sent]
    rows = list(StoredEvent.objects.order_by("position"))
    assert [e["id"] for e in events] == [
        f"testapp.Account/{r.aggregate_id}/{r.aggregate_version}" for r in rows
    ]
    first = events[0]
    assert first["specversion"] == "1.0"
    assert first["source"] == "/bank"
    assert first["type"] == "testapp.AccountOpened"
    assert first["subject"] == f"testapp.Account/{ids[0]}"
    assert first["datacontenttype"] == "application/json"
    assert first.data == rows[0].payload
    assert first["position"] == rows[0].position
    assert first["schemaversion"] == 1
    assert first["aggregateversion"] == rows[0].aggregate_version
    assert first["correlationid"] == rows[0].metadata["correlation_id"]
    assert dt.datetime.fromisoformat(first["time"]) == rows[0].recorded_at
    assert MemoryPublisher.sent[0].content_type.startswith("application/cloudevents+json")
    assert checkpoint() == head()


def test_events_the_relay_does_not_send_pass_the_checkpoint(relay: None) -> None:
    with override_settings(DJANGO_CQRS=relay_settings(EVENTS=["testapp.Deposited"])):
        accounts(2, deposits=1)
        catch_up(NAME)
        assert {m.type for m in MemoryPublisher.sent} == {"testapp.Deposited"}
        assert len(MemoryPublisher.sent) == 2
        assert checkpoint() == head()


def test_the_checkpoint_moves_only_after_the_broker_confirmed(relay: None) -> None:
    accounts(1, deposits=2)
    MemoryPublisher.refuse = 1
    outcome = run_catch_up(NAME)
    state = ProjectionState.objects.get(name=NAME)
    assert state.position == 0
    assert outcome.read == 0
    assert state.state == "live"
    assert state.attempts == 1
    assert "the broker is down" in state.last_error
    assert outcome.retry_at is not None  # retried with backoff, not parked
    assert not ParkedEvent.objects.exists()
    assert MemoryPublisher.sent == []
    # The broker is back: the next attempt after the backoff sends the batch.
    ProjectionState.objects.filter(name=NAME).update(next_retry_at=timezone.now())
    assert catch_up(NAME) == 3
    assert checkpoint() == head()
    assert ProjectionState.objects.get(name=NAME).attempts == 0


def test_a_broker_down_for_long_is_waited_for_with_capped_backoff(relay: None) -> None:
    accounts(1, deposits=0)
    with override_settings(DJANGO_CQRS=relay_settings(RETRY_BACKOFF_MAX=4.0)):
        MemoryPublisher.refuse = 50
        for _ in range(12):
            ProjectionState.objects.filter(name=NAME).update(next_retry_at=None)
            outcome = run_catch_up(NAME)
        state = ProjectionState.objects.get(name=NAME)
        assert state.attempts == 12  # far beyond a projection's max_retries: never parked
        assert not ParkedEvent.objects.exists()
        assert outcome.retry_at is not None
        assert outcome.retry_at - timezone.now() <= dt.timedelta(seconds=4.5)


def corrupt_event(account_id: int) -> StoredEvent:
    """A stored Deposited whose payload no code reads (as if written by a buggy deploy)."""
    last = StoredEvent.objects.filter(aggregate_id=str(account_id)).order_by("-position")[0]
    return StoredEvent.objects.create(
        event_type="testapp.Deposited",
        aggregate_type="testapp.Account",
        aggregate_id=str(account_id),
        aggregate_version=last.aggregate_version + 1,
        payload={"account_id": account_id, "amount": "not a number", "balance": "1"},
        metadata={},
    )


def test_an_event_that_cannot_be_decoded_is_parked_after_the_ones_before_it(
    relay: None,
) -> None:
    [account] = accounts(1, deposits=1)
    bad = corrupt_event(account)
    command_bus.dispatch(OpenAccount(owner="after"))
    catch_up(NAME)
    before = positions()[:2]
    assert [m.attributes["position"] for m in MemoryPublisher.sent] == before
    parked = ParkedEvent.objects.get(projection=NAME)
    assert parked.position == bad.position
    assert parked.attempts == 1
    state = ProjectionState.objects.get(name=NAME)
    assert state.state == "stopped"
    assert state.position == before[-1]


def test_on_failure_skip_parks_it_and_goes_on(relay: None) -> None:
    with override_settings(DJANGO_CQRS=relay_settings(ON_FAILURE="skip")):
        [account] = accounts(1, deposits=1)
        corrupt_event(account)
        command_bus.dispatch(OpenAccount(owner="after"))
        catch_up(NAME)
        sent = [m.attributes["position"] for m in MemoryPublisher.sent]
        assert sent == [p for i, p in enumerate(positions()) if i != 2]
        assert ParkedEvent.objects.get(projection=NAME).resolution == "skipped"
        assert checkpoint() == head()


def test_paused_relays_send_nothing_until_resumed(relay: None) -> None:
    accounts(1, deposits=1)
    set_paused(NAME, True)
    assert catch_up(NAME) == 0
    assert MemoryPublisher.sent == []
    set_paused(NAME, False)
    assert catch_up(NAME) == 2


def test_replay_sends_the_same_ids_again_from_a_position(relay: None) -> None:
    accounts(2, deposits=2)
    catch_up(NAME)
    first = [m.id for m in MemoryPublisher.sent]
    out = StringIO()
    third = positions()[2]
    call_command("cqrs_replay", "feed", "--from", str(third), stdout=out)
    assert f"sends again from position {third}" in out.getvalue()
    # The command queued a catch-up (run inline here: Q_CLUSTER["sync"]).
    assert checkpoint() == head()
    assert [m.id for m in MemoryPublisher.sent] == first + first[2:]


def test_replay_refuses_what_it_cannot_do(relay: None) -> None:
    accounts(1, deposits=1)
    second = positions()[1]
    with pytest.raises(CommandError, match=f"has not sent position {second} yet"):
        call_command("cqrs_replay", "feed", "--from", str(second))
    with pytest.raises(CommandError, match=f"no event at position {second + 1}"):
        call_command("cqrs_replay", "feed", "--from", str(second + 1))
    with pytest.raises(CommandError, match=r"No relay is named 'nope'\. Relays: feed"):
        call_command("cqrs_replay", "nope", "--from", "1")
    assert ProjectionState.objects.filter(name=NAME, position__gt=0).count() == 0


def test_a_batch_leased_by_another_worker_is_left_to_it_until_the_lease_ends(
    relay: None,
) -> None:
    [account] = accounts(1, deposits=1)
    catch_up(NAME)  # creates the state
    command_bus.dispatch(Deposit(account_id=account, amount=Decimal(5)))
    until = timezone.now() + dt.timedelta(seconds=30)
    ProjectionState.objects.filter(name=NAME).update(lease_owner="other:1", lease_until=until)
    outcome = run_catch_up(NAME)
    assert outcome.read == 0
    assert outcome.retry_at == until
    # The other worker died: once its lease has passed, this one publishes the batch.
    ProjectionState.objects.filter(name=NAME).update(lease_until=timezone.now())
    assert run_catch_up(NAME).read == 1
    state = ProjectionState.objects.get(name=NAME)
    assert state.lease_owner == ""
    assert state.lease_until is None


def test_relays_show_in_status_health_and_cqrs_status(relay: None) -> None:
    accounts(1, deposits=4)
    status = {s.name: s for s in projection_status()}[NAME]
    assert status.lag_events == 5
    out = StringIO()
    call_command("cqrs_status", "--json", stdout=out)
    assert {row["name"]: row for row in json.loads(out.getvalue())}[NAME]["lag_events"] == 5
    catch_up(NAME)
    report = health_report()
    assert NAME in json.dumps(report, default=str)
    assert {s.name: s for s in projection_status()}[NAME].lag_events == 0


def test_a_relay_cannot_be_rebuilt(relay: None) -> None:
    with pytest.raises(CommandError, match=r"relays\.feed"):
        call_command("cqrs_rebuild", NAME)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "['BACKEND'] is required"),
        ({"BACKEND": "kafka"}, "['BACKEND'] 'kafka' cannot be loaded"),
        ({"BACKEND": "rabbitmq"}, "['EXCHANGE'] is required by the rabbitmq backend"),
        ({"BACKEND": "nats", "STREAM": "S"}, "['SUBJECT_PREFIX'] is required by the nats"),
        ({"BACKEND": MEMORY, "EVENTS": "orders.*"}, "['EVENTS'] must be a list"),
        ({"BACKEND": MEMORY, "BATCH_SIZE": 0}, "['BATCH_SIZE'] must be a positive int"),
        ({"BACKEND": MEMORY, "ON_FAILURE": "retry"}, "['ON_FAILURE'] must be 'stop' or 'skip'"),
        ({"BACKEND": MEMORY, "PUBLISH_TIMEOUT": -1}, "['PUBLISH_TIMEOUT'] must be a positive"),
        ({"BACKEND": MEMORY, "TOPIK": "x"}, "unknown option(s): TOPIK"),
    ],
)
def test_wrong_settings_are_a_system_check_error_and_the_relay_does_not_run(
    config: dict[str, Any], message: str
) -> None:
    with override_settings(DJANGO_CQRS={"RELAYS": {"bad": config}}):
        errors = [m for m in check_relays() if m.id == "django_cqrs.E020"]
        assert len(errors) == 1, errors
        assert message in errors[0].msg
        assert all_relays() == []


def test_events_matching_nothing_is_a_warning() -> None:
    relays = {"x": {"BACKEND": MEMORY, "EVENTS": ["nope.*"]}}
    with override_settings(DJANGO_CQRS={"RELAYS": relays}):
        assert [m.id for m in check_relays()] == ["django_cqrs.W013"]


def test_cqrs_inspect_lists_relays_and_lets_them_send_history_only_events() -> None:
    from django_cqrs.inspection import inspect_project

    relays = {"out": {"BACKEND": MEMORY, "EVENTS": ["orders.PaymentRequested"]}}
    with override_settings(DJANGO_CQRS={"RELAYS": relays}):
        inspection = inspect_project(["orders"])
        [event] = [e for e in inspection.events if e.name == "orders.PaymentRequested"]
        assert event.history_only
        assert [r.name for r in event.relays] == ["relays.out"]
        assert event.projections == ()  # a relay is not listed as a projection
        assert not [p for p in inspection.problems() if p.name == "orders.PaymentRequested"]


def test_the_admin_dashboard_lists_a_relay_with_its_lag_and_pauses_it(
    relay: None, admin_client: Any
) -> None:
    from tests.test_admin import action_url, dashboard_figures, dashboard_url

    accounts(1, deposits=2)
    response = admin_client.get(dashboard_url())
    assert response.status_code == 200
    figures = dashboard_figures(response.content.decode())
    assert figures[NAME]["mode"] == "async"
    assert figures[NAME]["lag_events"] == "3"
    response = admin_client.post(action_url(NAME, "pause"))
    assert response.status_code in (200, 302)
    assert ProjectionState.objects.get(name=NAME).state == "paused"


def test_a_relay_batch_is_a_span_and_its_messages_carry_the_commands_trace(
    relay: None, spans: Any
) -> None:
    accounts(1, deposits=1)
    command = spans.named(f"cqrs.command {OpenAccount.message_name()}")[0]
    catch_up(NAME)
    [publish] = spans.named("cqrs.relay feed")
    assert publish.attributes["cqrs.relay"] == "feed"
    assert publish.attributes["cqrs.events"] == 2
    # The command's trace context was stored with its event and is sent with it.
    opened = MemoryPublisher.sent[0]
    traceparent = opened.attributes["traceparent"]
    assert traceparent.split("-")[1] == f"{command.context.trace_id:032x}"
    assert opened.headers["traceparent"] == traceparent


def test_relays_are_counted_and_their_lag_scraped(relay: None, client: Any) -> None:
    from tests.test_metrics import scrape, value

    accounts(1, deposits=2)
    assert value(scrape(client), "cqrs_relay_lag_events", relay="feed") == 3
    catch_up(NAME)
    samples = scrape(client)
    assert value(samples, "cqrs_relay_lag_events", relay="feed") == 0
    assert value(samples, "cqrs_relay_published_total", relay="feed") >= 3


def test_a_worker_that_finds_the_relay_leased_waits_for_the_lease_then_sends(
    relay: None,
) -> None:
    [account] = accounts(1, deposits=1)
    catch_up(NAME)
    command_bus.dispatch(Deposit(account_id=account, amount=Decimal(5)))
    # Another worker publishes (its lease ends in 0.3 s): this catch-up's trigger is spent,
    # so it waits for the lease rather than leave the new event to the periodic schedule.
    until = timezone.now() + dt.timedelta(seconds=0.3)
    ProjectionState.objects.filter(name=NAME).update(lease_owner="other:1", lease_until=until)
    assert run_catch_up(NAME, wait_held_back=5.0).read == 1
    assert checkpoint() == head()
