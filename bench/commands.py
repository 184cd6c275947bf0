"""PlaceOrder through the command bus vs plain Django ORM code doing the same writes.

    .venv/bin/python bench/commands.py                      # SQLite and PostgreSQL
    .venv/bin/python bench/commands.py --db sqlite --orders 5000 --rounds 40
    .venv/bin/python bench/commands.py --db postgres --scenario orderview --breakdown
    .venv/bin/python bench/commands.py --db sqlite --profile

Both variants take the same inputs (customer, 1-4 items) and write the same rows in one
transaction per order: the ``Order`` row, its ``OrderLine`` rows, one ``StoredEvent`` row
(the same JSON payload and metadata keys), the ``OrderView`` row of the sync projection
and, in the demo scenario, the ``OrderCount`` row (plus the customer's summary if
``CustomerSummaryProjection`` is a sync projection). Both
read the customer and the products first and check the credit limit. A check at the end
compares the rows the two wrote for the same input, and counts one of each per order.

The plain variant is what a Django developer would write by hand: ``Model.save()``,
``bulk_create``, ``create`` (and ``F()`` updates for counts and a sync summary), with no aggregate,
no signals and no log lock. The bus variant is ``command_bus.dispatch(PlaceOrder(...))``
with the default middleware (logging, retry, transaction) and the demo's handler,
aggregate and projections.

Two scenarios, each against its own plain variant:
  demo       the demo as shipped: OrderView and OrderCount sync, CustomerSummary async
             (the bus flags a django-q2 catch-up in the command's transaction; no qcluster
             runs here);
  orderview  only OrderViewProjection registered: exactly the writes listed above.

Rounds alternate the two variants (AB, BA, ...) so that drift (caches, WAL growth, other
load) hits both alike. ``--breakdown`` then times the bus with one piece switched off at a
time (savepoints, event-log lock, async trigger, middleware) to show what each costs.
Target (issue 2): the bus keeps at least 85% of plain-ORM throughput.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import _common


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--orders", type=int, default=3000, help="Orders per variant, measured (default 3000)."
    )
    parser.add_argument("--rounds", type=int, default=30, help="Alternating rounds (default 30).")
    parser.add_argument("--warmup", type=int, default=100, help="Unmeasured orders per variant.")
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument(
        "--scenario",
        choices=("both", "demo", "orderview"),
        default="both",
        help="demo: the demo's projections as shipped (OrderView sync, CustomerSummary "
        "async); orderview: only OrderViewProjection (the others unregistered); both "
        "(default): one after the other, each against its own plain variant.",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="Afterwards, time the bus with one piece of its machinery switched off at a "
        "time (interleaved with plain), to see what each piece costs.",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="Afterwards, cProfile 1000 bus orders and print where the time goes.",
    )
    _common.add_common_arguments(parser, "commands")
    return parser.parse_args(argv)


# -- the two variants -----------------------------------------------------------------


def make_variants() -> dict[str, Any]:
    """The bus and plain PlaceOrder callables; Django must be set up."""
    from django.db import models, transaction
    from django.db.models import F
    from django.utils import timezone

    from demo_project.orders.commands import OrderItem, PlaceOrder
    from demo_project.orders.events import OrderPlaced
    from demo_project.orders.models import (
        Customer,
        CustomerSummary,
        Order,
        OrderCount,
        OrderLine,
        OrderView,
        Product,
    )
    from django_cqrs import command_bus
    from django_cqrs.models import StoredEvent
    from django_cqrs.projections import all_projections

    sync_names = sorted(
        cls.name for cls in all_projections() if cls.mode == "sync" and OrderPlaced in cls.handlers
    )
    mirrored = {
        "orders.OrderViewProjection",
        "orders.OrderCountProjection",
        "orders.CustomerSummaryProjection",
    }
    unknown = sorted(set(sync_names) - mirrored)
    if unknown:
        print(f"!! sync projections the plain variant does not mirror: {unknown}", flush=True)
    update_summary = "orders.CustomerSummaryProjection" in sync_names
    update_count = "orders.OrderCountProjection" in sync_names
    command_type = PlaceOrder.message_name()

    def bus_place(customer_id: uuid.UUID, items: list[tuple[uuid.UUID, int]]) -> uuid.UUID:
        command = PlaceOrder(
            customer_id=customer_id,
            items=[OrderItem(product_id=pid, quantity=qty) for pid, qty in items],
        )
        result: uuid.UUID = command_bus.dispatch(command).value
        return result

    def plain_place(customer_id: uuid.UUID, items: list[tuple[uuid.UUID, int]]) -> uuid.UUID:
        with transaction.atomic():
            customer = Customer.objects.get(pk=customer_id)
            products = Product.objects.in_bulk([pid for pid, _ in items])
            order_id = uuid.uuid4()
            total = Decimal("0")
            item_count = 0
            lines = []
            payload_lines = []
            for pid, qty in items:
                price = products[pid].price
                lines.append(
                    OrderLine(order_id=order_id, product_id=pid, quantity=qty, unit_price=price)
                )
                payload_lines.append(
                    {"product_id": str(pid), "quantity": qty, "unit_price": str(price)}
                )
                total += price * qty
                item_count += qty
            if total > customer.credit_limit:
                raise ValueError("credit limit exceeded")
            now = timezone.now()
            order = Order(id=order_id, customer=customer, status="placed", total=total, version=1)
            models.Model.save(order, force_insert=True)  # Django's own save, no aggregate
            OrderLine.objects.bulk_create(lines)
            command_id = str(uuid.uuid4())
            StoredEvent.objects.create(
                event_type=OrderPlaced.event_type,
                schema_version=OrderPlaced.schema_version,
                aggregate_type="orders.Order",
                aggregate_id=str(order_id),
                aggregate_version=1,
                payload={
                    "order_id": str(order_id),
                    "customer_id": str(customer_id),
                    "customer_name": customer.name,
                    "lines": payload_lines,
                    "total": str(total),
                    "item_count": item_count,
                },
                metadata={
                    "command_type": command_type,
                    "command_id": command_id,
                    "correlation_id": command_id,
                    "causation_id": command_id,
                },
                recorded_at=now,
            )
            OrderView.objects.create(
                id=order_id,
                customer_id=customer_id,
                customer_name=customer.name,
                item_count=item_count,
                total=total,
                status="placed",
                version=1,
                placed_at=now,
            )
            if update_count:
                key = OrderCount.key_of(customer_id, "placed")
                if not OrderCount.objects.filter(pk=key).update(orders=F("orders") + 1):
                    OrderCount.objects.create(
                        key=key, customer_id=customer_id, status="placed", orders=1
                    )
            if update_summary:
                CustomerSummary.objects.filter(pk=customer_id).update(
                    order_count=F("order_count") + 1, lifetime_value=F("lifetime_value") + total
                )
        return order_id

    projections = sorted(
        f"{cls.mode} {cls.name.split('.')[-1].removesuffix('Projection')}"
        for cls in all_projections()
        if OrderPlaced in cls.handlers
    )
    return {
        "bus": bus_place,
        "plain": plain_place,
        "sync_projections": sync_names,
        "projections": projections,
    }


# -- set-up and checks ----------------------------------------------------------------


Inputs = list[tuple[uuid.UUID, list[tuple[uuid.UUID, int]]]]


def seed(args: argparse.Namespace) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Customers and products, registered through the bus (so their summaries exist)."""
    return _common.seed_through_bus(args.seed, args.customers, args.products)


