"""The app's own tables: the event log and the projections' checkpoints.

    from django_cqrs.models import StoredEvent, ProjectionState

    StoredEvent.objects.after(120)[:100]       # events after position 120, in order
    StoredEvent.objects.for_aggregate(order)   # one aggregate's stream, in order
    ProjectionState.objects.get(name="orders.OrderViewProjection").position

Stored events are append-only: changing or deleting one raises ``AppendOnlyError``, and
on PostgreSQL and SQLite the database refuses it on every other path too (triggers from
migration 0008, see :mod:`django_cqrs.db.appendonly`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from django.db import DatabaseError, models
from django.utils import timezone

from .db import appendonly
from .db.jsontext import KeyText
from .db.log import LogPoint
from .exceptions import AppendOnlyError

CHANGED = "Stored events cannot be changed; record a new event instead"
DELETED = "Stored events cannot be deleted; the event log is append-only"


class StoredEventQuerySet(models.QuerySet["StoredEvent"]):
    def after(self, position: int) -> StoredEventQuerySet:
        """Events with a position greater than ``position``, in log order."""
        return self.filter(position__gt=position).order_by("position")

    def for_aggregate(
        self, aggregate: Any = None, *, aggregate_type: str = "", aggregate_id: Any = None
    ) -> StoredEventQuerySet:
        """One aggregate's events in version order (pass the instance or type and id)."""
        if aggregate is not None:
            aggregate_type = aggregate._meta.label
            aggregate_id = aggregate.pk
        return self.filter(aggregate_type=aggregate_type, aggregate_id=str(aggregate_id)).order_by(
            "aggregate_version"
        )

    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError(CHANGED)

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        # Refuse before Django opens its atomic block, which the error would spoil.
        raise AppendOnlyError(CHANGED)

    def bulk_create(
        self,
        objs: Iterable[StoredEvent],
        batch_size: int | None = None,
        ignore_conflicts: bool = False,
        update_conflicts: bool = False,
        update_fields: Collection[str] | None = None,
        unique_fields: Collection[str] | None = None,
    ) -> list[StoredEvent]:
        if update_conflicts:  # an upsert: stored events it meets would be changed
            raise AppendOnlyError(CHANGED)
        return super().bulk_create(
            objs,
            batch_size=batch_size,
            ignore_conflicts=ignore_conflicts,
            update_fields=update_fields,
            unique_fields=unique_fields,
        )

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(DELETED)


class StoredEvent(models.Model):
    """One domain event in the append-only log; ``position`` is its global order."""

    position = models.BigAutoField(primary_key=True)
    event_type = models.CharField(max_length=255)
    schema_version = models.PositiveSmallIntegerField(default=1)
    aggregate_type = models.CharField(max_length=255)
    aggregate_id = models.CharField(max_length=64)
    aggregate_version = models.PositiveIntegerField()
    payload = models.JSONField()
    metadata = models.JSONField(default=dict)
    recorded_at = models.DateTimeField(default=timezone.now, db_index=True)
    #: The id of the transaction that appended the event (PostgreSQL: set by the column's
    #: default, ``pg_current_xact_id()``; elsewhere 0). Readers order the log by
    #: ``(transaction_id, position)``: see ``store``.
    transaction_id = models.BigIntegerField(db_default=0, editable=False)

    objects = StoredEventQuerySet.as_manager()

    class Meta:
        db_table = "django_cqrs_event"
        ordering = ["position"]
        # The append-only queryset also guards Django's internal manager.
        base_manager_name = "objects"
        verbose_name = "stored event"
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_type", "aggregate_id", "aggregate_version"],
                name="django_cqrs_event_unique_aggregate_version",
            )
        ]
        indexes = [
            models.Index(fields=["aggregate_type", "aggregate_id"], name="django_cqrs_event_agg"),
            models.Index(fields=["transaction_id", "position"], name="django_cqrs_event_order"),
            # The admin's filters and search: an aggregate id without its type, and the
            # correlation id and user of the metadata, compared as text (``KeyText``).
            models.Index(fields=["aggregate_id"], name="django_cqrs_event_agg_id"),
            # An event type with the position: a deep page of ``?event_type=`` walks
            # the index alone (it replaces the single-column index: no extra write).
            models.Index(fields=["event_type", "position"], name="django_cqrs_event_type"),
            models.Index(KeyText("metadata", "correlation_id"), name="django_cqrs_event_corr"),
            models.Index(KeyText("metadata", "user"), name="django_cqrs_event_user"),
        ]

    def __str__(self) -> str:
        return f"#{self.position} {self.event_type} {self.aggregate_type}:{self.aggregate_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if (
            not self._state.adding
            or kwargs.get("force_update")
            or kwargs.get("update_fields") is not None
        ):
            raise AppendOnlyError(CHANGED)
        try:
            super().save(*args, **kwargs)
        except DatabaseError as exc:
            # A new instance given a stored position: Django tries an UPDATE first, which
            # the database's trigger refuses (an INSERT over it stays an IntegrityError,
            # as on the unique constraints).
            if appendonly.refused(exc) in ("UPDATE", "DELETE"):
                raise AppendOnlyError(f"{CHANGED} (position {self.pk} is stored)") from exc
            raise

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(DELETED)


