"""GetOrder through the query bus, with and without the write guard, vs the plain ORM.

    .venv/bin/python bench/queries.py                      # SQLite and PostgreSQL
    .venv/bin/python bench/queries.py --db postgres --queries 5000 --rounds 20

Every variant reads one ``OrderView`` row by primary key (``GetOrder``, the query behind
``GET /api/orders/{id}/``), the variants interleaved round by round (AB, BA, ...):

  plain            ``OrderView.objects.get(pk=...)``
  bus, no guard    ``query_bus.dispatch(GetOrder(...))`` with ``QUERY_MIDDLEWARE`` =
                   ``[LoggingMiddleware]`` only
  bus              the default ``QUERY_MIDDLEWARE``: logging and the write guard
                   (``ReadOnlyMiddleware``: every statement checked; PostgreSQL in a
                   ``BEGIN READ ONLY`` transaction, SQLite under its read-only authorizer)
  bus in atomic    the same inside ``transaction.atomic()`` (as with ``ATOMIC_REQUESTS``):
                   on PostgreSQL the guard's savepoint with ``SET LOCAL
                   transaction_read_only`` costs two round trips

The guard's cost per query is "bus" minus "bus, no guard". The check of one statement
alone (``db.statements.judge`` on the ORM's SQL) is timed too, in microseconds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import _common

VARIANTS = ("plain", "bus, no guard", "bus", "bus in atomic")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=3000, help="Queries per variant per round.")
    parser.add_argument("--rounds", type=int, default=10, help="Interleaved rounds (default 10).")
    parser.add_argument("--orders", type=int, default=200, help="Orders to read (default 200).")
    parser.add_argument("--seed", type=int, default=3)
    _common.add_common_arguments(parser, "queries")
    return parser.parse_args(argv)


def seed_orders(args: argparse.Namespace) -> list[Any]:
    from demo_project.orders.commands import OrderItem, PlaceOrder
    from django_cqrs import command_bus

    customers, products = _common.seed_through_bus(args.seed, 5, 20)
    rng = random.Random(args.seed)
    return [
        command_bus.dispatch(
            PlaceOrder(
                customer_id=rng.choice(customers),
                items=[OrderItem(product_id=rng.choice(products), quantity=1)],
            )
        ).value
        for _ in range(args.orders)
    ]


def make_variants(order_ids: list[Any]) -> dict[str, Callable[[int], Any]]:
    from django.db import transaction
    from django.test.utils import override_settings

    from demo_project.orders.models import OrderView
    from demo_project.orders.queries import GetOrder
    from django_cqrs import query_bus

    no_guard = override_settings(
        DJANGO_CQRS={"QUERY_MIDDLEWARE": ["django_cqrs.middleware.LoggingMiddleware"]}
    )

    def plain(n: int) -> None:
        for i in range(n):
            OrderView.objects.get(pk=order_ids[i % len(order_ids)])

    def bus(n: int) -> None:
        for i in range(n):
            query_bus.dispatch(GetOrder(order_id=order_ids[i % len(order_ids)]))

    def bus_no_guard(n: int) -> None:
        with no_guard:
            bus(n)

    def bus_in_atomic(n: int) -> None:
        with transaction.atomic():
            bus(n)

    return {
        "plain": plain,
        "bus, no guard": bus_no_guard,
        "bus": bus,
        "bus in atomic": bus_in_atomic,
    }


def statement_check_us() -> float:
    """Microseconds ``judge`` takes on the SQL of ``OrderView.objects.get(pk=...)``."""
    from django.db import connection

    from demo_project.orders.models import OrderView
    from django_cqrs.db.statements import dialect_for, judge

    sql, _ = OrderView.objects.filter(pk=1).query.sql_with_params()
    dialect = dialect_for(connection.vendor)
    number = 20_000
    seconds = min(timeit.repeat(lambda: judge(sql, dialect, bound=True), number=number, repeat=5))
    return seconds / number * 1e6


def run(args: argparse.Namespace) -> dict[str, Any]:
    order_ids = seed_orders(args)
    variants = make_variants(order_ids)
    for run_variant in variants.values():  # warm up
        run_variant(200)
    per_round: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for index in range(args.rounds):
        order = VARIANTS if index % 2 == 0 else tuple(reversed(VARIANTS))
        for name in order:
            started = time.perf_counter()
            variants[name](args.queries)
            per_round[name].append((time.perf_counter() - started) / args.queries * 1e6)
        print(
            f"round {index + 1:2}/{args.rounds}: "
            + "  ".join(f"{name} {per_round[name][-1]:6.1f} us" for name in VARIANTS),
            flush=True,
        )
    medians = {name: statistics.median(values) for name, values in per_round.items()}
    return {
        "db": args.db,
        "server": _common.server_version(),
        "queries": args.queries * args.rounds,
        "us": medians,
        "guard_us": medians["bus"] - medians["bus, no guard"],
        "judge_us": statement_check_us(),
    }


def report(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["server"],
            f"{r['queries']:,}",
            *(f"{r['us'][name]:.1f}" for name in VARIANTS),
            f"{r['guard_us']:.1f} ({r['guard_us'] / r['us']['bus, no guard']:.0%})",
            f"{r['judge_us']:.2f}",
        ]
        for r in results
    ]
    return _common.table(
        [
            "database",
            "queries/variant",
            *(f"{name} us" for name in VARIANTS),
            "guard us (share)",
            "judge() us",
        ],
        rows,
    )


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.db == "both":
        results = [r for batch in _common.run_children(__file__, argv, _common.DBS) for r in batch]
        info = _common.machine_info()
        print(
            f"\n== GetOrder: query bus with and without the write guard ({info['nproc']} x "
            f"{info['cpu']}, Python {info['python']}, Django {info['django']}); "
            "median microseconds per query =="
        )
        print(report(results))
        if len({r["db"] for r in results}) != len(_common.DBS):
            sys.exit(1)
        return
    with _common.bench_database(args.db, args.pg_url, sqlite_init=args.sqlite_init):
        result = run(args)
    print()
    print(report([result]))
    _common.write_json(args.json, [result])


if __name__ == "__main__":
    main(sys.argv[1:])
