"""Database conflicts over HTTP: a deadlock answers 409, a lock timeout 503 + Retry-After.

Never 500. The fake errors (any database) stand for psycopg's: a Django
``OperationalError`` whose ``__cause__`` carries the SQLSTATE; the PostgreSQL tests hold
a real lock in another connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError, connections
from django.test import override_settings
from rest_framework.test import APIClient

from demo_project.orders.commands import RegisterCustomer
from demo_project.orders.models import Customer, Order
from django_cqrs import command_bus
from django_cqrs.rest_framework.exceptions import problem_exception_handler
from tests.helpers import Holding, lock_the_log

PROBLEM = "application/problem+json"


class FakePsycopgError(Exception):
    def __init__(self, message: str, sqlstate: str):
        super().__init__(message)
        self.sqlstate = sqlstate


def database_error(code: str) -> OperationalError:
    message = {"40P01": "deadlock detected\nDETAIL:  Process 4711 waits for ShareLock"}.get(
        code, "canceling statement due to lock timeout"
    )
    try:
        raise OperationalError(message) from FakePsycopgError(message, code)
    except OperationalError as exc:
        return exc


@pytest.fixture
def client() -> APIClient:
    api = APIClient()
    api.force_authenticate(User.objects.create_user("alice", password="secret"))
    return api


def register(client: APIClient, **headers: str) -> Any:
    return client.post(
        "/api/customers/", {"name": "Ada", "credit_limit": "100.00"}, format="json", headers=headers
    )


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = json.loads(response.content)
    assert (body["status"], body["code"]) == (status, code)
    return body


@pytest.fixture
def failing_registration(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int], list[int]]:
    """Make RegisterCustomer's handler fail ``failures`` times with SQLSTATE ``code``."""
    original = command_bus.registry.handler_for(RegisterCustomer)

    def install(code: str, failures: int) -> list[int]:
        attempts: list[int] = []

        def handler(command: RegisterCustomer) -> Any:
            attempts.append(1)
            value = original(command)  # writes, then fails: the rollback must undo it
            if len(attempts) <= failures:
                raise database_error(code)
            return value

        monkeypatch.setitem(command_bus.registry._handlers, RegisterCustomer, handler)
        return attempts

    return install


# -- fake driver errors (any database) -------------------------------------------------


@pytest.mark.django_db
def test_a_deadlock_the_bus_retried_answers_201(client, failing_registration):
    attempts = failing_registration("40P01", 1)

    response = register(client)

    assert response.status_code == 201, response.content
    assert len(attempts) == 2
    assert Customer.objects.count() == 1


@pytest.mark.django_db
def test_a_deadlock_after_the_last_retry_answers_409_not_500(client, failing_registration):
    attempts = failing_registration("40P01", 10)

    with override_settings(DJANGO_CQRS={"CONCURRENCY_RETRIES": 0}):
        body = problem(register(client), 409, "concurrency_conflict")

    assert attempts == [1]
    assert "SQLSTATE 40P01" in body["detail"]
    assert "Process 4711" not in body["detail"]  # only the first line of the server's message
    assert Customer.objects.count() == 0


@pytest.mark.django_db
def test_a_lock_timeout_answers_503_with_retry_after(client, failing_registration):
    attempts = failing_registration("55P03", 10)

    response = register(client)

    body = problem(response, 503, "lock_timeout")
    assert response["Retry-After"] == "1"
    assert body["type"] == "urn:django-cqrs:problem:lock-timeout"
    assert "LOCK_TIMEOUT" in body["detail"]
    assert attempts == [1]  # not retried
    assert Customer.objects.count() == 0


@pytest.mark.django_db
def test_a_lock_timeout_is_not_kept_as_the_idempotent_answer(client, failing_registration):
    failing_registration("55P03", 1)

    problem(register(client, **{"Idempotency-Key": "k-1"}), 503, "lock_timeout")
    again = register(client, **{"Idempotency-Key": "k-1"})

    assert again.status_code == 201, again.content
    assert "Idempotent-Replayed" not in again


@pytest.mark.parametrize(("code", "status"), [("40P01", 409), ("40001", 409), ("55P03", 503)])
def test_database_errors_raised_outside_the_bus_get_the_same_answers(code, status):
    response = problem_exception_handler(database_error(code), {})

    assert response is not None
    assert response.status_code == status


def test_other_database_errors_are_left_to_django():
    assert problem_exception_handler(database_error("08006"), {}) is None


# -- PostgreSQL: a lock another connection holds ---------------------------------------


@pytest.fixture
def short_lock_timeout() -> Any:
    with override_settings(DJANGO_CQRS={"LOCK_TIMEOUT": 0.3}):
        connections["default"].close()  # a connection keeps the value it was opened with
        yield
    connections["default"].close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_command_behind_a_locked_log_answers_503_within_a_second(client, short_lock_timeout):
    with Holding(lock_the_log):
        started = time.monotonic()
        response = register(client)
        waited = time.monotonic() - started

    body = problem(response, 503, "lock_timeout")
    assert response["Retry-After"] == "1"
    assert "SQLSTATE 55P03" in body["detail"]
    assert waited < 1.0
    assert Customer.objects.count() == 0
    assert register(client).status_code == 201  # the lock is gone


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_if_match_lock_not_granted_in_time_answers_503(client, short_lock_timeout):
    customer = register(client).json()["customer_id"]
    product = client.post("/api/products/", {"name": "W", "price": "1.00"}, format="json")
    order = client.post(
        "/api/orders/",
        {
            "customer_id": customer,
            "items": [{"product_id": product.json()["product_id"], "quantity": 1}],
        },
        format="json",
    ).json()["order_id"]
    etag = client.get(f"/api/orders/{order}/")["ETag"]

    # The If-Match check locks the order's row before the bus runs, outside its middleware.
    with Holding(lambda: list(Order.objects.select_for_update().filter(pk=order))):
        response = client.post(
            f"/api/orders/{order}/cancel/", format="json", headers={"If-Match": etag}
        )

    problem(response, 503, "lock_timeout")
    assert response["Retry-After"] == "1"
    assert Order.objects.get(pk=order).status != "cancelled"
