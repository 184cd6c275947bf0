"""Errors as RFC 9457 problem details (``application/problem+json``).

    # settings.py
    REST_FRAMEWORK = {
        "EXCEPTION_HANDLER": "django_cqrs.rest_framework.exceptions.problem_exception_handler",
    }

The CQRS viewsets use this handler whatever the setting says. A response looks like::

    HTTP/1.1 422 Unprocessable Content
    Content-Type: application/problem+json

    {"type": "urn:django-cqrs:problem:invariant-violation", "title": "Invariant violated",
     "status": 422, "detail": "a shipped order cannot be cancelled", "code": "invariant_violation",
     "instance": "/api/orders/7c1e.../cancel/", "request_id": "..."}

Field errors (400) add ``errors``: the serializer's errors, by field name.
``TransactionConflictError`` is a deadlock or serialization failure the bus retried.

| error | status |
|---|---|
| malformed JSON (not UTF-8, a duplicate key, NaN), invalid or unknown fields | 400 |
| JSON nested deeper than ``MAX_JSON_DEPTH`` | 400 |
| a malformed header the API reads (the problem's ``header`` names it) | 400 |
| not authenticated / not allowed | 401 / 403 |
| ``AggregateNotFoundError``, a non-UUID id in the URL | 404 |
| a method the route does not serve (``Allow`` lists those it does) | 405 |
| ``ConcurrencyError`` (also ``TransactionConflictError``) after the retries | 409 |
| ``Idempotency-Key`` still in use | 409 |
| stale ``If-Match`` (``PreconditionFailedError``) | 412 |
| body over ``MAX_BODY_SIZE`` | 413 |
| wrong ``Content-Type`` | 415 |
| ``InvariantViolationError``, ``Idempotency-Key`` reused for another request | 422 |
| ``CQRS-Min-Position`` not reached in time | 503 + ``Retry-After`` |
| ``LockTimeoutError``: a lock not granted within ``LOCK_TIMEOUT`` | 503 + ``Retry-After`` |

Database errors raised outside the bus (the ``If-Match`` row lock) are read the same way
(:func:`django_cqrs.middleware.translate_database_error`): a deadlock answers 409, a lock
timeout 503, never 500.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from ..exceptions import (
    AggregateNotFoundError,
    ConcurrencyError,
    InvariantViolationError,
    LockTimeoutError,
    PreconditionFailedError,
)
from ..middleware import translate_database_error

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:django-cqrs:problem:"


class ProblemMixin:
    """Adds the problem ``type`` and ``title`` to an API exception."""

    problem_type = "about:blank"
    title: Any = ""


class InvariantViolated(ProblemMixin, exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = _("A domain rule would be broken.")
    default_code = "invariant_violation"
    problem_type = PROBLEM_TYPE_PREFIX + "invariant-violation"
    title = _("Invariant violated")

    def __init__(self, detail: Any = None, *, field: str | None = None, code: str | None = None):
        super().__init__(detail, code)
        self.field = field


class PreconditionFailed(ProblemMixin, exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = _("The resource has changed since the version given in If-Match.")
    default_code = "stale_version"
    problem_type = PROBLEM_TYPE_PREFIX + "stale-version"
    title = _("Stale version")


class Conflict(ProblemMixin, exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The resource was changed by a concurrent request; try again.")
    default_code = "concurrency_conflict"
    problem_type = PROBLEM_TYPE_PREFIX + "concurrency-conflict"
    title = _("Concurrent change")


class NotFound(ProblemMixin, exceptions.NotFound):
    problem_type = PROBLEM_TYPE_PREFIX + "not-found"
    title = _("Not found")


class PayloadTooLarge(ProblemMixin, exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "payload_too_large"


class IdempotencyKeyReused(ProblemMixin, exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = _("This Idempotency-Key was already used for a different request.")
    default_code = "idempotency_key_reused"
    problem_type = PROBLEM_TYPE_PREFIX + "idempotency-key-reused"
    title = _("Idempotency-Key reused")


class IdempotencyKeyInUse(ProblemMixin, exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("A request with this Idempotency-Key is still being processed.")
    default_code = "idempotency_key_in_use"
    problem_type = PROBLEM_TYPE_PREFIX + "idempotency-key-in-use"
    title = _("Idempotency-Key in use")
    #: Seconds, sent as ``Retry-After``.
    wait = 1


class PositionNotReached(ProblemMixin, exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _("The read model has not yet caught up with the requested position.")
    default_code = "position_not_reached"
    problem_type = PROBLEM_TYPE_PREFIX + "position-not-reached"
    title = _("Read model behind")
    wait = 1


class LockNotGranted(ProblemMixin, exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _("A database lock was not granted in time; try again.")
    default_code = "lock_timeout"
    problem_type = PROBLEM_TYPE_PREFIX + "lock-timeout"
    title = _("Lock timeout")
    wait = 1


class BadHeader(ProblemMixin, exceptions.ParseError):
    """A malformed request header; ``header`` names it (also in the problem's ``header``)."""

    default_code = "invalid_header"
    problem_type = PROBLEM_TYPE_PREFIX + "invalid-header"
    title = _("Invalid header")

    def __init__(self, detail: Any = None, *, header: str | None = None):
        super().__init__(detail)
        self.header = header


def shown(value: str, limit: int = 40) -> str:
    """A header value quoted for an error message, cut at ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


class NestingTooDeep(ProblemMixin, exceptions.ParseError):
    default_detail = _("The JSON body is nested too deeply.")
    default_code = "nesting_too_deep"
    problem_type = PROBLEM_TYPE_PREFIX + "nesting-too-deep"
    title = _("Body nested too deeply")


_TITLES = {
    exceptions.ValidationError: (PROBLEM_TYPE_PREFIX + "validation-error", _("Invalid request")),
    exceptions.ParseError: (PROBLEM_TYPE_PREFIX + "malformed-request", _("Malformed request")),
}


def to_api_exception(exc: Exception) -> Exception:
    """The DRF exception that stands for a django_cqrs error (others pass through)."""
    exc = translate_database_error(exc) or exc
    if isinstance(exc, LockTimeoutError):
        return LockNotGranted(str(exc))
    if isinstance(exc, PreconditionFailedError):
        return PreconditionFailed(str(exc))
    if isinstance(exc, ConcurrencyError):
        return Conflict(str(exc))
    if isinstance(exc, InvariantViolationError):
        return InvariantViolated(exc.message, field=exc.field, code=exc.code)
    if isinstance(exc, AggregateNotFoundError):
        return NotFound(str(exc))
    return exc


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler answering with problem details; None for unexpected errors."""
    exc = to_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    request = context.get("request")
    body = problem_details(exc, response.status_code, response.data, request)
    response.data = encodable(body)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def encodable(data: Any) -> Any:
    """``data`` with every string UTF-8 can encode: a lone surrogate becomes ``\\ud800``.

    Error messages may quote what the client sent (DRF's ``'"\\ud800" is not a valid
    choice.'``), and a lone surrogate, valid in JSON text, cannot be encoded as UTF-8:
    the answer would be a 500.
    """
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return data.encode("utf-8", "backslashreplace").decode("utf-8")
        return data
    if isinstance(data, dict):
        return {encodable(key): encodable(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [encodable(value) for value in data]
    return data


def problem_details(exc: Exception, status_code: int, data: Any, request: Any) -> dict[str, Any]:
    """The problem-details body for ``exc`` (``data`` is DRF's error data)."""
    problem_type, title = "about:blank", ""
    for klass, (type_uri, klass_title) in _TITLES.items():
        if isinstance(exc, klass):
            problem_type, title = type_uri, str(klass_title)
    if isinstance(exc, ProblemMixin):
        problem_type = exc.problem_type
        title = str(exc.title) or title
    if not title:
        title = HTTPStatus(status_code).phrase
    body: dict[str, Any] = {"type": problem_type, "title": title, "status": status_code}
    if isinstance(exc, exceptions.ValidationError):
        body["detail"] = "The request has invalid or unknown fields; see errors."
        body["code"] = "invalid"
        body["errors"] = data if isinstance(data, dict) else {"non_field_errors": data}
    else:
        detail = data.get("detail") if isinstance(data, dict) else data
        body["detail"] = str(detail) if detail is not None else title
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        body["code"] = codes if isinstance(codes, str) else "error"
    if isinstance(exc, InvariantViolated) and exc.field:
        body["field"] = exc.field
    if isinstance(exc, BadHeader) and exc.header:
        body["header"] = exc.header
    if request is not None:
        body["instance"] = request.path
        request_id = getattr(request, "cqrs_request_id", None)
        if request_id:
            body["request_id"] = request_id
    return body
