"""django-q2 task functions and the triggers that queue them.

Tasks take plain arguments (a projection name), never pickled payloads:

    django_cqrs.tasks.catch_up_task("orders.CustomerSummaryProjection")
    django_cqrs.tasks.catch_up_all()           # the periodic schedule runs this
    django_cqrs.tasks.catch_up_now("orders.CustomerSummaryProjection")  # after a resume
    django_cqrs.tasks.catch_up_budget()        # seconds a task runs before it queues the next

When an event handled by an async projection is recorded, a catch-up task for that
projection is queued, at most one at a time: the ``ProjectionTrigger`` row is flagged
with a conditional upsert and only the command that sets the flag queues a task; the
task clears the flag before it reads, so events committed later queue a new one. With
django-q2's ORM broker on the same database the task is queued inside the command's
transaction and commits with the events (a transactional outbox); with another broker,
or with ``Q_CLUSTER["sync"]``, it is queued after commit. A periodic schedule
(``CATCHUP_SCHEDULE_MINUTES``) catches up whatever a lost task missed. A task stops after
its time budget (``catch_up_budget()``, below the cluster's ``timeout``) and queues the
next one, so a long backlog is caught up by a chain of tasks that are never killed.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from . import telemetry
from .conf import cqrs_settings
from .context import detached
from .db.upserts import set_if_null
from .events import Event, EventEnvelope
from .models import ProjectionTrigger, SagaDeadline
from .projections import ASYNC, all_projections
from .projections.catchup import CatchUp, run_catch_up
from .sagas.base import all_sagas
from .sagas.deadlines import fire_due

logger = logging.getLogger("django_cqrs")

CATCH_UP_TASK = "django_cqrs.tasks.catch_up_task"
CATCH_UP_ALL_TASK = "django_cqrs.tasks.catch_up_all"
FIRE_DEADLINES_TASK = "django_cqrs.tasks.fire_deadlines_task"
#: Seconds a catch-up task waits for events an open transaction holds back (a saga's
#: batch records events while it runs) before it leaves them to a scheduled retry, which
#: django-q2's scheduler starts up to half a minute late.
HELD_BACK_WAIT_SECONDS = 2.0
SCHEDULE_NAME = "django_cqrs: catch up async projections"


#: A catch-up task spends this share of the cluster's timeout (or retry) before it stops.
BUDGET_SHARE = 0.5
#: Seconds of the timeout a budget must leave for the last batch (besides LOCK_TIMEOUT).
BATCH_ROOM_SECONDS = 5.0


F = TypeVar("F", bound=Callable[..., Any])


def task(func: F) -> F:
    """A task runs for no command, even when django-q2 runs it inline after a commit.

    With ``Q_CLUSTER["sync"]`` a catch-up queued by a command's ``on_commit`` hook runs
    while that command's dispatch context is still active: without this, the commands a
    saga sends there would count as the committed command's own (its ``CQRS-Position``,
    its versions, its correlation id).
    """

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with detached():
            return func(*args, **kwargs)

    return cast(F, run)


#: The key of ``catch_up_task``'s ``trace`` that carries the queuing command's correlation id.
TRACE_CORRELATION = "cqrs-correlation-id"


@task
def catch_up_task(name: str, trace: Mapping[str, str] | None = None) -> int:
    """django-q2 task: clear the trigger flag, then catch ``name`` up; return events read.

    It stops after :func:`catch_up_budget` seconds and queues the next task, so no task
    runs into the cluster's ``timeout`` however long the backlog. ``trace``: the W3C
    headers of the span that queued it (and its correlation id), so that the task's
    ``cqrs.catch_up`` span is that span's child.
    """
    ProjectionTrigger.objects.using(cqrs_settings.DATABASE).filter(name=name).update(queued_at=None)
    attributes = {
        "cqrs.projection": name,
        telemetry.CORRELATION_ID: (trace or {}).get(TRACE_CORRELATION),
    }
    with telemetry.use_trace_headers(trace), telemetry.span("cqrs.catch_up", attributes) as span:
        outcome = run_catch_up(name, deadline=_deadline(), wait_held_back=HELD_BACK_WAIT_SECONDS)
        span.set_attribute("cqrs.events_read", outcome.read)
        return follow_up(name, outcome)


@task
def catch_up_all() -> dict[str, int]:
    """django-q2 task: catch every async projection up (the periodic safety net).

    The projections share one time budget (the first always gets a batch); those it
    leaves behind get a task of their own. Saga deadlines that are overdue (their task
    was lost, or no worker ran when they were due) fire here: late rather than never.
    """
    names = [cls.name for cls in all_projections() if cls.mode == ASYNC]
    # Lower the flags first: if a queued task was lost, commands can queue again.
    ProjectionTrigger.objects.using(cqrs_settings.DATABASE).filter(name__in=names).update(
        queued_at=None
    )
    deadline = _deadline()
    read: dict[str, int] = {}
    for name in names:
        if read and deadline is not None and time.monotonic() >= deadline:
            read[name] = follow_up(name, CatchUp(0, more=True))  # a task of its own
        else:
            read[name] = follow_up(name, run_catch_up(name, deadline=deadline))
    fire_due()
    return read


@task
def fire_deadlines_task() -> int:
    """django-q2 task: fire the saga deadlines that are due; return how many fired.

    The sagas with a due deadline catch up first, so an event that arrived before the
    deadline (a payment, just in time) is handled before it and cancels it.
    """
    due = {
        name
        for name in SagaDeadline.objects.using(cqrs_settings.DATABASE)
        .filter(fired_at__isnull=True, cancelled_at__isnull=True, due_at__lte=timezone.now())
        .values_list("saga", flat=True)
    }
    sagas = {cls.name: cls for cls in all_sagas()}
    for name in sorted(due):
        saga = sagas.get(name)
        for part in saga.partition_classes if saga is not None and saga.mode == ASYNC else ():
            outcome = run_catch_up(
                part, deadline=_deadline(), wait_held_back=HELD_BACK_WAIT_SECONDS
            )
            follow_up(part.name, outcome)
    return fire_due()


def on_deadline_scheduled(sender: Any, due_at: dt.datetime, **kwargs: Any) -> None:
    """``saga_deadline_scheduled`` receiver: a one-off task at ``due_at``, after commit."""
    transaction.on_commit(
        functools.partial(_schedule_deadline_task, due_at), using=cqrs_settings.DATABASE
    )


def _schedule_deadline_task(due_at: dt.datetime) -> None:
    try:
        from django_q.models import Schedule

        Schedule.objects.create(
            name=f"cqrs deadline {due_at.timestamp():.3f}"[:100],
            func=FIRE_DEADLINES_TASK,
            schedule_type=Schedule.ONCE,
            next_run=due_at,
            repeats=1,
        )
    except Exception:
        logger.exception("Could not schedule a saga deadline; the periodic schedule fires it")


def follow_up(name: str, outcome: CatchUp) -> int:
    """Schedule what a catch-up of ``name`` asks for (a retry, or the rest of its backlog);
    return the events it read."""
    if outcome.retry_at is not None:
        schedule_retry(name, outcome.retry_at)
    if outcome.more:
        _request_robust(name)
    return outcome.read


def catch_up_budget() -> float | None:
    """Seconds a catch-up task runs before it queues the next one (None: no limit).

    ``CATCHUP_TIME_BUDGET`` when set; else half of ``Q_CLUSTER["timeout"]`` or of
    ``"retry"`` (django-q2's default: 60 s), whichever is shorter: the worker kills a task
    at its timeout, and a broker that redelivers unacknowledged tasks hands one running
    past ``retry`` to a second worker. With ``Q_CLUSTER["sync"]`` tasks run in the
    caller, where nothing stops them: no limit.
    """
    conf = _q_cluster()
    if conf.get("sync"):
        return None
    configured = cqrs_settings.CATCHUP_TIME_BUDGET
    if configured is not None:
        return float(configured)
    limits = [_number(conf.get("timeout")), _number(conf.get("retry", 60))]
    known = [limit for limit in limits if limit is not None]
    return min(known) * BUDGET_SHARE if known else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def _deadline() -> float | None:
    budget = catch_up_budget()
    return None if budget is None else time.monotonic() + budget


def _q_cluster() -> dict[str, Any]:
    return dict(getattr(settings, "Q_CLUSTER", {}) or {})


def queue_inside_transaction() -> bool:
    """True when the task row can commit with the events (ORM broker, same database)."""
    conf = _q_cluster()
    if conf.get("sync"):
        return False
    return conf.get("orm") == cqrs_settings.DATABASE and not any(
        conf.get(key) for key in ("redis", "sqs", "iron_mq", "mongo", "broker_class")
    )


def trace_context() -> dict[str, str]:
    """What a task queued now carries to continue the current trace: the current span's
    W3C headers and correlation id; ``{}`` without a span (or without tracing)."""
    trace = telemetry.trace_headers()
    if trace:
        correlation = telemetry.current_correlation_id()
        if correlation:
            trace[TRACE_CORRELATION] = correlation
    return trace


#: The trace a catch-up queued after a commit continues: the one current when its event
#: was recorded (None: the one current when it is queued).
_queued_trace: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "django_cqrs_queued_trace", default=None
)


def enqueue(name: str) -> None:
    """Queue a catch-up task for ``name``; it continues the current trace."""
    # django_q's modules load its models: imported here, once apps are ready and only
    # where async projections run (django_q may be absent from INSTALLED_APPS).
    from django_q.tasks import async_task

    trace = _queued_trace.get()
    if trace is None:
        trace = trace_context()
    kwargs: dict[str, Any] = {"trace": dict(trace)} if trace else {}
    async_task(
        CATCH_UP_TASK, name, task_name=f"cqrs-catch-up {name}"[:100], group="django_cqrs", **kwargs
    )


def request_catch_up(name: str) -> bool:
    """Queue a catch-up for ``name`` unless one is already queued; True if queued now."""
    using = cqrs_settings.DATABASE
    # One statement per command: the flag is set only where it is down (rowcount 0
    # means a catch-up is already queued).
    flagged = set_if_null(ProjectionTrigger, "name", name, "queued_at", timezone.now(), using=using)
    if flagged:
        try:
            enqueue(name)
        except Exception:
            # Lower the flag again, or no later command would queue a catch-up.
            ProjectionTrigger.objects.using(using).filter(name=name).update(queued_at=None)
            raise
    return flagged


def catch_up_now(name: str) -> None:
    """Queue a catch-up of ``name`` for the workers once the caller's transaction commits.

    Resume, retry and skip (admin actions and management commands) call it, so a
    projection that may run again catches up at once rather than at the next periodic
    schedule. It queues even when the flag says a task is queued already (that task may
    have been lost with its worker; a second catch-up finds nothing to do). A broker that
    cannot be reached is logged: the periodic schedule catches up.
    """
    transaction.on_commit(functools.partial(_queue_now, name), using=cqrs_settings.DATABASE)


def _queue_now(name: str) -> None:
    ProjectionTrigger.objects.using(cqrs_settings.DATABASE).filter(name=name).update(queued_at=None)
    _request_robust(name)


def _async_projection_names(event_type: type[Event]) -> list[str]:
    return [
        cls.name for cls in all_projections() if cls.mode == ASYNC and event_type in cls.handlers
    ]


def on_event_recorded(
    sender: type[Event], event: Event, envelope: EventEnvelope, **kwargs: Any
) -> None:
    """``event_recorded`` receiver: queue a catch-up of the async projections of ``sender``."""
    if not cqrs_settings.TRIGGER_ON_COMMIT:
        return
    names = _async_projection_names(sender)
    if not names:
        return
    using = cqrs_settings.DATABASE
    if queue_inside_transaction():
        for name in names:
            request_catch_up(name)
    else:
        # The task continues the trace of the command, whatever is current at the commit.
        trace = trace_context()
        for name in names:
            transaction.on_commit(functools.partial(_request_robust, name, trace), using=using)


def _request_robust(name: str, trace: Mapping[str, str] | None = None) -> None:
    # After commit, a broker outage must not turn the committed command into an error;
    # the periodic schedule catches up.
    token = _queued_trace.set(trace)
    try:
        request_catch_up(name)
    except Exception:
        logger.exception("Could not queue a catch-up for %s; the schedule will catch up", name)
    finally:
        _queued_trace.reset(token)


def schedule_retry(name: str, when: dt.datetime) -> None:
    """Queue a one-off catch-up of ``name`` at ``when`` (after a failure's backoff)."""
    try:
        from django_q.models import Schedule

        Schedule.objects.create(
            name=f"cqrs retry {name} {when.timestamp():.3f}"[:100],
            func=CATCH_UP_TASK,
            args=repr(name),
            schedule_type=Schedule.ONCE,
            next_run=when,
            repeats=1,
        )
    except Exception:
        logger.exception("Could not schedule a retry of %s; the schedule will catch up", name)


def ensure_schedule(**kwargs: Any) -> None:
    """``post_migrate`` receiver: keep the periodic catch-up schedule in place."""
    if not any(cls.mode == ASYNC for cls in all_projections()):
        return
    from django_q.models import Schedule

    using = kwargs.get("using") or "default"
    with connections[using].cursor() as cursor:
        if Schedule._meta.db_table not in connections[using].introspection.table_names(cursor):
            return  # `migrate django_cqrs` before django_q's own tables exist
    minutes = int(cqrs_settings.CATCHUP_SCHEDULE_MINUTES)
    Schedule.objects.using(using).update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": CATCH_UP_ALL_TASK,
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
        },
    )
