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
    """Rebuild a value declared as ``tp`` from its JSON form; ``path`` names it in errors."""
    try:
        return _decoder(tp)(data)
    except _DecodeError as exc:
        raise exc.error(path) from exc.__cause__


def from_json_dict(cls: type, data: dict[str, Any], *, path: str | None = None) -> Any:
    """Rebuild a dataclass instance of ``cls`` from its JSON dict."""
    return decode_value(data, cls, path or cls.__qualname__)


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


# -- compiled decoders ----------------------------------------------------------------
# Rebuilds read every stored event, so decoding is hot: the type analysis is done once
# per type into a function of the data alone. Where a value is rejected, the path to it
# is collected while the error travels out (``_DecodeError.inside``), so the happy path
# builds no path strings.


class _DecodeError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.steps: list[str] = []

    def inside(self, step: str) -> _DecodeError:
        self.steps.append(step)
        return self

    def error(self, path: str) -> SerializationError:
        return SerializationError(f"{path}{''.join(reversed(self.steps))}: {self.message}")


@functools.cache
def _decoder(tp: Any) -> Callable[[Any], Any]:
    if tp is Any:
        return _identity
    origin = _origin(tp)
    if _is_optional_union(tp):
        return _union_decoder(tp)
    if origin is typing.Literal:
        return _identity
    if origin in (list, tuple, frozenset, set) or tp in (list, tuple):
        return _sequence_decoder(tp)
    if origin is dict or tp is dict:
        return _dict_decoder(tp)
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _dataclass_decoder(tp)
        scalar = _DECODERS.get(tp) or (tp if issubclass(tp, enum.Enum) else None)
        if scalar is not None:
            return _scalar_decoder(tp, scalar)
    message = f"unsupported field type {_type_name(tp)}"

    def unsupported(data: Any) -> Any:
        raise _DecodeError(message)

    return unsupported


def _identity(data: Any) -> Any:
    return data


def _scalar_decoder(tp: type, scalar: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def decode(data: Any) -> Any:
        if data is None:
            raise _DecodeError(f"stored null for non-optional {tp.__name__}")
        try:
            return scalar(data)
        except (ValueError, TypeError, InvalidOperation, KeyError) as exc:
            raise _DecodeError(f"cannot read {data!r} as {tp.__name__}") from exc

    return decode


def _union_decoder(tp: Any) -> Callable[[Any], Any]:
    options = [_decoder(a) for a in typing.get_args(tp) if a is not type(None)]
    if len(options) == 1:
        (option,) = options

        def decode_one(data: Any) -> Any:
            return None if data is None else option(data)

        return decode_one

    def decode(data: Any) -> Any:
        if data is None:
            return None
        for option in options:
            try:
                return option(data)
            except _DecodeError:
                pass
        raise _DecodeError(f"{data!r} matches none of {_type_name(tp)}")

    return decode


def _sequence_decoder(tp: Any) -> Callable[[Any], Any]:
    origin = _origin(tp) or tp
    args = typing.get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        items = [_decoder(a) for a in args]

        def decode_fixed(data: Any) -> Any:
            if not isinstance(data, list) or len(data) != len(items):
                raise _DecodeError(f"expected a list of {len(items)} items, got {data!r}")
            out = []
            for index, (value, item) in enumerate(zip(data, items, strict=True)):
                try:
                    out.append(item(value))
                except _DecodeError as exc:
                    raise exc.inside(f"[{index}]") from exc.__cause__
            return tuple(out)

        return decode_fixed
    item = _decoder(args[0] if args else Any)
    container: Callable[[Any], Any] = {tuple: tuple, frozenset: frozenset, set: set}.get(
        origin, list
    )

    def decode(data: Any) -> Any:
        if not isinstance(data, list):
            raise _DecodeError(f"expected a list, got {type(data).__name__}")
        try:
            return container([item(value) for value in data])
        except _DecodeError:
            pass
        for index, value in enumerate(data):  # find the failing item to name it
            try:
                item(value)
            except _DecodeError as exc:
                raise exc.inside(f"[{index}]") from exc.__cause__
        raise AssertionError("unreachable")

    return decode


def _dict_decoder(tp: Any) -> Callable[[Any], Any]:
    value_decoder = _decoder((typing.get_args(tp) or (str, Any))[1])

    def decode(data: Any) -> Any:
        if not isinstance(data, dict):
            raise _DecodeError(f"expected an object, got {type(data).__name__}")
        out = {}
        for key, value in data.items():
            try:
                out[key] = value_decoder(value)
            except _DecodeError as exc:
                raise exc.inside(f"[{key!r}]") from exc.__cause__
        return out

    return decode


def _dataclass_decoder(cls: Any) -> Callable[[Any], Any]:
    plan: list[tuple[str, Callable[[Any], Any]]] = []

    def decode(data: Any) -> Any:
        if not plan:
            # Filled on first use: a dataclass may refer to itself.
            try:
                plan.extend((name, _decoder(tp)) for name, tp in field_types(cls).items())
            except SerializationError as exc:
                raise _DecodeError(str(exc)) from exc
        if not isinstance(data, dict):
            raise _DecodeError(f"expected an object, got {type(data).__name__}")
        kwargs = {}
        for name, decode_field in plan:
            if name in data:
                try:
                    kwargs[name] = decode_field(data[name])
                except _DecodeError as exc:
                    raise exc.inside(f".{name}") from exc.__cause__
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise _DecodeError(str(exc)) from exc

    return decode


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
