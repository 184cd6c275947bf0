"""JSON encoding of message dataclasses, driven by their type annotations.

    from django_cqrs.serialization import check_supported, from_json_dict, to_json_dict

    event = OrderPlaced(order_id=oid, total=Decimal("9.90"), item_count=2)
    data = to_json_dict(event)
    # {"order_id": "7c1e...", "total": "9.90", "item_count": 2}
    from_json_dict(OrderPlaced, data) == event    # the same typed object comes back
    check_supported(OrderPlaced)                  # [] : every field can be stored

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``None``, ``UUID``,
``Decimal`` (exact, stored as a string), aware ``datetime`` (ISO 8601, microseconds
kept), ``date``, ``time``, ``timedelta``, ``Enum`` subclasses, nested dataclasses,
``list[X]``, ``tuple[X, ...]``, ``frozenset[X]``, ``dict[str, X]``, ``X | None``,
``Literal[...]`` and ``Any`` (JSON values only). Anything else raises
:class:`~django_cqrs.exceptions.SerializationError` naming the field.

Each declared type gets one codec (:func:`_codec`), built from one reading of the
annotation the first time the type is met and cached: an ``encode`` and a ``decode``
function of the value alone. Events are encoded on every append and decoded on every
read and rebuild, so the type analysis is not repeated per value, and no path strings
are built while values are accepted: a refused value raises :class:`_Refused`, which
collects the path to it on its way out. While building, the codec also records what it
cannot store; :func:`check_supported` (the system check E008) reports those records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import functools
import operator
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from .exceptions import SerializationError

_JSON_SCALARS = (str, int, float, bool, type(None))
_SEQUENCES = (list, tuple, frozenset, set)
_SETS = (frozenset, set)

Convert = Callable[[Any], Any]


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


# -- public functions -----------------------------------------------------------------


def to_json_dict(obj: Any, *, path: str | None = None) -> dict[str, Any]:
    """Encode a dataclass instance to a dict of JSON values."""
    cls: Any = type(obj)
    try:
        encoded: dict[str, Any] = _message_codec(cls).encode(obj)
    except _Refused as exc:
        raise exc.error(path or cls.__qualname__) from None
    return encoded


def from_json_dict(cls: type, data: dict[str, Any], *, path: str | None = None) -> Any:
    """Rebuild a dataclass instance of ``cls`` from its JSON dict."""
    return decode_value(data, cls, path or cls.__qualname__)


def encode_value(value: Any, tp: Any, path: str) -> Any:
    """Encode one value declared as ``tp``; ``path`` names it in errors."""
    try:
        return _codec(tp).encode(value)
    except _Refused as exc:
        raise exc.error(path) from None


def decode_value(data: Any, tp: Any, path: str) -> Any:
    """Rebuild a value declared as ``tp`` from its JSON form; ``path`` names it in errors."""
    try:
        return _codec(tp).decode(data)
    except _Refused as exc:
        raise exc.error(path) from exc.__cause__


def check_supported(cls: type) -> list[str]:
    """Return one message per field of ``cls`` whose declared type cannot be stored.

    Nothing is encoded: the messages are what building the codec of ``cls`` recorded.
    """
    try:
        fields = _message_codec(cls).parts()
    except SerializationError as exc:
        return [str(exc)]
    problems: list[str] = []
    for step, part in fields:
        # A fresh `seen` per field: each field names the problems found through it.
        part.report(f"{cls.__qualname__}{step}", problems, set())
    return problems


# -- codecs ---------------------------------------------------------------------------


class _Refused(Exception):
    """A value a codec cannot encode or decode; the path to it is added on the way out."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.steps: list[str] = []

    def inside(self, step: str) -> _Refused:
        self.steps.append(step)
        return self

    def error(self, path: str) -> SerializationError:
        return SerializationError(f"{path}{''.join(reversed(self.steps))}: {self.message}")


class _Codec:
    """How values of one declared type are stored.

    ``problem`` is why the type cannot be stored (``None`` if it can); ``parts()`` are
    the codecs of the types it is made of, each with the step it adds to a field path in
    :func:`check_supported`'s messages ("" for the items of a container).
    """

    __slots__ = ("_parts", "decode", "encode", "problem")

    def __init__(
        self,
        encode: Convert,
        decode: Convert,
        *,
        parts: Sequence[tuple[str, _Codec]] = (),
        problem: str | None = None,
    ) -> None:
        self.encode = encode
        self.decode = decode
        self._parts = parts
        self.problem = problem

    def parts(self) -> Sequence[tuple[str, _Codec]]:
        return self._parts

    def report(self, path: str, problems: list[str], seen: set[_Codec]) -> None:
        """Append what cannot be stored at ``path`` and below to ``problems``."""
        if self.problem is not None:
            problems.append(f"{path}: {self.problem}")
        for step, part in self.parts():
            part.report(f"{path}{step}", problems, seen)


