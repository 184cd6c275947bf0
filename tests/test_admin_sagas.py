"""Sagas in the admin: instances with their steps, deadlines and parked events; retry, skip.

``tests.testapp.sagas.TransferSaga`` keeps its instances in ``TransferRun``, which
``django_cqrs.admin.sagas.autoregister_sagas`` registers at start-up. A poison event
(``POISON_SOURCES``) parks an instance; the tests drive the saga's catch-up themselves.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from demo_project.orders.models import Checkout
from django_cqrs import command_bus
from django_cqrs.admin import SagaDeadlineAdmin, SagaInstanceAdmin, autoregister_sagas
from django_cqrs.models import ParkedEvent, SagaDeadline
from django_cqrs.projections.catchup import catch_up
from tests.test_admin import staff
from tests.testapp import sagas
from tests.testapp.commands import ConfirmTransfer, Deposit, OpenAccount, RequestTransfer
from tests.testapp.models import Account, TransferRun
from tests.testapp.sagas import TransferSaga

pytestmark = pytest.mark.django_db

SAGA = TransferSaga.name


# -- helpers and fixtures ---------------------------------------------------------------


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:{name}", args=args)


def list_url(query: str = "") -> str:
    return url("testapp_transferrun_changelist") + query


def change_url(run: TransferRun) -> str:
    return url("testapp_transferrun_change", run.pk)


def action_url(run: TransferRun, action: str) -> str:
    return url(f"testapp_transferrun_{action}", run.pk)


@pytest.fixture
def viewer(django_user_model: Any) -> Client:
    """Staff who may look at the instances and deadlines, but not act."""
    return staff(
        django_user_model, "viewer", "testapp.view_transferrun", "django_cqrs.view_sagadeadline"
    )


@pytest.fixture
def operator(django_user_model: Any) -> Client:
    """Staff who may also retry and skip: the projections' operate permission."""
    return staff(
        django_user_model,
        "operator",
        "testapp.view_transferrun",
        "django_cqrs.operate_projection",
    )


def account(owner: str, balance: str = "0") -> int:
    account_id: int = command_bus.dispatch(OpenAccount(owner=owner)).value
    if Decimal(balance):
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal(balance)))
    return account_id


def transfer(source: int, target: int, amount: str, fee: str = "0") -> tuple[uuid.UUID, int]:
    transfer_id = uuid.uuid4()
    result = command_bus.dispatch(
        RequestTransfer(
            transfer_id=transfer_id,
            source_id=source,
            target_id=target,
            amount=Decimal(amount),
            fee=Decimal(fee),
        )
    )
    return transfer_id, result.position


def run(transfer_id: uuid.UUID) -> TransferRun:
    return TransferRun.objects.get(key=str(transfer_id))


def balance(account_id: int) -> Decimal:
    return Account.objects.get(pk=account_id).balance


@pytest.fixture
def poison() -> Iterator[set[int]]:
    yield sagas.POISON_SOURCES
    sagas.POISON_SOURCES.clear()


@pytest.fixture
def transfers(settings: Any, poison: set[int]) -> dict[str, Any]:
    """Four instances: awaiting confirmation, completed, compensated, and parked (with the
    confirmation that came after its poison event held too)."""
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    alice, bob, carol = account("alice", "100"), account("bob"), account("carol", "100")
    waiting, _ = transfer(alice, bob, "30", fee="1")
    done, _ = transfer(alice, bob, "10")
    refused, _ = transfer(alice, bob, "5", fee="50")  # bob cannot pay the fee
    poison.add(carol)
    stuck, stuck_at = transfer(carol, bob, "20")
    catch_up(SAGA)
    command_bus.dispatch(ConfirmTransfer(transfer_id=done))
    held_at = command_bus.dispatch(ConfirmTransfer(transfer_id=stuck)).position
    catch_up(SAGA)
    assert run(stuck).parked_positions == [stuck_at, held_at]
    return {
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "waiting": run(waiting),
        "done": run(done),
        "refused": run(refused),
        "stuck": run(stuck),
        "stuck_at": stuck_at,
        "held_at": held_at,
    }


def rows(html: str) -> list[str]:
    """The rows of the changelist, as their HTML."""
    return re.findall(r'<tr><th class="field-instance_key">.*?</tr>', html, re.S)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def log_entries(obj: Any) -> list[LogEntry]:
    return list(LogEntry.objects.filter(object_id=str(obj.pk)).order_by("pk"))


# -- registration -------------------------------------------------------------------------


