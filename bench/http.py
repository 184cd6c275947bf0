"""The demo's HTTP API under gunicorn vs plain DRF views over the same tables.

    .venv/bin/python bench/http.py                       # PostgreSQL and SQLite
    .venv/bin/python bench/http.py --db postgres --rounds 6 --duration 4
    .venv/bin/python bench/http.py --db postgres --seed-orders 0   # throughput only

1. Throughput. gunicorn (``--workers 2``, sync workers, 127.0.0.1, a free port) serves the
   demo project plus bench-only plain DRF views (``bench/_http_plain.py``: a nested
   ``ModelSerializer`` that creates the order and its lines in one transaction, and a
   retrieve that joins the customer and sums the lines). A load generator in another
   process (``bench/_http_load.py``: threads over ``http.client``) measures requests/s of
     - ``POST /api/orders/`` (command bus, aggregate, event log, sync ``OrderView``) vs
       ``POST /plain/orders/``;
     - ``GET /api/orders/{id}/`` (query bus, ``OrderView`` row, ETag) vs
       ``GET /plain/orders/{id}/``;
   in alternating rounds (A B, B A, ...), same request bodies and ids for both.
   Targets (issue 12): commands >= 0.9x plain, reads >= 1.0x plain (issue 3: 0.8x, 1.0x).
2. The read-model payoff. ``--seed-orders`` (default 100,000) orders with 1-4 lines are
   bulk-inserted into the write tables, ``OrderView``, ``OrderCount`` and
   ``CustomerSummary``; then, one request at a time, p50/p95 over ``--repeats`` requests of
     - the first page of ``GET /api/orders/`` (``OrderView``) vs ``GET /plain/orders/``
       (join + ``Sum`` over the lines, ``PageNumberPagination``);
     - ``GET /api/customers/{id}/summary/`` vs ``GET /plain/customers/{id}/revenue/``
       (COUNT and SUM over the customer's orders and lines);
   and, in process, the 20 customers with the highest revenue from ``CustomerSummary``
   vs GROUP BY over all orders and lines. Both sides must return the same data (checked).
   Target (issue 3): >= 50x at p50.

Requests carry HTTP Basic credentials (MD5 hasher in the bench settings, for both).
PostgreSQL runs in a database created for the run (``cqrs_bench_http``) and dropped at the
end; SQLite in a temporary file. The async ``CustomerSummaryProjection`` has no qcluster
here: commands queue its catch-up (ORM broker) exactly as in the demo.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is called http.py: keep bench/ from shadowing the standard library's http
# package, then make the bench helpers importable from the end of sys.path.
_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != _BENCH]
import http.client  # noqa: E402

sys.path.append(_BENCH)

import argparse  # noqa: E402
import base64  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from decimal import Decimal  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import _common  # noqa: E402

REPO_ROOT = _common.REPO_ROOT
LOAD = str(Path(_BENCH) / "_http_load.py")
GUNICORN_CONF = str(Path(_BENCH) / "_http_gunicorn_conf.py")
USER, PASSWORD = "bench", "bench-password"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="Alternating rounds (default 4).")
    parser.add_argument(
        "--duration", type=float, default=3.0, help="Seconds per measurement (default 3)."
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="Client threads (default 4, 2 per worker)."
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2).")
    parser.add_argument(
        "--seed-orders",
        type=int,
        default=100_000,
        help="Orders bulk-inserted for the read-model payoff (default 100,000; 0: skip).",
    )
    parser.add_argument(
        "--repeats", type=int, default=40, help="Requests per payoff measurement (default 40)."
    )
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--keep-log", action="store_true", help="Print the gunicorn log at the end."
    )
    _common.add_common_arguments(parser, "http")
    return parser.parse_args(argv)


# -- database and server --------------------------------------------------------------


@contextlib.contextmanager
def http_database(db: str, pg_url: str) -> Iterator[dict[str, str]]:
    """Create the bench database, set Django up on it with the bench settings, migrate."""
    import django
    from django.core.management import call_command

    tmpdir = tempfile.mkdtemp(prefix="cqrs_bench_http_")
    env = {"DJANGO_SETTINGS_MODULE": "_http_settings", "DJANGO_DEBUG": "0"}
    name = ""
    if db == "sqlite":
        env["DEMO_SQLITE_PATH"] = str(Path(tmpdir) / "bench.sqlite3")
    else:
        _common.ensure_postgres_running(pg_url)
        name = urlsplit(pg_url).path.lstrip("/")
        if not name.startswith("cqrs_bench"):
            raise SystemExit(
                f"refusing to CREATE/DROP {name!r}: the name must start with cqrs_bench"
            )
        _common._pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _common._pg_admin(pg_url, f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = pg_url
    os.environ.pop("DATABASE_URL", None)
    os.environ.update(env)
    try:
        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        env["TMPDIR_BENCH"] = tmpdir
        yield env
    finally:
        from django.db import connections

        connections.close_all()
        shutil.rmtree(tmpdir, ignore_errors=True)
        if name:
            _common._pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workers: int, keep_log: bool) -> Iterator[int]:
    """Run gunicorn in its own process group; yield its port; kill the group at the end."""
    port = free_port()
    log_path = Path(env["TMPDIR_BENCH"]) / "gunicorn.log"
    log = log_path.open("wb")
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        GUNICORN_CONF,
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(REPO_ROOT),
        "--log-level",
        "warning",
        "_http_wsgi:application",
    ]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=str(REPO_ROOT),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{log_path.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/orders/?page_size=1")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not answer:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 0)
            os.killpg(proc.pid, signal.SIGKILL)  # a member outlived the master
        log.close()
        text = log_path.read_text(errors="replace")
        if keep_log or "Traceback" in text:
            print("-- gunicorn log (tail) --\n" + text[-4000:], flush=True)


def load(port: int, **spec: Any) -> dict[str, Any]:
    """Run the load generator in its own process; return its JSON result."""
    spec = {"host": "127.0.0.1", "port": port, **spec}
    out = subprocess.run(
        [sys.executable, LOAD],
        input=json.dumps(spec),
        check=True,
        capture_output=True,
        text=True,
        timeout=float(spec.get("duration", 60)) + 120,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise SystemExit(
            f"{spec['method']} {spec['paths'][0]}: {result['errors']} unexpected responses, "
            f"e.g. {result['first_errors']}"
        )
    return result


# -- data ----------------------------------------------------------------------------


def seed_catalogue(rng: random.Random) -> tuple[list[str], list[str]]:
    """A user, 50 customers and 200 products through the command bus."""
    from django.contrib.auth.models import User

    from demo_project.orders.commands import AddProduct, RegisterCustomer
    from django_cqrs import command_bus

    User.objects.create_user(USER, password=PASSWORD, is_staff=True)
    customers = [
        str(
            command_bus.dispatch(
                RegisterCustomer(name=f"Customer {i}", credit_limit=Decimal("1000000.00"))
            ).value
        )
        for i in range(50)
    ]
    products = [
        str(
            command_bus.dispatch(
                AddProduct(name=f"Product {i}", price=Decimal(rng.randint(100, 9999)).scaleb(-2))
            ).value
        )
        for i in range(200)
    ]
    return customers, products


def order_bodies(
    rng: random.Random, customers: list[str], products: list[str], n: int
) -> list[str]:
    return [
        json.dumps(
            {
                "customer_id": rng.choice(customers),
                "items": [
                    {"product_id": p, "quantity": rng.randint(1, 5)}
                    for p in rng.sample(products, rng.randint(1, 4))
                ],
            }
        )
        for _ in range(n)
    ]


def seed_orders(rng: random.Random, count: int) -> dict[str, Any]:
    """Bulk-insert ``count`` orders with lines, their OrderView rows and customer summaries.

    The seeded orders are placed "tomorrow", so they make up the first pages of both
    listings; orders created by the plain POST rounds (no OrderView row) are deleted
    first, so both listings count the same orders.
    """
    from django.db import transaction

    from demo_project.orders.models import (
        Customer,
        CustomerSummary,
        Order,
        OrderCount,
        OrderLine,
        OrderView,
        Product,
    )

    with transaction.atomic():
        plain = Order.objects.exclude(id__in=OrderView.objects.values("id"))
        OrderLine.objects.filter(order__in=plain).delete()
        plain.delete()
    products = list(Product.objects.values_list("id", "price"))
    customers = [
        Customer(
            id=uuid.UUID(int=rng.getrandbits(128), version=4),
            name=f"Seeded customer {i}",
            credit_limit=Decimal("1000000.00"),
            version=1,
        )
        for i in range(max(1, count // 100))
    ]
    Customer.objects.bulk_create(customers, batch_size=2000)
    summary = {c.id: [c.name, 0, Decimal("0")] for c in customers}
    counts: dict[tuple[uuid.UUID, str], int] = {}
    base = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    statuses = ["placed"] * 8 + ["shipped", "cancelled"]
    chunk = 5000
    placed_field = Order._meta.get_field("placed_at")
    placed_field.auto_now_add = False  # keep the chosen placed_at (bulk_create runs pre_save)
    try:
        for start in range(0, count, chunk):
            orders, lines, views = [], [], []
            for i in range(start, min(count, start + chunk)):
                customer = rng.choice(customers)
                order_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                placed_at = base + dt.timedelta(seconds=i)
                status = rng.choice(statuses)
                version = 1 if status == "placed" else 2
                total, items = Decimal("0"), 0
                for product_id, price in rng.sample(products, rng.randint(1, 4)):
                    qty = rng.randint(1, 5)
                    lines.append(
                        OrderLine(
                            order_id=order_id, product_id=product_id, quantity=qty, unit_price=price
                        )
                    )
                    total += price * qty
                    items += qty
                orders.append(
                    Order(
                        id=order_id,
                        customer=customer,
                        status=status,
                        total=total,
                        placed_at=placed_at,
                        version=version,
                    )
                )
                views.append(
                    OrderView(
                        id=order_id,
                        customer_id=customer.id,
                        customer_name=customer.name,
                        item_count=items,
                        total=total,
                        status=status,
                        version=version,
                        placed_at=placed_at,
                    )
                )
                if status != "cancelled":
                    summary[customer.id][1] += 1
                    summary[customer.id][2] += total
                counts[(customer.id, status)] = counts.get((customer.id, status), 0) + 1
            with transaction.atomic():
                Order.objects.bulk_create(orders, batch_size=2000)
                OrderLine.objects.bulk_create(lines, batch_size=2000)
                OrderView.objects.bulk_create(views, batch_size=2000)
    finally:
        placed_field.auto_now_add = True
    CustomerSummary.objects.bulk_create(
        [
            CustomerSummary(customer_id=cid, customer_name=n, order_count=c, lifetime_value=v)
            for cid, (n, c, v) in summary.items()
        ],
        batch_size=2000,
    )
    OrderCount.objects.bulk_create(  # the seeded customers are new: no rows to add to
        [
            OrderCount(key=OrderCount.key_of(cid, status), customer_id=cid, status=status, orders=n)
            for (cid, status), n in counts.items()
        ],
        batch_size=2000,
    )
    _analyze()
    return {"customers": [str(c.id) for c in customers]}


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # What autovacuum does after a bulk load (PostgreSQL: sets the visibility map,
        # which index-only scans such as COUNT(*) need); the same for both sides.
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


# -- measurements ---------------------------------------------------------------------


def throughput(
    args: argparse.Namespace, port: int, headers: dict[str, str], bodies: list[str], ids: list[str]
) -> dict[str, Any]:
    endpoints = {
        "POST /orders/": {
            "cqrs": {"method": "POST", "paths": ["/api/orders/"], "expect": 201},
            "plain": {"method": "POST", "paths": ["/plain/orders/"], "expect": 201},
        },
        "GET /orders/{id}/": {
            "cqrs": {"method": "GET", "paths": [f"/api/orders/{i}/" for i in ids], "expect": 200},
            "plain": {
                "method": "GET",
                "paths": [f"/plain/orders/{i}/" for i in ids],
                "expect": 200,
            },
        },
    }
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        e: {"cqrs": [], "plain": []} for e in endpoints
    }
    for index in range(args.rounds):
        order = ("cqrs", "plain") if index % 2 == 0 else ("plain", "cqrs")
        line = []
        for endpoint, variants in endpoints.items():
            for variant in order:
                spec = variants[variant]
                offset = random.Random(f"{index}{endpoint}{variant}").randrange(len(bodies))
                r = load(
                    port,
                    **spec,
                    bodies=bodies[offset:] + bodies[:offset] if spec["method"] == "POST" else None,
                    headers=headers,
                    concurrency=args.concurrency,
                    duration=args.duration,
                    warmup=2,
                )
                results[endpoint][variant].append(r)
            c, p = results[endpoint]["cqrs"][-1]["rps"], results[endpoint]["plain"][-1]["rps"]
            line.append(f"{endpoint} cqrs {c:6.0f}/s plain {p:6.0f}/s ({c / p:.2f}x)")
        print(f"round {index + 1}/{args.rounds}: " + ";  ".join(line), flush=True)
    out = {}
    for endpoint, per in results.items():
        rate = {
            v: sum(r["requests"] for r in rs) / sum(r["seconds"] for r in rs)
            for v, rs in per.items()
        }
        ratios = [c["rps"] / p["rps"] for c, p in zip(per["cqrs"], per["plain"], strict=True)]
        out[endpoint] = {
            "cqrs_rps": rate["cqrs"],
            "plain_rps": rate["plain"],
            "ratio": rate["cqrs"] / rate["plain"],
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "cqrs_p50_ms": statistics.median(r["p50_ms"] for r in per["cqrs"]),
            "plain_p50_ms": statistics.median(r["p50_ms"] for r in per["plain"]),
            "requests": {v: sum(r["requests"] for r in rs) for v, rs in per.items()},
        }
    return out


def fetch(port: int, path: str, headers: dict[str, str]) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
    return json.loads(body)


def check_same(port: int, headers: dict[str, str], customers: list[str]) -> None:
    """Both sides answer the same data: first page, and one customer's revenue."""
    ours, theirs = fetch(port, "/api/orders/", headers), fetch(port, "/plain/orders/", headers)
    keys = ("id", "customer_name", "item_count", "total", "status", "version")
    mine = [[str(r[k]) for k in keys] for r in ours["results"]]
    other = [[str(r[k]) for k in keys] for r in theirs["results"]]
    if ours["count"] != theirs["count"] or mine != other:
        raise SystemExit(
            f"first pages differ: {ours['count']} vs {theirs['count']}\n{mine[:2]}\n{other[:2]}"
        )
    for cid in customers[:5]:
        a = fetch(port, f"/api/customers/{cid}/summary/", headers)
        b = fetch(port, f"/plain/customers/{cid}/revenue/", headers)
        if (a["order_count"], Decimal(a["lifetime_value"])) != (
            b["order_count"],
            Decimal(b["lifetime_value"]),
        ):
            raise SystemExit(f"customer {cid}: summary {a} vs GROUP BY {b}")


