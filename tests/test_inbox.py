"""The inbox without a broker: parsing, handlers by type, applying once, retries, parking,
the settings and their checks, ``cqrs_consume``'s errors, ``cqrs_inbox`` and the admin."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command

from django_cqrs import command_bus, store
from django_cqrs.inbox import IncomingEvent, InvalidMessage, handlers_for, inbox_handler
from django_cqrs.inbox.apply import Outcome, receive
from django_cqrs.inbox.config import InboxConfig, inbox_config, inbox_problems
from django_cqrs.inbox.events import parse
from django_cqrs.inbox.registry import unregister
from django_cqrs.models import InboxMessage, StoredEvent
from tests.inbox_helpers import body, cloud_event
from tests.tutorial.commands import AddTask

State = InboxMessage.State
INBOX = {"BACKEND": "rabbitmq", "EXCHANGE": "x", "QUEUE": "q", "RETRY_BACKOFF": 0.0}


@pytest.fixture
def config(settings: Any) -> InboxConfig:
    settings.DJANGO_CQRS = {"INBOXES": {"test": INBOX}}
    return inbox_config("test")


class Calls(list[tuple[str, str]]):
    """The handlers' calls, and how many more times ``flaky`` fails."""

    failures: dict[str, int]


@pytest.fixture
def calls() -> Iterator[Calls]:
    made = Calls()
    failures = made.failures = {"left": 0}

    @inbox_handler("tests.Happened")
    def exact(event: IncomingEvent) -> None:
        made.append(("exact", event.id))

    @inbox_handler("tests.Hap*")
    def pattern(event: IncomingEvent) -> None:
        made.append(("pattern", event.id))

    @inbox_handler("tests.Flaky")
    def flaky(event: IncomingEvent) -> None:
        command_bus.dispatch(AddTask(title="written, then rolled back"))
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("not yet")
        made.append(("flaky", event.id))

    @inbox_handler("tests.Dispatching")
    def dispatching(event: IncomingEvent) -> None:
        command_bus.dispatch(AddTask(title="caused by " + event.id), metadata=event.metadata)

    yield made
    for handler in (exact, pattern, flaky, dispatching):
        unregister(handler)


# -- parsing ----------------------------------------------------------------------------


def test_a_cloud_event_is_parsed_with_its_extensions() -> None:
    event = parse(body(cloud_event("orders.OrderPlaced", "42", 3, {"total": "9.50"})), inbox="i")

    assert (event.id, event.source, event.type) == (
        "orders.Aggregate/42/3",
        "/upstream",
        "orders.OrderPlaced",
    )
    assert event.aggregate == ("orders.Aggregate", "42")
    assert (event.schema_version, event.position, event.aggregate_version) == (1, 1, 3)
    assert (event.correlation_id, event.causation_id) == ("corr-1", "cause-1")
    assert event.data == {"total": "9.50"}
    assert event.time is not None
    assert event.time.year == 2026
    assert event.inbox == "i"
    assert event.extensions["aggregateversion"] == 3


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a CloudEvent object"),
        (b'{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}', "specversion"),
        (b'{"specversion": "1.0", "id": "1", "type": "t"}', "not a valid CloudEvent"),
        (json.dumps({**cloud_event(), "position": "x"}).encode(), "'position' must be an integer"),
        (json.dumps({**cloud_event(), "time": "yesterday"}).encode(), "RFC 3339"),
    ],
)
def test_what_is_not_a_cloud_event_is_refused_saying_why(raw: bytes, why: str) -> None:
    with pytest.raises(InvalidMessage, match=why):
        parse(raw)


def test_handlers_are_found_by_exact_type_then_by_pattern(calls: Calls) -> None:
    assert [h.__name__ for h in handlers_for("tests.Happened")] == ["exact", "pattern"]
    assert [h.__name__ for h in handlers_for("tests.Happening")] == ["pattern"]
    assert handlers_for("other.Happened") == []


def test_a_handler_for_one_inbox_gets_only_its_events() -> None:
    @inbox_handler("tests.Scoped", inbox="billing")
    def scoped(event: IncomingEvent) -> None:
        pass

    try:
        assert handlers_for("tests.Scoped", "billing") == [scoped]
        assert handlers_for("tests.Scoped", "other") == []
    finally:
        unregister(scoped)


# -- applying ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_message_is_applied_once(config: InboxConfig, calls: Calls) -> None:
    message = body(cloud_event("tests.Happened"))

    assert receive(config, message) is Outcome.HANDLED
    assert receive(config, message) is Outcome.DUPLICATE

    assert calls == [("exact", "tests.Aggregate/42/1"), ("pattern", "tests.Aggregate/42/1")]
    row = InboxMessage.objects.get()
    assert (row.state, row.attempts, row.inbox, row.type, row.body) == (
        State.HANDLED,
        1,
        "test",
        "tests.Happened",
        "",
    )
    assert row.subject == "tests.Aggregate/42"
    assert row.handled_at is not None