def test_every_saga_instance_model_is_registered_at_start_up() -> None:
    assert type(admin.site.get_model_admin(TransferRun)) is SagaInstanceAdmin
    assert type(admin.site.get_model_admin(SagaDeadline)) is SagaDeadlineAdmin


def test_autoregistration_keeps_an_explicit_admin() -> None:
    class MyAdmin(admin.ModelAdmin):
        pass

    site = admin.AdminSite(name="sagas")
    site.register(Checkout, MyAdmin)  # an app's admin.py registered its own
    assert autoregister_sagas(site) == [TransferRun]
    assert type(site.get_model_admin(Checkout)) is MyAdmin
    assert autoregister_sagas(site) == []

    other = admin.AdminSite(name="other")
    other.register(TransferRun, MyAdmin)
    assert autoregister_sagas(other) == [Checkout]
    assert type(other.get_model_admin(TransferRun)) is MyAdmin


# -- the list ------------------------------------------------------------------------------


def test_the_list_shows_state_last_step_steps_parked_error_and_times(
    admin_client: Client, transfers: dict[str, Any]
) -> None:
    response = admin_client.get(list_url())

    assert response.status_code == 200
    html = response.content.decode()
    by_key = {}
    for row in rows(html):
        key = re.search(r'<span title="([^"]+)">', row)
        assert key is not None
        by_key[key.group(1)] = row
    assert set(by_key) == {transfers[n].key for n in ("waiting", "done", "refused", "stuck")}
    waiting = by_key[transfers["waiting"].key]
    assert "awaiting_<wbr>confirmation" in waiting
    assert 'fee<span class="cqrs-sub">succeeded · 3\u00a0steps</span>' in waiting
    assert f"{transfers['waiting'].key[:8]}…" in waiting  # the key cut short
    assert "updated" in waiting
    assert "finished" not in waiting
    done = by_key[transfers["done"].key]
    assert 'cqrs-badge ok">completed' in done
    assert "finished" in done
    assert 'confirmed<span class="cqrs-sub">succeeded · 3\u00a0steps</span>' in done
    refused = by_key[transfers["refused"].key]
    assert "compensated" in refused
    assert "fee: balance cannot go below zero" in refused
    stuck = by_key[transfers["stuck"].key]
    assert ">parked</span>" in stuck
    assert "held at 2 events" in stuck
    assert f"RuntimeError: cannot process transfers from account {transfers['carol']}" in stuck
    assert "no step yet" in stuck
    for name in ("waiting", "done", "refused"):
        assert ">parked</span>" not in by_key[transfers[name].key]


def test_the_list_filters_by_state_and_parked_and_searches_keys(
    admin_client: Client, transfers: dict[str, Any]
) -> None:
    def keys(query: str) -> set[str]:
        html = admin_client.get(list_url(query)).content.decode()
        return {k for k in re.findall(r'<span title="([^"]+)">', html) if len(k) == 36}

    assert keys("?parked=yes") == {transfers["stuck"].key}
    assert keys("?parked=no") == {transfers[n].key for n in ("waiting", "done", "refused")}
    assert keys("?state=compensated") == {transfers["refused"].key}
    assert keys(f"?q={transfers['done'].key[:13]}") == {transfers["done"].key}
    assert keys(f"?q={transfers['done'].key}") == {transfers["done"].key}
    page = admin_client.get(list_url()).content.decode()
    assert "By state" in page
    assert "By parked" in page


# -- one instance --------------------------------------------------------------------------


def test_the_change_page_shows_the_step_history_and_the_pending_deadline(
    viewer: Client, transfers: dict[str, Any]
) -> None:
    response = viewer.get(change_url(transfers["waiting"]))

    assert response.status_code == 200
    html = response.content.decode()
    steps = re.findall(r'<tr class="cqrs-step" data-step="([^"]+)" data-outcome="([^"]+)"', html)
    assert steps == [("withdraw", "succeeded"), ("deposit", "succeeded"), ("fee", "succeeded")]
    text = html.replace("<wbr>", "")
    assert "tests.testapp.commands.Withdraw" in text
    assert "compensation: tests.testapp.commands.Deposit" in text
    assert 'data-deadline="confirmation" data-state="pending"' in html
    deadlines = re.search(r'<a href="([^"]+)">These deadlines in the deadline list', html)
    assert deadlines is not None
    listed = viewer.get(deadlines.group(1).replace("&amp;", "&")).content.decode()
    assert re.findall(r'title="([0-9a-f-]{36})"', listed) == [transfers["waiting"].key]
    assert "Parked events (0)" in html
    assert SAGA in html  # the saga, linked
    # Read-only: no form to save, no retry or skip.
    assert 'name="_save"' not in html
    assert "cqrs-retry-link" not in html


