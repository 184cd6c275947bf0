"""System checks for django_cqrs; ids are stable and listed in docs/checks.md.

$ python manage.py check
ERRORS:
?: (django_cqrs.E004) orders.PlaceOrder has two command handlers: ...
    HINT: Keep one @command_handler per command type.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .bus import command_bus, query_bus
from .commands import Command
from .conf import (
    DEFAULTS,
    IMPORT_STRINGS,
    MAX_JSON_DEPTH_LIMIT,
    SETTING_NAME,
    is_valid_lock_timeout,
    is_valid_max_body_size,
    is_valid_max_json_depth,
    perform_import,
)
from .events import registered_event_types
from .exceptions import CQRSError
from .projections import ASYNC, all_projections
from .queries import Query
from .read_models import ReadModel
from .registry import Registry, describe
from .serialization import check_supported


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001 unknown keys, E002 bad dotted paths, E003 wrong types or values, E010 LOCK_TIMEOUT."""
    user = getattr(settings, SETTING_NAME, {})
    if not isinstance(user, dict):
        return [
            Error(
                f"settings.{SETTING_NAME} must be a dict, not {type(user).__name__}.",
                hint=f"Set {SETTING_NAME} = {{...}} in your settings.",
                id="django_cqrs.E003",
            )
        ]
    messages: list[CheckMessage] = []
    for key in sorted(set(user) - set(DEFAULTS)):
        messages.append(
            Error(
                f"{SETTING_NAME} has an unknown key {key!r}.",
                hint="Known keys: " + ", ".join(sorted(DEFAULTS)),
                id="django_cqrs.E001",
            )
        )
    for key in sorted(IMPORT_STRINGS & set(user)):
        value = user[key]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            messages.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] must be a list of dotted paths.",
                    hint='For example ["django_cqrs.middleware.TransactionMiddleware"].',
                    id="django_cqrs.E003",
                )
            )
            continue
        for path in value:
            try:
                perform_import(path, key)
            except CQRSError as exc:
                messages.append(
                    Error(
                        str(exc),
                        hint="Check the spelling of the module and attribute names.",
                        id="django_cqrs.E002",
                    )
                )
    for key, expected in (
        ("CONCURRENCY_RETRIES", int),
        ("REBUILD_BATCH_SIZE", int),
        ("AUTODISCOVER", bool),
    ):
        if key in user and not isinstance(user[key], expected):
            messages.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] must be {expected.__name__}, got {user[key]!r}.",
                    hint=f"Default: {DEFAULTS[key]!r}.",
                    id="django_cqrs.E003",
                )
            )
    if isinstance(user.get("CONCURRENCY_RETRIES"), int) and user["CONCURRENCY_RETRIES"] < 0:
        messages.append(
            Error(
                f"{SETTING_NAME}['CONCURRENCY_RETRIES'] cannot be negative.",
                hint="Use 0 to disable retries.",
                id="django_cqrs.E003",
            )
        )
    if isinstance(user.get("REBUILD_BATCH_SIZE"), int) and user["REBUILD_BATCH_SIZE"] < 1:
        messages.append(
            Error(
                f"{SETTING_NAME}['REBUILD_BATCH_SIZE'] must be at least 1.",
                hint="Default: 2000.",
                id="django_cqrs.E003",
            )
        )
    if "MAX_BODY_SIZE" in user and not is_valid_max_body_size(user["MAX_BODY_SIZE"]):
        messages.append(
            Error(
                f"{SETTING_NAME}['MAX_BODY_SIZE'] must be a positive int of bytes or None, "
                f"got {user['MAX_BODY_SIZE']!r}.",
                hint=f"Default: {DEFAULTS['MAX_BODY_SIZE']!r} (1 MiB); None: no limit.",
                id="django_cqrs.E003",
            )
        )
    if "MAX_JSON_DEPTH" in user and not is_valid_max_json_depth(user["MAX_JSON_DEPTH"]):
        messages.append(
            Error(
                f"{SETTING_NAME}['MAX_JSON_DEPTH'] must be an int from 1 to "
                f"{MAX_JSON_DEPTH_LIMIT}, got {user['MAX_JSON_DEPTH']!r}.",
                hint=f"Default: {DEFAULTS['MAX_JSON_DEPTH']!r}; deeper JSON would reach "
                "Python's recursion limit.",
                id="django_cqrs.E003",
            )
        )
    if "LOCK_TIMEOUT" in user and not is_valid_lock_timeout(user["LOCK_TIMEOUT"]):
        messages.append(
            Error(
                f"{SETTING_NAME}['LOCK_TIMEOUT'] must be a positive number of seconds or None, "
                f"got {user['LOCK_TIMEOUT']!r}.",
                hint="For example 10.0 (the default), 0.5 for an API that should answer fast, "
                "or None to keep the database server's lock_timeout.",
                id="django_cqrs.E010",
            )
        )
    database = user.get("DATABASE", DEFAULTS["DATABASE"])
    if database not in settings.DATABASES:
        messages.append(
            Error(
                f"{SETTING_NAME}['DATABASE'] names {database!r}, which is not in DATABASES.",
                hint="Use one of: " + ", ".join(settings.DATABASES),
                id="django_cqrs.E003",
            )
        )
    return messages


def _duplicate_messages(registry: Registry) -> list[CheckMessage]:
    return [
        Error(
            f"{_name(c.message_type)} has two {registry.kind} handlers: "
            f"{describe(c.first)} and {describe(c.second)}.",
            hint=f"Keep exactly one @{registry.kind}_handler per {registry.kind} type.",
            obj=c.message_type,
            id="django_cqrs.E004",
        )
        for c in registry.conflicts
    ]


