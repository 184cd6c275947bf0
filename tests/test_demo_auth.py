"""API clients authenticate with a token: one lookup per request, no password hash.

HTTP Basic checks the password on every request, and Django's password hash is slow on
purpose (about 2 s a call on a small machine with the default hasher). The demo gives a
client a token for its username and password once (``POST /api/auth/token/``); each
request then sends ``Authorization: Token <token>``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

from django_cqrs.models import StoredEvent

PROBLEM = "application/problem+json"
TOKEN_URL = "/api/auth/token/"
CUSTOMERS = "/api/customers/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password="secret")


@pytest.fixture
def password_checks() -> Iterator[list[str]]:
    """The usernames whose password was checked, request by request."""
    checked: list[str] = []
    original = User.check_password

    def spy(user: User, raw: str) -> bool:
        checked.append(user.username)
        return original(user, raw)

    with mock.patch.object(User, "check_password", spy):
        yield checked


def post(client: Client, url: str, body: Any, **headers: str) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json", headers=headers)


def test_a_token_for_a_username_and_password(client: Client, alice: User) -> None:
    response = post(client, TOKEN_URL, {"username": "alice", "password": "secret"})

    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=alice).key}


def test_a_command_with_the_token_runs_without_checking_the_password(
    client: Client, alice: User, password_checks: list[str]
) -> None:
    token = post(client, TOKEN_URL, {"username": "alice", "password": "secret"}).json()["token"]
    password_checks.clear()

    for name in ("Ada", "Grace"):
        response = post(
            client,
            CUSTOMERS,
            {"name": name, "credit_limit": "100.00"},
            Authorization=f"Token {token}",
        )
        assert response.status_code == 201, response.content

    assert password_checks == []  # Basic would have hashed it twice
    assert StoredEvent.objects.filter(metadata__user="alice").count() == 2


def test_basic_still_works_and_checks_the_password_each_time(
    client: Client, alice: User, password_checks: list[str]
) -> None:
    basic = "Basic " + base64.b64encode(b"alice:secret").decode()

    for name in ("Ada", "Grace"):
        response = post(
            client, CUSTOMERS, {"name": name, "credit_limit": "1.00"}, Authorization=basic
        )
        assert response.status_code == 201

    assert password_checks == ["alice", "alice"]


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": "secret"},
        {"username": "alice"},
        {},
    ],
    ids=["wrong password", "unknown user", "no password", "empty"],
)
def test_bad_credentials_are_a_400_problem_and_give_no_token(
    client: Client, alice: User, body: dict[str, str]
) -> None:
    response = post(client, TOKEN_URL, body)

    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM
    assert not Token.objects.exists()


def test_a_deeply_nested_body_is_a_400_not_a_500(client: Client, alice: User) -> None:
    deep = "[" * 2000 + "]" * 2000

    response = client.post(TOKEN_URL, deep, content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM


def test_a_wrong_token_is_a_401_problem_and_writes_nothing(client: Client) -> None:
    before = StoredEvent.objects.count()

    response = post(
        client, CUSTOMERS, {"name": "Ada", "credit_limit": "1.00"}, Authorization="Token nope"
    )

    assert response.status_code == 401
    assert response["Content-Type"] == PROBLEM
    assert StoredEvent.objects.count() == before