def test_the_change_page_shows_a_compensation_and_its_failed_step(
    viewer: Client, transfers: dict[str, Any]
) -> None:
    html = viewer.get(change_url(transfers["refused"])).content.decode()

    steps = re.findall(r'<tr class="cqrs-step" data-step="([^"]+)" data-outcome="([^"]+)"', html)
    assert steps == [
        ("withdraw", "succeeded"),
        ("deposit", "succeeded"),
        ("fee", "failed"),
        ("compensate deposit", "compensated"),
        ("compensate withdraw", "compensated"),
    ]
    assert "balance cannot go below zero" in html
    assert "Deadlines (0)" in html  # it failed before it set one


def test_a_finished_instance_shows_its_cancelled_deadline(
    viewer: Client, transfers: dict[str, Any]
) -> None:
    html = viewer.get(change_url(transfers["done"])).content.decode()

    assert 'data-deadline="confirmation" data-state="cancelled"' in html


def test_the_change_page_of_a_parked_instance_lists_its_events_with_links(
    operator: Client, transfers: dict[str, Any]
) -> None:
    html = operator.get(change_url(transfers["stuck"])).content.decode()

    assert "Parked events (2)" in html
    for position in (transfers["stuck_at"], transfers["held_at"]):
        assert f'data-position="{position}"' in html
        assert url("django_cqrs_storedevent_change", position) in html
    assert "cannot process transfers from account" in html
    assert "held: instance" in html
    assert "Traceback (most recent call last)" in html
    assert action_url(transfers["stuck"], "retry") in html
    assert action_url(transfers["stuck"], "skip") in html


def test_the_change_page_shows_an_overdue_deadline(
    admin_client: Client, transfers: dict[str, Any]
) -> None:
    SagaDeadline.objects.filter(instance_key=transfers["waiting"].key).update(
        due_at=timezone.now() - timezone.timedelta(hours=1), last_error="RuntimeError: boom"
    )

    html = admin_client.get(change_url(transfers["waiting"])).content.decode()

    assert 'data-deadline="confirmation" data-state="overdue"' in html
    assert "RuntimeError: boom" in html


# -- permissions ---------------------------------------------------------------------------


def test_staff_without_the_permissions_get_403(
    django_user_model: Any, client: Client, transfers: dict[str, Any]
) -> None:
    stuck = transfers["stuck"]
    pages = [list_url(), change_url(stuck), url("django_cqrs_sagadeadline_changelist")]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 302, page
        assert "/login/" in response["Location"], page
    nobody = staff(django_user_model, "nobody")
    for page in pages:
        assert nobody.get(page).status_code == 403, page
    # The operate permission without the model's view permission opens nothing either.
    blind = staff(django_user_model, "blind", "django_cqrs.operate_projection")
    for action in ("retry", "skip"):
        assert nobody.post(action_url(stuck, action), {"confirm": "yes"}).status_code == 403
        assert blind.post(action_url(stuck, action), {"confirm": "yes"}).status_code == 403
    assert run(uuid.UUID(stuck.key)).parked
    assert not LogEntry.objects.exists()


def test_a_viewer_sees_the_instances_but_may_not_retry_or_skip(
    viewer: Client, transfers: dict[str, Any], poison: set[int]
) -> None:
    stuck = transfers["stuck"]
    poison.clear()
    assert viewer.get(list_url()).status_code == 200
    page = viewer.get(change_url(stuck)).content.decode()
    assert "Parked events (2)" in page
    assert "cqrs-retry-link" not in page

    for action in ("retry", "skip"):
        assert viewer.get(action_url(stuck, action)).status_code == 403
        assert viewer.post(action_url(stuck, action), {"confirm": "yes"}).status_code == 403

    assert run(uuid.UUID(stuck.key)).parked
    assert not LogEntry.objects.exists()


def test_the_instance_pages_are_read_only(admin_client: Client, transfers: dict[str, Any]) -> None:
    stuck = transfers["stuck"]
    before = list(TransferRun.objects.order_by("pk").values())
    data = {"key": "changed", "state": "completed", "_save": "Save"}

    assert admin_client.get(url("testapp_transferrun_add")).status_code == 403
    assert admin_client.post(url("testapp_transferrun_add"), data).status_code == 403
    assert admin_client.post(change_url(stuck), data).status_code == 403
    assert admin_client.post(url("testapp_transferrun_delete", stuck.pk)).status_code == 403
    admin_client.post(
        list_url(), {"action": "delete_selected", "_selected_action": [str(stuck.pk)]}
    )

    assert list(TransferRun.objects.order_by("pk").values()) == before


