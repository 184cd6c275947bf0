"""The demo's API can be found and browsed: the landing page, the API root, list routes.

A new client starts at ``/`` or ``/api/``, follows the links, lists the customers and
products it may order, and gets 400 for a filter value that cannot match and 404 for a
page past the last one, as problem details.
"""

from __future__ import annotations

import io
import re
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from demo_project.orders.commands import AddProduct, RegisterCustomer
from django_cqrs import command_bus

PROBLEM = "application/problem+json"

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> APIClient:
    api = APIClient()
    api.force_authenticate(User.objects.create_user("alice", password="secret"))
    return api


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def register(name: str, credit_limit: str = "100.00") -> UUID:
    command = RegisterCustomer(name=name, credit_limit=Decimal(credit_limit))
    return command_bus.dispatch(command).value


def add_product(name: str, price: str) -> UUID:
    return command_bus.dispatch(AddProduct(name=name, price=Decimal(price))).value


# -- the landing page and the API root -----------------------------------------------


def test_the_landing_page_links_to_the_api_its_docs_the_admin_and_health() -> None:
    response = Client().get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    links = set(re.findall(r'href="([^"]+)"', response.content.decode()))
    assert {"/api/", "/api/docs/", "/api/schema/", "/admin/", "/cqrs/health/"} <= links
    for link in links:
        assert Client().get(link).status_code in (200, 302), link  # the admin: to its login


def test_the_landing_page_answers_head_and_refuses_post() -> None:
    assert Client().head("/").status_code == 200
    assert Client().post("/").status_code == 405


def test_the_api_root_lists_every_resource_command_and_query(anonymous: APIClient) -> None:
    response = anonymous.get("/api/")

    assert response.status_code == 200
    root = response.json()
    assert root["resources"] == {
        "customers": "http://testserver/api/customers/",
        "products": "http://testserver/api/products/",
        "orders": "http://testserver/api/orders/",
        "payment-gateway": "http://testserver/api/payment-gateway/",  # POST only
    }
    assert set(root["commands"]) == {"register-customer", "add-product", "place-order"}
    assert set(root["queries"]) == {"get-order", "get-customer-summary"}
    assert root["links"] == {
        "docs": "http://testserver/api/docs/",
        "schema": "http://testserver/api/schema/",
    }


def test_every_url_the_api_root_lists_is_a_route(anonymous: APIClient) -> None:
    root = anonymous.get("/api/").json()

    for section in ("resources", "queries", "links"):
        for name, url in root[section].items():
            response = anonymous.get(url)
            if name == "payment-gateway":  # a command only: it takes a POST
                assert (response.status_code, response["Allow"]) == (405, "POST, OPTIONS")
                continue
            # A query without its required parameters is a 400, not an unknown route.
            assert response.status_code in (200, 400), (section, name, response.status_code)
    for name, url in root["commands"].items():
        assert anonymous.get(url).status_code == 405, name  # POST only


def test_the_api_root_answers_head(anonymous: APIClient) -> None:
    response = anonymous.head("/api/")

    assert response.status_code == 200
    assert response.content == b""


def test_the_api_root_refuses_post_with_a_problem(client: APIClient) -> None:
    problem(client.post("/api/", {}, format="json"), 405)


# -- list routes for customers and products ------------------------------------------


def test_customers_are_listed_by_name_as_soon_as_they_are_registered(
    client: APIClient,
) -> None:
    for name in ("Grace Hopper", "Ada Lovelace", "Alan Turing"):
        response = client.post(
            "/api/customers/", {"name": name, "credit_limit": "250.00"}, format="json"
        )
        assert response.status_code == 201

    page = client.get("/api/customers/").json()

    assert page["count"] == 3
    assert [c["name"] for c in page["results"]] == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    assert set(page["results"][0]) == {
        "id",
        "name",
        "credit_limit",
        "currency",
        "registered_at",
        "version",
    }
    assert page["results"][0]["credit_limit"] == "250.00"  # a plain decimal, not display text


def test_customers_filter_by_part_of_the_name_and_page(client: APIClient) -> None:
    for name in ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Adele Goldberg"):
        register(name)

    ad = client.get("/api/customers/?name=ad").json()
    first = client.get("/api/customers/?page_size=3").json()
    second = client.get(first["next"]).json()

    assert [c["name"] for c in ad["results"]] == ["Ada Lovelace", "Adele Goldberg"]
    assert ad["count"] == 2
    assert (first["count"], len(first["results"]), first["previous"]) == (4, 3, None)
    assert [c["name"] for c in second["results"]] == ["Grace Hopper"]
    assert second["next"] is None


def test_a_customer_reads_back_with_an_etag_and_create_says_where(client: APIClient) -> None:
    created = client.post("/api/customers/", {"name": "Ada", "credit_limit": "9.99"}, format="json")
    customer_id = created.json()["customer_id"]

    response = client.get(f"/api/customers/{customer_id}/")

    assert created["Location"] == f"http://testserver/api/customers/{customer_id}/"
    assert response.status_code == 200
    assert response.json()["name"] == "Ada"
    assert response["ETag"] == '"1"'


