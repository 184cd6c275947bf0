"""The admin's event log at millions of events: how long each changelist page takes.

    .venv/bin/python bench/admin.py                        # 100,000 events, PostgreSQL
    .venv/bin/python bench/admin.py --events 3000000

1. Creates ``cqrs_bench_admin`` (dropped at the end), migrates, and fills the log with
   ``--events`` events by one set-based ``INSERT ... SELECT generate_series`` per
   500,000 (not the bus): orders of four events each (placed, item added, shipped or
   cancelled), a correlation id per order, 1,000 users; then ``VACUUM ANALYZE``.
2. Times, with Django's test client logged in as a superuser, the event log's changelist
   (first page, a late page, each filter, each kind of search) and one aggregate's stream
   view: ``--rounds`` requests each, after one warm-up, printing the median in ms.

3. Times what a projection far behind costs the operators and the clients: the demo's
   async ``CustomerSummaryProjection`` has never run, so it lags by every event in the
   log (and has never run: it shows as stalled); ``/cqrs/health/``,
   ``projection_status()`` (what ``cqrs_status`` prints, with the activity) and one
   read-your-writes poll (``wait_for_position`` with a timeout of 0).

Targets (issue 10, item 4): every page under 300 ms at 3,000,000 events on PostgreSQL;
lag, health and read-your-writes under 50 ms with a 1,000,000-event lag.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import _common

BATCH = 500_000
TARGET_MS = 300
STATUS_TARGET_MS = 50

_SEED = """
INSERT INTO django_cqrs_event (event_type, schema_version, aggregate_type, aggregate_id,
    aggregate_version, payload, metadata, recorded_at)
SELECT
    CASE i %% 4 WHEN 0 THEN 'orders.OrderPlaced' WHEN 1 THEN 'orders.ItemAdded'
        WHEN 2 THEN 'orders.ItemAdded'
        ELSE (CASE WHEN i %% 3 = 0 THEN 'orders.OrderCancelled' ELSE 'orders.OrderShipped' END)
    END,
    1, 'orders.Order', md5('order-' || (i / 4))::uuid::text, 1 + i %% 4,
    jsonb_build_object('n', i, 'quantity', 1 + i %% 5),
    jsonb_build_object('correlation_id', md5('corr-' || (i / 4))::uuid::text,
                       'user', 'user-' || (i %% 1000), 'causation_id', null),
    now() - make_interval(secs => (%(total)s - i))
FROM generate_series(%(start)s, %(stop)s) AS i
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--pg-url",
        default=f"{_common.DEFAULT_PG_SERVER}/cqrs_bench_admin",
        help="PostgreSQL database to CREATE and DROP (default: %(default)s).",
    )
    return parser.parse_args(argv)


def configure(database: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django_q",
            "django_cqrs",
            "demo_project.orders",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        ROOT_URLCONF=__name__,
        DATABASES={"default": database},
        Q_CLUSTER={"name": "django_cqrs_bench", "orm": "default", "catch_up": False},
        DJANGO_CQRS={},
        LOGGING_CONFIG=None,
    )
    django.setup()


urlpatterns: list[Any] = []


def seed(events: int) -> float:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        for start in range(0, events, BATCH):
            stop = min(start + BATCH, events) - 1
            cursor.execute(_SEED, {"start": start, "stop": stop, "total": events})
            print(f"  seeded {stop + 1:,} events", flush=True)
        cursor.execute("VACUUM ANALYZE django_cqrs_event")
    return time.perf_counter() - started


