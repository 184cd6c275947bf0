"""Relays against real RabbitMQ and NATS JetStream: every event arrives, valid, in each
aggregate's order; a broker that goes away and comes back loses nothing; a cluster killed
while publishing loses nothing and resends with the same ids."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from cloudevents.conversion import from_json
from cloudevents.http import CloudEvent
from django.core.management import call_command
from django.test import override_settings

from django_cqrs import command_bus
from django_cqrs.inbox import IncomingEvent, inbox_handler
from django_cqrs.inbox.registry import unregister as unregister_inbox_handler
from django_cqrs.models import InboxMessage, ParkedEvent, ProjectionState, StoredEvent
from django_cqrs.projections.catchup import catch_up, run_catch_up
from django_cqrs.relays import replay
from tests import test_async_workers
from tests.brokers import (
    NATS_URL,
    RABBITMQ_URL,
    NatsStream,
    RabbitQueue,
    Received,
    proxy,
    requires_nats,
    requires_rabbitmq,
)
from tests.test_async_workers import Cluster
from tests.test_projections_catchup import bulk_events
from tests.testapp.commands import Deposit, OpenAccount

pytestmark = pytest.mark.django_db(transaction=True)

# The real clusters of test_async_workers (tests/qcluster_settings.py).
cluster_env = test_async_workers.cluster_env
make_cluster = test_async_workers.make_cluster


@pytest.fixture
def rabbit() -> Iterator[RabbitQueue]:
    queue = RabbitQueue(exchange=f"test.events.{time.monotonic_ns()}")
    queue.declare()  # bound before the relay publishes: nothing routed is dropped
    yield queue
    queue.delete()


@pytest.fixture
def stream() -> Iterator[NatsStream]:
    made = NatsStream()
    yield made
    made.delete()


def rabbit_relay(queue: RabbitQueue, url: str = RABBITMQ_URL, **extra: Any) -> dict[str, Any]:
    return {"BACKEND": "rabbitmq", "URL": url, "EXCHANGE": queue.exchange, **extra}


def nats_relay(made: NatsStream, url: str = NATS_URL, **extra: Any) -> dict[str, Any]:
    return {
        "BACKEND": "nats",
        "SERVERS": [url],
        "STREAM": made.stream,
        "SUBJECT_PREFIX": made.prefix,
        **extra,
    }


def settings_with(**relays: dict[str, Any]) -> dict[str, Any]:
    return {"TRIGGER_ON_COMMIT": False, "EVENT_SOURCE": "/tests", "RELAYS": relays}


def run_commands(accounts: int, deposits: int) -> None:
    for i in range(accounts):
        account = command_bus.dispatch(OpenAccount(owner=f"relayed {i}")).value
        for n in range(deposits):
            command_bus.dispatch(Deposit(account_id=account, amount=Decimal(n + 1)))


def stored_ids() -> dict[str, tuple[str, int]]:
    """Every stored event's CloudEvents id -> (subject, aggregate version)."""
    return {
        f"{t}/{a}/{v}": (f"{t}/{a}", v)
        for t, a, v in StoredEvent.objects.values_list(
            "aggregate_type", "aggregate_id", "aggregate_version"
        )
    }


def assert_all_arrived_in_order(received: list[Received]) -> None:
    """Each stored event arrived at least once, duplicates are the same message, and the
    first arrivals keep each aggregate's order."""
    expected = stored_ids()
    first: dict[str, Received] = {}
    order: dict[str, list[int]] = defaultdict(list)
    for message in received:
        assert message.id == message.body["id"]
        if message.id in first:
            assert message.raw == first[message.id].raw  # a resend is the same message
            continue
        first[message.id] = message
        order[message.body["subject"]].append(message.body["aggregateversion"])
    missing = set(expected) - set(first)
    assert not missing, f"{len(missing)} events never arrived, e.g. {sorted(missing)[:5]}"
    assert set(first) == set(expected)
    for subject, versions in order.items():
        assert versions == sorted(versions), f"{subject} arrived out of order: {versions}"


def caught_up(name: str) -> bool:
    head = StoredEvent.objects.order_by("-position").values_list("position", flat=True)[0]
    state = ProjectionState.objects.filter(name=name).first()
    return state is not None and state.position >= head


@requires_rabbitmq
def test_rabbitmq_receives_every_event_as_a_valid_cloudevent(rabbit: RabbitQueue) -> None:
    with override_settings(DJANGO_CQRS=settings_with(bus=rabbit_relay(rabbit, BATCH_SIZE=50))):
        run_commands(accounts=10, deposits=20)
        assert catch_up("relays.bus") == 210
    received = rabbit.drain()
    assert len(received) == 210
    assert_all_arrived_in_order(received)
    event = from_json(CloudEvent, received[0].raw)  # the cloudevents package reads it
    assert event["type"] == received[0].subject == "testapp.AccountOpened"
    assert event["source"] == "/tests"


