"""``IncomingEvent``: a CloudEvent another service published, as its handlers get it.

    from django_cqrs.inbox.events import parse

    event = parse(body, inbox="orders")   # InvalidMessage when it is not a CloudEvent 1.0
    event.type, event.data, event.correlation_id, event.aggregate

The body is a CloudEvent in JSON structured mode (what django_cqrs' relays publish):
it is read with the ``cloudevents`` package (the ``rabbitmq`` and ``nats`` extras), and
its extension attributes ``schemaversion``, ``position``, ``aggregateversion``,
``correlationid``, ``causationid``, ``traceparent`` and ``tracestate`` become fields.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from ..exceptions import CQRSError

#: The CloudEvents attributes that are not extensions.
CONTEXT_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
)
_INTEGERS = {
    "schemaversion": "schema_version",
    "position": "position",
    "aggregateversion": "aggregate_version",
}
_STRINGS = {
    "correlationid": "correlation_id",
    "causationid": "causation_id",
    "traceparent": "traceparent",
    "tracestate": "tracestate",
}


class InvalidMessage(CQRSError):
    """A message that is not a CloudEvent 1.0 in JSON structured mode; it is parked.

    ``source`` and ``message_id`` are what could be read of it (for the inbox's row).
    """

    def __init__(self, message: str, *, source: str = "", message_id: str = "", type: str = ""):
        super().__init__(message)
        self.source = source
        self.message_id = message_id
        self.type = type


@dataclasses.dataclass(frozen=True)
class IncomingEvent:
    """One CloudEvent received by an inbox: what its handlers are called with."""

    #: The CloudEvent's id (stable across resends: the relay's "<type>/<id>/<version>").
    id: str
    #: Who published it (the other service's ``EVENT_SOURCE``, e.g. "/demo_project").
    source: str
    #: The event's stored name, e.g. "orders.OrderPlaced".
    type: str
    data: Any
    #: "<aggregate_type>/<aggregate_id>", when given.
    subject: str | None = None
    time: datetime | None = None
    datacontenttype: str | None = None
    schema_version: int | None = None
    #: The event's position in the publisher's log.
    position: int | None = None
    aggregate_version: int | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    #: W3C trace context, when the publisher sent one.
    traceparent: str | None = None
    tracestate: str | None = None
    #: Every extension attribute as received (the ones above included).
    extensions: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The name of the inbox (``DJANGO_CQRS["INBOXES"]``) that received it.
    inbox: str = ""

    @property
    def aggregate(self) -> tuple[str, str] | None:
        """``(aggregate_type, aggregate_id)`` from the subject, or None."""
        if not self.subject or "/" not in self.subject:
            return None
        aggregate_type, _, aggregate_id = self.subject.partition("/")
        return aggregate_type, aggregate_id

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``metadata=`` for a command a handler dispatches because of this event.

        ``command_bus.dispatch(cmd, metadata=event.metadata)``: the command's events
        carry the publisher's correlation id (or this event's id when it had none) and
        this event's id as causation, with its source and type beside them.
        """
        return {
            "correlation_id": self.correlation_id or self.id,
            "causation_id": self.id,
            "causation_source": self.source,
            "causation_type": self.type,
        }


def _read_json(body: bytes | str) -> dict[str, Any]:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"the body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidMessage(f"the body is JSON {type(raw).__name__}, not a CloudEvent object")
    return raw


def _identity(raw: Mapping[str, Any]) -> dict[str, str]:
    found = {"source": raw.get("source"), "message_id": raw.get("id"), "type": raw.get("type")}
    return {key: value for key, value in found.items() if isinstance(value, str)}


def parse(body: bytes | str, *, inbox: str = "") -> IncomingEvent:
    """Read one message body; ``InvalidMessage`` (saying why) when it is not a CloudEvent."""
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_json

    raw = _read_json(body)
    identity = _identity(raw)
    if raw.get("specversion") != "1.0":
        raise InvalidMessage(
            f"specversion must be '1.0', got {raw.get('specversion')!r}", **identity
        )
    try:
        event = from_json(body)
    except GenericException as exc:
        raise InvalidMessage(f"not a valid CloudEvent: {exc}", **identity) from None
    attributes = dict(event.get_attributes())
    for key in ("id", "source", "type"):
        if not isinstance(attributes.get(key), str) or not attributes[key]:
            raise InvalidMessage(f"the attribute {key!r} must be a non-empty string", **identity)
    fields: dict[str, Any] = {}
    extensions = {k: v for k, v in attributes.items() if k not in CONTEXT_ATTRIBUTES}
    for key, field in _INTEGERS.items():
        value = extensions.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidMessage(f"the extension {key!r} must be an integer", **identity)
        fields[field] = value
    for key, field in _STRINGS.items():
        value = extensions.get(key)
        fields[field] = None if value is None else str(value)
    when = None
    if "time" in raw:  # the package sets a time of its own when there is none
        try:
            when = datetime.fromisoformat(str(raw["time"]))
        except ValueError:
            raise InvalidMessage(f"time is not RFC 3339: {raw['time']!r}", **identity) from None
    subject = attributes.get("subject")
    content_type = attributes.get("datacontenttype")
    return IncomingEvent(
        id=attributes["id"],
        source=attributes["source"],
        type=attributes["type"],
        data=event.get_data(),
        subject=None if subject is None else str(subject),
        time=when,
        datacontenttype=None if content_type is None else str(content_type),
        extensions=MappingProxyType(extensions),
        inbox=inbox,
        **fields,
    )
