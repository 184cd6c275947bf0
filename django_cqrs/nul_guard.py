"""A Django middleware that answers 400 to a request with a NUL character in its URL or cookies.

    # settings.py: first, before the session middleware reads the cookie
    MIDDLEWARE = [
        "django_cqrs.nul_guard.RejectNulMiddleware",
        "django.middleware.security.SecurityMiddleware",
        ...,
    ]

    GET /admin/django_cqrs/projectionstate/%00/change/   ->  400 application/problem+json

PostgreSQL cannot hold a NUL (``\\x00``) in text, and psycopg refuses to send one: a view
that looks a value from the URL up (the admin's change pages of text primary keys, its
search box, a filter) or a session cookie such as ``sessionid="abc\\000def"`` (Django
decodes the octal escape) would answer 500 with a ``DataError``. No URL or cookie needs a
NUL, so this middleware refuses them before any view runs. Request bodies are the views'
business: the API's serializers and Django's form fields refuse NUL with a 400 already.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

__all__ = ["RejectNulMiddleware", "has_nul"]

NUL = "\x00"
PROBLEM_CONTENT_TYPE = "application/problem+json"


def has_nul(request: HttpRequest) -> bool:
    """Does the request's path, one of its query parameters or a cookie hold a NUL?"""
    if NUL in request.path:
        return True
    for key, values in request.GET.lists():
        if NUL in key or any(NUL in value for value in values):
            return True
    return any(NUL in key or NUL in value for key, value in request.COOKIES.items())


class RejectNulMiddleware:
    """Answer 400 (a problem detail) before any view sees a NUL in the URL or cookies."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not has_nul(request):
            return self.get_response(request)
        problem = {
            "type": "urn:django-cqrs:problem:nul-character",
            "title": "NUL character in the request",
            "status": 400,
            "detail": "The path, the query string or a cookie holds a NUL character.",
            "code": "nul_character",
            "instance": request.path,
        }
        return HttpResponse(json.dumps(problem), status=400, content_type=PROBLEM_CONTENT_TYPE)
