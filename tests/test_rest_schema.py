"""OpenAPI: the schema documents every route, the docs work offline, and schemathesis agrees."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

ROUTES = {
    ("/api/customers/", "post"),
    ("/api/customers/{id}/summary/", "get"),
    ("/api/products/", "post"),
    ("/api/orders/", "post"),
    ("/api/orders/", "get"),
    ("/api/orders/{id}/", "get"),
    ("/api/orders/{id}/items/", "post"),
    ("/api/orders/{id}/cancel/", "post"),
    ("/api/orders/{id}/ship/", "post"),
    ("/api/commands/register-customer/", "post"),
    ("/api/commands/add-product/", "post"),
    ("/api/commands/place-order/", "post"),
    ("/api/queries/get-order/", "get"),
    ("/api/queries/get-customer-summary/", "get"),
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    generated: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return generated


def test_the_schema_is_served(client: APIClient) -> None:
    response = client.get("/api/schema/")

    assert response.status_code == 200
    paths = yaml.safe_load(response.content)["paths"]
    assert {(path, method) for path, ops in paths.items() for method in ops} >= ROUTES


def test_generating_the_schema_warns_about_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from drf_spectacular.drainage import GENERATOR_STATS

    GENERATOR_STATS.reset()
    SchemaGenerator().get_schema(request=None, public=True)

    assert not GENERATOR_STATS, capsys.readouterr().err


def test_command_bodies_are_derived_from_the_dataclasses(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    place = components["PlaceOrderRequest"]
    assert set(place["properties"]) == {"customer_id", "items"}
    assert place["properties"]["customer_id"]["format"] == "uuid"
    item = components["OrderItemRequest"]
    assert item["properties"]["quantity"]["minimum"] == 1
    # The URL carries the order id: the body of /items/ does not.
    assert set(components["AddItemBodyRequest"]["properties"]) == {"product_id", "quantity"}


def test_commands_document_answers_errors_and_headers(schema: dict[str, Any]) -> None:
    create = schema["paths"]["/api/orders/"]["post"]
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PlaceOrderResult"
    }
    assert "CQRS-Position" in create["responses"]["201"]["headers"]
    for code in ("400", "401", "403", "404", "409", "413", "415", "422", "503"):
        content = create["responses"][code]["content"]
        assert content == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    headers = {p["name"] for p in create["parameters"] if p["in"] == "header"}
    assert "Idempotency-Key" in headers
    # 503: a database lock not granted within LOCK_TIMEOUT.
    assert "Retry-After" in create["responses"]["503"]["headers"]

    cancel = schema["paths"]["/api/orders/{id}/cancel/"]["post"]
    assert "412" in cancel["responses"]
    assert "204" in cancel["responses"]
    assert {p["name"] for p in cancel["parameters"]} >= {"If-Match", "Idempotency-Key", "id"}
    path_id = next(p for p in cancel["parameters"] if p["name"] == "id")
    assert path_id["schema"]["format"] == "uuid"


def test_queries_document_parameters_pages_and_consistency(schema: dict[str, Any]) -> None:
    listing = schema["paths"]["/api/orders/"]["get"]
    assert listing["operationId"] == "orders_list"
    names = {p["name"] for p in listing["parameters"]}
    assert names >= {"status", "customer_id", "page", "page_size", "CQRS-Min-Position"}
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert page.endswith("PaginatedOrderViewList")
    assert "Retry-After" in listing["responses"]["503"]["headers"]

    one = schema["paths"]["/api/orders/{id}/"]["get"]
    assert "ETag" in one["responses"]["200"]["headers"]


def test_the_docs_page_loads_its_assets_locally(client: APIClient) -> None:
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower()
    assert "/static/drf_spectacular_sidecar/" in html


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_errors_and_no_schema_mismatch(
    settings: Any,
) -> None:
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    schemathesis = pytest.importorskip("schemathesis")
    from django.core.wsgi import get_wsgi_application
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings

    User.objects.create_user("fuzzer", password="pw", is_staff=True)
    auth = "Basic " + base64.b64encode(b"fuzzer:pw").decode()
    app = get_wsgi_application()
    api = schemathesis.openapi.from_wsgi("/api/schema/", app)
    settings.DJANGO_CQRS = {"MIN_POSITION_TIMEOUT": 0.01}

    def no_server_error(ctx: Any, response: Any, case: Any) -> bool:
        # The one documented 5xx: a CQRS-Min-Position the read model has not reached.
        if response.status_code == 503 and "CQRS-Min-Position" in (case.headers or {}):
            assert response.json()["code"] == "position_not_reached"
            return True
        assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
        return True

    checks = [
        no_server_error,
        schemathesis.checks.status_code_conformance,
        schemathesis.checks.content_type_conformance,
        schemathesis.checks.response_schema_conformance,
    ]
    operations = [op.ok() for op in api.get_all_operations()]
    assert len(operations) >= len(ROUTES)
    sent = 0
    for operation in operations:

        @hypothesis_settings(
            max_examples=40,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            nonlocal sent
            sent += 1
            case.call_and_validate(headers={"Authorization": auth}, checks=checks)

        run()
    assert sent >= 500
