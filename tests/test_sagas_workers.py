"""Sagas under real concurrency (issue 13, crash safety), on PostgreSQL.

* A qcluster running ``TransferSaga`` is SIGKILLed, process group and all, while it is
  between the steps of a transfer; a new cluster finishes the work: every command the
  saga dispatches was recorded exactly once, and the balances are exact.
* A deadline firing and the catch-up of the event that cancels it, for the same
  instances, at the same time: each instance ends completed or compensated, never both.
* Two catch-up workers on one saga apply each event once.
* Three processes firing the same due deadlines fire each exactly once.

The commands are counted through their events: each carries the metadata ``saga_step``
and the causation ``saga:<saga>:<instance key>``.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from django_cqrs import command_bus
from django_cqrs.models import ParkedEvent, ProjectionState, SagaDeadline, StoredEvent
from django_cqrs.projections.catchup import catch_up
from django_cqrs.sagas import deadlines, fire_due
from tests import test_async_workers
from tests.test_async_workers import ROOT, Cluster
from tests.testapp.commands import ConfirmTransfer, Deposit, OpenAccount, RequestTransfer
from tests.testapp.models import Account, TransferRun
from tests.testapp.sagas import TransferSaga

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("horizon"),  # long transactions: see test_projections_health
]

# The real qcluster's fixtures, shared with tests/test_async_workers.py.
cluster_env = test_async_workers.cluster_env
make_cluster = test_async_workers.make_cluster

SAGA = TransferSaga.name
MOVEMENTS = ("testapp.Withdrawn", "testapp.Deposited")
#: What one transfer that ran its steps recorded: (event type, saga step).
RAN = Counter({("testapp.Withdrawn", "withdraw"): 1, ("testapp.Deposited", "deposit"): 1})
FEE = Counter({("testapp.Withdrawn", "fee"): 1})
#: What the compensation of such a transfer adds (the fee is not given back).
COMPENSATION = Counter(
    {
        ("testapp.Withdrawn", "compensate deposit"): 1,
        ("testapp.Deposited", "compensate withdraw"): 1,
    }
)
FAR_FUTURE = timezone.now() + dt.timedelta(days=365)


# -- helpers ----------------------------------------------------------------------------


class Transfer:
    """One requested transfer and what it should do to the balances."""

    def __init__(self, source: int, target: int, amount: Decimal, fee: Decimal) -> None:
        self.id = uuid.uuid4()
        self.key = str(self.id)
        self.source, self.target, self.amount, self.fee = source, target, amount, fee

    def command(self) -> RequestTransfer:
        return RequestTransfer(
            transfer_id=self.id,
            source_id=self.source,
            target_id=self.target,
            amount=self.amount,
            fee=self.fee,
        )

    def as_json(self) -> list[Any]:
        return [self.key, self.source, self.target, str(self.amount), str(self.fee)]


def open_accounts(count: int, balance: str) -> list[int]:
    ids = []
    for n in range(count):
        account_id: int = command_bus.dispatch(OpenAccount(owner=f"owner{n}")).value
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal(balance)))
        ids.append(account_id)
    return ids


def plan(accounts: list[int], count: int) -> list[Transfer]:
    """``count`` transfers among ``accounts``, every one with a fee (so three steps)."""
    size = len(accounts)
    return [
        Transfer(
            accounts[n % size],
            accounts[(n + 1 + n // size) % size],
            Decimal(1 + n % 17),
            Decimal(1 + n % 2),
        )
        for n in range(count)
    ]


def saga_events() -> dict[str, Counter[tuple[str, str]]]:
    """Instance key -> how many events of each (type, saga step) the saga's commands recorded."""
    prefix = f"saga:{SAGA}:"
    found: dict[str, Counter[tuple[str, str]]] = {}
    rows = StoredEvent.objects.filter(event_type__in=MOVEMENTS).values_list(
        "event_type", "metadata"
    )
    for event_type, metadata in rows:
        causation = metadata.get("causation_id") or ""
        if causation.startswith(prefix):
            key = causation[len(prefix) :]
            found.setdefault(key, Counter())[(event_type, metadata["saga_step"])] += 1
    return found


