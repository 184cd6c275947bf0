"""A NUL character in the URL or a cookie answers 400 before any view runs.

On PostgreSQL such a value reaches a query (the admin's change page of a text primary
key, its search box, the session lookup) and fails with a ``DataError``: a 500. The
guard is in the demo's and the tests' ``MIDDLEWARE``, first.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from django_cqrs.models import StoredEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(User.objects.create_superuser("root", "root@example.com", "x"))
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/django_cqrs/projectionstate/%00/change/",
        "/admin/orders/ordercount/a%00b/history/",
        "/admin/django_q/success/?q=%00",
        "/admin/django_cqrs/storedevent/?event_type=%00",
        "/api/orders/?status=%00",
        "/api/orders/%00/",
        "/cqrs/health/?%00=1",
    ],
)
def test_a_nul_in_the_url_answers_400(admin_client: Client, url: str) -> None:
    response = admin_client.get(url)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["code"] == "nul_character"


def test_a_nul_in_a_cookie_answers_400() -> None:
    # Django decodes the octal escape of a quoted cookie value: the session key holds a NUL.
    client = Client(raise_request_exception=False)
    response = client.get("/admin/", HTTP_COOKIE='sessionid="abcdefgh\\000ij"')

    assert response.status_code == 400
    assert json.loads(response.content)["code"] == "nul_character"


def test_a_post_with_a_nul_in_the_url_writes_nothing(admin_client: Client) -> None:
    response = admin_client.post(
        "/api/commands/add-product/?x=%00",
        json.dumps({"name": "a", "price": "1.00"}),
        content_type="application/json",
    )

    assert response.status_code == 400
    assert not StoredEvent.objects.exists()


def test_other_requests_pass(admin_client: Client) -> None:
    assert admin_client.get("/admin/django_cqrs/storedevent/?q=%2500").status_code == 200
    assert admin_client.get("/cqrs/health/").status_code == 200
