"""A router for CQRS viewsets, plus the opt-in ``commands/`` and ``queries/`` endpoints.

    from django_cqrs.rest_framework.routers import CQRSRouter

    router = CQRSRouter(root_links={"docs": "swagger-ui"})   # links by URL name
    router.register("orders", OrderViewSet, basename="order")
    router.expose_command(PlaceOrder)                 # POST commands/place-order/
    router.expose_query(GetOrder, name="order")       # GET  queries/order/?order_id=...
    urlpatterns = [path("api/", include(router.urls))]  # GET api/ lists the routes

Nothing is exposed under ``commands/`` and ``queries/`` unless named here: each
exposed message is a deliberate part of the public API, with its own permissions.
The root (``GET api/``, URL name ``api-root``) lists the resources, the exposed
messages and ``root_links``; ``CQRSRouter(include_root_view=False)`` leaves it out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

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
        route = MessageRoute(message, kind="query", etag_field=None, **options)
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

    def get_urls(self) -> list[URLPattern | URLResolver]:
        urls = list(super().get_urls())
        if self.include_root_view:
            root = APIRootView.as_view(routes=self.root_routes())
            urls.insert(0, path("", root, name=self.root_view_name))
        for prefix, name, route in self.exposed:
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
