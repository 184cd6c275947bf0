"""Serializers derived from command and query dataclasses; nobody writes one by hand.

    from django_cqrs.rest_framework.serializers import message_serializer

    PlaceOrderSerializer = message_serializer(
        PlaceOrder, fields={"items.quantity": {"min_value": 1, "max_value": 10_000}}
    )
    serializer = PlaceOrderSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)     # 400 with field errors
    command = serializer.validated_data           # a PlaceOrder instance

Fields come from the dataclass annotations (``UUID``, ``Decimal``, ``int``, nested
dataclasses, ``list[...]``, ``X | None`` ...). Unknown fields are rejected, at every
nesting level, with one error per unknown name. ``fields`` adds DRF field arguments by
dotted path (``"items.quantity"`` reaches into the ``OrderItem`` of ``items``): put
field-level rules such as "quantity >= 1" there, so a client gets a 400 naming the field
instead of a 422 from the aggregate.
"""

from __future__ import annotations

import dataclasses
import threading
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import models
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.settings import api_settings
from rest_framework_dataclasses.field_utils import get_type_info
from rest_framework_dataclasses.serializers import DataclassSerializer

from ..exceptions import ConfigurationError

#: Integers outside this range cannot be stored in a 64-bit column.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

FieldOptions = Mapping[str, Mapping[str, Any]]


class StrictDataclassSerializer(DataclassSerializer[Any]):
    """A dataclass serializer that rejects unknown fields and keeps integers in 64 bits."""

    @property
    def serializer_dataclass_field(self) -> type[serializers.Field[Any, Any, Any, Any]]:
        return StrictDataclassSerializer

    def build_standard_field(self, field_name: str, type_info: Any) -> tuple[Any, dict[str, Any]]:
        field_class, kwargs = super().build_standard_field(field_name, type_info)
        if issubclass(field_class, serializers.IntegerField):
            # Larger values would reach the database and fail there with a 500.
            kwargs = {"min_value": INT64_MIN, "max_value": INT64_MAX, **kwargs}
        return field_class, kwargs

    def create_field(self, field_name: str, extra_kwargs: dict[str, Any]) -> Any:
        """The field, with ``help_text`` from the dataclass field's metadata."""
        source = extra_kwargs.get("source", "*")
        field = self.dataclass_definition.fields.get(field_name if source == "*" else source)
        help_text = field.metadata.get("help_text") if field is not None else None
        if help_text and "help_text" not in extra_kwargs:
            extra_kwargs = {**extra_kwargs, "help_text": help_text}
        return super().create_field(field_name, extra_kwargs)

    def to_internal_value(self, data: Any) -> Any:
        unknown: dict[str, Any] = {}
        if isinstance(data, Mapping):
            known = {name for name, f in self.fields.items() if not f.read_only}
            unknown = {
                str(key): [ErrorDetail("This field is not allowed.", code="unknown_field")]
                for key in data
                if key not in known
            }
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **unknown}) from exc
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


def extra_kwargs_for(message_type: type, fields: FieldOptions) -> dict[str, Any]:
    """Turn dotted-path field options into the ``extra_kwargs`` tree of a dataclass serializer."""
    hints = typing.get_type_hints(message_type)
    grouped: dict[str, dict[str, Any]] = {}
    nested: dict[str, dict[str, Mapping[str, Any]]] = {}
    for path, options in fields.items():
        name, _, rest = path.partition(".")
        if name not in hints:
            raise ConfigurationError(
                f"Field options name {path!r}, but {message_type.__qualname__} "
                f"has no field {name!r}"
            )
        if rest:
            nested.setdefault(name, {})[rest] = options
        else:
            grouped.setdefault(name, {}).update(options)
    out: dict[str, Any] = {}
    for name in {*grouped, *nested}:
        info = get_type_info(hints[name])
        entry: dict[str, Any] = {}
        target = entry.setdefault("child_kwargs", {}) if info.is_many or info.is_mapping else entry
        target.update(grouped.get(name, {}))
        if name in nested:
            target["extra_kwargs"] = extra_kwargs_for(info.base_type, nested[name])
        out[name] = entry
    return out


_serializer_classes: dict[tuple[type, str, tuple[str, ...]], type[StrictDataclassSerializer]] = {}


def message_serializer(
    message_type: type, *, fields: FieldOptions | None = None, exclude: Sequence[str] = ()
) -> type[StrictDataclassSerializer]:
    """The serializer class of a command or query dataclass (one class per arguments).

    ``exclude`` leaves out fields that the URL supplies; such a serializer documents a
    request body but cannot build the dataclass.
    """
    fields = dict(fields or {})
    cache_key = (message_type, repr(sorted(fields.items())), tuple(exclude))
    cached = _serializer_classes.get(cache_key)
    if cached is not None:
        return cached
    suffix = "Body" if exclude else ""
    names = [f.name for f in dataclasses.fields(message_type) if f.init and f.name not in exclude]
    meta = type(
        "Meta",
        (),
        {
            "dataclass": message_type,
            "fields": names,
            "extra_kwargs": extra_kwargs_for(message_type, fields),
            "ref_name": f"{message_type.__name__}{suffix}",
        },
    )
    cls = type(
        f"{message_type.__name__}{suffix}Serializer",
        (StrictDataclassSerializer,),
        {
            "Meta": meta,
            "__module__": message_type.__module__,
            "__doc__": _doc(message_type) or f"Fields of {message_type.__name__}.",
        },
    )
    _serializer_classes[cache_key] = cls
    return cls