# -- retry and skip ------------------------------------------------------------------------


def test_retry_asks_first_then_needs_a_confirmed_post(
    operator: Client, transfers: dict[str, Any], poison: set[int]
) -> None:
    stuck = transfers["stuck"]
    poison.clear()  # the cause is fixed

    confirm = operator.get(action_url(stuck, "retry"))
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert 'name="confirm" value="yes"' in page
    assert f"{transfers['stuck_at']}, {transfers['held_at']}" in page
    # Neither the question nor a POST without the answer changes anything.
    assert operator.post(action_url(stuck, "retry")).status_code == 200
    assert operator.put(action_url(stuck, "retry")).status_code == 405
    assert run(uuid.UUID(stuck.key)).parked
    assert not LogEntry.objects.exists()

    response = operator.post(action_url(stuck, "retry"), {"confirm": "yes"}, follow=True)

    instance = run(uuid.UUID(stuck.key))
    assert not instance.parked
    assert instance.state == "completed"  # the held confirmation applied too
    # bob: 30 less the fee of 1, 10, 5 taken back, and now carol's 20.
    assert (balance(transfers["carol"]), balance(transfers["bob"])) == (
        Decimal("80"),
        Decimal("59"),
    )
    assert set(
        ParkedEvent.objects.filter(projection=SAGA).values_list("resolution", flat=True)
    ) == {"retried"}
    assert any("Retried the parked events" in m for m in messages_of(response))
    [entry] = log_entries(instance)
    assert entry.action_flag == CHANGE
    assert entry.user.username == "operator"
    assert entry.content_type.model_class() is TransferRun
    assert entry.change_message == (
        f"Retry: Retried the parked events of instance {instance.key}: 2 events applied. "
        "It is now completed."
    )
    history = operator.get(url("testapp_transferrun_history", instance.pk)).content.decode()
    assert "Retried the parked events" in history


def test_a_retry_that_fails_again_changes_nothing_and_says_why(
    operator: Client, transfers: dict[str, Any]
) -> None:
    stuck = transfers["stuck"]  # the poison is still there

    response = operator.post(action_url(stuck, "retry"), {"confirm": "yes"}, follow=True)

    assert response.status_code == 200
    assert any(
        "Retry failed" in m and "RuntimeError: cannot process transfers" in m
        for m in messages_of(response)
    )
    assert run(uuid.UUID(stuck.key)).parked_positions == [
        transfers["stuck_at"],
        transfers["held_at"],
    ]
    assert balance(transfers["carol"]) == Decimal("100")
    assert log_entries(stuck) == []


def test_skip_gives_up_the_failing_event_and_applies_the_held_ones(
    operator: Client, transfers: dict[str, Any]
) -> None:
    stuck = transfers["stuck"]  # the poison stays: only its event is skipped

    assert operator.get(action_url(stuck, "skip")).status_code == 200
    assert run(uuid.UUID(stuck.key)).parked

    response = operator.post(action_url(stuck, "skip"), {"confirm": "yes"}, follow=True)

    instance = run(uuid.UUID(stuck.key))
    assert not instance.parked
    assert balance(transfers["carol"]) == Decimal("100")  # the transfer never ran
    resolutions = dict(
        ParkedEvent.objects.filter(projection=SAGA).values_list("position", "resolution")
    )
    assert resolutions == {transfers["stuck_at"]: "skipped", transfers["held_at"]: "retried"}
    [entry] = log_entries(instance)
    assert entry.change_message.startswith(
        f"Skip: Skipped the event at position {transfers['stuck_at']} of instance "
        f"{instance.key}: 1 event applied (held after it)."
    )
    assert any("Skipped the event" in m for m in messages_of(response))


def test_retry_and_skip_do_not_apply_to_an_instance_that_is_not_parked(
    operator: Client, transfers: dict[str, Any]
) -> None:
    waiting = transfers["waiting"]
    page = operator.get(change_url(waiting)).content.decode()
    assert "cqrs-retry-link" not in page

    for action in ("retry", "skip"):
        response = operator.post(action_url(waiting, action), {"confirm": "yes"}, follow=True)
        assert any("does not apply" in m for m in messages_of(response)), action
    assert operator.post(url("testapp_transferrun_retry", 999_999)).status_code == 404
    assert log_entries(waiting) == []


# -- deadlines -----------------------------------------------------------------------------


