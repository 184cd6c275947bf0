"""Stored events that cannot be handled are parked, never a stall, in every projection mode.

An import script writes rows straight into the log (inserts are allowed; the bus never
sees them): a payload that is not an object, an unknown field, a value its field cannot
read, a missing field, a schema version the code does not know. A sync projection never
meets such a row live (it applies the events of its own commands), but its rebuild
does; an async projection meets it in its catch-up and in its rebuild. Each is parked
with its error and traceback, health says so at once, and skip, retry and rebuild go on
past it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_cqrs import command_bus
from django_cqrs.events import Event, register_event_type
from django_cqrs.models import ParkedEvent, ProjectionState, StoredEvent
from django_cqrs.projections import catchup
from django_cqrs.projections.catchup import catch_up
from django_cqrs.projections.health import health_report
from django_cqrs.projections.rebuild import rebuild
from tests.test_projections_catchup import (
    MOVEMENTS,
    TOTALS,
    assert_matches_rebuild,
    head,
    rows,
    state,
    status_of,
)
from tests.testapp import async_projections
from tests.testapp import events as testapp_events
from tests.testapp.async_projections import (
    AccountMovementCountProjection,
    AccountTotalsProjection,
)
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.events import Deposited
from tests.testapp.models import AccountMovementCount, AccountTotals, AccountView
from tests.testapp.projections import AccountViewProjection

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_trigger")]

VIEW = AccountViewProjection.name
_versions = itertools.count(10_000)


def bad_payloads(account_id: int) -> dict[str, Any]:
    """Payloads an import script might write for a deposit, by what is wrong with them."""
    return {
        "not an object": [1, 2, 3],
        "text": "deposit",
        "unknown field": {
            "account_id": account_id,
            "amount": "5",
            "balance": "5",
            "currency": "EUR",
        },
        "undecodable value": {"account_id": account_id, "amount": "five", "balance": "5"},
        "missing field": {"account_id": account_id},
        "unhashable key": {"account_id": [account_id], "amount": "5", "balance": "5"},
    }


PAYLOADS = list(bad_payloads(0))
ERRORS = {
    "not an object": "the stored payload is list [1, 2, 3], not an object",
    "text": "the stored payload is str 'deposit', not an object",
    "unknown field": "field(s) 'currency' that Deposited (version 1) does not declare",
    "undecodable value": "Deposited.amount: cannot read 'five' as Decimal",
    "missing field": "missing 2 required positional arguments",
    "unhashable key": "Deposited.account_id",
}


def inject(account_id: int, payload: Any, *, schema_version: int = 1) -> int:
    """Write a deposit row into the log as an import script would; return its position."""
    [row] = StoredEvent.objects.bulk_create(
        [
            StoredEvent(
                event_type=Deposited.event_type,
                schema_version=schema_version,
                aggregate_type="testapp.Account",
                aggregate_id=str(account_id),
                aggregate_version=next(_versions),
                payload=payload,
                metadata={"source": "import"},
                recorded_at=timezone.now(),
            )
        ]
    )
    return StoredEvent.objects.filter(aggregate_version=row.aggregate_version).get().position


def deposit(account_id: int, amount: str) -> int:
    return command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal(amount))).position


def account_with_poison(payload_name: str) -> tuple[int, int]:
    """An account with a deposit of 10, a bad row, then a deposit of 20; (account, bad)."""
    account_id = command_bus.dispatch(OpenAccount(owner="alice")).value
    deposit(account_id, "10")
    bad = inject(account_id, bad_payloads(account_id)[payload_name])
    deposit(account_id, "20")
    return account_id, bad


def unhealthy_because(name: str) -> list[str]:
    report = health_report()
    assert report["healthy"] is False
    entry = report["projections"][name]
    assert entry["healthy"] is False
    problems: list[str] = entry["problems"]
    return problems


def assert_parked_at_once(name: str, position: int, error: str) -> ParkedEvent:
    parked = ParkedEvent.objects.get(projection=name, position=position)
    assert parked.resolution == ParkedEvent.Resolution.PARKED
    assert parked.attempts == 1
    assert parked.event_type == Deposited.event_type
    assert error in parked.error
    assert "Traceback" in parked.traceback
    return parked


@pytest.fixture(autouse=True)
def _clean_module_state() -> Iterator[None]:
    async_projections.POISON.clear()
    yield
    async_projections.POISON.clear()


# -- async catch-up ------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("name", [TOTALS, MOVEMENTS], ids=["by-aggregate", "by-key-field"])
def test_an_async_catch_up_parks_an_undecodable_event_at_once_and_skip_goes_on(
    name: str, payload: str, client: Client
) -> None:
    account_id, bad = account_with_poison(payload)

    catch_up(name)  # neither raises nor waits for retries: the payload cannot change

    assert state(name).state == ProjectionState.State.STOPPED
    assert state(name).position == bad - 1  # everything before it is applied
    assert_parked_at_once(name, bad, ERRORS[payload])
    assert "1 parked event" in unhealthy_because(name)
    assert client.get(reverse("django_cqrs:health")).status_code == 503
    assert status_of(name)["parked"] == 1

    out = StringIO()
    call_command("cqrs_skip", name, str(bad), stdout=out)

    assert f"skipped position {bad}" in out.getvalue()
    assert (state(name).state, state(name).position) == (ProjectionState.State.LIVE, head())
    model = AccountTotals if name == TOTALS else AccountMovementCount
    counted = model.objects.get(pk=account_id)
    if name == TOTALS:
        assert (counted.deposits, counted.deposited) == (2, Decimal("30"))
    else:
        assert counted.movements == 2
    assert health_report()["projections"][name]["healthy"] is True
    projection = AccountTotalsProjection if name == TOTALS else AccountMovementCountProjection
    assert_matches_rebuild(projection)  # the rebuild passes over the skipped event too


def test_retrying_an_undecodable_event_parks_it_again_and_the_projection_waits(
    settings: Any,
) -> None:
    account_id, bad = account_with_poison("not an object")
    catch_up(MOVEMENTS)

    with pytest.raises(CommandError, match=f"failed again and parked position {bad}"):
        call_command("cqrs_retry", MOVEMENTS, stdout=StringIO())

    assert (state(MOVEMENTS).state, state(MOVEMENTS).position) == ("stopped", bad - 1)
    assert ParkedEvent.objects.get(projection=MOVEMENTS).resolution == "parked"
    assert AccountMovementCount.objects.get(pk=account_id).movements == 1


def test_on_failure_skip_passes_over_an_undecodable_event_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(AccountMovementCountProjection, "on_failure", "skip")
    account_id, bad = account_with_poison("unhashable key")

    catch_up(MOVEMENTS)

    assert (state(MOVEMENTS).state, state(MOVEMENTS).position) == ("live", head())
    assert AccountMovementCount.objects.get(pk=account_id).movements == 2
    parked = ParkedEvent.objects.get(projection=MOVEMENTS, position=bad)
    assert (parked.resolution, parked.attempts) == ("skipped", 1)
    assert_matches_rebuild(AccountMovementCountProjection)


def test_an_event_skipped_before_the_catch_up_met_it_is_passed_over() -> None:
    account_id, bad = account_with_poison("not an object")

    call_command("cqrs_skip", MOVEMENTS, str(bad), stdout=StringIO())

    assert (state(MOVEMENTS).state, state(MOVEMENTS).position) == ("live", head())
    assert AccountMovementCount.objects.get(pk=account_id).movements == 2
    assert_matches_rebuild(AccountMovementCountProjection)


def test_a_schema_version_newer_than_the_code_is_retried_then_parked(settings: Any) -> None:
    """Newer code may be on its way (a deploy): the event gets its retries first."""
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    account_id = command_bus.dispatch(OpenAccount(owner="alice")).value
    payload = {"account_id": account_id, "amount": "5", "balance": "5"}
    bad = inject(account_id, payload, schema_version=9)

    catch_up(MOVEMENTS)  # no backoff: the retries run at once

    parked = ParkedEvent.objects.get(projection=MOVEMENTS, position=bad)
    assert parked.attempts == AccountMovementCountProjection.max_retries + 1
    assert "stored schema version 9 is newer than the code's 1" in parked.error
    assert state(MOVEMENTS).state == ProjectionState.State.STOPPED


@pytest.mark.parametrize("name", [TOTALS, MOVEMENTS], ids=["by-aggregate", "by-key-field"])
def test_a_value_the_read_model_cannot_hold_is_found_in_its_batch_parked_and_skipped(
    name: str, settings: Any
) -> None:
    """The payload decodes, but no row can hold it: the batch's write fails, not an event."""
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    account_id = command_bus.dispatch(OpenAccount(owner="alice")).value
    deposit(account_id, "10")
    huge = 2**70  # beyond any integer column
    bad = inject(account_id, {"account_id": huge, "amount": "5", "balance": "5"})
    deposit(account_id, "20")

    catch_up(name)  # was: the prefetch (then the write) raised, every time

    assert (state(name).state, state(name).position) == ("stopped", bad - 1)
    parked = ParkedEvent.objects.get(projection=name, position=bad)
    assert parked.attempts == AccountTotalsProjection.max_retries + 1  # may be transient
    assert "Traceback" in parked.traceback
    assert "1 parked event" in unhealthy_because(name)

    call_command("cqrs_skip", name, str(bad), stdout=StringIO())

    assert (state(name).state, state(name).position) == ("live", head())
    projection = AccountTotalsProjection if name == TOTALS else AccountMovementCountProjection
    assert list(projection.read_models[0].objects.values_list("pk", flat=True)) == [account_id]
    assert_matches_rebuild(projection)


