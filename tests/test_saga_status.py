"""Sagas in ``cqrs_status`` and ``/cqrs/health/``: instances by state, parked instances,
overdue deadlines, besides the figures every projection has.

A parked instance turns the health check red until it is retried (or skipped), as a
parked event does; so does a deadline still pending ``STALL_SECONDS`` after it was due.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_cqrs import command_bus
from django_cqrs.models import SagaDeadline
from django_cqrs.projections import ASYNC, all_projections
from django_cqrs.projections.catchup import catch_up, retry
from django_cqrs.projections.health import health_report
from django_cqrs.projections.status import projection_status
from django_cqrs.sagas import retry_instance, skip_instance
from django_cqrs.sagas.base import all_sagas
from tests.testapp import sagas
from tests.testapp.commands import ConfirmTransfer, Deposit, OpenAccount, RequestTransfer
from tests.testapp.models import TransferRun
from tests.testapp.sagas import TransferSaga

pytestmark = pytest.mark.django_db

SAGA = TransferSaga.name
#: Every saga of the installed apps (the demo's checkout too): a "saga" section each.
SAGAS = {cls.name for cls in all_sagas()}
#: The JSON keys of every projection's entry, before sagas (they keep them).
STATUS_KEYS = [
    *("name", "mode", "position", "head", "lag_events", "lag_seconds", "status"),
    *("last_error", "parked", "rebuilding", "activity", "no_progress_seconds"),
]
HEALTH_KEYS = [
    *("mode", "status", "position", "lag_events", "lag_seconds", "parked", "rebuilding"),
    *("healthy", "problems", "activity", "no_progress_seconds"),
]


@pytest.fixture
def poison(settings: Any) -> Iterator[set[int]]:
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    yield sagas.POISON_SOURCES
    sagas.POISON_SOURCES.clear()


def account(owner: str, balance: str = "0") -> int:
    account_id: int = command_bus.dispatch(OpenAccount(owner=owner)).value
    if Decimal(balance):
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal(balance)))
    return account_id


def transfer(source: int, target: int, amount: str, fee: str = "0") -> str:
    transfer_id = uuid.uuid4()
    command_bus.dispatch(
        RequestTransfer(
            transfer_id=transfer_id,
            source_id=source,
            target_id=target,
            amount=Decimal(amount),
            fee=Decimal(fee),
        )
    )
    return str(transfer_id)


def caught_up() -> None:
    """Every async consumer at the head: only the saga's own figures can be wrong."""
    for _ in range(2):  # what the saga dispatched, for the projections after it
        for cls in all_projections():
            if cls.mode == ASYNC:
                catch_up(cls)


@pytest.fixture
def transfers(poison: set[int]) -> dict[str, str]:
    """One transfer of each kind: awaiting confirmation, completed, compensated, parked."""
    alice, bob, carol = account("alice", "100"), account("bob"), account("carol", "100")
    keys = {
        "waiting": transfer(alice, bob, "30", fee="1"),
        "done": transfer(alice, bob, "10"),
        "refused": transfer(alice, bob, "5", fee="50"),
    }
    poison.add(carol)
    keys["stuck"] = transfer(carol, bob, "20")
    caught_up()
    command_bus.dispatch(ConfirmTransfer(transfer_id=uuid.UUID(keys["done"])))
    caught_up()
    return keys


def saga_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next(row for row in rows if row["name"] == SAGA)


def status_json() -> list[dict[str, Any]]:
    out = StringIO()
    call_command("cqrs_status", "--json", stdout=out)
    rows: list[dict[str, Any]] = json.loads(out.getvalue())
    return rows


def health(client: Client, *, details: bool = True) -> tuple[int, dict[str, Any]]:
    if details and "_auth_user_id" not in client.session:
        user, _ = get_user_model().objects.get_or_create(username="monitor")
        user.user_permissions.add(
            Permission.objects.get(
                codename="view_projectionstate", content_type__app_label="django_cqrs"
            )
        )
        client.force_login(user)
    response = client.get(reverse("django_cqrs:health"))
    return response.status_code, response.json()


# -- cqrs_status ---------------------------------------------------------------------------


def test_cqrs_status_json_adds_a_saga_section_to_the_saga_only(
    transfers: dict[str, str],
) -> None:
    rows = status_json()

    saga = saga_row(rows)
    assert list(saga) == [*STATUS_KEYS, "saga"]
    assert saga["mode"] == "async"
    assert saga["saga"] == {
        "instances": {"running": 2, "completed": 1, "compensated": 1, "failed": 0},
        "parked_instances": 1,
        "pending_deadlines": 1,
        "overdue_deadlines": 0,
    }
    for row in rows:
        if row["name"] not in SAGAS:
            assert list(row) == STATUS_KEYS, row["name"]


def saga_line() -> str:
    out = StringIO()
    call_command("cqrs_status", stdout=out)
    lines = out.getvalue().splitlines()
    [row] = [line.split() for line in lines[1:] if line.split()[0] == SAGA]
    assert row[1] == "async"  # in the table, as the projection it is
    [line] = [line for line in lines if line.startswith(f"Saga {SAGA}:")]
    return line


