"""OpenAPI for CQRS views with drf-spectacular: bodies, results, errors and headers.

The CQRS viewsets use :class:`CQRSAutoSchema` on their own; nothing to configure
beyond drf-spectacular itself:

    REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
    urlpatterns += [
        path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
        path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema")),
    ]

Each command route documents its request body (derived from the command dataclass,
without the id that the URL carries), its answer, the ``Idempotency-Key`` and
``If-Match`` request headers, the ``CQRS-Position`` and ``ETag`` response headers and
every problem-details error it can answer (503 + ``Retry-After`` for a lock timeout);
each query route its parameters, result, ``CQRS-Min-Position`` and 503 + ``Retry-After``.
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any

from django.db import models
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework_dataclasses.serializers import DataclassSerializer

from .consistency import MIN_POSITION_HEADER, POSITION_HEADER
from .exceptions import PROBLEM_CONTENT_TYPE
from .idempotency import KEY_HEADER, REPLAYED_HEADER
from .routes import MessageRoute
from .serializers import ResultDataclassSerializer, field_type, model_serializer, result_type


class ProblemSerializer(serializers.Serializer[Any]):
    """RFC 9457 problem details."""

    type = serializers.CharField(help_text="URI identifying the kind of problem.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Machine-readable error code.")
    instance = serializers.CharField(required=False, help_text="Path of the request.")
    request_id = serializers.CharField(required=False)
    errors = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="Field errors by field name (400 only)."
    )
    field = serializers.CharField(required=False, help_text="Field the invariant is about.")
    header = serializers.CharField(
        required=False, help_text="The malformed request header (invalid_header only)."
    )


COMMAND_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 503)
QUERY_ERRORS = (400, 401, 403, 404, 503)


def _problems(codes: tuple[int, ...]) -> dict[Any, Any]:
    return {(code, PROBLEM_CONTENT_TYPE): ProblemSerializer for code in codes}


@functools.cache
def _value_field(tp: Any) -> serializers.Field:
    if isinstance(tp, type):
        for klass, field in DataclassSerializer.serializer_field_mapping.items():
            if issubclass(tp, klass) and klass not in (list, dict):
                return field(read_only=True)
    return serializers.JSONField(read_only=True)


def command_result_serializer(route: MessageRoute) -> Any:
    """The serializer documenting a command's answer (None: 204, no body)."""
    if route.serializer_class is not None:
        return route.serializer_class
    if route.response is not None:
        return OpenApiTypes.OBJECT
    tp = result_type(route.message)
    if route.result_field is None and tp in (None, type(None)):
        return None
    return _result_serializer(route.message, route.result_field or "value", tp)


@functools.cache
def _result_serializer(message: type, name: str, tp: Any) -> Any:
    suffix = "Result" if name != "value" else "Value"
    return inline_serializer(name=f"{message.__name__}{suffix}", fields={name: _value_field(tp)})


_page_serializers: dict[Any, Any] = {}


def page_serializer(item_serializer: Any) -> Any:
    """``{count, next, previous, results}`` around ``item_serializer`` (one per item class)."""
    if item_serializer in _page_serializers:
        return _page_serializers[item_serializer]
    name = getattr(item_serializer, "__name__", "Item").removesuffix("Serializer")
    _page_serializers[item_serializer] = inline_serializer(
        name=f"Paginated{name}List",
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item_serializer(many=True),
        },
    )
    return _page_serializers[item_serializer]


class CQRSAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, reading the routes of CQRS views."""

    def _route(self) -> MessageRoute | None:
        route_of = getattr(self.view, "route", None)
        return route_of() if callable(route_of) else None

    def _id_field(self, route: MessageRoute) -> str | None:
        view: Any = self.view
        return view.route_id_field(route) if route.detail else None

    def get_description(self) -> str:  # type: ignore[override]
        route = self._route()
        if route is None:
            return super().get_description()
        doc = (route.message.__doc__ or "").strip()
        if not doc or doc.startswith(f"{route.message.__name__}("):
            doc = f"Dispatches the {route.message.__name__} {route.kind}."
        return doc

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        if getattr(self.view, "action", None) == "list":
            operation_id = re.sub(r"_retrieve$", "_list", operation_id)
        return operation_id

    def _is_list_view(self, serializer: Any = None) -> bool:
        if self._route() is not None:
            return False  # the page serializer below already describes the list
        return super()._is_list_view(serializer)

    def get_request_serializer(self) -> Any:
        route = self._route()
        if route is None:
            return super().get_request_serializer()
        if route.kind != "command":
            return None
        return route.body_serializer(self._id_field(route))

    def get_response_serializers(self) -> Any:
        route = self._route()
        if route is None:
            return super().get_response_serializers()
        if route.kind == "command":
            result = command_result_serializer(route)
            status_code = route.status_code if result is not None else 204
            errors = COMMAND_ERRORS + ((412,) if route.detail else ())
            return {status_code: result, **_problems(errors)}
        result = self._query_result(route)
        return {200: result, **_problems(QUERY_ERRORS)}

    def _query_result(self, route: MessageRoute) -> Any:
        item = route.serializer_class or getattr(self.view, "serializer_class", None)
        if getattr(self.view, "action", None) == "list" and item is not None:
            return page_serializer(item)
        if item is not None:
            return item
        tp = result_type(route.message)
        if isinstance(tp, type) and issubclass(tp, models.Model):
            return model_serializer(tp)
        if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
            return type(
                f"{tp.__name__}ResultSerializer",
                (ResultDataclassSerializer,),
                {"Meta": type("Meta", (), {"dataclass": tp})},
            )
        return OpenApiTypes.OBJECT

    def get_override_parameters(self) -> list[Any]:
        params: list[Any] = list(super().get_override_parameters())
        route = self._route()
        if route is None:
            return params
        id_field = self._id_field(route)
        if id_field is not None:
            is_uuid = field_type(route.message, id_field) is uuid.UUID
            params.append(
                OpenApiParameter(
                    "id",
                    OpenApiTypes.UUID if is_uuid else OpenApiTypes.STR,
                    "path",
                    description=f"The {id_field}.",
                )
            )
        if route.kind == "command":
            params += self._command_headers(route)
        else:
            body = route.body_serializer(id_field)
            if body().fields:
                params.append(body)
            params += self._query_headers(route)
        return params

    def _command_headers(self, route: MessageRoute) -> list[OpenApiParameter]:
        header: Any = OpenApiParameter.HEADER
        success = [route.status_code, 204]
        params = [
            OpenApiParameter(
                KEY_HEADER,
                str,
                header,
                description="Send the same key again to get the first answer instead of "
                "running the command twice (1 to 255 visible ASCII characters).",
                pattern=r"^[!-~]{1,255}$",
            ),
            OpenApiParameter(
                POSITION_HEADER,
                int,
                header,
                response=success,
                description="Log position of the last event the command recorded; send it "
                f"as {MIN_POSITION_HEADER} to read your own write.",
            ),
            OpenApiParameter(
                REPLAYED_HEADER,
                str,
                header,
                response=success,
                description="'true' when this is the stored answer to an earlier request.",
            ),
            OpenApiParameter(
                "Retry-After",
                int,
                header,
                response=[503],
                description="Seconds to wait before sending the command again (a database "
                "lock was not granted within LOCK_TIMEOUT).",
            ),
        ]
        if route.detail:
            params += [
                OpenApiParameter(
                    "If-Match",
                    str,
                    header,
                    description='The version you read (ETag), e.g. "3": 412 if it moved on.',
                    pattern=r'^(\*|\s*(W/)?"[0-9]*"\s*(,\s*(W/)?"[0-9]*"\s*)*)$',
                ),
                OpenApiParameter(
                    "ETag",
                    str,
                    header,
                    response=success,
                    description="The aggregate's new version.",
                ),
            ]
        return params

    def _query_headers(self, route: MessageRoute) -> list[OpenApiParameter]:
        header: Any = OpenApiParameter.HEADER
        params = [
            OpenApiParameter(
                MIN_POSITION_HEADER,
                int,
                header,
                description="Wait until the read model has caught up with this log position "
                "(from CQRS-Position); 503 if it does not in time.",
                pattern=r"^[0-9]{1,18}$",
            ),
            OpenApiParameter(
                "Retry-After",
                int,
                header,
                response=[503],
                description="Seconds to wait before asking again.",
            ),
        ]
        if route.detail and getattr(self.view, "action", None) == "retrieve":
            params.append(
                OpenApiParameter(
                    "ETag",
                    str,
                    header,
                    response=[200],
                    description='The aggregate\'s version, e.g. "3": send it as If-Match.',
                )
            )
        return params
