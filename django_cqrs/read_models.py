"""Read models: denormalized tables that projections write and queries read.

    from django_cqrs.read_models import ReadModel

    class OrderView(ReadModel):
        id = models.UUIDField(primary_key=True)
        customer_name = models.CharField(max_length=200)
        total = models.CharField(max_length=32)

        class Meta:
            indexes = [models.Index(fields=["customer_name"])]

Only projections write read models; query handlers read them. ``cqrs_rebuild`` can
empty and refill them from the event log at any time, so keep nothing in them that the
events do not carry.
"""

from __future__ import annotations

from django.db import models


class ReadModel(models.Model):
    """Abstract base of read-model tables."""

    class Meta:
        abstract = True
