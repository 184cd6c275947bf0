"""The demo's checkout saga with real qcluster workers on Redis: throughput and step latency.

    .venv/bin/python bench/sagas.py                       # 200 orders/s for 15 s
    .venv/bin/python bench/sagas.py --rate 300 --seconds 20 --workers 2

PostgreSQL only (a database created for the run and dropped after it), one ``qcluster``
with ``--workers`` workers (default 2) on the Redis broker, the demo's settings otherwise
(bench/_projection_lag_settings.py). Steps:

1. Customers and products (stock enough for every order) through the command bus.
2. ``PlaceOrder`` from ``--threads`` threads at ``--rate`` orders/s for ``--seconds``;
   each order starts a checkout: reserve stock -> request payment (the fake gateway
   approves at once) -> confirm.
3. Waits until every checkout has finished, then reports **completed checkouts per
   second** (orders / time from the first order's event to the last checkout's end) and
   checks every checkout completed, with each of its steps' commands recorded exactly
   once (events counted per order and step).
4. **Step latency**: for each event a saga command recorded, its ``recorded_at`` minus
   that of the event that moved the saga (``metadata["saga_event"]``): the time a step
   adds between one fact and the command it causes (commit, queueing, the worker's
   catch-up, the command). Compared with **the same command dispatched directly**
   (``ReserveStock`` then ``ReleaseStock`` for a fresh order id, in this process, while
   nothing else runs): what a client calling the command itself would wait.

Targets (issue 13): >= 100 completed checkouts/s, p95 step latency < 100 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _common
from _projection_lag import (
    Cluster,
    dispatch_at_rate,
    lag_environment,
    percentile,
    place_order_commands,
)

SAGA = "orders.CheckoutSaga"
TARGET_RATE = 100.0
TARGET_P95_MS = 100.0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "BENCH_SAGAS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cqrs_bench_sagas"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    )
    parser.add_argument("--rate", type=float, default=200.0, help="Orders/s (200).")
    parser.add_argument("--seconds", type=float, default=15.0, help="Seconds of orders (15).")
    parser.add_argument("--threads", type=int, default=4, help="Ordering threads (4).")
    parser.add_argument("--workers", type=int, default=2, help="qcluster workers (2).")
    parser.add_argument(
        "--partitions", type=int, default=1, help="The checkout saga's partitions (1)."
    )
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--products", type=int, default=40)
    parser.add_argument("--direct", type=int, default=300, help="Direct dispatches (300).")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", help="Write the result as JSON to this file.")
    args = parser.parse_args(argv)
    args.lag_workers = args.workers  # what _projection_lag.lag_environment reads
    return args


def seed(args: argparse.Namespace, orders: int) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    from decimal import Decimal

    from demo_project.orders.commands import AddProduct, RegisterCustomer
    from django_cqrs import command_bus

    customers = [
        command_bus.dispatch(
            RegisterCustomer(name=f"Customer {n}", credit_limit=Decimal("1000000"))
        ).value
        for n in range(args.customers)
    ]
    stock = 5 * 4 * orders  # never short: every checkout can complete
    products = [
        command_bus.dispatch(
            AddProduct(name=f"Product {n}", price=Decimal("9.99"), stock=stock)
        ).value
        for n in range(args.products)
    ]
    return customers, products


def place_orders(
    args: argparse.Namespace, customers: list[uuid.UUID], products: list[uuid.UUID]
) -> dict[str, Any]:
    total = int(args.rate * args.seconds)
    commands = place_order_commands(total, customers, products, args.seed)
    sent = dispatch_at_rate(commands, args.rate, args.threads)
    return {"orders": total, "order_seconds": sent["seconds"], "order_rate": sent["rate"]}


def wait_finished(orders: int, clusters: list[Cluster], timeout: float) -> None:
    from demo_project.orders.models import Checkout

    deadline = time.monotonic() + timeout
    while Checkout.objects.filter(finished_at__isnull=False).count() < orders:
        if time.monotonic() > deadline:
            done = Checkout.objects.filter(finished_at__isnull=False).count()
            tails = "\n".join(c.tail() for c in clusters)
            raise SystemExit(f"{done} of {orders} checkouts finished after {timeout:.0f}s\n{tails}")
        time.sleep(0.05)


def check_and_measure(first_position: int) -> dict[str, Any]:
    """Every checkout completed, each step's command recorded once; throughput, latency."""
    from collections import Counter

    from demo_project.orders.models import Checkout
    from django_cqrs.models import StoredEvent

    states = Counter(Checkout.objects.values_list("state", flat=True))
    if set(states) != {"completed"}:
        errors = Counter(
            Checkout.objects.exclude(state="completed").values_list("error", flat=True)
        )
        raise SystemExit(f"not every checkout completed: {dict(states)}; {errors.most_common(3)}")
    events = StoredEvent.objects.filter(position__gt=first_position)
    recorded = dict(events.values_list("position", "recorded_at"))
    by_step: Counter[tuple[str, str, str]] = Counter()
    latencies = []
    for position, metadata in events.filter(metadata__has_key="saga_step").values_list(
        "position", "metadata"
    ):
        by_step[(metadata["causation_id"], metadata["saga_step"], metadata.get("command_id"))] += 1
        cause = recorded.get(metadata["saga_event"])
        if cause is not None:
            latencies.append((recorded[position] - cause).total_seconds() * 1000)
    commands_per_step = Counter()
    for (instance, step, _command), _n in by_step.items():
        commands_per_step[(instance, step)] += 1
    repeated = {key: n for key, n in commands_per_step.items() if n != 1}
    if repeated:
        raise SystemExit(f"steps whose command ran more than once: {list(repeated)[:5]}")
    first = min(
        events.filter(event_type="orders.OrderPlaced").values_list("recorded_at", flat=True)
    )
    last = max(Checkout.objects.values_list("finished_at", flat=True))
    latencies.sort()
    checkouts = sum(states.values())
    seconds = (last - first).total_seconds()
    return {
        "checkouts": checkouts,
        "checkout_seconds": seconds,
        "checkouts_per_s": checkouts / seconds,
        "steps": len(commands_per_step),
        "step_p50_ms": percentile(latencies, 0.50),
        "step_p95_ms": percentile(latencies, 0.95),
        "step_max_ms": latencies[-1],
    }


