"""Relays: consumers of the log that publish its events to a broker, at least once.

    # settings.py
    DJANGO_CQRS = {
        "RELAYS": {
            "bus": {"BACKEND": "rabbitmq", "URL": "amqp://guest:guest@127.0.0.1:5672/",
                    "EXCHANGE": "shop.events", "EVENTS": ["orders.*"]},
        },
    }

Each relay is an async projection named ``relays.<name>`` (so ``cqrs_status``, the
dashboard, ``/cqrs/health/``, ``cqrs_pause`` and the periodic catch-up know it), whose
batch is run by :func:`run_relay_batch` instead of being applied to read models:

1. in a short transaction, the state row is locked, the batch read after the checkpoint
   (in the log's order, below the horizon: as every async projection reads) and a
   lease taken for this worker (``RELAY_LEASE_SECONDS``);
2. outside any transaction, each event is decoded and turned into a CloudEvent
   (:mod:`~django_cqrs.relays.cloudevents`), then the batch is published in log order and
   the broker's confirmations awaited (publisher confirms; JetStream acks);
3. in a second short transaction, the checkpoint moves (compare-and-set) and the lease
   ends.

A crash before 3 publishes the batch again (at least once; the ids are the same). A
broker that does not confirm fails the batch: it is retried with backoff, without limit,
from the same checkpoint. An event that cannot be decoded is parked at once, after the
events before it were published. No database transaction stays open while a broker is
awaited, so a slow broker holds back no other reader of the log.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .. import metrics, telemetry
from ..conf import cqrs_settings
from ..db.log import LogPoint
from ..events import Event, registered_event_types
from ..exceptions import ConfigurationError, ProjectionError
from ..models import ProjectionState
from ..projections.base import Projection, projections
from ..projections.batches import apply_error
from ..projections.catchup import (
    LEASED,
    Batch,
    BatchOutcome,
    batch_runners,
    move_checkpoint,
    read_batch,
)
from ..projections.checkpoints import ensure_state, lock_state
from ..projections.registry import ASYNC
from ..store import EventRow, point_of
from .cloudevents import CONTENT_TYPE, TRACE_KEYS, cloudevent, event_source, structured
from .loop import run

logger = logging.getLogger("django_cqrs")

#: Where a relay's name puts it among the projections: ``relays.<name>``.
NAME_PREFIX = "relays."

#: The backends by the name ``BACKEND`` takes; any other value is the dotted path of a
#: :class:`Publisher` class.
BACKENDS = {
    "rabbitmq": "django_cqrs.relays.amqp.RabbitMQPublisher",
    "nats": "django_cqrs.relays.jetstream.JetStreamPublisher",
}

#: The keys every relay takes, with their defaults.
COMMON_OPTIONS: dict[str, Any] = {
    "BACKEND": None,
    # Stored event names, or fnmatch patterns of them ("orders.*"), to send.
    "EVENTS": ["*"],
    # Events read and published per batch.
    "BATCH_SIZE": 1000,
    # After parking an event it cannot encode: "stop" (keep each aggregate's order) or
    # "skip" it and go on.
    "ON_FAILURE": "stop",
    # Seconds a batch waits for the broker's confirmations (then it is retried).
    "PUBLISH_TIMEOUT": 10.0,
    # Longest delay in seconds between attempts while the broker does not confirm.
    "RETRY_BACKOFF_MAX": 30.0,
}


@dataclass(frozen=True)
class Message:
    """One event as a broker message: its CloudEvent and the wire form of it."""

    #: The CloudEvents id: stable across resends (AMQP ``message_id``, ``Nats-Msg-Id``).
    id: str
    #: The stored event name (the CloudEvents ``type``): the routing key or subject's end.
    type: str
    body: bytes
    attributes: Mapping[str, Any]
    content_type: str = CONTENT_TYPE
    headers: Mapping[str, str] = field(default_factory=dict)


class Publisher(Protocol):
    """A broker connection that publishes messages and awaits their confirmation."""

    #: Option name -> default (None: required) for this backend, besides COMMON_OPTIONS.
    OPTIONS: ClassVar[dict[str, Any]]

    def __init__(self, relay: str, options: Mapping[str, Any]) -> None: ...

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish in order; return once the broker confirmed every message (else raise)."""

    async def close(self) -> None: ...


