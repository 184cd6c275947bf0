"""The API's limits: body depth and size, strict headers, every method answered.

Each test is a client mistake that used to answer 500 (or was let through although the
docs call it a 400); ``tests/test_rest_hostile.py`` sends the same and more to every route.
"""

# ruff: noqa: F811  (pytest fixtures imported from test_rest_api are redefined as arguments)

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from django_cqrs.checks import check_settings
from django_cqrs.rest_framework.exceptions import NestingTooDeep, problem_exception_handler
from django_cqrs.rest_framework.models import IdempotencyRecord
from django_cqrs.rest_framework.parsers import JSONParser, check_depth
from django_cqrs.rest_framework.preconditions import IfMatch, parse_if_match, parse_if_none_match
from tests.test_rest_api import (  # noqa: F401  (fixtures)
    anonymous,
    assert_problem,
    client,
    counts,
    customer_id,
    order_id,
    post,
    product_id,
    staff,
    user,
)

pytestmark = pytest.mark.django_db


def raw_post(client: APIClient, path: str, body: bytes, **headers: str) -> Any:
    return client.post(path, body, content_type="application/json", headers=headers)


# -- the body ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["\ud800", "\udfff\ud800", "a\ud83db"])
def test_an_error_quoting_a_lone_surrogate_is_rendered(value: str) -> None:
    """DRF's choice error quotes the value sent; UTF-8 cannot encode a lone surrogate."""
    error = ValidationError({"mode": [f'"{value}" is not a valid choice.']})

    response = problem_exception_handler(error, {"request": None})

    assert response is not None
    rendered = json.loads(JSONRenderer().render(response.data))  # no UnicodeEncodeError
    [message] = rendered["errors"]["mode"]
    shown = value.encode("utf-8", "backslashreplace").decode()
    assert message == f'"{shown}" is not a valid choice.'
    assert "\\ud" in message  # shown escaped


@pytest.mark.parametrize(
    "body",
    [b"[" * 1000 + b"]" * 1000, b'{"a":' * 1000 + b"1" + b"}" * 1000],
    ids=["arrays", "objects"],
)
def test_a_body_nested_1000_deep_answers_400_and_writes_nothing(
    client: APIClient, body: bytes
) -> None:
    assert len(body) < 7000
    before = counts()

    response = raw_post(client, "/api/orders/", body)

    problem = assert_problem(response, 400, "nesting_too_deep")
    assert "32 levels" in problem["detail"]
    assert counts() == before


def test_a_deep_body_with_an_idempotency_key_answers_400_and_keeps_no_key(
    client: APIClient,
) -> None:
    response = raw_post(
        client, "/api/orders/", b"[" * 1000 + b"]" * 1000, **{"Idempotency-Key": "d"}
    )

    assert_problem(response, 400, "nesting_too_deep")
    assert not IdempotencyRecord.objects.exists()


def test_the_depth_limit_is_a_setting(client: APIClient, customer_id: str, product_id: str) -> None:
    order = {"customer_id": customer_id, "items": [{"product_id": product_id, "quantity": 1}]}

    with override_settings(DJANGO_CQRS={"MAX_JSON_DEPTH": 2}):
        assert_problem(post(client, "/api/orders/", order), 400, "nesting_too_deep")
    assert post(client, "/api/orders/", order).status_code == 201  # 3 deep: under the default


def test_the_depth_scan_skips_brackets_in_strings() -> None:
    check_depth(b'{"a": "[[[[[[[[[[", "b": "\\"[[[[[[[["}', 2)
    with pytest.raises(NestingTooDeep):
        check_depth(b'{"a": "]]]]", "b": [[1]]}', 2)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"name": "a", "name": "b", "price": "1.00"}', "duplicate key 'name'"),
        (b'{"name": "a", "price": NaN}', "NaN is not a JSON value"),
        (b'{"name": "a", "price": 1e999}', "out of range"),
        (b'{"name": "\xff", "price": "1.00"}', "not UTF-8"),
        (b'{"name": "a", "price": ' + b"1" * 5000 + b"}", "JSON parse error"),
    ],
    ids=["duplicate key", "NaN", "infinite", "not UTF-8", "5000 digits"],
)
def test_json_that_is_not_plain_data_answers_400(
    client: APIClient, body: bytes, fragment: str
) -> None:
    before = counts()

    problem = assert_problem(raw_post(client, "/api/products/", body), 400, "parse_error")

    assert fragment in problem["detail"]
    assert counts() == before


