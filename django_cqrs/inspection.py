"""What reads what: the map behind ``manage.py cqrs_inspect``.

    from django_cqrs.inspection import inspect_project

    found = inspect_project(["orders"])    # None (the default): every installed app
    found.commands        # each command: its name, class, handler (None: unhandled)
    found.events          # each event: the projections, sagas and receivers reading it
    found.problems()      # what ``cqrs_inspect --check`` fails on
    found.as_dict()       # the ``--json`` document

Commands, queries and events are those defined in the modules of installed apps (as for
the system checks), narrowed to the given app labels: a command or query class known to
its bus's registry or found among the subclasses of ``Command``/``Query``, an event class
the log decodes its stored name to or that a projection or saga handles. Bases are left
out: a class that is not a dataclass itself, or sets ``abstract = True`` in its body.

A reader of an event is a projection (``@handles``), a saga (``@starts``/``@on``) or a
receiver of ``event_recorded`` or ``event_committed`` connected with ``sender=`` that
event class; a receiver of every sender (``django_cqrs.tasks``'s trigger, say) is listed
on its own and reads no event in particular. Signals match the sender by identity, and
so do projections: a projection that handles an older copy of a class (its module
imported again) does not read the class the log decodes to, and the two classes sharing
one stored name are reported as a duplicate.
"""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from django.apps import apps
from django.dispatch import Signal

from .bus import Bus, command_bus, query_bus
from .commands import Command
from .events import Event, registered_event_types
from .projections.base import all_projections
from .projections.registry import RECEIVER_UID_PREFIX
from .queries import Query
from .registry import describe
from .relays.base import Relay, all_relays
from .sagas.base import CORRELATION, Saga, all_sagas
from .signals import event_committed, event_recorded

#: The signals whose receivers read events, by the name the map gives them.
SIGNALS: dict[str, Signal] = {
    "event_recorded": event_recorded,
    "event_committed": event_committed,
}

UNHANDLED_COMMAND = "unhandled_command"
UNHANDLED_QUERY = "unhandled_query"
UNREAD_EVENT = "unread_event"
READ_HISTORY_ONLY_EVENT = "read_history_only_event"
DUPLICATE_NAME = "duplicate_name"


@dataclasses.dataclass(frozen=True)
class MessageEntry:
    """A command or query class and its handler (None: it has none)."""

    name: str
    path: str
    handler: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class": self.path, "handler": self.handler}


@dataclasses.dataclass(frozen=True)
class ProjectionReader:
    """A projection's handler of the event."""

    name: str
    mode: str
    method: str

    def describe(self) -> str:
        return f"projection {self.name} ({self.mode}): {self.method}()"


@dataclasses.dataclass(frozen=True)
class SagaReader:
    """A saga's route of the event: the handler, how it finds the instance."""

    name: str
    mode: str
    method: str
    #: "starts" (starts an instance, or moves an existing one on) or "on" (moves one on).
    route: str
    #: The event field that finds the instance, ``"$correlation"`` or a function's path.
    key: str
    when_finished: bool
    #: Checkpoints the instances are spread over (``Saga.partitions``).
    partitions: int

    def describe(self) -> str:
        key = "the correlation id" if self.key == CORRELATION else self.key
        finished = ", finished instances too" if self.when_finished else ""
        mode = f"{self.mode}, {self.partitions} partitions" if self.partitions > 1 else self.mode
        return f"saga {self.name} ({mode}): {self.method}(), @{self.route} by {key}{finished}"


@dataclasses.dataclass(frozen=True)
class RelayReader:
    """A relay that sends the event to a broker (docs/relays.md)."""

    name: str
    backend: str
    destination: str

    def describe(self) -> str:
        return f"relay {self.name} ({self.backend}): to {self.destination}"


@dataclasses.dataclass(frozen=True)
class ReceiverReader:
    """A receiver of ``event_recorded`` or ``event_committed``."""

    signal: str
    receiver: str

    def describe(self) -> str:
        return f"receiver of {self.signal}: {self.receiver}"


@dataclasses.dataclass(frozen=True)
class EventEntry:
    """An event class and what reads it."""

    name: str
    path: str
    schema_version: int
    history_only: bool
    projections: tuple[ProjectionReader, ...]
    sagas: tuple[SagaReader, ...]
    receivers: tuple[ReceiverReader, ...]
    #: Is it the class the log decodes ``name`` to?
    decoded: bool
    #: The relays that send it to other services (they read it, but apply nothing here).
    relays: tuple[RelayReader, ...] = ()

    @property
    def readers(
        self,
    ) -> tuple[ProjectionReader | SagaReader | ReceiverReader | RelayReader, ...]:
        return (*self.projections, *self.sagas, *self.receivers, *self.relays)

    @property
    def local_readers(self) -> tuple[ProjectionReader | SagaReader | ReceiverReader, ...]:
        """The readers in this service (a relay only passes the event on)."""
        return (*self.projections, *self.sagas, *self.receivers)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.path,
            "schema_version": self.schema_version,
            "history_only": self.history_only,
            "projections": [dataclasses.asdict(reader) for reader in self.projections],
            "sagas": [dataclasses.asdict(reader) for reader in self.sagas],
            "receivers": [dataclasses.asdict(reader) for reader in self.receivers],
            "relays": [dataclasses.asdict(reader) for reader in self.relays],
        }


