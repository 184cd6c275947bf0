"""Aggregates: Django models that guard their invariants and record domain events.

    from django_cqrs.aggregates import Aggregate
    from django_cqrs.exceptions import InvariantViolationError

    class Account(Aggregate):
        balance = models.DecimalField(max_digits=12, decimal_places=2, default=0)

        def deposit(self, amount: Decimal) -> None:
            self.balance += amount
            self.record_event(Deposited(account_id=self.pk, amount=amount))

        def check_balance_not_negative(self) -> None:     # every check_* method runs on save
            if self.balance < 0:
                raise InvariantViolationError("balance cannot go below zero")

    account.deposit(Decimal("10"))
    account.save()     # invariants -> version check -> events appended -> event_recorded

``save()`` is all or nothing: it runs in its own savepoint and, on any error, restores
``version``, the pending events and the "adding" state, so the instance can be retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, Self

from django.core.exceptions import ValidationError
from django.db import connections, models, router, transaction

from . import store, telemetry
from .context import Save, current_context
from .events import Event, EventEnvelope
from .exceptions import AggregateNotFoundError, ConcurrencyError, ConfigurationError
from .signals import event_committed, event_recorded

logger = logging.getLogger("django_cqrs")


class Aggregate(models.Model):
    """Abstract base of aggregate models: a ``version`` column and recorded events."""

    version = models.PositiveIntegerField(default=0, editable=False)

    #: Names of the ``check_*`` methods that :meth:`check_invariants` runs, in MRO order.
    invariant_checks: ClassVar[tuple[str, ...]] = ()

    class Meta:
        abstract = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if (
                    name.startswith("check_")
                    and name != "check_invariants"
                    and callable(value)
                    and not isinstance(value, classmethod | staticmethod)
                    and name not in names
                ):
                    names.append(name)
        cls.invariant_checks = tuple(names)

    # -- events ---------------------------------------------------------------------

    @property
    def pending_events(self) -> list[Event]:
        """Events recorded since the last successful save."""
        pending: list[Event] = self.__dict__.setdefault("_cqrs_pending", [])
        return pending

    def record_event(self, event: Event) -> None:
        """Record ``event``; it is appended to the log when this aggregate is saved."""
        if not isinstance(event, Event):
            raise ConfigurationError(f"record_event() takes an Event, got {type(event).__name__}")
        self.pending_events.append(event)

    # -- invariants -----------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise ``InvariantViolationError`` when a rule is broken; runs every ``check_*``."""
        for name in self.invariant_checks:
            getattr(self, name)()

    # -- persistence ----------------------------------------------------------------

    @classmethod
    def load(cls, pk: Any, *, using: str | None = None) -> Self:
        """The aggregate with primary key ``pk``, or ``AggregateNotFoundError`` naming it."""
        manager = cls._default_manager.db_manager(using)
        try:
            return manager.get(pk=pk)
        except (cls.DoesNotExist, ValueError, TypeError, ValidationError):
            raise AggregateNotFoundError(
                f"{cls._meta.verbose_name} {pk} does not exist",
                aggregate_type=cls.aggregate_type(),
                aggregate_id=pk,
            ) from None

    @classmethod
    def aggregate_type(cls) -> str:
        """The name stored with this aggregate's events: ``app_label.ModelName``."""
        return cls._meta.label

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Check invariants and version, save, append pending events, send signals."""
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        pending = list(self.pending_events)
        old_version = self.version
        was_adding = self._state.adding
        if was_adding:
            kwargs.setdefault("force_insert", True)
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "version"}
        # Before any write: a violation leaves nothing to roll back.
        self.check_invariants()
        try:
            with transaction.atomic(using=using, savepoint=self._needs_savepoint(using)):
                self.__dict__["_cqrs_expected_version"] = None if was_adding else old_version
                self.version = old_version + max(1, len(pending))
                super().save(*args, **kwargs)
                self.save_related(using)
                envelopes, marker = self._append_events(pending, old_version + 1, using)
                ctx = current_context()
                if ctx is not None:
                    ctx.saves.append(
                        Save(
                            aggregate_type=self.aggregate_type(),
                            aggregate_id=str(self.pk),
                            version=self.version,
                            positions=tuple(envelope.position for envelope in envelopes),
                            using=using,
                            marker=marker,
                        )
                    )
        except BaseException:
            self.version = old_version
            self._state.adding = was_adding
            raise
        finally:
            self.__dict__.pop("_cqrs_expected_version", None)
        self.__dict__["_cqrs_pending"] = []

    @staticmethod
    def _needs_savepoint(using: str) -> bool:
        # Directly inside the transaction the command bus opened for this command, an
        # error fails the whole command, so a savepoint of our own would only cost two
        # round trips. Anywhere else (a nested atomic block, no bus) keep one, so that
        # the caller's transaction stays usable after a failed save.
        ctx = current_context()
        return ctx is None or ctx.transaction != (using, len(connections[using].atomic_blocks))

    def save_related(self, using: str) -> None:
        """Save rows that belong to the aggregate (e.g. order lines) in its transaction.

        Called by :meth:`save` right after the aggregate's own row, inside the same
        savepoint and before the events are appended; the default saves nothing.
        """

    def _append_events(
        self, pending: list[Event], first_version: int, using: str
    ) -> tuple[list[EventEnvelope], Callable[[], None]]:
        """Append ``pending``, send ``event_recorded``; return the envelopes and the
        callback registered with ``on_commit`` (it sends ``event_committed``)."""
        if not pending:
            marker = _CommitMarker()
            transaction.on_commit(marker, using=using)
            return [], marker
        ctx = current_context()
        metadata = ctx.event_metadata() if ctx is not None else {}
        # The W3C trace context of the command's span, when tracing records one: relays
        # send it on with the event, so what a consumer does joins the command's trace.
        trace = telemetry.trace_headers()
        if trace:
            metadata = {**trace, **metadata}
        envelopes = store.append(
            pending,
            aggregate_type=self.aggregate_type(),
            aggregate_id=self.pk,
            first_version=first_version,
            metadata=metadata,
            using=using,
        )
        pairs = list(zip(pending, envelopes, strict=True))
        for event, envelope in pairs:
            event_recorded.send(sender=type(event), event=event, envelope=envelope)
        sender = _committed_sender(pairs)
        transaction.on_commit(sender, using=using)
        return envelopes, sender

    def _do_update(
        self,
        base_qs: models.QuerySet[Any],
        using: str | None,
        pk_val: Any,
        values: Any,
        update_fields: Any,
        forced_update: bool,
    ) -> bool:
        expected = self.__dict__.get("_cqrs_expected_version")
        if expected is None:
            return bool(
                super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
            )
        updated = super()._do_update(
            base_qs.filter(version=expected), using, pk_val, values, update_fields, True
        )
        if not updated:
            raise ConcurrencyError(
                f"{self.aggregate_type()} {pk_val} was changed by someone else: saved from "
                f"version {expected}, which is no longer current (or the row is gone)",
                aggregate_type=self.aggregate_type(),
                aggregate_id=pk_val,
                expected_version=expected,
            )
        return True


class _CommitMarker:
    """The ``on_commit`` callback of a save that recorded no events: does nothing."""

    def __call__(self) -> None:
        pass


def _committed_sender(pairs: list[tuple[Event, EventEnvelope]]) -> Callable[[], None]:
    def send() -> None:
        for event, envelope in pairs:
            for receiver, result in event_committed.send_robust(
                sender=type(event), event=event, envelope=envelope
            ):
                if isinstance(result, Exception):
                    logger.error(
                        "event_committed receiver %r failed for %s at position %s",
                        receiver,
                        envelope.event_type,
                        envelope.position,
                        exc_info=(type(result), result, result.__traceback__),
                    )

    return send
