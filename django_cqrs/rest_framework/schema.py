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
each query route its parameters, result, ``CQRS-Min-Position`` and 503 + ``Retry-After``;
a read of one resource its ``ETag`` and 304. Operation ids are the message's name in
snake case (``place_order``, ``get_order``; ``commands_place_order`` for the exposed
endpoint), descriptions come from the message's docstring and each field's
``help_text`` (``dataclasses.field(metadata={"help_text": ...})``), query parameters
are never nullable (an empty value means "no filter"), and 64-bit integers say
``format: int64`` instead of bounds that JavaScript cannot print. Add
:func:`servers_from_request` to ``POSTPROCESSING_HOOKS`` for a ``servers`` entry that
points at the site serving the schema, and :func:`links_from_creates` for OpenAPI links
from each create to the routes of what it created (``place_order`` -> ``get_order``,
``cancel_order``, ...), which stateful testers (schemathesis) and API browsers follow.
"""

from __future__ import annotations

import functools
import re
import typing
import uuid
from typing import Any

from django.db import models
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework_dataclasses.serializers import DataclassSerializer

from .consistency import MIN_POSITION_HEADER, POSITION_HEADER
from .exceptions import PROBLEM_CONTENT_TYPE
from .idempotency import KEY_HEADER, REPLAYED_HEADER
from .routes import MessageRoute
from .serializers import (
    INT64_MAX,
    INT64_MIN,
    ResultDataclassSerializer,
    field_type,
    model_serializer,
    result_type,
)


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


#: The URL prefix of the exposed endpoints, by message kind (in their operation ids).
_PREFIX = {"command": "commands", "query": "queries"}

COMMAND_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 503)
QUERY_ERRORS = (400, 401, 403, 404, 503)


def _problems(codes: tuple[int, ...]) -> dict[Any, Any]:
    return {(code, PROBLEM_CONTENT_TYPE): ProblemSerializer for code in codes}


@functools.cache
def _value_field(tp: Any) -> serializers.Field[Any, Any, Any, Any]:
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
        route = self._route()
        if route is None:
            operation_id = super().get_operation_id()
            if getattr(self.view, "action", None) == "list":
                operation_id = re.sub(r"_retrieve$", "_list", operation_id)
            return operation_id
        name = snake_case(route.message.__name__)
        if getattr(self.view, "message_route", None) is not None:  # commands/, queries/
            return f"{_PREFIX[route.kind]}_{name}"
        return name

    def _returns_one(self, route: MessageRoute) -> bool:
        """Does the route answer one resource (with an ETag), not a list or a page?"""
        if route.kind != "query" or route.response is not None:
            return False
        if getattr(self.view, "action", None) == "list":
            return False
        tp = result_type(route.message)
        origin = typing.get_origin(tp) or tp
        if isinstance(origin, type) and issubclass(origin, list | tuple | models.QuerySet):
            return False
        fields = getattr(origin, "__dataclass_fields__", {})
        return not {"count", "results"} <= set(fields)

    def _map_serializer_field(
        self, field: Any, direction: Any, bypass_extensions: bool = False
    ) -> Any:
        schema = super()._map_serializer_field(  # type: ignore[no-untyped-call]
            field, direction, bypass_extensions
        )
        return without_int64_bounds(schema)

    def _insert_field_validators(self, field: Any, schema: Any) -> None:
        super()._insert_field_validators(field, schema)  # type: ignore[no-untyped-call]
        cleaned = without_int64_bounds(schema)
        if cleaned is not schema:
            schema.clear()
            schema.update(cleaned)

    def _get_parameters(self) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super()._get_parameters()
        for parameter in parameters:
            if parameter.get("in") == "query":
                parameter["schema"] = not_nullable(parameter.get("schema", {}))
        return parameters

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
        responses: dict[Any, Any] = {200: result}
        if self._returns_one(route):
            responses[304] = OpenApiResponse(
                description="Not modified: the If-None-Match tag is the resource's ETag."
            )
        return {**responses, **_problems(QUERY_ERRORS)}

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
        if route.status_code == 201:
            params.append(
                OpenApiParameter(
                    "Location",
                    str,
                    header,
                    response=[201],
                    description="URL of the created resource.",
                )
            )
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
        if self._returns_one(route):
            params += [
                OpenApiParameter(
                    "If-None-Match",
                    str,
                    header,
                    description="The ETag you hold: 304 without a body if it is still current.",
                ),
                OpenApiParameter(
                    "ETag",
                    str,
                    header,
                    response=[200, 304],
                    description='The resource\'s version, e.g. "3" (send it as If-Match), '
                    'or W/"<digest>" for a resource without a version.',
                ),
            ]
        return params


def snake_case(name: str) -> str:
    """``PlaceOrder`` -> ``place_order``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def without_int64_bounds(schema: Any) -> Any:
    """An integer schema without the 64-bit range as bounds (``format: int64`` says it).

    2**63 - 1 is not a JavaScript number: Swagger UI shows it as 9223372036854776000 and
    generators copy it into their validation.
    """
    if not isinstance(schema, dict) or schema.get("type") != "integer":
        return schema
    if schema.get("maximum") != INT64_MAX and schema.get("minimum") != INT64_MIN:
        return schema
    bounds = {"maximum": INT64_MAX, "minimum": INT64_MIN}
    cleaned = {key: value for key, value in schema.items() if bounds.get(key) != value}
    return {**cleaned, "format": "int64"}