class RelayError(ProjectionError):
    """A relay's broker did not take a batch (it is retried from the same checkpoint)."""


class Relay(Projection):
    """The base class of relays; each configured relay is a subclass made by :func:`configure`."""

    abstract = True
    mode = ASYNC
    kind = "relay"
    #: Its effects are messages already sent: there is nothing to rebuild (replay instead).
    rebuildable = False
    #: A broker that is down is waited for, not given up on: only events that cannot be
    #: encoded are parked.
    max_retries = 2**31
    #: The relay's name in ``DJANGO_CQRS["RELAYS"]``.
    relay_name: ClassVar[str] = ""
    #: Its settings, defaults filled in.
    options: ClassVar[dict[str, Any]] = {}
    #: Its publisher's class.
    publisher_class: ClassVar[type[Publisher]]

    @classmethod
    def message(cls, row: EventRow, source: str) -> Message:
        """The broker message of a stored event (raises when it cannot be decoded)."""
        attributes = cloudevent(row, source=source)
        headers = {key: attributes[key] for key in TRACE_KEYS if key in attributes}
        return Message(
            id=attributes["id"],
            type=attributes["type"],
            body=structured(attributes),
            attributes=attributes,
            headers=headers,
        )


def matching_events(options: Mapping[str, Any]) -> list[type[Event]]:
    """The registered event classes whose stored name an ``EVENTS`` entry matches."""
    patterns = list(options.get("EVENTS") or [])
    classes = {cls for cls in registered_event_types().values()}
    return sorted(
        (cls for cls in classes if any(fnmatch.fnmatchcase(cls.event_type, p) for p in patterns)),
        key=lambda cls: cls.event_type,
    )


# -- configuration --------------------------------------------------------------------


