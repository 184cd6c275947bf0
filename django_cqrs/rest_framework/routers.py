"""A router for CQRS viewsets, plus the opt-in ``commands/`` and ``queries/`` endpoints.

    from django_cqrs.rest_framework.routers import CQRSRouter

    router = CQRSRouter(root_links={"docs": "swagger-ui"})   # links by URL name
    router.register("orders", OrderViewSet, basename="order")
    router.expose_command(PlaceOrder)                 # POST commands/place-order/
    router.expose_query(GetOrder, name="order")       # GET  queries/order/?order_id=...
    urlpatterns = [path("api/", include(router.urls))]  # GET api/ lists the routes

Nothing is exposed under ``commands/`` and ``queries/`` unless named here: each
exposed message is a deliberate part of the public API, with its own permissions.
An exposed query that a registered viewset also answers is served with that route's
serializer, so a resource has one representation (``/orders/{id}/`` and
``queries/get-order/`` send the same fields); pass ``serializer_class=`` to choose one
when the viewsets use several.
The root (``GET api/``, URL name ``api-root``) lists the resources, the exposed
messages and ``root_links``; ``CQRSRouter(include_root_view=False)`` leaves it out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from .routes import MessageRoute
from .views import APIRootView
from .viewsets import CommandView, QueryView


def kebab_case(name: str) -> str:
    """``PlaceOrder`` -> ``place-order``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


class CQRSRouter(SimpleRouter):
    """``SimpleRouter`` that also mounts explicitly exposed commands and queries, and a root."""

    root_view_name = "api-root"

    def __init__(
        self,
        *args: Any,
        include_root_view: bool = True,
        root_links: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.exposed: list[tuple[str, str, MessageRoute]] = []
        self.include_root_view = include_root_view
        #: ``{name: URL name}`` listed under ``links`` by the root (the docs, the schema).
        self.root_links = dict(root_links or {})

    def get_default_basename(self, viewset: Any) -> str:
        name = viewset.__name__.removesuffix("ViewSet")
        return kebab_case(name)

    def expose_command(self, message: type, *, name: str | None = None, **options: Any) -> None:
        """Serve ``message`` at ``POST commands/<name>/`` (name: kebab-case class name)."""
        route = MessageRoute(message, kind="command", **options)
        self._expose("commands", name or kebab_case(message.__name__), route)

    def expose_query(self, message: type, *, name: str | None = None, **options: Any) -> None:
        """Serve ``message`` at ``GET queries/<name>/`` with its fields as query parameters."""
        route = MessageRoute(message, kind="query", **options)
        self._expose("queries", name or kebab_case(message.__name__), route)

    def _expose(self, prefix: str, name: str, route: MessageRoute) -> None:
        if any(p == prefix and n == name for p, n, _ in self.exposed):
            raise ValueError(f"{prefix}/{name}/ is exposed twice")
        self.exposed.append((prefix, name, route))
        if hasattr(self, "_urls"):
            del self._urls

    def root_routes(self) -> dict[str, dict[str, str]]:
        """``{section: {name: URL name}}``: what the root lists."""
        resources = {
            prefix: f"{basename}-list"
            for prefix, viewset, basename in self.registry
            if hasattr(viewset, "list") or hasattr(viewset, "create")
        }
        exposed: dict[str, dict[str, str]] = {"commands": {}, "queries": {}}
        for prefix, name, _ in self.exposed:
            exposed[prefix][name] = f"cqrs-{prefix}-{name}"
        return {"resources": resources, **exposed, "links": self.root_links}

    def representations(self) -> dict[type, set[Any]]:
        """``{query: serializers}``: how the registered viewsets answer each query."""
        found: dict[type, set[Any]] = {}
        for _, viewset, _ in self.registry:
            for attribute in dir(viewset):
                route = getattr(getattr(viewset, attribute, None), "cqrs_route", None)
                if isinstance(route, MessageRoute) and route.kind == "query":
                    serializer = route.serializer_class or getattr(
                        viewset, "serializer_class", None
                    )
                    if serializer is not None and route.response is None:
                        found.setdefault(route.message, set()).add(serializer)
        return found

    def exposed_route(self, route: MessageRoute, shapes: dict[type, set[Any]]) -> MessageRoute:
        """``route`` with the serializer of the viewset routes answering the same query."""
        if route.kind != "query" or route.serializer_class is not None:
            return route
        serializers = shapes.get(route.message, set())
        if len(serializers) > 1:
            names = ", ".join(sorted(s.__name__ for s in serializers))
            raise ImproperlyConfigured(
                f"{route.message.__name__} is answered with several serializers ({names}): "
                "pass serializer_class= to expose_query() to say which one it sends"
            )
        if serializers:
            return dataclasses.replace(route, serializer_class=next(iter(serializers)))
        return route

    def get_urls(self) -> list[URLPattern | URLResolver]:
        urls = list(super().get_urls())
        if self.include_root_view:
            root = APIRootView.as_view(routes=self.root_routes())
            urls.insert(0, path("", root, name=self.root_view_name))
        shapes = self.representations()
        for prefix, name, exposed in self.exposed:
            route = self.exposed_route(exposed, shapes)
            view_class = CommandView if route.kind == "command" else QueryView
            view = view_class.as_view(
                message_route=route,
                **(
                    {"permission_classes": route.permission_classes}
                    if route.permission_classes
                    else {}
                ),
            )
            urls.append(path(f"{prefix}/{name}/", view, name=f"cqrs-{prefix}-{name}"))
        return urls
