"""The demo HTTP API: every route's success path and every error as problem details."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from demo_project.orders.models import (
    Customer,
    CustomerSummary,
    Order,
    OrderLine,
    OrderView,
    Product,
)
from django_cqrs.models import StoredEvent

PROBLEM = "application/problem+json"

pytestmark = pytest.mark.django_db


@pytest.fixture
def user() -> User:
    return User.objects.create_user("alice", password="secret")


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("bob", password="secret", is_staff=True)


@pytest.fixture
def client(user: User) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


def post(client: APIClient, url: str, data: Any = None, **headers: str) -> Any:
    return client.post(url, data, format="json", headers=headers)


@pytest.fixture
def customer_id(client: APIClient) -> str:
    response = post(client, "/api/customers/", {"name": "Ada", "credit_limit": "100.00"})
    assert response.status_code == 201, response.content
    return str(response.json()["customer_id"])


@pytest.fixture
def product_id(client: APIClient) -> str:
    response = post(client, "/api/products/", {"name": "Widget", "price": "12.50"})
    assert response.status_code == 201, response.content
    return str(response.json()["product_id"])


@pytest.fixture
def order_id(client: APIClient, customer_id: str, product_id: str) -> str:
    body = {"customer_id": customer_id, "items": [{"product_id": product_id, "quantity": 2}]}
    response = post(client, "/api/orders/", body)
    assert response.status_code == 201, response.content
    return str(response.json()["order_id"])


def counts() -> dict[str, int]:
    models = (StoredEvent, Customer, Product, Order, OrderLine, OrderView, CustomerSummary)
    return {m.__name__: m.objects.count() for m in models}


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = json.loads(response.content)
    assert body["status"] == status
    assert {"type", "title", "detail", "instance"} <= set(body)
    if code is not None:
        assert body["code"] == code
    return body


# -- success paths --------------------------------------------------------------------


def test_register_customer_answers_201_with_its_id_and_position(client: APIClient) -> None:
    response = post(client, "/api/customers/", {"name": "Ada", "credit_limit": "250.00"})

    assert response.status_code == 201
    customer = Customer.objects.get(pk=response.json()["customer_id"])
    assert customer.credit_limit == 250
    assert int(response["CQRS-Position"]) == StoredEvent.objects.get().position


def test_add_product_answers_201_with_its_id(client: APIClient) -> None:
    response = post(client, "/api/products/", {"name": "Widget", "price": "9.99"})

    assert response.status_code == 201
    assert Product.objects.get(pk=response.json()["product_id"]).name == "Widget"


def test_place_order_answers_201_and_the_order_reads_back_with_an_etag(
    client: APIClient, order_id: str
) -> None:
    response = client.get(f"/api/orders/{order_id}/")

    assert response.status_code == 200
    order = response.json()
    placed_at = order.pop("placed_at")
    assert order == {
        "id": order_id,
        "customer_id": str(Order.objects.get().customer_id),
        "customer_name": "Ada",
        "item_count": 2,
        "total": "25.00",  # a plain decimal, in the currency named next to it
        "currency": "USD",
        "status": "placed",
        "version": 1,
    }
    assert datetime.fromisoformat(placed_at) == OrderView.objects.get().placed_at
    assert response["ETag"] == '"1"'


def test_create_answers_with_the_location_of_the_new_order(
    client: APIClient, customer_id: str, product_id: str
) -> None:
    body = {"customer_id": customer_id, "items": [{"product_id": product_id, "quantity": 1}]}
    response = post(client, "/api/orders/", body)

    assert response["Location"].endswith(f"/api/orders/{response.json()['order_id']}/")


def test_a_detail_command_answers_its_etag_without_reading_the_event_log(
    client: APIClient, order_id: str, product_id: str
) -> None:
    with CaptureQueriesContext(connection) as queries:
        added = post(
            client, f"/api/orders/{order_id}/items/", {"product_id": product_id, "quantity": 1}
        )

    assert added["ETag"] == f'"{Order.objects.get(pk=order_id).version}"'
    reads = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert not [sql for sql in reads if StoredEvent._meta.db_table in sql], reads


def test_add_item_cancel_and_ship_change_the_order(
    client: APIClient, staff: User, order_id: str, product_id: str
) -> None:
    added = post(
        client, f"/api/orders/{order_id}/items/", {"product_id": product_id, "quantity": 3}
    )
    assert added.status_code == 204
    assert added["ETag"] == '"2"'
    view = client.get(f"/api/orders/{order_id}/").json()
    assert (view["item_count"], view["total"], view["version"]) == (5, "62.50", 2)

    cancelled = post(client, f"/api/orders/{order_id}/cancel/")
    assert cancelled.status_code == 204
    assert client.get(f"/api/orders/{order_id}/").json()["status"] == "cancelled"
    assert int(cancelled["CQRS-Position"]) == StoredEvent.objects.last().position  # type: ignore[union-attr]


def test_ship_answers_204_for_staff(client: APIClient, staff: User, order_id: str) -> None:
    client.force_authenticate(staff)
    response = post(client, f"/api/orders/{order_id}/ship/")

    assert response.status_code == 204
    assert Order.objects.get(pk=order_id).status == "shipped"


def test_list_orders_is_a_drf_page_filtered_by_status_and_customer(
    client: APIClient, customer_id: str, product_id: str
) -> None:
    ids = []
    for _ in range(3):
        body = {"customer_id": customer_id, "items": [{"product_id": product_id, "quantity": 1}]}
        ids.append(post(client, "/api/orders/", body).json()["order_id"])
    post(client, f"/api/orders/{ids[0]}/cancel/")

    page = client.get(f"/api/orders/?customer_id={customer_id}&status=placed&page_size=1").json()
    assert page["count"] == 2
    assert page["previous"] is None
    assert "page=2" in page["next"]
    assert len(page["results"]) == 1
    assert page["results"][0] == client.get(f"/api/orders/{ids[2]}/").json()  # one shape
    second = client.get(page["next"]).json()
    assert second["next"] is None
    assert second["previous"] is not None
    assert {page["results"][0]["id"], second["results"][0]["id"]} == set(ids[1:])
    everything = client.get("/api/orders/?status=&customer_id=").json()
    assert everything["count"] == 3


@pytest.mark.django_db(transaction=True)
def test_customer_summary(client: APIClient, customer_id: str, order_id: str) -> None:
    # The summary is an async projection: it is refreshed after the command commits.
    response = client.get(f"/api/customers/{customer_id}/summary/")

    assert response.status_code == 200
    assert response.json() == {
        "customer_id": customer_id,
        "customer_name": "Ada",
        "order_count": 1,
        "lifetime_value": "25.00",
        "currency": "USD",
    }


def test_reads_need_no_login(anonymous: APIClient, order_id: str) -> None:
    assert anonymous.get(f"/api/orders/{order_id}/").status_code == 200
    assert anonymous.get("/api/orders/").status_code == 200


def test_http_basic_authentication_works(customer_id: str) -> None:
    User.objects.create_user("carol", password="pw")
    api = APIClient()
    api.credentials(
        HTTP_AUTHORIZATION="Basic " + __import__("base64").b64encode(b"carol:pw").decode()
    )
    response = post(api, "/api/products/", {"name": "Basic", "price": "1.00"})
    assert response.status_code == 201


def test_session_authentication_works(user: User) -> None:
    api = APIClient()
    assert api.login(username="alice", password="secret")
    assert post(api, "/api/products/", {"name": "Session", "price": "1.00"}).status_code == 201


def test_events_say_who_caused_them_and_in_which_request(client: APIClient) -> None:
    response = post(
        client, "/api/products/", {"name": "Audited", "price": "1.00"}, **{"X-Request-ID": "req-42"}
    )

    metadata = StoredEvent.objects.get().metadata
    assert metadata["user"] == "alice"
    assert metadata["request_id"] == "req-42"
    assert response["X-Request-ID"] == "req-42"
    assert metadata["command_type"].endswith("AddProduct")


def test_a_request_id_is_made_up_when_the_client_sends_none_or_a_bad_one(client: APIClient) -> None:
    response = post(
        client, "/api/products/", {"name": "x", "price": "1.00"}, **{"X-Request-ID": "a b"}
    )

    assert response["X-Request-ID"] != "a b"
    assert StoredEvent.objects.get().metadata["request_id"] == response["X-Request-ID"]


# -- opt-in generic endpoints -----------------------------------------------------------


def test_exposed_commands_and_queries(client: APIClient, customer_id: str, product_id: str) -> None:
    body = {"customer_id": customer_id, "items": [{"product_id": product_id, "quantity": 1}]}
    placed = post(client, "/api/commands/place-order/", body)
    assert placed.status_code == 200
    order_id = placed.json()["value"]
    assert placed["CQRS-Position"]

    view = client.get(f"/api/queries/get-order/?order_id={order_id}")
    assert view.status_code == 200
    assert view.json()["customer_id"] == customer_id
    assert view.json()["total"] == "12.50"


def test_only_exposed_messages_are_served(client: APIClient, order_id: str) -> None:
    assert post(client, "/api/commands/cancel-order/", {"order_id": order_id}).status_code == 404
    assert client.get("/api/queries/list-orders/").status_code == 404


# -- errors -----------------------------------------------------------------------------


BAD_BODIES: list[tuple[str, Callable[[str, str], Any], str]] = [
    ("unknown field", lambda c, p: {"customer_id": c, "items": [], "coupon": "FREE"}, "coupon"),
    (
        "unknown nested field",
        lambda c, p: {"customer_id": c, "items": [{"product_id": p, "quantity": 1, "x": 1}]},
        "items",
    ),
    ("missing field", lambda c, p: {"customer_id": c}, "items"),
    ("wrong type", lambda c, p: {"customer_id": c, "items": "many"}, "items"),
    ("non-UUID reference", lambda c, p: {"customer_id": "nope", "items": []}, "customer_id"),
    (
        "negative quantity",
        lambda c, p: {"customer_id": c, "items": [{"product_id": p, "quantity": -2}]},
        "items",
    ),
    (
        "zero quantity",
        lambda c, p: {"customer_id": c, "items": [{"product_id": p, "quantity": 0}]},
        "items",
    ),
    (
        "huge quantity",
        lambda c, p: {"customer_id": c, "items": [{"product_id": p, "quantity": 10**30}]},
        "items",
    ),
    (
        "string quantity",
        lambda c, p: {"customer_id": c, "items": [{"product_id": p, "quantity": "two"}]},
        "items",
    ),
    ("a list, not an object", lambda c, p: [c, p], "non_field_errors"),
]


@pytest.mark.parametrize(("case", "make_body", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_invalid_bodies_answer_400_with_field_errors_and_write_nothing(
    client: APIClient,
    customer_id: str,
    product_id: str,
    case: str,
    make_body: Callable[[str, str], Any],
    field: str,
) -> None:
    before = counts()
    response = post(client, "/api/orders/", make_body(customer_id, product_id))

    body = assert_problem(response, 400, "invalid")
    assert field in body["errors"]
    assert counts() == before


@pytest.mark.parametrize(
    "data",
    [
        {"name": "A", "credit_limit": "NaN"},
        {"name": "A", "credit_limit": "1e30"},
        {"name": "A", "credit_limit": "-5"},
        {"name": "A", "credit_limit": "1.001"},
        {"name": "A" * 201, "credit_limit": "1"},
        {"name": "A\x00", "credit_limit": "1"},
        {"name": "", "credit_limit": "1"},
        {"name": None, "credit_limit": "1"},
    ],
)
def test_bad_money_and_names_answer_400(client: APIClient, data: dict[str, Any]) -> None:
    before = counts()
    assert_problem(post(client, "/api/customers/", data), 400)
    assert counts() == before


def test_malformed_json_answers_400(client: APIClient) -> None:
    before = counts()
    response = client.post("/api/products/", '{"name": "x",', content_type="application/json")

    assert_problem(response, 400, "parse_error")
    assert counts() == before


def test_wrong_content_type_answers_415(client: APIClient) -> None:
    before = counts()
    response = client.post(
        "/api/products/", "name=x&price=1", content_type="application/x-www-form-urlencoded"
    )

    assert_problem(response, 415)
    assert counts() == before


@override_settings(DJANGO_CQRS={"MAX_BODY_SIZE": 1000})
def test_a_body_over_the_limit_answers_413(client: APIClient) -> None:
    before = counts()
    response = post(client, "/api/products/", {"name": "x" * 2000, "price": "1.00"})

    assert_problem(response, 413, "payload_too_large")
    assert counts() == before


def test_the_default_body_limit_is_one_mebibyte(client: APIClient) -> None:
    response = post(client, "/api/products/", {"name": "x" * (1 << 20), "price": "1.00"})

    assert_problem(response, 413)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/orders/not-a-uuid/"),
        ("post", "/api/orders/not-a-uuid/cancel/"),
        ("post", "/api/orders/12345/ship/"),
        ("get", "/api/customers/nope/summary/"),
    ],
)
def test_non_uuid_ids_answer_404(staff: User, method: str, path: str) -> None:
    api = APIClient()
    api.force_authenticate(staff)
    before = counts()
    assert_problem(getattr(api, method)(path), 404, "not_found")
    assert counts() == before


def test_unknown_aggregates_answer_404(
    client: APIClient, customer_id: str, product_id: str
) -> None:
    before = counts()
    missing = str(uuid.uuid4())
    assert_problem(client.get(f"/api/orders/{missing}/"), 404)
    assert_problem(post(client, f"/api/orders/{missing}/cancel/"), 404)
    assert_problem(client.get(f"/api/customers/{missing}/summary/"), 404)
    body = {"customer_id": missing, "items": [{"product_id": product_id, "quantity": 1}]}
    assert_problem(post(client, "/api/orders/", body), 404)
    body = {"customer_id": customer_id, "items": [{"product_id": missing, "quantity": 1}]}
    assert_problem(post(client, "/api/orders/", body), 404)
    assert counts() == before


def test_the_url_id_cannot_be_overridden_by_the_body(client: APIClient, order_id: str) -> None:
    other = str(uuid.uuid4())
    response = post(client, f"/api/orders/{order_id}/cancel/", {"order_id": other})

    assert "order_id" in assert_problem(response, 400)["errors"]


def test_invariant_violations_answer_422_and_write_nothing(
    client: APIClient, customer_id: str, product_id: str, order_id: str
) -> None:
    before = counts()
    body = {"customer_id": customer_id, "items": []}
    problem = assert_problem(post(client, "/api/orders/", body), 422, "invariant_violation")
    assert problem["detail"] == "an order has at least one item"
    assert problem["field"] == "items"

    over_limit = {"customer_id": customer_id, "items": [{"product_id": product_id, "quantity": 9}]}
    assert "credit limit" in assert_problem(post(client, "/api/orders/", over_limit), 422)["detail"]
    assert counts() == before

    assert post(client, f"/api/orders/{order_id}/cancel/").status_code == 204
    before = counts()
    again = assert_problem(post(client, f"/api/orders/{order_id}/cancel/"), 422)
    assert again["detail"] == "the order is already cancelled"
    assert counts() == before


def test_bad_query_parameters_answer_400(client: APIClient) -> None:
    assert "customer_id" in assert_problem(client.get("/api/orders/?customer_id=x"), 400)["errors"]
    assert "page" in assert_problem(client.get("/api/orders/?page=0"), 400)["errors"]
    assert "page_size" in assert_problem(client.get("/api/orders/?page_size=1000"), 400)["errors"]


# -- permissions ------------------------------------------------------------------------


def test_commands_need_a_login_401(anonymous: APIClient) -> None:
    before = counts()
    response = post(anonymous, "/api/products/", {"name": "x", "price": "1.00"})

    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Basic")
    assert counts() == before


def test_wrong_password_answers_401(user: User) -> None:
    api = APIClient()
    api.credentials(
        HTTP_AUTHORIZATION="Basic " + __import__("base64").b64encode(b"alice:no").decode()
    )
    assert_problem(post(api, "/api/products/", {"name": "x", "price": "1.00"}), 401)


def test_shipping_needs_staff_403(client: APIClient, order_id: str) -> None:
    before = counts()
    assert_problem(post(client, f"/api/orders/{order_id}/ship/"), 403, "permission_denied")
    assert counts() == before
    assert Order.objects.get(pk=order_id).status == "placed"


def test_per_route_permissions_also_guard_the_opt_in_endpoints(anonymous: APIClient) -> None:
    assert_problem(post(anonymous, "/api/commands/add-product/", {"name": "x", "price": "1"}), 401)


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_url_is_a_problem_detail_not_an_html_page(method: str) -> None:
    from rest_framework.test import APIClient

    response = getattr(APIClient(), method)("/api/no-such-route/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/problem+json")
    assert "/api/no-such-route/" in response.json()["detail"]
