"""The admin as the operator's console: read models, the event log, projections, aggregates."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import models
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from demo_project.orders.admin import OrderViewAdmin
from demo_project.orders.commands import (
    AddProduct,
    CancelOrder,
    OrderItem,
    PlaceOrder,
    RegisterCustomer,
    SetGatewayMode,
    ShipOrder,
)
from demo_project.orders.models import (
    Customer,
    CustomerSummary,
    GatewayMode,
    Order,
    OrderView,
    Product,
)
from django_cqrs import command_bus, store
from django_cqrs.admin import AggregateAdmin, ReadModelAdmin, autoregister_read_models
from django_cqrs.exceptions import AppendOnlyError
from django_cqrs.models import ParkedEvent, ProjectionState, StoredEvent
from django_cqrs.projections import all_projections
from django_cqrs.projections.status import projection_status
from django_cqrs.read_models import ReadModel
from tests.testapp import async_projections
from tests.testapp.async_projections import AccountTotalsProjection
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.models import AccountTotals

pytestmark = pytest.mark.django_db

ORDER_VIEW = "orders.OrderViewProjection"
SUMMARY = "orders.CustomerSummaryProjection"
TOTALS = AccountTotalsProjection.name


# -- helpers and fixtures ---------------------------------------------------------------


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:{name}", args=args)


def dashboard_url() -> str:
    return url("django_cqrs_projectionstate_changelist")


def detail_url(name: str) -> str:
    return url("django_cqrs_projectionstate_change", name)


def action_url(name: str, action: str) -> str:
    return url(f"django_cqrs_projectionstate_{action.replace('-', '_')}", name)


def stream_url(aggregate_id: Any, aggregate_type: str = "") -> str:
    query = f"?aggregate_id={aggregate_id}"
    if aggregate_type:
        query += f"&aggregate_type={aggregate_type}"
    return url("django_cqrs_storedevent_stream") + query


def staff(django_user_model: Any, username: str, *perms: str) -> Client:
    """A client logged in as a staff user holding ``perms`` ("app_label.codename")."""
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(django_user_model: Any) -> Client:
    """Staff who may look at the projections and the event log, but not act."""
    return staff(
        django_user_model,
        "viewer",
        "django_cqrs.view_projectionstate",
        "django_cqrs.view_storedevent",
    )


@pytest.fixture
def operator(django_user_model: Any) -> Client:
    """Staff who may operate projections (catch up, pause, retry, skip) but not rebuild."""
    return staff(
        django_user_model,
        "operator",
        "django_cqrs.view_projectionstate",
        "django_cqrs.operate_projection",
    )


@pytest.fixture
def shop() -> dict[str, Any]:
    """Two customers, two products and three orders (one cancelled, one shipped)."""
    meta = {"user": "alice", "correlation_id": "corr-shop"}

    def run(command: Any, **extra: Any) -> Any:
        return command_bus.dispatch(command, metadata={**meta, **extra}).value

    ada = run(RegisterCustomer(name="Ada Lovelace", credit_limit=Decimal("500")))
    grace = run(RegisterCustomer(name="Grace Hopper", credit_limit=Decimal("500")))
    pen = run(AddProduct(name="Pen", price=Decimal("2.50")))
    pad = run(AddProduct(name="Notepad", price=Decimal("5.00")))
    first = run(PlaceOrder(customer_id=ada, items=[OrderItem(product_id=pen, quantity=2)]))
    second = run(
        PlaceOrder(customer_id=grace, items=[OrderItem(product_id=pad, quantity=1)]),
        user="bob",
        correlation_id="corr-grace",
    )
    third = run(PlaceOrder(customer_id=ada, items=[OrderItem(product_id=pad, quantity=3)]))
    run(CancelOrder(order_id=first))
    run(ShipOrder(order_id=third), user="bob")
    return {
        "ada": ada,
        "grace": grace,
        "pen": pen,
        "pad": pad,
        "first": first,
        "second": second,
        "third": third,
    }


@pytest.fixture
def _clean_poison() -> Iterator[None]:
    async_projections.POISON.clear()
    yield
    async_projections.POISON.clear()


@pytest.fixture
def parked(settings: Any, _clean_poison: None) -> dict[str, int]:
    """AccountTotalsProjection stopped on a parked (poisoned) deposit of 13."""
    settings.DJANGO_CQRS = {"RETRY_BACKOFF": 0}
    async_projections.POISON.add(Decimal("13"))
    account = command_bus.dispatch(OpenAccount(owner="alice")).value
    positions = [
        command_bus.dispatch(Deposit(account_id=account, amount=Decimal(a))).position
        for a in ("10", "13", "20")
    ]
    from django_cqrs.projections.catchup import catch_up

    catch_up(TOTALS)
    assert ProjectionState.objects.get(name=TOTALS).state == "stopped"
    return {"account": account, "poison": positions[1]}


def snapshot(*model_classes: type[models.Model]) -> dict[str, list[dict[str, Any]]]:
    """Every row of ``model_classes``, all columns, in primary-key order."""
    return {m._meta.label: list(m._base_manager.order_by("pk").values()) for m in model_classes}


def dashboard_figures(html: str) -> dict[str, dict[str, str]]:
    """The figures of each projection row of the dashboard, read from its ``data-`` cells."""
    figures: dict[str, dict[str, str]] = {}
    for name, body in re.findall(
        r'<tr class="cqrs-projection" data-projection="([^"]+)">(.*?)</tr>', html, re.S
    ):
        cells = dict(re.findall(r'data-field="(\w+)" data-value="([^"]*)"', body))
        cells["mode"] = re.search(r'data-field="mode">(\w+)<', body).group(1)  # type: ignore[union-attr]
        figures[name] = cells
    return figures


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def log_entries(name: str) -> list[LogEntry]:
    return list(LogEntry.objects.filter(object_id=name).order_by("pk"))


# -- permissions --------------------------------------------------------------------------


def protected_pages(shop: dict[str, Any]) -> list[str]:
    return [
        dashboard_url(),
        detail_url(SUMMARY),
        url("django_cqrs_storedevent_changelist"),
        url("django_cqrs_storedevent_change", StoredEvent.objects.first().pk),  # type: ignore[union-attr]
        stream_url(shop["first"], "orders.Order"),
        url("orders_orderview_changelist"),
        url("orders_orderview_change", shop["first"]),
        url("orders_order_change", shop["first"]),
        url("django_cqrs_parkedevent_changelist"),
    ]


def test_anonymous_users_are_sent_to_the_login_page(client: Client, shop: dict[str, Any]) -> None:
    login = reverse("admin:login")
    for page in protected_pages(shop):
        response = client.get(page)
        assert response.status_code == 302, page
        assert response["Location"].startswith(login), page

    response = client.post(action_url(SUMMARY, "catch-up"))

    assert response.status_code == 302
    assert response["Location"].startswith(login)
    assert not ProjectionState.objects.filter(name=SUMMARY).exists()
    assert not LogEntry.objects.exists()


def test_staff_without_the_permissions_get_403(
    django_user_model: Any, shop: dict[str, Any]
) -> None:
    nobody = staff(django_user_model, "nobody")
    for page in protected_pages(shop):
        assert nobody.get(page).status_code == 403, page
    for action in ("catch-up", "pause", "rebuild"):
        assert nobody.post(action_url(SUMMARY, action)).status_code == 403

    assert not ProjectionState.objects.filter(name=SUMMARY).exists()
    assert not LogEntry.objects.exists()


def test_a_viewer_sees_the_dashboard_but_cannot_act(viewer: Client, shop: dict[str, Any]) -> None:
    response = viewer.get(dashboard_url())

    assert response.status_code == 200
    assert SUMMARY in response.content.decode()
    assert "Catch up now" not in response.content.decode()
    for action in ("catch-up", "pause", "resume", "retry", "skip", "rebuild"):
        assert viewer.post(action_url(SUMMARY, action)).status_code == 403, action
    assert viewer.get(action_url(SUMMARY, "rebuild")).status_code == 403
    assert not ProjectionState.objects.filter(name=SUMMARY).exists()
    assert CustomerSummary.objects.count() == 0  # never caught up
    assert not LogEntry.objects.exists()


def test_an_operator_may_catch_up_but_not_rebuild(operator: Client, shop: dict[str, Any]) -> None:
    page = operator.get(dashboard_url()).content.decode()
    assert "Catch up now" in page
    assert "Rebuild" not in page

    assert operator.post(action_url(ORDER_VIEW, "rebuild")).status_code == 403
    assert operator.get(action_url(ORDER_VIEW, "rebuild")).status_code == 403
    assert operator.post(action_url(SUMMARY, "catch-up")).status_code == 302
    head = store.head()
    assert [e.change_message for e in log_entries(SUMMARY)] == [
        f"Catch up now: Caught up. Checkpoint 0 → {head} of {head}."
    ]
    assert log_entries(ORDER_VIEW) == []


def test_a_superuser_opens_every_page(admin_client: Client, shop: dict[str, Any]) -> None:
    for page in protected_pages(shop):
        assert admin_client.get(page).status_code == 200, page
    index = admin_client.get(reverse("admin:index")).content.decode()
    for label in ("Projections", "Stored events", "Order views", "Customer summaries"):
        assert label in index


# -- read-only, even with crafted requests ------------------------------------------------

READ_ONLY = [
    ("orders", "orderview"),
    ("orders", "customersummary"),
    ("orders", "order"),
    ("orders", "customer"),
    ("orders", "product"),
    ("django_cqrs", "storedevent"),
    ("django_cqrs", "parkedevent"),
]


@pytest.mark.parametrize(("app_label", "model_name"), READ_ONLY)
def test_crafted_requests_change_nothing(
    admin_client: Client,
    shop: dict[str, Any],
    parked: dict[str, int],
    app_label: str,
    model_name: str,
) -> None:
    from django_cqrs.projections.catchup import catch_up

    catch_up(SUMMARY)
    model = apps.get_model(app_label, model_name)
    obj = model._base_manager.order_by("pk").first()
    assert obj is not None
    pk = obj.pk
    every = [
        OrderView,
        CustomerSummary,
        Order,
        Customer,
        Product,
        StoredEvent,
        ParkedEvent,
        ProjectionState,
    ]
    before = snapshot(*every)
    name = f"{app_label}_{model_name}"
    # Every column of the row with a changed value (and the management form of inlines).
    data: dict[str, Any] = {
        f.name: "1" if isinstance(f, models.IntegerField) else "changed"
        for f in model._meta.concrete_fields
    }
    data.update({"lines-TOTAL_FORMS": "0", "lines-INITIAL_FORMS": "0", "_save": "Save"})

    assert admin_client.get(url(f"{name}_add")).status_code == 403
    assert admin_client.post(url(f"{name}_add"), data).status_code == 403
    assert admin_client.post(url(f"{name}_change", pk), data).status_code == 403
    assert admin_client.get(url(f"{name}_delete", pk)).status_code == 403
    assert admin_client.post(url(f"{name}_delete", pk), {"post": "yes"}).status_code == 403
    changelist = admin_client.get(url(f"{name}_changelist"))
    assert changelist.status_code == 200
    assert "delete_selected" not in changelist.content.decode()
    bulk = admin_client.post(
        url(f"{name}_changelist"),
        {"action": "delete_selected", "_selected_action": [str(pk)], "post": "yes", "index": "0"},
    )
    assert bulk.status_code in (200, 302)
    # list_editable-style formset posts are ignored too.
    admin_client.post(
        url(f"{name}_changelist"),
        {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": str(pk), "_save": "1"},
    )

    assert snapshot(*every) == before


def test_projection_states_change_only_through_the_actions(
    admin_client: Client, parked: dict[str, int]
) -> None:
    before = snapshot(ProjectionState, ParkedEvent)
    data = {"name": TOTALS, "position": "0", "state": "live", "last_error": ""}

    assert admin_client.post(url("django_cqrs_projectionstate_add"), data).status_code == 403
    admin_client.post(url("django_cqrs_projectionstate_change", TOTALS), data)
    admin_client.post(dashboard_url(), {"action": "delete_selected", "_selected_action": TOTALS})
    delete = url("django_cqrs_projectionstate_delete", TOTALS)
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403

    assert snapshot(ProjectionState, ParkedEvent) == before
    assert not LogEntry.objects.exists()


def test_the_change_page_of_a_read_model_shows_values_without_a_form(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    page = admin_client.get(url("orders_orderview_change", shop["second"])).content.decode()

    assert '<div class="readonly">Grace Hopper</div>' in page
    assert '<div class="readonly">5.00</div>' in page
    assert 'name="_save"' not in page
    assert 'name="customer_name"' not in page


def test_stored_events_stay_append_only_in_the_model(shop: dict[str, Any]) -> None:
    event = StoredEvent.objects.first()
    assert event is not None
    event.payload = {"forged": True}
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        StoredEvent.objects.filter(pk=event.pk).update(event_type="x")
    with pytest.raises(AppendOnlyError):
        StoredEvent.objects.all().delete()


# -- ReadModelAdmin -------------------------------------------------------------------------


def test_one_line_registers_a_read_model_with_every_column_search_and_filters() -> None:
    site = admin.AdminSite(name="one_line")
    site.register(OrderView, ReadModelAdmin)
    model_admin = site.get_model_admin(OrderView)
    request = RequestFactory().get("/")

    columns = [f.name for f in OrderView._meta.concrete_fields]
    assert model_admin.get_list_display(request) == [*columns, "cqrs_events"]
    assert model_admin.get_search_fields(request) == [
        "id",
        "customer_id",
        "customer_name",
        "status",
    ]
    assert model_admin.get_list_filter(request) == ["status", "placed_at"]  # choices, dates
    assert model_admin.get_actions(request) == {}


def test_customer_summaries_list_their_figures_and_link_to_the_customer_events(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    from django_cqrs.projections.catchup import catch_up

    catch_up(SUMMARY)
    response = admin_client.get(url("orders_customersummary_changelist"))
    page = response.content.decode()

    for field in ("customer_name", "order_count", "lifetime_value", "cqrs_events"):
        assert f"column-{field}" in page
    link = stream_url(shop["grace"])
    assert link.replace("&", "&amp;") in page
    stream = admin_client.get(link).content.decode()
    assert "orders.CustomerRegistered" in stream
    assert "Grace Hopper" in stream


def test_order_views_can_be_searched_filtered_and_sorted(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    changelist = url("orders_orderview_changelist")

    def ids(query: str) -> list[UUID]:
        response = admin_client.get(changelist + query)
        assert response.status_code == 200
        return [row.pk for row in response.context["cl"].result_list]

    assert ids("?q=grace") == [shop["second"]]
    assert ids(f"?q={str(shop['third'])[:13]}") == [shop["third"]]
    assert ids("?status=cancelled") == [shop["first"]]
    # Not "ada": the search covers the UUIDs too, and a random one may contain it.
    assert set(ids("?q=lovelace")) == {shop["first"], shop["third"]}
    # ``o`` indexes the columns from 0: 4 is "total", 1 is "customer_name".
    totals = [OrderView.objects.get(pk=pk).total for pk in ids("?o=4")]
    assert totals == sorted(totals)
    by_name = [OrderView.objects.get(pk=pk).customer_name for pk in ids("?o=-1")]
    assert by_name == sorted(by_name, reverse=True)


def test_an_order_view_row_links_to_its_order_events_in_order(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    page = admin_client.get(url("orders_orderview_changelist")).content.decode()
    link = stream_url(shop["third"], "orders.Order")
    assert link.replace("&", "&amp;") in page

    response = admin_client.get(link)
    html = response.content.decode()

    assert response.status_code == 200
    positions = [int(p) for p in re.findall(r'class="cqrs-event" data-position="(\d+)"', html)]
    expected = list(
        StoredEvent.objects.for_aggregate(aggregate_type="orders.Order", aggregate_id=shop["third"])
    )
    assert positions == [e.position for e in expected]
    assert html.index("orders.OrderPlaced") < html.index("orders.OrderShipped")
    assert url("orders_order_change", shop["third"]) in html  # the aggregate's own page


def test_autoregistration_adds_every_read_model_and_keeps_explicit_admins() -> None:
    site = admin.AdminSite(name="auto")
    site.register(OrderView, OrderViewAdmin)

    added = autoregister_read_models(site)

    read_models = {m for m in apps.get_models() if issubclass(m, ReadModel)}
    assert set(added) == read_models - {OrderView}
    assert all(site.is_registered(m) for m in read_models)
    assert type(site.get_model_admin(OrderView)) is OrderViewAdmin
    assert type(site.get_model_admin(CustomerSummary)) is ReadModelAdmin
    assert autoregister_read_models(site) == []


def test_the_setting_turns_autoregistration_on_at_start_up(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import django_cqrs.admin

    calls: list[Any] = []
    monkeypatch.setattr(django_cqrs.admin, "autoregister_read_models", lambda: calls.append(1))
    config = apps.get_app_config("django_cqrs")

    config.ready()
    assert calls == []  # off by default
    settings.DJANGO_CQRS = {"ADMIN_AUTOREGISTER_READ_MODELS": True}
    config.ready()
    assert calls == [1]


# -- the event log --------------------------------------------------------------------------


def test_the_event_log_filters_by_type_aggregate_correlation_user_and_date(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    changelist = url("django_cqrs_storedevent_changelist")

    def positions(query: str) -> list[int]:
        response = admin_client.get(changelist + query)
        assert response.status_code == 200, query
        return sorted(e.position for e in response.context["cl"].result_list)

    def expected(**lookups: Any) -> list[int]:
        return sorted(StoredEvent.objects.filter(**lookups).values_list("position", flat=True))

    every = expected()
    assert len(every) == 9
    assert positions("") == every
    assert positions("?event_type=orders.OrderPlaced") == expected(event_type="orders.OrderPlaced")
    assert len(positions("?event_type=orders.OrderPlaced")) == 3
    assert positions("?aggregate_type=orders.Customer") == expected(
        aggregate_type="orders.Customer"
    )
    assert positions(f"?aggregate_id={shop['first']}") == expected(aggregate_id=str(shop["first"]))
    assert len(positions(f"?aggregate_id={shop['first']}")) == 2  # placed, cancelled
    assert positions("?correlation_id=corr-grace") == expected(aggregate_id=str(shop["second"]))
    assert positions("?user=bob") == expected(metadata__user="bob")
    assert len(positions("?user=bob")) == 2  # Grace's order, shipping Ada's
    # The date filter's own "Today" link, and a range that starts tomorrow.
    page = admin_client.get(changelist).content.decode()
    [today_link] = re.findall(r'href="(\?recorded_at__gte=[^"]+)"[^>]*>Today<', page)
    assert positions(today_link.replace("&amp;", "&")) == every
    tomorrow = timezone.now().replace(hour=0, minute=0, second=0) + dt.timedelta(days=1)
    assert positions("?" + urlencode({"recorded_at__gte": str(tomorrow)})) == []
    assert positions(f"?q={shop['grace']}") == expected(aggregate_id=str(shop["grace"]))
    # Filters combine, and the text filters keep each other in their forms.
    page = admin_client.get(changelist + "?user=bob&event_type=orders.OrderShipped")
    assert [e.aggregate_id for e in page.context["cl"].result_list] == [str(shop["third"])]
    assert 'name="event_type" value="orders.OrderShipped"' in page.content.decode()


def test_an_event_page_shows_payload_and_metadata_as_pretty_json(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    event = StoredEvent.objects.get(
        event_type="orders.OrderPlaced", aggregate_id=str(shop["second"])
    )

    page = admin_client.get(url("django_cqrs_storedevent_change", event.pk)).content.decode()

    assert '<pre class="cqrs-json">' in page
    assert "\n  &quot;customer_name&quot;: &quot;Grace Hopper&quot;," in page
    assert "&quot;correlation_id&quot;: &quot;corr-grace&quot;" in page
    assert "&quot;user&quot;: &quot;bob&quot;" in page
    assert stream_url(shop["second"], "orders.Order").replace("&", "&amp;") in page
    assert 'name="_save"' not in page


# -- the projections dashboard --------------------------------------------------------------


def test_the_dashboard_lists_every_projection_with_the_figures_of_cqrs_status(
    admin_client: Client, shop: dict[str, Any], parked: dict[str, int]
) -> None:
    assert not ProjectionState.objects.filter(name=ORDER_VIEW).exists()  # sync: no row

    page = admin_client.get(dashboard_url()).content.decode()
    out = StringIO()
    call_command("cqrs_status", "--json", stdout=out)
    status = {row["name"]: row for row in json.loads(out.getvalue())}
    figures = dashboard_figures(page)

    assert list(figures) == sorted(cls.name for cls in all_projections())
    assert list(figures) == list(status)
    for name, row in status.items():
        shown = figures[name]
        assert shown["mode"] == row["mode"]
        for field in ("position", "head", "lag_events", "parked"):
            assert int(shown[field]) == row[field], (name, field)
        assert shown["status"] == row["status"]
        assert float(shown["lag_seconds"]) == pytest.approx(row["lag_seconds"], abs=5)
    assert status[TOTALS]["parked"] == 1
    assert status[SUMMARY]["lag_events"] > 0
    assert "1 parked event" in page
    assert "ValueError: poisoned deposit of 13" in page
    assert 'id="cqrs-health">unhealthy' in page


def test_the_detail_page_shows_parked_events_with_their_tracebacks(
    admin_client: Client, parked: dict[str, int]
) -> None:
    page = admin_client.get(detail_url(TOTALS)).content.decode()

    assert f'data-position="{parked["poison"]}"' in page
    assert "Traceback (most recent call last)" in page
    assert "poisoned deposit of 13" in page
    assert "Skip this event" in page
    assert "Retry parked" in page
    assert admin_client.get(detail_url("nope.Nothing")).status_code == 404


def test_catch_up_now_applies_the_pending_events_and_is_logged(
    operator: Client, shop: dict[str, Any]
) -> None:
    lag = next(r for r in projection_status() if r.name == SUMMARY).lag_events
    assert lag > 0
    assert CustomerSummary.objects.count() == 0

    response = operator.post(action_url(SUMMARY, "catch-up"), follow=True)

    assert response.status_code == 200
    assert next(r for r in projection_status() if r.name == SUMMARY).lag_events == 0
    assert CustomerSummary.objects.get(pk=shop["ada"]).order_count == 1  # one cancelled
    [entry] = log_entries(SUMMARY)
    assert entry.action_flag == CHANGE
    assert entry.user.username == "operator"
    head = store.head()
    assert entry.change_message == f"Catch up now: Caught up. Checkpoint 0 → {head} of {head}."
    assert entry.content_type.model_class() is ProjectionState
    assert any("Caught up" in m for m in messages_of(response))
    history = operator.get(url("django_cqrs_projectionstate_history", SUMMARY))
    assert "Catch up now" in history.content.decode()


def test_pause_and_resume(
    operator: Client, shop: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    operator.post(action_url(SUMMARY, "pause"))
    assert ProjectionState.objects.get(name=SUMMARY).state == "paused"
    page = operator.get(dashboard_url()).content.decode()
    assert "Resume" in page

    # A paused projection is not caught up, even by a crafted request.
    response = operator.post(action_url(SUMMARY, "catch-up"), follow=True)
    assert any("does not apply" in m for m in messages_of(response))
    assert CustomerSummary.objects.count() == 0

    # Resume queues a catch-up, which runs once the request's work commits (this test
    # runs in a transaction: its callbacks run at the block's end; tasks run synchronously).
    with django_capture_on_commit_callbacks(execute=True):
        operator.post(action_url(SUMMARY, "resume"))
    state = ProjectionState.objects.get(name=SUMMARY)
    assert state.state == "live"
    assert CustomerSummary.objects.count() == 2
    assert [e.change_message.split(":")[0] for e in log_entries(SUMMARY)] == ["Pause", "Resume"]


def test_retry_a_parked_event_after_fixing_the_cause(
    operator: Client, parked: dict[str, int]
) -> None:
    still_broken = operator.post(action_url(TOTALS, "retry"), follow=True)
    assert any("1 parked" in m for m in messages_of(still_broken))
    assert ProjectionState.objects.get(name=TOTALS).state == "stopped"

    async_projections.POISON.clear()
    operator.post(action_url(TOTALS, "retry"))

    state = ProjectionState.objects.get(name=TOTALS)
    assert state.state == "live"
    totals = AccountTotals.objects.get(pk=parked["account"])
    assert (totals.deposits, totals.deposited) == (3, Decimal("43"))
    assert ParkedEvent.objects.get(projection=TOTALS).resolution == "retried"
    assert [e.change_message.split(":")[0] for e in log_entries(TOTALS)] == [
        "Retry parked",
        "Retry parked",
    ]


def test_skip_a_parked_event(operator: Client, parked: dict[str, int]) -> None:
    missing = operator.post(action_url(TOTALS, "skip"), follow=True)
    assert any("position" in m for m in messages_of(missing))
    assert log_entries(TOTALS) == []

    operator.post(action_url(TOTALS, "skip"), {"position": str(parked["poison"])})

    assert ProjectionState.objects.get(name=TOTALS).state == "live"
    totals = AccountTotals.objects.get(pk=parked["account"])
    assert (totals.deposits, totals.deposited) == (2, Decimal("30"))
    assert ParkedEvent.objects.get(projection=TOTALS).resolution == "skipped"
    [entry] = log_entries(TOTALS)
    assert f"Skipped the event at position {parked['poison']}" in entry.change_message


def test_rebuild_asks_first_then_rebuilds_and_is_logged(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    OrderView.objects.filter(pk=shop["second"]).update(status="damaged", total=Decimal("0"))
    assert admin_client.get(action_url(ORDER_VIEW, "catch-up")).status_code == 302  # GET: no-op

    confirm = admin_client.get(action_url(ORDER_VIEW, "rebuild"))
    assert confirm.status_code == 200
    assert 'name="cqrs-confirm"' in confirm.content.decode()
    assert OrderView.objects.get(pk=shop["second"]).status == "damaged"
    assert log_entries(ORDER_VIEW) == []

    admin_client.post(action_url(ORDER_VIEW, "rebuild"))

    row = OrderView.objects.get(pk=shop["second"])
    assert (row.status, row.total) == ("placed", Decimal("5.00"))
    [entry] = log_entries(ORDER_VIEW)
    head = store.head()
    assert entry.change_message == (
        f"Rebuild: Rebuilt from the event log: 5 events applied. Checkpoint {head} → {head} "
        f"of {head}."
    )


def test_actions_that_do_not_apply_are_refused(admin_client: Client, shop: dict[str, Any]) -> None:
    for action in ("catch-up", "pause", "retry"):
        response = admin_client.post(action_url(ORDER_VIEW, action), follow=True)
        assert any("does not apply" in m for m in messages_of(response)), action
    assert admin_client.post(action_url("nope.Nothing", "catch-up")).status_code == 404
    assert log_entries(ORDER_VIEW) == []


def test_after_an_action_the_user_returns_to_a_local_page_only(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    local = admin_client.post(action_url(SUMMARY, "pause"), {"next": dashboard_url()})
    assert local["Location"] == dashboard_url()
    offsite = admin_client.post(action_url(SUMMARY, "resume"), {"next": "https://evil.test/"})
    assert offsite["Location"] == detail_url(SUMMARY)


# -- aggregates -----------------------------------------------------------------------------


def test_an_aggregate_page_shows_its_version_and_events_read_only(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    order = Order.objects.get(pk=shop["third"])
    page = admin_client.get(url("orders_order_change", order.pk)).content.decode()

    assert "field-version" in page
    assert f'<div class="readonly">{order.version}</div>' in page
    assert "orders.OrderPlaced" in page
    assert "orders.OrderShipped" in page
    assert 'name="_save"' not in page
    changelist = admin_client.get(url("orders_order_changelist")).content.decode()
    assert "column-version" in changelist


def test_allow_edit_is_the_escape_hatch_for_editing_aggregates(
    admin_user: Any, shop: dict[str, Any]
) -> None:
    class EditableCustomerAdmin(AggregateAdmin):
        allow_edit = True

    site = admin.AdminSite(name="escape")
    request = RequestFactory().get("/")
    request.user = admin_user
    customer = Customer.objects.get(pk=shop["ada"])

    locked = AggregateAdmin(Customer, site)
    editable = EditableCustomerAdmin(Customer, site)

    assert not locked.has_add_permission(request)
    assert not locked.has_change_permission(request, customer)
    assert not locked.has_delete_permission(request, customer)
    assert "delete_selected" not in locked.get_actions(request)
    assert editable.has_add_permission(request)
    assert editable.has_change_permission(request, customer)
    assert editable.has_delete_permission(request, customer)
    assert {"id", "version"} <= set(editable.get_readonly_fields(request, customer))
    form = editable.get_form(request, customer)
    assert set(form.base_fields) == {"name", "credit_limit"}


# -- the docs -------------------------------------------------------------------------------


def test_the_admin_doc_registers_the_tutorial_app_as_shown(admin_client: Client) -> None:
    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "admin.md").read_text()
    match = re.search(r"```python\n(# todo/admin\.py\n.*?)```", doc, re.S)
    assert match is not None

    assert match.group(1) == (root / "tests" / "tutorial" / "admin.py").read_text()
    assert admin_client.get(url("todo_taskview_changelist")).status_code == 200
    assert admin_client.get(url("todo_task_changelist")).status_code == 200
    assert admin_client.get(url("todo_taskview_add")).status_code == 403
    assert admin_client.get(url("todo_task_add")).status_code == 403


# -- the demo's models, as people read them --------------------------------------------


def test_the_demo_models_read_as_names_not_as_object_ids(shop: dict[str, Any]) -> None:
    from django_cqrs.projections.catchup import catch_up

    catch_up(SUMMARY)
    order = Order.objects.get(pk=shop["third"])

    assert str(Customer.objects.get(pk=shop["ada"])) == "Ada Lovelace"
    assert str(Product.objects.get(pk=shop["pen"])) == "Pen (2.50)"
    assert str(order) == f"Order {str(order.pk)[:8]} (shipped, 15.00)"
    for model in apps.get_app_config("orders").get_models():
        for row in model._base_manager.all():
            assert " object (" not in str(row), model


def test_no_demo_admin_page_shows_an_object_id_for_a_name(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    from django_cqrs.projections.catchup import catch_up

    catch_up(SUMMARY)
    catch_up("orders.CheckoutSaga")  # checkouts and payments
    command_bus.dispatch(SetGatewayMode(mode=GatewayMode.HOLD))  # the gateway's row
    for model in apps.get_app_config("orders").get_models():
        if not admin.site.is_registered(model):
            continue
        name = f"orders_{model._meta.model_name}"
        row = model._base_manager.first()
        assert row is not None, model
        for page in (url(f"{name}_changelist"), url(f"{name}_change", row.pk)):
            html = admin_client.get(page).content.decode()
            assert " object (" not in html, page


def test_the_event_log_list_keeps_ids_short_and_names_breakable(
    admin_client: Client, shop: dict[str, Any]
) -> None:
    page = admin_client.get(url("django_cqrs_storedevent_changelist")).content.decode()
    ada = str(shop["ada"])

    assert ">orders.<wbr>Customer<wbr>Registered<" in page
    assert f"{ada[:8]}…</a>" in page  # the aggregate, cut short in the list ...
    assert f'title="orders.Customer {ada}: ' in page  # ... and whole in its title
    assert re.search(r">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d<", page)  # the compact time