class ProjectionState(models.Model):
    """The stored state of a projection: its checkpoint, run state and failures.

    What is reported about it (lag, parked events) is a
    :class:`~django_cqrs.projections.status.ProjectionStatus`.
    """

    class State(models.TextChoices):
        """The run state: whether catch-ups apply events."""

        LIVE = "live", "live"
        REBUILDING = "rebuilding", "rebuilding"
        PAUSED = "paused", "paused"
        STOPPED = "stopped", "stopped (parked event)"

    name = models.CharField(max_length=255, primary_key=True)
    #: The checkpoint, ``(transaction_id, position)`` of the last event applied (or passed
    #: over); ``(0, 0)`` before the first.
    position = models.BigIntegerField(default=0)
    transaction_id = models.BigIntegerField(default=0)
    state = models.CharField(max_length=20, choices=State.choices, default=State.LIVE)
    last_error = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)
    #: When the event at ``position`` was recorded (for lag in seconds).
    position_recorded_at = models.DateTimeField(null=True, blank=True)
    #: Rebuild progress: the point the shadow table has reached (resumable).
    rebuild_position = models.BigIntegerField(null=True, blank=True)
    rebuild_transaction_id = models.BigIntegerField(null=True, blank=True)
    rebuild_started_at = models.DateTimeField(null=True, blank=True)
    #: Position of the event that failed last, its failed attempts, and the next try.
    failing_position = models.BigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    #: Relays: the worker publishing a batch (outside the database transaction) and until
    #: when its claim holds; another worker takes the batch over once it has passed.
    lease_owner = models.CharField(max_length=100, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "django_cqrs_projection_state"
        ordering = ["name"]
        verbose_name = "projection"
        # Checked by the projections dashboard in the admin (django_cqrs.admin).
        permissions = [
            ("operate_projection", "Can catch up, pause, resume, retry and skip projections"),
            ("rebuild_projection", "Can rebuild projections from the event log"),
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.position} ({self.state})"

    @property
    def point(self) -> LogPoint:
        """The checkpoint: ``(transaction_id, position)`` of the last event applied."""
        return LogPoint(self.transaction_id, self.position)


class ProjectionTrigger(models.Model):
    """One row per async projection: set when a catch-up task is queued (coalescing).

    Kept apart from :class:`ProjectionState` so that commands setting it never wait for
    the row lock a running catch-up holds on the state.
    """

    name = models.CharField(max_length=255, primary_key=True)
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "django_cqrs_projection_trigger"

    def __str__(self) -> str:
        return f"{self.name} queued at {self.queued_at}"


class ParkedEvent(models.Model):
    """An event a projection failed to apply after its retries, with the traceback."""

    class Resolution(models.TextChoices):
        PARKED = "parked", "parked"
        RETRIED = "retried", "retried"
        SKIPPED = "skipped", "skipped"

    projection = models.CharField(max_length=255, db_index=True)
    position = models.BigIntegerField()
    event_type = models.CharField(max_length=255)
    error = models.TextField()
    traceback = models.TextField()
    attempts = models.PositiveIntegerField()
    parked_at = models.DateTimeField(default=timezone.now)
    resolution = models.CharField(
        max_length=20, choices=Resolution.choices, default=Resolution.PARKED, db_index=True
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "django_cqrs_parked_event"
        ordering = ["projection", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["projection", "position"], name="django_cqrs_parked_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.projection} #{self.position} {self.event_type} ({self.resolution})"


class SagaDeadline(models.Model):
    """A saga instance's deadline: due at ``due_at``, fired at most once, or cancelled."""

    saga = models.CharField(max_length=255)
    instance_key = models.CharField(max_length=200)
    name = models.CharField(max_length=100)
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "django_cqrs_saga_deadline"
        ordering = ["due_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["saga", "instance_key", "name"], name="django_cqrs_saga_deadline_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=["due_at"],
                name="django_cqrs_deadline_pending",
                condition=models.Q(fired_at__isnull=True, cancelled_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.saga} {self.instance_key} {self.name} at {self.due_at:%Y-%m-%d %H:%M:%S}"

    @property
    def pending(self) -> bool:
        return self.fired_at is None and self.cancelled_at is None


class InboxMessage(models.Model):
    """A message an inbox received from another service's broker: applied once.

    ``(source, message_id)`` is the CloudEvent's identity; the row is inserted in the
    transaction that runs the message's handlers, so a message delivered again finds it
    and is skipped. A message whose handlers keep failing, or that is not a valid
    CloudEvent, stays here as ``failed`` with its body (``cqrs_inbox`` shows and retries
    it); one that failed and waits for its next attempt is ``retrying``.
    """

    class State(models.TextChoices):
        HANDLED = "handled", "handled"
        RETRYING = "retrying", "retrying"
        FAILED = "failed", "failed"

    inbox = models.CharField(max_length=100, db_index=True)
    source = models.CharField(max_length=255)
    message_id = models.CharField(max_length=255)
    type = models.CharField(max_length=255, blank=True, default="")
    subject = models.CharField(max_length=255, blank=True, default="")
    state = models.CharField(max_length=20, choices=State.choices, default=State.HANDLED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    #: The message as received, kept while it is not handled (to retry it from here).
    body = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(default=timezone.now)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "django_cqrs_inbox_message"
        ordering = ["-received_at", "-id"]
        verbose_name = "inbox message"
        constraints = [
            models.UniqueConstraint(
                fields=["source", "message_id"], name="django_cqrs_inbox_unique_message"
            )
        ]
        indexes = [
            models.Index(
                fields=["inbox", "received_at"],
                name="django_cqrs_inbox_unhandled",
                condition=~models.Q(state="handled"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.inbox}: {self.type or '?'} {self.source} {self.message_id} ({self.state})"
