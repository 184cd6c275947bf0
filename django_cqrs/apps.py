"""App configuration: registers the checks and autodiscovers handlers and projections."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.core.signals import setting_changed
from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules

from .conf import cqrs_settings, is_seconds_or_none
from .db.transactions import set_lock_timeout
from .exceptions import ConfigurationError
from .signals import event_recorded


def apply_lock_timeout(*, connection: Any, **kwargs: Any) -> None:
    """``connection_created``: set ``LOCK_TIMEOUT`` on each new connection to ``DATABASE``.

    A broken ``DJANGO_CQRS`` (an unknown key, a LOCK_TIMEOUT that is not seconds) leaves
    the connection as it is: the system checks report it (E001, E010), and connecting,
    for ``manage.py check`` itself, still works.
    """
    try:
        timeout, alias = cqrs_settings.LOCK_TIMEOUT, cqrs_settings.DATABASE
    except ConfigurationError:
        return
    if timeout is not None and is_seconds_or_none(timeout) and connection.alias == alias:
        set_lock_timeout(connection, timeout)


class DjangoCQRSConfig(AppConfig):
    name = "django_cqrs"
    label = "django_cqrs"
    verbose_name = "CQRS"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # These modules import the app's models, which exist only once apps are loaded.
        from . import checks  # noqa: F401  (registers the system checks)
        from .db import appendonly
        from .signals import saga_deadline_scheduled
        from .tasks import ensure_schedule, on_deadline_scheduled, on_event_recorded

        if cqrs_settings.AUTODISCOVER:
            # Import `<app>.handlers` and `<app>.projections`: registering handlers and
            # connecting sync projections happens at import time.
            autodiscover_modules(*cqrs_settings.AUTODISCOVER_MODULES)
        from .relays.base import configure as configure_relays

        # After autodiscovery: a relay's EVENTS patterns match the event classes loaded.
        configure_relays()
        setting_changed.connect(_reconfigure_relays, dispatch_uid="django_cqrs.relays")
        event_recorded.connect(on_event_recorded, dispatch_uid="django_cqrs.tasks.trigger")
        saga_deadline_scheduled.connect(
            on_deadline_scheduled, dispatch_uid="django_cqrs.tasks.deadline"
        )
        # SQLite: Django's flush gets through the log's delete trigger (db/appendonly.py).
        connection_created.connect(
            appendonly.on_connection_created, dispatch_uid="django_cqrs.appendonly"
        )
        appendonly.prepare(connections)
        connection_created.connect(apply_lock_timeout, dispatch_uid="django_cqrs.lock_timeout")
        if apps.is_installed("django_q"):
            post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="django_cqrs.schedule")
        from .sagas.base import start_new_sagas

        post_migrate.connect(start_new_sagas, sender=self, dispatch_uid="django_cqrs.sagas.start")
        if apps.is_installed("django.contrib.admin"):
            from . import admin as cqrs_admin

            if cqrs_settings.ADMIN_AUTOREGISTER_READ_MODELS:
                cqrs_admin.autoregister_read_models()
            # Each saga's instances (SagaInstanceAdmin), unless an admin.py registered them.
            cqrs_admin.autoregister_sagas()


def _reconfigure_relays(*, setting: str, **kwargs: Any) -> None:
    """``DJANGO_CQRS["RELAYS"]`` changed (a test's override_settings): make them again."""
    if setting == "DJANGO_CQRS":
        from .relays.base import configure

        configure()
