"""The HTTP API as a Django app: its idempotency table and its management command.

# settings.py
INSTALLED_APPS = [
    ...,
    "rest_framework",
    "django_cqrs",
    "django_cqrs.rest_framework",  # after django_cqrs
]
"""

from __future__ import annotations

from django.apps import AppConfig


class CQRSRestConfig(AppConfig):
    name = "django_cqrs.rest_framework"
    #: Not "rest_framework": that is Django REST framework's own label.
    label = "django_cqrs_rest"
    verbose_name = "CQRS HTTP API"
    default_auto_field = "django.db.models.BigAutoField"
