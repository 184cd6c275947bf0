"""``DJANGO_CQRS["INBOXES"]``: each named inbox's settings, with defaults, and what is wrong.

    from django_cqrs.inbox.config import inbox_config, inbox_problems

    inbox_config("orders")            # an InboxConfig, or ConfigurationError naming the setting
    inbox_problems("orders", {...})   # ["... must be ..."]: what system check E030 reports

Every inbox has a ``BACKEND`` and the keys of that backend (``BACKENDS``); the retry
keys (``MAX_ATTEMPTS``, ``RETRY_BACKOFF``, ``RETRY_BACKOFF_MAX``) are common to both.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Mapping
from typing import Any

from ..conf import SETTING_NAME, cqrs_settings
from ..exceptions import ConfigurationError

#: The keys every inbox takes, with their defaults.
COMMON: dict[str, Any] = {
    "BACKEND": None,
    # Attempts at a message whose handlers raise, before it is recorded failed and acked.
    "MAX_ATTEMPTS": 5,
    # Seconds before the second attempt; doubled for each next one, up to RETRY_BACKOFF_MAX.
    "RETRY_BACKOFF": 1.0,
    "RETRY_BACKOFF_MAX": 60.0,
}

#: Each backend's own keys and their defaults (``None``: required).
BACKENDS: dict[str, dict[str, Any]] = {
    "rabbitmq": {
        "URL": "amqp://guest:guest@127.0.0.1:5672/",
        "EXCHANGE": None,  # a durable topic exchange, declared if missing
        "QUEUE": None,  # a durable queue of this service, declared and bound
        "BINDINGS": ["#"],  # routing-key patterns: the CloudEvent types wanted
        "PREFETCH": 10,  # unacknowledged messages the broker hands over at once
    },
    "nats": {
        "SERVERS": ["nats://127.0.0.1:4222"],
        "STREAM": None,  # the JetStream stream the relay publishes to
        "DURABLE": None,  # this service's durable consumer on it, created if missing
        "SUBJECTS": [],  # subject filters ([]: the whole stream)
        "ACK_WAIT": 30.0,  # seconds before an unacknowledged message is delivered again
        "BATCH": 10,  # messages fetched at once
    },
}

#: The package each backend needs (the ``rabbitmq`` and ``nats`` extras).
PACKAGES = {"rabbitmq": "pika", "nats": "nats"}


@dataclasses.dataclass(frozen=True)
class InboxConfig:
    """One inbox's settings, defaults filled in."""

    name: str
    backend: str
    options: Mapping[str, Any]

    @classmethod
    def of(cls, name: str, backend: str = "rabbitmq", **options: Any) -> InboxConfig:
        """An inbox's settings without ``INBOXES`` (tests): the defaults, then ``options``."""
        return cls(name=name, backend=backend, options={**COMMON, **BACKENDS[backend], **options})

    @property
    def max_attempts(self) -> int:
        return int(self.options["MAX_ATTEMPTS"])

    def backoff(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failure."""
        first = float(self.options["RETRY_BACKOFF"])
        return float(min(first * 2 ** (failed_attempts - 1), self.options["RETRY_BACKOFF_MAX"]))

    def setting(self, key: str = "") -> str:
        """How the docs and errors name this inbox's setting (or one of its keys)."""
        where = f"{SETTING_NAME}['INBOXES'][{self.name!r}]"
        return f"{where}[{key!r}]" if key else where

    def __getitem__(self, key: str) -> Any:
        return self.options[key]


def _seconds(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value >= 0
    )


def _positive_int(value: Any) -> bool:
    return type(value) is int and value >= 1


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _texts(value: Any, *, empty: bool) -> bool:
    return (
        isinstance(value, list | tuple)
        and (empty or bool(value))
        and all(_text(item) for item in value)
    )


#: key -> (valid, "must be ...").
_RULES: dict[str, tuple[Any, str]] = {
    "MAX_ATTEMPTS": (_positive_int, "an int of 1 or more"),
    "RETRY_BACKOFF": (_seconds, "a number of seconds (0 or more)"),
    "RETRY_BACKOFF_MAX": (_seconds, "a number of seconds (0 or more)"),
    "URL": (_text, "an amqp:// URL"),
    "EXCHANGE": (_text, "the name of the exchange the relay publishes to"),
    "QUEUE": (_text, "the name of this service's queue"),
    "BINDINGS": (lambda v: _texts(v, empty=False), 'a non-empty list of patterns, e.g. ["#"]'),
    "PREFETCH": (_positive_int, "an int of 1 or more"),
    "SERVERS": (lambda v: _texts(v, empty=False), 'a list of URLs, e.g. ["nats://host:4222"]'),
    "STREAM": (_text, "the name of the JetStream stream"),
    "DURABLE": (_text, "the name of this service's durable consumer"),
    "SUBJECTS": (lambda v: _texts(v, empty=True), "a list of subject filters"),
    "ACK_WAIT": (lambda v: _seconds(v) and v > 0, "a positive number of seconds"),
    "BATCH": (_positive_int, "an int of 1 or more"),
}


def inbox_problems(name: Any, value: Any) -> list[str]:
    """What is wrong with one entry of ``INBOXES`` (empty when nothing is)."""
    where = f"{SETTING_NAME}['INBOXES'][{name!r}]"
    if not _text(name):
        return [f"{where}: an inbox's name must be a non-empty string"]
    if not isinstance(value, dict):
        return [f"{where} must be a dict with a BACKEND, not {type(value).__name__}"]
    backend = value.get("BACKEND")
    if backend not in BACKENDS:
        return [
            f"{where}['BACKEND'] must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}"
        ]
    known = {**COMMON, **BACKENDS[backend]}
    problems = [
        f"{where} has the key {key!r}, which a {backend} inbox does not take"
        for key in sorted(set(value) - set(known), key=str)
    ]
    for key, default in known.items():
        if key == "BACKEND":
            continue
        if key not in value:
            if default is None:
                problems.append(f"{where} needs {key!r}")
            continue
        valid, must_be = _RULES[key]
        if not valid(value[key]):
            problems.append(f"{where}[{key!r}] must be {must_be}, got {value[key]!r}")
    return problems


def missing_package(backend: str) -> str | None:
    """The package a backend needs when it is not installed (check E031), else None."""
    package = PACKAGES.get(backend)
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    return package


def configured_inboxes() -> dict[str, Any]:
    """``INBOXES`` as set (a non-dict: ``{}``; the system check E030 reports it)."""
    value = cqrs_settings.INBOXES
    return dict(value) if isinstance(value, dict) else {}


def inbox_config(name: str) -> InboxConfig:
    """The settings of the inbox ``name``; ``ConfigurationError`` naming what is wrong."""
    inboxes = configured_inboxes()
    if name not in inboxes:
        known = ", ".join(map(repr, inboxes)) or "none"
        raise ConfigurationError(
            f"No inbox named {name!r} in {SETTING_NAME}['INBOXES'] (configured: {known})."
        )
    problems = inbox_problems(name, inboxes[name])
    if problems:
        raise ConfigurationError("; ".join(problems) + " (system check django_cqrs.E030).")
    value = inboxes[name]
    options = {**COMMON, **BACKENDS[value["BACKEND"]], **value}
    return InboxConfig(name=name, backend=value["BACKEND"], options=options)
