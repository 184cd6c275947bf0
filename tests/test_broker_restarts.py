"""Relays while the real brokers stop and start again: nothing is lost.

These stop RabbitMQ (``rabbitmqctl stop_app``) and NATS (its server process) on this
machine, so they run only when asked, with nothing else using the brokers:
``CQRS_TEST_RESTART_BROKERS=1`` (``.ci/run`` runs them in a step of their own).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_cqrs.models import ParkedEvent, ProjectionState
from django_cqrs.projections.catchup import catch_up, run_catch_up
from tests.brokers import NATS_URL, RABBITMQ_URL, NatsStream, RabbitQueue, answers
from tests.test_relays_brokers import (
    assert_all_arrived_in_order,
    caught_up,
    nats_relay,
    rabbit_relay,
    run_commands,
    settings_with,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.environ.get("CQRS_TEST_RESTART_BROKERS") != "1",
        reason="stops and starts this machine's RabbitMQ and NATS: set "
        "CQRS_TEST_RESTART_BROKERS=1 with nothing else using them (.ci/run does)",
    ),
]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout}s")
        time.sleep(0.2)


def through_a_restart(
    name: str, relay: dict[str, Any], stop: Callable[[], None], start: Callable[[], None]
) -> None:
    relay_name = f"relays.{name}"
    with override_settings(DJANGO_CQRS={**settings_with(**{name: relay}), "RETRY_BACKOFF": 0.05}):
        run_commands(accounts=5, deposits=20)
        catch_up(relay_name)
        stop()
        try:
            run_commands(accounts=5, deposits=20)
            for _ in range(2):
                ProjectionState.objects.filter(name=relay_name).update(next_retry_at=None)
                assert run_catch_up(relay_name).retry_at is not None  # failed, to be retried
            assert ProjectionState.objects.get(name=relay_name).attempts == 2
            assert not ParkedEvent.objects.exists()
        finally:
            start()
        run_commands(accounts=5, deposits=20)
        deadline = time.monotonic() + 60
        while not caught_up(relay_name):
            assert time.monotonic() < deadline, "the relay did not catch up after the restart"
            ProjectionState.objects.filter(name=relay_name).update(next_retry_at=None)
            catch_up(relay_name)
            time.sleep(0.2)


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
def test_rabbitmq_stopped_and_started_mid_run_loses_nothing() -> None:
    queue = RabbitQueue(exchange=f"test.restart.{time.monotonic_ns()}")
    queue.declare()  # durable, with persistent messages: they outlive the restart

    def stop() -> None:
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)

    def start() -> None:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
        wait_for(lambda: answers(RABBITMQ_URL, 5672), 60, "RabbitMQ did not answer")

    try:
        through_a_restart("bus", rabbit_relay(queue, PUBLISH_TIMEOUT=2.0), stop, start)
        assert_all_arrived_in_order(queue.drain())
    finally:
        queue.delete()


def nats_server() -> tuple[int, list[str]] | None:
    """The pid and command line of the nats-server serving 127.0.0.1:4222."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"nats-server"):
            return int(entry.name), [a.decode() for a in argv if a]
    return None


@pytest.fixture
def nats_process() -> Iterator[tuple[int, list[str]]]:
    found = nats_server()
    if found is None:
        pytest.skip("needs a nats-server process on this machine")
    yield found
    if not answers(NATS_URL, 4222):  # never leave the machine without its NATS
        subprocess.Popen(
            found[1], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


def test_nats_stopped_and_started_mid_run_loses_nothing(
    nats_process: tuple[int, list[str]],
) -> None:
    pid, argv = nats_process
    stream = NatsStream()

    def stop() -> None:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not answers(NATS_URL, 4222), 30, "NATS did not stop")

    def start() -> None:
        subprocess.Popen(
            argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: answers(NATS_URL, 4222), 30, "NATS did not answer")
        time.sleep(1)  # JetStream recovers its streams after the port opens

    try:
        through_a_restart("js", nats_relay(stream, PUBLISH_TIMEOUT=2.0), stop, start)
        assert_all_arrived_in_order(stream.drain())
    finally:
        stream.delete()
