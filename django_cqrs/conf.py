"""Settings for django_cqrs, read lazily from one ``DJANGO_CQRS`` dict.

    # settings.py
    DJANGO_CQRS = {
        "COMMAND_MIDDLEWARE": [
            "django_cqrs.middleware.LoggingMiddleware",
            "django_cqrs.middleware.RetryMiddleware",
            "django_cqrs.middleware.TransactionMiddleware",
        ],
        "CONCURRENCY_RETRIES": 3,
    }

    from django_cqrs.conf import cqrs_settings
    cqrs_settings.CONCURRENCY_RETRIES    # 3; reloaded on ``setting_changed``

Unknown keys are reported by the system check ``django_cqrs.E001`` (and raise
``ConfigurationError`` when read); dotted paths are imported on first use with an
error that names the setting.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .exceptions import ConfigurationError

SETTING_NAME = "DJANGO_CQRS"

DEFAULTS: dict[str, Any] = {
    # Command bus middleware, outermost first.
    "COMMAND_MIDDLEWARE": [
        "django_cqrs.middleware.LoggingMiddleware",
        "django_cqrs.middleware.RetryMiddleware",
        "django_cqrs.middleware.TransactionMiddleware",
    ],
    # Query bus middleware, outermost first.
    "QUERY_MIDDLEWARE": [
        "django_cqrs.middleware.LoggingMiddleware",
        "django_cqrs.middleware.ReadOnlyMiddleware",
    ],
    # How many times RetryMiddleware re-runs a command after a ConcurrencyError.
    "CONCURRENCY_RETRIES": 3,
    # PostgreSQL: seconds a statement on DATABASE's connections waits for a lock (then
    # LockTimeoutError); set per connection when it opens. None: the server's lock_timeout.
    "LOCK_TIMEOUT": 10.0,
    # Import these modules of every installed app in ready() (`<app>.handlers`, ...).
    "AUTODISCOVER": True,
    "AUTODISCOVER_MODULES": ["handlers", "projections", "sagas", "inbox"],
    # Events read per batch by rebuilds.
    "REBUILD_BATCH_SIZE": 2000,
    # Database alias that holds the event log (the aggregates' alias is used to append).
    "DATABASE": "default",
    # On PostgreSQL, also run query handlers in a READ ONLY transaction.
    "QUERY_READ_ONLY_TRANSACTION": True,
    # Name of the logger used by LoggingMiddleware.
    "LOGGER": "django_cqrs",
    # HTTP API: largest request body in bytes a command or query view accepts (413 above).
    "MAX_BODY_SIZE": 1_048_576,
    # HTTP API: deepest nesting of arrays and objects in a JSON body (400 above; 1 to 100).
    "MAX_JSON_DEPTH": 32,
    # HTTP API: seconds a stored Idempotency-Key response is replayed before it expires.
    "IDEMPOTENCY_TTL": 86_400,
    # HTTP API: seconds a request waits for a concurrent one with the same key (then 409).
    "IDEMPOTENCY_WAIT": 10.0,
    # HTTP API: seconds after which an unfinished Idempotency-Key claim counts as abandoned.
    "IDEMPOTENCY_LOCK_TIMEOUT": 300.0,
    # HTTP API: seconds a query with CQRS-Min-Position waits for its projections (then 503).
    "MIN_POSITION_TIMEOUT": 5.0,
    # Async projections: events per catch-up batch (a projection's batch_size overrides).
    "CATCHUP_BATCH_SIZE": 1000,
    # Async projections: first retry delay in seconds after a failure; doubles per attempt.
    "RETRY_BACKOFF": 1.0,
    # Async projections: longest retry delay in seconds.
    "RETRY_BACKOFF_MAX": 300.0,
    # Async projections: minutes between the periodic django-q2 catch-up of every projection.
    "CATCHUP_SCHEDULE_MINUTES": 1,
    # Async projections: seconds a catch-up task runs before it queues its own follow-up
    # (None: half of Q_CLUSTER["timeout"] or "retry", whichever is shorter).
    "CATCHUP_TIME_BUDGET": None,
    # Async projections: queue catch-up tasks when events are recorded (False: schedule only).
    "TRIGGER_ON_COMMIT": True,
    # Admin: register every ReadModel without an admin of its own with ReadModelAdmin.
    "ADMIN_AUTOREGISTER_READ_MODELS": False,
    # Health endpoint: 503 when a projection lags by more events than this (None: no limit).
    "HEALTH_MAX_LAG_EVENTS": 1000,
    # Health endpoint: 503 when a projection's oldest unapplied event is older (None: no limit).
    "HEALTH_MAX_LAG_SECONDS": 300.0,
    # Async projections: "stalled" when behind with no progress for this many seconds (None:
    # never). Keep it above the periodic schedule and the time of one batch (check W006).
    "STALL_SECONDS": 120.0,
    # Health endpoint: the activities that make a projection unhealthy (503), besides
    # parked events, a stopped projection and the lag limits (check E011).
    "HEALTH_DEGRADED_ACTIVITIES": ["paused", "stalled"],
    # Health endpoint: who sees the figures ("permission": users with the permission
    # django_cqrs.view_projectionstate; "public": everyone). Others get the verdict only.
    "HEALTH_DETAILS": "permission",
    # Relays: named consumers of the log that publish its events to a broker as
    # CloudEvents (docs/relays.md), e.g. {"bus": {"BACKEND": "rabbitmq", "EXCHANGE": "x"}}.
    "RELAYS": {},
    # CloudEvents: the ``source`` of every event this service relays (None: "/" and the
    # top-level package of the settings module, e.g. "/demo_project").
    "EVENT_SOURCE": None,
    # Relays: seconds a worker's claim on a relay's batch lasts while it publishes; a batch
    # whose worker died is published again by another after this.
    "RELAY_LEASE_SECONDS": 30.0,
    # Telemetry: record OpenTelemetry spans (with the opentelemetry extra installed).
    "TRACING": True,
    # Telemetry: record Prometheus metrics (with the prometheus extra installed).
    "METRICS": True,
    # Telemetry: who may scrape django_cqrs.views.metrics ("public": anyone who reaches
    # it; "permission": users with the permission django_cqrs.view_projectionstate).
    "METRICS_ACCESS": "public",
    # Inboxes: named subscriptions to other services' events on a broker, applied once by
    # ``cqrs_consume <name>`` (docs/inbox.md), e.g. {"orders": {"BACKEND": "rabbitmq",
    # "EXCHANGE": "demo.events", "QUEUE": "billing.orders"}}.
    "INBOXES": {},
}

#: The values ``HEALTH_DETAILS`` takes (check E014).
HEALTH_DETAILS_CHOICES = ("permission", "public")
#: The values ``METRICS_ACCESS`` takes (check E003).
METRICS_ACCESS_CHOICES = ("public", "permission")

# Settings holding dotted paths; they are imported when read.
IMPORT_STRINGS = {"COMMAND_MIDDLEWARE", "QUERY_MIDDLEWARE"}


def is_seconds_or_none(value: Any) -> bool:
    """None, or a positive, finite number of seconds (``LOCK_TIMEOUT``: check E010,
    ``STALL_SECONDS``: E012, ``CATCHUP_TIME_BUDGET``: E003)."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value > 0


