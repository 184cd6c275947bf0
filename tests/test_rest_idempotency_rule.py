"""Which answers an Idempotency-Key keeps: only those of a command that ran.

A request rejected before it ran (invalid fields, a malformed header, a bad URL id, a
failed precondition) or whose run was undone (a concurrency conflict, a lock timeout)
gives its key back: the corrected request, sent with the same key, runs. A command that
ran keeps its answer, a success or its handler's refusal, and a repeat replays it.
"""

# ruff: noqa: F811  (pytest fixtures imported from test_rest_api are redefined as arguments)

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections
from django.test import override_settings
from rest_framework.test import APIClient

from demo_project.orders.commands import AddItem
from demo_project.orders.models import Order
from django_cqrs import command_bus
from django_cqrs.models import StoredEvent
from django_cqrs.rest_framework.models import IdempotencyRecord
from tests.helpers import Holding
from tests.test_rest_api import (  # noqa: F401  (fixtures)
    assert_problem,
    client,
    counts,
    customer_id,
    order_id,
    post,
    product_id,
    user,
)
from tests.test_rest_exceptions import short_lock_timeout  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def keyed(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


def assert_ran_once_and_replays(client: APIClient, path: str, body: Any, **headers: str) -> Any:
    """The corrected request runs (not a replay); sending it again replays its answer."""
    first = post(client, path, body, **headers)
    assert first.status_code < 300, first.content
    assert "Idempotent-Replayed" not in first
    before = counts()
    again = post(client, path, body, **headers)
    assert (again.status_code, again["Idempotent-Replayed"]) == (first.status_code, "true")
    assert counts() == before
    return first


def test_invalid_fields_give_the_key_back(client: APIClient) -> None:
    key = keyed("fix-the-body")

    assert_problem(post(client, "/api/products/", {"name": "a", "price": "-1"}, **key), 400)
    assert not IdempotencyRecord.objects.exists()

    # The corrected body is another request: a kept 400 would answer 422 (key reused).
    assert_ran_once_and_replays(client, "/api/products/", {"name": "a", "price": "1.00"}, **key)
    assert StoredEvent.objects.count() == 1


def test_a_malformed_header_gives_the_key_back(client: APIClient, order_id: str) -> None:
    path = f"/api/orders/{order_id}/cancel/"

    assert_problem(post(client, path, **keyed("fix-the-header", **{"If-Match": '"1'})), 400)
    assert not IdempotencyRecord.objects.exists()

    assert_ran_once_and_replays(
        client, path, None, **keyed("fix-the-header", **{"If-Match": '"1"'})
    )
    assert Order.objects.get(pk=order_id).status == "cancelled"


def test_a_malformed_url_id_keeps_no_answer(client: APIClient) -> None:
    assert_problem(post(client, "/api/orders/not-an-id/cancel/", **keyed("bad-id")), 404)

    assert not IdempotencyRecord.objects.exists()


def test_a_failed_precondition_gives_the_key_back(
    client: APIClient, order_id: str, product_id: str
) -> None:
    stale = client.get(f"/api/orders/{order_id}/")["ETag"]
    post(client, f"/api/orders/{order_id}/items/", {"product_id": product_id, "quantity": 1})
    fresh = client.get(f"/api/orders/{order_id}/")["ETag"]
    path = f"/api/orders/{order_id}/cancel/"

    assert_problem(post(client, path, **keyed("cancel-1", **{"If-Match": stale})), 412)
    assert not IdempotencyRecord.objects.exists()

    # The client reads the new ETag and sends it with the same key: the command runs.
    response = assert_ran_once_and_replays(
        client, path, None, **keyed("cancel-1", **{"If-Match": fresh})
    )
    assert response.status_code == 204
    assert response["ETag"] == '"3"'
    assert Order.objects.get(pk=order_id).status == "cancelled"


def test_the_handlers_refusal_is_kept(client: APIClient, order_id: str) -> None:
    post(client, f"/api/orders/{order_id}/cancel/")
    path = f"/api/orders/{order_id}/cancel/"

    assert_problem(post(client, path, **keyed("twice")), 422, "invariant_violation")
    again = post(client, path, **keyed("twice"))

    assert_problem(again, 422, "invariant_violation")
    assert again["Idempotent-Replayed"] == "true"


# -- PostgreSQL: a real conflict and a real lock -------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_concurrency_conflict_gives_the_key_back(
    no_trigger: None,  # first: the order stays placed (no checkout confirms it) ...
    client: APIClient,
    order_id: str,
    product_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_cancel = Order.cancel
    interleaved: list[BaseException | None] = []

    def add_an_item() -> None:
        try:
            command_bus.dispatch(AddItem(order_id=order_id, product_id=product_id, quantity=1))
            interleaved.append(None)
        except BaseException as exc:
            interleaved.append(exc)
        finally:
            connections.close_all()

    def cancel_while_another_request_adds_an_item(order: Order) -> None:
        if not interleaved:  # between this command's read and its save, once
            other = threading.Thread(target=add_an_item)
            other.start()
            other.join(10)
        real_cancel(order)

    monkeypatch.setattr(Order, "cancel", cancel_while_another_request_adds_an_item)
    path = f"/api/orders/{order_id}/cancel/"

    # ... so that another request can add an item to it.
    with override_settings(DJANGO_CQRS={"CONCURRENCY_RETRIES": 0, "TRIGGER_ON_COMMIT": False}):
        assert_problem(post(client, path, **keyed("conflict")), 409, "concurrency_conflict")
    assert interleaved == [None]
    assert not IdempotencyRecord.objects.exists()

    # Nothing to correct: the same request with the same key runs on the new version.
    assert_ran_once_and_replays(client, path, None, **keyed("conflict"))
    order = Order.objects.get(pk=order_id)
    assert (order.status, order.version) == ("cancelled", 3)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_lock_timeout_gives_the_key_back(
    client: APIClient, order_id: str, short_lock_timeout: Any
) -> None:
    etag = client.get(f"/api/orders/{order_id}/")["ETag"]
    path = f"/api/orders/{order_id}/cancel/"
    headers = keyed("locked", **{"If-Match": etag})

    with Holding(lambda: list(Order.objects.select_for_update().filter(pk=order_id))):
        response = post(client, path, **headers)
    assert_problem(response, 503, "lock_timeout")
    assert not IdempotencyRecord.objects.exists()

    assert_ran_once_and_replays(client, path, None, **headers)
    assert Order.objects.get(pk=order_id).status == "cancelled"