@pytest.mark.django_db
def test_the_same_id_from_another_source_is_another_message(
    config: InboxConfig, calls: Calls
) -> None:
    receive(config, body(cloud_event("tests.Happened")))

    assert receive(config, body(cloud_event("tests.Happened", source="/other"))) is Outcome.HANDLED


@pytest.mark.django_db
def test_an_event_without_handlers_is_ignored_and_not_recorded(config: InboxConfig) -> None:
    assert receive(config, body(cloud_event("nobody.Cares"))) is Outcome.IGNORED
    assert not InboxMessage.objects.exists()


@pytest.mark.django_db
def test_an_invalid_message_is_parked_with_the_reason_and_the_body(config: InboxConfig) -> None:
    assert receive(config, b"garbage", message_id="amqp-1") is Outcome.PARKED
    assert receive(config, b"garbage", message_id="amqp-1") is Outcome.PARKED

    row = InboxMessage.objects.get()
    assert (row.state, row.message_id, row.body, row.attempts) == (
        State.FAILED,
        "amqp-1",
        "garbage",
        2,
    )
    assert "not a valid CloudEvent: the body is not JSON" in row.last_error


@pytest.mark.django_db
def test_a_failing_handler_rolls_back_and_is_retried_with_backoff(
    config: InboxConfig, calls: Calls
) -> None:
    calls.failures["left"] = 2
    waits: list[float] = []
    config = InboxConfig("test", "rabbitmq", {**config.options, "RETRY_BACKOFF": 0.5})

    outcome = receive(
        config, body(cloud_event("tests.Flaky")), wait=lambda s: waits.append(s) or True
    )

    assert outcome is Outcome.HANDLED
    assert waits == [0.5, 1.0]
    assert calls == [("flaky", "tests.Aggregate/42/1")]
    assert StoredEvent.objects.count() == 1  # the two failed attempts' task rolled back
    row = InboxMessage.objects.get()
    assert (row.state, row.attempts, row.last_error) == (State.HANDLED, 3, "")


@pytest.mark.django_db
def test_a_handler_failing_every_attempt_is_recorded_failed(
    config: InboxConfig, calls: Calls
) -> None:
    calls.failures["left"] = 99

    outcome = receive(config, body(cloud_event("tests.Flaky")))

    assert outcome is Outcome.PARKED
    row = InboxMessage.objects.get()
    assert (row.state, row.attempts) == (State.FAILED, config.max_attempts)
    assert "RuntimeError: not yet" in row.last_error
    assert json.loads(row.body)["type"] == "tests.Flaky"
    assert not StoredEvent.objects.exists()
    # Delivered again (the broker's resend), it stays decided: the operator retries it.
    assert receive(config, row.body) is Outcome.DUPLICATE


@pytest.mark.django_db
def test_a_stop_during_a_backoff_gives_the_message_back_and_the_count_goes_on(
    config: InboxConfig, calls: Calls
) -> None:
    calls.failures["left"] = 99
    message = body(cloud_event("tests.Flaky"))

    assert receive(config, message, wait=lambda s: False) is Outcome.ABANDONED
    assert not Outcome.ABANDONED.acknowledge
    row = InboxMessage.objects.get()
    assert (row.state, row.attempts) == (State.RETRYING, 1)

    calls.failures["left"] = 0  # delivered again, to a consumer started anew: it works
    assert receive(config, message) is Outcome.HANDLED
    row.refresh_from_db()
    assert (row.state, row.attempts) == (State.HANDLED, 2)


@pytest.mark.django_db
def test_a_command_dispatched_by_a_handler_carries_the_event_as_its_cause(
    config: InboxConfig, calls: Calls
) -> None:
    receive(config, body(cloud_event("tests.Dispatching", "5", 2)))

    [(event, envelope)] = list(store.read())
    assert event.title == "caused by tests.Aggregate/5/2"
    assert envelope.metadata["correlation_id"] == "corr-1"
    assert envelope.metadata["causation_id"] == "tests.Aggregate/5/2"
    assert envelope.metadata["causation_source"] == "/upstream"
    assert envelope.metadata["causation_type"] == "tests.Dispatching"


def test_without_a_correlation_id_the_event_id_is_the_correlation() -> None:
    event = parse(body(cloud_event(correlation_id=None)))

    assert event.metadata["correlation_id"] == event.id == event.metadata["causation_id"]


# -- cqrs_inbox ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_cqrs_inbox_lists_failed_messages_and_retries_them(
    config: InboxConfig, calls: Calls
) -> None:
    calls.failures["left"] = 99
    receive(config, body(cloud_event("tests.Flaky")))
    receive(config, body(cloud_event("tests.Happened", "43")))
    out = io.StringIO()

    call_command("cqrs_inbox", stdout=out)

    row = InboxMessage.objects.get(state=State.FAILED)
    assert "test: 1 handled, 0 retrying, 1 failed" in out.getvalue()
    assert f"{row.pk} failed tests.Flaky /upstream tests.Aggregate/42/1" in out.getvalue()
    assert "RuntimeError: not yet" in out.getvalue()

    calls.failures["left"] = 0
    call_command("cqrs_inbox", "--retry", str(row.pk), stdout=out)

    row.refresh_from_db()
    assert (row.state, row.body) == (State.HANDLED, "")
    assert ("flaky", "tests.Aggregate/42/1") in calls
    with pytest.raises(CommandError, match="No failed inbox message with the id 999"):
        call_command("cqrs_inbox", "--retry", "999")


