"""``Idempotency-Key`` for commands: the first answer is stored and replayed.

    POST /api/orders/   Idempotency-Key: 3f1c...   ->  201 {"order_id": "..."}
    POST /api/orders/   Idempotency-Key: 3f1c...   ->  201 {"order_id": "..."}  (same order)
                                                        Idempotent-Replayed: true

A key belongs to one user and one request (method, path and canonical JSON body):
the same key with another request answers 422. The first request inserts the key's row
in its own transaction before running (the unique row is the lock); a concurrent request
with the same key waits up to ``IDEMPOTENCY_WAIT`` seconds for the first answer, then
gets 409. The answer is written in the command's own transaction, so a command never
commits without it.

Only the answer of a command that ran is kept (Stripe's rule; the IETF draft
``draft-ietf-httpapi-idempotency-key-header`` replays "the result of the previously
completed operation"): a success, or the handler's own refusal (422 invariant violated,
404 aggregate not found). A request rejected before it ran, or whose run was undone,
gives its key back, so the corrected request runs with the same key: invalid fields and
malformed headers (400, checked before the key is claimed), a failed precondition (412),
a concurrency conflict (409), too many requests (429), a lock timeout (503) and every
other 5xx. Kept answers are replayed until ``IDEMPOTENCY_TTL`` seconds have passed
(``manage.py cqrs_purge_idempotency`` deletes expired rows).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, router, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from ..conf import cqrs_settings
from .exceptions import BadHeader, IdempotencyKeyInUse, IdempotencyKeyReused
from .models import IdempotencyRecord

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: Response headers kept with the answer and sent again on a replay.
STORED_HEADERS = ("CQRS-Position", "ETag", "Location")
#: Answers of a request that was rejected before it ran, or undone: not kept (and 5xx).
UNSTORED_STATUSES = frozenset({400, 409, 412, 413, 415, 428, 429})


class ClaimLostError(Exception):
    """Another request took over this key's claim (after ``IDEMPOTENCY_LOCK_TIMEOUT``)."""


def validate_key(key: str) -> str:
    """The key, or ``BadHeader`` (400) unless it is 1 to 255 visible ASCII characters."""
    if not 0 < len(key) <= 255 or not all(33 <= ord(c) <= 126 for c in key):
        raise BadHeader(
            f"{KEY_HEADER} must be 1 to 255 visible ASCII characters", header=KEY_HEADER
        )
    return key


def fingerprint(request: Request) -> str:
    """SHA-256 of the request's method, path and JSON body in canonical form.

    The body is ``request.data``, parsed by the view's parser (with its depth limit);
    an empty body counts as no bytes.
    """
    if request.stream is None:
        body = b""
    else:
        body = json.dumps(request.data, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256()
    for part in (str(request.method).encode(), request.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def user_key(request: Request) -> str:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ""
    return str(user.pk)


@dataclasses.dataclass
class Claim:
    """This request holds the key: run the command, then :meth:`complete` or :meth:`release`."""

    record_id: int
    token: str
    using: str

    def _mine(self) -> Any:
        return IdempotencyRecord.objects.using(self.using).filter(
            pk=self.record_id, lock_token=self.token
        )

    def complete(self, response: Response) -> None:
        """Store ``response`` as the key's answer; ``ClaimLostError`` if the claim was taken."""
        headers = {name: response[name] for name in STORED_HEADERS if name in response}
        if response.content_type:
            headers["Content-Type"] = response.content_type
        body = "" if response.data is None else json.dumps(response.data, cls=JSONEncoder)
        updated = self._mine().update(
            response_status=response.status_code, response_body=body, response_headers=headers
        )
        if not updated:
            raise ClaimLostError(f"the claim on idempotency record {self.record_id} was taken")

    def release(self) -> None:
        """Give the key up so that the client can try again."""
        self._mine().delete()


def replay(record: IdempotencyRecord) -> Response:
    """The stored answer, marked ``Idempotent-Replayed: true``."""
    headers = dict(record.response_headers)
    content_type = headers.pop("Content-Type", None)
    data = json.loads(record.response_body) if record.response_body else None
    response = Response(data, status=record.response_status, content_type=content_type)
    for name, value in headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def claim(key: str, user: str, request_hash: str) -> Claim | Response:
    """Take the key for this request, or return the stored answer to replay.

    Raises ``IdempotencyKeyReused`` (422) for another request's key and
    ``IdempotencyKeyInUse`` (409) when the first request does not finish in time.
    """
    using = router.db_for_write(IdempotencyRecord)
    manager = IdempotencyRecord.objects.using(using)
    deadline = time.monotonic() + float(cqrs_settings.IDEMPOTENCY_WAIT)
    delay = 0.01
    while True:
        now = timezone.now()
        token = uuid.uuid4().hex
        try:
            with transaction.atomic(using=using):
                record = manager.create(
                    key=key,
                    user=user,
                    request_hash=request_hash,
                    lock_token=token,
                    locked_at=now,
                    expires_at=now + dt.timedelta(seconds=float(cqrs_settings.IDEMPOTENCY_TTL)),
                )
            return Claim(record.pk, token, using)
        except IntegrityError:
            pass
        existing = manager.filter(user=user, key=key).first()
        if existing is None:
            continue  # deleted (expired or released) since: try again
        record = existing
        if record.expires_at <= now:
            manager.filter(pk=record.pk, expires_at__lte=now).delete()
            continue
        if record.request_hash != request_hash:
            raise IdempotencyKeyReused()
        if record.response_status is not None:
            return replay(record)
        abandoned = now - dt.timedelta(seconds=float(cqrs_settings.IDEMPOTENCY_LOCK_TIMEOUT))
        if record.locked_at <= abandoned:
            # The first request died without an answer; its command never committed,
            # since the answer is written in the command's transaction.
            if manager.filter(pk=record.pk, lock_token=record.lock_token).update(
                lock_token=token, locked_at=now
            ):
                return Claim(record.pk, token, using)
            continue
        if time.monotonic() >= deadline:
            raise IdempotencyKeyInUse()
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def run_idempotent(
    request: Request,
    key: str,
    execute: Callable[[], Response],
    to_response: Callable[[Exception], Response],
) -> Response:
    """Run ``execute`` once per key; ``to_response`` turns its errors into answers.

    Validate the request before calling this: the fingerprint reads ``request.data``.
    """
    outcome = claim(validate_key(key), user_key(request), fingerprint(request))
    if isinstance(outcome, Response):
        return outcome
    try:
        with transaction.atomic(using=outcome.using):
            response = execute()
            if _storable(response):
                outcome.complete(response)
    except ClaimLostError:
        return to_response(IdempotencyKeyInUse())
    except Exception as exc:
        try:
            response = to_response(exc)
        except BaseException:
            outcome.release()
            raise
        if _storable(response):
            outcome.complete(response)
        else:
            outcome.release()
        return response
    if not _storable(response):
        outcome.release()
    return response


def _storable(response: Response) -> bool:
    """Did the command run (keep its answer), or was it rejected or undone (give the key back)?"""
    return response.status_code < 500 and response.status_code not in UNSTORED_STATUSES


def purge_expired(*, now: dt.datetime | None = None) -> int:
    """Delete expired records; return how many."""
    using = router.db_for_write(IdempotencyRecord)
    deleted, _ = (
        IdempotencyRecord.objects.using(using)
        .filter(expires_at__lte=now or timezone.now())
        .delete()
    )
    return deleted
