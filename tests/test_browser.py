"""The demo admin in a real browser: headless Chromium (Debian's packages) driven by Selenium.

Logs in, lists and searches ``OrderView``, opens an order's event stream, and catches a
lagging projection up from the dashboard, taking screenshots on the way. They go to a
temporary folder; to refresh the ones in the docs:

    CQRS_SCREENSHOT_DIR=docs/screenshots .venv/bin/pytest tests/test_browser.py
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sysconfig
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.utils import timezone

from demo_project.orders.commands import (
    AddProduct,
    CancelOrder,
    OrderItem,
    PlaceOrder,
    RegisterCustomer,
    SetGatewayMode,
    ShipOrder,
)
from demo_project.orders.models import CustomerSummary, GatewayMode, OrderView
from demo_project.orders.projections import CustomerSummaryProjection
from django_cqrs import command_bus, projections
from django_cqrs.models import ProjectionState, SagaDeadline
from django_cqrs.projections import base
from django_cqrs.projections.catchup import catch_up
from django_cqrs.projections.status import projection_status
from tests.testapp.models import TransferRun

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SUMMARY = "orders.CustomerSummaryProjection"
CHECKOUT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists(),
        reason="needs headless Chromium: apt-get install chromium chromium-driver (.ci/run does)",
    ),
    pytest.mark.django_db(transaction=True),
]

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="needs selenium: pip install -e '.[dev]'"
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,1000",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    failures = request.session.testsfailed
    try:
        yield driver
    finally:
        if request.session.testsfailed > failures:
            # What the browser showed when the test failed, next to the screenshots.
            folder = tmp_path / "screenshots"
            folder.mkdir(exist_ok=True)
            driver.save_screenshot(str(folder / "failure.png"))
            (folder / "failure.html").write_text(driver.page_source)
            print(f"browser was at {driver.current_url}; see {folder}")
        driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CQRS_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def demo_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Show only the demo's projections (the test apps register their own too)."""
    demo = [cls for cls in projections.all_projections() if cls.name.startswith("orders.")]
    monkeypatch.setattr(base.projections, "_classes", demo)


@pytest.fixture
def shop(settings: Any, django_user_model: Any) -> dict[str, Any]:
    """An admin user and orders; the async customer summaries are left behind (lagging)."""
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False}
    django_user_model.objects.create_superuser("admin", "admin@example.com", "demo-password")

    def run(command: Any, user: str = "alice") -> Any:
        return command_bus.dispatch(command, metadata={"user": user}).value

    customers = {
        name: run(RegisterCustomer(name=name, credit_limit=Decimal("2000")))
        for name in ("Ada Lovelace", "Grace Hopper", "Alan Turing")
    }
    products = [
        run(AddProduct(name=name, price=Decimal(price)))
        for name, price in (("Keyboard", "49.90"), ("Monitor", "219.00"), ("Mouse", "19.50"))
    ]
    orders = []
    for i, (name, customer) in enumerate([*customers.items(), *customers.items()]):
        items = [OrderItem(product_id=products[(i + j) % 3], quantity=j + 1) for j in range(2)]
        orders.append(run(PlaceOrder(customer_id=customer, items=items), user=name.split()[0]))
    run(ShipOrder(order_id=orders[1]), user="bob")
    run(CancelOrder(order_id=orders[3]))
    return {"customers": customers, "orders": orders}


