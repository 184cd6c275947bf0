"""JSON encoding of message dataclasses, driven by their type annotations.

    from django_cqrs.serialization import to_json_dict, from_json_dict

    event = OrderPlaced(order_id=oid, total=Decimal("9.90"), item_count=2)
    data = to_json_dict(event)
    # {"order_id": "7c1e...", "total": "9.90", "item_count": 2}
    from_json_dict(OrderPlaced, data) == event    # the same typed object comes back

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``None``, ``UUID``,
``Decimal`` (exact, stored as a string), aware ``datetime`` (ISO 8601, microseconds
kept), ``date``, ``time``, ``timedelta``, ``Enum`` subclasses, nested dataclasses,
``list[X]``, ``tuple[X, ...]``, ``frozenset[X]``, ``dict[str, X]``, ``X | None``,
``Literal[...]`` and ``Any`` (JSON values only). Anything else raises
:class:`~django_cqrs.exceptions.SerializationError` naming the field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import types
import typing
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from .exceptions import SerializationError

_JSON_SCALARS = (str, int, float, bool, type(None))


@functools.cache
def field_types(cls: Any) -> dict[str, Any]:
    """Resolved annotations of a dataclass's init fields (strings resolved, cached)."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError as exc:
        raise SerializationError(
            f"{cls.__qualname__}: cannot resolve a field annotation ({exc})"
        ) from exc
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp)


def _is_optional_union(tp: Any) -> bool:
    return _origin(tp) in (typing.Union, types.UnionType)


