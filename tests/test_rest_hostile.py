"""Hostile requests to every route of the demo's URLconf: never a 5xx, nothing written.

The routes are read from the URL resolver (a new route is probed without touching this
file); path parameters are filled with ids that exist and with junk. Every route gets
every HTTP method, hostile headers and bodies; the API's routes also get hostile values
in every field of their messages and query strings. Each answer must be below 500, and
an answer of 400 or more must leave the event log, the aggregates, the read models and
the idempotency table as they were. The API answers errors as problem details.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404

from django_cqrs.models import ParkedEvent, ProjectionState, StoredEvent
from django_cqrs.rest_framework.models import IdempotencyRecord
from django_cqrs.rest_framework.routes import MessageRoute

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE", "FOO"]
PASSWORD = "hostile-secret"


# -- the routes -----------------------------------------------------------------------


def _walk(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern), entry


ROUTES = [pattern for pattern, _ in _walk(get_resolver())]
_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")


def is_api(pattern: str) -> bool:
    return pattern.startswith("api/") and not pattern.startswith(("api/schema", "api/docs"))


def parameters(pattern: str) -> list[str]:
    return [a or b for a, b in _PARAMETER.findall(pattern)]


def fill(pattern: str, values: dict[str, str]) -> str:
    path = _PARAMETER.sub(lambda m: values[m.group(1) or m.group(2)], pattern)
    return "/" + path.replace("^", "").replace("$", "")


# -- what the database holds ------------------------------------------------------------

WATCHED_APPS = ("orders", "todo", "testapp")


@functools.cache
def watched_models() -> list[type[models.Model]]:
    found: list[type[models.Model]] = [StoredEvent, ParkedEvent, IdempotencyRecord]
    for label in WATCHED_APPS:
        found += [m for m in apps.get_app_config(label).get_models() if not m._meta.proxy]
    return found


def snapshot() -> dict[str, list[str]]:
    """Every row of the event log, the aggregates, the read models and the stored keys.

    Plain SELECTs, not the ORM: the test takes one after every request.
    """
    rows: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        for model in watched_models():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(model._meta.db_table)}")
            rows[model._meta.label] = sorted(map(repr, cursor.fetchall()))
    return rows


# -- the probes -------------------------------------------------------------------------


@dataclass
class Probe:
    method: str
    path: str
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    anonymous: bool = False

    def describe(self) -> str:
        extra = f" {self.headers}" if self.headers else ""
        body = f" body={self.body[:60]!r}" if self.body is not None else ""
        who = " (anonymous)" if self.anonymous else ""
        return f"{self.method} {self.path}{self.query}{extra}{body}{who}"


def meta(headers: dict[str, str]) -> dict[str, str]:
    """Headers as WSGI environ keys (Content-Type and Content-Length without HTTP_)."""
    out = {}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        out[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return out


LATIN1_SUPERSCRIPT_TWO = "\u00c2\u00b2"  # "²" sent as UTF-8 and read as ISO-8859-1 by WSGI
HOSTILE_HEADERS: list[dict[str, str]] = [
    *(
        {"If-Match": value}
        for value in (
            '"\u00b2"',
            "\u00b2",
            LATIN1_SUPERSCRIPT_TWO,
            "1",
            '"1',
            '"1""1"',
            '*, "1"',
            ",",
            "",
            " ",
            'W/"1"',
            '"' + "9" * 40 + '"',
            ", ".join(['"1"'] * 2000),
        )
    ),
    *({"If-None-Match": value} for value in ('"\u00b2"', "1", '"1', "", ",", "*")),
    *(
        {"CQRS-Min-Position": value}
        for value in (
            "\u00b9",
            "\u0663",
            "-1",
            "+1",
            "1.0",
            "1e3",
            "0x1",
            "9" * 19,
            "9" * 5000,
            "",
            " ",
        )
    ),
    *(
        {"Idempotency-Key": value}
        for value in ("", " ", "k\u00e9", "a" * 256, "a b", "\u00b9", "\x7f")
    ),
    *({"Content-Length": value} for value in ("\u0663", "-1", "1e3", "abc", " 5", "9" * 30)),
    *(
        {"Content-Type": f"application/json; charset={charset}"}
        for charset in ("rot13", "zlib", "utf-16", "bogus", "base64", "")
    ),
    {"Content-Type": "text/plain"},
    {"Content-Type": "application/x-www-form-urlencoded"},
    {"Content-Type": "multipart/form-data"},
    {"Content-Type": "\u00b9/\u00b9"},
    *({"Accept": value} for value in ("text/html", "application/xml", "*/*;q=abc", "\u00b9")),
    *(
        {"Authorization": value}
        for value in (
            "Basic \u00b9",
            "Basic !!!",
            "Basic",
            "Bearer x",
            "Basic " + base64.b64encode(b"\xff:\xff").decode(),
            "Basic " + base64.b64encode(b"nobody:nothing").decode(),
        )
    ),
    *({"X-Request-ID": value} for value in ("\u00b9", "a" * 5000, "\x00")),
    {"Cookie": "sessionid=\u00b9; csrftoken=\x01"},
]
# Headers only: every route, not only the API (cheap ones first).
ROUTE_HEADERS: list[dict[str, str]] = [
    {"CQRS-Min-Position": "\u00b9"},
    {"If-Match": '"\u00b2"'},
    {"If-None-Match": '"\u00b2"'},
    {"Content-Length": "\u0663"},
    {"Content-Type": "application/json; charset=rot13"},
    {"Accept": "\u00b9"},
    {"Authorization": "Basic \u00b9"},
    {"Cookie": 'sessionid="abcdefgh\\000ij"'},  # Django decodes the octal escape: a NUL
]


def deep(depth: int, kind: str = "[") -> bytes:
    close = "]" if kind == "[" else "}"
    opener = "[" if kind == "[" else '{"a":'
    return (opener * depth + "1" + close * depth).encode()


HOSTILE_BODIES: list[tuple[bytes, str]] = [
    (deep(1000), "application/json"),
    (deep(1000, "{"), "application/json"),
    (b'{"a":' + b'[{"b":' * 400 + b"1" + b"}]" * 400 + b"}", "application/json"),
    (deep(33), "application/json"),
    (deep(32), "application/json"),
    (b"[" * 100_000, "application/json"),
    (b'"' + b"x" * 1_100_000 + b'"', "application/json"),  # over MAX_BODY_SIZE
    (b'{"name": "\xff\xfe"}', "application/json"),
    ("\ufeff{}".encode(), "application/json"),
    (b'{"a": 1, "a": 2}', "application/json"),
    (b"NaN", "application/json"),
    (b'{"a": Infinity}', "application/json"),
    (b'{"a": 1e999}', "application/json"),
    (b"1" * 5000, "application/json"),
    (b'{"a": "\\ud800"}', "application/json"),
    (b"{", "application/json"),
    (b"", "application/json"),
    (b"[]", "application/json"),
    (b'"text"', "application/json"),
    (b"12", "application/json"),
    (b"null", "application/json"),
    (b"true", "application/json"),
    (b"a=1&b=2", "application/x-www-form-urlencoded"),
    (b"--x\r\n\r\n", "multipart/form-data; boundary=x"),
]

# JSON texts (not Python values): a lone surrogate and NUL must reach the fields as such.
HOSTILE_VALUES: list[str] = [
    "null",
    "true",
    "0",
    "-1",
    "9223372036854775808",
    "-9223372036854775809",
    "1" * 4000,
    "1.5",
    "1e308",
    '""',
    '"\\u0000"',
    '"a\\u0000b"',
    '"\\ud800"',
    '"\\udfff\\ud800"',
    json.dumps("x" * 100_000),
    "[]",
    "{}",
    "[{}]",
    '{"a": 1}',
    '"\u00b9"',
    '"\u0661\u0662"',
    '"NaN"',
    '"Infinity"',
    '"-0"',
    '"1e400"',
    '"00000000-0000-0000-0000-000000000000"',
    '"not-an-id"',
    '"2024-13-45"',
]
QUERY_VALUES = [
    "%00",
    "%C2%B9",
    "%D9%A3",
    "%FF",
    "-1",
    "0",
    "1e400",
    "99999999999999999999",
    "not-an-id",
    "x" * 3000,
    "%ED%A0%80",  # an encoded surrogate
]


def routes_of(path: str, method: str) -> list[tuple[MessageRoute, list[str]]]:
    """The message route behind ``path`` for ``method``, with the fields a client sends."""
    try:
        match = resolve(path)
    except Resolver404:
        return []
    func: Any = match.func
    route: MessageRoute | None = None
    if hasattr(func, "cls") and getattr(func, "actions", None):
        name = func.actions.get(method.lower())
        route = getattr(getattr(func.cls, name, None), "cqrs_route", None) if name else None
        id_field = (route.id_field or func.cls.id_field) if route is not None else None
    else:
        route = getattr(func, "view_initkwargs", {}).get("message_route")
        if route is not None and route.kind != ("command" if method == "POST" else "query"):
            route = None
        id_field = None
    if route is None:
        return []
    return [(route, list(route.body_serializer(id_field)().fields))]


# -- the world --------------------------------------------------------------------------


@dataclass
class World:
    staff: User
    ids: dict[str, str]

    def valid_value(self, name: str) -> Any:
        return {
            "customer_id": self.ids["customer"],
            "product_id": self.ids["product"],
            "order_id": self.ids["order"],
            "items": [{"product_id": self.ids["product"], "quantity": 1}],
            "quantity": 1,
            "name": "Hostile",
            "credit_limit": "10.00",
            "price": "1.00",
            "title": "a task",
            "task_id": self.ids.get("task", str(uuid.uuid4())),
        }.get(name, "x")


@pytest.fixture
def world() -> World:
    staff = User.objects.create_superuser("hostile", "h@example.com", PASSWORD)
    client = _client(staff)
    json_post = {"content_type": "application/json"}
    customer = client.post(
        "/api/customers/", json.dumps({"name": "Ada", "credit_limit": "100.00"}), **json_post
    ).json()["customer_id"]
    product = client.post(
        "/api/products/", json.dumps({"name": "Widget", "price": "2.50"}), **json_post
    ).json()["product_id"]
    order = client.post(
        "/api/orders/",
        json.dumps({"customer_id": customer, "items": [{"product_id": product, "quantity": 2}]}),
        **json_post,
    ).json()["order_id"]
    return World(staff, {"customer": customer, "product": product, "order": order})


def _client(user: User | None) -> Client:
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)  # the admin's session
        credentials = base64.b64encode(f"{user.get_username()}:{PASSWORD}".encode()).decode()
        client.defaults["HTTP_AUTHORIZATION"] = f"Basic {credentials}"  # the API's
    return client


def existing_ids(world: World, pattern: str) -> dict[str, list[str]]:
    """For each parameter of ``pattern``, ids that exist there."""
    values: dict[str, list[str]] = {}
    admin = re.match(r"admin/(\w+)/(\w+)/", pattern)
    for name in parameters(pattern):
        if name == "object_id" and admin:
            model = apps.get_model(admin.group(1), admin.group(2))
            pks = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)[:1]]
            if model is ProjectionState and not pks:
                pks = ["orders.OrderViewProjection"]
            values[name] = pks
        elif name in ("object_id", "id"):
            values[name] = [str(world.staff.pk)]
        elif name == "pk":
            values[name] = [world.ids["order"]] if "orders" in pattern else [world.ids["customer"]]
        elif name == "app_label":
            values[name] = ["orders"]
        elif name == "content_type_id":
            values[name] = [str(ContentType.objects.get_for_model(User).pk)]
        else:  # a catch-all
            values[name] = ["nothing-here/"]
    return values


JUNK_IDS = [
    "not-an-id",
    str(uuid.UUID(int=0)),
    str(uuid.uuid4()),
    "%C2%B9",
    "%00",
    "%FF",
    "9" * 30,
    "x" * 1000,
]


def paths(world: World, pattern: str) -> tuple[list[str], list[str]]:
    """Paths with existing ids, and paths with junk ids."""
    names = parameters(pattern)
    good = existing_ids(world, pattern)
    if not names:
        return [fill(pattern, {})], []
    first = {name: good[name][0] if good[name] else "missing" for name in names}
    real = [fill(pattern, first)] if all(good[name] for name in names) else []
    junk = [
        fill(pattern, {**first, name: value})
        for name in names
        if name not in ("app_label", "url")
        for value in JUNK_IDS
    ]
    return real, junk


def probes(world: World, pattern: str) -> Iterator[Probe]:
    """Every method, the headers the library reads and a deep body; junk ids in the path.

    Routes outside the API (the admin, the schema, the health check) get fewer probes:
    Django's and drf-spectacular's own code answers them.
    """
    real, junk = paths(world, pattern)
    api = is_api(pattern)
    for path in real or [fill(pattern, dict.fromkeys(parameters(pattern), "missing"))]:
        for method in METHODS:
            yield Probe(method, path, body=b"{}" if method in ("POST", "PUT", "PATCH") else None)
            if api or method in ("GET", "OPTIONS", "POST"):
                yield Probe(method, path, anonymous=True)
        ids = "?" + valid_query(world, path) if api else ""
        for headers in ROUTE_HEADERS:
            yield Probe("GET", path, headers=headers, query=ids)
            if api:
                yield Probe("GET", path, headers=headers, anonymous=True, query=ids)
                yield Probe("POST", path, body=b"{}", headers=headers)
        yield Probe("POST", path, body=deep(1000))
        yield Probe("GET", path, query="?o=%C2%B9&p=%C2%B9&q=%00&e=%FF&id=%00")
        if api:
            yield from api_probes(world, path)
    for path in junk if api else junk[:: len(JUNK_IDS) // 3]:
        for method in ("GET", "POST") if not api else ("GET", "HEAD", "OPTIONS", "POST", "PUT"):
            yield Probe(method, path, body=b"{}" if method in ("POST", "PUT") else None)
        if api:
            for headers in ROUTE_HEADERS[:3]:
                yield Probe("POST", path, body=b"{}", headers=headers)


def api_probes(world: World, path: str) -> Iterator[Probe]:
    commands = routes_of(path, "POST")
    queries = routes_of(path, "GET")
    valid = {name: world.valid_value(name) for name in commands[0][1]} if commands else {}
    if commands:
        for body, content_type in HOSTILE_BODIES:
            yield Probe("POST", path, body=body, content_type=content_type)
        for body, content_type in HOSTILE_BODIES[:3] + HOSTILE_BODIES[7:10]:
            key = {"Idempotency-Key": "hostile-body"}
            yield Probe("POST", path, body=body, content_type=content_type, headers=key)
        for headers in HOSTILE_HEADERS:
            yield Probe("POST", path, body=json.dumps(valid).encode(), headers=headers)
        names = [*valid, "items.0.product_id", "items.0.quantity", "unknown"]
        for name in names:
            if name.startswith("items.") and "items" not in valid:
                continue
            for value in HOSTILE_VALUES:
                yield Probe("POST", path, body=_with_value(valid, name, value))
        for value in HOSTILE_VALUES:  # every field at once
            yield Probe(
                "POST",
                path,
                body=("{" + ", ".join(f'"{n}": {value}' for n in valid) + "}").encode(),
            )
    if queries:
        ids = valid_query(world, path)
        for headers in HOSTILE_HEADERS:
            if "Content-" not in next(iter(headers)):
                yield Probe("GET", path, headers=headers, query=f"?{ids}")
        for name in [*queries[0][1], "page", "unknown"]:
            for value in QUERY_VALUES:
                yield Probe("GET", path, query=f"?{ids}&{name}={value}")
            yield Probe("GET", path, query=f"?{ids}&{name}=1&{name}=2")


def valid_query(world: World, path: str) -> str:
    """Query parameters that make a query route's request valid (its ids)."""
    found = routes_of(path, "GET")
    names = [name for name in found[0][1] if name.endswith("_id")] if found else []
    return urlencode({name: world.valid_value(name) for name in names})