def test_cqrs_status_prints_a_line_per_saga_after_the_table(transfers: dict[str, str]) -> None:
    assert saga_line() == (
        f"Saga {SAGA}: instances 2 running, 1 completed, 1 compensated, 0 failed; "
        "1 parked; deadlines 1 pending, 0 overdue."
    )


def test_a_deadline_pending_past_stall_seconds_is_overdue(
    settings: Any, transfers: dict[str, str]
) -> None:
    [pending] = SagaDeadline.objects.filter(fired_at__isnull=True, cancelled_at__isnull=True)
    settings.DJANGO_CQRS = {**settings.DJANGO_CQRS, "STALL_SECONDS": 60}
    now = timezone.now()

    pending.due_at = now - dt.timedelta(seconds=30)  # due, but its task may still come
    pending.save()
    assert saga_row(status_json())["saga"]["overdue_deadlines"] == 0

    pending.due_at = now - dt.timedelta(seconds=90)
    pending.save()
    assert saga_row(status_json())["saga"]["overdue_deadlines"] == 1
    assert saga_line().endswith("; deadlines 1 pending, 1 overdue.")

    # STALL_SECONDS = None switches stalls off, and overdue deadlines with them.
    settings.DJANGO_CQRS = {**settings.DJANGO_CQRS, "STALL_SECONDS": None}
    assert saga_row(status_json())["saga"]["overdue_deadlines"] == 0


def test_projection_status_has_no_saga_figures_for_a_projection() -> None:
    rows = projection_status()

    assert all(r.saga is not None for r in rows if r.name in SAGAS)
    assert all(r.saga is None for r in rows if r.name not in SAGAS)


# -- /cqrs/health/ -------------------------------------------------------------------------


def test_health_is_503_with_a_parked_instance_and_200_after_its_retry(
    client: Client, transfers: dict[str, str], poison: set[int]
) -> None:
    status, body = health(client)

    assert status == 503
    entry = body["projections"][SAGA]
    assert list(entry) == [*HEALTH_KEYS, "saga"]
    assert entry["healthy"] is False
    assert entry["problems"] == ["1 parked instance"]
    assert entry["saga"]["parked_instances"] == 1
    assert entry["saga"]["instances"]["running"] == 2
    others = {n: e for n, e in body["projections"].items() if n != SAGA}
    assert all(e["healthy"] for e in others.values()), others
    assert all(list(e) == HEALTH_KEYS for n, e in others.items() if n not in SAGAS)
    # The verdict alone for the anonymous.
    assert health(Client(), details=False) == (503, {"status": "unhealthy", "healthy": False})

    poison.clear()
    assert retry_instance(SAGA, transfers["stuck"]) == 1
    caught_up()

    status, body = health(client)
    assert status == 200, body["projections"][SAGA]["problems"]
    assert body["projections"][SAGA]["saga"]["parked_instances"] == 0
    assert body["projections"][SAGA]["problems"] == []
    assert health(Client(), details=False) == (200, {"status": "ok", "healthy": True})


def test_the_events_a_parked_instance_holds_are_said_with_it(
    client: Client, transfers: dict[str, str]
) -> None:
    command_bus.dispatch(ConfirmTransfer(transfer_id=uuid.UUID(transfers["stuck"])))
    caught_up()

    status, body = health(client)

    assert status == 503
    entry = body["projections"][SAGA]
    assert entry["parked"] == 1  # the held confirmation (the request is recorded skipped)
    assert entry["problems"] == ["1 parked instance (1 later event held)"]

    assert skip_instance(SAGA, transfers["stuck"]) == 1
    caught_up()
    assert health(client)[0] == 200


def test_a_projection_wide_retry_leaves_the_instance_parked_and_the_saga_unhealthy(
    transfers: dict[str, str],
) -> None:
    command_bus.dispatch(ConfirmTransfer(transfer_id=uuid.UUID(transfers["stuck"])))
    caught_up()

    retry(SAGA)  # what cqrs_retry does: the saga's parked events are marked retried

    report = health_report()
    assert TransferRun.objects.get(key=transfers["stuck"]).parked
    assert report["projections"][SAGA]["parked"] == 0
    assert report["projections"][SAGA]["problems"] == ["1 parked instance"]
    assert report["healthy"] is False


def test_an_overdue_deadline_makes_the_saga_unhealthy(
    client: Client, settings: Any, transfers: dict[str, str], poison: set[int]
) -> None:
    poison.clear()
    retry_instance(SAGA, transfers["stuck"])
    caught_up()
    assert health(client)[0] == 200
    SagaDeadline.objects.filter(instance_key=transfers["waiting"]).update(
        due_at=timezone.now() - dt.timedelta(hours=1)
    )

    status, body = health(client)

    assert status == 503
    assert body["projections"][SAGA]["problems"] == ["1 overdue deadline (due more than 120 s ago)"]
    assert body["projections"][SAGA]["saga"]["overdue_deadlines"] == 1