def movements_of(keys: Iterable[str]) -> list[tuple[str, str, int, Decimal]]:
    """(instance key, step, account, signed amount) of every saga movement of ``keys``."""
    wanted = {f"saga:{SAGA}:{key}" for key in keys}
    out = []
    rows = StoredEvent.objects.filter(event_type__in=MOVEMENTS).values_list(
        "event_type", "payload", "metadata"
    )
    for event_type, payload, metadata in rows:
        if metadata.get("causation_id") in wanted:
            sign = -1 if event_type == "testapp.Withdrawn" else 1
            out.append(
                (
                    metadata["causation_id"].rsplit(":", 1)[1],
                    metadata["saga_step"],
                    payload["account_id"],
                    sign * Decimal(payload["amount"]),
                )
            )
    return out


def balances(accounts: Iterable[int]) -> dict[int, Decimal]:
    return dict(Account.objects.filter(pk__in=list(accounts)).values_list("pk", "balance"))


def saga_head() -> int:
    """Position of the last event the saga handles."""
    handled = list(TransferSaga.handled_event_types())
    last = (
        StoredEvent.objects.filter(event_type__in=handled)
        .order_by("-position")
        .values_list("position", flat=True)
        .first()
    )
    return last or 0


def assert_not_parked() -> None:
    assert not ParkedEvent.objects.filter(projection=SAGA).exists()
    assert not TransferRun.objects.exclude(parked_positions=[]).exists()
    assert ProjectionState.objects.get(name=SAGA).state == "live"


def in_threads(*targets: Callable[[], Any], timeout: float = 60) -> list[Any]:
    """Run each target in its own thread (and connection), started together; their results."""
    barrier = threading.Barrier(len(targets))
    results: list[Any] = [None] * len(targets)
    errors: list[BaseException] = []

    def run(index: int, target: Callable[[], Any]) -> None:
        try:
            connection.ensure_connection()  # connected before the start, not after
            barrier.wait(10)
            results[index] = target()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(n, target), name=f"saga-race-{n}")
        for n, target in enumerate(targets)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    if errors:
        raise errors[0]
    return results


def ran() -> int:
    """Instances that ran their steps and wait for their confirmation."""
    return TransferRun.objects.filter(state="awaiting_confirmation").count()


def catch_up_all_of(count: int) -> int:
    """Catch the saga up one event per batch until ``count`` events were read.

    (A catch-up stops early when its events wait behind an open transaction.)
    """
    read, deadline = 0, time.monotonic() + 30
    while read < count and time.monotonic() < deadline:
        read += catch_up(SAGA, batch_size=1)
    return read


def awaiting(transfers: list[Transfer]) -> None:
    """Request the transfers and run their steps: each waits for its confirmation."""
    for transfer in transfers:
        command_bus.dispatch(transfer.command())
    catch_up(SAGA)
    keys = [t.key for t in transfers]
    assert TransferRun.objects.filter(key__in=keys, state="awaiting_confirmation").count() == (
        len(transfers)
    )


# -- a cluster killed between the steps ---------------------------------------------------

#: The cluster runs the saga and nothing else (no async projection competes with it).
SAGA_ONLY = "handlers,projections,sagas"


def mid_batch() -> bool:
    """Another connection is well into a transaction that has written (a saga batch that
    has sent commands and not committed: its handler waits between two steps)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state = 'idle in transaction' "
            "AND backend_xid IS NOT NULL "
            "AND clock_timestamp() - xact_start > interval '60 milliseconds'"
        )
        found: int = cursor.fetchone()[0]
    return found > 0


def wait_until(cluster: Cluster, done: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``done``; when the saga makes no progress for a while, queue a catch-up.

    A catch-up that found events behind an older open transaction retries through a
    django-q2 Schedule, which the cluster reads about every 30 s: the nudge stands in for
    it (a catch-up with nothing to do costs nothing), so the test does not wait for it.
    """
    deadline = time.monotonic() + timeout
    seen, since = ran(), time.monotonic()
    while not done():
        now = time.monotonic()
        if now > deadline:
            pytest.fail(f"{what}: {ran()} ran\n" + cluster.log.read_text(errors="replace")[-3000:])
        if ran() != seen:
            seen, since = ran(), now
        elif now - since > 3:
            cluster.shell(f"from django_cqrs.tasks import enqueue; enqueue({SAGA!r})")
            since = time.monotonic()
        time.sleep(0.005)


