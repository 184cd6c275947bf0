"""Viewsets whose actions dispatch commands and queries.

    from django_cqrs.rest_framework.viewsets import (
        CQRSViewSet, command_action, command_route, query_action, query_route,
    )

    class OrderViewSet(CQRSViewSet):
        aggregate = Order              # If-Match is checked against Order.version
        id_field = "order_id"          # the URL id fills this field of each message
        read_models = [OrderView]      # what CQRS-Min-Position waits for

        create = command_route(PlaceOrder, result_field="order_id")    # POST /orders/
        list = query_route(ListOrders, serializer_class=OrderViewSerializer)
        retrieve = query_route(GetOrder, serializer_class=OrderViewSerializer)   # + ETag
        cancel = command_action(CancelOrder)                     # POST /orders/{id}/cancel/
        ship = command_action(ShipOrder, permission_classes=[IsAdminUser])

The request body (or query string) is validated by a serializer derived from the
message dataclass; the URL id is injected into ``id_field`` (a malformed id is a 404);
the command runs on :data:`command_bus` with the request's user and request id as event
metadata. Command answers carry ``CQRS-Position`` and, for one aggregate, its new
``ETag``; ``Idempotency-Key``, ``If-Match`` and ``CQRS-Min-Position`` work on every
route. Errors are problem details (see :mod:`django_cqrs.rest_framework.exceptions`).

The route declarations are defined in :mod:`django_cqrs.rest_framework.routes` and
re-exported here, so that one import gives everything a viewset needs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.db import models, router, transaction
from django.urls import NoReverseMatch
from rest_framework import serializers, status, viewsets
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from ..bus import CommandResult, command_bus, query_bus
from ..conf import cqrs_settings
from .consistency import MIN_POSITION_HEADER, POSITION_HEADER, require_position
from .exceptions import BadHeader, NotFound, PayloadTooLarge, problem_exception_handler, shown
from .idempotency import KEY_HEADER, run_idempotent
from .metadata import CQRSMetadata
from .parsers import JSONParser
from .preconditions import (
    IF_MATCH_HEADER,
    IF_NONE_MATCH_HEADER,
    IfMatch,
    check_version,
    digest,
    etag,
    parse_if_match,
    parse_if_none_match,
)
from .routes import MessageRoute, command_action, command_route, query_action, query_route
from .schema import CQRSAutoSchema
from .serializers import represent, serialize_result, validate, validator

__all__ = [
    "CQRSViewMixin",
    "CQRSViewSet",
    "CommandMixin",
    "CommandView",
    "CommandViewSet",
    "MessageRoute",
    "QueryMixin",
    "QueryView",
    "QueryViewSet",
    "command_action",
    "command_route",
    "query_action",
    "query_route",
]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")


def request_fields(serializer_class: type[serializers.Serializer[Any]]) -> Mapping[str, Any]:
    """The fields of a request serializer, built once per class and thread.

    The views read their names and types, and validate the URL id with one of them
    (fields keep no state between validations).
    """
    fields: Mapping[str, Any] = validator(serializer_class).fields
    return fields


# -- mixins ---------------------------------------------------------------------------


class _ViewSchema:
    """A new ``CQRSAutoSchema`` for each view, as DRF's ``DefaultSchema`` makes one."""

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        schema = CQRSAutoSchema()
        schema.view = instance
        return schema