def order_inputs(
    rng: random.Random, count: int, customers: list[uuid.UUID], products: list[uuid.UUID]
) -> Inputs:
    """``count`` PlaceOrder inputs: a customer and 1-4 distinct products, 1-5 of each."""
    inputs = []
    for _ in range(count):
        picked = rng.sample(products, rng.randint(1, 4))
        inputs.append((rng.choice(customers), [(pid, rng.randint(1, 5)) for pid in picked]))
    return inputs


def statements_per_order(place: Any, inp: Any) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        place(*inp)
    return len(ctx.captured_queries)


def check_same_rows(bus_id: uuid.UUID, plain_id: uuid.UUID) -> None:
    """Orders placed from the same input by both variants left the same rows behind."""
    from demo_project.orders.models import Order, OrderLine, OrderView
    from django_cqrs.models import StoredEvent

    def rows(order_id: uuid.UUID) -> dict[str, Any]:
        event = StoredEvent.objects.get(aggregate_type="orders.Order", aggregate_id=str(order_id))
        payload = dict(event.payload)
        payload.pop("order_id")
        return {
            "order": Order.objects.filter(pk=order_id).values(
                "customer_id", "status", "total", "version"
            )[0],
            "lines": sorted(
                OrderLine.objects.filter(order_id=order_id).values_list(
                    "product_id", "quantity", "unit_price"
                )
            ),
            "event": (event.event_type, event.schema_version, event.aggregate_version, payload),
            "metadata_keys": sorted(event.metadata),
            "view": OrderView.objects.filter(pk=order_id).values(
                "customer_id", "customer_name", "item_count", "total", "status", "version"
            )[0],
        }

    bus_rows, plain_rows = rows(bus_id), rows(plain_id)
    if bus_rows != plain_rows:
        raise SystemExit(
            f"the variants wrote different rows:\nbus   {bus_rows}\nplain {plain_rows}"
        )


