"""A stored event as a CloudEvent 1.0, JSON structured mode (the relays' wire format).

    from django_cqrs.relays.cloudevents import cloudevent, structured
    attributes = cloudevent(row, source="/shop")   # decoded as every reader decodes it
    body = structured(attributes)                  # UTF-8 JSON bytes

The attributes (docs/relays.md):

- ``id``: ``<aggregate type>/<aggregate id>/<aggregate version>``, the event's natural
  key in the log: the same on every resend and every replay, so a consumer deduplicates
  by ``(source, id)``;
- ``source``: ``DJANGO_CQRS["EVENT_SOURCE"]``; ``type``: the event's stored name
  (``Event.event_type``; an event stored under an alias is sent under its current
  name); ``subject``: ``<aggregate type>/<aggregate id>``; ``time``: when it was
  recorded; ``datacontenttype``: ``application/json``;
- ``data``: the payload in the event class's current schema: the stored payload, or the
  upcast one when it was stored at an older schema version. The row is decoded with
  ``store.decode_row`` like every other reader, so what cannot be decoded is not sent;
- extensions: ``schemaversion`` (of ``data``), ``position``, ``aggregateversion``, and,
  when known, ``correlationid``, ``causationid`` and the W3C ``traceparent`` and
  ``tracestate`` of the command that recorded it (the distributed tracing extension).
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings

from ..conf import cqrs_settings
from ..serialization import to_json_dict
from ..store import EventRow, decode_row

SPECVERSION = "1.0"
#: The content type of a structured-mode CloudEvent in JSON.
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
#: Metadata keys copied into extension attributes, by the attribute's name.
TRACE_KEYS = ("traceparent", "tracestate")


def event_source() -> str:
    """``DJANGO_CQRS["EVENT_SOURCE"]``, or ``"/"`` and the settings module's top package."""
    source = cqrs_settings.EVENT_SOURCE
    if source:
        return str(source)
    # SETTINGS_MODULE is missing under override_settings(): the environment names it too.
    module = (
        getattr(settings, "SETTINGS_MODULE", None)
        or os.environ.get("DJANGO_SETTINGS_MODULE")
        or "django"
    )
    return "/" + module.split(".", 1)[0]


def event_id(row: EventRow) -> str:
    """The event's CloudEvents id: stable across resends and replays."""
    return f"{row.aggregate_type}/{row.aggregate_id}/{row.aggregate_version}"


def cloudevent(row: EventRow, *, source: str) -> dict[str, Any]:
    """The CloudEvent attributes (``data`` included) of a stored event.

    Raises whatever decoding raises for a row no reader can decode.
    """
    event, envelope = decode_row(row, replaying=False)
    current = type(event).schema_version
    data = row.payload if row.schema_version == current else to_json_dict(event)
    attributes: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event_id(row),
        "source": source,
        "type": type(event).event_type,
        "subject": f"{row.aggregate_type}/{row.aggregate_id}",
        "time": row.recorded_at.isoformat(),
        "datacontenttype": "application/json",
        "schemaversion": current,
        "position": row.position,
        "aggregateversion": row.aggregate_version,
    }
    metadata = envelope.metadata
    if metadata.get("correlation_id"):
        attributes["correlationid"] = str(metadata["correlation_id"])
    if metadata.get("causation_id"):
        attributes["causationid"] = str(metadata["causation_id"])
    for key in TRACE_KEYS:
        if metadata.get(key):
            attributes[key] = str(metadata[key])
    attributes["data"] = data
    return attributes


def structured(attributes: dict[str, Any]) -> bytes:
    """The JSON structured-mode body of a CloudEvent."""
    return json.dumps(attributes, ensure_ascii=False, separators=(",", ":")).encode()
