"""One representation per resource: money as data, the same fields from every route, an ETag.

A client reads an order from ``/api/orders/{id}/``, from a page of ``/api/orders/`` and
from ``/api/queries/get-order/``; it gets the same object each time, with amounts as
plain decimal strings next to their currency, and times in ISO 8601. Every read of one
resource carries an ``ETag``: the version where the resource has one, a digest of the
representation where it has not, and ``If-None-Match`` answers 304 for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework import serializers
from rest_framework.test import APIClient

from demo_project.orders.models import CustomerSummary, OrderView
from django_cqrs import Query
from django_cqrs.rest_framework.routers import CQRSRouter
from django_cqrs.rest_framework.viewsets import CQRSViewSet, query_route
from django_cqrs.tasks import catch_up_now

pytestmark = pytest.mark.django_db

SUMMARY = "demo_project.orders.projections.CustomerSummaryProjection"


@pytest.fixture
def client() -> APIClient:
    api = APIClient()
    api.force_authenticate(User.objects.create_user("alice", password="x", is_staff=True))
    return api


@pytest.fixture
def shop(client: APIClient) -> dict[str, str]:
    def post(url: str, body: dict[str, Any]) -> Any:
        response = client.post(url, body, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    customer = post("/api/customers/", {"name": "Ada", "credit_limit": "5000.00"})["customer_id"]
    product = post("/api/products/", {"name": "Lamp", "price": "1203.47"})["product_id"]
    body = {"customer_id": customer, "items": [{"product_id": product, "quantity": 1}]}
    order = post("/api/orders/", body)["order_id"]
    return {"customer": customer, "product": product, "order": order}


def test_amounts_are_plain_decimal_strings_with_their_currency(
    client: APIClient, shop: dict[str, str]
) -> None:
    order = client.get(f"/api/orders/{shop['order']}/").json()
    product = client.get(f"/api/products/{shop['product']}/").json()
    customer = client.get(f"/api/customers/{shop['customer']}/").json()

    assert (order["total"], order["currency"]) == ("1203.47", "USD")  # not "$1,203.47"
    assert (product["price"], product["currency"]) == ("1203.47", "USD")
    assert (customer["credit_limit"], customer["currency"]) == ("5000.00", "USD")
    assert Decimal(order["total"]) == OrderView.objects.get().total
    assert datetime.fromisoformat(order["placed_at"]).tzinfo is not None


def test_an_order_has_one_shape_from_its_route_its_page_and_the_query_route(
    client: APIClient, shop: dict[str, str]
) -> None:
    resource = client.get(f"/api/orders/{shop['order']}/")
    query = client.get(f"/api/queries/get-order/?order_id={shop['order']}")
    listed = client.get("/api/orders/").json()["results"][0]

    assert resource.json() == query.json() == listed
    assert {"customer_id", "placed_at"} <= set(resource.json())
    assert resource["ETag"] == query["ETag"] == '"1"'


@pytest.mark.django_db(transaction=True)
def test_the_summary_has_one_shape_and_an_etag_without_a_version(
    client: APIClient, shop: dict[str, str]
) -> None:
    catch_up_now(SUMMARY)
    url = f"/api/customers/{shop['customer']}/summary/"
    resource = client.get(url)
    query = client.get(f"/api/queries/get-customer-summary/?customer_id={shop['customer']}")

    assert resource.json() == query.json()
    assert resource.json()["lifetime_value"] == "1203.47"
    tag = resource["ETag"]
    assert tag.startswith('W/"')  # a digest: the summary has no version to send
    assert tag == query["ETag"]

    unchanged = client.get(url, headers={"If-None-Match": tag})
    assert (unchanged.status_code, unchanged["ETag"], unchanged.content) == (304, tag, b"")

    client.post(f"/api/orders/{shop['order']}/cancel/", format="json")
    catch_up_now(SUMMARY)
    changed = client.get(url, headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.json()["lifetime_value"] == "0.00"
    assert changed["ETag"] != tag


def test_a_digest_etag_never_satisfies_if_match(client: APIClient, shop: dict[str, str]) -> None:
    """A weak tag names a representation, not a version: a command cannot be based on it."""
    CustomerSummary.objects.create(customer_id=shop["customer"], customer_name="Ada")
    tag = client.get(f"/api/customers/{shop['customer']}/summary/")["ETag"]
    cancel = client.post(
        f"/api/orders/{shop['order']}/cancel/", format="json", headers={"If-Match": tag}
    )
    assert cancel.status_code == 412
    assert OrderView.objects.get().status == "placed"


# -- the router picks the one representation -----------------------------------------


@dataclass(frozen=True)
class GetThing(Query[OrderView]):
    order_id: UUID


class Short(serializers.ModelSerializer[OrderView]):
    class Meta:
        model = OrderView
        fields = ["id", "total"]


class Long(serializers.ModelSerializer[OrderView]):
    class Meta:
        model = OrderView
        fields = ["id", "total", "status"]


def test_an_exposed_query_answered_two_ways_needs_a_serializer() -> None:
    class One(CQRSViewSet):
        id_field = "order_id"
        retrieve = query_route(GetThing, serializer_class=Short)

    class Two(CQRSViewSet):
        id_field = "order_id"
        retrieve = query_route(GetThing, serializer_class=Long)

    router = CQRSRouter()
    router.register("one", One, basename="one")
    router.register("two", Two, basename="two")
    router.expose_query(GetThing)
    with pytest.raises(ImproperlyConfigured, match=r"GetThing is answered with several"):
        router.get_urls()

    chosen = CQRSRouter()
    chosen.register("one", One, basename="one")
    chosen.register("two", Two, basename="two")
    chosen.expose_query(GetThing, serializer_class=Long)
    [view] = [u for u in chosen.get_urls() if str(u.pattern) == "queries/get-thing/"]
    assert view.callback.view_initkwargs["message_route"].serializer_class is Long


# -- the migration that turned display text into decimals ----------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_turns_stored_display_totals_into_decimals() -> None:
    executor = MigrationExecutor(connection)
    before = [("orders", "0003_customer_and_product_views")]
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps.get_model("orders", "OrderView")
        for number, total in enumerate(["$1,203.47", "$0.50", "$12,345,678.00"]):
            old.objects.create(
                id=UUID(int=number + 1),
                customer_id=UUID(int=99),
                customer_name="Ada",
                item_count=1,
                total=total,
                status="placed",
                version=1,
                placed_at=datetime.now().astimezone(),
            )
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

        totals = sorted(OrderView.objects.values_list("total", flat=True))
        assert totals == [Decimal("0.50"), Decimal("1203.47"), Decimal("12345678.00")]
    finally:
        OrderView.objects.all().delete()
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