def encode_value(value: Any, tp: Any, path: str) -> Any:
    """Encode one value declared as ``tp``; ``path`` names it in errors."""
    if tp is Any:
        return _encode_any(value, path)
    origin = _origin(tp)
    if _is_optional_union(tp):
        if value is None:
            if type(None) in typing.get_args(tp):
                return None
            raise SerializationError(f"{path}: None is not allowed for {_type_name(tp)}")
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        for option in options:
            if _matches(value, option):
                return encode_value(value, option, path)
        raise SerializationError(
            f"{path}: {type(value).__name__} value does not match {_type_name(tp)}"
        )
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise SerializationError(f"{path}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin in (list, tuple, frozenset, set) or tp in (list, tuple):
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple | frozenset | set):
            raise SerializationError(f"{path}: expected a sequence, got {type(value).__name__}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return [
                encode_value(v, a, f"{path}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            ]
        item_tp = args[0] if args else Any
        items = sorted(value, key=repr) if isinstance(value, frozenset | set) else value
        return [encode_value(v, item_tp, f"{path}[{i}]") for i, v in enumerate(items)]
    if origin is dict or tp is dict:
        args = typing.get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise SerializationError(f"{path}: expected a dict, got {type(value).__name__}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SerializationError(f"{path}: dict keys must be str, got {k!r}")
            out[k] = encode_value(v, args[1], f"{path}[{k!r}]")
        return out
    if isinstance(tp, type):
        if value is None:
            raise SerializationError(
                f"{path}: None is not allowed for {tp.__name__} (declare `{tp.__name__} | None`)"
            )
        encoder = _ENCODERS.get(tp)
        if encoder is not None:
            if tp is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
                raise SerializationError(
                    f"{path}: expected {tp.__name__}, got {type(value).__name__} ({value!r})"
                )
            return encoder(value, path)
        if issubclass(tp, enum.Enum):
            if not isinstance(value, tp):
                raise SerializationError(f"{path}: expected {tp.__name__}, got {value!r}")
            return encode_value(value.value, type(value.value), path)
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, tp):
                raise SerializationError(
                    f"{path}: expected {tp.__name__}, got {type(value).__name__}"
                )
            return to_json_dict(value, path=path)
    raise SerializationError(f"{path}: unsupported field type {_type_name(tp)}")


def _encode_any(value: Any, path: str) -> Any:
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, list | tuple):
        return [_encode_any(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _encode_any(v, f"{path}[{k!r}]") for k, v in value.items()}
    raise SerializationError(
        f"{path}: {type(value).__name__} is not a JSON value; declare the field's type"
    )


def _encode_datetime(value: dt.datetime, path: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise SerializationError(f"{path}: naive datetime {value.isoformat()}; use an aware one")
    return value.isoformat(timespec="microseconds")


def _encode_float(value: float, path: str) -> float:
    if value != value or value in (float("inf"), float("-inf")):
        raise SerializationError(f"{path}: {value} cannot be stored in JSON")
    return value


def _encode_decimal(value: Decimal, path: str) -> str:
    if not value.is_finite():
        raise SerializationError(f"{path}: {value} cannot be stored")
    return str(value)


_ENCODERS: dict[type, Callable[[Any, str], Any]] = {
    str: lambda v, p: v,
    int: lambda v, p: v,
    bool: lambda v, p: v,
    float: _encode_float,
    uuid.UUID: lambda v, p: str(v),
    Decimal: _encode_decimal,
    dt.datetime: _encode_datetime,
    dt.date: lambda v, p: v.isoformat(),
    dt.time: lambda v, p: v.isoformat(),
    dt.timedelta: lambda v, p: v.total_seconds(),
}


def _matches(value: Any, tp: Any) -> bool:
    origin = _origin(tp) or tp
    if tp is Any:
        return True
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if isinstance(origin, type):
        if origin is float:
            return isinstance(value, int | float) and not isinstance(value, bool)
        if origin is int and isinstance(value, bool):
            return False
        if origin is dt.date and isinstance(value, dt.datetime):
            return False
        return isinstance(value, origin)
    return False


def to_json_dict(obj: Any, *, path: str | None = None) -> dict[str, Any]:
    """Encode a dataclass instance to a dict of JSON values."""
    cls: Any = type(obj)
    prefix = path or cls.__qualname__
    return {
        name: encode_value(getattr(obj, name), tp, f"{prefix}.{name}")
        for name, tp in field_types(cls).items()
    }


def decode_value(data: Any, tp: Any, path: str) -> Any:
    """Rebuild a value declared as ``tp`` from its JSON form."""
    if tp is Any:
        return data
    origin = _origin(tp)
    if _is_optional_union(tp):
        if data is None:
            return None
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        errors = []
        for option in options:
            try:
                return decode_value(data, option, path)
            except SerializationError as exc:
                errors.append(str(exc))
        raise SerializationError(f"{path}: {data!r} matches none of {_type_name(tp)}")
    if origin is typing.Literal:
        return data
    if origin in (list, tuple, frozenset, set) or tp in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(
                decode_value(v, a, f"{path}[{i}]")
                for i, (v, a) in enumerate(zip(data, args, strict=True))
            )
        item_tp = args[0] if args else Any
        items = [decode_value(v, item_tp, f"{path}[{i}]") for i, v in enumerate(data)]
        if origin is tuple or tp is tuple:
            return tuple(items)
        if origin is frozenset:
            return frozenset(items)
        if origin is set:
            return set(items)
        return items
    if origin is dict or tp is dict:
        args = typing.get_args(tp) or (str, Any)
        return {k: decode_value(v, args[1], f"{path}[{k!r}]") for k, v in data.items()}
    if isinstance(tp, type):
        if data is None:
            raise SerializationError(f"{path}: stored null for non-optional {tp.__name__}")
        decoder = _DECODERS.get(tp)
        try:
            if decoder is not None:
                return decoder(data)
            if issubclass(tp, enum.Enum):
                return tp(data)
            if dataclasses.is_dataclass(tp):
                return from_json_dict(tp, data, path=path)
        except (ValueError, TypeError, InvalidOperation, KeyError) as exc:
            if isinstance(exc, SerializationError):
                raise
            raise SerializationError(f"{path}: cannot read {data!r} as {tp.__name__}") from exc
    raise SerializationError(f"{path}: unsupported field type {_type_name(tp)}")


_DECODERS: dict[type, Callable[[Any], Any]] = {
    str: str,
    int: int,
    bool: bool,
    float: float,
    uuid.UUID: uuid.UUID,
    Decimal: Decimal,
    dt.datetime: dt.datetime.fromisoformat,
    dt.date: dt.date.fromisoformat,
    dt.time: dt.time.fromisoformat,
    dt.timedelta: lambda v: dt.timedelta(seconds=v),
}


def from_json_dict(cls: type, data: dict[str, Any], *, path: str | None = None) -> Any:
    """Rebuild a dataclass instance of ``cls`` from its JSON dict."""
    # Fast path: a decoder compiled once per type. On any failure, decode again the
    # careful way below, which gives the same result or the error naming the field.
    try:
        return _fast_dataclass_decoder(cls)(data)
    except Exception:
        pass
    return _from_json_dict_checked(cls, data, path=path)


def _from_json_dict_checked(cls: type, data: dict[str, Any], *, path: str | None) -> Any:
    prefix = path or cls.__qualname__
    kwargs = {}
    for name, tp in field_types(cls).items():
        if name in data:
            kwargs[name] = decode_value(data[name], tp, f"{prefix}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise SerializationError(f"{prefix}: {exc}") from exc


# -- compiled decoders ----------------------------------------------------------------
# Rebuilds read every stored event, so decoding is hot. These decoders do what
# decode_value() does for valid data, with the type analysis done once per type; they
# raise on anything unusual and from_json_dict() then falls back to decode_value().


@functools.cache
def _fast_dataclass_decoder(cls: Any) -> Callable[[Any], Any]:
    plan = [(name, _fast_decoder(tp)) for name, tp in field_types(cls).items()]

    def decode(data: Any) -> Any:
        kwargs = {}
        for name, decode_field in plan:
            if name in data:
                kwargs[name] = decode_field(data[name])
        return cls(**kwargs)

    return decode


def _identity(data: Any) -> Any:
    return data


def _fast_decoder(tp: Any) -> Callable[[Any], Any]:
    if tp is Any:
        return _identity
    origin = _origin(tp)
    if _is_optional_union(tp):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) != 1:
            return lambda data: None if data is None else decode_value(data, tp, "")
        decode_option = _fast_decoder(options[0])
        return lambda data: None if data is None else decode_option(data)
    if origin is typing.Literal:
        return _identity
    if origin in (list, tuple, frozenset, set) or tp in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            decoders = [_fast_decoder(a) for a in args]
            return lambda data: tuple(f(v) for v, f in zip(data, decoders, strict=True))
        item = _fast_decoder(args[0] if args else Any)
        container: Callable[[Any], Any] = list
        if origin is tuple or tp is tuple:
            container = tuple
        elif origin is frozenset:
            container = frozenset
        elif origin is set:
            container = set
        if item is _identity and container is list:
            return lambda data: [v for v in data]
        return lambda data: container([item(v) for v in data])
    if origin is dict or tp is dict:
        value = _fast_decoder((typing.get_args(tp) or (str, Any))[1])
        return lambda data: {k: value(v) for k, v in data.items()}
    if isinstance(tp, type):
        scalar = _DECODERS.get(tp)
        if scalar is None and issubclass(tp, enum.Enum):
            scalar = tp
        if scalar is not None:
            decode_scalar = scalar

            def decode(data: Any) -> Any:
                if data is None:
                    raise SerializationError("null")
                return decode_scalar(data)

            return decode
        if dataclasses.is_dataclass(tp):
            # Looked up at call time: a dataclass may refer to itself.
            return lambda data: _fast_dataclass_decoder(tp)(data)
    return lambda data: decode_value(data, tp, "")


def check_supported(cls: type) -> list[str]:
    """Return one message per field of ``cls`` whose declared type cannot be stored."""
    problems: list[str] = []
    try:
        types_ = field_types(cls)
    except SerializationError as exc:
        return [str(exc)]
    for name, tp in types_.items():
        _check_type(tp, f"{cls.__qualname__}.{name}", problems, set())
    return problems


def _check_type(tp: Any, path: str, problems: list[str], seen: set[Any]) -> None:
    if tp is Any or tp in _ENCODERS or tp is type(None):
        return
    origin = _origin(tp)
    if origin is typing.Literal:
        return
    if _is_optional_union(tp) or origin in (list, tuple, frozenset, set, dict):
        for arg in typing.get_args(tp):
            if arg is not Ellipsis:
                _check_type(arg, path, problems, seen)
        return
    if tp in (list, tuple, dict):
        return
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if tp in seen:
            return
        seen.add(tp)
        try:
            nested = field_types(tp)
        except SerializationError as exc:
            problems.append(str(exc))
            return
        for name, sub in nested.items():
            _check_type(sub, f"{path}.{name}", problems, seen)
        return
    problems.append(f"{path}: unsupported field type {_type_name(tp)}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp).replace("typing.", "")