@requires_rabbitmq
@pytest.mark.parametrize(
    ("relay", "why"),
    [
        ({"URL": "amqp://guest:guest@127.0.0.1:1/"}, "ConnectionRefusedError"),
        ({"URL": RABBITMQ_URL.replace("guest@", "not-the-password@")}, "ACCESS_REFUSED"),
        ({"DECLARE": False, "EXCHANGE": "test.no.such.exchange"}, "NOT_FOUND - no exchange"),
    ],
    ids=["port-closed", "wrong-password", "no-exchange"],
)
def test_a_broker_that_refuses_the_relay_is_named_in_its_state(
    rabbit: RabbitQueue, relay: dict[str, Any], why: str
) -> None:
    """The relay's last error says what the broker (or the network) answered, and
    nothing moves (pika wraps a refused connection three deep, the outer one empty)."""
    options = {**rabbit_relay(rabbit), **relay}
    with override_settings(DJANGO_CQRS=settings_with(bus=options)):
        run_commands(accounts=1, deposits=2)
        assert run_catch_up("relays.bus").retry_at is not None
    state = ProjectionState.objects.get(name="relays.bus")
    assert why in state.last_error, state.last_error
    assert state.position == 0
    assert rabbit.drain() == []


@requires_nats
def test_nats_receives_every_event_and_drops_resends_within_its_window(
    stream: NatsStream,
) -> None:
    with override_settings(DJANGO_CQRS=settings_with(js=nats_relay(stream, BATCH_SIZE=50))):
        run_commands(accounts=10, deposits=20)
        assert catch_up("relays.js") == 210
        # Sent again (an operator's replay, a worker that died before its checkpoint):
        # the same Nats-Msg-Id, so JetStream keeps one copy.
        replay("js", StoredEvent.objects.order_by("position")[0].position)
        assert catch_up("relays.js") == 210
    received = stream.drain()
    assert len(received) == 210
    assert_all_arrived_in_order(received)
    assert received[0].subject == f"{stream.prefix}.testapp.AccountOpened"
    event = from_json(CloudEvent, received[-1].raw)
    assert event["type"] == "testapp.Deposited"


def publish_through_an_outage(
    name: str, relay: Callable[[str], dict[str, Any]], url: str, port: int
) -> None:
    """Commands keep coming while the broker's port closes and opens again."""
    with (
        proxy(url, port) as broker,
        override_settings(
            DJANGO_CQRS={**settings_with(**{name: relay(broker.url(url))}), "RETRY_BACKOFF": 0.05}
        ),
    ):
        relay_name = f"relays.{name}"
        run_commands(accounts=5, deposits=20)
        catch_up(relay_name)
        broker.stop()
        run_commands(accounts=5, deposits=20)
        for _ in range(3):
            ProjectionState.objects.filter(name=relay_name).update(next_retry_at=None)
            assert run_catch_up(relay_name).retry_at is not None
        state = ProjectionState.objects.get(name=relay_name)
        assert state.attempts == 3
        assert state.state == "live"
        assert not ParkedEvent.objects.exists()
        broker.start()
        run_commands(accounts=5, deposits=20)
        ProjectionState.objects.filter(name=relay_name).update(next_retry_at=None)
        catch_up(relay_name)
        assert caught_up(relay_name)


@requires_rabbitmq
def test_rabbitmq_going_away_mid_run_loses_nothing(rabbit: RabbitQueue) -> None:
    publish_through_an_outage("bus", lambda url: rabbit_relay(rabbit, url), RABBITMQ_URL, 5672)
    received = rabbit.drain()
    assert_all_arrived_in_order(received)


@requires_nats
def test_nats_going_away_mid_run_loses_nothing(stream: NatsStream) -> None:
    # A connection cut mid-batch leaves its acks unanswered: the batch's timeout ends it.
    relay = lambda url: nats_relay(stream, url, PUBLISH_TIMEOUT=1.0)  # noqa: E731
    publish_through_an_outage("js", relay, NATS_URL, 4222)
    assert_all_arrived_in_order(stream.drain())


# -- real django-q2 clusters (PostgreSQL) ---------------------------------------------


def relays_env(rabbit: RabbitQueue, stream: NatsStream, **extra: Any) -> str:
    return json.dumps({"bus": rabbit_relay(rabbit, **extra), "js": nats_relay(stream, **extra)})