class _Instances(threading.local):
    def __init__(self) -> None:
        self.by_key: dict[Any, serializers.BaseSerializer[Any]] = {}


_instances = _Instances()


def reused(key: Any, factory: Callable[[], serializers.BaseSerializer[Any]]) -> Any:
    """One serializer instance per ``key`` and thread, built by ``factory`` on first use.

    DRF builds a serializer's fields anew for every instance: for a dataclass or model
    serializer that is most of the time it takes to validate a small body or represent a
    row. The views here only call ``run_validation()`` and ``to_representation()``, which
    keep no state between calls, so each thread builds the fields once.
    """
    by_key = _instances.by_key
    instance = by_key.get(key)
    if instance is None:
        instance = by_key[key] = factory()
    return instance


def validator(serializer_class: type[serializers.Serializer[Any]]) -> Any:
    """The reused instance of ``serializer_class`` that validates requests (one per thread)."""
    return reused(("validate", serializer_class), serializer_class)


def validate(serializer_class: type[serializers.Serializer[Any]], data: Any) -> Any:
    """``serializer_class(data=data).is_valid(raise_exception=True)``; its validated data.

    Same result and same 400 error shape, on a reused instance (see :func:`reused`).
    """
    serializer = validator(serializer_class)
    try:
        return serializer.run_validation(data)
    except serializers.ValidationError as exc:
        detail = exc.detail
        if isinstance(detail, list):  # the body is null: what is_valid() reports
            if len(detail) == 1 and getattr(detail[0], "code", None) == "null":
                detail = [ErrorDetail("No data provided", code="null")]
            detail = {api_settings.NON_FIELD_ERRORS_KEY: detail}
        raise serializers.ValidationError(detail) from None


def represent(
    serializer_class: type[serializers.BaseSerializer[Any]],
    value: Any,
    *,
    many: bool = False,
    context: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """``serializer_class(value, many=many, context=context, **kwargs).data``, reused.

    ``kwargs`` must be hashable: they are part of the reuse key.
    """
    key = ("represent", serializer_class, many, tuple(sorted(kwargs.items())))
    serializer = reused(key, lambda: serializer_class(many=many, **kwargs))
    serializer.instance = value
    serializer._context = dict(context or {})
    try:
        return serializer.to_representation(value)
    finally:
        serializer.instance = None
        serializer._context = {}


def _doc(message_type: type) -> str:
    doc = (message_type.__doc__ or "").strip()
    # A dataclass without a docstring gets its signature as one: not worth showing.
    return "" if doc.startswith(f"{message_type.__name__}(") else doc


def field_type(message_type: type, name: str) -> Any:
    """The resolved annotation of one dataclass field."""
    return typing.get_type_hints(message_type)[name]


def result_type(message_type: type) -> Any:
    """``R`` of a ``Command[R]`` or ``Query[R]`` subclass (``Any`` when not declared)."""
    for klass in message_type.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            args = typing.get_args(base)
            origin = typing.get_origin(base)
            if (
                args
                and origin is not None
                and getattr(origin, "kind", None) in ("command", "query")
            ):
                arg = args[0]
                if isinstance(arg, typing.ForwardRef | str):
                    return Any
                return arg
    return Any


# -- results --------------------------------------------------------------------------


_model_serializers: dict[type[models.Model], type[serializers.ModelSerializer[Any]]] = {}


def model_serializer(model: type[models.Model]) -> type[serializers.ModelSerializer[Any]]:
    """A serializer with every concrete field of ``model`` (for read models); one per model."""
    if model in _model_serializers:
        return _model_serializers[model]
    meta = type(
        "Meta", (), {"model": model, "fields": "__all__", "ref_name": f"{model.__name__}Record"}
    )
    cls = type(f"{model.__name__}Serializer", (serializers.ModelSerializer,), {"Meta": meta})
    _model_serializers[model] = cls
    return cls


class ResultDataclassSerializer(DataclassSerializer[Any]):
    """Serializes a dataclass result; read-model instances inside it come out whole."""

    @property
    def serializer_dataclass_field(self) -> type[serializers.Field[Any, Any, Any, Any]]:
        return ResultDataclassSerializer

    def build_relational_field(self, field_name: str, type_info: Any) -> tuple[Any, dict[str, Any]]:
        return model_serializer(type_info.base_type), {"read_only": True}


def serialize_result(value: Any) -> Any:
    """JSON-ready data for a handler's return value (models, dataclasses, lists, scalars)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, models.Model):
        return represent(model_serializer(type(value)), value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return represent(ResultDataclassSerializer, value, dataclass=type(value))
    if isinstance(value, models.QuerySet):
        return represent(model_serializer(value.model), value, many=True)
    if isinstance(value, list | tuple):
        return [serialize_result(item) for item in value]
    if isinstance(value, dict):
        return {str(k): serialize_result(v) for k, v in value.items()}
    return serializers.JSONField().to_representation(value)