# -- settings, checks, command errors ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("rabbitmq", "must be a dict with a BACKEND"),
        ({"BACKEND": "kafka"}, "['BACKEND'] must be one of 'rabbitmq', 'nats'"),
        ({"BACKEND": "rabbitmq", "QUEUE": "q"}, "needs 'EXCHANGE'"),
        ({**INBOX, "STREAM": "S"}, "has the key 'STREAM', which a rabbitmq inbox does not take"),
        ({**INBOX, "BINDINGS": "#"}, "['BINDINGS'] must be a non-empty list"),
        ({**INBOX, "PREFETCH": 0}, "['PREFETCH'] must be an int of 1 or more"),
        ({**INBOX, "MAX_ATTEMPTS": True}, "['MAX_ATTEMPTS'] must be an int"),
        ({"BACKEND": "nats", "STREAM": "S"}, "needs 'DURABLE'"),
        ({"BACKEND": "nats", "STREAM": "S", "DURABLE": "d", "ACK_WAIT": 0}, "['ACK_WAIT']"),
    ],
)
def test_a_bad_inbox_is_reported_by_check_e020(settings: Any, value: Any, problem: str) -> None:
    assert any(problem in p for p in inbox_problems("test", value))
    settings.DJANGO_CQRS = {"INBOXES": {"test": value}}

    errors = [m for m in run_checks() if m.id == "django_cqrs.E030"]

    assert len(errors) >= 1
    assert "DJANGO_CQRS['INBOXES']['test']" in errors[0].msg
    assert errors[0].hint


def test_inboxes_that_are_not_a_dict_are_reported(settings: Any) -> None:
    settings.DJANGO_CQRS = {"INBOXES": ["orders"]}

    [error] = [m for m in run_checks() if m.id == "django_cqrs.E030"]
    assert "must be a dict of named inboxes" in error.msg


def test_a_good_inbox_passes_the_checks(settings: Any) -> None:
    settings.DJANGO_CQRS = {
        "INBOXES": {
            "orders": INBOX,
            "audit": {"BACKEND": "nats", "STREAM": "S", "DURABLE": "audit", "SUBJECTS": ["a.>"]},
        }
    }

    assert [m for m in run_checks() if m.id and m.id.startswith("django_cqrs.E03")] == []


def test_a_handler_for_an_inbox_not_configured_is_reported_by_w020(settings: Any) -> None:
    @inbox_handler("tests.Scoped", inbox="nowhere")
    def scoped(event: IncomingEvent) -> None:
        pass

    try:
        settings.DJANGO_CQRS = {"INBOXES": {"test": INBOX}}
        [warning] = [m for m in run_checks() if m.id == "django_cqrs.W030"]
    finally:
        unregister(scoped)
    assert "'nowhere'" in warning.msg


def test_cqrs_consume_names_an_unknown_inbox(settings: Any) -> None:
    settings.DJANGO_CQRS = {"INBOXES": {"orders": INBOX}}

    with pytest.raises(CommandError, match=r"No inbox named 'ordres' .* \(configured: 'orders'\)"):
        call_command("cqrs_consume", "ordres")


def test_cqrs_consume_refuses_a_bad_inbox_naming_the_setting(settings: Any) -> None:
    settings.DJANGO_CQRS = {"INBOXES": {"orders": {"BACKEND": "rabbitmq"}}}

    with pytest.raises(
        CommandError, match=r"DJANGO_CQRS\['INBOXES'\]\['orders'\] needs 'EXCHANGE'"
    ):
        call_command("cqrs_consume", "orders")


@pytest.mark.django_db
def test_cqrs_consume_names_an_unreachable_broker(settings: Any) -> None:
    settings.DJANGO_CQRS = {"INBOXES": {"orders": {**INBOX, "URL": "amqp://u:pw@127.0.0.1:1/"}}}

    with pytest.raises(CommandError) as error:
        call_command("cqrs_consume", "orders", "--idle-timeout", "1")

    assert "Inbox 'orders': cannot connect to RabbitMQ at amqp://u:***@127.0.0.1:1/" in str(
        error.value
    )
    assert "['URL']" in str(error.value)


# -- the admin ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_shows_messages_read_only_with_failed_ones_filterable(
    admin_client: Any, config: InboxConfig
) -> None:
    receive(config, b"garbage", message_id="m-1")

    page = admin_client.get("/admin/django_cqrs/inboxmessage/?state__exact=failed")
    row = InboxMessage.objects.get()
    detail = admin_client.get(f"/admin/django_cqrs/inboxmessage/{row.pk}/change/")
    add = admin_client.get("/admin/django_cqrs/inboxmessage/add/")

    assert page.status_code == 200
    assert b"not a valid CloudEvent" in page.content
    assert detail.status_code == 200
    assert b"garbage" in detail.content
    assert add.status_code == 403