class CQRSViewMixin:
    """What every CQRS view shares: JSON only, problem details, body limits, request ids."""

    parser_classes: Sequence[type[BaseParser]] = [JSONParser]
    renderer_classes: Sequence[type[BaseRenderer]] = [JSONRenderer]
    metadata_class: Any = CQRSMetadata
    #: Field that the URL id fills in each message (``order_id``); a route may override it.
    id_field: str | None = None
    #: The aggregate model behind detail routes; enables ``If-Match``.
    aggregate: type[models.Model] | None = None
    #: Read models behind the queries (None: wait for every projection).
    #: Read-model classes, or projection classes (a saga: its checkpoints).
    read_models: Sequence[type[Any]] | None = None
    lookup_url_kwarg: str | None = "pk"
    schema = _ViewSchema()

    def get_exception_handler(self) -> Callable[..., Any]:
        return problem_exception_handler

    def check_permissions(self, request: Request) -> None:
        """``OPTIONS`` answers everyone: its metadata lists only what the caller may run."""
        if request.method == "OPTIONS":
            return
        super().check_permissions(request)  # type: ignore[misc]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        request.cqrs_request_id = request_id(request)  # type: ignore[attr-defined]
        check_body_size(request)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        request_id_value = getattr(request, "cqrs_request_id", None)
        if request_id_value:
            response[REQUEST_ID_HEADER] = request_id_value
        return response

    def route(self) -> MessageRoute | None:
        """The route of the current action, if it dispatches a message."""
        handler = getattr(self, getattr(self, "action", None) or "", None)
        return getattr(handler, "cqrs_route", None)

    def method_route(self, method: str) -> tuple[str, MessageRoute] | None:
        """The action and route that ``method`` runs on this URL (for ``OPTIONS``)."""
        action: str | None = getattr(self, "action_map", {}).get(method.lower())
        route = getattr(getattr(self, action, None), "cqrs_route", None) if action else None
        return (action, route) if action and route is not None else None

    def get_permissions(self) -> list[Any]:
        route = self.route()
        if route is not None and route.permission_classes is not None:
            return [permission() for permission in route.permission_classes]
        permissions: list[Any] = super().get_permissions()  # type: ignore[misc]
        return permissions

    def route_id_field(self, route: MessageRoute) -> str | None:
        return route.id_field or self.id_field

    def url_id(self, route: MessageRoute, pk: Any) -> Any:
        """The URL id as the type of the message's id field; a malformed id is a 404."""
        id_field = self.route_id_field(route)
        if id_field is None:
            raise TypeError(f"{type(self).__name__} needs id_field for {route.message.__name__}")
        field = request_fields(route.request_serializer())[id_field]
        try:
            return field.run_validation(pk)
        except serializers.ValidationError:
            raise NotFound(f"{pk!r} is not a valid id") from None

    def message_data(self, route: MessageRoute, data: Any, pk: Any) -> Any:
        """The request's data with the URL id filled in."""
        if not route.detail:
            return data
        id_field = self.route_id_field(route)
        value = self.url_id(route, pk)
        if not isinstance(data, Mapping):
            return data  # the serializer reports the wrong type
        assert id_field is not None  # url_id() checked it
        if id_field in data:
            raise serializers.ValidationError({id_field: ["This field comes from the URL."]})
        return {**data, id_field: str(value)}

    def get_serializer_context(self) -> dict[str, Any]:
        """What DRF's generic views give their serializers: request, format and view."""
        request = getattr(self, "request", None)
        return {"request": request, "format": getattr(self, "format_kwarg", None), "view": self}

    def dispatch_metadata(self, request: Request) -> dict[str, Any]:
        """Event metadata: who sent the request, and its id."""
        metadata: dict[str, Any] = {"request_id": request.cqrs_request_id}  # type: ignore[attr-defined]
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            metadata["user"] = user.get_username()
            metadata["user_id"] = str(user.pk)
        return metadata


