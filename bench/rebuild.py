"""Rebuild of OrderView from the event log: django_cqrs vs a plain batched loop vs naive.

    .venv/bin/python bench/rebuild.py                       # 100,000 events, both databases
    .venv/bin/python bench/rebuild.py --events 500000       # the memory target
    .venv/bin/python bench/rebuild.py --db postgres --profile
    .venv/bin/python bench/rebuild.py --orm-rounds 5        # buffered vs plain-ORM handlers

1. Writes ``--events`` events of the orders demo straight into the log, in bulk (COPY on
   PostgreSQL, ``executemany`` on SQLite): CustomerRegistered (~1%), OrderPlaced with 1-4
   lines (~47%), then ItemAdded, OrderCancelled and OrderShipped on orders picked at
   random among ~5,000 open ones, so that most updates hit an order placed several
   batches earlier (as in a real log, where orders ship hours after they are placed).
   Payloads are exactly what ``to_json_dict`` stores (checked on a sample).
2. Times, one after the other on the same log:
   - ``django_cqrs.projections.rebuild.rebuild("orders.OrderViewProjection")`` (default
     batch size),
     measuring peak RSS growth over the RSS before the call (VmHWM reset through
     ``/proc/self/clear_refs``), then once more under ``tracemalloc`` for its peak;
   - the "plain batched loop": raw SQL reading the log in keyset batches, ``json.loads``,
     one ``SELECT ... WHERE id IN (...)`` per batch for rows it does not hold, and
     multi-row ``INSERT ... ON CONFLICT DO UPDATE`` statements (500 rows each), one
     transaction per batch -- what a careful hand-written rebuild does;
   - the naive loop: one ORM ``create()`` or ``get()`` + ``save()`` per event, autocommit
     (one commit per event), over the first ``--naive-events`` events only.
   All three must produce identical ``OrderView`` rows (checked by a digest of the table;
   the naive loop is compared with the plain loop over the same prefix).
3. Then ``--orm-rounds`` rounds of two rebuilds each, in alternating order: the demo's
   buffered ``OrderViewProjection`` (``self.get()``/``self.put()``) and
   ``OrmOrderViewProjection``, the same projection written with plain ORM calls
   (``OrderView.objects.create()``, ``.filter(pk=...).update(...)``), which a rebuild
   redirects to the shadow table statement by statement. Both must give the plain loop's
   rows; the report gives min/median/max events/s of each and of the per-round ratio.

Targets (issue 2): >= 10,000 events/s into OrderView on SQLite and on PostgreSQL, and peak
memory growth under 100 MB for 500,000 events.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import random
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import _common

ORDER_EVENTS = (
    "orders.OrderPlaced",
    "orders.ItemAdded",
    "orders.OrderCancelled",
    "orders.OrderShipped",
)
VIEW_COLUMNS = (
    "id",
    "customer_id",
    "customer_name",
    "item_count",
    "total",
    "status",
    "version",
    "placed_at",
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events", type=int, default=100_000, help="Events in the log (default 100,000)."
    )
    parser.add_argument(
        "--naive-events",
        type=int,
        default=10_000,
        help="Events the naive one-save-per-event loop replays (default 10,000).",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Rebuild batch size (default: DJANGO_CQRS REBUILD_BATCH_SIZE); the plain loop "
        "uses the same.",
    )
    parser.add_argument(
        "--open-orders",
        type=int,
        default=5000,
        help="Open orders that updates pick from (default 5,000): larger means more "
        "updates hit rows written in earlier batches.",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--orm-rounds",
        type=int,
        default=3,
        help="Rounds of buffered vs plain-ORM rebuilds, interleaved (default 3; 0: skip).",
    )
    parser.add_argument(
        "--no-tracemalloc", action="store_true", help="Skip the second rebuild under tracemalloc."
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one more rebuild and print the top."
    )
    _common.add_common_arguments(parser, "rebuild")
    return parser.parse_args(argv)


# -- generating the log ---------------------------------------------------------------


def generate_events(
    count: int, *, seed: int, open_orders: int
) -> Iterator[tuple[str, str, str, int, dict[str, Any], dt.datetime]]:
    """(event_type, aggregate_type, aggregate_id, version, payload, recorded_at) tuples."""
    rng = random.Random(seed)
    products = [
        (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            Decimal(rng.randint(100, 99999)).scaleb(-2),
        )
        for _ in range(200)
    ]
    customers: list[tuple[str, str]] = []
    pool: list[dict[str, Any]] = []  # open orders
    at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    step = dt.timedelta(milliseconds=250)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def line() -> tuple[dict[str, Any], Decimal, int]:
        pid, price = rng.choice(products)
        qty = rng.randint(1, 5)
        return {"product_id": pid, "quantity": qty, "unit_price": str(price)}, price * qty, qty

    for _ in range(count):
        at += step
        r = rng.random()
        if not customers or r < 0.01:
            cid, name = new_id(), f"Customer {len(customers) + 1}"
            customers.append((cid, name))
            payload = {"customer_id": cid, "name": name, "credit_limit": "100000.00"}
            yield "orders.CustomerRegistered", "orders.Customer", cid, 1, payload, at
        elif len(pool) < 100 or r < 0.48 or len(pool) < open_orders // 2:
            cid, name = rng.choice(customers)
            lines, total, items = [], Decimal("0"), 0
            for _ in range(rng.randint(1, 4)):
                data, amount, qty = line()
                lines.append(data)
                total += amount
                items += qty
            order = {
                "id": new_id(),
                "customer_id": cid,
                "version": 1,
                "total": total,
                "items": items,
            }
            order["added"] = 0
            if len(pool) >= open_orders:
                pool[rng.randrange(len(pool))] = order  # an order that never ships
            else:
                pool.append(order)
            payload = {
                "order_id": order["id"],
                "customer_id": cid,
                "customer_name": name,
                "lines": lines,
                "total": str(total),
                "item_count": items,
            }
            yield "orders.OrderPlaced", "orders.Order", order["id"], 1, payload, at
        else:
            index = rng.randrange(len(pool))
            order = pool[index]
            order["version"] += 1
            base = {"order_id": order["id"], "customer_id": order["customer_id"]}
            action = rng.random()
            if action < 0.35 and order["added"] < 3:
                data, amount, qty = line()
                order["added"] += 1
                order["total"] += amount
                order["items"] += qty
                payload = {
                    **base,
                    "line": data,
                    "total": str(order["total"]),
                    "item_count": order["items"],
                }
                yield "orders.ItemAdded", "orders.Order", order["id"], order["version"], payload, at
                continue
            pool[index] = pool[-1]
            pool.pop()
            if action < 0.6:
                payload = {**base, "total": str(order["total"])}
                event_type = "orders.OrderCancelled"
            else:
                payload = base
                event_type = "orders.OrderShipped"
            yield event_type, "orders.Order", order["id"], order["version"], payload, at


def check_payloads(sample: dict[str, dict[str, Any]]) -> None:
    """Each generated payload decodes to the typed event and encodes back unchanged."""
    from django_cqrs.events import decode_event
    from django_cqrs.serialization import to_json_dict

    for event_type, payload in sample.items():
        again = to_json_dict(decode_event(event_type, 1, payload))
        if again != payload:
            raise SystemExit(f"generated {event_type} payload differs:\n{payload}\n{again}")


def fill_log(args: argparse.Namespace) -> dict[str, int]:
    """Write ``args.events`` events into the log in bulk; return counts per event type."""
    from django.db import connection

    from django_cqrs.models import StoredEvent
    from django_cqrs.store import EVENT_FIELDS

    table = StoredEvent._meta.db_table
    # Every column of a stored event but its position, which the log's sequence assigns,
    # and its transaction id, which the database stamps.
    assigned = ("position", "transaction_id")
    columns = [StoredEvent._meta.get_field(f).column for f in EVENT_FIELDS if f not in assigned]
    counts: dict[str, int] = {}
    sample: dict[str, dict[str, Any]] = {}
    chunk: list[tuple[Any, ...]] = []
    command_type = "orders.PlaceOrder"
    sqlite = connection.vendor == "sqlite"
    adapt = connection.ops.adapt_datetimefield_value
    cols = ", ".join(columns)
    insert = f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(columns))})"

    def flush() -> None:
        with connection.cursor() as cursor:
            if sqlite:
                cursor.executemany(insert, chunk)
            else:
                raw = cursor.cursor  # psycopg cursor: COPY
                with raw.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for row in chunk:
                        copy.write_row(row)
        chunk.clear()

    with connection.cursor():
        pass
    for event_type, agg_type, agg_id, version, payload, at in generate_events(
        args.events, seed=args.seed, open_orders=args.open_orders
    ):
        counts[event_type] = counts.get(event_type, 0) + 1
        sample.setdefault(event_type, payload)
        command_id = str(uuid.uuid4())
        metadata = {
            "command_type": command_type,
            "command_id": command_id,
            "correlation_id": command_id,
            "causation_id": command_id,
        }
        chunk.append(
            (
                event_type,
                1,
                agg_type,
                agg_id,
                version,
                json.dumps(payload),
                json.dumps(metadata),
                adapt(at) if sqlite else at,
            )
        )
        if len(chunk) >= 5000:
            flush()
    if chunk:
        flush()
    check_payloads(sample)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}" if not sqlite else "ANALYZE")
    return counts


def warm_log() -> None:
    """Read the whole log once, so that every timed pass finds it cached alike."""
    from django.db import connection

    cast = "CAST(payload AS TEXT)" if connection.vendor == "postgresql" else "payload"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT SUM(LENGTH({cast})) FROM django_cqrs_event")


# -- the three ways to build OrderView ------------------------------------------------


def run_rebuild(batch_size: int | None) -> int:
    from django_cqrs.projections.rebuild import rebuild

    return rebuild("orders.OrderViewProjection", batch_size=batch_size)


_orm_projection: Any = None


def orm_projection() -> Any:
    """``OrderViewProjection`` written with plain ORM calls (defined once Django is set up)."""
    global _orm_projection
    if _orm_projection is not None:
        return _orm_projection
    from demo_project.orders.events import ItemAdded, OrderCancelled, OrderPlaced, OrderShipped
    from demo_project.orders.models import OrderView
    from django_cqrs.events import EventEnvelope
    from django_cqrs.projections import Projection, handles

    class OrmOrderViewProjection(Projection):
        name = "bench.OrmOrderViewProjection"
        read_models = [OrderView]
        mode = "sync"

        @handles(OrderPlaced)
        def placed(self, event: OrderPlaced, envelope: EventEnvelope) -> None:
            OrderView.objects.create(
                id=event.order_id,
                customer_id=event.customer_id,
                customer_name=event.customer_name,
                item_count=event.item_count,
                total=event.total,
                status="placed",
                version=envelope.aggregate_version,
                placed_at=envelope.recorded_at,
            )

        @handles(ItemAdded)
        def item_added(self, event: ItemAdded, envelope: EventEnvelope) -> None:
            OrderView.objects.filter(pk=event.order_id).update(
                item_count=event.item_count,
                total=event.total,
                version=envelope.aggregate_version,
            )

        @handles(OrderCancelled, OrderShipped)
        def closed(self, event: OrderCancelled | OrderShipped, envelope: EventEnvelope) -> None:
            status = "cancelled" if isinstance(event, OrderCancelled) else "shipped"
            OrderView.objects.filter(pk=event.order_id).update(
                status=status, version=envelope.aggregate_version
            )

    _orm_projection = OrmOrderViewProjection
    return _orm_projection


def compare_orm(rounds: int, batch_size: int | None, expected: tuple[int, str]) -> dict[str, Any]:
    """Buffered vs plain-ORM rebuilds, ``rounds`` each, alternating which goes first."""
    from django.db import connection

    from django_cqrs.projections.rebuild import rebuild

    kinds = {"buffered": "orders.OrderViewProjection", "orm": orm_projection()}
    per_s: dict[str, list[float]] = {"buffered": [], "orm": []}
    for n in range(rounds):
        order = ["buffered", "orm"] if n % 2 == 0 else ["orm", "buffered"]
        for kind in order:
            connection.close()
            started = time.perf_counter()
            applied = rebuild(kinds[kind], batch_size=batch_size)
            per_s[kind].append(applied / (time.perf_counter() - started))
            if digest() != expected:
                raise SystemExit(f"the {kind} rebuild's rows differ from the plain loop's")
        print(
            f"  round {n + 1}: buffered {per_s['buffered'][-1]:,.0f}/s, "
            f"ORM {per_s['orm'][-1]:,.0f}/s",
            flush=True,
        )
    ratios = [o / b for o, b in zip(per_s["orm"], per_s["buffered"], strict=True)]
    return {**per_s, "ratio": ratios}


def plain_batched(batch_size: int, *, limit: int | None = None) -> int:
    """Hand-written batched rebuild of OrderView in raw SQL; return the events applied."""
    from django.db import connection, transaction

    from demo_project.orders.models import OrderView

    sqlite = connection.vendor == "sqlite"
    table = OrderView._meta.db_table
    qn = connection.ops.quote_name
    cols = ", ".join(qn(c) for c in VIEW_COLUMNS)
    updates = ", ".join(f"{qn(c)} = excluded.{qn(c)}" for c in VIEW_COLUMNS[1:])
    one_row = f"({', '.join(['%s'] * len(VIEW_COLUMNS))})"

    def upsert(cursor: Any, values: list[list[Any]]) -> None:
        # Multi-row VALUES, 500 rows per statement: one round trip per 500 rows.
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            cursor.execute(
                f"INSERT INTO {qn(table)} ({cols}) VALUES {', '.join([one_row] * len(chunk))} "
                f"ON CONFLICT ({qn('id')}) DO UPDATE SET {updates}",
                [v for row in chunk for v in row],
            )

    types = ", ".join(f"'{t}'" for t in ORDER_EVENTS)
    read = (
        "SELECT position, event_type, aggregate_version, payload, recorded_at "
        f"FROM django_cqrs_event WHERE position > %s AND event_type IN ({types}) "
        "ORDER BY position LIMIT %s"
    )
    adapt = connection.ops.adapt_datetimefield_value

    def key(text: str) -> Any:
        return uuid.UUID(text).hex if sqlite else text

    applied = 0
    after = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {qn(table)}")
    while limit is None or applied < limit:
        size = batch_size if limit is None else min(batch_size, limit - applied)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(read, [after, size])
            events = cursor.fetchall()
            if not events:
                break
            decoded = [(e[1], e[2], json.loads(e[3]), e[4]) for e in events]
            rows: dict[str, list[Any]] = {}
            wanted = {key(p["order_id"]) for t, _, p, _ in decoded if t != "orders.OrderPlaced"}
            wanted -= {key(p["order_id"]) for t, _, p, _ in decoded if t == "orders.OrderPlaced"}
            if wanted:
                marks = ", ".join(["%s"] * len(wanted))
                cursor.execute(
                    f"SELECT {cols} FROM {qn(table)} WHERE id IN ({marks})", list(wanted)
                )
                for row in cursor.fetchall():
                    rows[row[0] if sqlite else str(row[0])] = list(row)
            for event_type, version, p, at in decoded:
                oid = key(p["order_id"])
                if event_type == "orders.OrderPlaced":
                    placed = adapt(at) if sqlite and not isinstance(at, str) else at
                    rows[oid] = [
                        oid,
                        key(p["customer_id"]),
                        p["customer_name"],
                        p["item_count"],
                        Decimal(p["total"]),
                        "placed",
                        version,
                        placed,
                    ]
                    continue
                row = rows[oid]
                if event_type == "orders.ItemAdded":
                    row[3] = p["item_count"]
                    row[4] = Decimal(p["total"])
                elif event_type == "orders.OrderCancelled":
                    row[5] = "cancelled"
                else:
                    row[5] = "shipped"
                row[6] = version
            upsert(cursor, list(rows.values()))
            after = events[-1][0]
            applied += len(events)
    return applied


def naive_loop(limit: int) -> int:
    """One ORM write per event, autocommit: create() or get() + save(); return events."""
    from demo_project.orders.events import ItemAdded, OrderPlaced
    from demo_project.orders.models import OrderView
    from django_cqrs import store

    OrderView.objects.all().delete()
    applied = 0
    for rows in store.iter_all(batch_size=1000, event_types=ORDER_EVENTS):
        for row in rows:
            if applied >= limit:
                return applied
            event, envelope = store.decode_row(row)
            if isinstance(event, OrderPlaced):
                OrderView.objects.create(
                    id=event.order_id,
                    customer_id=event.customer_id,
                    customer_name=event.customer_name,
                    item_count=event.item_count,
                    total=event.total,
                    status="placed",
                    version=envelope.aggregate_version,
                    placed_at=envelope.recorded_at,
                )
            else:
                view = OrderView.objects.get(pk=event.order_id)
                if isinstance(event, ItemAdded):
                    view.item_count = event.item_count
                    view.total = event.total
                else:
                    view.status = "cancelled" if "Cancelled" in envelope.event_type else "shipped"
                view.version = envelope.aggregate_version
                view.save()
            applied += 1
    return applied


def digest() -> tuple[int, str]:
    """Row count and a digest of every OrderView row, in primary-key order."""
    from demo_project.orders.models import OrderView

    h = hashlib.sha256()
    n = 0
    for row in OrderView.objects.order_by("id").values_list(*VIEW_COLUMNS).iterator(5000):
        h.update(repr(row).encode())
        n += 1
    return n, h.hexdigest()[:16]


# -- measuring ------------------------------------------------------------------------


def measure(func: Any, *, trace: bool = False) -> dict[str, Any]:
    """Run ``func``; wall time, peak RSS growth and (``trace``) the tracemalloc peak."""
    gc.collect()
    rss_before = _common.rss_bytes()
    reset = _common.reset_peak_rss()
    if trace:
        tracemalloc.start()
        tracemalloc.reset_peak()
        traced_before = tracemalloc.get_traced_memory()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    value = func()
    seconds = time.perf_counter() - started
    out: dict[str, Any] = {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "value": value,
    }
    if trace:
        out["traced_peak"] = tracemalloc.get_traced_memory()[1] - traced_before
        tracemalloc.stop()
    out["rss_growth"] = (_common.hwm_bytes() - rss_before) if reset else None
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connection

    from django_cqrs.conf import cqrs_settings

    batch = int(args.batch_size or cqrs_settings.REBUILD_BATCH_SIZE)
    print(f"writing {args.events:,} events ...", flush=True)
    gen = measure(lambda: fill_log(args))
    counts = gen["value"]
    applied_total = sum(v for k, v in counts.items() if k in ORDER_EVENTS)
    print(
        f"  {gen['seconds']:.1f}s: "
        + ", ".join(f"{k.split('.')[1]} {v:,}" for k, v in sorted(counts.items())),
        flush=True,
    )
    warm_log()
    connection.close()  # start each pass with a fresh connection (and no cached plans)

    results: dict[str, Any] = {
        "db": args.db,
        "server": _common.server_version(),
        "events": args.events,
        "applied": applied_total,
        "counts": counts,
        "batch_size": batch,
        "generate_seconds": gen["seconds"],
    }

    print("plain batched loop ...", flush=True)
    plain = measure(lambda: plain_batched(batch))
    plain_digest = digest()
    print(
        f"  {plain['seconds']:.1f}s, {plain['value'] / plain['seconds']:,.0f} events/s", flush=True
    )

    print("django_cqrs rebuild() ...", flush=True)
    framework = measure(lambda: run_rebuild(args.batch_size))
    framework_digest = digest()
    print(
        f"  {framework['seconds']:.1f}s, {framework['value'] / framework['seconds']:,.0f} events/s",
        flush=True,
    )
    if framework_digest != plain_digest:
        raise SystemExit(
            f"rebuild rows differ from the plain loop: {framework_digest} vs {plain_digest}"
        )

    traced = None
    if not args.no_tracemalloc:
        print("django_cqrs rebuild() under tracemalloc ...", flush=True)
        traced = measure(lambda: run_rebuild(args.batch_size), trace=True)
        print(f"  peak {traced['traced_peak'] / 2**20:.1f} MB", flush=True)

    naive_n = min(args.naive_events, applied_total)
    print(f"naive loop over the first {naive_n:,} events ...", flush=True)
    naive = measure(lambda: naive_loop(naive_n))
    naive_digest = digest()
    print(
        f"  {naive['seconds']:.1f}s, {naive['value'] / naive['seconds']:,.0f} events/s", flush=True
    )
    plain_batched(batch, limit=naive_n)
    if digest() != naive_digest:
        raise SystemExit("the naive loop's rows differ from the plain loop's over the same prefix")

    orm = None
    if args.orm_rounds > 0:
        print(f"buffered vs plain-ORM rebuild, {args.orm_rounds} rounds interleaved ...")
        orm = compare_orm(args.orm_rounds, args.batch_size, plain_digest)

    if args.profile:
        profile(args.batch_size)

    def entry(m: dict[str, Any]) -> dict[str, Any]:
        return {
            "seconds": m["seconds"],
            "cpu_seconds": m["cpu_seconds"],
            "applied": m["value"],
            "per_s": m["value"] / m["seconds"],
            "rss_growth": m["rss_growth"],
            "traced_peak": m.get("traced_peak"),
        }

    results["rebuild"] = entry(framework)
    if traced is not None:
        results["rebuild"]["traced_peak"] = traced["traced_peak"]
        results["rebuild"]["traced_seconds"] = traced["seconds"]
    results["plain"] = entry(plain)
    results["naive"] = entry(naive)
    results["rows"] = plain_digest[0]
    results["orm"] = orm
    return results


def profile(batch_size: int | None) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run_rebuild(batch_size)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    print("\n-- cProfile of one rebuild, by cumulative time --")
    stats.sort_stats("cumulative").print_stats(30)
    print("-- by own time --")
    stats.sort_stats("tottime").print_stats(25)


# -- output ---------------------------------------------------------------------------


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MB"


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        for label, key, events in (
            ("django_cqrs rebuild()", "rebuild", r["events"]),
            ("plain batched loop", "plain", r["events"]),
            ("naive: one save per event", "naive", None),
        ):
            m = r[key]
            rows.append(
                [
                    r["server"],
                    label,
                    f"{events:,}" if events is not None else f"first {m['applied']:,}",
                    f"{m['applied']:,}",
                    f"{m['seconds']:.1f}",
                    f"{m['cpu_seconds']:.1f}",
                    f"{m['per_s']:,.0f}",
                    _mb(m["rss_growth"]),
                    _mb(m.get("traced_peak")),
                ]
            )
    return _common.table(
        [
            "database",
            "method",
            "events in log",
            "events applied",
            "seconds",
            "client CPU s",
            "events/s",
            "peak RSS growth",
            "tracemalloc peak",
        ],
        rows,
    )


def _spread(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def orm_report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        orm = r.get("orm")
        if not orm:
            continue
        rounds = len(orm["ratio"])
        for label, key in (("buffered (self.put())", "buffered"), ("plain ORM", "orm")):
            rows.append([r["server"], label, rounds, _spread(orm[key], ",.0f"), ""])
        rows.append([r["server"], "ORM / buffered", rounds, "", _spread(orm["ratio"], ".2f")])
    if not rows:
        return ""
    headers = ["database", "projection", "rounds", "events/s min / median / max", "ratio"]
    return "\nBuffered vs plain-ORM handlers (same rows):\n" + _common.table(headers, rows)


def verdict(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        m = r["rebuild"]
        speed = "met" if m["per_s"] >= 10_000 else "MISSED"
        mem = max(v for v in (m["rss_growth"], m.get("traced_peak")) if v is not None)
        memory = "met" if mem < 100 * 2**20 else "MISSED"
        note = (
            ""
            if r["events"] >= 500_000
            else f" (at {r['events']:,} events; the target is for 500,000)"
        )
        lines.append(
            f"{r['server']}: >= 10,000 events/s {speed} ({m['per_s']:,.0f}/s); "
            f"peak memory growth < 100 MB {memory} ({_mb(mem)}){note}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.db == "both":
        results = _common.run_children(__file__, argv, _common.DBS)
        info = _common.machine_info()
        print(
            f"\n== Rebuild of OrderView ({info['nproc']} x {info['cpu']}, {info['ram']}, "
            f"Python {info['python']}, Django {info['django']}) =="
        )
        print(report(results))
        print(orm_report(results))
        print(verdict(results))
        if len(results) != len(_common.DBS):
            sys.exit(1)
        return
    with _common.bench_database(args.db, args.pg_url, sqlite_init=args.sqlite_init):
        result = run(args)
    print()
    print(report([result]))
    print(orm_report([result]))
    print(verdict([result]))
    _common.write_json(args.json, result)


if __name__ == "__main__":
    main(sys.argv[1:])