def test_a_cluster_killed_between_the_steps_sends_each_command_exactly_once(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    count, kill_after = 200, 30
    accounts = open_accounts(20, "10000")
    transfers = plan(accounts, count)
    cluster = make_cluster(
        CQRS_QCLUSTER_MODULES=SAGA_ONLY,
        CQRS_QCLUSTER_BATCH_SIZE="5",
        CQRS_TEST_SAGA_STEP_DELAY="0.02",  # the worker spends its time between two steps
        CQRS_TEST_CONFIRM_SECONDS="3600",  # no deadline fires during the test
    )
    cluster.start()

    # The transfers are requested by another process while the cluster runs; its commands
    # queue the saga's catch-up through the cluster's broker.
    spec = tmp_path / "transfers.json"
    spec.write_text(json.dumps([t.as_json() for t in transfers]))
    requester_log = tmp_path / "requester.log"
    requester = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "import json, uuid\n"
            "from decimal import Decimal\n"
            "from django_cqrs import command_bus\n"
            "from tests.testapp.commands import RequestTransfer\n"
            f"for key, source, target, amount, fee in json.load(open({str(spec)!r})):\n"
            "    command_bus.dispatch(RequestTransfer(transfer_id=uuid.UUID(key),\n"
            "        source_id=source, target_id=target, amount=Decimal(amount),\n"
            "        fee=Decimal(fee)))\n",
        ],
        cwd=ROOT,
        env=cluster.env,
        stdout=requester_log.open("wb"),
        stderr=subprocess.STDOUT,
    )

    # Kill it once every transfer is requested, some have run, and a worker is in the
    # middle of a batch (5 transfers, 20 ms between the first two steps of each).
    wait_until(
        cluster,
        lambda: requester.poll() is not None and ran() >= kill_after and mid_batch(),
        timeout=40,
        what="no moment to kill",
    )
    cluster.kill(signal.SIGKILL)
    assert requester.returncode == 0, requester_log.read_text(errors="replace")

    # What the killed cluster committed: whole instances only, and not all of them.
    at_kill = saga_events()
    assert kill_after <= ran() == len(at_kill) < count
    assert all(found == RAN + FEE for found in at_kill.values())

    replacement = make_cluster(
        CQRS_QCLUSTER_MODULES=SAGA_ONLY,
        CQRS_QCLUSTER_BATCH_SIZE="5",
        CQRS_TEST_CONFIRM_SECONDS="3600",
    )
    replacement.start()
    # The killed task may still hold the trigger's flag: queue a catch-up explicitly.
    replacement.shell(f"from django_cqrs.tasks import enqueue; enqueue({SAGA!r})")
    wait_until(replacement, lambda: ran() == count, timeout=45, what="after the restart")
    replacement.stop()

    events = saga_events()
    assert set(events) == {t.key for t in transfers}
    wrong = {key: found for key, found in events.items() if found != RAN + FEE}
    assert wrong == {}, "commands sent more than once (or not at all)"
    expected = dict.fromkeys(accounts, Decimal("10000"))
    for t in transfers:
        expected[t.source] -= t.amount
        expected[t.target] += t.amount - t.fee
    assert balances(accounts) == expected
    # Each movement went to the right account, with the right amount.
    assert Counter(movements_of(events)) == Counter(
        item
        for t in transfers
        for item in [
            (t.key, "withdraw", t.source, -t.amount),
            (t.key, "deposit", t.target, t.amount),
            (t.key, "fee", t.target, -t.fee),
        ]
    )
    runs = TransferRun.objects.all()
    assert {tuple((s["step"], s["outcome"]) for s in run.steps) for run in runs} == {
        (("withdraw", "succeeded"), ("deposit", "succeeded"), ("fee", "succeeded"))
    }
    assert_not_parked()
    assert ProjectionState.objects.get(name=SAGA).position >= saga_head()
    assert SagaDeadline.objects.filter(saga=SAGA, fired_at=None, cancelled_at=None).count() == (
        count
    )