class CommandMixin(CQRSViewMixin):
    """Runs a command route: validate, check If-Match, dispatch, answer."""

    def run_command(self, request: Request, route: MessageRoute, pk: Any = None) -> Response:
        """Validate the request, then run it (once per ``Idempotency-Key``).

        A request rejected here (a malformed body or header, invalid fields, a bad URL id)
        never claims its key: the client corrects it and sends it again with the same key.
        """
        command = validate(route.request_serializer(), self.message_data(route, request.data, pk))
        expected = self.expected_version(request, route)
        key = request.headers.get(KEY_HEADER)
        if key is None:
            return self.execute_command(request, route, command, expected, pk)
        return run_idempotent(
            request,
            key,
            lambda: self.execute_command(request, route, command, expected, pk),
            self.handle_exception,  # type: ignore[attr-defined]
        )

    def expected_version(self, request: Request, route: MessageRoute) -> IfMatch | None:
        """The request's ``If-Match`` on a detail route (None: no precondition)."""
        if not route.detail:
            return None
        expected = parse_if_match(request.headers.get(IF_MATCH_HEADER))
        if expected is not None and self.aggregate is None:
            raise BadHeader("If-Match is not supported on this resource", header=IF_MATCH_HEADER)
        return expected

    def execute_command(
        self,
        request: Request,
        route: MessageRoute,
        command: Any,
        expected: IfMatch | None = None,
        pk: Any = None,
    ) -> Response:
        """Check ``If-Match``, dispatch the validated command, build the answer."""
        metadata = self.dispatch_metadata(request)
        if expected is None or self.aggregate is None:
            result = command_bus.dispatch(command, metadata=metadata)
        else:
            aggregate_id = self.url_id(route, pk)
            # The version check and the command share one transaction: race-free.
            with transaction.atomic(using=router.db_for_write(self.aggregate)):
                check_version(self.aggregate, aggregate_id, expected)
                result = command_bus.dispatch(command, metadata=metadata)
        return self.command_response(request, route, result, pk)

    def command_response(
        self, request: Request, route: MessageRoute, result: CommandResult[Any], pk: Any
    ) -> Response:
        if route.response is not None:
            data = route.response(self, request, result)
        elif route.result_field is not None:
            data = {route.result_field: serialize_result(result.value)}
        elif route.serializer_class is not None:
            context = self.get_serializer_context()
            data = represent(route.serializer_class, result.value, context=context)
        else:
            data = None if result.value is None else {"value": serialize_result(result.value)}
        status_code = route.status_code if data is not None else status.HTTP_204_NO_CONTENT
        response = Response(data, status=status_code)
        if result.position is not None:
            response[POSITION_HEADER] = str(result.position)
        version = self.new_version(route, result, pk)
        if version is not None:
            response["ETag"] = etag(version)
        location = self.location(route, result)
        if location:
            response["Location"] = location
        return response

    def new_version(self, route: MessageRoute, result: CommandResult[Any], pk: Any) -> int | None:
        """The version a detail command saved the URL's aggregate at (None: not saved)."""
        if not route.detail or self.aggregate is None:
            return None
        return result.version_of(self.aggregate, self.url_id(route, pk))

    def location(self, route: MessageRoute, result: CommandResult[Any]) -> str | None:
        """URL of the created resource, when this viewset can show it."""
        if route.detail or route.result_field is None or not hasattr(self, "retrieve"):
            return None
        basename = getattr(self, "basename", None)
        if not basename:
            return None
        try:
            request = getattr(self, "request", None)
            return reverse(f"{basename}-detail", kwargs={"pk": result.value}, request=request)
        except NoReverseMatch:
            return None


class QueryMixin(CQRSViewMixin):
    """Runs a query route: parameters from the query string, wait for position, answer."""

    def query_data(self, request: Request, route: MessageRoute, pk: Any) -> Any:
        names = request_fields(route.request_serializer())
        data: dict[str, Any] = {}
        for name, field in names.items():
            # An empty parameter (``?status=``) means "no filter", as in django-filter.
            if request.query_params.get(name, "") != "":
                many = isinstance(field, serializers.ListField | serializers.ListSerializer)
                params = request.query_params
                data[name] = params.getlist(name) if many else params.get(name)
        return self.message_data(route, data, pk)

    def run_query(self, request: Request, route: MessageRoute, pk: Any = None) -> Response:
        query = validate(route.request_serializer(), self.query_data(request, route, pk))
        cached = parse_if_none_match(request.headers.get(IF_NONE_MATCH_HEADER))
        read_models = route.read_models if route.read_models is not None else self.read_models
        require_position(read_models, request.headers.get(MIN_POSITION_HEADER))
        value = query_bus.dispatch(query, metadata=self.dispatch_metadata(request))
        return self.query_response(request, route, value, cached)

    def query_response(
        self, request: Request, route: MessageRoute, value: Any, cached: IfMatch | None = None
    ) -> Response:
        if route.response is not None:
            return Response(route.response(self, request, value))
        if is_page(value):
            return Response(self.page_data(request, route, value))
        if isinstance(value, models.QuerySet):
            queryset = self.filter_queryset(value) if hasattr(self, "filter_queryset") else value
            page = self.paginate_queryset(queryset) if hasattr(self, "paginate_queryset") else None
            if page is not None:
                paginated: Response = self.get_paginated_response(  # type: ignore[attr-defined]
                    self.result_data(route, page, many=True)
                )
                return paginated
            return Response(self.result_data(route, queryset, many=True))
        many = isinstance(value, list | tuple)
        data = self.result_data(route, value, many=many)
        if many or not isinstance(data, Mapping):
            return Response(data)
        # One resource: its ETag is its version, or else a digest of what is sent.
        version = getattr(value, route.etag_field, None) if route.etag_field else None
        if isinstance(version, int) and not isinstance(version, bool):
            tag, matched = etag(version), cached is not None and cached.matches(version)
        else:
            sent = digest(data)
            tag, matched = f'W/"{sent}"', cached is not None and cached.matches_tag(sent)
        if matched:
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
        return Response(data, headers={"ETag": tag})

    def result_data(self, route: MessageRoute, value: Any, *, many: bool = False) -> Any:
        serializer_class = route.serializer_class or getattr(self, "serializer_class", None)
        if serializer_class is None:
            return serialize_result(list(value) if many else value)
        return represent(serializer_class, value, many=many, context=self.get_serializer_context())

    def page_data(self, request: Request, route: MessageRoute, page: Any) -> dict[str, Any]:
        """DRF's page shape, ``{count, next, previous, results}``, from a page result."""
        url = request.build_absolute_uri()
        has_next = page.page * page.page_size < page.count
        if page.page > 1:
            previous = (
                remove_query_param(url, "page")
                if page.page == 2
                else replace_query_param(url, "page", page.page - 1)
            )
        else:
            previous = None
        return {
            "count": page.count,
            "next": replace_query_param(url, "page", page.page + 1) if has_next else None,
            "previous": previous,
            "results": self.result_data(route, page.results, many=True),
        }