def test_the_parser_reads_utf8_whatever_the_charset_says(client: APIClient) -> None:
    body = json.dumps({"name": "Dünn", "price": "1.00"}, ensure_ascii=False).encode()

    for charset in ("utf-8", "rot13", "zlib", "latin-1"):
        response = client.post(
            "/api/products/", body, content_type=f"application/json; charset={charset}"
        )
        assert response.status_code == 201, (charset, response.content)


def test_the_parser_gives_plain_data() -> None:
    assert JSONParser().parse(io.BytesIO(b'{"a": [1, 2.5, "x", null]}')) == {
        "a": [1, 2.5, "x", None]
    }
    with pytest.raises(ParseError):
        JSONParser().parse(io.BytesIO(b"Infinity"))


@pytest.mark.parametrize("value", ["\u0663", " 5", "-1", "1e3", "abc"])
def test_a_content_length_that_is_not_ascii_digits_answers_400(
    client: APIClient, value: str
) -> None:
    before = counts()
    response = client.post(
        "/api/products/",
        b'{"name": "a", "price": "1.00"}',
        content_type="application/json",
        CONTENT_LENGTH=value,
    )

    problem = assert_problem(response, 400, "invalid_header")
    assert problem["header"] == "Content-Length"
    assert counts() == before


# -- headers ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["\u00b9", "\u0663", "\u00b9\u00b2", " 1 2", "+1", "-0"])
def test_a_min_position_that_is_not_ascii_digits_answers_400_even_anonymously(
    anonymous: APIClient, order_id: str, value: str
) -> None:
    response = anonymous.get(f"/api/orders/{order_id}/", headers={"CQRS-Min-Position": value})

    problem = assert_problem(response, 400, "invalid_header")
    assert problem["header"] == "CQRS-Min-Position"


@pytest.mark.parametrize(
    "value", ['"\u00b2"', "\u00b2", "1", '"1" "2"', '*, "1"', "", ",", '"1', "W/1"]
)
def test_a_malformed_if_match_answers_400_naming_the_header(
    client: APIClient, order_id: str, value: str
) -> None:
    before = counts()

    response = post(client, f"/api/orders/{order_id}/cancel/", **{"If-Match": value})

    problem = assert_problem(response, 400, "invalid_header")
    assert problem["header"] == "If-Match"
    assert counts() == before


def test_entity_tags_compare_as_strings(client: APIClient, order_id: str) -> None:
    # "01" is a valid tag, but not the tag "1" of version 1: strong comparison is exact.
    assert_problem(post(client, f"/api/orders/{order_id}/cancel/", **{"If-Match": '"01"'}), 412)
    assert_problem(post(client, f"/api/orders/{order_id}/cancel/", **{"If-Match": '"v1"'}), 412)
    response = post(client, f"/api/orders/{order_id}/cancel/", **{"If-Match": '"x", "1",'})
    assert response.status_code == 204


def test_parse_entity_tags() -> None:
    assert parse_if_match(' "3" , W/"4",,"5"') == IfMatch(
        versions=frozenset({3, 5}),
        tags=frozenset({"3", "5"}),  # a weak tag never matches
    )
    assert parse_if_match('"a,b", "2"') == IfMatch(
        versions=frozenset({2}), tags=frozenset({"a,b", "2"})
    )
    assert parse_if_none_match('W/"4", "5"') == IfMatch(
        versions=frozenset({4, 5}), tags=frozenset({"4", "5"})
    )
    assert parse_if_none_match(" * ") == IfMatch(any=True)


@pytest.mark.parametrize("value", ['"\u00b2"', "1", '"1', ""])
def test_a_malformed_if_none_match_answers_400(
    anonymous: APIClient, order_id: str, value: str
) -> None:
    response = anonymous.get(f"/api/orders/{order_id}/", headers={"If-None-Match": value})

    problem = assert_problem(response, 400, "invalid_header")
    assert problem["header"] == "If-None-Match"