def _with_value(valid: dict[str, Any], name: str, value: str) -> bytes:
    """``valid`` as JSON text, with the field ``name`` (dotted: inside items) set to ``value``."""
    marker = "__HOSTILE__"
    body = json.loads(json.dumps(valid))
    target, key = body, name
    if "." in name:
        first, index, key = name.split(".")
        target = body[first][int(index)]
    target[key] = marker
    return json.dumps(body).replace(f'"{marker}"', value).encode()


def send(world: World, probe: Probe) -> Any:
    client = _client(None if probe.anonymous else world.staff)
    extra = meta(probe.headers)
    if probe.body is not None:
        extra.setdefault("CONTENT_TYPE", probe.content_type)
    return client.generic(
        probe.method,
        probe.path + probe.query,
        data=probe.body or b"",
        content_type=extra.pop("CONTENT_TYPE", "application/octet-stream"),
        **extra,
    )


# -- the test ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def quiet_request_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="django.request")  # thousands of 4xx warnings


@pytest.mark.parametrize("pattern", ROUTES)
def test_no_hostile_request_answers_5xx_or_writes(world: World, pattern: str) -> None:
    failures: list[str] = []
    before = snapshot()
    for probe in probes(world, pattern):
        response = send(world, probe)
        status = response.status_code
        for problem in check_answer(pattern, probe, response):
            failures.append(f"{probe.describe()} -> {status}: {problem}")
        after = snapshot()
        changed = {label for label in after if after[label] != before[label]}
        if status >= 400 and changed - allowed_writes(probe, status):
            failures.append(f"{probe.describe()} -> {status} but wrote to {sorted(changed)}")
        before = after
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:40])


