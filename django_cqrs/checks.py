"""System checks for django_cqrs; ids are stable and listed in docs/checks.md.

$ python manage.py check
ERRORS:
?: (django_cqrs.E004) orders.PlaceOrder has two command handlers: ...
    HINT: Keep one @command_handler per command type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import connections
from django.db.models import Count

from .bus import command_bus, query_bus
from .commands import Command
from .conf import (
    DEFAULTS,
    HEALTH_DETAILS_CHOICES,
    IMPORT_STRINGS,
    MAX_JSON_DEPTH_LIMIT,
    METRICS_ACCESS_CHOICES,
    SETTING_NAME,
    cqrs_settings,
    is_seconds_or_none,
    is_valid_max_body_size,
    is_valid_max_json_depth,
    perform_import,
)
from .db.readonly import statements_only
from .events import (
    Event,
    conflicts,
    missing_upcast,
    registered_event_types,
    registered_upcasters,
    versions_without_upcaster,
)
from .exceptions import ConfigurationError, CQRSError
from .inbox.config import inbox_problems, missing_package
from .inbox.registry import registrations as inbox_registrations
from .models import StoredEvent
from .projections import ASYNC, all_projections
from .projections.status import Activity
from .queries import Query
from .read_models import ReadModel
from .registry import Registry, describe
from .relays.base import all_relays, check_configuration
from .serialization import check_supported
from .tasks import BATCH_ROOM_SECONDS, catch_up_budget


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001 unknown keys, E002 bad dotted paths, E003 wrong types or values, E010 LOCK_TIMEOUT,
    E011 HEALTH_DEGRADED_ACTIVITIES, E012 STALL_SECONDS, E014
    HEALTH_DETAILS."""
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
        ("TRACING", bool),
        ("METRICS", bool),
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
    messages.extend(_value_messages(user))
    messages.extend(_health_messages(user))
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


class _ValueRule(NamedTuple):
    """A setting whose value ``valid`` accepts, or: "<key> must be <must_be>, got <value>"."""

    key: str
    valid: Callable[[Any], bool]
    must_be: str
    hint: str
    id: str


_VALUE_RULES = (
    _ValueRule(
        "CATCHUP_TIME_BUDGET",
        is_seconds_or_none,
        "a positive number of seconds or None",
        "None (the default) takes half of Q_CLUSTER['timeout'].",
        "django_cqrs.E003",
    ),
    _ValueRule(
        "MAX_BODY_SIZE",
        is_valid_max_body_size,
        "a positive int of bytes or None",
        f"Default: {DEFAULTS['MAX_BODY_SIZE']!r} (1 MiB); None: no limit.",
        "django_cqrs.E003",
    ),
    _ValueRule(
        "MAX_JSON_DEPTH",
        is_valid_max_json_depth,
        f"an int from 1 to {MAX_JSON_DEPTH_LIMIT}",
        f"Default: {DEFAULTS['MAX_JSON_DEPTH']!r}; deeper JSON would reach Python's "
        "recursion limit.",
        "django_cqrs.E003",
    ),
    _ValueRule(
        "LOCK_TIMEOUT",
        is_seconds_or_none,
        "a positive number of seconds or None",
        "For example 10.0 (the default), 0.5 for an API that should answer fast, or None to "
        "keep the database server's lock_timeout.",
        "django_cqrs.E010",
    ),
    _ValueRule(
        "STALL_SECONDS",
        is_seconds_or_none,
        "a positive number of seconds or None",
        "For example 120.0 (the default), or None to never report a stall.",
        "django_cqrs.E012",
    ),
    _ValueRule(
        "HEALTH_DETAILS",
        lambda value: value in HEALTH_DETAILS_CHOICES,
        "one of " + ", ".join(map(repr, HEALTH_DETAILS_CHOICES)),
        '"permission" (the default) shows the figures to users with the permission '
        'django_cqrs.view_projectionstate; "public" to everyone.',
        "django_cqrs.E014",
    ),
    _ValueRule(
        "METRICS_ACCESS",
        lambda value: value in METRICS_ACCESS_CHOICES,
        "one of " + ", ".join(map(repr, METRICS_ACCESS_CHOICES)),
        '"public" (the default): anyone who reaches the metrics view (keep it on an internal '
        'network); "permission": users with the permission django_cqrs.view_projectionstate.',
        "django_cqrs.E003",
    ),
)