def direct_dispatch(args: argparse.Namespace, products: list[uuid.UUID]) -> dict[str, Any]:
    """``ReserveStock`` dispatched by the caller itself, then released: its duration."""
    from demo_project.orders.commands import ReleaseStock, ReserveStock, StockLine
    from django_cqrs import command_bus

    durations = []
    for n in range(args.direct):
        order_id = uuid.uuid4()
        lines = [StockLine(product_id=products[n % len(products)], quantity=1)]
        began = time.perf_counter()
        command_bus.dispatch(ReserveStock(order_id=order_id, lines=lines))
        durations.append((time.perf_counter() - began) * 1000)
        command_bus.dispatch(ReleaseStock(order_id=order_id, lines=lines))
    durations.sort()
    return {
        "direct_p50_ms": statistics.median(durations),
        "direct_p95_ms": percentile(durations, 0.95),
    }


def main(argv: list[str]) -> None:
    args = parse(argv)
    # A backlog is what the bench measures, not a reason to time checkouts out.
    os.environ.setdefault("DEMO_PAYMENT_TIMEOUT", "600")
    os.environ["DEMO_CHECKOUT_PARTITIONS"] = str(args.partitions)
    info = _common.machine_info()
    tmpdir = Path(tempfile.mkdtemp(prefix="cqrs_bench_sagas_"))
    clusters: list[Cluster] = []
    survivors: list[int] = []
    try:
        with lag_environment(args) as env:
            from django.db import connection

            from django_cqrs import store

            server = _common.server_version()
            orders = int(args.rate * args.seconds)
            customers, products = seed(args, orders)
            clusters.append(Cluster(env, tmpdir / "qcluster.log"))
            clusters[0].start()
            first_position = store.head()
            print(
                f"{SAGA}: {orders:,} orders at {args.rate:.0f}/s from {args.threads} threads, "
                f"1 qcluster x {args.workers} workers on Redis, {args.partitions} partition(s) ...",
                flush=True,
            )
            placed = place_orders(args, customers, products)
            wait_finished(orders, clusters, timeout=max(120.0, 10 * args.seconds))
            result = {**placed, **check_and_measure(first_position)}
            result["conflicts"] = (
                clusters[0].log.read_text(errors="replace").count("retrying after")
            )
            survivors += clusters[0].kill()
            clusters.clear()
            result.update(direct_dispatch(args, products))
            connection.close()
    finally:
        for cluster in clusters:
            survivors += cluster.kill()
        if not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            print(f"logs kept in {tmpdir}")
    if survivors:
        raise SystemExit(f"qcluster processes survived SIGKILL of their group: {survivors}")
    result.update(server=server, workers=args.workers, partitions=args.partitions, machine=info)
    rate_ok = result["checkouts_per_s"] >= TARGET_RATE
    latency_ok = result["step_p95_ms"] < TARGET_P95_MS
    print(
        f"\n== Checkout saga in {args.partitions} partition(s) on {server}, Redis broker, "
        f"{args.workers} workers, {args.products} products "
        f"({info['nproc']} x {info['cpu']}, Python {info['python']}, Django {info['django']}) ==\n"
        + _common.table(
            ["measure", "value", "target"],
            [
                ["orders placed/s (asked)", f"{result['order_rate']:.0f} ({args.rate:.0f})", ""],
                [
                    "completed checkouts/s",
                    f"{result['checkouts_per_s']:.0f} ({result['checkouts']:,} in "
                    f"{result['checkout_seconds']:.1f} s)",
                    f">= {TARGET_RATE:.0f}: {'met' if rate_ok else 'MISSED'}",
                ],
                [
                    "saga step latency p50 / p95 / max ms",
                    f"{result['step_p50_ms']:.1f} / {result['step_p95_ms']:.1f} / "
                    f"{result['step_max_ms']:.0f} ({result['steps']:,} steps)",
                    f"p95 < {TARGET_P95_MS:.0f}: {'met' if latency_ok else 'MISSED'}",
                ],
                ["batches retried (lock waits, conflicts)", str(result["conflicts"]), ""],
                [
                    "the same command dispatched directly p50 / p95 ms",
                    f"{result['direct_p50_ms']:.1f} / {result['direct_p95_ms']:.1f}",
                    "",
                ],
                [
                    "latency a step adds over a direct dispatch (p50)",
                    f"{result['step_p50_ms'] - result['direct_p50_ms']:.1f} ms",
                    "",
                ],
            ],
        )
    )
    _common.write_json(args.json, result)


if __name__ == "__main__":
    main(sys.argv[1:])