class Console:
    """The admin in the browser: open pages, log in, take screenshots."""

    def __init__(self, browser: Any, base_url: str, screenshots: Path) -> None:
        self.browser = browser
        self.base_url = base_url
        self.screenshots = screenshots
        self.wait = WebDriverWait(browser, 20)

    def open(self, path: str) -> None:
        self.browser.get(self.base_url + path)

    def find(self, css: str, within: Any = None) -> Any:
        return (within or self.browser).find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        return list(self.browser.find_elements(By.CSS_SELECTOR, css))

    def wait_for(self, css: str) -> Any:
        return self.wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))

    def log_in(self) -> None:
        self.open("/admin/login/?next=/admin/")
        self.find("#id_username").send_keys("admin")
        self.find("#id_password").send_keys("demo-password")
        self.find("input[type=submit]").click()
        # The login page has #site-name too: wait until the browser has left it.
        self.wait.until(lambda browser: "/login/" not in browser.current_url)
        self.wait_for("#site-name")
        assert "Projections" in self.browser.page_source

    def fold_sidebar(self) -> None:
        """Fold the navigation sidebar away (the browser remembers): wider tables."""
        self.find("#toggle-nav-sidebar").click()

    def shot(self, name: str) -> Path:
        # The pictures go into the docs: tracebacks on the page show the files' paths
        # from the checkout and site-packages, not this machine's folders; the page is
        # shown from its top (a click may have scrolled it).
        self.browser.execute_script(
            "for (const pre of document.querySelectorAll('pre.cqrs-traceback'))"
            "  for (const folder of arguments[0]) pre.textContent = pre.textContent"
            "    .replaceAll(folder, '');"
            "window.scrollTo(0, 0);",
            [f"{CHECKOUT}/", f"{sysconfig.get_paths()['purelib']}/"],
        )
        path = self.screenshots / name
        assert self.browser.save_screenshot(str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return path

    def projection_row(self, name: str) -> Any:
        return self.find(f'tr[data-projection="{name}"]')

    def figure(self, name: str, field: str) -> str:
        return str(self.find(f'[data-field="{field}"]', self.projection_row(name)).text)


@pytest.fixture
def console(browser: Any, live_server: Any, screenshots: Path, demo_only: None) -> Console:
    return Console(browser, live_server.url, screenshots)


def test_an_operator_browses_the_demo_admin(console: Console, shop: dict[str, Any]) -> None:
    console.log_in()

    # List the order views, then search them.
    console.open("/admin/orders/orderview/")
    console.fold_sidebar()
    rows = console.find_all("#result_list tbody tr")
    assert len(rows) == OrderView.objects.count() == 6
    console.shot("admin-orderview-list.png")
    search = console.find("#searchbar")
    search.send_keys("Grace")
    search.submit()
    console.wait.until(ec.url_contains("q=Grace"))
    rows = console.find_all("#result_list tbody tr")
    assert len(rows) == 2
    assert all("Grace Hopper" in row.text for row in rows)
    console.shot("admin-orderview-search.png")

    # Open the shipped order's event stream from its row.
    [shipped] = [row for row in rows if "shipped" in row.text]
    console.find("a.cqrs-events-link", shipped).click()
    console.wait_for("tr.cqrs-event")
    assert "Events of orders.Order" in console.browser.title
    events = console.find_all("tr.cqrs-event")
    assert [e.text.split()[0] for e in events] == ["1", "2"]  # aggregate versions
    assert "orders.OrderPlaced" in events[0].text
    assert "orders.OrderShipped" in events[1].text
    console.shot("admin-event-stream.png")

    # The event log, filtered by user.
    console.open("/admin/django_cqrs/storedevent/?user=bob")
    assert len(console.find_all("#result_list tbody tr")) == 1
    console.shot("admin-event-log.png")

    # The dashboard: the async summaries lag; catch them up.
    lag = next(row for row in projection_status() if row.name == SUMMARY).lag_events
    assert lag > 0
    console.open("/admin/django_cqrs/projectionstate/")
    assert console.figure(SUMMARY, "lag_events") == str(lag)
    console.shot("admin-projections-lagging.png")
    console.find('input[name="cqrs-catch-up"]', console.projection_row(SUMMARY)).click()
    console.wait_for("ul.messagelist li.success")
    assert console.figure(SUMMARY, "lag_events") == "0"
    assert "Caught up" in console.find("ul.messagelist").text
    assert CustomerSummary.objects.count() == 3
    console.shot("admin-projections-caught-up.png")

    # The projection's history lists the action.
    console.open(f"/admin/django_cqrs/projectionstate/{SUMMARY}/history/")
    assert "Catch up now" in console.browser.page_source


def test_an_operator_reads_a_parked_event_and_skips_it(
    console: Console, shop: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    placed = CustomerSummaryProjection.placed
    alans_first_order = shop["orders"][2]

    def placed_but_one(self: Any, event: Any, envelope: Any) -> None:
        if event.order_id == alans_first_order:
            raise RuntimeError("customer summary service unavailable")
        placed(self, event, envelope)

    # The summaries fail on Alan's first order, and park it at once (no retries).
    monkeypatch.setattr(CustomerSummaryProjection, "placed", placed_but_one)
    monkeypatch.setattr(CustomerSummaryProjection, "max_retries", 0)
    console.log_in()
    console.open("/admin/django_cqrs/projectionstate/")
    console.fold_sidebar()
    console.find('input[name="cqrs-catch-up"]', console.projection_row(SUMMARY)).click()
    console.wait_for("ul.messagelist li.warning")

    assert console.figure(SUMMARY, "status") == "stopped"
    assert console.figure(SUMMARY, "parked") == "1"
    assert "1 parked event" in console.figure(SUMMARY, "last_error")
    assert console.find("#cqrs-health").text == "unhealthy"
    console.shot("admin-projections-parked.png")

    # The projection's page: the parked event, its traceback, and the way out.
    console.find("a", console.projection_row(SUMMARY)).click()
    console.wait_for("table.cqrs-parked")
    console.find("table.cqrs-parked details summary").click()
    traceback = console.find("table.cqrs-parked pre.cqrs-traceback").text
    assert "Traceback (most recent call last)" in traceback
    assert "RuntimeError: customer summary service unavailable" in traceback
    console.browser.set_window_size(1400, 1250)  # tall enough for the traceback
    console.shot("admin-projection-parked-event.png")

    console.find('table.cqrs-parked input[type="submit"]').click()
    console.wait_for("ul.messagelist li.success")
    assert "Skipped the event" in console.find("ul.messagelist").text
    assert "Parked events (0)" in console.browser.page_source
    assert ProjectionState.objects.get(name=SUMMARY).state == "live"
    summary = CustomerSummary.objects.get(customer_name="Alan Turing")
    assert summary.order_count == 1  # the skipped order does not count


#: The lists a 1280-px screen must show whole: the demo's, the event log, a saga's
#: instances and the saga deadlines here, the projections' dashboard and a projection's
#: parked events in the test after it, and a saga instance's page in the last test.
WIDE_SCREEN = 1280

#: A failure as real ones read: a long URL, an unbroken word.
LONG_ERROR = (
    "RuntimeError: payment service unavailable: POST https://payments.internal/api/v1/"
    "transfers/authorize?include=limits,fees timed out after 30 s"
)

#: What overflows the page: the document's width, and each table of the content that is
#: wider than its container (or than the box that scrolls it sideways, if one does).
MEASURE_TABLES = """
const scrolls = (el) => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
const content = document.getElementById('content');
const tables = [...content.querySelectorAll('table')].map((table, i) => {
  let box = table.parentElement;
  while (box !== content && !scrolls(box)) box = box.parentElement;
  const [width, room] = scrolls(box)
    ? [box.scrollWidth, box.clientWidth]
    : [table.scrollWidth, table.parentElement.clientWidth];
  return {table: table.className || `table ${i + 1}`, width: width, room: room};
});
return {page: document.documentElement.scrollWidth, tables: tables};
"""


#: The lists measured besides the demo's: the event log, a saga's instances, its deadlines.
MEASURED = ("django_cqrs.StoredEvent", "testapp.TransferRun", "django_cqrs.SagaDeadline")


def admin_lists() -> list[str]:
    return sorted(
        f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for model in admin.site._registry
        if model._meta.app_label == "orders" or model._meta.label in MEASURED
    )


@pytest.fixture
def saga_rows() -> None:
    """Saga instances and deadlines with the widest values the lists show: UUID keys, the
    longest state and step names, a long error; a pending, an overdue, a fired and a
    cancelled deadline with a long error."""
    now = timezone.now()
    rows = [
        ("awaiting_confirmation", [("fee", "succeeded")], "", None, []),
        ("compensated", [("compensate withdraw", "compensation failed")], LONG_ERROR, now, []),
        ("started", [], LONG_ERROR, None, [12, 13]),
        ("completed", [("confirmed", "succeeded")], "", now, []),
    ]
    for state, steps, error, finished, parked in rows:
        key = str(uuid.uuid4())
        TransferRun.objects.create(
            key=key,
            state=state,
            steps=[{"step": s, "outcome": o, "at": now.isoformat()} for s, o in steps],
            error=error,
            finished_at=finished,
            parked_positions=parked,
        )
        SagaDeadline.objects.create(
            saga="testapp.TransferSaga",
            instance_key=key,
            name="confirmation",
            due_at=now - dt.timedelta(hours=1),
            fired_at=now if state == "completed" else None,
            cancelled_at=now if state == "compensated" else None,
            attempts=3,
            last_error=f"Traceback (most recent call last):\n  ...\n{LONG_ERROR}",
        )


def test_every_admin_list_fits_a_1280_px_screen(
    console: Console, shop: dict[str, Any], saga_rows: None
) -> None:
    catch_up(SUMMARY)  # the summaries too have rows to show
    catch_up("orders.CheckoutSaga")  # and the checkouts, their payments
    command_bus.dispatch(SetGatewayMode(mode=GatewayMode.APPROVE))  # the gateway's row
    console.browser.set_window_size(WIDE_SCREEN, 900)
    console.log_in()
    assert console.browser.execute_script("return window.innerWidth") == WIDE_SCREEN
    too_wide = {}
    for url in admin_lists():
        console.open(url)
        assert len(console.find_all("#result_list tbody tr")) > 0, url
        # The navigation sidebar is open, as on a first visit; Django's list scrolls
        # sideways inside div.results when its columns do not fit.
        table, box, page = console.browser.execute_script(
            "const box = document.querySelector('#changelist .results');"
            "return [box.scrollWidth, box.clientWidth, document.documentElement.scrollWidth];"
        )
        if table > box or page > WIDE_SCREEN:
            too_wide[url] = f"table {table} px in {box} px, page {page} px"
    assert too_wide == {}


def overflowing(console: Console) -> dict[str, str]:
    """What is wider than the window or than its container on the page shown."""
    measured = console.browser.execute_script(MEASURE_TABLES)
    assert measured["tables"], "no table on the page"
    too_wide = {
        t["table"]: f"{t['width']} px in {t['room']} px"
        for t in measured["tables"]
        if t["width"] > t["room"]
    }
    if measured["page"] > WIDE_SCREEN:
        too_wide["page"] = f"{measured['page']} px"
    return too_wide


def test_the_projections_dashboard_and_parked_events_fit_a_1280_px_screen(
    console: Console, shop: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    placed = CustomerSummaryProjection.placed
    failing = {shop["orders"][2]: "upstream", shop["orders"][4]: "constraint"}
    errors = {
        # What real failures say: a URL and a constraint's name are long unbroken words.
        "upstream": "customer summary service unavailable: GET https://summaries.internal"
        "/api/v1/customers/summary?include=orders,credit_limit timed out after 30 s",
        "constraint": 'duplicate key value violates unique constraint "orders_'
        'customersummary_customer_id_order_count_3f2a9c1e_uniq"',
    }

    def placed_but_two(self: Any, event: Any, envelope: Any) -> None:
        if event.order_id in failing:
            raise RuntimeError(errors[failing[event.order_id]])
        placed(self, event, envelope)

    console.browser.set_window_size(WIDE_SCREEN, 900)
    console.log_in()
    assert console.browser.execute_script("return window.innerWidth") == WIDE_SCREEN
    too_wide: dict[str, dict[str, str]] = {}

    # The summaries lag: their row has the most buttons. The navigation sidebar is open,
    # as on a first visit.
    console.open("/admin/django_cqrs/projectionstate/")
    assert "shifted" in console.find("#main").get_attribute("class")
    assert console.find('input[name="cqrs-pause"]', console.projection_row(SUMMARY))
    too_wide["dashboard, lagging"] = overflowing(console)

    # The summaries park Alan's first order at once (no retries), and stop there.
    monkeypatch.setattr(CustomerSummaryProjection, "placed", placed_but_two)
    monkeypatch.setattr(CustomerSummaryProjection, "max_retries", 0)
    catch_up(SUMMARY)
    assert ProjectionState.objects.get(name=SUMMARY).state == "stopped"
    console.open("/admin/django_cqrs/projectionstate/")
    assert console.figure(SUMMARY, "parked") == "1"
    too_wide["dashboard"] = overflowing(console)
    console.shot("admin-projections-1280.png")

    # The projection's page, its parked event's traceback unfolded.
    console.find("a", console.projection_row(SUMMARY)).click()
    console.wait_for("table.cqrs-parked")
    console.find("table.cqrs-parked details summary").click()
    assert "RuntimeError: customer summary service" in console.find("pre.cqrs-traceback").text
    too_wide["parked event"] = overflowing(console)

    # Skipped, the catch-up goes on and parks Grace's second order: one parked, one resolved.
    console.find('table.cqrs-parked input[type="submit"]').click()
    console.wait_for("ul.messagelist li.warning")
    assert "Parked events (1)" in console.browser.page_source
    assert "Resolved (latest 1)" in console.browser.page_source
    console.find("table.cqrs-parked details summary").click()
    too_wide["parked and resolved"] = overflowing(console)
    console.browser.set_window_size(WIDE_SCREEN, 1500)  # the whole page in the picture
    console.shot("admin-projection-parked-events-1280.png")
    console.browser.set_window_size(WIDE_SCREEN, 900)

    console.open("/admin/django_cqrs/projectionstate/")
    too_wide["dashboard, second failure"] = overflowing(console)
    assert too_wide == {page: {} for page in too_wide}


def test_a_parked_saga_instance_fits_a_1280_px_screen_and_is_retried(
    console: Console, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transfer's page: its steps, its deadline, its parked events; then the retry."""
    from tests.testapp import sagas
    from tests.testapp.commands import ConfirmTransfer, Deposit, OpenAccount, RequestTransfer
    from tests.testapp.sagas import TransferSaga

    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False, "RETRY_BACKOFF": 0}
    monkeypatch.setattr(
        base.projections, "_classes", [*projections.all_projections(), TransferSaga]
    )
    get_user_model().objects.create_superuser("admin", "admin@example.com", "demo-password")
    alice = command_bus.dispatch(OpenAccount(owner="alice")).value
    bob = command_bus.dispatch(OpenAccount(owner="bob")).value
    command_bus.dispatch(Deposit(account_id=alice, amount=Decimal("100")))
    waiting, stuck = uuid.uuid4(), uuid.uuid4()
    command_bus.dispatch(RequestTransfer(waiting, alice, bob, Decimal("30"), Decimal("1")))
    monkeypatch.setattr(sagas, "POISON_SOURCES", {bob})
    command_bus.dispatch(RequestTransfer(stuck, bob, alice, Decimal("5")))
    catch_up(TransferSaga.name)
    command_bus.dispatch(ConfirmTransfer(transfer_id=stuck))
    catch_up(TransferSaga.name)
    instance = TransferRun.objects.get(key=str(stuck))
    assert len(instance.parked_positions) == 2

    console.browser.set_window_size(WIDE_SCREEN, 900)
    console.log_in()
    too_wide: dict[str, dict[str, str]] = {}
    console.open("/admin/testapp/transferrun/")
    assert len(console.find_all("#result_list tbody tr")) == 2
    console.shot("admin-saga-instances-1280.png")
    console.open(
        f"/admin/testapp/transferrun/{TransferRun.objects.get(key=str(waiting)).pk}/change/"
    )
    assert len(console.find_all("tr.cqrs-step")) == 3
    assert console.find('tr[data-deadline="confirmation"]')
    too_wide["steps and deadline"] = overflowing(console)
    console.browser.set_window_size(WIDE_SCREEN, 1150)
    console.shot("admin-saga-instance-1280.png")
    console.browser.set_window_size(WIDE_SCREEN, 900)

    console.open(f"/admin/testapp/transferrun/{instance.pk}/change/")
    console.find("table.cqrs-parked details summary").click()
    assert "cannot process transfers" in console.find("table.cqrs-parked pre.cqrs-traceback").text
    too_wide["parked events"] = overflowing(console)
    console.browser.set_window_size(WIDE_SCREEN, 1400)
    console.shot("admin-saga-instance-parked-1280.png")
    console.browser.set_window_size(WIDE_SCREEN, 900)

    # The cause fixed, the retry asks first, then applies both events.
    monkeypatch.setattr(sagas, "POISON_SOURCES", set())
    console.find("a.cqrs-retry-link").click()
    console.wait_for('input[name="cqrs-confirm"]').click()
    console.wait_for("ul.messagelist li.success")
    assert "Retried the parked events" in console.find("ul.messagelist").text
    instance.refresh_from_db()
    assert (instance.parked, instance.state) == (False, "completed")
    assert too_wide == {page: {} for page in too_wide}
