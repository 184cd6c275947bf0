"""A catch-all view so that unknown URLs under an API prefix answer with problem details.

    # urls.py: after the router's URLs
    re_path(r"^api/", UnknownRouteView.as_view()),

Django's own 404 page is HTML; API clients get ``application/problem+json`` instead.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from .exceptions import NotFound


class UnknownRouteView(APIView):
    """Answer every method with a 404 problem detail naming the path."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    schema = None  # not an endpoint: keep it out of the OpenAPI schema

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        raise NotFound(f"No API route matches {request.path}.")