# -- a deadline and the event that cancels it, at the same time ----------------------------


@pytest.mark.usefixtures("no_trigger")
def test_a_deadline_and_a_confirmation_racing_for_an_instance_never_both_win() -> None:
    source, target = open_accounts(2, "100000")
    rounds, per_round = 12, 8
    outcomes: Counter[str] = Counter()
    everyone: list[Transfer] = []
    for _ in range(rounds):
        transfers = [Transfer(source, target, Decimal(1 + n), Decimal(1)) for n in range(per_round)]
        awaiting(transfers)
        for t in reversed(transfers):
            command_bus.dispatch(ConfirmTransfer(transfer_id=t.id))

        # The deadlines fire one at a time, oldest first, while the confirmations are
        # caught up one by one, newest instance first: they meet on some instance.
        fired, read = in_threads(
            lambda: fire_due(now=FAR_FUTURE, saga=SAGA),
            lambda: catch_up_all_of(per_round),
        )
        assert read == per_round
        compensated = 0
        events = saga_events()
        for t in transfers:
            run = TransferRun.objects.get(key=t.key)
            steps = [s["step"] for s in run.steps]
            deadline = SagaDeadline.objects.get(saga=SAGA, instance_key=t.key)
            if run.state == "completed":
                assert steps == ["withdraw", "deposit", "fee", "confirmed"]
                assert events[t.key] == RAN + FEE  # no compensation
                assert (deadline.fired_at, deadline.cancelled_at is None) == (None, False)
            else:
                assert run.state == "compensated", (run.state, run.error)
                compensated += 1
                assert steps == [
                    "withdraw",
                    "deposit",
                    "fee",
                    "compensate deposit",
                    "compensate withdraw",
                ]
                assert events[t.key] == RAN + FEE + COMPENSATION
                assert deadline.fired_at is not None
                assert deadline.cancelled_at is None
                assert deadline.attempts == 1
            outcomes[run.state] += 1
        assert fired == compensated
        everyone += transfers

    # Both outcomes happened: the two really raced.
    assert set(outcomes) == {"completed", "compensated"}, outcomes
    assert ProjectionState.objects.get(name=SAGA).position >= saga_head()
    assert_not_parked()
    # Whatever won, the money adds up: a completed transfer moved amount - fee, a
    # compensated one cost the target its fee only.
    expected = {source: Decimal("100000"), target: Decimal("100000")}
    for t in everyone:
        if TransferRun.objects.get(key=t.key).state == "completed":
            expected[source] -= t.amount
            expected[target] += t.amount - t.fee
        else:
            expected[target] -= t.fee
    assert balances(expected) == expected


@pytest.mark.usefixtures("no_trigger")
def test_two_catch_up_workers_on_one_saga_apply_each_event_once() -> None:
    accounts = open_accounts(6, "10000")
    transfers = plan(accounts, 80)
    for t in transfers[:40]:  # a backlog the workers share from the start
        command_bus.dispatch(t.command())
    requesting = threading.Event()
    requesting.set()

    def request() -> int:  # and more while they work
        for t in transfers[40:]:
            command_bus.dispatch(t.command())
        requesting.clear()
        return 0

    def work() -> int:
        # A catch-up stops early when events wait behind an open transaction (the
        # requester's): go on until every transfer has run.
        read = 0
        while requesting.is_set() or ran() < len(transfers):
            read += catch_up(SAGA, batch_size=2)
        return read

    _, first, second = in_threads(request, work, work)

    assert first + second == len(transfers)  # each event read by one worker, once
    assert first > 0, "both did some of the work"
    assert second > 0, "both did some of the work"
    events = saga_events()
    assert {key: found for key, found in events.items() if found != RAN + FEE} == {}
    assert set(events) == {t.key for t in transfers}
    expected = dict.fromkeys(accounts, Decimal("10000"))
    for t in transfers:
        expected[t.source] -= t.amount
        expected[t.target] += t.amount - t.fee
    assert balances(accounts) == expected
    assert TransferRun.objects.filter(state="awaiting_confirmation").count() == len(transfers)
    assert ProjectionState.objects.get(name=SAGA).position >= saga_head()
    assert_not_parked()


