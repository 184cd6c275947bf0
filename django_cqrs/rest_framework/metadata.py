"""``OPTIONS``: DRF's metadata, with the request fields of a command route.

    OPTIONS /api/orders/{id}/items/   ->  200, Allow: POST, OPTIONS
    {"name": "Order Items", "description": "...", "renders": ["application/json"],
     "parses": ["application/json"],
     "actions": {"POST": {"product_id": {"type": "field", "required": true, ...},
                          "quantity": {"type": "integer", "min_value": 1, ...}}}}

DRF's ``SimpleMetadata`` asks the view for ``get_serializer()``, which a CQRS view does
not have (each route has its own message): it answered 500. Here the fields come from the
route's body serializer (without the id the URL fills in), and a route is listed only
when the caller passes its permissions, as DRF does.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.metadata import SimpleMetadata
from rest_framework.request import Request, clone_request

__all__ = ["CQRSMetadata"]

#: Methods whose request body the metadata describes (DRF lists PUT and POST).
BODY_METHODS = ("POST", "PUT", "PATCH")


class CQRSMetadata(SimpleMetadata):
    """The metadata class of the CQRS views."""

    def determine_metadata(self, request: Request, view: Any) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": view.get_view_name(),
            "description": view.get_view_description(),
            "renders": [renderer.media_type for renderer in view.renderer_classes],
            "parses": [parser.media_type for parser in view.parser_classes],
        }
        actions = self.determine_actions(request, view)
        if actions:
            metadata["actions"] = actions
        return metadata

    def determine_actions(self, request: Request, view: Any) -> dict[str, Any]:
        actions: dict[str, Any] = {}
        for method in BODY_METHODS:
            if method not in view.allowed_methods:
                continue
            found = view.method_route(method)
            if found is None or found[1].kind != "command":
                continue
            action, route = found
            saved_action = getattr(view, "action", None)
            view.request = clone_request(request, method)
            view.action = action
            try:
                view.check_permissions(view.request)
            except (exceptions.APIException, PermissionDenied, Http404):
                continue
            else:
                serializer = route.body_serializer(view.route_id_field(route))()
                actions[method] = self.get_serializer_info(serializer)
            finally:
                view.request = request
                view.action = saved_action
        return actions
