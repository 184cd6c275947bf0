"""Apply one received message exactly once: the inbox row and the handlers in one transaction.

    from django_cqrs.inbox.apply import receive, Outcome

    outcome = receive(config, body)   # then, and only then, acknowledge the message

1. The body is read as a CloudEvent; one that is not is recorded ``failed`` (with the
   reason and the body) and the outcome is ``PARKED``: acknowledge it, it never will be.
2. An event no handler wants is ``IGNORED`` (nothing recorded).
3. In one transaction on ``DJANGO_CQRS["DATABASE"]``: the row ``(source, id)`` is
   inserted and the handlers run. A row that is there already (``handled`` or
   ``failed``) means the message was decided before: ``DUPLICATE``, nothing runs.
4. A handler that raises rolls the transaction back; the failure is recorded
   (``retrying``, the attempts counted in the row, so a restarted consumer goes on
   counting) and the message is tried again after the inbox's backoff, up to
   ``MAX_ATTEMPTS``; then it is recorded ``failed`` and the outcome is ``PARKED``.
   When ``wait`` says to stop during a backoff, the outcome is ``ABANDONED``: give the
   message back to the broker unacknowledged.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import time
import traceback
from collections.abc import Callable

from django.db import IntegrityError
from django.utils import timezone

from ..conf import cqrs_settings
from ..db.transactions import command_transaction
from ..models import InboxMessage
from .config import InboxConfig
from .events import IncomingEvent, InvalidMessage, parse
from .registry import handlers_for

State = InboxMessage.State


class Outcome(enum.StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    PARKED = "parked"
    ABANDONED = "abandoned"

    @property
    def acknowledge(self) -> bool:
        """Is the broker's message done with (acknowledge it), or to be delivered again?"""
        return self is not Outcome.ABANDONED


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


def _logger() -> logging.Logger:
    return logging.getLogger(str(cqrs_settings.LOGGER))


def _text(body: bytes | str) -> str:
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body


def receive(
    config: InboxConfig,
    body: bytes | str,
    *,
    message_id: str | None = None,
    wait: Callable[[float], bool] = _sleep,
) -> Outcome:
    """Apply ``body`` (one message of the inbox ``config``); see the module's docstring.

    ``message_id`` is the broker's id for it (used for an invalid message that has none
    of its own); ``wait(seconds)`` waits out a backoff and returns False to give up.
    """
    try:
        event = parse(body, inbox=config.name)
    except InvalidMessage as exc:
        park_invalid(config, body, exc, broker_id=message_id)
        return Outcome.PARKED
    handlers = handlers_for(event.type, config.name)
    if not handlers:
        _logger().debug("inbox %s: no handler for %s %s", config.name, event.type, event.id)
        return Outcome.IGNORED
    while True:
        outcome, failed = _attempt(config, event, body)
        if outcome is not None:
            return outcome
        assert failed is not None
        attempts, error = failed
        final = attempts >= config.max_attempts
        _record_failure(config, event, body, attempts=attempts, error=error, final=final)
        if final:
            _logger().error(
                "inbox %s: %s %s failed %d times; recorded failed: %s",
                config.name,
                event.type,
                event.id,
                attempts,
                error.strip().splitlines()[-1],
            )
            return Outcome.PARKED
        delay = config.backoff(attempts)
        _logger().warning(
            "inbox %s: %s %s failed (attempt %d of %d), again in %gs: %s",
            config.name,
            event.type,
            event.id,
            attempts,
            config.max_attempts,
            delay,
            error.strip().splitlines()[-1],
        )
        if not wait(delay):
            return Outcome.ABANDONED