def options_of(name: str, config: Any) -> tuple[dict[str, Any], list[str]]:
    """A relay's options with defaults filled in, and what is wrong with them (check E020)."""
    if not isinstance(config, Mapping):
        return {}, [f"RELAYS[{name!r}] must be a dict of options, not {type(config).__name__}"]
    problems: list[str] = []
    backend = config.get("BACKEND")
    publisher: Any = None
    if not isinstance(backend, str) or not backend:
        problems.append(f"RELAYS[{name!r}]['BACKEND'] is required: 'rabbitmq' or 'nats'")
    else:
        try:
            publisher = import_string(BACKENDS.get(backend, backend))
        except ImportError as exc:
            extra = {"rabbitmq": "rabbitmq", "nats": "nats"}.get(backend)
            hint = f" (install django-cqrs-toolkit[{extra}])" if extra else ""
            problems.append(
                f"RELAYS[{name!r}]['BACKEND'] {backend!r} cannot be loaded{hint}: {exc}"
            )
    backend_options: dict[str, Any] = dict(getattr(publisher, "OPTIONS", {}))
    known = {**COMMON_OPTIONS, **backend_options}
    unknown = sorted(set(config) - set(known))
    if unknown and publisher is not None:
        problems.append(f"RELAYS[{name!r}] has unknown option(s): {', '.join(unknown)}")
    options = {**known, **config, "PUBLISHER": publisher}
    for key, default in backend_options.items():
        if default is None and not options.get(key):
            problems.append(f"RELAYS[{name!r}][{key!r}] is required by the {backend} backend")
    events = options["EVENTS"]
    if (
        isinstance(events, str)
        or not isinstance(events, list | tuple)
        or not all(isinstance(item, str) and item for item in events)
    ):
        problems.append(f"RELAYS[{name!r}]['EVENTS'] must be a list of event names or patterns")
    size = options["BATCH_SIZE"]
    if type(size) is not int or size < 1:
        problems.append(f"RELAYS[{name!r}]['BATCH_SIZE'] must be a positive int, not {size!r}")
    if options["ON_FAILURE"] not in ("stop", "skip"):
        problems.append(f"RELAYS[{name!r}]['ON_FAILURE'] must be 'stop' or 'skip'")
    for key in ("PUBLISH_TIMEOUT", "RETRY_BACKOFF_MAX"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            problems.append(f"RELAYS[{name!r}][{key!r}] must be a positive number of seconds")
    if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
        problems.append(f"RELAYS key {name!r}: use letters, digits, '-' and '_' only")
    return options, problems


_configured: dict[str, type[Relay]] = {}


def configure() -> list[type[Relay]]:
    """(Re)make the relay classes from ``DJANGO_CQRS["RELAYS"]`` and register them.

    Called when the app is ready and when the setting changes; a relay whose settings are
    wrong is left out (the system check ``django_cqrs.E020`` says why).
    """
    for cls in _configured.values():
        projections.unregister(cls)
    _configured.clear()
    try:
        relays = cqrs_settings.RELAYS
    except (ConfigurationError, TypeError, ValueError):
        return []  # DJANGO_CQRS itself is wrong: checks E001 and E003 report it
    if not isinstance(relays, Mapping):
        return []
    for name, config in relays.items():
        options, problems = options_of(str(name), config)
        if problems:
            logger.error("relay %s is not running: %s", name, "; ".join(problems))
            continue
        cls = type(
            f"Relay[{name}]",
            (Relay,),
            {
                "__module__": __name__,
                "__qualname__": f"Relay[{name}]",
                "name": NAME_PREFIX + str(name),
                "relay_name": str(name),
                "options": options,
                "publisher_class": options["PUBLISHER"],
                "batch_size": options["BATCH_SIZE"],
                "on_failure": options["ON_FAILURE"],
                "retry_backoff_max": float(options["RETRY_BACKOFF_MAX"]),
            },
        )
        # The events it sends, matched once: what the trigger and each batch read
        # (Projection.handled_event_types, aliases included).
        cls.handlers = {event: "message" for event in matching_events(options)}
        _configured[str(name)] = cls
    return list(_configured.values())


def all_relays() -> list[type[Relay]]:
    """The running relays, in settings order."""
    return list(_configured.values())


def get_relay(name: str) -> type[Relay]:
    """The relay called ``name`` (or ``relays.<name>``), or ``ProjectionError`` listing them."""
    key = name[len(NAME_PREFIX) :] if name.startswith(NAME_PREFIX) else name
    cls = _configured.get(key)
    if cls is None:
        known = ", ".join(sorted(_configured)) or "none"
        raise ProjectionError(f"No relay is named {name!r}. Relays: {known}")
    return cls


# -- publishing -----------------------------------------------------------------------

_publishers: dict[str, tuple[Mapping[str, Any], Publisher]] = {}
_publishers_lock = threading.Lock()


def publisher(cls: type[Relay]) -> Publisher:
    """This process's publisher of ``cls`` (one connection per relay, kept between batches)."""
    with _publishers_lock:
        known = _publishers.get(cls.relay_name)
        if known is not None and known[0] is cls.options:
            return known[1]
        made = cls.publisher_class(cls.relay_name, cls.options)
        _publishers[cls.relay_name] = (cls.options, made)
    if known is not None:
        discard(cls.relay_name, known[1])
    return made


def discard(relay: str, made: Publisher | None = None) -> None:
    """Close and forget ``relay``'s publisher (the next batch connects again)."""
    with _publishers_lock:
        known = _publishers.get(relay)
        if known is not None and (made is None or known[1] is made):
            del _publishers[relay]
            made = known[1]
    if made is not None:
        try:
            run(made.close(), timeout=5.0)
        except Exception:
            logger.debug("closing %s's publisher failed", relay, exc_info=True)


def lease_owner() -> str:
    """Who takes a lease: this host, process and thread, and a token for this batch."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


def run_relay_batch(
    cls: type[Relay], *, batch_size: int | None = None, before: LogPoint | None = None
) -> BatchOutcome:
    """Publish at most one batch after the checkpoint (before ``before``); then move it."""
    using = cqrs_settings.DATABASE
    owner = lease_owner()
    with transaction.atomic(using=using):
        state = lock_state(cls.name, using)
        now = timezone.now()
        if state.lease_owner and state.lease_until and state.lease_until > now:
            return BatchOutcome(0, state.position, True, LEASED, retry_at=state.lease_until)
        batch = read_batch(cls, state, batch_size=batch_size, before=before, using=using)
        if isinstance(batch, BatchOutcome):
            return batch
        lease = dt.timedelta(seconds=float(cqrs_settings.RELAY_LEASE_SECONDS))
        ProjectionState.objects.using(using).filter(name=cls.name).update(
            lease_owner=owner, lease_until=now + lease
        )
    try:
        return _publish(cls, batch, owner, using)
    except BaseException:
        _end_lease(cls, owner, using)
        raise


def _publish(cls: type[Relay], batch: Batch, owner: str, using: str) -> BatchOutcome:
    source = event_source()
    messages: list[Message] = []
    sent: list[EventRow] = []
    end, failure = batch.end, None
    for i, row in enumerate(batch.rows):
        if row.position in batch.skip:
            sent.append(row)
            continue
        try:
            messages.append(cls.message(row, source))
        except Exception as exc:
            failure = apply_error(cls, row, exc, retryable=False)
            failure.__cause__ = exc
            end = batch.rows[i - 1].point if i else batch.start
            break
        sent.append(row)
    if messages:
        started = time.monotonic()
        attributes = {
            "cqrs.relay": cls.relay_name,
            "cqrs.events": len(messages),
            "cqrs.position.from": batch.start.position,
            "cqrs.position.to": end.position,
        }
        with telemetry.span(f"cqrs.relay {cls.relay_name}", attributes) as span:
            made = publisher(cls)
            try:
                run(made.publish(messages), timeout=float(cls.options["PUBLISH_TIMEOUT"]))
            except Exception as exc:
                span.record_exception(exc)
                discard(cls.relay_name, made)
                first = sent[0] if sent else batch.rows[0]
                error = RelayError(f"{cls.name}: the broker did not take the batch: {exc}")
                raise apply_error(cls, first, error, retryable=True) from exc
        metrics.observe_relay_batch(cls.relay_name, len(messages), time.monotonic() - started)
        metrics.relay_published(cls.relay_name, len(messages))
    if end != batch.start:
        with transaction.atomic(using=using):
            move_checkpoint(
                cls, batch.start, end, sent, using=using, lease_owner="", lease_until=None
            )
    else:
        _end_lease(cls, owner, using)
    if failure is not None:
        raise failure
    return BatchOutcome(len(sent), end.position, False, start=batch.start.position)


def _end_lease(cls: type[Relay], owner: str, using: str) -> None:
    with transaction.atomic(using=using):
        ProjectionState.objects.using(using).filter(name=cls.name, lease_owner=owner).update(
            lease_owner="", lease_until=None
        )


batch_runners[Relay] = run_relay_batch


# -- operations -----------------------------------------------------------------------


def replay(relay: str | type[Relay], position: int) -> LogPoint:
    """Send the events from ``position`` on again: move the checkpoint back before it.

    Returns the new checkpoint. Refused for a position the relay has not reached yet (use
    ``cqrs_skip`` to pass over events) or one that holds no event.
    """
    cls = get_relay(relay) if isinstance(relay, str) else relay
    using = cqrs_settings.DATABASE
    if position < 1:
        raise ProjectionError(f"Positions start at 1, not {position}")
    point = point_of(position, using)
    if point is None:
        raise ProjectionError(f"There is no event at position {position}")
    ensure_state(cls.name)
    new = LogPoint(point.transaction_id, position - 1)
    with transaction.atomic(using=using):
        state = lock_state(cls.name, using)
        if state.point < point:
            raise ProjectionError(
                f"{cls.name} has not sent position {position} yet (checkpoint "
                f"{state.position}): a replay only sends events again"
            )
        state.position, state.transaction_id = new.position, new.transaction_id
        state.failing_position = None
        state.attempts = 0
        state.next_retry_at = None
        state.last_error = ""
        state.lease_owner, state.lease_until = "", None
        state.position_recorded_at = None
        state.save()
    logger.info("%s replays from position %s", cls.name, position)
    return new


def check_configuration() -> list[str]:
    """What is wrong with ``DJANGO_CQRS["RELAYS"]`` (the system check's messages)."""
    relays = cqrs_settings.RELAYS
    if not isinstance(relays, Mapping):
        return [f"RELAYS must be a dict of named relays, not {type(relays).__name__}"]
    problems: list[str] = []
    for name, config in relays.items():
        problems.extend(options_of(str(name), config)[1])
    return problems
