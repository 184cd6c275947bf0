"""Concurrency over HTTP: If-Match / ETag, Idempotency-Key and read-your-writes."""

# ruff: noqa: F811  (pytest fixtures imported from test_rest_api are redefined as arguments)

from __future__ import annotations

import datetime as dt
import io
import threading
import time
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connections
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from demo_project.orders.models import CustomerSummary, Order, OrderView
from django_cqrs import store
from django_cqrs.exceptions import ConcurrencyError, PreconditionFailedError
from django_cqrs.models import ProjectionState, StoredEvent
from django_cqrs.projections import Projection, unregister
from django_cqrs.projections import status as cqrs_status
from django_cqrs.rest_framework.exceptions import BadHeader
from django_cqrs.rest_framework.models import IdempotencyRecord
from django_cqrs.rest_framework.preconditions import IfMatch, parse_if_match
from tests.test_rest_api import (  # noqa: F401  (fixtures)
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


# -- If-Match -----------------------------------------------------------------------------


def test_a_matching_if_match_runs_the_command_and_returns_the_new_etag(
    client: APIClient, order_id: str, product_id: str
) -> None:
    etag = client.get(f"/api/orders/{order_id}/")["ETag"]

    response = post(
        client,
        f"/api/orders/{order_id}/items/",
        {"product_id": product_id, "quantity": 1},
        **{"If-Match": etag},
    )

    assert response.status_code == 204
    assert response["ETag"] == '"2"'
    assert client.get(f"/api/orders/{order_id}/")["ETag"] == response["ETag"]


def test_a_stale_if_match_answers_412_and_writes_nothing(
    client: APIClient, order_id: str, product_id: str
) -> None:
    stale = client.get(f"/api/orders/{order_id}/")["ETag"]
    post(client, f"/api/orders/{order_id}/items/", {"product_id": product_id, "quantity": 1})
    before = counts()

    response = post(client, f"/api/orders/{order_id}/cancel/", **{"If-Match": stale})

    assert_problem(response, 412, "stale_version")
    assert counts() == before
    assert Order.objects.get(pk=order_id).status == "placed"


def test_if_match_star_and_lists(client: APIClient, order_id: str) -> None:
    assert (
        post(client, f"/api/orders/{order_id}/cancel/", **{"If-Match": '"7", "1"'}).status_code
        == 204
    )
    missing = uuid.uuid4()
    assert_problem(post(client, f"/api/orders/{missing}/cancel/", **{"If-Match": "*"}), 404)


def test_weak_etags_never_match(client: APIClient, order_id: str) -> None:
    assert_problem(post(client, f"/api/orders/{order_id}/cancel/", **{"If-Match": 'W/"1"'}), 412)


def test_a_malformed_if_match_answers_400(client: APIClient, order_id: str) -> None:
    assert_problem(post(client, f"/api/orders/{order_id}/cancel/", **{"If-Match": '"1'}), 400)


def test_parse_if_match() -> None:
    assert parse_if_match(None) is None
    assert parse_if_match("*") == IfMatch(any=True)
    assert parse_if_match('"3", W/"4" ,"5"') == IfMatch(
        versions=frozenset({3, 5}), tags=frozenset({"3", "5"})
    )
    with pytest.raises(BadHeader):  # unquoted: the docs always called it malformed (400)
        parse_if_match("3")


def test_if_none_match_answers_304(client: APIClient, order_id: str) -> None:
    response = client.get(f"/api/orders/{order_id}/", headers={"If-None-Match": '"1"'})

    assert response.status_code == 304
    assert response["ETag"] == '"1"'


def test_a_stale_precondition_is_a_concurrency_error_the_retry_middleware_never_sees(
    client: APIClient, order_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check runs outside the bus, in the command's transaction: one attempt only.
    assert issubclass(PreconditionFailedError, ConcurrencyError)
    from django_cqrs.rest_framework import viewsets

    calls = []
    real = viewsets.command_bus.dispatch
    monkeypatch.setattr(
        viewsets.command_bus, "dispatch", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    assert_problem(post(client, f"/api/orders/{order_id}/cancel/", **{"If-Match": '"9"'}), 412)
    assert calls == []


def test_a_conflict_after_the_retries_answers_409(
    client: APIClient, order_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_cqrs.rest_framework import viewsets

    def always_conflicts(*args: Any, **kwargs: Any) -> Any:
        raise ConcurrencyError("orders.Order was changed by someone else")

    monkeypatch.setattr(viewsets.command_bus, "dispatch", always_conflicts)
    assert_problem(post(client, f"/api/orders/{order_id}/cancel/"), 409, "concurrency_conflict")


# -- Idempotency-Key ----------------------------------------------------------------------


def test_a_repeated_key_replays_the_first_answer_and_dispatches_nothing(
    client: APIClient, customer_id: str, product_id: str
) -> None:
    body = {"customer_id": customer_id, "items": [{"product_id": product_id, "quantity": 1}]}
    first = post(client, "/api/orders/", body, **{"Idempotency-Key": "order-1"})
    before = counts()

    again = post(client, "/api/orders/", body, **{"Idempotency-Key": "order-1"})

    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["CQRS-Position"] == first["CQRS-Position"]
    assert again["Location"] == first["Location"]
    assert again["Content-Type"] == "application/json"
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert counts() == before


def test_the_same_key_with_another_body_answers_422(client: APIClient) -> None:
    post(client, "/api/products/", {"name": "a", "price": "1.00"}, **{"Idempotency-Key": "k"})
    before = counts()

    response = post(
        client, "/api/products/", {"name": "b", "price": "1.00"}, **{"Idempotency-Key": "k"}
    )

    assert_problem(response, 422, "idempotency_key_reused")
    assert counts() == before


def test_the_key_ignores_json_formatting(client: APIClient) -> None:
    headers = {"Idempotency-Key": "fmt"}
    client.post(
        "/api/products/",
        '{"name": "a", "price": "1.00"}',
        content_type="application/json",
        headers=headers,
    )
    again = client.post(
        "/api/products/",
        '{"price":"1.00",\n "name":"a"}',
        content_type="application/json",
        headers=headers,
    )

    assert again["Idempotent-Replayed"] == "true"
    assert StoredEvent.objects.count() == 1


def test_keys_belong_to_one_user(client: APIClient, staff: User) -> None:
    body = {"name": "a", "price": "1.00"}
    post(client, "/api/products/", body, **{"Idempotency-Key": "mine"})
    other = APIClient()
    other.force_authenticate(staff)

    response = post(other, "/api/products/", body, **{"Idempotency-Key": "mine"})

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert StoredEvent.objects.count() == 2


def test_client_errors_are_replayed_too(client: APIClient, order_id: str) -> None:
    post(client, f"/api/orders/{order_id}/cancel/")
    first = post(client, f"/api/orders/{order_id}/cancel/", **{"Idempotency-Key": "c"})
    again = post(client, f"/api/orders/{order_id}/cancel/", **{"Idempotency-Key": "c"})

    assert_problem(first, 422)
    assert_problem(again, 422)
    assert again["Idempotent-Replayed"] == "true"


def test_conflicts_are_not_kept_so_the_client_can_retry(
    client: APIClient, order_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_cqrs.rest_framework import viewsets

    real = viewsets.command_bus.dispatch

    def conflict(*args: Any, **kwargs: Any) -> Any:
        raise ConcurrencyError("changed by someone else")

    monkeypatch.setattr(viewsets.command_bus, "dispatch", conflict)
    assert_problem(post(client, f"/api/orders/{order_id}/cancel/", **{"Idempotency-Key": "r"}), 409)
    assert not IdempotencyRecord.objects.exists()
    monkeypatch.setattr(viewsets.command_bus, "dispatch", real)
    assert (
        post(client, f"/api/orders/{order_id}/cancel/", **{"Idempotency-Key": "r"}).status_code
        == 204
    )


def test_a_key_still_in_use_answers_409(client: APIClient) -> None:
    body = {"name": "a", "price": "1.00"}
    post(client, "/api/products/", body, **{"Idempotency-Key": "busy"})
    IdempotencyRecord.objects.update(response_status=None)  # as if the first were still running

    with override_settings(DJANGO_CQRS={"IDEMPOTENCY_WAIT": 0.05}):
        response = post(client, "/api/products/", body, **{"Idempotency-Key": "busy"})

    assert_problem(response, 409, "idempotency_key_in_use")
    assert response["Retry-After"] == "1"


def test_an_abandoned_claim_is_taken_over(client: APIClient) -> None:
    body = {"name": "a", "price": "1.00"}
    post(client, "/api/products/", body, **{"Idempotency-Key": "dead"})
    # The first request died before answering: its command rolled back with its answer.
    IdempotencyRecord.objects.update(
        response_status=None, locked_at=timezone.now() - dt.timedelta(hours=1)
    )

    response = post(client, "/api/products/", body, **{"Idempotency-Key": "dead"})

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response


@pytest.mark.parametrize("key", ["", "a" * 256, "tab\there", "é"])
def test_bad_keys_answer_400(client: APIClient, key: str) -> None:
    response = client.post(
        "/api/products/", {"name": "a", "price": "1"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert_problem(response, 400, "invalid_header")
    assert StoredEvent.objects.count() == 0


def test_expired_keys_run_again_and_are_purged(client: APIClient) -> None:
    body = {"name": "a", "price": "1.00"}
    post(client, "/api/products/", body, **{"Idempotency-Key": "old"})
    IdempotencyRecord.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    again = post(client, "/api/products/", body, **{"Idempotency-Key": "old"})
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert StoredEvent.objects.count() == 2

    IdempotencyRecord.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    post(client, "/api/products/", {"name": "new", "price": "1"}, **{"Idempotency-Key": "fresh"})
    out = io.StringIO()
    call_command("cqrs_purge_idempotency", stdout=out)
    assert "1" in out.getvalue()
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


@override_settings(DJANGO_CQRS={"IDEMPOTENCY_TTL": 60})
def test_the_ttl_is_configurable(client: APIClient) -> None:
    post(client, "/api/products/", {"name": "a", "price": "1"}, **{"Idempotency-Key": "ttl"})
    record = IdempotencyRecord.objects.get()
    assert (
        dt.timedelta(seconds=59) < record.expires_at - record.created_at <= dt.timedelta(seconds=61)
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_dispatch_once() -> None:
    user = User.objects.create_user("racer", password="pw")
    api = APIClient()
    api.force_authenticate(user)
    customer = post(api, "/api/customers/", {"name": "Ada", "credit_limit": "1000"}).json()
    product = post(api, "/api/products/", {"name": "Pen", "price": "1.00"}).json()
    body = {
        "customer_id": customer["customer_id"],
        "items": [{"product_id": product["product_id"], "quantity": 1}],
    }
    connections.close_all()
    threads = 8
    barrier = threading.Barrier(threads)
    results: list[Any] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            client = APIClient()
            client.force_authenticate(user)
            barrier.wait()
            results.append(post(client, "/api/orders/", body, **{"Idempotency-Key": "race"}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert not errors, errors
    assert Order.objects.count() == 1
    assert len(results) == threads
    statuses = sorted(r.status_code for r in results)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in results if r.status_code == 201]
    assert {r.json()["order_id"] for r in created} == {str(Order.objects.get().pk)}
    assert sum("Idempotent-Replayed" not in r for r in created) == 1


# -- read-your-writes ----------------------------------------------------------------------


def test_queries_wait_for_a_position_the_log_has_reached(client: APIClient, order_id: str) -> None:
    position = StoredEvent.objects.last().position  # type: ignore[union-attr]

    response = client.get(f"/api/orders/{order_id}/", headers={"CQRS-Min-Position": str(position)})

    assert response.status_code == 200


@override_settings(DJANGO_CQRS={"MIN_POSITION_TIMEOUT": 5})
def test_a_position_beyond_the_head_answers_400_at_once(client: APIClient, order_id: str) -> None:
    ahead = StoredEvent.objects.last().position + 10  # type: ignore[union-attr]

    started = time.monotonic()
    response = client.get(f"/api/orders/{order_id}/", headers={"CQRS-Min-Position": str(ahead)})

    assert time.monotonic() - started < 2  # no waiting for a token no server gave out
    problem = assert_problem(response, 400)
    assert "beyond the newest event" in problem["detail"]


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "9" * 30])
def test_a_malformed_min_position_answers_400(client: APIClient, value: str) -> None:
    assert_problem(client.get("/api/orders/", headers={"CQRS-Min-Position": value}), 400)


@pytest.mark.django_db(transaction=True)
def test_read_your_writes_on_the_async_customer_summary(
    client: APIClient, customer_id: str, product_id: str
) -> None:
    body = {"customer_id": customer_id, "items": [{"product_id": product_id, "quantity": 2}]}
    placed = post(client, "/api/orders/", body)

    summary = client.get(
        f"/api/customers/{customer_id}/summary/",
        headers={"CQRS-Min-Position": placed["CQRS-Position"]},
    )

    assert summary.status_code == 200
    assert summary.json()["order_count"] == 1


@pytest.fixture
def lagging() -> Any:
    class LaggingProjection(Projection):
        """An async projection that never runs by itself (the test sets its checkpoint)."""

        read_models = [OrderView]
        mode = "async"
        name = "tests.LaggingProjection"

    yield LaggingProjection
    unregister(LaggingProjection)


def checkpoint_at(name: str, point: store.LogPoint) -> None:
    """Set a projection's checkpoint by hand."""
    ProjectionState.objects.update_or_create(
        name=name, defaults={"position": point.position, "transaction_id": point.transaction_id}
    )


def just_before(point: store.LogPoint) -> store.LogPoint:
    return store.LogPoint(point.transaction_id, point.position - 1)


def test_wait_for_position_polls_the_checkpoint_of_async_projections(
    lagging: type[Projection], order_id: str
) -> None:
    head = StoredEvent.objects.last().position  # type: ignore[union-attr]
    newest = store.point_of(head)
    assert newest is not None
    checkpoint_at(lagging.name, just_before(newest))
    assert not cqrs_status.wait_for_position(OrderView, head, timeout=0.05)
    assert cqrs_status.wait_for_position(CustomerSummary, 0, timeout=0)

    checkpoint_at(lagging.name, newest)
    assert cqrs_status.wait_for_position(OrderView, head, timeout=1)
    assert cqrs_status.wait_for_position(lagging, head, timeout=0)
    assert cqrs_status.wait_for_position(lagging.name, head, timeout=0)
    assert cqrs_status.wait_for_position([OrderView, lagging], head, timeout=0)


@override_settings(DJANGO_CQRS={"MIN_POSITION_TIMEOUT": 0.05})
def test_a_lagging_async_read_model_answers_503(
    client: APIClient, lagging: type[Projection], order_id: str
) -> None:
    head = StoredEvent.objects.last().position  # type: ignore[union-attr]
    newest = store.point_of(head)
    assert newest is not None
    checkpoint_at(lagging.name, just_before(newest))
    url = f"/api/orders/{order_id}/"

    lagging_answer = client.get(url, headers={"CQRS-Min-Position": str(head)})
    assert_problem(lagging_answer, 503, "position_not_reached")
    assert lagging_answer["Retry-After"] == "1"
    assert client.get(url, headers={"CQRS-Min-Position": str(head - 1)}).status_code == 200
    assert client.get(url).status_code == 200