def test_a_rebuild_finds_the_event_whose_rows_cannot_be_written() -> None:
    account_id = command_bus.dispatch(OpenAccount(owner="alice")).value
    deposit(account_id, "10")
    bad = inject(account_id, {"account_id": 2**70, "amount": "5", "balance": "5"})

    rebuild_fails_at(MOVEMENTS, bad)

    assert ParkedEvent.objects.get(projection=MOVEMENTS, position=bad).resolution == "parked"


@pytest.fixture
def reloaded_deposited() -> Iterator[type[Event]]:
    """``Deposited`` defined again (its module imported again): the log decodes to the copy."""

    @dataclasses.dataclass(frozen=True)
    class Deposited(Event, name="testapp.Deposited"):
        __module__ = "tests.testapp.events"
        __qualname__ = "Deposited"
        account_id: int
        amount: Decimal
        balance: Decimal

    try:
        yield Deposited
    finally:
        register_event_type(testapp_events.Deposited)


def test_an_event_that_decodes_to_a_class_the_projection_does_not_handle_is_parked(
    reloaded_deposited: type[Event],
) -> None:
    account_id = command_bus.dispatch(OpenAccount(owner="alice")).value
    bad = inject(account_id, {"account_id": account_id, "amount": "5", "balance": "5"})

    catch_up(MOVEMENTS)  # was: passed over as if the projection did not handle deposits

    assert state(MOVEMENTS).position == bad - 1
    assert_parked_at_once(MOVEMENTS, bad, "which testapp.AccountMovementCountProjection does not")