def _name(cls: Any) -> str:
    return str(cls.message_name())


def _in_installed_app(cls: type) -> bool:
    return apps.get_containing_app_config(cls.__module__) is not None


def _subclasses(base: type) -> list[type]:
    found: list[type] = []
    stack = list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


@register(Tags.compatibility)
def check_handlers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E004 duplicate handlers, W001 commands and W002 queries without a handler."""
    messages = _duplicate_messages(command_bus.registry) + _duplicate_messages(query_bus.registry)
    for bus, base, check_id in ((command_bus, Command, "W001"), (query_bus, Query, "W002")):
        for cls in _subclasses(base):
            if (
                "__dataclass_fields__" in cls.__dict__
                and _in_installed_app(cls)
                and cls not in bus.registry
                and not cls.__dict__.get("abstract", False)
            ):
                messages.append(
                    Warning(
                        f"{_name(cls)} has no {bus.kind} handler.",
                        hint=f"Decorate a function with @{bus.kind}_handler({cls.__name__}) in "
                        "a `handlers` module of an installed app, or set `abstract = True` on "
                        "a base class.",
                        obj=cls,
                        id=f"django_cqrs.{check_id}",
                    )
                )
    return messages


@register(Tags.models)
def check_projections(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E005 read models that are not ReadModels, E006 duplicate names, W003 no handlers."""
    messages: list[CheckMessage] = []
    seen: dict[str, type] = {}
    for cls in all_projections():
        name = cls.name
        if name in seen and seen[name] is not cls:
            messages.append(
                Error(
                    f"Two projections are named {name!r}: {seen[name].__module__}."
                    f"{seen[name].__qualname__} and {cls.__module__}.{cls.__qualname__}.",
                    hint="Set a distinct `name` on one of them.",
                    obj=cls,
                    id="django_cqrs.E006",
                )
            )
        seen[name] = cls
        if not cls.read_models:
            messages.append(
                Error(
                    f"Projection {name} declares no read_models.",
                    hint="Set read_models = [YourReadModel] so it can be rebuilt.",
                    obj=cls,
                    id="django_cqrs.E005",
                )
            )
        for model in cls.read_models:
            if not (isinstance(model, type) and issubclass(model, ReadModel)):
                kind = "abstract " if getattr(getattr(model, "_meta", None), "abstract", 0) else ""
                messages.append(
                    Error(
                        f"Projection {name} lists {model!r} in read_models, which is not a "
                        f"concrete {kind}ReadModel.",
                        hint="Read models subclass django_cqrs.read_models.ReadModel; "
                        "aggregates and other tables are never emptied by a rebuild.",
                        obj=cls,
                        id="django_cqrs.E005",
                    )
                )
            elif model._meta.abstract:
                messages.append(
                    Error(
                        f"Projection {name} lists the abstract model {model.__name__}.",
                        hint="List concrete read models only.",
                        obj=cls,
                        id="django_cqrs.E005",
                    )
                )
        if not cls.handlers:
            messages.append(
                Warning(
                    f"Projection {name} handles no events.",
                    hint="Decorate methods with @handles(EventType).",
                    obj=cls,
                    id="django_cqrs.W003",
                )
            )
    return messages


@register(Tags.compatibility)
def check_events(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E008 event fields whose types cannot be stored as JSON."""
    messages: list[CheckMessage] = []
    for cls in registered_event_types().values():
        if "__dataclass_fields__" not in cls.__dict__ or not _in_installed_app(cls):
            continue
        for problem in check_supported(cls):
            messages.append(
                Error(
                    f"Event {cls.event_type}: {problem}.",
                    hint="Use str, int, float, bool, UUID, Decimal, datetime, date, Enum, "
                    "dataclasses, list/tuple/dict of those, or X | None.",
                    obj=cls,
                    id="django_cqrs.E008",
                )
            )
    return messages


@register(Tags.compatibility)
def check_q_cluster(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W004 retry not above timeout, W005 unbounded max_attempts, E009 django_q missing."""
    async_names = [cls.name for cls in all_projections() if cls.mode == ASYNC]
    if not async_names:
        return []
    if not apps.is_installed("django_q"):
        return [
            Error(
                f"Async projections ({', '.join(async_names)}) need django-q2, but 'django_q' "
                "is not in INSTALLED_APPS.",
                hint="Add 'django_q' to INSTALLED_APPS and configure Q_CLUSTER.",
                id="django_cqrs.E009",
            )
        ]
    conf = getattr(settings, "Q_CLUSTER", {}) or {}
    messages: list[CheckMessage] = []
    timeout, retry = conf.get("timeout"), conf.get("retry", 60)
    if timeout is None or not isinstance(retry, int | float) or retry <= timeout:
        messages.append(
            Warning(
                f"Q_CLUSTER['retry'] ({retry}) must be greater than Q_CLUSTER['timeout'] "
                f"({timeout}): otherwise a catch-up still running is handed to a second worker.",
                hint="Set a timeout and a retry well above it, e.g. timeout=60, retry=90.",
                id="django_cqrs.W004",
            )
        )
    if not conf.get("max_attempts"):
        messages.append(
            Warning(
                "Q_CLUSTER['max_attempts'] is unbounded (0 or unset): a catch-up task that "
                "keeps failing is retried forever.",
                hint="Set max_attempts (e.g. 5); django_cqrs parks failing events itself and "
                "the periodic schedule catches up.",
                id="django_cqrs.W005",
            )
        )
    return messages