def top_customers(repeats: int) -> dict[str, Any]:
    """In process: the 20 customers with the highest revenue, summary vs GROUP BY."""
    from django.db.models import Count, DecimalField, F, Q, Sum

    from demo_project.orders.models import Customer, CustomerSummary

    def from_summary() -> list[tuple[str, int, Decimal]]:
        return list(
            CustomerSummary.objects.order_by("-lifetime_value", "customer_id").values_list(
                "customer_name", "order_count", "lifetime_value"
            )[:20]
        )

    placed = ~Q(orders__status="cancelled")

    def from_joins() -> list[tuple[str, int, Decimal]]:
        return list(
            Customer.objects.annotate(
                order_count=Count("orders", filter=placed, distinct=True),
                revenue=Sum(
                    F("orders__lines__quantity") * F("orders__lines__unit_price"),
                    filter=placed,
                    output_field=DecimalField(max_digits=16, decimal_places=2),
                ),
            )
            .filter(name__startswith="Seeded")
            .order_by("-revenue", "id")
            .values_list("name", "order_count", "revenue")[:20]
        )

    if from_summary() != from_joins():
        raise SystemExit(f"top customers differ:\n{from_summary()[:3]}\n{from_joins()[:3]}")
    times: dict[str, list[float]] = {"summary": [], "joins": []}
    deadline = time.monotonic() + 60
    for i in range(repeats):
        for name, func in (("summary", from_summary), ("joins", from_joins))[:: 1 if i % 2 else -1]:
            started = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - started)
        if time.monotonic() > deadline:
            break
    return {k: _percentiles(v) for k, v in times.items()}


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50_ms": statistics.median(values) * 1000,
        "p95_ms": values[min(len(values) - 1, int(0.95 * len(values)))] * 1000,
        "n": len(values),
    }


