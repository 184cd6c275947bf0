"""Concurrent writers: PlaceOrder through the bus vs plain ORM code, 1 to 16 processes.

    .venv/bin/python bench/concurrency.py                  # PostgreSQL, 1,2,4,8,16 writers
    .venv/bin/python bench/concurrency.py --levels 1,2 --rounds 2 --seconds 2
    .venv/bin/python bench/concurrency.py --mix transfer   # PlaceOrder + AddItem
    .venv/bin/python bench/concurrency.py --scenario orderview
    .venv/bin/python bench/concurrency.py --db sqlite      # one writer at a time, by design

Appends to the event log no longer take a table lock (events carry their transaction id;
readers order by ``(transaction_id, position)`` below the horizon of open transactions),
so writers on different aggregates should commit side by side. This script measures it.

Each writer is a real process (``multiprocessing``, "spawn" context: no threads, the GIL
would hide what the database does), sets Django up itself and closes its connections at
the end. Writer ``i`` has customers of its own, so no two writers ever touch the same
aggregate or the same ``OrderCount`` row. Per level (1, 2, 4, 8, 16 writers) the same
processes run both variants in interleaved rounds (bus, plain, plain, bus, ...), after
``--warmup`` operations per writer and an unmeasured ``--warmup-seconds`` round of each;
all writers of a round start together and run ``--seconds``; a round's rate is the
orders its writers completed over the time until the last one finished.

The variants are those of ``bench/commands.py`` (imported from there): the bus
(``command_bus.dispatch(PlaceOrder(...))`` with the default middleware and the demo's
handler, aggregate and projections) and plain Django ORM code writing the same rows in one
transaction. A check before the run places one order with each from the same input and
compares the rows they wrote; one after it counts one row of each kind per order.

``--mix transfer``: the demo has no command that saves two aggregates (every handler in
``demo_project/orders/handlers.py`` saves exactly one), so the multi-aggregate mix is
one operation = ``PlaceOrder`` for a customer, then ``AddItem`` (one random product,
1-5 of it) on that customer's previous order (placed by this writer, committed): two
commands, two transactions, two different ``Order`` aggregates of the same customer. Its
plain variant is the plain ``PlaceOrder`` plus a hand-written ``AddItem`` (read the order,
its lines and the product, an optimistic ``UPDATE ... WHERE version``, the new line, the
``ItemAdded`` event and the ``OrderView`` update), checked against the bus the same way.
Rates and latencies are then per operation (both commands).

While each round runs, the parent samples ``pg_stat_activity`` (``--sample-interval``) for
the writers' backends (``application_name`` ``cqrs_bench_writer``): the share waiting on
a heavyweight lock (``wait_event_type = 'Lock'``) is the figure that shows serialization;
the other states (running, ``LWLock``, ``IO``, waiting for the client process) show where
the rest of the time goes. ``/proc/stat`` gives how busy the machine's CPUs were.

Targets (issue 10): bus/plain >= 0.9 at every level (median of per-round ratios), and
bus throughput at 4 writers >= 1.8x the bus at 1 writer (medians over rounds). Client
processes and the PostgreSQL server share the machine's CPUs: with 2 cores, levels
beyond 2 writers are CPU-bound, for both variants.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import _common

APPLICATION_NAME = "cqrs_bench_writer"
VARIANTS = ("bus", "plain")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--levels",
        default="1,2,4,8,16",
        help="Numbers of concurrent writer processes (default %(default)s).",
    )
    parser.add_argument("--rounds", type=int, default=5, help="Rounds per level (default 5).")
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="Seconds per round and variant (default 4)."
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="Unmeasured operations per writer and variant."
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=1.0,
        help="Unmeasured round of each variant at the start of each level (default 1 s).",
    )
    parser.add_argument(
        "--mix",
        choices=("place", "transfer"),
        default="place",
        help="place (default): PlaceOrder only; transfer: PlaceOrder then AddItem on the "
        "customer's previous order (see the docstring).",
    )
    parser.add_argument(
        "--scenario",
        choices=("demo", "orderview"),
        default="demo",
        help="demo (default): the demo's projections as shipped (OrderView and OrderCount "
        "sync, CustomerSummary async); orderview: only OrderViewProjection.",
    )
    parser.add_argument(
        "--customers-per-writer", type=int, default=4, help="Customers of each writer."
    )
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument(
        "--sample-interval",
        type=float,
        default=0.25,
        help="Seconds between pg_stat_activity samples during a round (default 0.25).",
    )
    _common.add_common_arguments(parser, "concurrency")
    parser.set_defaults(db="postgres")  # the target; SQLite has one writer at a time
    args = parser.parse_args(argv)
    args.level_list = sorted({int(x) for x in args.levels.split(",") if x.strip()})
    if not args.level_list or min(args.level_list) < 1:
        parser.error("--levels: positive integers, e.g. 1,2,4")
    return args


# -- the variants -----------------------------------------------------------------------


def apply_scenario(scenario: str) -> None:
    from django_cqrs.projections import all_projections, unregister

    if scenario == "orderview":
        for cls in all_projections():
            if cls.name != "orders.OrderViewProjection":
                unregister(cls)


def make_add_item() -> dict[str, Any]:
    """The bus and plain AddItem callables (order, product, quantity); Django set up."""
    from django.db import transaction

    from demo_project.orders.commands import AddItem
    from demo_project.orders.events import ItemAdded
    from demo_project.orders.models import (
        Order,
        OrderLine,
        OrderView,
        Product,
    )
    from django_cqrs import command_bus
    from django_cqrs.models import StoredEvent

    command_type = AddItem.message_name()

    def bus_add(order_id: uuid.UUID, product_id: uuid.UUID, quantity: int) -> None:
        command_bus.dispatch(AddItem(order_id=order_id, product_id=product_id, quantity=quantity))

    def plain_add(order_id: uuid.UUID, product_id: uuid.UUID, quantity: int) -> None:
        with transaction.atomic():
            order = Order.objects.select_related("customer").get(pk=order_id)
            product = Product.objects.get(pk=product_id)
            lines = list(OrderLine.objects.filter(order_id=order_id))
            item_count = sum(line.quantity for line in lines)
            if order.status != "placed":
                raise ValueError(f"items cannot be added to a {order.status} order")
            price = product.price
            total = order.total + price * quantity
            item_count += quantity
            if total > order.customer.credit_limit:
                raise ValueError("credit limit exceeded")
            version = order.version + 1
            if not Order.objects.filter(pk=order_id, version=order.version).update(
                total=total, version=version
            ):
                raise RuntimeError(f"order {order_id} was changed by someone else")
            OrderLine.objects.create(
                order_id=order_id, product_id=product_id, quantity=quantity, unit_price=price
            )
            command_id = str(uuid.uuid4())
            StoredEvent.objects.create(
                event_type=ItemAdded.event_type,
                schema_version=ItemAdded.schema_version,
                aggregate_type="orders.Order",
                aggregate_id=str(order_id),
                aggregate_version=version,
                payload={
                    "order_id": str(order_id),
                    "customer_id": str(order.customer_id),
                    "line": {
                        "product_id": str(product_id),
                        "quantity": quantity,
                        "unit_price": str(price),
                    },
                    "total": str(total),
                    "item_count": item_count,
                },
                metadata={
                    "command_type": command_type,
                    "command_id": command_id,
                    "correlation_id": command_id,
                    "causation_id": command_id,
                },
            )
            OrderView.objects.filter(pk=order_id).update(
                item_count=item_count, total=total, version=version
            )

    return {"bus": bus_add, "plain": plain_add}


def check_same_add_item(bus_order: uuid.UUID, plain_order: uuid.UUID) -> None:
    """The two AddItems (same product and quantity, orders from the same input) match."""
    from demo_project.orders.models import Order, OrderLine, OrderView
    from django_cqrs.models import StoredEvent

    def rows(order_id: uuid.UUID) -> dict[str, Any]:
        event = StoredEvent.objects.get(
            aggregate_type="orders.Order", aggregate_id=str(order_id), event_type="orders.ItemAdded"
        )
        payload = dict(event.payload)
        payload.pop("order_id")
        return {
            "order": Order.objects.filter(pk=order_id).values("total", "version")[0],
            "lines": sorted(
                OrderLine.objects.filter(order_id=order_id).values_list(
                    "product_id", "quantity", "unit_price"
                )
            ),
            "event": (event.event_type, event.schema_version, event.aggregate_version, payload),
            "metadata_keys": sorted(event.metadata),
            "view": OrderView.objects.filter(pk=order_id).values("item_count", "total", "version")[
                0
            ],
        }

    bus_rows, plain_rows = rows(bus_order), rows(plain_order)
    if bus_rows != plain_rows:
        raise SystemExit(
            f"the AddItem variants wrote different rows:\nbus   {bus_rows}\nplain {plain_rows}"
        )


# -- a writer process -------------------------------------------------------------------


def writer_main(
    index: int,
    database: dict[str, Any],
    options: dict[str, Any],
    customers: list[uuid.UUID],
    products: list[uuid.UUID],
    conn: Any,
) -> None:
    """One writer: set Django up, warm up, then run the rounds the parent sends."""
    import traceback

    database = dict(database)
    if database["ENGINE"].endswith("postgresql"):
        database["OPTIONS"] = {**database.get("OPTIONS", {}), "application_name": APPLICATION_NAME}
    try:
        _common.configure_django(database)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise
    from django.db import connections

    try:
        import commands  # bench/commands.py: the bus and plain PlaceOrder

        apply_scenario(options["scenario"])
        place = commands.make_variants()
        add_item = make_add_item() if options["mix"] == "transfer" else None
        rng = random.Random(f"{options['seed']}-writer-{index}")
        turn = dict.fromkeys(VARIANTS, 0)
        previous: dict[str, dict[uuid.UUID, uuid.UUID]] = {name: {} for name in VARIANTS}
        done = {"orders": 0, "add_items": 0}

        def operation(name: str) -> None:
            customer = customers[turn[name] % len(customers)]
            turn[name] += 1
            _, items = commands.order_inputs(rng, 1, [customer], products)[0]
            order_id = place[name](customer, items)
            done["orders"] += 1
            if add_item is not None:
                earlier = previous[name].get(customer)
                if earlier is not None:
                    add_item[name](earlier, rng.choice(products), rng.randint(1, 5))
                    done["add_items"] += 1
                previous[name][customer] = order_id

        for name in VARIANTS:
            for _ in range(options["warmup"]):
                operation(name)
        conn.send(("ready", os.getpid()))
        while True:
            message = conn.recv()
            if message is None:
                break
            name, start, end = message
            delay = start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            latencies: list[float] = []
            errors = 0
            first_error = None
            cpu = time.process_time()
            now = time.monotonic()
            while now < end:
                began = time.perf_counter()
                try:
                    operation(name)
                except Exception as exc:  # counted and reported, the round goes on
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"
                else:
                    latencies.append(time.perf_counter() - began)
                now = time.monotonic()
            conn.send(
                {
                    "count": len(latencies),
                    "latencies": latencies,
                    "finished": now,
                    "cpu": time.process_time() - cpu,
                    "errors": errors,
                    "first_error": first_error,
                }
            )
        conn.send(("done", done))
    except BaseException:
        with contextlib.suppress(Exception):
            conn.send(("error", traceback.format_exc()))
        raise
    finally:
        connections.close_all()


def _receive(conn: Any, what: str, timeout: float = 600) -> Any:
    if not conn.poll(timeout):
        raise SystemExit(f"no {what} from a writer within {timeout:.0f} s")
    message = conn.recv()
    if isinstance(message, tuple) and message[0] == "error":
        raise SystemExit(f"a writer failed:\n{message[1]}")
    return message


# -- observing a round ------------------------------------------------------------------


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (``/proc/stat``)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
        return total - fields[3] - fields[4], total
    return 0, 0


def classify(state: str | None, wait_type: str | None) -> str:
    if wait_type == "Lock":
        return "lock"
    if wait_type == "LWLock":
        return "lwlock"
    if wait_type == "IO":
        return "io"
    if wait_type == "Client" or (state or "").startswith("idle"):
        return "client"
    if state == "active" and wait_type is None:
        return "running"
    return "other"


WAIT_CLASSES = ("running", "lock", "lwlock", "io", "client", "other")


def observe(end: float, interval: float, postgres: bool) -> dict[str, Any]:
    """Sample the writers' backends every ``interval`` s until ``end`` (monotonic)."""
    from django.db import connection

    waits: collections.Counter[str] = collections.Counter()
    lock_events: collections.Counter[str] = collections.Counter()
    samples = 0
    while True:
        left = end - time.monotonic()
        if left <= interval / 2:
            break
        time.sleep(min(interval, left))
        if not postgres or time.monotonic() >= end:
            continue
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s",
                [APPLICATION_NAME],
            )
            rows = cursor.fetchall()
        samples += 1
        for state, wait_type, wait_event in rows:
            kind = classify(state, wait_type)
            waits[kind] += 1
            if kind == "lock":
                lock_events[wait_event or "?"] += 1
    left = end - time.monotonic()
    if left > 0:
        time.sleep(left)
    return {"samples": samples, "waits": dict(waits), "lock_events": dict(lock_events)}