def _value_messages(user: dict[str, Any]) -> list[CheckMessage]:
    """E003, E010, E012, E014: the settings of ``_VALUE_RULES`` that their rule refuses."""
    return [
        Error(
            f"{SETTING_NAME}[{rule.key!r}] must be {rule.must_be}, got {user[rule.key]!r}.",
            hint=rule.hint,
            id=rule.id,
        )
        for rule in _VALUE_RULES
        if rule.key in user and not rule.valid(user[rule.key])
    ]


#: The activities ``HEALTH_DEGRADED_ACTIVITIES`` may list ("live" is never degraded).
DEGRADABLE = tuple(str(a) for a in Activity if a != Activity.LIVE)


def _health_messages(user: dict[str, Any]) -> list[CheckMessage]:
    """E011 HEALTH_DEGRADED_ACTIVITIES."""
    messages: list[CheckMessage] = []
    if "HEALTH_DEGRADED_ACTIVITIES" in user:
        value = user["HEALTH_DEGRADED_ACTIVITIES"]
        listed = isinstance(value, list | tuple | set | frozenset)
        unknown = [v for v in value if v not in DEGRADABLE] if listed else []
        if not listed or unknown:
            what = f"lists {', '.join(map(repr, unknown))}" if listed else f"is {value!r}"
            messages.append(
                Error(
                    f"{SETTING_NAME}['HEALTH_DEGRADED_ACTIVITIES'] must be a list of activities, "
                    f"and {what}.",
                    hint="Choose from: " + ", ".join(map(repr, DEGRADABLE)) + "; for example "
                    '["stalled"] to keep a paused projection healthy, or [] for none.',
                    id="django_cqrs.E011",
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


def _in_installed_app(cls: Any) -> bool:
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
        if not cls.read_models and cls.rebuildable:  # a saga keeps instances, not read models
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


@register(Tags.models)
def check_read_model_references(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E013 a database foreign key into a read model from a table the rebuild does not swap."""
    owners: dict[type, list[Any]] = {}
    for cls in all_projections():
        for model in cls.read_models:
            owners.setdefault(model, []).append(cls)
    configs = apps.get_app_configs() if app_configs is None else app_configs
    messages: list[CheckMessage] = []
    for config in configs:
        for model in config.get_models(include_auto_created=True):
            for field in model._meta.local_fields:
                target: Any = field.related_model if field.is_relation else None
                if target not in owners or not getattr(field, "db_constraint", False):
                    continue
                strangers = [cls.name for cls in owners[target] if model not in cls.read_models]
                if strangers:
                    messages.append(
                        Error(
                            f"{model.__name__}.{field.name} is a database foreign key to "
                            f"{target.__name__}, a read model of {', '.join(strangers)}: a "
                            "rebuild puts a new table in its place, which the constraint "
                            "would not survive (the rebuild refuses to run).",
                            hint="Declare the field with db_constraint=False (the column and "
                            "its index stay), or list "
                            f"{model.__name__} among that projection's read_models.",
                            obj=field,
                            id="django_cqrs.E013",
                        )
                    )
    return messages


def _event_classes() -> list[type[Event]]:
    """Each event class of an installed app once (a class is registered under its aliases
    too)."""
    return [
        cls
        for cls in dict.fromkeys(registered_event_types().values())
        if "__dataclass_fields__" in cls.__dict__ and _in_installed_app(cls)
    ]


@register(Tags.compatibility)
def check_events(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E008 event fields whose types cannot be stored as JSON."""
    messages: list[CheckMessage] = []
    for cls in _event_classes():
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
def check_relays(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E020 a relay's settings are wrong (it does not run); W013 its EVENTS match no event."""
    try:
        problems = check_configuration()
    except (ConfigurationError, TypeError, ValueError):
        problems = []  # DJANGO_CQRS itself is wrong: E001 and E003 say so
    messages: list[CheckMessage] = [
        Error(
            f"{problem}; the relay does not run.",
            hint="See docs/relays.md for each backend's options.",
            id="django_cqrs.E020",
        )
        for problem in problems
    ]
    for cls in all_relays():
        if not cls.handlers:
            messages.append(
                Warning(
                    f"Relay {cls.relay_name!r}: EVENTS {cls.options['EVENTS']!r} match no "
                    "registered event; it sends nothing.",
                    hint="List stored event names (Event.event_type) or fnmatch patterns "
                    "of them, e.g. 'orders.*'.",
                    id="django_cqrs.W013",
                )
            )
    return messages


@register(Tags.compatibility)
def check_upcasting(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E015 a stored name or an upcast step defined twice, W009 older schema versions no
    upcaster starts from, W010 upcasters that never run."""
    messages: list[CheckMessage] = [
        Error(
            f"{conflict.what[:1].upper()}{conflict.what[1:]} is defined twice: by "
            f"{describe(conflict.first)} and {describe(conflict.second)} "
            "(the second was refused when its module was imported).",
            hint="A stored name (an event's name= or one of its aliases) decodes to one "
            "class, and each upcast step has one function: rename or remove one of them.",
            id="django_cqrs.E015",
        )
        for conflict in dict.fromkeys(conflicts)
        if _in_installed_app(conflict.first) or _in_installed_app(conflict.second)
    ]
    for cls in _event_classes():
        missing = versions_without_upcaster(cls)
        if missing:
            listed = ", ".join(map(str, missing))
            messages.append(
                Warning(
                    f"Event {cls.event_type} is at schema version {cls.schema_version}, but "
                    f"no upcaster starts from version {listed}: an event stored at "
                    f"{'that version' if len(missing) == 1 else 'those versions'} cannot "
                    "be read.",
                    hint=f"Register @upcaster({cls.event_type!r}, {missing[0]}) (payload in, "
                    "payload of the next version out) in the module that defines "
                    f"{cls.__qualname__}. `manage.py check --database default` tells "
                    "whether the log holds such events (django_cqrs.E016).",
                    obj=cls,
                    id="django_cqrs.W009",
                )
            )
    known = registered_event_types()
    for (name, version), func in registered_upcasters().items():
        if not _in_installed_app(func):
            continue
        where = describe(func)
        target = known.get(name)
        if target is None:
            why = f"no event class has the name or alias {name!r}"
            hint = (
                "Fix the name, or add it to the aliases=(...) of the class its events now "
                "decode to."
            )
        elif version >= target.schema_version:
            why = f"{target.event_type} is at schema version {target.schema_version}"
            hint = (
                f"Bump the class's version= to {version + 1}: new events are then stored "
                "at that version, and older ones read through this upcaster."
            )
        else:
            continue
        messages.append(
            Warning(
                f"The upcaster {where} of {name!r} from schema version {version} never "
                f"runs: {why}.",
                hint=hint,
                obj=func,
                id="django_cqrs.W010",
            )
        )
    return messages


@register(Tags.database)
def check_stored_events(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """E016 stored schema versions no upcaster brings to the current one, W011 stored names
    no class has, W012 stored versions newer than the code; only with ``check --database``
    (and ``migrate``) on ``DATABASE``, in one query grouping the log."""
    try:
        alias = cqrs_settings.DATABASE
    except CQRSError:
        return []  # check_settings reports it
    if not databases or alias not in databases:
        return []
    table = StoredEvent._meta.db_table
    if table not in connections[alias].introspection.table_names():
        return []  # not migrated yet
    stored = (
        StoredEvent.objects.using(alias)
        .order_by()
        .values_list("event_type", "schema_version")
        .annotate(count=Count("position"))
    )
    unknown: dict[str, list[tuple[int, int]]] = {}
    known = registered_event_types()
    messages: list[CheckMessage] = []
    for name, version, count in sorted(stored):
        cls = known.get(name)
        if cls is None:
            unknown.setdefault(name, []).append((version, count))
            continue
        missing = missing_upcast(name, version)
        if missing is None:
            continue
        events = f"The log holds {count:,} event{'s' if count != 1 else ''} {name!r} at schema "
        if version > cls.schema_version:
            messages.append(
                Warning(
                    f"{events}version {version}, newer than {cls.message_name()}'s version "
                    f"{cls.schema_version}: this code cannot read them.",
                    hint="Newer code stored them (a deploy under way, or rolled back): "
                    "projections retry them, then park them. Deploy the code that bumped "
                    "the version.",
                    obj=cls,
                    id="django_cqrs.W012",
                )
            )
            continue
        messages.append(
            Error(
                f"{events}version {version}, which no upcaster brings to "
                f"{cls.message_name()}'s version {cls.schema_version}: none starts from "
                f"version {missing}. Reading them raises SerializationError.",
                hint=f"Register @upcaster({name!r}, {missing}) in the module that defines "
                f"{cls.__qualname__} (docs/concepts.md, Evolve an event).",
                obj=cls,
                id="django_cqrs.E016",
            )
        )
    for name, versions in unknown.items():
        count = sum(n for _, n in versions)
        listed = ", ".join(str(version) for version, _ in versions)
        messages.append(
            Warning(
                f"The log holds {count:,} event{'s' if count != 1 else ''} named {name!r} "
                f"(schema version {listed}), and no event class has that name or alias: "
                "reading them raises UnknownEventTypeError.",
                hint="Import the module that defines its class (in an installed app), or "
                f"add {name!r} to the aliases=(...) of the class its events now decode to. "
                "If nothing reads them any more, silence django_cqrs.W011.",
                id="django_cqrs.W011",
            )
        )
    return messages


@register(Tags.compatibility)
def check_q_cluster(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W004 retry not above timeout, W005 unbounded max_attempts, W006 STALL_SECONDS within
    the periodic schedule, W007 a catch-up budget that does not fit the timeout, E009
    django_q missing."""
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
    messages.extend(_budget_messages(conf))
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
    messages.extend(_stall_messages())
    return messages


def _stall_messages() -> list[CheckMessage]:
    """W006: STALL_SECONDS no longer than the periodic schedule's interval."""
    user = getattr(settings, SETTING_NAME, {}) or {}
    if not isinstance(user, dict):
        return []  # E003
    stall = user.get("STALL_SECONDS", DEFAULTS["STALL_SECONDS"])
    minutes = user.get("CATCHUP_SCHEDULE_MINUTES", DEFAULTS["CATCHUP_SCHEDULE_MINUTES"])
    if stall is None or not is_seconds_or_none(stall) or not isinstance(minutes, int | float):
        return []  # off, or E012
    if stall > minutes * 60:
        return []
    return [
        Warning(
            f"{SETTING_NAME}['STALL_SECONDS'] ({stall}) is not above the periodic catch-up's "
            f"interval (CATCHUP_SCHEDULE_MINUTES = {minutes}, {minutes * 60} s): a projection "
            "behind only by events it does not handle, or whose task was lost, waits for "
            "that schedule and is reported stalled meanwhile.",
            hint=f"Set STALL_SECONDS above {minutes * 60} s (and above the time of one "
            "catch-up batch), e.g. twice the interval.",
            id="django_cqrs.W006",
        )
    ]


def _budget_messages(conf: dict[str, Any]) -> list[CheckMessage]:
    """W007: a catch-up task stopping at its budget must still end before the worker's
    timeout (and before the broker's retry hands it to another worker)."""
    budget = catch_up_budget()
    limits = {
        key: value
        for key in ("timeout", "retry")
        if isinstance(value := conf.get(key, 60 if key == "retry" else None), int | float)
        and not isinstance(value, bool)
    }
    if budget is None or not limits:
        return []
    key, limit = min(limits.items(), key=lambda item: item[1])
    lock = float(cqrs_settings.LOCK_TIMEOUT or 0)
    needed = lock + BATCH_ROOM_SECONDS
    room = limit - budget
    if room >= needed:
        return []
    return [
        Warning(
            f"A catch-up task stops after its time budget of {budget:g} s, which leaves "
            f"{room:g} s of Q_CLUSTER[{key!r}] ({limit:g} s) for its last batch and for "
            f"waiting on the projection's lock (LOCK_TIMEOUT, {lock:g} s); it needs "
            f"{needed:g} s, or a long catch-up is killed (or handed to a second worker).",
            hint="Set a timeout of 60 s or more (and a retry above it), or lower "
            f"{SETTING_NAME}['CATCHUP_TIME_BUDGET'] (default: half the timeout).",
            id="django_cqrs.W007",
        )
    ]


@register(Tags.compatibility)
def check_query_guard(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W008: a database alias on which a query's writes meet the statement check only."""
    try:
        transaction_read_only = bool(cqrs_settings.QUERY_READ_ONLY_TRANSACTION)
    except CQRSError:
        return []  # a broken DJANGO_CQRS: check_settings reports it
    messages: list[CheckMessage] = []
    for alias in settings.DATABASES:
        reason = statements_only(alias, transaction_read_only=transaction_read_only)
        if reason is not None:
            messages.append(
                Warning(
                    f"Query handlers reading database {alias!r} get the statement check "
                    f"only: {reason}. A write the check cannot see (one inside a database "
                    "function) is not refused by the database.",
                    hint="Keep read models on PostgreSQL (with QUERY_READ_ONLY_TRANSACTION "
                    "= True) or SQLite, or connect to this database as a role that cannot "
                    "write, then silence django_cqrs.W008.",
                    id="django_cqrs.W008",
                )
            )
    return messages


@register(Tags.compatibility)
def check_inboxes(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E030 a malformed INBOXES entry, E031 a backend whose package is missing, W030 an
    ``@inbox_handler(inbox=...)`` naming no configured inbox."""
    user = getattr(settings, SETTING_NAME, {})
    if not isinstance(user, dict):
        return []  # E003
    inboxes = user.get("INBOXES", {})
    if not isinstance(inboxes, dict):
        return [
            Error(
                f"{SETTING_NAME}['INBOXES'] must be a dict of named inboxes, got {inboxes!r}.",
                hint='For example {"orders": {"BACKEND": "rabbitmq", "EXCHANGE": '
                '"demo.events", "QUEUE": "billing.orders"}} (docs/inbox.md).',
                id="django_cqrs.E030",
            )
        ]
    messages: list[CheckMessage] = []
    for name, value in inboxes.items():
        for problem in inbox_problems(name, value):
            messages.append(
                Error(
                    problem + ".",
                    hint="A rabbitmq inbox takes URL, EXCHANGE, QUEUE, BINDINGS, PREFETCH; a "
                    "nats inbox SERVERS, STREAM, DURABLE, SUBJECTS, ACK_WAIT, BATCH; both "
                    "MAX_ATTEMPTS, RETRY_BACKOFF, RETRY_BACKOFF_MAX (docs/settings.md#inboxes).",
                    id="django_cqrs.E030",
                )
            )
        backend = value.get("BACKEND") if isinstance(value, dict) else None
        package = missing_package(backend) if isinstance(backend, str) else None
        if package is not None:
            messages.append(
                Error(
                    f"{SETTING_NAME}['INBOXES'][{name!r}] is a {backend} inbox, and the "
                    f"package {package!r} is not installed.",
                    hint=f"pip install 'django-cqrs-toolkit[{backend}]'.",
                    id="django_cqrs.E031",
                )
            )
    for registration in inbox_registrations():
        if registration.inbox is not None and registration.inbox not in inboxes:
            messages.append(
                Warning(
                    f"The inbox handler {describe(registration.handler)} of "
                    f"{registration.pattern!r} is for the inbox {registration.inbox!r}, which "
                    f"is not in {SETTING_NAME}['INBOXES']: it never runs.",
                    hint="Fix the inbox= name, or configure that inbox "
                    f"(configured: {', '.join(map(repr, inboxes)) or 'none'}).",
                    obj=registration.handler,
                    id="django_cqrs.W030",
                )
            )
    return messages