def payoff(
    args: argparse.Namespace, port: int, headers: dict[str, str], rng: random.Random
) -> dict[str, Any]:
    print(f"seeding {args.seed_orders:,} orders ...", flush=True)
    started = time.perf_counter()
    seeded = seed_orders(rng, args.seed_orders)
    print(f"  {time.perf_counter() - started:.1f}s", flush=True)
    customers = seeded["customers"]
    check_same(port, headers, customers)
    cases = {
        "first page of GET /orders/": ("/api/orders/", "/plain/orders/", ["/"]),
        "GET one customer's revenue": (
            "/api/customers/{}/summary/",
            "/plain/customers/{}/revenue/",
            customers[:50],
        ),
    }
    out: dict[str, Any] = {}
    for label, (ours, theirs, keys) in cases.items():
        paths = {
            "read model": [ours.format(k) if "{}" in ours else ours for k in keys],
            "write tables": [theirs.format(k) if "{}" in theirs else theirs for k in keys],
        }
        latencies: dict[str, list[float]] = {"read model": [], "write tables": []}
        blocks = 4
        for block in range(blocks):
            for variant in ("read model", "write tables")[:: 1 if block % 2 else -1]:
                r = load(
                    port,
                    method="GET",
                    paths=paths[variant],
                    headers=headers,
                    expect=200,
                    concurrency=1,
                    duration=60,
                    max_requests=max(1, args.repeats // blocks),
                    warmup=1,
                    raw=True,
                )
                latencies[variant].extend(r["latencies_ms"])
        out[label] = {k: _percentiles([x / 1000 for x in v]) for k, v in latencies.items()}
        a, b = out[label]["read model"], out[label]["write tables"]
        print(
            f"  {label}: read model p50 {a['p50_ms']:.2f} ms, write tables p50 "
            f"{b['p50_ms']:.2f} ms ({b['p50_ms'] / a['p50_ms']:.0f}x)",
            flush=True,
        )
    t = top_customers(max(5, args.repeats // 2))
    out["top 20 customers by revenue (in process)"] = {
        "read model": t["summary"],
        "write tables": t["joins"],
    }
    print(
        f"  top 20 customers: summary p50 {t['summary']['p50_ms']:.2f} ms, GROUP BY p50 "
        f"{t['joins']['p50_ms']:.2f} ms",
        flush=True,
    )
    return out


def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    from demo_project.orders.models import OrderView

    rng = random.Random(args.seed)
    customers, products = seed_catalogue(rng)
    bodies = order_bodies(rng, customers, products, 2000)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    result: dict[str, Any] = {"db": args.db, "server": _common.server_version()}
    with gunicorn(env, args.workers, args.keep_log) as port:
        # Warm both sides up and create the orders the GET rounds read.
        for path in ("/api/orders/", "/plain/orders/"):
            load(
                port,
                method="POST",
                paths=[path],
                bodies=bodies,
                headers=headers,
                expect=201,
                concurrency=args.concurrency,
                duration=30,
                max_requests=300,
            )
        ids = [str(i) for i in OrderView.objects.values_list("id", flat=True)[:300]]
        result["throughput"] = throughput(args, port, headers, bodies, ids)
        if args.seed_orders:
            result["payoff"] = payoff(args, port, headers, rng)
            result["seed_orders"] = args.seed_orders
    return result


# -- output ---------------------------------------------------------------------------

TARGETS = {"POST /orders/": 0.9, "GET /orders/{id}/": 1.0}  # issue 12 (issue 3: 0.8x)


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        for endpoint, m in r["throughput"].items():
            target = TARGETS[endpoint]
            rows.append(
                [
                    r["server"],
                    endpoint,
                    f"{m['cqrs_rps']:,.0f}",
                    f"{m['plain_rps']:,.0f}",
                    f"{m['ratio']:.2f}x",
                    f"{m['ratio_min']:.2f}-{m['ratio_max']:.2f}",
                    f"{m['cqrs_p50_ms']:.1f} / {m['plain_p50_ms']:.1f}",
                    f">= {target}x: " + ("met" if m["ratio"] >= target else "MISSED"),
                ]
            )
    text = _common.table(
        [
            "database",
            "endpoint",
            "django_cqrs req/s",
            "plain DRF req/s",
            "ratio",
            "per-round",
            "p50 ms cqrs / plain",
            "target",
        ],
        rows,
    )
    rows = []
    for r in results:
        for label, m in (r.get("payoff") or {}).items():
            a, b = m["read model"], m["write tables"]
            ratio = b["p50_ms"] / a["p50_ms"]
            rows.append(
                [
                    r["server"],
                    label,
                    f"{a['p50_ms']:.2f} / {a['p95_ms']:.2f}",
                    f"{b['p50_ms']:.2f} / {b['p95_ms']:.2f}",
                    f"{ratio:,.0f}x",
                    "met" if ratio >= 50 else "MISSED",
                ]
            )
    if rows:
        n = next((r["seed_orders"] for r in results if r.get("seed_orders")), 0)
        text += f"\n\nRead-model payoff over {n:,} orders (one request at a time):\n\n"
        text += _common.table(
            [
                "database",
                "query",
                "read model p50 / p95 ms",
                "write tables (joins) p50 / p95 ms",
                "speed-up at p50",
                ">= 50x",
            ],
            rows,
        )
    return text


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.db == "both":
        results = _common.run_children(__file__, argv, ["postgres", "sqlite"])
        info = _common.machine_info()
        print(
            f"\n== HTTP API under gunicorn ({args.workers} sync workers), django_cqrs vs plain "
            f"DRF ({info['nproc']} x {info['cpu']}, {info['ram']}, Python {info['python']}, "
            f"Django {info['django']}) =="
        )
        print(report(results))
        if len(results) != 2:
            sys.exit(1)
        return
    with http_database(args.db, args.pg_url) as env:
        result = run(args, env)
    print()
    print(report([result]))
    _common.write_json(args.json, result)


if __name__ == "__main__":
    main(sys.argv[1:])
