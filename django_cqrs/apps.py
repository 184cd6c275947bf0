"""App configuration: registers the checks and autodiscovers handlers and projections."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DjangoCQRSConfig(AppConfig):
    name = "django_cqrs"
    label = "django_cqrs"
    verbose_name = "CQRS"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .conf import cqrs_settings

        if cqrs_settings.AUTODISCOVER:
            # Import `<app>.handlers` and `<app>.projections`: registering handlers and
            # connecting sync projections happens at import time.
            autodiscover_modules(*cqrs_settings.AUTODISCOVER_MODULES)