#: The deepest ``MAX_JSON_DEPTH`` allowed: Python's parser and encoder recurse per level.
MAX_JSON_DEPTH_LIMIT = 100


def is_valid_max_body_size(value: Any) -> bool:
    """``MAX_BODY_SIZE`` is None or a positive int of bytes (check E003)."""
    return value is None or (type(value) is int and value > 0)


def is_valid_max_json_depth(value: Any) -> bool:
    """``MAX_JSON_DEPTH`` is an int from 1 to ``MAX_JSON_DEPTH_LIMIT`` (check E003)."""
    return type(value) is int and 1 <= value <= MAX_JSON_DEPTH_LIMIT


def perform_import(value: Any, setting_name: str) -> Any:
    """Import a dotted path, or each dotted path in a list, naming the setting on error."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return import_string(value)
        except ImportError as exc:
            raise ConfigurationError(
                f"Could not import {value!r} for setting {SETTING_NAME}[{setting_name!r}]: "
                f"{exc.__class__.__name__}: {exc}"
            ) from exc
    if isinstance(value, list | tuple):
        return [perform_import(item, setting_name) for item in value]
    return value


class CQRSSettings:
    """Lazy view of ``settings.DJANGO_CQRS`` with defaults; attribute access only."""

    def __init__(self, defaults: dict[str, Any] | None = None):
        self.defaults = defaults or DEFAULTS
        self._cached: set[str] = set()

    @property
    def user_settings(self) -> dict[str, Any]:
        if not hasattr(self, "_user_settings"):
            self._user_settings: dict[str, Any] = dict(getattr(settings, SETTING_NAME, {}) or {})
        return self._user_settings

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr not in self.defaults:
            raise AttributeError(f"Invalid {SETTING_NAME} setting: {attr!r}")
        unknown = set(self.user_settings) - set(self.defaults)
        if unknown:
            raise ConfigurationError(
                f"Unknown {SETTING_NAME} key(s): {', '.join(sorted(unknown))} "
                "(see the system check django_cqrs.E001)"
            )
        value = self.user_settings.get(attr, self.defaults[attr])
        if attr in IMPORT_STRINGS:
            value = perform_import(value, attr)
        self._cached.add(attr)
        setattr(self, attr, value)
        return value

    def reload(self) -> None:
        for attr in self._cached:
            delattr(self, attr)
        self._cached.clear()
        if hasattr(self, "_user_settings"):
            delattr(self, "_user_settings")


cqrs_settings = CQRSSettings(DEFAULTS)


#: Settings whose change makes ``cqrs_settings`` (and whatever caches them) reload.
RELOADING_SETTINGS = frozenset({SETTING_NAME, "DATABASES"})


@receiver(setting_changed)
def reload_cqrs_settings(*, setting: str, **kwargs: Any) -> None:
    """Forget the cached values; consumers that cache more connect receivers of their own."""
    if setting in RELOADING_SETTINGS:
        cqrs_settings.reload()
