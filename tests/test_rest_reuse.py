"""Request and response serializers are built once per thread: no state leaks between uses."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest
from rest_framework import serializers
from rest_framework.test import APIClient

from demo_project.orders.commands import PlaceOrder
from django_cqrs.rest_framework.serializers import message_serializer, represent, validate

PROBLEM = "application/problem+json"


def test_validation_errors_belong_to_one_request_only() -> None:
    serializer_class = message_serializer(PlaceOrder)
    customer, product = uuid.uuid4(), uuid.uuid4()
    good = {"customer_id": str(customer), "items": [{"product_id": str(product), "quantity": 2}]}

    with pytest.raises(serializers.ValidationError) as first:
        validate(serializer_class, {**good, "colour": "red", "items": [{"quantity": "x"}]})
    command = validate(serializer_class, good)
    with pytest.raises(serializers.ValidationError) as third:
        validate(serializer_class, {"customer_id": "not-a-uuid", "items": []})

    assert set(first.value.detail) == {"colour", "items"}
    assert (command.customer_id, command.items[0].product_id) == (customer, product)
    assert set(third.value.detail) == {"customer_id"}  # nothing left over from the first


@pytest.mark.django_db
def test_a_null_body_is_a_400_saying_no_data(settings: Any) -> None:
    from django.contrib.auth.models import User

    client = APIClient()
    client.force_authenticate(User.objects.create_user("ann"))
    response = client.post("/api/orders/", "null", content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM
    assert response.json()["errors"] == {"non_field_errors": ["No data provided"]}


def test_threads_validate_their_own_bodies() -> None:
    serializer_class = message_serializer(PlaceOrder)
    failures: list[str] = []

    def work(quantity: int) -> None:
        for _ in range(200):
            customer = uuid.uuid4()
            body = {
                "customer_id": str(customer),
                "items": [{"product_id": str(uuid.uuid4()), "quantity": quantity}],
            }
            command = validate(serializer_class, body)
            if command.customer_id != customer or command.items[0].quantity != quantity:
                failures.append(f"{quantity}: {command}")

    threads = [threading.Thread(target=work, args=(q,)) for q in (1, 2, 3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []


@dataclasses.dataclass
class Price:
    amount: Decimal


class PriceSerializer(serializers.Serializer[Any]):
    amount = serializers.DecimalField(max_digits=10, decimal_places=2)
    asked_by = serializers.SerializerMethodField()

    def get_asked_by(self, value: Price) -> str:
        return str(self.context["request"])


def test_each_representation_sees_its_own_value_and_context() -> None:
    first = represent(PriceSerializer, Price(Decimal("1.5")), context={"request": "alice"})
    second = represent(
        PriceSerializer,
        [Price(Decimal("2")), Price(Decimal("3"))],
        many=True,
        context={"request": "bob"},
    )

    assert first == {"amount": "1.50", "asked_by": "alice"}
    assert [dict(item) for item in second] == [
        {"amount": "2.00", "asked_by": "bob"},
        {"amount": "3.00", "asked_by": "bob"},
    ]