# Keys: a class is its own key; any other annotation is keyed with its repr as well,
# because typing's equality would make `int | str` and `str | int` (whose order decides
# which option encodes a value) or `Optional[int]` and `int | None` (named differently
# in messages) share one codec.
_CODECS: dict[Any, _Codec] = {}


def _codec(tp: Any) -> _Codec:
    """The codec of the declared type ``tp``, built on first use."""
    key = tp if isinstance(tp, type) else (tp, repr(tp))
    try:
        return _CODECS[key]
    except KeyError:
        pass
    return _CODECS.setdefault(key, _build(tp))


def _message_codec(cls: Any) -> _Codec:
    """The codec of a message class, which is encoded field by field."""
    codec = _codec(cls)
    if not isinstance(codec, _DataclassCodec):
        field_types(cls)  # not a dataclass: raises as dataclasses.fields() does
    return codec


def _build(tp: Any) -> _Codec:
    """One reading of the type grammar, for encoding, decoding and checking alike."""
    if tp is Any:
        return _Codec(_encode_any, _identity)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_codec(tp)
    if origin is typing.Literal:
        return _Codec(_literal_encoder(typing.get_args(tp)), _identity)
    if origin in _SEQUENCES or tp in (list, tuple):
        return _sequence_codec(tp)
    if origin is dict or tp is dict:
        return _dict_codec(tp)
    if isinstance(tp, type):
        return _class_codec(tp)
    return _unsupported_codec(tp)


def _class_codec(tp: type) -> _Codec:
    scalar = _SCALARS.get(tp)
    if scalar is not None:
        convert, read = scalar
        return _Codec(_scalar_encoder(tp, convert), _scalar_decoder(tp, read))
    if issubclass(tp, enum.Enum):
        return _Codec(_enum_encoder(tp), _scalar_decoder(tp, tp))
    if dataclasses.is_dataclass(tp):
        return _DataclassCodec.build(tp)
    # A bare `None` annotation passes the check but stores nothing (as it always has).
    return _unsupported_codec(tp, reported=tp is not type(None))


def _identity(data: Any) -> Any:
    return data


def _locate(attempts: Iterable[tuple[str, Convert, Any]], refused: _Refused) -> _Refused:
    """Encode again one by one to name the refused item (only once something failed)."""
    for step, encode, value in attempts:
        try:
            encode(value)
        except _Refused as exc:
            return exc.inside(step)
    return refused


def _none_refused(tp: type) -> _Refused:
    return _Refused(f"None is not allowed for {tp.__name__} (declare `{tp.__name__} | None`)")


def _unsupported_codec(tp: Any, *, reported: bool = True) -> _Codec:
    # Known at build time and recorded for check_supported (E008), but only refused when
    # a value reaches it: a field declared `set[complex] | None` has always stored None,
    # and an empty list of anything stores [].
    message = f"unsupported field type {_type_name(tp)}"
    declared_class = isinstance(tp, type)

    def encode(value: Any) -> Any:
        if value is None and declared_class:
            raise _none_refused(tp)
        raise _Refused(message)

    def decode(data: Any) -> Any:
        raise _Refused(message)

    return _Codec(encode, decode, problem=message if reported else None)


# -- scalars and enums ----------------------------------------------------------------


def _same(value: Any) -> Any:
    return value


def _finite_float(value: float) -> float:
    if value != value or value in (float("inf"), float("-inf")):
        raise _Refused(f"{value} cannot be stored in JSON")
    return value


def _finite_decimal(value: Decimal) -> str:
    if not value.is_finite():
        raise _Refused(f"{value} cannot be stored")
    return str(value)