def pages(events: int) -> list[tuple[str, str]]:
    from django.urls import reverse

    from django_cqrs.models import StoredEvent

    log = reverse("admin:django_cqrs_storedevent_changelist")
    stream = reverse("admin:django_cqrs_storedevent_stream")
    sample = StoredEvent.objects.order_by("-position")[events // 3 : events // 3 + 1].get()
    aggregate = sample.aggregate_id
    corr = sample.metadata["correlation_id"]
    last_page = max(events // 50, 1)
    kind = "orders.OrderCancelled"  # 1 event in 12
    cancelled = max(StoredEvent.objects.filter(event_type=kind).count() // 50, 1)  # pages
    return [
        ("first page", log),
        ("page 20", f"{log}?p=20"),
        ("page 1,000 (offset 50k)", f"{log}?p=1000"),
        (f"last page ({last_page:,})", f"{log}?p={last_page}"),
        ("?correlation_id=", f"{log}?correlation_id={corr}"),
        ("?user= (1 in 1,000)", f"{log}?user=user-7"),
        ("?aggregate_id= alone", f"{log}?aggregate_id={aggregate}"),
        (
            "?aggregate_id= & type",
            f"{log}?aggregate_id={aggregate}&aggregate_type=orders.Order",
        ),
        ("?event_type= (1 in 12)", f"{log}?event_type={kind}"),
        (
            f"?event_type= page {min(200, cancelled):,} (last linked)",
            f"{log}?event_type={kind}&p={min(200, cancelled)}",
        ),
        (f"?event_type= page {cancelled:,} (last)", f"{log}?event_type={kind}&p={cancelled}"),
        ("?aggregate_type=", f"{log}?aggregate_type=orders.Order"),
        ("?user= & ?event_type=", f"{log}?user=user-7&event_type=orders.OrderShipped"),
        ("search: position", f"{log}?q={sample.position}"),
        ("search: aggregate id", f"{log}?q={aggregate}"),
        ("search: correlation id", f"{log}?q={corr}"),
        ("search: event type", f"{log}?q=orders.OrderShipped"),
        ("search: no match", f"{log}?q=nothing-like-this"),
        ("stream view (id alone)", f"{stream}?aggregate_id={aggregate}"),
        (
            "stream view (type & id)",
            f"{stream}?aggregate_id={aggregate}&aggregate_type=orders.Order",
        ),
    ]


def time_pages(events: int, rounds: int) -> list[tuple[str, float, str]]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the client records each response's context
    user = get_user_model().objects.create_superuser("bench", password="bench")
    client = Client()
    client.force_login(user)
    results = []
    for name, url in pages(events):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        count = ""
        context = response.context
        if context is not None and "cl" in context:
            count = context["cl"].paginator.count_text
        elif context is not None and "count" in context:
            count = str(context["count"])
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        results.append((name, statistics.median(times), count))
    return results


def time_status(events: int, rounds: int) -> list[tuple[str, float, str]]:
    """Health, status and a read-your-writes poll with the async projection lagging."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from demo_project.orders.models import CustomerSummary
    from django_cqrs import store
    from django_cqrs.projections.status import projection_status, wait_for_position

    client = Client()  # the figures need the view permission: a superuser has it
    client.force_login(
        get_user_model().objects.filter(is_superuser=True).first()
        or get_user_model().objects.create_superuser("bench-health", password="bench")
    )
    newest = store.head()

    def health() -> str:
        response = client.get("/cqrs/health/")
        assert response.status_code in (200, 503), response.status_code
        summary = response.json()["projections"]["orders.CustomerSummaryProjection"]
        return f"lag {summary['lag_events']:,}, {summary['activity']}"

    def status() -> str:
        row = {row.name: row for row in projection_status()}["orders.CustomerSummaryProjection"]
        return f"lag {row.lag_events:,}, {row.activity}"

    def poll() -> str:
        return f"reached: {wait_for_position(CustomerSummary, newest, timeout=0)}"

    results = []
    for name, call in (
        (f"/cqrs/health/ (lag {events:,})", health),
        ("projection_status() (cqrs_status)", status),
        ("read-your-writes poll (timeout 0)", poll),
    ):
        shown = call()
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1000)
        results.append((name, statistics.median(times), shown))
    return results


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    name = urlsplit(args.pg_url).path.lstrip("/")
    if not name.startswith("cqrs_bench"):
        raise SystemExit(f"refusing to CREATE/DROP {name!r}: the name must start with cqrs_bench")
    _common.ensure_postgres_running(args.pg_url)
    _common._pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _common._pg_admin(args.pg_url, f'CREATE DATABASE "{name}"')
    try:
        configure(_common.postgres_database(args.pg_url))
        from django.contrib import admin
        from django.core.management import call_command
        from django.urls import include, path

        urlpatterns.append(path("admin/", admin.site.urls))
        urlpatterns.append(path("cqrs/", include("django_cqrs.urls")))
        call_command("migrate", verbosity=0, interactive=False, skip_checks=True)
        print(f"seeding {args.events:,} events ...", flush=True)
        seconds = seed(args.events)
        print(f"  {seconds:.1f} s with VACUUM ANALYZE")
        results = time_pages(args.events, args.rounds)
        print(f"\n== Admin event log, {args.events:,} events, {_common.server_version()} ==")
        rows = [
            (page, f"{ms:.1f}", count, "ok" if ms < TARGET_MS else "OVER")
            for page, ms, count in results
        ]
        print(_common.table(("page", "median ms", "count shown", f"< {TARGET_MS} ms"), rows))
        status_rows = [
            (what, f"{ms:.1f}", shown, "ok" if ms < STATUS_TARGET_MS else "OVER")
            for what, ms, shown in time_status(args.events, args.rounds)
        ]
        print(f"\n== Lag, health and read-your-writes, {args.events:,} events behind ==")
        print(
            _common.table(("call", "median ms", "shows", f"< {STATUS_TARGET_MS} ms"), status_rows)
        )
    finally:
        from django.db import connections

        connections.close_all()
        _common._pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main(sys.argv[1:])
