"""Route declarations: which message a view's route dispatches, and how it answers.

    from django_cqrs.rest_framework.viewsets import (   # re-exported there
        CQRSViewSet, command_action, command_route, query_action, query_route,
    )

    class OrderViewSet(CQRSViewSet):
        create = command_route(PlaceOrder, result_field="order_id")     # POST /orders/
        retrieve = query_route(GetOrder, serializer_class=OrderViewSerializer)
        cancel = command_action(CancelOrder)                  # POST /orders/{id}/cancel/

Each declaration becomes the view method named by its attribute and carries a
:class:`MessageRoute`, which the views (:mod:`.viewsets`), the router (:mod:`.routers`)
and the OpenAPI schema (:mod:`.schema`) read. This module needs none of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from django.db import models
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from .serializers import FieldOptions, StrictDataclassSerializer, message_serializer

__all__ = [
    "MessageRoute",
    "ResponseBuilder",
    "command_action",
    "command_route",
    "query_action",
    "query_route",
]

#: ``(view, request, result) -> data``: a route's own answer body.
ResponseBuilder = Callable[[Any, Request, Any], Any]


@dataclasses.dataclass(frozen=True)
class MessageRoute:
    """How one route turns a request into a message and its result into a response."""

    message: type
    #: Does the URL carry an id (``/orders/{id}/...``)?
    detail: bool = False
    #: Field of the message that the URL id fills (default: the view's ``id_field``).
    id_field: str | None = None
    #: Extra DRF field arguments by dotted path, e.g. ``{"items.quantity": {"min_value": 1}}``.
    fields: FieldOptions = dataclasses.field(default_factory=dict)
    permission_classes: Sequence[Any] | None = None
    #: Serializer of the result (default: derived from the result's type).
    serializer_class: type[serializers.BaseSerializer[Any]] | None = None
    #: Commands: answer ``{result_field: value}``.
    result_field: str | None = None
    #: Commands: success status (204 when there is no body).
    status_code: int = status.HTTP_200_OK
    #: ``(view, request, result) -> data``: build the response body yourself.
    response: ResponseBuilder | None = None
    #: Queries: the read models behind the result (for CQRS-Min-Position).
    read_models: Sequence[type[models.Model]] | None = None
    #: Queries: attribute of the result sent as ``ETag``.
    etag_field: str | None = "version"
    kind: str = "command"

    def request_serializer(self) -> type[StrictDataclassSerializer]:
        return message_serializer(self.message, fields=self.fields)

    def body_serializer(self, id_field: str | None) -> type[StrictDataclassSerializer]:
        """The serializer of what the client sends (without the URL's id)."""
        exclude = (id_field,) if self.detail and id_field else ()
        return message_serializer(self.message, fields=self.fields, exclude=exclude)


_LIST_ROUTES = {"list", "create"}


class _RouteFactory:
    """Becomes the view method named by the attribute it is assigned to."""

    def __init__(self, route: MessageRoute, action_kwargs: dict[str, Any] | None) -> None:
        self.route = route
        #: None for the standard routes (create, list, retrieve); @action kwargs otherwise.
        self.action_kwargs = action_kwargs

    def __call__(self, func: ResponseBuilder) -> Any:
        """Decorator form: the decorated function builds the response body."""
        return self.build(func.__name__, dataclasses.replace(self.route, response=func))

    def __set_name__(self, owner: type, name: str) -> None:
        setattr(owner, name, self.build(name, self.route))

    def build(self, name: str, route: MessageRoute) -> Any:
        if self.action_kwargs is None:
            route = dataclasses.replace(route, detail=name not in _LIST_ROUTES)
            if route.kind == "command" and name == "create" and route.status_code == 200:
                route = dataclasses.replace(route, status_code=status.HTTP_201_CREATED)
        if route.kind == "command":

            def handler(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
                response: Response = self.run_command(
                    request, route, kwargs.get(self.lookup_url_kwarg)
                )
                return response

        else:

            def handler(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
                response: Response = self.run_query(
                    request, route, kwargs.get(self.lookup_url_kwarg)
                )
                return response

        handler.__name__ = name
        handler.__qualname__ = name
        handler.__doc__ = (route.message.__doc__ or "").strip() or None
        if handler.__doc__ and handler.__doc__.startswith(f"{route.message.__name__}("):
            handler.__doc__ = None  # the dataclass's generated signature says nothing
        handler.cqrs_route = route  # type: ignore[attr-defined]
        if self.action_kwargs is None:
            return handler
        kwargs = dict(self.action_kwargs)
        kwargs.setdefault("url_path", name.replace("_", "-"))
        methods: list[Any] = ["post"] if route.kind == "command" else ["get"]
        return action(methods=methods, detail=route.detail, **kwargs)(handler)


def command_route(message: type, **options: Any) -> Any:
    """``create`` (POST on the list URL) or another standard route running ``message``."""
    return _RouteFactory(MessageRoute(message, kind="command", **options), None)


def query_route(message: type, **options: Any) -> Any:
    """``list`` or ``retrieve`` answered by the query ``message``."""
    return _RouteFactory(MessageRoute(message, kind="query", **options), None)


def command_action(
    message: type, *, detail: bool = True, url_path: str | None = None, **options: Any
) -> Any:
    """An extra POST action (``/orders/{id}/cancel/``) running the command ``message``.

    Use it as an attribute (``cancel = command_action(CancelOrder)``) or as a decorator
    of a ``(self, request, result) -> data`` function that builds the answer.
    """
    action_kwargs = {"url_path": url_path} if url_path else {}
    if "permission_classes" in options:
        action_kwargs["permission_classes"] = options["permission_classes"]
    return _RouteFactory(
        MessageRoute(message, detail=detail, kind="command", **options), action_kwargs
    )


def query_action(
    message: type, *, detail: bool = True, url_path: str | None = None, **options: Any
) -> Any:
    """An extra GET action (``/customers/{id}/summary/``) answered by the query ``message``."""
    action_kwargs = {"url_path": url_path} if url_path else {}
    if "permission_classes" in options:
        action_kwargs["permission_classes"] = options["permission_classes"]
    return _RouteFactory(
        MessageRoute(message, detail=detail, kind="query", **options), action_kwargs
    )