# -- the admin dashboard ---------------------------------------------------------------------


@pytest.fixture
def operator(django_user_model: Any) -> Client:
    user = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    for codename in ("view_projectionstate", "operate_projection", "rebuild_projection"):
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_cqrs", codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def action(name: str, slug: str) -> str:
    return reverse(f"admin:django_cqrs_projectionstate_{slug.replace('-', '_')}", args=[name])


def test_catch_up_now_on_an_undecodable_event_parks_it_and_answers_with_the_dashboard(
    operator: Client,
) -> None:
    _, bad = account_with_poison("not an object")

    response = operator.post(action(MOVEMENTS, "catch-up"), follow=True)

    assert response.redirect_chain[0][1] == 302
    assert response.status_code == 200
    assert "1 parked event" in response.content.decode()
    detail = operator.get(reverse("admin:django_cqrs_projectionstate_change", args=[MOVEMENTS]))
    assert "not an object" in detail.content.decode()
    assert operator.post(action(MOVEMENTS, "skip"), {"position": bad}).status_code == 302
    assert (state(MOVEMENTS).state, state(MOVEMENTS).position) == ("live", head())


def test_a_dashboard_action_that_breaks_answers_with_the_error_not_a_500(
    operator: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the read model's table is gone")

    monkeypatch.setattr("django_cqrs.admin.projections.run_catch_up", broken)

    response = operator.post(action(TOTALS, "catch-up"), follow=True)

    assert response.redirect_chain[0][1] == 302
    assert "RuntimeError: the read model&#x27;s table is gone" in response.content.decode()


# -- rebuilds ----------------------------------------------------------------------------


def rebuild_fails_at(name: str, position: int) -> str:
    with pytest.raises(CommandError) as info:
        call_command("cqrs_rebuild", name, "--no-progress", stdout=StringIO())
    message = str(info.value)
    assert f"stopped at position {position}" in message
    assert f"cqrs_skip {name} {position}" in message
    return message


def test_an_async_rebuild_parks_an_undecodable_event_and_resumes_past_it_once_skipped() -> None:
    account_id, bad = account_with_poison("undecodable value")
    live = rows(AccountMovementCount)

    rebuild_fails_at(MOVEMENTS, bad)

    assert rows(AccountMovementCount) == live  # readers still see the old rows
    assert_parked_at_once(MOVEMENTS, bad, ERRORS["undecodable value"])
    assert "1 parked event" in unhealthy_because(MOVEMENTS)
    assert status_of(MOVEMENTS)["rebuilding"] is True

    call_command("cqrs_skip", MOVEMENTS, str(bad), stdout=StringIO())
    call_command("cqrs_rebuild", MOVEMENTS, "--no-progress", stdout=StringIO())

    assert AccountMovementCount.objects.get(pk=account_id).movements == 2
    assert status_of(MOVEMENTS)["rebuilding"] is False
    assert (state(MOVEMENTS).state, state(MOVEMENTS).position) == ("live", head())
    assert health_report()["projections"][MOVEMENTS]["healthy"] is True
    assert_matches_rebuild(AccountMovementCountProjection)


def test_a_sync_rebuild_parks_an_undecodable_event_and_resumes_past_it_once_skipped() -> None:
    account_id, bad = account_with_poison("not an object")
    # Live, the sync projection never met the row: its commands carry their own events.
    assert AccountView.objects.get(pk=account_id).balance == "30.00"
    assert health_report()["projections"][VIEW]["healthy"] is True

    rebuild_fails_at(VIEW, bad)

    assert_parked_at_once(VIEW, bad, ERRORS["not an object"])
    assert "1 parked event" in unhealthy_because(VIEW)
    assert (status_of(VIEW)["status"], status_of(VIEW)["rebuilding"]) == ("live", True)
    deposit(account_id, "5")  # commands go on, and the live rows with them
    assert AccountView.objects.get(pk=account_id).balance == "35.00"
    with pytest.raises(CommandError, match="cqrs_rebuild"):
        call_command("cqrs_retry", VIEW, stdout=StringIO())

    out = StringIO()
    call_command("cqrs_skip", VIEW, str(bad), stdout=out)
    assert f"skipped position {bad}" in out.getvalue()
    call_command("cqrs_rebuild", VIEW, "--no-progress", stdout=StringIO())

    view = AccountView.objects.get(pk=account_id)
    assert (view.balance, view.movements) == ("35.00", 3)
    assert (status_of(VIEW)["status"], status_of(VIEW)["rebuilding"]) == ("live", False)
    assert health_report()["projections"][VIEW]["healthy"] is True
    assert ParkedEvent.objects.get(projection=VIEW).resolution == "skipped"
    live = rows(AccountView)
    rebuild(AccountViewProjection, restart=True)
    assert rows(AccountView) == live


def test_a_sync_projection_skips_only_what_its_rebuild_has_not_passed() -> None:
    _, bad = account_with_poison("not an object")
    before = list(ParkedEvent.objects.values())

    with pytest.raises(CommandError, match="sync projection: it applied position"):
        call_command("cqrs_skip", VIEW, str(bad), stdout=StringIO())  # no rebuild is running

    assert list(ParkedEvent.objects.values()) == before


def test_a_rebuild_that_applies_a_parked_event_resolves_it(settings: Any) -> None:
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    async_projections.POISON.add(Decimal("13"))
    account_id = command_bus.dispatch(OpenAccount(owner="alice")).value
    for amount in ("10", "13", "20"):
        deposit(account_id, amount)
    catch_up(TOTALS)
    assert state(TOTALS).state == ProjectionState.State.STOPPED

    async_projections.POISON.clear()  # the handler is fixed, and the read model rebuilt
    call_command("cqrs_rebuild", TOTALS, "--no-progress", stdout=StringIO())

    assert (state(TOTALS).state, state(TOTALS).position) == ("live", head())
    assert AccountTotals.objects.get(pk=account_id).deposits == 3
    assert ParkedEvent.objects.get(projection=TOTALS).resolution == "retried"
    assert health_report()["projections"][TOTALS]["healthy"] is True


def test_skip_refuses_what_makes_no_sense_and_changes_nothing() -> None:
    _, bad = account_with_poison("not an object")
    catch_up(TOTALS)

    def snapshot() -> Any:
        return list(ProjectionState.objects.order_by("name").values()), list(
            ParkedEvent.objects.order_by("pk").values()
        )

    before = snapshot()
    refused: list[Callable[[], Any]] = [
        lambda: catchup.skip(TOTALS, 1),  # already passed
        lambda: catchup.skip(VIEW, bad),  # sync, no rebuild running, not parked for it
        lambda: catchup.skip(TOTALS, head() + 50),  # no such event
    ]
    for call in refused:
        with pytest.raises(catchup.ProjectionError):
            call()
        assert snapshot() == before
