"""Domain events: frozen dataclasses with a stable stored name and a schema version.

    from dataclasses import dataclass
    from decimal import Decimal
    from uuid import UUID
    from django_cqrs import Event

    @dataclass(frozen=True)
    class OrderPlaced(Event, name="orders.OrderPlaced", version=2):
        order_id: UUID
        total: Decimal

        @classmethod
        def upcast(cls, data: dict, from_version: int) -> dict:
            if from_version < 2:
                data = {**data, "total": data.pop("amount")}
            return data

Without ``name=`` the stored name is ``"<module>.<ClassName>"``; give an explicit name
before the first event is stored if you may move or rename the class.

Decoding is strict about what it cannot keep: a payload that is not an object, a field
the class does not declare in a payload stored at its current version (removing a field
takes a new version; what ``upcast`` returns may keep old keys), a missing field or a
value its type cannot read all raise :class:`SerializationError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, cast

from .exceptions import ConfigurationError, SerializationError, UnknownEventTypeError
from .messages import Message
from .serialization import field_types, from_json_dict

_event_types: dict[str, type[Event]] = {}


@dataclasses.dataclass(frozen=True)
class Event(Message):
    """Base class of domain events."""

    kind: ClassVar[str] = "event"
    #: Name stored in the event log; stable across refactors when set explicitly.
    event_type: ClassVar[str] = "django_cqrs.Event"
    #: Version of this event's payload schema; bump it and implement :meth:`upcast`.
    schema_version: ClassVar[int] = 1
    #: Kept in the log for its history only (an audit trail): ``cqrs_inspect --check``
    #: expects no projection, saga or receiver to read it.
    history_only: ClassVar[bool] = False

    def __init_subclass__(
        cls, *, name: str | None = None, version: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if name is None:
            name = cls.__dict__.get("event_type") or f"{cls.__module__}.{cls.__qualname__}"
        if version is None:
            version = cls.__dict__.get("schema_version", 1)
        if not isinstance(version, int) or version < 1:
            raise ConfigurationError(f"{cls.__qualname__}: schema version must be an int >= 1")
        cls.event_type = name
        cls.schema_version = version
        register_event_type(cls)

    @classmethod
    def upcast(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Turn a payload stored at ``from_version`` into the current schema's payload."""
        return data


def register_event_type(cls: type[Event]) -> None:
    """Make ``cls`` the class that stored events named ``cls.event_type`` decode to."""
    existing = _event_types.get(cls.event_type)
    if existing is not None and existing is not cls and not _same_definition(existing, cls):
        raise ConfigurationError(
            f"Event name {cls.event_type!r} is used by both {existing.message_name()} and "
            f"{cls.message_name()}; give one of them another name="
        )
    _event_types[cls.event_type] = cls


def _same_definition(a: type, b: type) -> bool:
    # A module imported twice (or reloaded) redefines the same class: not a conflict.
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__


def event_class(name: str) -> type[Event]:
    """Return the event class registered under a stored name."""
    try:
        return _event_types[name]
    except KeyError:
        raise UnknownEventTypeError(
            f"No event class is named {name!r}; is the module that defines it imported?"
        ) from None


def registered_event_types() -> dict[str, type[Event]]:
    """All known event names and their classes."""
    return dict(_event_types)


def decode_event(name: str, schema_version: int, payload: Any) -> Event:
    """Rebuild a typed event from its stored name, schema version and JSON payload."""
    cls = event_class(name)
    if not isinstance(payload, dict):
        raise SerializationError(
            f"{name}: the stored payload is {type(payload).__name__} {payload!r:.60}, not an object"
        )
    if schema_version != cls.schema_version:
        if schema_version > cls.schema_version:
            raise SerializationError(
                f"{name}: stored schema version {schema_version} is newer than the code's "
                f"{cls.schema_version}"
            )
        payload = cls.upcast(dict(payload), schema_version)
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
