"""The HTTP API's table: the stored answers to requests sent with an ``Idempotency-Key``.

    from django_cqrs.rest_framework.models import IdempotencyRecord

    IdempotencyRecord.objects.filter(user=str(user.pk), key="3f1c...").first()

Rows expire after ``IDEMPOTENCY_TTL`` seconds; ``manage.py cqrs_purge_idempotency``
deletes the expired ones.
"""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils import timezone

if not apps.is_installed("django_cqrs.rest_framework"):
    # Django would otherwise file the model under the "django_cqrs" app, whose
    # migrations dropped the table: fail here, where the fix can be named.
    raise ImproperlyConfigured(
        "The django_cqrs HTTP API is an app of its own: add 'django_cqrs.rest_framework' "
        "to INSTALLED_APPS (after 'django_cqrs') and run migrate."
    )


class IdempotencyRecord(models.Model):
    """The stored answer to one HTTP command request sent with an ``Idempotency-Key``.

    The row is inserted before the command runs (its unique key is the lock) and gets
    the response in the command's own transaction, so a command commits with its answer.
    """

    key = models.CharField(max_length=255)
    #: Primary key of the user who sent the request ("" for anonymous requests).
    user = models.CharField(max_length=150, blank=True, default="")
    #: SHA-256 of the method, path and (canonical JSON) body.
    request_hash = models.CharField(max_length=64)
    #: Who holds the claim while the request runs; replaced when an abandoned claim is taken.
    lock_token = models.CharField(max_length=32)
    locked_at = models.DateTimeField(default=timezone.now)
    #: Null while the first request is still running.
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        app_label = "django_cqrs_rest"
        # The table kept its name when the model moved here from the core app.
        db_table = "django_cqrs_idempotency"
        verbose_name = "idempotency record"
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="django_cqrs_idempotency_key")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.response_status or 'pending'})"