def test_if_none_match_star_and_weak_tags_answer_304(anonymous: APIClient, order_id: str) -> None:
    for value in ("*", 'W/"1"', '"7", "1"'):
        response = anonymous.get(f"/api/orders/{order_id}/", headers={"If-None-Match": value})
        assert response.status_code == 304, value
    response = anonymous.get(f"/api/orders/{order_id}/", headers={"If-None-Match": '"2"'})
    assert response.status_code == 200


def test_a_bad_idempotency_key_names_the_header(client: APIClient) -> None:
    response = post(
        client, "/api/products/", {"name": "a", "price": "1.00"}, **{"Idempotency-Key": "k\u00e9"}
    )

    assert assert_problem(response, 400, "invalid_header")["header"] == "Idempotency-Key"


# -- methods ----------------------------------------------------------------------------


def test_options_on_a_command_route_describes_its_body(client: APIClient, order_id: str) -> None:
    response = client.options(f"/api/orders/{order_id}/items/")

    assert response.status_code == 200
    assert response["Allow"] == "POST, OPTIONS"
    fields = response.json()["actions"]["POST"]
    assert set(fields) == {"product_id", "quantity"}  # not order_id: the URL gives it
    assert fields["quantity"]["min_value"] == 1


def test_options_answers_everyone_and_lists_only_what_they_may_run(
    anonymous: APIClient, client: APIClient, staff: Any, order_id: str
) -> None:
    path = f"/api/orders/{order_id}/ship/"  # staff only
    for caller in (anonymous, client):
        response = caller.options(path)
        assert response.status_code == 200
        assert "actions" not in response.json()
    admin = APIClient()
    admin.force_authenticate(staff)
    assert admin.options(path).json()["actions"] == {"POST": {}}


@pytest.mark.parametrize(
    "path", ["/api/orders/", "/api/commands/place-order/", "/api/queries/get-order/"]
)
def test_options_on_list_and_exposed_routes(client: APIClient, path: str) -> None:
    response = client.options(path)

    assert response.status_code == 200
    assert "OPTIONS" in response["Allow"]
    if "queries" not in path:
        assert set(response.json()["actions"]["POST"]) == {"customer_id", "items"}


def test_head_answers_like_get_without_a_body(anonymous: APIClient, order_id: str) -> None:
    get = anonymous.get(f"/api/orders/{order_id}/")
    head = anonymous.head(f"/api/orders/{order_id}/")

    assert head.status_code == 200
    assert head.content == b""
    assert head["ETag"] == get["ETag"]
    assert head["Content-Type"] == get["Content-Type"]


@pytest.mark.parametrize("method", ["put", "patch", "delete", "trace", "propfind"])
def test_an_unsupported_method_answers_405_with_allow(
    client: APIClient, order_id: str, method: str
) -> None:
    before = counts()
    response = client.generic(method.upper(), f"/api/orders/{order_id}/cancel/", b"{}")

    assert_problem(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST, OPTIONS"
    assert counts() == before


def test_the_swagger_page_answers_options_without_a_500(anonymous: APIClient) -> None:
    response = anonymous.options("/api/docs/")

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert anonymous.get("/api/docs/").status_code == 200


# -- the settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"MAX_JSON_DEPTH": 0}, "from 1 to 100"),
        ({"MAX_JSON_DEPTH": 101}, "from 1 to 100"),
        ({"MAX_JSON_DEPTH": None}, "from 1 to 100"),
        ({"MAX_JSON_DEPTH": "32"}, "from 1 to 100"),
        ({"MAX_BODY_SIZE": 0}, "positive int of bytes or None"),
        ({"MAX_BODY_SIZE": "1MB"}, "positive int of bytes or None"),
        ({"MAX_BODY_SIZE": True}, "positive int of bytes or None"),
    ],
    ids=repr,
)
def test_e003_reports_bad_limits(settings: dict[str, Any], fragment: str) -> None:
    with override_settings(DJANGO_CQRS=settings):
        [message] = [m for m in check_settings() if m.id == "django_cqrs.E003"]

    assert fragment in message.msg


def test_good_limits_pass_the_checks() -> None:
    with override_settings(DJANGO_CQRS={"MAX_JSON_DEPTH": 100, "MAX_BODY_SIZE": None}):
        assert check_settings() == []