def _attempt(
    config: InboxConfig, event: IncomingEvent, body: bytes | str
) -> tuple[Outcome | None, tuple[int, str] | None]:
    """One try: ``(outcome, None)`` when decided, ``(None, (attempts, traceback))`` when a
    handler raised."""
    alias = cqrs_settings.DATABASE
    attempts = 0
    row: InboxMessage | None = None
    try:
        with command_transaction(alias):
            row = (
                InboxMessage.objects.using(alias)
                .select_for_update()
                .filter(source=event.source, message_id=event.id)
                .first()
            )
            if row is not None and row.state != State.RETRYING:
                return Outcome.DUPLICATE, None
            attempts = (row.attempts if row is not None else 0) + 1
            if row is None:
                row = InboxMessage(source=event.source, message_id=event.id)
            row.inbox, row.type, row.subject = config.name, event.type, event.subject or ""
            row.state, row.attempts, row.last_error, row.body = State.HANDLED, attempts, "", ""
            row.handled_at = timezone.now()
            # The row first: a consumer inserting the same message meanwhile waits for
            # this transaction, then fails on the unique constraint (a duplicate).
            row.save(using=alias)
            for handler in handlers_for(event.type, config.name):
                handler(event)
    except IntegrityError as exc:
        if row is not None and row.pk is None and _exists(event):
            return Outcome.DUPLICATE, None  # inserted by another consumer meanwhile
        return None, (attempts, "".join(traceback.format_exception(exc)))
    except Exception as exc:
        return None, (attempts, "".join(traceback.format_exception(exc)))
    return Outcome.HANDLED, None


def _exists(event: IncomingEvent) -> bool:
    return (
        InboxMessage.objects.using(cqrs_settings.DATABASE)
        .filter(source=event.source, message_id=event.id)
        .exclude(state=State.RETRYING)
        .exists()
    )


def _record_failure(
    config: InboxConfig,
    event: IncomingEvent,
    body: bytes | str,
    *,
    attempts: int,
    error: str,
    final: bool,
) -> None:
    alias = cqrs_settings.DATABASE
    with command_transaction(alias):
        InboxMessage.objects.using(alias).update_or_create(
            source=event.source,
            message_id=event.id,
            defaults={
                "inbox": config.name,
                "type": event.type,
                "subject": event.subject or "",
                "state": State.FAILED if final else State.RETRYING,
                "attempts": attempts,
                "last_error": error,
                "body": _text(body),
                "handled_at": None,
            },
        )


def park_invalid(
    config: InboxConfig, body: bytes | str, error: InvalidMessage, *, broker_id: str | None
) -> InboxMessage:
    """Record a message that is not a CloudEvent as ``failed``, saying why."""
    raw = body.encode() if isinstance(body, str) else body
    message_id = error.message_id or broker_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    _logger().error(
        "inbox %s: message %s is not a valid CloudEvent, recorded failed: %s",
        config.name,
        message_id,
        error,
    )
    alias = cqrs_settings.DATABASE
    with command_transaction(alias):
        row, created = InboxMessage.objects.using(alias).get_or_create(
            source=error.source,
            message_id=message_id,
            defaults={"inbox": config.name, "type": error.type, "state": State.FAILED},
        )
        row.attempts += 1
        if created or row.state != State.HANDLED:
            row.state = State.FAILED
            row.last_error = f"not a valid CloudEvent: {error}"
            row.body = _text(body)
        row.save(using=alias)
    return row


def retry_failed(config: InboxConfig, row: InboxMessage) -> Outcome:
    """Apply a ``failed`` row's stored body again (``cqrs_inbox --retry``): its attempts
    start over, with no backoff between them."""
    alias = cqrs_settings.DATABASE
    with command_transaction(alias):
        InboxMessage.objects.using(alias).filter(pk=row.pk, state=State.FAILED).update(
            state=State.RETRYING, attempts=0
        )
    try:
        event = parse(row.body, inbox=config.name)
    except InvalidMessage as exc:
        with command_transaction(alias):
            InboxMessage.objects.using(alias).filter(pk=row.pk).update(
                state=State.FAILED, last_error=f"not a valid CloudEvent: {exc}"
            )
        return Outcome.PARKED
    if (event.source, event.id) != (row.source, row.message_id):
        with command_transaction(alias):
            InboxMessage.objects.using(alias).filter(pk=row.pk).update(state=State.FAILED)
        return Outcome.PARKED
    if not handlers_for(event.type, config.name):
        with command_transaction(alias):
            InboxMessage.objects.using(alias).filter(pk=row.pk).update(
                state=State.HANDLED, body="", last_error="", handled_at=timezone.now()
            )
        return Outcome.IGNORED
    return receive(config, row.body, wait=lambda seconds: True)