# -- a deadline fired by several processes at once -----------------------------------------

#: Calls fire_due at the signal, counting the deadlines it took up (``_fire`` calls) and
#: those it fired; ``{ready}`` and ``{go}`` are the paths of the two signal files.
FIRE = """
import datetime as dt, time
from pathlib import Path
from django.utils import timezone
from django_cqrs.sagas import deadlines
from tests.test_sagas_workers import counting
tried = []
deadlines._fire = counting(deadlines._fire, tried)
deadlines.fire_due(now=timezone.now() - dt.timedelta(days=365))  # connected, code loaded
Path({ready!r}).touch()
while not Path({go!r}).exists():
    time.sleep(0.001)
fired = deadlines.fire_due(now=timezone.now() + dt.timedelta(days=365))
print("FIRED", fired, len(tried))
"""


def counting(fire: Callable[..., int], tried: list[int]) -> Callable[..., int]:
    """``deadlines._fire`` that notes each deadline it takes up, after a pause of 2 ms (so
    that the three take turns, whichever starts first)."""

    def take_up(pk: int, *args: Any) -> int:
        tried.append(pk)
        time.sleep(0.002)
        return fire(pk, *args)

    return take_up


def test_a_deadline_fired_by_three_processes_at_once_fires_once(
    cluster_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, target = open_accounts(2, "100000")
    transfers = [Transfer(source, target, Decimal(1 + n % 9), Decimal(1)) for n in range(40)]
    awaiting(transfers)

    # Two other processes and this one call fire_due at the same instant: each connects,
    # says it is ready, and waits for the signal to go.
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{n}" for n in range(2)]
    others = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", FIRE.format(ready=str(r), go=str(go))],
            cwd=ROOT,
            env={**cluster_env, "CQRS_QCLUSTER_MODULES": SAGA_ONLY},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in ready
    ]
    tried: list[int] = []
    monkeypatch.setattr(deadlines, "_fire", counting(deadlines._fire, tried))
    fire_due(now=timezone.now() - dt.timedelta(days=365))
    deadline = time.monotonic() + 30
    while not all(r.exists() for r in ready):
        assert time.monotonic() < deadline, [o.poll() for o in others]
        time.sleep(0.01)
    go.touch()
    fired, took_up = [fire_due(now=FAR_FUTURE)], [len(tried)]
    for other in others:
        out, _ = other.communicate(timeout=60)
        assert other.returncode == 0, out
        counts = out.rsplit("FIRED", 1)[1].split()
        fired.append(int(counts[0]))
        took_up.append(int(counts[1]))

    assert sum(fired) == len(transfers), fired  # each deadline fired by exactly one of them
    # They raced: deadlines were taken up by more than one of them (and fired by one).
    assert sum(took_up) > len(transfers), took_up
    events = saga_events()
    wrong = {
        t.key: events.get(t.key) for t in transfers if events.get(t.key) != RAN + FEE + COMPENSATION
    }
    assert wrong == {}, "a deadline's compensation ran more than once (or not at all)"
    rows = SagaDeadline.objects.filter(saga=SAGA)
    assert {(d.fired_at is not None, d.cancelled_at, d.attempts) for d in rows} == {(True, None, 1)}
    assert set(TransferRun.objects.values_list("state", flat=True)) == {"compensated"}
    fees = sum((t.fee for t in transfers), Decimal(0))
    assert balances([source, target]) == {
        source: Decimal("100000"),
        target: Decimal("100000") - fees,
    }
    assert_not_parked()