def _aware_datetime(value: dt.datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _Refused(f"naive datetime {value.isoformat()}; use an aware one")
    return value.isoformat(timespec="microseconds")


def _timedelta(seconds: Any) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


# type -> (encode an accepted value, decode a stored one). The encoders call the value's
# own method (a datetime given for a `date` field keeps its time, as it always has).
_SCALARS: dict[type, tuple[Convert, Convert]] = {
    str: (_same, str),
    int: (_same, int),
    bool: (_same, bool),
    float: (_finite_float, float),
    uuid.UUID: (str, uuid.UUID),
    Decimal: (_finite_decimal, Decimal),
    dt.datetime: (_aware_datetime, dt.datetime.fromisoformat),
    dt.date: (operator.methodcaller("isoformat"), dt.date.fromisoformat),
    dt.time: (operator.methodcaller("isoformat"), dt.time.fromisoformat),
    dt.timedelta: (operator.methodcaller("total_seconds"), _timedelta),
}


def _scalar_encoder(tp: type, convert: Convert) -> Convert:
    # A value of exactly the declared type needs no checks: the common case, kept short.
    if convert is _same:

        def encode_same(value: Any) -> Any:
            return value if type(value) is tp else _checked_scalar(value, tp, convert)

        return encode_same

    def encode(value: Any) -> Any:
        return convert(value) if type(value) is tp else _checked_scalar(value, tp, convert)

    return encode


def _checked_scalar(value: Any, tp: type, convert: Convert) -> Any:
    """A value of another type than the declared scalar: coerce int to float, or refuse."""
    if value is None:
        raise _none_refused(tp)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise _Refused(f"expected {tp.__name__}, got {type(value).__name__} ({value!r})")
    return convert(value)


def _scalar_decoder(tp: type, read: Convert) -> Convert:
    def decode(data: Any) -> Any:
        if data is None:
            raise _Refused(f"stored null for non-optional {tp.__name__}")
        try:
            return read(data)
        except (ValueError, TypeError, InvalidOperation, KeyError) as exc:
            raise _Refused(f"cannot read {data!r} as {tp.__name__}") from exc

    return decode


def _enum_encoder(tp: type[enum.Enum]) -> Convert:
    def encode(value: Any) -> Any:
        if isinstance(value, tp):
            # Stored by value, encoded as what the value is (str, int, ...).
            raw = value.value
            return _codec(type(raw)).encode(raw)
        if value is None:
            raise _none_refused(tp)
        raise _Refused(f"expected {tp.__name__}, got {value!r}")

    return encode


def _literal_encoder(values: tuple[Any, ...]) -> Convert:
    def encode(value: Any) -> Any:
        if value not in values:
            raise _Refused(f"{value!r} is not one of {values}")
        return value

    return encode


def _encode_any(value: Any) -> Any:
    """A field declared ``Any`` takes JSON values only, checked all the way down."""
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        try:
            return [_encode_any(v) for v in value]
        except _Refused as exc:
            raise _locate(((f"[{i}]", _encode_any, v) for i, v in enumerate(value)), exc) from None
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        try:
            return {k: _encode_any(v) for k, v in value.items()}
        except _Refused as exc:
            raise _locate(((f"[{k!r}]", _encode_any, v) for k, v in value.items()), exc) from None
    raise _Refused(f"{type(value).__name__} is not a JSON value; declare the field's type")


# -- unions ---------------------------------------------------------------------------


def _union_codec(tp: Any) -> _Codec:
    args = typing.get_args(tp)
    options = [(arg, _codec(arg)) for arg in args if arg is not type(None)]
    return _Codec(
        _union_encoder(tp, type(None) in args, options),
        _union_decoder(tp, [codec.decode for _, codec in options]),
        parts=[("", codec) for _, codec in options],
    )


def _union_encoder(tp: Any, nullable: bool, options: list[tuple[Any, _Codec]]) -> Convert:
    # The first option the value is an instance of encodes it.
    name = _type_name(tp)
    choices = [(_matcher(arg), codec.encode) for arg, codec in options]
    if nullable and len(choices) == 1:
        return _optional_encoder(name, *choices[0])

    def encode(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise _Refused(f"None is not allowed for {name}")
        for matches, encode_option in choices:
            if matches(value):
                return encode_option(value)
        raise _Refused(f"{type(value).__name__} value does not match {name}")

    return encode


def _optional_encoder(name: str, matches: Callable[[Any], bool], encode_option: Convert) -> Convert:
    """``X | None``, the common union: no loop over the options."""

    def encode(value: Any) -> Any:
        if value is None:
            return None
        if matches(value):
            return encode_option(value)
        raise _Refused(f"{type(value).__name__} value does not match {name}")

    return encode


def _matcher(tp: Any) -> Callable[[Any], bool]:
    """Whether a value belongs to one option of a union."""
    origin = typing.get_origin(tp) or tp
    if tp is Any:
        return lambda value: True
    if origin is typing.Literal:
        values = typing.get_args(tp)
        return lambda value: value in values
    if not isinstance(origin, type):
        return lambda value: False
    if origin is float:
        return lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if origin is dt.date:
        return lambda value: isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    return lambda value: isinstance(value, origin)


def _union_decoder(tp: Any, options: list[Convert]) -> Convert:
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
            except _Refused:
                pass
        raise _Refused(f"{data!r} matches none of {_type_name(tp)}")

    return decode


# -- containers -----------------------------------------------------------------------


def _sequence_codec(tp: Any) -> _Codec:
    args = typing.get_args(tp)
    parts = [("", _codec(arg)) for arg in args if arg is not Ellipsis]
    if typing.get_origin(tp) is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        items = [_codec(arg) for arg in args]
        return _Codec(
            _fixed_encoder([c.encode for c in items]),
            _fixed_decoder([c.decode for c in items]),
            parts=parts,
        )
    item = _codec(args[0] if args else Any)
    origin = typing.get_origin(tp) or tp
    container: Convert = {tuple: tuple, frozenset: frozenset, set: set}.get(origin, list)
    return _Codec(_items_encoder(item.encode), _items_decoder(item.decode, container), parts=parts)


def _refuse_non_sequence(value: Any) -> None:
    if not isinstance(value, _SEQUENCES):
        raise _Refused(f"expected a sequence, got {type(value).__name__}")


def _fixed_encoder(items: list[Convert]) -> Convert:
    def encode(value: Any) -> Any:
        _refuse_non_sequence(value)
        try:
            return [item(v) for v, item in zip(value, items, strict=True)]
        except _Refused as exc:
            attempts = (
                (f"[{i}]", item, v) for i, (v, item) in enumerate(zip(value, items, strict=False))
            )
            raise _locate(attempts, exc) from None

    return encode


def _items_encoder(item: Convert) -> Convert:
    def encode(value: Any) -> Any:
        if type(value) is not list:
            _refuse_non_sequence(value)
            if isinstance(value, _SETS):
                value = sorted(value, key=repr)  # a stable order for the same set
        try:
            return [item(v) for v in value]
        except _Refused as exc:
            raise _locate(((f"[{i}]", item, v) for i, v in enumerate(value)), exc) from None

    return encode


def _fixed_decoder(items: list[Convert]) -> Convert:
    def decode(data: Any) -> Any:
        if not isinstance(data, list) or len(data) != len(items):
            raise _Refused(f"expected a list of {len(items)} items, got {data!r}")
        out = []
        for index, (value, item) in enumerate(zip(data, items, strict=True)):
            try:
                out.append(item(value))
            except _Refused as exc:
                raise exc.inside(f"[{index}]") from exc.__cause__
        return tuple(out)

    return decode


def _items_decoder(item: Convert, container: Convert) -> Convert:
    def decode(data: Any) -> Any:
        if not isinstance(data, list):
            raise _Refused(f"expected a list, got {type(data).__name__}")
        try:
            return container([item(value) for value in data])
        except _Refused:
            pass
        for index, value in enumerate(data):  # find the failing item to name it
            try:
                item(value)
            except _Refused as exc:
                raise exc.inside(f"[{index}]") from exc.__cause__
        raise AssertionError("unreachable")

    return decode


def _dict_codec(tp: Any) -> _Codec:
    args = typing.get_args(tp)
    value = _codec((args or (str, Any))[1])
    # The key type is checked like any other, though keys are always stored as str.
    parts = [("", _codec(arg)) for arg in args]
    return _Codec(_dict_encoder(value.encode), _dict_decoder(value.decode), parts=parts)


def _str_key(key: Any) -> typing.NoReturn:
    raise _Refused(f"dict keys must be str, got {key!r}")


def _dict_encoder(item: Convert) -> Convert:
    def encode(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Refused(f"expected a dict, got {type(value).__name__}")
        try:
            # Key before value, as in a loop: the first bad key or value is the one named.
            return {(k if isinstance(k, str) else _str_key(k)): item(v) for k, v in value.items()}
        except _Refused as exc:
            raise _locate_in_dict(item, value, exc) from None

    return encode


def _locate_in_dict(item: Convert, value: dict[Any, Any], refused: _Refused) -> _Refused:
    for k, v in value.items():
        if not isinstance(k, str):
            return _Refused(f"dict keys must be str, got {k!r}")
        try:
            item(v)
        except _Refused as exc:
            return exc.inside(f"[{k!r}]")
    return refused


def _dict_decoder(item: Convert) -> Convert:
    def decode(data: Any) -> Any:
        if not isinstance(data, dict):
            raise _Refused(f"expected an object, got {type(data).__name__}")
        out = {}
        for key, value in data.items():
            try:
                out[key] = item(value)
            except _Refused as exc:
                raise exc.inside(f"[{key!r}]") from exc.__cause__
        return out

    return decode


# -- dataclasses ----------------------------------------------------------------------


class _Plan(NamedTuple):
    """A dataclass's init fields with their codecs, once its annotations are resolved."""

    fields: list[tuple[str, _Codec]]
    encoders: list[tuple[str, Convert]]
    decoders: list[tuple[str, Convert]]


class _DataclassCodec(_Codec):
    """A nested dataclass, stored as an object of its fields.

    It is registered before its fields are built, so that a dataclass may refer to
    itself. If an annotation cannot be resolved yet, the plan is tried again where it is
    needed (encode, decode, check), and that error is raised there.
    """

    __slots__ = ("cls", "plan")

    def __init__(self, cls: type) -> None:
        super().__init__(self._encode, self._decode)
        self.cls = cls
        self.plan: _Plan | None = None

    @classmethod
    def build(cls, dataclass: type) -> _DataclassCodec:
        codec = _CODECS.setdefault(dataclass, cls(dataclass))
        assert isinstance(codec, _DataclassCodec)
        # Whatever stops the plan now is raised again where the plan is needed.
        with contextlib.suppress(Exception):
            codec.resolve()
        return codec

    def resolve(self) -> _Plan:
        plan = self.plan
        if plan is None:
            fields = [(name, _codec(tp)) for name, tp in field_types(self.cls).items()]
            plan = _Plan(
                fields,
                [(name, codec.encode) for name, codec in fields],
                [(name, codec.decode) for name, codec in fields],
            )
            self.plan = plan  # whole, at once: another thread may be reading it
        return plan

    def parts(self) -> Sequence[tuple[str, _Codec]]:
        return [(f".{name}", codec) for name, codec in self.resolve().fields]

    def report(self, path: str, problems: list[str], seen: set[_Codec]) -> None:
        if self in seen:  # a dataclass seen higher up this field: a cycle, or said already
            return
        seen.add(self)
        try:
            parts = self.parts()
        except SerializationError as exc:
            problems.append(str(exc))
            return
        for step, part in parts:
            part.report(f"{path}{step}", problems, seen)

    def _encode(self, value: Any) -> Any:
        plan = self.plan
        if plan is not None and type(value) is self.cls:
            encoders = plan.encoders
            try:
                return {name: encode(getattr(value, name)) for name, encode in encoders}
            except _Refused as exc:
                attempts = ((f".{n}", encode, getattr(value, n)) for n, encode in encoders)
                raise _locate(attempts, exc) from None
        return self._encode_other(value)

    def _encode_other(self, value: Any) -> Any:
        if value is None:
            raise _none_refused(self.cls)
        if not isinstance(value, self.cls):
            raise _Refused(f"expected {self.cls.__name__}, got {type(value).__name__}")
        if type(value) is not self.cls:
            return _codec(type(value)).encode(value)  # a subclass: stored with its fields
        self.resolve()  # raises if an annotation still cannot be resolved
        return self._encode(value)

    def _decode(self, data: Any) -> Any:
        plan = self.plan
        if plan is None:
            try:
                plan = self.resolve()
            except SerializationError as exc:
                raise _Refused(str(exc)) from exc
        if not isinstance(data, dict):
            raise _Refused(f"expected an object, got {type(data).__name__}")
        kwargs = {}
        for name, decode_field in plan.decoders:
            if name in data:
                try:
                    kwargs[name] = decode_field(data[name])
                except _Refused as exc:
                    raise exc.inside(f".{name}") from exc.__cause__
        try:
            return self.cls(**kwargs)
        except TypeError as exc:
            raise _Refused(str(exc)) from exc


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp).replace("typing.", "")