# -- the run ----------------------------------------------------------------------------


def check_variants(
    args: argparse.Namespace, customer: uuid.UUID, products: list[uuid.UUID]
) -> dict[str, Any]:
    """Both variants write the same rows for the same input; statements per operation."""
    import commands

    place = commands.make_variants()
    rng = random.Random(f"{args.seed}-check")
    inp = commands.order_inputs(rng, 1, [customer], products)[0]
    ids = {name: place[name](*inp) for name in VARIANTS}
    commands.check_same_rows(ids["bus"], ids["plain"])
    statements = {name: commands.statements_per_order(place[name], inp) for name in VARIANTS}
    info: dict[str, Any] = {"projections": place["projections"], "statements": statements}
    if args.mix == "transfer":
        add_item = make_add_item()
        for name in VARIANTS:
            add_item[name](ids[name], products[0], 3)
        check_same_add_item(ids["bus"], ids["plain"])
        info["add_item_statements"] = {
            name: commands.statements_per_order(add_item[name], (ids[name], products[1], 1))
            for name in VARIANTS
        }
    return info


def event_counts() -> dict[str, int]:
    from django_cqrs.models import StoredEvent

    return {"item_added_events": StoredEvent.objects.filter(event_type="orders.ItemAdded").count()}


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(share * (len(sorted_values) - 1))))
    return sorted_values[index]


