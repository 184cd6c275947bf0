"""The API's own views: its root, which lists the routes, and a catch-all 404.

    # urls.py: the router serves its root (GET api/); the catch-all comes after it
    path("api/", include(router.urls)),
    re_path(r"^api/", UnknownRouteView.as_view()),

``GET api/`` answers the resources, the exposed commands and queries, and the links
the router was given, each as an absolute URL. Django's own 404 page is HTML; API
clients get ``application/problem+json`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.urls import NoReverseMatch
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from .exceptions import NotFound, problem_exception_handler

#: The sections of the root's answer, each ``{name: URL}``.
ROOT_SECTIONS = ("resources", "commands", "queries", "links")

_ROOT = inline_serializer(
    name="APIRoot",
    fields={
        name: serializers.DictField(
            child=serializers.URLField(), help_text=f"The {name}: name -> URL."
        )
        for name in ROOT_SECTIONS
    },
)


class APIRootView(APIView):
    """``GET`` the API's prefix: where every route of the API is (built by ``CQRSRouter``)."""

    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    #: ``{section: {name: URL name}}``, set by the router.
    routes: Mapping[str, Mapping[str, str]] = {}

    def get_exception_handler(self) -> Callable[..., Any]:
        return problem_exception_handler

    @extend_schema(
        operation_id="api_root",
        summary="The API's routes",
        description="Where each resource, exposed command and exposed query of the API is, "
        "and links to its documentation.",
        responses={200: _ROOT},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        namespace = request.resolver_match.namespace if request.resolver_match else ""
        body = {
            section: {
                name: url
                for name, url_name in self.routes.get(section, {}).items()
                if (url := _url(url_name, namespace, request)) is not None
            }
            for section in ROOT_SECTIONS
        }
        return Response(body)


def _url(url_name: str, namespace: str, request: Request) -> str | None:
    """The absolute URL of ``url_name``, in the API's namespace first; None if unknown."""
    for name in (f"{namespace}:{url_name}", url_name) if namespace else (url_name,):
        try:
            return str(reverse(name, request=request))
        except NoReverseMatch:
            continue
    return None


class UnknownRouteView(APIView):
    """Answer every method with a 404 problem detail naming the path."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    schema = None  # not an endpoint: keep it out of the OpenAPI schema

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        raise NotFound(f"No API route matches {request.path}.")
