"""The shared base of commands, queries and events: a frozen dataclass with no fields.

Subclasses are plain ``@dataclass(frozen=True)`` classes; the base adds no fields, so
subclasses can declare required fields freely. Message metadata (an event's stored name
and schema version) lives in class attributes, never in fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from .exceptions import ConfigurationError
from .serialization import from_json_dict, to_json_dict


@dataclasses.dataclass(frozen=True)
class Message:
    """Base of :class:`Command`, :class:`Query` and :class:`Event`."""

    kind: ClassVar[str] = "message"

    @classmethod
    def message_name(cls) -> str:
        """Human-readable dotted name used in logs and errors."""
        return f"{cls.__module__}.{cls.__qualname__}"

    def to_dict(self) -> dict[str, Any]:
        """Encode this message's fields to JSON values."""
        return to_json_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Rebuild a message of this class from :meth:`to_dict` output."""
        return from_json_dict(cls, data)


def ensure_frozen_dataclass(cls: type) -> None:
    """Raise ``ConfigurationError`` unless ``cls`` is a frozen dataclass."""
    params = getattr(cls, "__dataclass_params__", None)
    if not dataclasses.is_dataclass(cls) or "__dataclass_fields__" not in cls.__dict__:
        raise ConfigurationError(
            f"{cls.__qualname__} must be decorated with @dataclass(frozen=True)"
        )
    if params is None or not params.frozen:
        raise ConfigurationError(f"{cls.__qualname__} must be a frozen dataclass")