def run_level(
    args: argparse.Namespace,
    level: int,
    database: dict[str, Any],
    customers: list[uuid.UUID],
    products: list[uuid.UUID],
    totals: dict[str, int],
) -> dict[str, Any]:
    from django.db import connection

    postgres = connection.vendor == "postgresql"
    context = multiprocessing.get_context("spawn")
    options = {"scenario": args.scenario, "mix": args.mix, "seed": args.seed, "warmup": args.warmup}
    per = args.customers_per_writer
    pipes = [context.Pipe() for _ in range(level)]
    processes = [
        context.Process(
            target=writer_main,
            args=(i, database, options, customers[i * per : (i + 1) * per], products, child),
            daemon=True,
        )
        for i, (_, child) in enumerate(pipes)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    conns = [parent for parent, _ in pipes]
    for _, child in pipes:
        child.close()
    try:
        for conn in conns:
            _receive(conn, "ready signal")
        print(
            f"-- {level} writer(s) ready after {time.perf_counter() - started:.1f} s "
            f"(set-up and {args.warmup} warm-up operations per variant each; then an "
            f"unmeasured {args.warmup_seconds:g} s round of each variant)",
            flush=True,
        )
        # An unmeasured round of each variant first (caches, plans, the new processes).
        for name in VARIANTS:
            start = time.monotonic() + 0.1
            for conn in conns:
                conn.send((name, start, start + args.warmup_seconds))
            for conn in conns:
                _receive(conn, "warm-up result", args.warmup_seconds + 600)
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        latencies: dict[str, list[float]] = {name: [] for name in VARIANTS}
        waits = {name: collections.Counter[str]() for name in VARIANTS}
        lock_events = {name: collections.Counter[str]() for name in VARIANTS}
        samples = dict.fromkeys(VARIANTS, 0)
        busy: dict[str, list[float]] = {name: [] for name in VARIANTS}
        client_cpu = dict.fromkeys(VARIANTS, 0.0)
        counts = dict.fromkeys(VARIANTS, 0)
        errors = dict.fromkeys(VARIANTS, 0)
        first_error: str | None = None
        for index in range(args.rounds):
            order = VARIANTS if index % 2 == 0 else VARIANTS[::-1]
            for name in order:
                start = time.monotonic() + 0.3
                end = start + args.seconds
                for conn in conns:
                    conn.send((name, start, end))
                time.sleep(max(0.0, start - time.monotonic()))
                ticks = cpu_ticks()
                seen = observe(end, args.sample_interval, postgres)
                ticks_after = cpu_ticks()
                replies = [_receive(conn, "round result", args.seconds + 600) for conn in conns]
                count = sum(r["count"] for r in replies)
                elapsed = max(r["finished"] for r in replies) - start
                rates[name].append(count / elapsed)
                for reply in replies:
                    latencies[name].extend(reply["latencies"])
                    client_cpu[name] += reply["cpu"]
                    errors[name] += reply["errors"]
                    first_error = first_error or reply["first_error"]
                counts[name] += count
                waits[name].update(seen["waits"])
                lock_events[name].update(seen["lock_events"])
                samples[name] += seen["samples"]
                total_ticks = ticks_after[1] - ticks[1]
                busy[name].append((ticks_after[0] - ticks[0]) / total_ticks if total_ticks else 0)
            bus_locks = waits["bus"]["lock"] / max(1, sum(waits["bus"].values()))
            print(
                f"   round {index + 1}/{args.rounds}: bus {rates['bus'][-1]:7.1f}/s  "
                f"plain {rates['plain'][-1]:7.1f}/s  ratio "
                f"{rates['bus'][-1] / rates['plain'][-1]:.2f}  CPU busy "
                f"{busy['bus'][-1]:.0%}/{busy['plain'][-1]:.0%}  bus on a lock so far "
                f"{bus_locks:.1%}",
                flush=True,
            )
        for conn in conns:
            conn.send(None)
        for conn in conns:
            _, done = _receive(conn, "final count")
            for key, value in done.items():
                totals[key] += value
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
    if errors["bus"] or errors["plain"]:
        print(f"!! errors: {errors} (first: {first_error})", flush=True)
    ratios = [b / p for b, p in zip(rates["bus"], rates["plain"], strict=True)]
    result: dict[str, Any] = {
        "writers": level,
        "rates": rates,
        "ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "errors": errors,
        "first_error": first_error,
        "busy": {name: statistics.median(values) for name, values in busy.items()},
        "client_cpu_ms": {
            name: 1000 * client_cpu[name] / counts[name] if counts[name] else float("nan")
            for name in VARIANTS
        },
        "samples": samples,
        "waits": {name: dict(waits[name]) for name in VARIANTS},
        "lock_events": {name: dict(lock_events[name]) for name in VARIANTS},
    }
    for name in VARIANTS:
        values = sorted(latencies[name])
        result[f"{name}_median"] = statistics.median(rates[name])
        result[f"{name}_p50_ms"] = 1000 * percentile(values, 0.50)
        result[f"{name}_p95_ms"] = 1000 * percentile(values, 0.95)
        observed = sum(waits[name].values())
        result[f"{name}_lock_share"] = waits[name]["lock"] / observed if observed else None
    return result


def run(args: argparse.Namespace, database: dict[str, Any]) -> dict[str, Any]:
    import commands

    loadavg_before = load_average()
    logging.getLogger("django-q").setLevel(logging.WARNING)  # "Enqueued ..." of the seeding
    apply_scenario(args.scenario)
    writers = max(args.level_list)
    customers, products = _common.seed_through_bus(
        args.seed, writers * args.customers_per_writer + 1, args.products
    )
    check = check_variants(args, customers[-1], products)
    order_count = "orders.OrderCountProjection" in commands.make_variants()["sync_projections"]
    before = {**commands.row_counts(order_count=order_count), **event_counts()}
    print(
        f"{_common.server_version()}: mix {args.mix}, scenario {args.scenario} (projections "
        f"of OrderPlaced: {', '.join(check['projections'])}); SQL statements per PlaceOrder "
        f"bus / plain: {check['statements']['bus']} / {check['statements']['plain']}"
        + (
            f", per AddItem: {check['add_item_statements']['bus']} / "
            f"{check['add_item_statements']['plain']}"
            if "add_item_statements" in check
            else ""
        ),
        flush=True,
    )
    totals = {"orders": 0, "add_items": 0}
    levels = [
        run_level(args, level, database, customers, products, totals) for level in args.level_list
    ]
    after = {**commands.row_counts(order_count=order_count), **event_counts()}
    expected = {key: totals["orders"] for key in after if key != "item_added_events"}
    expected["item_added_events"] = totals["add_items"]
    for key, value in expected.items():
        if after[key] - before[key] != value:
            raise SystemExit(
                f"{key}: expected {value} new rows, found {after[key] - before[key]} "
                f"(before {before}, after {after})"
            )
    print(
        f"check: {totals['orders']:,} orders and {totals['add_items']:,} AddItems by the "
        f"writers, one row of each kind per operation",
        flush=True,
    )
    return {
        "db": args.db,
        "server": _common.server_version(),
        "mix": args.mix,
        "scenario": args.scenario,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "check": check,
        "levels": levels,
        "machine": _common.machine_info(),
        "loadavg_before": loadavg_before,
        "loadavg_after": load_average(),
    }


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# -- output -----------------------------------------------------------------------------


def _range(values: list[float]) -> str:
    return f"{min(values):,.0f} / {statistics.median(values):,.0f} / {max(values):,.0f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def report(result: dict[str, Any]) -> str:
    levels = result["levels"]
    unit = "ops/s" if result["mix"] == "transfer" else "orders/s"
    base = {name: levels[0][f"{name}_median"] for name in VARIANTS} if levels else {}
    single = levels[0]["writers"] == 1 if levels else False
    rows = []
    for r in levels:
        rows.append(
            [
                str(r["writers"]),
                _range(r["rates"]["bus"]),
                _range(r["rates"]["plain"]),
                f"{r['ratio_median']:.2f} ({min(r['ratios']):.2f}-{max(r['ratios']):.2f})",
                f"{r['bus_median'] / base['bus']:.2f}x" if single else "",
                f"{r['plain_median'] / base['plain']:.2f}x" if single else "",
                f"{r['bus_p50_ms']:.1f} / {r['bus_p95_ms']:.1f}",
                f"{r['plain_p50_ms']:.1f} / {r['plain_p95_ms']:.1f}",
                _share(r["bus_lock_share"]),
                _share(r["plain_lock_share"]),
            ]
            + ([f"{r['errors']['bus']} / {r['errors']['plain']}"] if any_errors(levels) else [])
        )
    main = _common.table(
        [
            "writers",
            f"bus {unit} min / med / max",
            f"plain {unit} min / med / max",
            "bus/plain median (range)",
            "bus vs 1 writer",
            "plain vs 1 writer",
            "bus p50 / p95 ms",
            "plain p50 / p95 ms",
            "bus backends on a lock",
            "plain backends on a lock",
        ]
        + (["errors bus / plain"] if any_errors(levels) else []),
        rows,
    )
    detail_rows = []
    for r in levels:
        waits = r["waits"]["bus"]
        observed = sum(waits.values())
        shares = " / ".join(
            f"{waits.get(kind, 0) / observed:.0%}" if observed else "n/a" for kind in WAIT_CLASSES
        )
        locks = ", ".join(
            f"{event} {count}"
            for event, count in sorted(r["lock_events"]["bus"].items(), key=lambda kv: -kv[1])
        )
        detail_rows.append(
            [
                str(r["writers"]),
                f"{r['busy']['bus']:.0%} / {r['busy']['plain']:.0%}",
                f"{r['client_cpu_ms']['bus']:.2f} / {r['client_cpu_ms']['plain']:.2f}",
                shares,
                locks or "-",
            ]
        )
    detail = _common.table(
        [
            "writers",
            "CPU busy bus / plain",
            "client CPU ms/op bus / plain",
            "bus backends: " + " / ".join(WAIT_CLASSES),
            "bus lock waits (samples)",
        ],
        detail_rows,
    )
    return f"{main}\n\n{detail}"


def any_errors(levels: list[dict[str, Any]]) -> bool:
    return any(r["errors"]["bus"] or r["errors"]["plain"] for r in levels)


def targets(result: dict[str, Any]) -> list[str]:
    levels = {r["writers"]: r for r in result["levels"]}
    low = [f"{n} ({r['ratio_median']:.2f})" for n, r in levels.items() if r["ratio_median"] < 0.9]
    lines = [
        "bus/plain >= 0.9 at every level (median of per-round ratios): "
        + ("met" if not low else f"NOT met at {', '.join(low)}")
    ]
    if 1 in levels and 4 in levels:
        scale = levels[4]["bus_median"] / levels[1]["bus_median"]
        plain = levels[4]["plain_median"] / levels[1]["plain_median"]
        lines.append(
            f"bus at 4 writers >= 1.8x bus at 1 writer: {scale:.2f}x: "
            + ("met" if scale >= 1.8 else "NOT met")
            + f" (plain: {plain:.2f}x)"
        )
    else:
        lines.append("bus at 4 writers >= 1.8x bus at 1 writer: n/a (needs levels 1 and 4)")
    return lines


def print_result(result: dict[str, Any]) -> None:
    info = result["machine"]
    what = "PlaceOrder + AddItem" if result["mix"] == "transfer" else "PlaceOrder"
    print(
        f"\n== {what}, different customers per writer: bus vs plain ORM, "
        f"{result['server']}, scenario {result['scenario']}, {result['rounds']} rounds x "
        f"{result['seconds']:g} s per variant and level =="
    )
    print(
        f"{info['nproc']} x {info['cpu']}, {info['ram']}, Python {info['python']}, "
        f"Django {info['django']}, {result['server']}; load average before "
        f"{result['loadavg_before']}, after {result['loadavg_after']}\n"
    )
    print(report(result))
    print()
    for line in targets(result):
        print(f"target: {line}")


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.db == "both":
        results = _common.run_children(__file__, argv, _common.DBS)
        for result in results:
            print_result(result)
        if len(results) != len(_common.DBS):
            sys.exit(1)
        return
    with _common.bench_database(args.db, args.pg_url, sqlite_init=args.sqlite_init) as database:
        result = run(args, database)
    print_result(result)
    _common.write_json(args.json, result)


if __name__ == "__main__":
    main(sys.argv[1:])