def row_counts(*, order_count: bool) -> dict[str, int]:
    from django.db.models import Sum

    from demo_project.orders.models import Order, OrderCount, OrderView
    from django_cqrs.models import StoredEvent

    counts = {
        "orders": Order.objects.count(),
        "order_views": OrderView.objects.count(),
        "order_placed_events": StoredEvent.objects.filter(event_type="orders.OrderPlaced").count(),
    }
    if order_count:
        counts["counted_orders"] = OrderCount.objects.aggregate(n=Sum("orders"))["n"] or 0
    return counts


# -- the run --------------------------------------------------------------------------


def run_scenario(
    args: argparse.Namespace, scenario: str, customers: list[uuid.UUID], products: list[uuid.UUID]
) -> dict[str, Any]:
    from django_cqrs.projections import all_projections, unregister

    if scenario == "orderview":
        for cls in all_projections():
            if cls.name != "orders.OrderViewProjection":
                unregister(cls)
    variants = make_variants()
    print(
        f"\n-- scenario {scenario}: projections of OrderPlaced: "
        f"{', '.join(variants['projections'])}",
        flush=True,
    )
    rng = random.Random(f"{args.seed}-{scenario}")
    inputs = order_inputs(rng, args.orders + args.warmup, customers, products)
    warm, measured = inputs[: args.warmup], inputs[args.warmup :]
    order_count = "orders.OrderCountProjection" in variants["sync_projections"]
    before = row_counts(order_count=order_count)

    statements = {}
    for name in ("bus", "plain"):
        for inp in warm[:-1]:
            variants[name](*inp)
        statements[name] = statements_per_order(variants[name], warm[-1])

    rounds = max(1, min(args.rounds, len(measured)))
    chunks = [measured[i::rounds] for i in range(rounds)]
    seconds = {"bus": 0.0, "plain": 0.0}
    per_round: dict[str, list[float]] = {"bus": [], "plain": []}
    first_ids: dict[str, uuid.UUID] = {}
    for index, chunk in enumerate(chunks):
        order = ("bus", "plain") if index % 2 == 0 else ("plain", "bus")
        for name in order:
            place = variants[name]
            started = time.perf_counter()
            for inp in chunk:
                order_id = place(*inp)
                first_ids.setdefault(name, order_id)
            elapsed = time.perf_counter() - started
            seconds[name] += elapsed
            per_round[name].append(len(chunk) / elapsed)
        print(
            f"round {index + 1:2}/{rounds}: bus {per_round['bus'][-1]:7.0f}/s  "
            f"plain {per_round['plain'][-1]:7.0f}/s",
            flush=True,
        )

    # Both variants wrote the same rows, and one of each per order.
    check_same_rows(first_ids["bus"], first_ids["plain"])
    after = row_counts(order_count=order_count)
    placed = 2 * len(inputs)
    if any(after[key] - before[key] != placed for key in after):
        raise SystemExit(f"expected {placed} new rows of each kind: before {before}, after {after}")

    n = len(measured)
    bus_rate, plain_rate = n / seconds["bus"], n / seconds["plain"]
    ratios = [b / p for b, p in zip(per_round["bus"], per_round["plain"], strict=True)]
    result = {
        "db": args.db,
        "server": _common.server_version(),
        "scenario": scenario,
        "orders": n,
        "rounds": rounds,
        "bus_per_s": bus_rate,
        "plain_per_s": plain_rate,
        "ratio": bus_rate / plain_rate,
        "ratio_round_min": min(ratios),
        "ratio_round_median": statistics.median(ratios),
        "ratio_round_max": max(ratios),
        "bus_ms": 1000 / bus_rate,
        "plain_ms": 1000 / plain_rate,
        "bus_statements": statements["bus"],
        "plain_statements": statements["plain"],
        "sync_projections": variants["sync_projections"],
        "projections": variants["projections"],
    }
    if args.breakdown:
        result["breakdown"] = breakdown(args, variants, rng, customers, products)
    if args.profile:
        profile(variants["bus"], order_inputs(rng, 1000, customers, products))
    return result


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    customers, products = seed(args)
    scenarios = ["demo", "orderview"] if args.scenario == "both" else [args.scenario]
    return [run_scenario(args, scenario, customers, products) for scenario in scenarios]