def wait_until(check: Callable[[], bool], cluster: Cluster, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what} after {timeout}s\n" + cluster.log.read_text(errors="replace")[-3000:]
            )
        time.sleep(0.1)


@pytest.mark.postgres
@pytest.mark.xdist_group("horizon")
@requires_rabbitmq
@requires_nats
def test_a_5000_command_run_arrives_whole_at_both_brokers_and_an_inbox_applies_it_once(
    make_cluster: Callable[..., Cluster], rabbit: RabbitQueue, stream: NatsStream
) -> None:
    inbox_queue = RabbitQueue(exchange=rabbit.exchange)
    inbox_queue.declare()  # the other service's queue, bound before anything is sent
    cluster = make_cluster(CQRS_QCLUSTER_RELAYS=relays_env(rabbit, stream))
    cluster.start()
    # 5,000 commands in another process: its commits queue the relays' catch-ups.
    cluster.manage(
        "shell",
        "-c",
        "from decimal import Decimal\n"
        "from django_cqrs import command_bus\n"
        "from tests.testapp.commands import Deposit, OpenAccount\n"
        "for i in range(100):\n"
        "    a = command_bus.dispatch(OpenAccount(owner=f'r{i}')).value\n"
        "    for n in range(49):\n"
        "        command_bus.dispatch(Deposit(account_id=a, amount=Decimal(n + 1)))\n",
        timeout=600,
    )
    assert StoredEvent.objects.count() == 5000
    wait_until(
        lambda: caught_up("relays.bus") and caught_up("relays.js"), cluster, 120, "not relayed"
    )
    cluster.stop()
    # Everything sent a second time (an operator's replay; what a worker killed before its
    # checkpoint does): the inbox of another service applies each event once.
    relays = json.loads(relays_env(rabbit, stream))
    inboxes = {
        "e2e": {
            "BACKEND": "rabbitmq",
            "URL": RABBITMQ_URL,
            "EXCHANGE": rabbit.exchange,
            "QUEUE": inbox_queue.queue,
            "PREFETCH": 200,
        }
    }
    with override_settings(DJANGO_CQRS={**settings_with(**relays), "INBOXES": inboxes}):
        replay("bus", StoredEvent.objects.order_by("position")[0].position)
        assert catch_up("relays.bus") == 5000
        applied: Counter[str] = Counter()

        def count(event: IncomingEvent) -> None:
            applied[event.id] += 1

        inbox_handler("testapp.*", inbox="e2e")(count)
        try:
            call_command("cqrs_consume", "e2e", "--idle-timeout", "5", stdout=StringIO())
        finally:
            unregister_inbox_handler(count)
            inbox_queue.delete_queue()
    assert len(applied) == 5000
    assert set(applied.values()) == {1}
    assert set(applied) == set(stored_ids())
    assert InboxMessage.objects.filter(state="handled").count() == 5000
    received = rabbit.drain()
    assert len(received) == 10_000  # every event twice, each time with the same id
    assert_all_arrived_in_order(received)
    assert_all_arrived_in_order(stream.drain())


@pytest.mark.postgres
@pytest.mark.xdist_group("horizon")
@requires_rabbitmq
@requires_nats
def test_a_cluster_killed_while_publishing_loses_nothing_and_resends_the_same_ids(
    make_cluster: Callable[..., Cluster], rabbit: RabbitQueue, stream: NatsStream
) -> None:
    bulk_events(20_000, accounts=50)
    cluster = make_cluster(
        CQRS_QCLUSTER_RELAYS=relays_env(rabbit, stream, BATCH_SIZE=200),
        CQRS_QCLUSTER_RELAY_LEASE="2",
    )
    enqueue = "from django_cqrs.tasks import enqueue; enqueue('relays.bus'); enqueue('relays.js')"

    def sent() -> int:
        return sum(
            ProjectionState.objects.filter(name__in=["relays.bus", "relays.js"]).values_list(
                "position", flat=True
            )
        )

    kills = 0
    while kills < 3 and not (caught_up("relays.bus") and caught_up("relays.js")):
        before = sent()
        cluster.start()
        cluster.shell(enqueue)
        wait_until(lambda before=before: sent() > before, cluster, 30, "no progress")
        time.sleep(0.1 * (kills % 3))
        cluster.kill(signal.SIGKILL)
        kills += 1
    cluster.start()
    cluster.shell(enqueue)
    wait_until(
        lambda: caught_up("relays.bus") and caught_up("relays.js"), cluster, 120, "not relayed"
    )
    cluster.stop()
    assert kills >= 1
    assert_all_arrived_in_order(rabbit.drain())
    assert_all_arrived_in_order(stream.drain())