@dataclasses.dataclass(frozen=True)
class Problem:
    """What ``cqrs_inspect --check`` fails on: its kind, the message name, what to do."""

    kind: str
    name: str
    message: str


@dataclasses.dataclass(frozen=True)
class Inspection:
    """The map: commands and queries with their handlers, events with their readers."""

    command_middleware: tuple[str, ...]
    commands: tuple[MessageEntry, ...]
    query_middleware: tuple[str, ...]
    queries: tuple[MessageEntry, ...]
    events: tuple[EventEntry, ...]
    #: Receivers connected without a sender: they receive every event.
    receivers_of_every_event: tuple[ReceiverReader, ...]

    def problems(self) -> list[Problem]:
        """Unhandled commands and queries, unread events, names used by two classes."""
        found: list[Problem] = []
        for kind, entries in (("command", self.commands), ("query", self.queries)):
            for entry in entries:
                if entry.handler is None:
                    short = entry.path.rsplit(".", 1)[-1]
                    found.append(
                        Problem(
                            UNHANDLED_COMMAND if kind == "command" else UNHANDLED_QUERY,
                            entry.name,
                            f"{entry.name} has no {kind} handler: decorate a function with "
                            f"@{kind}_handler({short}) in a `handlers` module, or set "
                            "`abstract = True` on a base class.",
                        )
                    )
            found.extend(_duplicates(kind, entries, lambda e: e.handler or "no handler"))
        for event in self.events:
            found.extend(_reading_problems(event))
        found.extend(
            _duplicates(
                "event",
                self.events,
                lambda e: (
                    "the log decodes the name to it" if e.decoded else "not what the log decodes"
                ),
            )
        )
        return found

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document (lists sorted by name; dump with ``sort_keys``)."""
        return {
            "command_middleware": list(self.command_middleware),
            "commands": [entry.as_dict() for entry in self.commands],
            "query_middleware": list(self.query_middleware),
            "queries": [entry.as_dict() for entry in self.queries],
            "events": [entry.as_dict() for entry in self.events],
            "receivers_of_every_event": [
                dataclasses.asdict(receiver) for receiver in self.receivers_of_every_event
            ],
            "problems": [dataclasses.asdict(problem) for problem in self.problems()],
        }

    def lines(self) -> Iterator[str]:
        """The text of ``cqrs_inspect``."""
        for title, middleware, entries in (
            ("Commands", self.command_middleware, self.commands),
            ("Queries", self.query_middleware, self.queries),
        ):
            chain = ", ".join(middleware) or "none"
            yield f"{title} ({len(entries)}), middleware outermost first: {chain}"
            for entry in entries:
                shown = entry.name if entry.name == entry.path else f"{entry.name} ({entry.path})"
                yield f"  {shown} -> {entry.handler or 'no handler'}"
        yield f"Events ({len(self.events)})"
        for event in self.events:
            note = ", history only" if event.history_only else ""
            yield f"  {event.name} v{event.schema_version} ({event.path}){note}"
            for reader in event.readers:
                yield f"    {reader.describe()}"
            if not event.readers:
                yield "    read by nothing"
        yield f"Receivers of every event ({len(self.receivers_of_every_event)})"
        for receiver in self.receivers_of_every_event:
            yield f"  {receiver.signal}: {receiver.receiver}"


def _reading_problems(event: EventEntry) -> list[Problem]:
    if event.history_only and event.local_readers:
        # A relay may send a history-only event on: other services may well read it.
        readers = "; ".join(reader.describe() for reader in event.local_readers)
        return [
            Problem(
                READ_HISTORY_ONLY_EVENT,
                event.name,
                f"{event.name} ({event.path}) sets `history_only = True` but is read by "
                f"{readers}: remove `history_only`.",
            )
        ]
    if not event.history_only and not event.readers:
        short = event.path.rsplit(".", 1)[-1]
        return [
            Problem(
                UNREAD_EVENT,
                event.name,
                f"{event.name} ({event.path}) is read by no projection, saga or receiver: "
                f"handle it (@handles({short}), a saga's @starts/@on, or a receiver of "
                f"event_recorded/event_committed with sender={short}), or set "
                "`history_only = True` on it if the log keeps it for its history only.",
            )
        ]
    return []


def _duplicates(
    kind: str,
    entries: Iterable[MessageEntry | EventEntry],
    detail: Callable[[Any], str],
) -> list[Problem]:
    by_name: dict[str, list[Any]] = {}
    for entry in entries:
        by_name.setdefault(entry.name, []).append(entry)
    return [
        Problem(
            DUPLICATE_NAME,
            name,
            f"{len(same)} {kind} classes are named {name!r}: "
            + "; ".join(f"{entry.path} ({detail(entry)})" for entry in same)
            + ". The log, the buses and sagas' compensations find a class by its name: "
            + ("give all but one another `name=`." if kind == "event" else "keep one."),
        )
        for name, same in by_name.items()
        if len(same) > 1
    ]


# -- building the map ---------------------------------------------------------------------


def inspect_project(app_labels: Collection[str] | None = None) -> Inspection:
    """The map of the installed apps (or of the apps ``app_labels`` names)."""

    def in_scope(cls: type) -> bool:
        config = apps.get_containing_app_config(cls.__module__)
        return config is not None and (app_labels is None or config.label in app_labels)

    return Inspection(
        command_middleware=_middleware(command_bus),
        commands=_messages(command_bus, Command, in_scope),
        query_middleware=_middleware(query_bus),
        queries=_messages(query_bus, Query, in_scope),
        events=_events(in_scope),
        receivers_of_every_event=_receivers(None),
    )


def _concrete(cls: type) -> bool:
    """A dataclass itself, not marked ``abstract = True``: a message, not a base."""
    return "__dataclass_fields__" in cls.__dict__ and not cls.__dict__.get("abstract", False)


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _middleware(bus: Bus) -> tuple[str, ...]:
    return tuple(describe(factory) for factory in bus.middleware())


def _subclasses(base: type) -> list[type]:
    # A class replaced by a module imported again lingers until the collector runs.
    gc.collect()
    found: dict[type, None] = {}
    stack = list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls not in found:
            found[cls] = None
            stack.extend(cls.__subclasses__())
    return list(found)


def _messages(bus: Bus, base: type, in_scope: Callable[[type], bool]) -> tuple[MessageEntry, ...]:
    handlers = dict(bus.registry.items())
    classes = {*handlers, *(cls for cls in _subclasses(base) if _concrete(cls))}
    entries = [
        MessageEntry(
            cls.message_name(),  # type: ignore[attr-defined]
            _path(cls),
            describe(handlers[cls]) if cls in handlers else None,
        )
        for cls in classes
        if in_scope(cls)
    ]
    return tuple(sorted(entries, key=lambda e: (e.name, e.path, e.handler or "")))


def _events(in_scope: Callable[[type], bool]) -> tuple[EventEntry, ...]:
    decoded = registered_event_types()
    projections = [cls for cls in all_projections() if not issubclass(cls, Saga | Relay)]
    relays = all_relays()
    sagas = all_sagas()
    classes = {*decoded.values(), *(event for cls in all_projections() for event in cls.handlers)}
    entries = []
    for event in classes:
        if not (_concrete(event) and in_scope(event)):
            continue
        readers = [
            ProjectionReader(cls.name, cls.mode, cls.handlers[event])
            for cls in projections
            if event in cls.handlers
        ]
        saga_readers = [
            SagaReader(
                saga.name,
                saga.mode,
                route.method,
                "starts" if route.starts else "on",
                describe(route.key) if callable(route.key) else route.key,
                route.when_finished,
                saga.partitions,
            )
            for saga in sagas
            if (route := saga.routes.get(event)) is not None
        ]
        entries.append(
            EventEntry(
                name=event.event_type,
                path=_path(event),
                schema_version=event.schema_version,
                history_only=bool(event.history_only),
                projections=tuple(sorted(readers, key=lambda r: r.name)),
                sagas=tuple(sorted(saga_readers, key=lambda r: r.name)),
                receivers=_receivers(event),
                decoded=decoded.get(event.event_type) is event,
                relays=tuple(
                    RelayReader(relay.name, relay.options["BACKEND"], _destination(relay))
                    for relay in relays
                    if event in relay.handlers
                ),
            )
        )
    return tuple(sorted(entries, key=lambda e: (e.name, e.path, not e.decoded)))


def _destination(relay: type[Relay]) -> str:
    options = relay.options
    if options.get("EXCHANGE"):
        return f"exchange {options['EXCHANGE']}"
    if options.get("STREAM"):
        return f"stream {options['STREAM']}, {options.get('SUBJECT_PREFIX')}.<name>"
    return str(options["BACKEND"])


def _receivers(sender: type[Event] | None) -> tuple[ReceiverReader, ...]:
    """The receivers of the event signals connected with ``sender`` (None: any sender).

    Django keeps ``((dispatch_uid or id(receiver), id(sender)), receiver or a weak
    reference to it, is_async)``; the receivers that apply sync projections are left out.
    """
    found = []
    for name, signal in SIGNALS.items():
        for (key, sender_id), target, *_ in list(signal.receivers):
            if sender_id != id(sender):
                continue
            if isinstance(key, str) and key.startswith(RECEIVER_UID_PREFIX):
                continue
            receiver = target() if isinstance(target, weakref.ReferenceType) else target
            if receiver is not None:  # None: a weak reference to a receiver gone
                found.append(ReceiverReader(name, describe(receiver)))
    return tuple(sorted(found, key=lambda r: (r.signal, r.receiver)))
