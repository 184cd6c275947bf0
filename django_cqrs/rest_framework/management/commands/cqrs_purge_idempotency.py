"""Delete stored Idempotency-Key answers older than ``IDEMPOTENCY_TTL``.

python manage.py cqrs_purge_idempotency        # run it daily, e.g. from cron or django-q2

Comes with the ``django_cqrs.rest_framework`` app (in ``INSTALLED_APPS``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from django_cqrs.rest_framework.idempotency import purge_expired


class Command(BaseCommand):
    help = "Delete expired Idempotency-Key records (older than DJANGO_CQRS['IDEMPOTENCY_TTL'])."

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = purge_expired()
        self.stdout.write(f"Deleted {deleted} expired idempotency record(s).")
