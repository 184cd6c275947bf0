"""Run the async projections and sagas to completion inside a test, without a worker.

    from django_cqrs.testing import run_async_projections

    command_bus.dispatch(PlaceOrder(...))
    run_async_projections()              # summaries caught up, the checkout run to its end
    assert CustomerSummary.objects.get(pk=ada).order_count == 1

Each round catches up every async projection and saga (each partition of a saga; by
name, in the log's order, as the workers would) and fires the saga deadlines due at
``timezone.now()`` (a :class:`~django_cqrs.testing.FrozenClock`'s time while one runs);
a saga's commands record new events, so rounds go on until one reads nothing and fires
nothing.

**The rule: it reads what the test's connection can read.** In a ``django_db`` test
(the test in one transaction, rolled back at the end) that is everything the test did:
on PostgreSQL a reader inside a transaction that has written reads its own events,
uncommitted; on SQLite there is one writer anyway. In a ``django_db(transaction=True)``
test the commands have committed. Either way, an event committed by *another*
connection after a transaction that is still open (a thread of the test holding one, a
worker) waits behind it, as it does in production (the horizon, see ``store``): the
helper waits up to ``timeout`` seconds for it, then fails naming who holds it back.

A failure fails the test: an event a projection or saga could not apply (its
traceback in the message) or a deadline whose handler raised; ``raise_errors=False``
leaves them to the test (retries, parking), as the workers would.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from django.db.models import Q

from .. import store
from ..conf import cqrs_settings
from ..db.log import oldest_open_transaction
from ..models import ParkedEvent, ProjectionState, SagaDeadline
from ..projections.base import Projection, all_projections, get_projection
from ..projections.catchup import run_catch_up
from ..projections.checkpoints import ensure_state
from ..projections.registry import ASYNC
from ..sagas.base import Saga
from ..sagas.deadlines import fire_due

#: Rounds before the helper decides that the consumers feed each other for ever.
MAX_ROUNDS = 100
#: Seconds between two looks at events held back by another connection's transaction.
HELD_BACK_PAUSE = 0.05

_PENDING = Q(fired_at__isnull=True, cancelled_at__isnull=True)


def async_consumers(names: Iterable[str | type[Projection]] = ()) -> list[type[Projection]]:
    """The async projections and sagas named (default: every one), by name; a saga named
    comes with all its partitions."""
    chosen = [get_projection(n) if isinstance(n, str) else n for n in names]
    found = {part for cls in chosen for part in cls.runs()}
    found = found or {cls for cls in all_projections() if cls.mode == ASYNC}
    return sorted(found, key=lambda cls: cls.name)


def run_async_projections(
    *names: str | type[Projection],
    deadlines: bool = True,
    raise_errors: bool = True,
    timeout: float = 5.0,
) -> int:
    """Catch up the async projections and sagas (``names``: these only) until nothing is
    left, firing due deadlines (``deadlines``); return the events read."""
    consumers = async_consumers(names)
    using = cqrs_settings.DATABASE
    for cls in consumers:
        ensure_state(cls.name, using)
    # Deadlines carry the saga's name, whichever partition runs the instance.
    sagas = sorted({cls.saga_class.name for cls in consumers if issubclass(cls, Saga)})
    parked_before = set(ParkedEvent.objects.using(using).values_list("pk", flat=True))
    deadline_errors = _deadline_attempts(sagas)
    give_up = time.monotonic() + timeout
    total = 0
    for _ in range(MAX_ROUNDS):
        read = sum(run_catch_up(cls).read for cls in consumers)
        fired = sum(fire_due(saga=name) for name in sagas) if deadlines and sagas else 0
        total += read
        if read or fired:
            continue
        held = _held_back(consumers, using)
        if not held:
            break
        if time.monotonic() >= give_up:
            raise AssertionError(_held_back_text(held, using, timeout))
        time.sleep(HELD_BACK_PAUSE)
    else:
        raise AssertionError(
            f"run_async_projections() was still reading events after {MAX_ROUNDS} rounds: "
            "do sagas dispatch commands whose events start them again?"
        )
    if raise_errors:
        _raise_failures(consumers, sagas, parked_before, deadline_errors, using)
    return total


def _deadline_attempts(sagas: list[str]) -> dict[int, int]:
    using = cqrs_settings.DATABASE
    pending = SagaDeadline.objects.using(using).filter(_PENDING, saga__in=sagas)
    return dict(pending.values_list("pk", "attempts"))


def _held_back(consumers: list[type[Projection]], using: str) -> list[str]:
    """The live consumers with committed events they could not read yet."""
    states = {
        state.name: state
        for state in ProjectionState.objects.using(using).filter(
            name__in=[cls.name for cls in consumers]
        )
    }
    held = []
    for cls in consumers:
        state = states.get(cls.name)
        if state is None or state.state != ProjectionState.State.LIVE or state.failing_position:
            continue
        waiting = store.read_rows(
            after=state.point,
            limit=1,
            event_types=cls.handled_event_types(),
            horizon=None,
            using=using,
        )
        if waiting:
            held.append(cls.name)
    return held


def _held_back_text(held: list[str], using: str, timeout: float) -> str:
    holder = oldest_open_transaction(using)
    who = (
        f"the transaction of backend pid {holder.pid} ({holder.state}, open since "
        f"{holder.started_at:%H:%M:%S})"
        if holder is not None
        else "another connection's open transaction"
    )
    return (
        f"Events committed for {', '.join(held)} stayed unreadable for {timeout:g} s: they "
        f"wait behind {who}, which began before they were committed. End that "
        "transaction, or make the events in the test's own connection."
    )


def _raise_failures(
    consumers: list[type[Projection]],
    sagas: list[str],
    parked_before: set[int],
    deadline_errors: dict[int, int],
    using: str,
) -> None:
    names = [cls.name for cls in consumers]
    problems = []
    failing = ProjectionState.objects.using(using).filter(
        name__in=names, failing_position__isnull=False
    )
    for state in failing:
        problems.append(
            f"{state.name} failed on the event at position {state.failing_position} "
            f"(attempt {state.attempts}):\n{state.last_error}"
        )
    parked = (
        ParkedEvent.objects.using(using)
        .filter(projection__in=names)
        .exclude(pk__in=parked_before)
        .order_by("position")
    )
    for event in parked:
        problems.append(
            f"{event.projection} parked the event at position {event.position} "
            f"({event.event_type}): {event.error}\n{event.traceback}"
        )
    pending = SagaDeadline.objects.using(using).filter(_PENDING, saga__in=sagas)
    for deadline in pending.exclude(last_error=""):
        if deadline.attempts > deadline_errors.get(deadline.pk, 0):
            problems.append(
                f"{deadline.saga}: the deadline {deadline.name!r} of {deadline.instance_key} "
                f"failed:\n{deadline.last_error}"
            )
    if problems:
        raise AssertionError(
            "run_async_projections() met failures (raise_errors=False leaves them to the "
            "test):\n\n" + "\n\n".join(problems)
        )