def test_products_filter_by_name_and_price_and_page(client: APIClient) -> None:
    for name, price in (("Keyboard", "49.90"), ("Mouse", "19.50"), ("Monitor", "219.00")):
        add_product(name, price)

    everything = client.get("/api/products/").json()
    cheap = client.get("/api/products/?max_price=49.90").json()
    mo = client.get("/api/products/?name=MO&max_price=100").json()

    assert [(p["name"], p["price"]) for p in everything["results"]] == [
        ("Keyboard", "49.90"),
        ("Monitor", "219.00"),
        ("Mouse", "19.50"),
    ]
    assert [p["name"] for p in cheap["results"]] == ["Keyboard", "Mouse"]
    assert [p["name"] for p in mo["results"]] == ["Mouse"]
    assert mo["count"] == 1


def test_a_client_can_place_an_order_from_what_the_lists_show(client: APIClient) -> None:
    register("Ada", "100.00")
    add_product("Pen", "2.50")

    customer = client.get("/api/customers/").json()["results"][0]
    product = client.get("/api/products/").json()["results"][0]
    body = {"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 2}]}
    response = client.post("/api/orders/", body, format="json")

    assert response.status_code == 201, response.content


def test_unknown_customers_and_products_answer_404(client: APIClient) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"

    customer = problem(client.get(f"/api/customers/{unknown}/"), 404)
    product = problem(client.get(f"/api/products/{unknown}/"), 404)
    malformed = problem(client.get("/api/products/not-a-uuid/"), 404)

    assert customer["detail"] == f"customer {unknown} does not exist"
    assert product["detail"] == f"product {unknown} does not exist"
    assert malformed["detail"] == "'not-a-uuid' is not a valid id"


# -- strict filters and pages --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/orders/?status=bogus", "status"),
        ("/api/orders/?status=PLACED", "status"),
        ("/api/products/?max_price=cheap", "max_price"),
        ("/api/products/?max_price=-1", "max_price"),
        ("/api/customers/?page=0", "page"),
        ("/api/customers/?page_size=101", "page_size"),
        ("/api/customers/?name=" + "x" * 201, "name"),
    ],
)
def test_a_filter_value_that_cannot_match_answers_400(
    anonymous: APIClient, url: str, field: str
) -> None:
    body = problem(anonymous.get(url), 400)

    assert field in body["errors"]


def test_every_order_status_is_a_valid_filter(anonymous: APIClient) -> None:
    for status in ("placed", "confirmed", "cancelled", "shipped"):
        assert anonymous.get(f"/api/orders/?status={status}").status_code == 200


@pytest.mark.parametrize("resource", ["orders", "customers", "products"])
def test_a_page_past_the_end_answers_404(anonymous: APIClient, resource: str) -> None:
    register("Ada")
    add_product("Pen", "2.50")

    body = problem(anonymous.get(f"/api/{resource}/?page=999"), 404)

    assert "Page 999 is past the end" in body["detail"]


def test_the_last_page_is_there_and_the_one_after_it_is_not(anonymous: APIClient) -> None:
    for n in range(4):
        register(f"Customer {n}")

    last = anonymous.get("/api/customers/?page=2&page_size=2")
    after = anonymous.get("/api/customers/?page=3&page_size=2")

    assert last.status_code == 200
    assert len(last.json()["results"]) == 2
    problem(after, 404)


def test_the_first_page_of_nothing_is_an_empty_page(anonymous: APIClient) -> None:
    for resource in ("orders", "customers", "products"):
        page = anonymous.get(f"/api/{resource}/?page=1").json()
        assert (page["count"], page["results"]) == (0, []), resource


# -- a database seeded before these read models existed --------------------------------


def test_seed_demo_fills_read_models_that_are_new_to_an_already_seeded_database() -> None:
    CustomerView = apps.get_model("orders", "CustomerView")
    ProductView = apps.get_model("orders", "ProductView")
    call_command("seed_demo", "--orders", "3", stdout=io.StringIO())
    customers, products = CustomerView.objects.count(), ProductView.objects.count()
    assert (customers, products) == (5, 20)
    # As in a database seeded before the migration that added the tables.
    CustomerView.objects.all().delete()
    ProductView.objects.all().delete()
    out = io.StringIO()

    call_command("seed_demo", stdout=out)

    assert (CustomerView.objects.count(), ProductView.objects.count()) == (customers, products)
    assert "Filled orders.CustomerViewProjection from the log" in out.getvalue()
    assert "Filled orders.ProductViewProjection from the log" in out.getvalue()


# -- the schema ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    generated: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return generated


def test_the_schema_documents_the_root_and_the_list_routes(schema: dict[str, Any]) -> None:
    root = schema["paths"]["/api/"]["get"]
    ref = root["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    listed = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(listed["properties"]) == {"resources", "commands", "queries", "links"}
    for path, filters in (
        ("/api/customers/", {"name", "page", "page_size"}),
        ("/api/products/", {"name", "max_price", "page", "page_size"}),
    ):
        operation = schema["paths"][path]["get"]
        assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == filters
        assert "404" in operation["responses"]
    assert "get" in schema["paths"]["/api/customers/{id}/"]
    assert "get" in schema["paths"]["/api/products/{id}/"]


def test_the_schema_lists_the_order_statuses_a_filter_accepts(schema: dict[str, Any]) -> None:
    [status] = [
        p for p in schema["paths"]["/api/orders/"]["get"]["parameters"] if p["name"] == "status"
    ]

    assert set(status["schema"]["enum"]) - {None} == {"placed", "confirmed", "cancelled", "shipped"}