def allowed_writes(probe: Probe, status: int) -> set[str]:
    """An error may write only the answer a command's own refusal keeps for its key."""
    if status in (404, 422) and "Idempotency-Key" in probe.headers:
        return {IdempotencyRecord._meta.label}
    return set()


def check_answer(pattern: str, probe: Probe, response: Any) -> Iterator[str]:
    status = response.status_code
    if status >= 500:
        yield "a server error"
        return
    if probe.method == "HEAD" and response.content:
        yield "a body in answer to HEAD"
    if not is_api(pattern) or pattern == "^api/":
        return
    if probe.method == "OPTIONS" and status == 200 and "OPTIONS" not in response.get("Allow", ""):
        yield "OPTIONS without Allow"
    refused_nul = status == 400 and "%00" in probe.path  # the NUL guard, before any view
    if probe.method == "OPTIONS" and status not in (200, 404) and not refused_nul:
        yield "OPTIONS not answered"
    if status == 405 and "Allow" not in response:
        yield "405 without Allow"
    if status >= 400 and probe.method != "HEAD":
        if response.get("Content-Type") != PROBLEM:
            yield f"not problem details: {response.get('Content-Type')}"
        elif response.json().get("status") != status:
            yield "the problem's status differs"
        elif response.json().get("code") == "invalid_header" and "header" not in response.json():
            yield "a header problem that names no header"


def test_every_route_is_probed() -> None:
    api_routes = [pattern for pattern in ROUTES if is_api(pattern)]
    assert len(api_routes) >= 13, api_routes
    assert any("ship" in pattern for pattern in api_routes)
    assert any(pattern.startswith("admin/") for pattern in ROUTES)
    assert "cqrs/health/" in ROUTES


def test_the_hostile_probes_reach_the_command_fields(world: World) -> None:
    path = f"/api/orders/{world.ids['order']}/items/"
    ((route, names),) = routes_of(path, "POST")
    assert route.message.__name__ == "AddItem"
    assert set(names) == {"product_id", "quantity"}
    bodies = [probe.body for probe in api_probes(world, path) if probe.body]
    assert any(b'"quantity": "\\ud800"' in body for body in bodies)