# -- breakdown ------------------------------------------------------------------------


class _NoSavepoint:
    """Stands in for ``django.db.transaction`` in one module: atomic() without savepoint."""

    def __getattr__(self, name: str) -> Any:
        from django.db import transaction

        return getattr(transaction, name)

    def atomic(
        self, using: str | None = None, savepoint: bool = True, durable: bool = False
    ) -> Any:
        from django.db import transaction

        return transaction.atomic(using=using, savepoint=False)


def _switches() -> dict[str, list[tuple[Any, str, Any]]]:
    """(module, attribute, replacement) patches that switch one piece of the bus off."""
    import demo_project.orders.models as demo_models
    import django_cqrs.aggregates as aggregates
    import django_cqrs.tasks as tasks

    return {
        "no savepoint in demo Order.save": [(demo_models, "transaction", _NoSavepoint())],
        "no savepoint in Aggregate.save": [(aggregates, "transaction", _NoSavepoint())],
        "no async trigger": [(tasks, "_async_projection_names", lambda sender: [])],
    }


def breakdown(
    args: argparse.Namespace,
    variants: dict[str, Any],
    rng: random.Random,
    customers: list[uuid.UUID],
    products: list[uuid.UUID],
) -> list[dict[str, Any]]:
    """Bus minus one piece at a time, interleaved with plain; ms per order of each."""

    from django_cqrs.bus import command_bus
    from django_cqrs.middleware import TransactionMiddleware
    from django_cqrs.projections import ASYNC, all_projections

    switches = _switches()
    if not any(cls.mode == ASYNC for cls in all_projections()):
        del switches["no async trigger"]
    configs: dict[str, list[str]] = {"bus": []}
    configs.update({name: [name] for name in switches})
    configs["only TransactionMiddleware"] = ["middleware"]
    configs["all of the above"] = [*switches, "middleware"]
    configs["plain"] = []

    def place_with(config: str, inputs: Inputs) -> float:
        saved = []
        for name in configs[config]:
            if name == "middleware":
                command_bus._explicit_middleware = [TransactionMiddleware]
                command_bus.reset_middleware()
                continue
            for module, attr, value in switches[name]:
                saved.append((module, attr, getattr(module, attr)))
                setattr(module, attr, value)
        place = variants["plain" if config == "plain" else "bus"]
        try:
            started = time.perf_counter()
            for inp in inputs:
                place(*inp)
            return time.perf_counter() - started
        finally:
            for module, attr, value in saved:
                setattr(module, attr, value)
            command_bus._explicit_middleware = None
            command_bus.reset_middleware()

    per = max(args.orders // 2, 200)
    rounds = max(1, min(args.rounds * 2, per // 20))
    names = list(configs)
    inputs = order_inputs(rng, per * len(names), customers, products)
    chunk = per // rounds
    times: dict[str, list[float]] = {name: [] for name in names}
    position = 0
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            times[name].append(place_with(name, inputs[position : position + chunk]) / chunk)
            position += chunk
    plain = statistics.median(times["plain"])
    bus = statistics.median(times["bus"])
    print(f"\n-- breakdown ({rounds} rounds of {chunk} orders each, medians) --")
    rows = []
    for name in names:
        ms = statistics.median(times[name])
        rows.append(
            {
                "config": name,
                "ms": ms * 1000,
                "of_plain": plain / ms,
                "saves_ms": (bus - ms) * 1000,
            }
        )
    print(
        _common.table(
            ["bus variant", "ms/order", "throughput vs plain", "ms saved vs full bus"],
            [
                [r["config"], f"{r['ms']:.3f}", f"{r['of_plain']:.1%}", f"{r['saves_ms']:+.3f}"]
                for r in rows
            ],
        ),
        flush=True,
    )
    return rows


def profile(place: Any, inputs: list[Any]) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for inp in inputs:
        place(*inp)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    print(f"\n-- cProfile of {len(inputs)} bus orders, by cumulative time --")
    stats.sort_stats("cumulative").print_stats(35)
    print("-- by own time --")
    stats.sort_stats("tottime").print_stats(25)


# -- output ---------------------------------------------------------------------------


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        rows.append(
            [
                r["server"],
                ", ".join(r["projections"]),
                f"{r['orders']:,}",
                f"{r['bus_per_s']:,.0f}",
                f"{r['plain_per_s']:,.0f}",
                f"{r['ratio']:.1%}",
                f"{r['ratio_round_median']:.0%} ({r['ratio_round_min']:.0%}-"
                f"{r['ratio_round_max']:.0%})",
                f"{r['bus_ms']:.2f} / {r['plain_ms']:.2f}",
                f"{r['bus_statements']} / {r['plain_statements']}",
                "yes" if r["ratio"] >= 0.85 else "NO",
            ]
        )
    return _common.table(
        [
            "database",
            "projections of OrderPlaced",
            "orders/variant",
            "bus orders/s",
            "plain orders/s",
            "bus/plain",
            "per-round median (range)",
            "ms/order bus / plain",
            "SQL statements bus / plain",
            ">= 85%",
        ],
        rows,
    )


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.db == "both":
        results = [r for batch in _common.run_children(__file__, argv, _common.DBS) for r in batch]
        info = _common.machine_info()
        print(
            f"\n== PlaceOrder: command bus vs plain ORM ({info['nproc']} x {info['cpu']}, "
            f"{info['ram']}, Python {info['python']}, Django {info['django']}) =="
        )
        print(report(results))
        if len({r["db"] for r in results}) != len(_common.DBS):
            sys.exit(1)
        return
    with _common.bench_database(args.db, args.pg_url, sqlite_init=args.sqlite_init):
        results = run(args)
    print()
    print(report(results))
    _common.write_json(args.json, results)


if __name__ == "__main__":
    main(sys.argv[1:])
