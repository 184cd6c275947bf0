"""Domain events: frozen dataclasses with a stable stored name and a schema version.

    from dataclasses import dataclass
    from decimal import Decimal
    from uuid import UUID
    from django_cqrs import Event
    from django_cqrs.events import upcaster

    @dataclass(frozen=True)
    class OrderPlaced(Event, name="orders.OrderPlaced", version=2,
                      aliases=("shop.OrderCreated",)):   # its name before a rename
        order_id: UUID
        total: Decimal

    @upcaster("orders.OrderPlaced", 1)   # a version-1 payload -> version 2
    def total_was_amount(payload: dict) -> dict:
        payload["total"] = payload.pop("amount")
        return payload

Without ``name=`` the stored name is ``"<module>.<ClassName>"``; give an explicit name
before the first event is stored if you may move or rename the class. New events are
stored under ``name`` at ``version``; stored events named after one of the ``aliases``
decode to the class too.

**Upcasting.** A payload stored at an older schema version goes through one upcaster per
version to the class's current one (:func:`upcast_payload`), wherever the log is read
(:func:`decode_event`: projections, rebuilds, sagas, the admin). The upcaster of each
step is the one registered under the stored name, else the one under the class's
current name; a class that defines its own ``upcast(data, from_version)`` classmethod
(the older way) gets the payload from the first version no upcaster starts from, and
returns it in the current shape. A step with neither is an error: bumping ``version``
says the shape changed.

Decoding is strict about what it cannot keep: a payload that is not an object, a field
the class does not declare in a payload stored at its current version (removing a field
takes a new version; what the upcasters return may keep old keys), a missing field or a
value its type cannot read all raise :class:`SerializationError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NamedTuple, TypeVar, cast

from .exceptions import ConfigurationError, SerializationError, UnknownEventTypeError
from .messages import Message
from .registry import describe
from .serialization import field_types, from_json_dict

#: Stored name (an event's name or one of its aliases) -> the class it decodes to.
_event_types: dict[str, type[Event]] = {}

#: What a step of upcasting does: a payload at one version -> the payload one version on.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
U = TypeVar("U", bound=Upcaster)

#: ``(stored name, from_version)`` -> the upcaster to ``from_version + 1``.
_upcasters: dict[tuple[str, int], Upcaster] = {}


class Conflict(NamedTuple):
    """Two definitions of one stored name or one upcast step (system check E015)."""

    what: str
    #: The class or function that has it, and the one refused.
    first: Any
    second: Any


#: Every conflict refused since start-up; ``django_cqrs.E015`` reports them.
conflicts: list[Conflict] = []


@dataclasses.dataclass(frozen=True)
class Event(Message):
    """Base class of domain events."""

    kind: ClassVar[str] = "event"
    #: Name stored in the event log; stable across refactors when set explicitly.
    event_type: ClassVar[str] = "django_cqrs.Event"
    #: Version of this event's payload schema; bump it and register an :func:`upcaster`.
    schema_version: ClassVar[int] = 1
    #: Older stored names of this class (before a rename or a move): read, never written.
    aliases: ClassVar[tuple[str, ...]] = ()
    #: Kept in the log for its history only (an audit trail): ``cqrs_inspect --check``
    #: expects no projection, saga or receiver to read it.
    history_only: ClassVar[bool] = False

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        version: int | None = None,
        aliases: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if name is None:
            name = cls.__dict__.get("event_type") or f"{cls.__module__}.{cls.__qualname__}"
        if version is None:
            version = cls.__dict__.get("schema_version", 1)
        if not isinstance(version, int) or version < 1:
            raise ConfigurationError(f"{cls.__qualname__}: schema version must be an int >= 1")
        if aliases is None:
            aliases = cls.__dict__.get("aliases", ())  # not inherited: a subclass has its own
        if isinstance(aliases, str) or not all(isinstance(a, str) and a for a in aliases):
            raise ConfigurationError(
                f"{cls.__qualname__}: aliases must be a tuple of stored names, got {aliases!r}"
            )
        cls.event_type = name
        cls.schema_version = version
        cls.aliases = tuple(dict.fromkeys(a for a in aliases if a != name))
        register_event_type(cls)

    @classmethod
    def upcast(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """The older way to upcast: turn a payload stored at ``from_version`` into the
        current schema's payload (called for the versions no :func:`upcaster` starts from,
        when a class defines it)."""
        return data


def event_names(cls: type[Event]) -> tuple[str, ...]:
    """The stored names that decode to ``cls``: its name, then its aliases."""
    return (cls.event_type, *cls.aliases)


def register_event_type(cls: type[Event]) -> None:
    """Make ``cls`` the class that stored events named ``cls.event_type`` (or one of its
    aliases) decode to; a name another class has already is refused."""
    for name in event_names(cls):
        existing = _event_types.get(name)
        if existing is not None and existing is not cls and not _same_definition(existing, cls):
            conflicts.append(Conflict(f"event name {name!r}", existing, cls))
            raise ConfigurationError(
                f"Event name {name!r} is used by both {existing.message_name()} and "
                f"{cls.message_name()}; give one of them another name= (or alias)"
            )
    for name, existing in list(_event_types.items()):
        if _same_definition(existing, cls):  # defined again: drop the names it no longer has
            del _event_types[name]
    for name in event_names(cls):
        _event_types[name] = cls


def _same_definition(a: Any, b: Any) -> bool:
    # A module imported twice (or reloaded) redefines the same class: not a conflict.
    where = ("__module__", "__qualname__")
    return all(getattr(a, attr, None) == getattr(b, attr, object()) for attr in where)


def event_class(name: str) -> type[Event]:
    """Return the event class registered under a stored name (a name or an alias)."""
    try:
        return _event_types[name]
    except KeyError:
        raise UnknownEventTypeError(
            f"No event class is named {name!r}; is the module that defines it imported?"
        ) from None


def registered_event_types() -> dict[str, type[Event]]:
    """All known stored names (names and aliases) and their classes."""
    return dict(_event_types)


# -- upcasters ------------------------------------------------------------------------


def upcaster(event: str | type[Event], from_version: int) -> Callable[[U], U]:
    """Register the decorated function as the upcaster of ``event``'s payloads stored at
    ``from_version``: it takes the payload (a copy: change it freely) and returns it in
    the shape of ``from_version + 1``.

    ``event`` is a stored name (the class's name, or an alias: steps of payloads stored
    under an old name) or an event class (its current name).
    """

    def register(func: U) -> U:
        register_upcaster(event, from_version, func)
        return func

    return register


def register_upcaster(event: str | type[Event], from_version: int, func: Upcaster) -> None:
    """:func:`upcaster` as a call: ``register_upcaster("orders.OrderPlaced", 1, func)``."""
    name = event.event_type if isinstance(event, type) and issubclass(event, Event) else event
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"upcaster() takes a stored name or an Event class, not {event!r}")
    if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
        raise ConfigurationError(
            f"upcaster({name!r}, {from_version!r}): from_version must be an int >= 1"
        )
    if not callable(func):
        raise ConfigurationError(f"upcaster({name!r}, {from_version}) needs a function")
    key = (name, from_version)
    existing = _upcasters.get(key)
    if existing is not None and existing is not func and not _same_definition(existing, func):
        conflicts.append(
            Conflict(f"the upcaster of {name!r} from version {from_version}", existing, func)
        )
        raise ConfigurationError(
            f"{name!r} already has an upcaster from version {from_version}, "
            f"{describe(existing)}; cannot also register {describe(func)}"
        )
    _upcasters[key] = func


def registered_upcasters() -> dict[tuple[str, int], Upcaster]:
    """Every upcaster, by ``(stored name, from_version)``."""
    return dict(_upcasters)


def _own_upcast(cls: type[Event]) -> bool:
    """Whether ``cls`` defines the older ``upcast`` classmethod (not the base's no-op)."""
    return getattr(cls.upcast, "__func__", None) is not getattr(Event.upcast, "__func__", None)


def upcast_step(name: str, cls: type[Event], from_version: int) -> Upcaster | None:
    """The upcaster of a payload stored as ``name`` at ``from_version``: the one registered
    under ``name``, else under the class's current name (None: neither)."""
    return _upcasters.get((name, from_version)) or _upcasters.get((cls.event_type, from_version))


def versions_without_upcaster(cls: type[Event]) -> list[int]:
    """The older versions of ``cls`` that no upcaster starts from, under any of its names
    (none when the class defines its own ``upcast``): what the code alone can tell."""
    if _own_upcast(cls):
        return []
    names = event_names(cls)
    return [
        version
        for version in range(1, cls.schema_version)
        if not any((name, version) in _upcasters for name in names)
    ]


def missing_upcast(name: str, from_version: int) -> int | None:
    """The first version from which a payload stored as ``name`` at ``from_version`` has
    no way on to its class's current version (None: it has one, or it is current).

    A version above the class's is returned as it is: no code reads it yet.
    """
    cls = event_class(name)
    if from_version > cls.schema_version:
        return from_version
    for version in range(from_version, cls.schema_version):
        if upcast_step(name, cls, version) is None:
            return None if _own_upcast(cls) else version
    return None


def upcast_payload(name: str, payload: Any, from_version: int) -> dict[str, Any]:
    """The payload of an event stored as ``name`` at ``from_version``, in the shape of its
    class's current version: every upcaster on the way applied, in order.

    The stored payload is not changed. Raises :class:`UnknownEventTypeError` for a name no
    class has, and :class:`SerializationError` for a payload that is not an object, a
    version above the class's, a step with no upcaster, or an upcaster that fails. Tests
    call it on a stored payload to see what the code reads::

        assert upcast_payload("orders.OrderPlaced", {"amount": "9.90"}, 1) == {"total": "9.90"}
    """
    cls = event_class(name)
    if not isinstance(payload, dict):
        raise SerializationError(
            f"{name}: the stored payload is {type(payload).__name__} {payload!r:.60}, not an object"
        )
    if from_version > cls.schema_version:
        raise SerializationError(
            f"{name}: stored schema version {from_version} is newer than the code's "
            f"{cls.schema_version}"
        )
    data = dict(payload)
    for version in range(from_version, cls.schema_version):
        step = upcast_step(name, cls, version)
        if step is None:
            if _own_upcast(cls):
                return cls.upcast(data, version)
            raise SerializationError(
                f"{name}: no upcaster from schema version {version} to {version + 1} "
                f"({cls.__qualname__} is at version {cls.schema_version}); register one "
                f"with @upcaster({name!r}, {version})"
            )
        try:
            data = step(data)
        except Exception as exc:
            raise SerializationError(
                f"{name}: the upcaster from version {version} ({describe(step)}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise SerializationError(
                f"{name}: the upcaster from version {version} ({describe(step)}) returned "
                f"{type(data).__name__}, not a dict"
            )
    return data


def decode_event(name: str, schema_version: int, payload: Any) -> Event:
    """Rebuild a typed event from its stored name, schema version and JSON payload.

    Every reader of the log decodes here: a payload stored at an older version is
    upcast first (:func:`upcast_payload`).
    """
    cls = event_class(name)
    if schema_version != cls.schema_version or not isinstance(payload, dict):
        payload = upcast_payload(name, payload, schema_version)
    elif not payload.keys() <= (declared := _declared_fields(cls)):
        # Stored at the current version by something else than this class (an import
        # script, a field removed without a new version): its data would be dropped.
        unknown = ", ".join(repr(key) for key in payload if key not in declared)
        raise SerializationError(
            f"{name}: the stored payload has field(s) {unknown} that {cls.__qualname__} "
            f"(version {cls.schema_version}) does not declare"
        )
    event: Event = from_json_dict(cls, payload)
    return event


_fields: dict[type[Event], frozenset[str]] = {}


def _declared_fields(cls: type[Event]) -> frozenset[str]:
    """The names a stored payload of ``cls`` may hold (its init fields), cached."""
    found = _fields.get(cls)
    if found is None:
        found = _fields[cls] = frozenset(field_types(cast(Any, cls)))
    return found


@dataclasses.dataclass(frozen=True)
class EventEnvelope:
    """Where and when an event was stored, and what caused it."""

    #: Global position in the event log (one order for all aggregates).
    position: int
    event_type: str
    schema_version: int
    #: ``app_label.ModelName`` of the aggregate that recorded the event.
    aggregate_type: str
    aggregate_id: str
    #: The aggregate's version right after this event.
    aggregate_version: int
    #: command_type, command_id, correlation_id, causation_id, user, ...
    metadata: dict[str, Any]
    recorded_at: Any
    #: True while a rebuild replays the log: skip side effects such as e-mails.
    replaying: bool = False

    @property
    def correlation_id(self) -> str | None:
        return self.metadata.get("correlation_id")

    @property
    def user(self) -> str | None:
        return self.metadata.get("user")