def is_page(value: Any) -> bool:
    """Is ``value`` a page of results (``count``, ``page``, ``page_size``, ``results``)?"""
    return all(hasattr(value, name) for name in ("count", "page", "page_size", "results"))


def request_id(request: Request) -> str:
    """The client's ``X-Request-ID`` when it is sane, else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def check_body_size(request: Request) -> None:
    """Raise ``PayloadTooLarge`` (413) for a body over ``MAX_BODY_SIZE`` bytes.

    ``Content-Length`` must be ASCII digits (400 otherwise): ``int()`` would also read
    ``"٣"`` as 3 and ``" 3 "`` as 3.
    """
    given = request.META.get("CONTENT_LENGTH") or ""
    if given == "":
        return
    if not _CONTENT_LENGTH.fullmatch(given):
        raise BadHeader(
            f"Content-Length must be a number of bytes in ASCII digits, not {shown(given)}",
            header="Content-Length",
        )
    limit = cqrs_settings.MAX_BODY_SIZE
    if limit is not None and int(given) > int(limit):
        raise PayloadTooLarge(f"The request body has {given} bytes; the limit is {limit}.")


# -- concrete classes -------------------------------------------------------------------


if TYPE_CHECKING:  # the stubs make GenericViewSet generic; DRF's class is not subscriptable
    AnyGenericViewSet = viewsets.GenericViewSet[Any]
else:
    AnyGenericViewSet = viewsets.GenericViewSet


class CommandViewSet(CommandMixin, AnyGenericViewSet):
    """A viewset whose routes run commands."""


class QueryViewSet(QueryMixin, AnyGenericViewSet):
    """A viewset whose routes answer queries over read models."""


class CQRSViewSet(CommandMixin, QueryMixin, AnyGenericViewSet):
    """A viewset with command and query routes."""


class CommandView(CommandMixin, APIView):
    """``POST`` runs one command (the opt-in ``/commands/<name>/`` endpoint)."""

    message_route: MessageRoute = None  # type: ignore[assignment]  # set by as_view()

    def route(self) -> MessageRoute | None:
        return self.message_route

    def method_route(self, method: str) -> tuple[str, MessageRoute] | None:
        return ("post", self.message_route) if method == "POST" else None

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.run_command(request, self.message_route)


class QueryView(QueryMixin, APIView):
    """``GET`` answers one query (the opt-in ``/queries/<name>/`` endpoint)."""

    message_route: MessageRoute = None  # type: ignore[assignment]  # set by as_view()

    def route(self) -> MessageRoute | None:
        return self.message_route

    def method_route(self, method: str) -> tuple[str, MessageRoute] | None:
        return ("get", self.message_route) if method in ("GET", "HEAD") else None

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.run_query(request, self.message_route)