def not_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: absent or empty means "no filter", never null."""
    schema = {key: value for key, value in schema.items() if key != "nullable"}
    if "enum" in schema:
        schema["enum"] = [value for value in schema["enum"] if value is not None]
    if schema.get("type") == "string" and "enum" in schema:
        schema.pop("minLength", None)
    return schema


def servers_from_request(result: dict[str, Any], generator: Any, request: Any, public: Any) -> Any:
    """drf-spectacular post-processing hook: ``servers`` is the site serving the schema.

        SPECTACULAR_SETTINGS = {
            "POSTPROCESSING_HOOKS": [
                "drf_spectacular.hooks.postprocess_schema_enums",
                "django_cqrs.rest_framework.schema.servers_from_request",
            ],
            "SERVERS": [{"url": "http://127.0.0.1:8000"}],  # for manage.py spectacular
        }

    A schema generated without a request (``manage.py spectacular``) keeps ``SERVERS``.
    """
    if request is not None:
        url = request.build_absolute_uri("/").rstrip("/")
        result["servers"] = [{"url": url, "description": "This server."}]
    elif spectacular_settings.SERVERS:
        result["servers"] = list(spectacular_settings.SERVERS)
    return result


def links_from_creates(result: dict[str, Any], generator: Any, request: Any, public: Any) -> Any:
    """drf-spectacular post-processing hook: links from a create to its resource's routes.

    A ``POST /orders/`` answering 201 with ``{"order_id": ...}`` links to every operation
    under ``/orders/{id}/``, with ``id`` taken from the answer:
    ``{"get_order": {"operationId": "get_order", "parameters": {"path.id":
    "$response.body#/order_id"}}, ...}``.
    """
    paths: dict[str, Any] = result.get("paths", {})
    for path, operations in paths.items():
        created = (operations.get("post") or {}).get("responses", {}).get("201")
        field = _single_field(result, created)
        if field is None:
            continue
        links = {
            operation["operationId"]: {
                "operationId": operation["operationId"],
                "parameters": {"path.id": f"$response.body#/{field}"},
                "description": f"The {field} of the created resource as the URL's id.",
            }
            for other, others in paths.items()
            if other.startswith(f"{path}{{id}}/")
            for operation in others.values()
            if "operationId" in operation
        }
        if links:
            created["links"] = links
    return result


def _single_field(result: dict[str, Any], response: Any) -> str | None:
    """The one property of a JSON answer's object schema (``order_id``), if it has one."""
    if not isinstance(response, dict):
        return None
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = result.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], {})
    properties = list(schema.get("properties", {}))
    return properties[0] if len(properties) == 1 else None
