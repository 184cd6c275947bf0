"""Real django-q2 clusters drive the async projections, and survive being killed.

``manage.py qcluster`` runs in its own process group with ``tests/qcluster_settings.py``
(ORM broker, or Redis when CQRS_TEST_REDIS_URL is set) against the test database of this
transactional test, so the cluster sees what the test writes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django_q.models import Schedule, Task

from django_cqrs.models import ProjectionState, StoredEvent
from django_cqrs.projections.catchup import set_paused
from django_cqrs.tasks import CATCH_UP_TASK
from tests.test_projections_catchup import (
    TOTALS,
    assert_every_event_counted_once,
    assert_matches_rebuild,
    bulk_events,
    head,
)
from tests.testapp.async_projections import AccountTotalsProjection

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("horizon"),  # long transactions: see test_projections_health
]

ROOT = Path(__file__).resolve().parent.parent


class Cluster:
    """Start, kill and talk to ``qcluster`` process groups."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def start(self) -> None:
        assert self.proc is None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group and check that no member survives."""
        assert self.proc is not None
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        deadline = time.monotonic() + 15
        while True:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return  # nobody of the group is left
            if time.monotonic() > deadline:
                os.killpg(pgid, signal.SIGKILL)
                pytest.fail(f"a process of the qcluster group {pgid} survived")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.kill(signal.SIGKILL)


@pytest.fixture
def cluster_env(tmp_path: Path, settings: Any) -> dict[str, str]:
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False}  # this process queues nothing
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.qcluster_settings",
        CQRS_QCLUSTER_DB_NAME=connection.settings_dict["NAME"],
        CQRS_QCLUSTER_NAME=f"cqrs-test-{uuid.uuid4().hex[:10]}",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture
def make_cluster(cluster_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    clusters: list[Cluster] = []

    def make(**extra: str) -> Cluster:
        cluster = Cluster({**cluster_env, **extra}, tmp_path / f"qcluster{len(clusters)}.log")
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()


def position() -> int:
    found = ProjectionState.objects.filter(name=TOTALS).values_list("position", flat=True).first()
    return found or 0


def wait_caught_up(cluster: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    target = head()
    while position() < target:
        if time.monotonic() > deadline:
            pytest.fail(
                f"not caught up after {timeout}s: {position()} of {target}\n"
                + cluster.log.read_text(errors="replace")[-3000:]
            )
        time.sleep(0.05)


def test_commands_are_caught_up_by_a_real_cluster(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.start()
    # Commands dispatched by another process with the cluster's settings: the trigger
    # queues a catch-up task through the real broker.
    cluster.shell(
        "from decimal import Decimal\n"
        "from django_cqrs import command_bus\n"
        "from tests.testapp.commands import Deposit, OpenAccount\n"
        "for i in range(5):\n"
        "    a = command_bus.dispatch(OpenAccount(owner=f'q{i}')).value\n"
        "    for n in range(1, 11):\n"
        "        command_bus.dispatch(Deposit(account_id=a, amount=Decimal(n)))\n"
    )
    assert StoredEvent.objects.count() == 55
    wait_caught_up(cluster, timeout=45)
    cluster.stop()
    assert_every_event_counted_once()
    assert_matches_rebuild(AccountTotalsProjection)


def test_resuming_under_a_real_cluster_catches_up_at_once_not_at_the_schedule(
    make_cluster: Callable[..., Cluster],
) -> None:
    bulk_events(500, accounts=5)
    set_paused(TOTALS, True)
    # No periodic schedule (the flush of the last test made one): only a task queued by
    # the resume can catch the projection up.
    Schedule.objects.all().delete()
    cluster = make_cluster()
    cluster.start()

    out = cluster.manage("cqrs_pause", TOTALS, "--resume")

    wait_caught_up(cluster, timeout=20)
    cluster.stop()
    assert "a catch-up is queued" in out
    assert_every_event_counted_once()


def test_killing_the_cluster_mid_catch_up_loses_and_doubles_nothing(
    make_cluster: Callable[..., Cluster],
) -> None:
    bulk_events(20_000, accounts=50)
    target = head()
    cluster = make_cluster(CQRS_QCLUSTER_BATCH_SIZE="150")
    enqueue = f"from django_cqrs.tasks import enqueue; enqueue({TOTALS!r})"
    kills = 0
    started = time.monotonic()
    while kills < 5:
        assert time.monotonic() - started < 90, f"only {kills} kills mid catch-up"
        before = position()
        cluster.start()
        cluster.shell(enqueue)  # a new task each time (the killed ones are invisible a while)
        deadline = time.monotonic() + 30
        while position() <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05 * (kills % 3))
        at_kill = position()
        cluster.kill(signal.SIGKILL)
        assert at_kill > before, cluster.log.read_text(errors="replace")[-3000:]
        if at_kill < target:
            kills += 1
        else:
            break  # caught up before the kill: the checks below still apply
    assert kills >= 5, f"the catch-up finished after only {kills} kills"
    cluster.start()
    cluster.shell(enqueue)
    wait_caught_up(cluster, timeout=60)
    cluster.stop()
    assert position() == target
    assert_every_event_counted_once()
    assert_matches_rebuild(AccountTotalsProjection)


def test_a_backlog_longer_than_a_task_may_run_is_caught_up_by_tasks_that_are_never_killed(
    make_cluster: Callable[..., Cluster],
) -> None:
    """A 2 s task timeout, 4 s of work: each task stops after its budget (1 s), queues the next."""
    bulk_events(2000, accounts=50)
    target = head()
    cluster = make_cluster(
        CQRS_QCLUSTER_BATCH_SIZE="50",
        CQRS_QCLUSTER_TIMEOUT="2",
        CQRS_QCLUSTER_RETRY="4",
        CQRS_TEST_APPLY_DELAY="0.002",  # 2 ms per event in the cluster, however fast it is
    )
    cluster.start()
    cluster.shell(f"from django_cqrs.tasks import enqueue; enqueue({TOTALS!r})")
    wait_caught_up(cluster, timeout=120)
    time.sleep(0.5)  # the last task's result is saved
    cluster.stop()

    log = cluster.log.read_text(errors="replace")
    assert "reincarnated" not in log, log[-3000:]
    failures = list(Task.objects.filter(success=False).values_list("func", "result"))
    assert failures == [], failures  # no "Task exceeded maximum timeout value"
    runs = [task for task in Task.objects.filter(func=CATCH_UP_TASK) if task.args == (TOTALS,)]
    assert len(runs) >= 3  # a chain of tasks, each queued by the one before
    assert sum(task.result for task in runs) == StoredEvent.objects.count()  # each read once
    assert position() == target
    assert_every_event_counted_once()
    assert_matches_rebuild(AccountTotalsProjection)