def test_the_deadline_list_shows_pending_fired_and_cancelled_deadlines(
    viewer: Client, transfers: dict[str, Any]
) -> None:
    SagaDeadline.objects.filter(instance_key=transfers["waiting"].key).update(
        due_at=timezone.now() - timezone.timedelta(hours=1)
    )
    deadlines = url("django_cqrs_sagadeadline_changelist")

    def count(query: str) -> int:
        html = viewer.get(deadlines + query).content.decode()
        return len(re.findall(r'<td class="field-instance">', html))

    # Set by the waiting and the completed transfers (the others failed before).
    assert count("") == SagaDeadline.objects.count() == 2
    assert count("?state=pending") == 1
    assert count("?state=overdue") == 1
    assert count("?state=cancelled") == 1
    assert count("?state=fired") == 0
    assert count(f"?saga={SAGA}") == 2
    assert count("?saga=nope.Nothing") == 0
    html = viewer.get(deadlines).content.decode()
    assert "overdue" in html
    assert "cancelled" in html
    # Each row links to its instance's page.
    link = url("testapp_transferrun_by_key") + f"?key={transfers['waiting'].key}"
    assert link in html
    assert viewer.get(link).url == change_url(transfers["waiting"])


def test_deadlines_are_read_only(admin_client: Client, transfers: dict[str, Any]) -> None:
    deadline = SagaDeadline.objects.first()
    assert deadline is not None
    before = list(SagaDeadline.objects.order_by("pk").values())

    assert admin_client.get(url("django_cqrs_sagadeadline_add")).status_code == 403
    page = admin_client.get(url("django_cqrs_sagadeadline_change", deadline.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert (
        admin_client.post(
            url("django_cqrs_sagadeadline_change", deadline.pk), {"name": "x"}
        ).status_code
        == 403
    )
    assert admin_client.post(url("django_cqrs_sagadeadline_delete", deadline.pk)).status_code == 403

    assert list(SagaDeadline.objects.order_by("pk").values()) == before


# -- the saga on the projections dashboard ---------------------------------------------------


def test_the_saga_page_links_its_instances_and_refuses_projection_wide_fixes(
    django_user_model: Any, transfers: dict[str, Any]
) -> None:
    operator = staff(
        django_user_model,
        "operator",
        "django_cqrs.view_projectionstate",
        "django_cqrs.operate_projection",
        "testapp.view_transferrun",
    )
    detail = url("django_cqrs_projectionstate_change", SAGA)
    html = operator.get(detail).content.decode()

    figures = re.search(r'id="cqrs-saga-instances">(.*?)</td>', html, re.S)
    assert figures is not None
    assert re.sub(r"<[^>]+>", "", figures.group(1)).startswith(
        "2 running, 1 completed, 1 compensated, 0 failed"
    )
    assert list_url("?parked=yes") in html
    assert "held by instance" in html
    assert change_url(transfers["stuck"]) in html
    # Retrying the saga's parked events as a projection's would leave the instance parked.
    assert "Retry parked" not in html
    response = operator.post(
        url("django_cqrs_projectionstate_skip", SAGA),
        {"position": str(transfers["stuck_at"])},
        follow=True,
    )
    assert any("held by the parked instance" in m for m in messages_of(response))
    assert run(uuid.UUID(transfers["stuck"].key)).parked
    assert run(uuid.UUID(transfers["stuck"].key)).parked_positions == [
        transfers["stuck_at"],
        transfers["held_at"],
    ]
    assert ParkedEvent.objects.get(position=transfers["held_at"]).resolution == "parked"
    assert not LogEntry.objects.exists()


def test_a_saga_offers_no_rebuild_and_refuses_one(
    admin_client: Any, transfers: dict[str, Any]
) -> None:
    from django_cqrs.models import StoredEvent

    dashboard = admin_client.get(url("django_cqrs_projectionstate_changelist")).content.decode()
    detail = admin_client.get(url("django_cqrs_projectionstate_change", SAGA)).content.decode()
    rebuild_of = url("django_cqrs_projectionstate_rebuild", SAGA)
    assert rebuild_of not in dashboard
    assert rebuild_of not in detail
    assert url("django_cqrs_projectionstate_rebuild", "testapp.AccountViewProjection") in dashboard

    events = StoredEvent.objects.count()
    response = admin_client.post(rebuild_of, {"cqrs-confirm": "yes"}, follow=True)
    assert response.status_code in (200, 403, 404)
    assert StoredEvent.objects.count() == events  # nothing replayed, no command sent
