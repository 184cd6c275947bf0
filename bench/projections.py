"""Async catch-up of CustomerSummaryProjection vs a plain ORM loop vs eventsourcing's runner.

    .venv/bin/python bench/projections.py                   # 100,000 events, both databases
    .venv/bin/python bench/projections.py --db postgres --events 200000 --es-events 50000
    .venv/bin/python bench/projections.py --db postgres --rebuild-events 1000000   # opt-in
    .venv/bin/python bench/projections.py --lag     # opt-in: lag, 2 qcluster workers on Redis

1. Writes ``--events`` demo events straight into the log (bench/rebuild.py's generator:
   CustomerRegistered ~1%, OrderPlaced ~47%, then ItemAdded / OrderCancelled /
   OrderShipped), COPY on PostgreSQL, executemany on SQLite.
2. Times, on that log, one after the other:
   - ``django_cqrs.projections.catchup.catch_up("orders.CustomerSummaryProjection")`` from
     checkpoint 0 (what a django-q2 worker runs; default batch size);
   - a plain ORM loop writing the same rows: keyset batches of 1,000 events, one
     transaction per batch, ``create()`` / ``filter().update(F() + ...)`` per event and a
     checkpoint row update per batch;
   - the eventsourcing library (benchmark-only dependency): the same events written to
     its own recorder (same database), a ``Projection`` over a ``TrackingRecorder`` view
     and ``ProjectionRunner`` -- over the first ``--es-events`` events (default 20,000: it
     commits once per event).
   All must end with the same summary rows (checked).
3. ``--rebuild-events N`` (opt-in): a separate log of N events, ``cqrs_rebuild`` of
   CustomerSummaryProjection (django_cqrs.projections.rebuild.rebuild), wall time and peak RSS.
4. ``--lag`` (opt-in, PostgreSQL only, instead of 1-3): real ``qcluster`` workers on a
   Redis broker drive the projection while this process dispatches PlaceOrder through
   the command bus at a steady ``--lag-rate`` (200/s); lag of each event = when the
   checkpoint was first seen past it - its ``recorded_at`` (bench/_projection_lag.py).

Targets (issue 4): catch-up >= 10,000 events/s on PostgreSQL, >= 20,000 on SQLite; a
1,000,000-event rebuild in < 100 s with peak memory < 300 MB; lag p95 < 500 ms at 200
commands/s with 2 Redis-broker workers.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import _common
import _projection_lag
import rebuild as rebuild_bench

NAME = "orders.CustomerSummaryProjection"
SUMMARY_EVENTS = (
    "orders.CustomerRegistered",
    "orders.OrderPlaced",
    "orders.ItemAdded",
    "orders.OrderCancelled",
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="Events (default 100,000).")
    parser.add_argument(
        "--es-events",
        type=int,
        default=20_000,
        help="Events the eventsourcing runner processes (default 20,000; 0: skip it).",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="Catch-up batch size (default: setting)."
    )
    parser.add_argument(
        "--rebuild-events",
        type=int,
        default=0,
        help="Also time a rebuild of CustomerSummaryProjection over this many events "
        "(e.g. 1000000; default 0: skip).",
    )
    parser.add_argument("--open-orders", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile one more catch-up.")
    _projection_lag.add_arguments(parser)
    _common.add_common_arguments(parser, "projections")
    return parser.parse_args(argv)


# -- the three ways -------------------------------------------------------------------


def reset() -> None:
    from demo_project.orders.models import CustomerSummary
    from django_cqrs.models import ProjectionState

    CustomerSummary.objects.all().delete()
    ProjectionState.objects.filter(name__in=[NAME, "bench.plain"]).delete()


def cqrs_catch_up(batch_size: int | None) -> int:
    from django_cqrs.projections.catchup import catch_up

    return catch_up(NAME, batch_size=batch_size)


def plain_loop(batch: int = 1000) -> int:
    """The hand-written ORM loop: per-event create()/update(), a checkpoint per batch."""
    from django.db import transaction
    from django.db.models import F

    from demo_project.orders.models import CustomerSummary
    from django_cqrs.models import ProjectionState, StoredEvent

    ProjectionState.objects.get_or_create(name="bench.plain")
    summaries = CustomerSummary.objects
    applied = 0
    while True:
        with transaction.atomic():
            position = (
                ProjectionState.objects.select_for_update()
                .values_list("position", flat=True)
                .get(name="bench.plain")
            )
            rows = list(
                StoredEvent.objects.filter(position__gt=position, event_type__in=SUMMARY_EVENTS)
                .order_by("position")
                .values_list("position", "event_type", "payload")[:batch]
            )
            if not rows:
                return applied
            for _, event_type, p in rows:
                if event_type == "orders.CustomerRegistered":
                    summaries.create(customer_id=p["customer_id"], customer_name=p["name"])
                elif event_type == "orders.OrderPlaced":
                    summaries.filter(pk=p["customer_id"]).update(
                        order_count=F("order_count") + 1,
                        lifetime_value=F("lifetime_value") + Decimal(p["total"]),
                    )
                elif event_type == "orders.ItemAdded":
                    line = p["line"]
                    summaries.filter(pk=p["customer_id"]).update(
                        lifetime_value=F("lifetime_value")
                        + Decimal(line["unit_price"]) * line["quantity"]
                    )
                else:
                    summaries.filter(pk=p["customer_id"]).update(
                        order_count=F("order_count") - 1,
                        lifetime_value=F("lifetime_value") - Decimal(p["total"]),
                    )
            ProjectionState.objects.filter(name="bench.plain").update(position=rows[-1][0])
            applied += len(rows)


def summary_rows(prefix_position: int | None = None) -> list[tuple[str, str, int, Decimal]]:
    from demo_project.orders.models import CustomerSummary

    return sorted(
        (str(c), n, k, Decimal(v).quantize(Decimal("0.01")))
        for c, n, k, v in CustomerSummary.objects.values_list(
            "customer_id", "customer_name", "order_count", "lifetime_value"
        )
    )


def expected_prefix(limit: int) -> list[tuple[str, str, int, Decimal]]:
    """The summary rows after the first ``limit`` events, computed in memory from the log."""
    from django_cqrs.models import StoredEvent

    rows: dict[str, list[Any]] = {}
    for event_type, p in (
        StoredEvent.objects.order_by("position").values_list("event_type", "payload")[:limit]
    ).iterator(5000):
        if event_type == "orders.CustomerRegistered":
            rows[p["customer_id"]] = [p["name"], 0, Decimal("0")]
        elif event_type == "orders.OrderPlaced":
            r = rows[p["customer_id"]]
            r[1] += 1
            r[2] += Decimal(p["total"])
        elif event_type == "orders.ItemAdded":
            rows[p["customer_id"]][2] += Decimal(p["line"]["unit_price"]) * p["line"]["quantity"]
        elif event_type == "orders.OrderCancelled":
            r = rows[p["customer_id"]]
            r[1] -= 1
            r[2] -= Decimal(p["total"])
    return sorted(
        (str(uuid.UUID(c)), n, k, v.quantize(Decimal("0.01"))) for c, (n, k, v) in rows.items()
    )


def eventsourcing_run(args: argparse.Namespace, tmpdir: str) -> dict[str, Any]:
    """Write the first ``--es-events`` events to eventsourcing's recorder; time its runner."""
    import _projection_es as es
    from django.db import connection
    from eventsourcing.projection import ProjectionRunner

    from django_cqrs.models import StoredEvent

    limit = args.es_events
    if connection.vendor != "postgresql":
        # eventsourcing 9.5: "The SQLiteApplicationRecorder recorder does not support
        # subscriptions", which ProjectionRunner needs.
        raise NotImplementedError("eventsourcing's SQLite recorder has no subscriptions")
    if connection.vendor == "postgresql":
        url = urlsplit(args.pg_url)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": url.path.lstrip("/"),
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_PASSWORD": url.password or "",
        }
        view_class: Any = es.PostgresSummaryView
    else:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(Path(tmpdir) / "eventsourcing.sqlite3"),
        }
        view_class = es.SQLiteSummaryView
    app = es.Shop(env=env)
    started = time.perf_counter()
    chunk = []
    # The runner records tracking only for the events its topics select: wait for the
    # last of those, not for the head (an OrderShipped last would never be tracked).
    written_count = last_handled = 0
    for event_type, agg_id, version, payload, at in (
        StoredEvent.objects.order_by("position").values_list(
            "event_type", "aggregate_id", "aggregate_version", "payload", "recorded_at"
        )[:limit]
    ).iterator(5000):
        chunk.append(
            app.mapper.to_stored_event(es.to_domain_event(event_type, agg_id, version, payload, at))
        )
        written_count += 1
        if event_type in SUMMARY_EVENTS:
            last_handled = written_count
        if len(chunk) >= 1000:
            app.recorder.insert_events(chunk)
            chunk = []
    if chunk:
        app.recorder.insert_events(chunk)
    written = time.perf_counter() - started
    # A fresh recorder written by one writer: notification ids are 1, 2, ... in order.
    head = (app.recorder.max_notification_id() or 0) - (written_count - last_handled)
    app.close()
    print(f"  wrote {limit:,} events to eventsourcing's recorder in {written:.1f}s", flush=True)
    started = time.perf_counter()
    with ProjectionRunner(
        application_class=es.Shop,
        projection_class=es.CustomerSummaryProjection,
        view_class=view_class,
        env=env,
    ) as runner:
        runner.wait(head, timeout=900)
        seconds = time.perf_counter() - started
        rows = sorted(
            (str(uuid.UUID(str(c))), n, k, Decimal(v).quantize(Decimal("0.01")))
            for c, n, k, v in runner.view.rows()
        )
    if rows != expected_prefix(limit):
        raise SystemExit("eventsourcing's summary rows differ from the expected ones")
    return {"seconds": seconds, "applied": limit, "per_s": limit / seconds}


# -- runs -----------------------------------------------------------------------------


def measure(func: Any) -> dict[str, Any]:
    gc.collect()
    rss_before = _common.rss_bytes()
    reset_ok = _common.reset_peak_rss()
    started, cpu = time.perf_counter(), time.process_time()
    value = func()
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "value": value,
        "rss_growth": (_common.hwm_bytes() - rss_before) if reset_ok else None,
        "peak_rss": _common.hwm_bytes(),
    }


def run(args: argparse.Namespace, tmpdir: str) -> dict[str, Any]:
    from django.db import connection

    print(f"writing {args.events:,} events ...", flush=True)
    fill = measure(lambda: rebuild_bench.fill_log(args))
    counts = fill["value"]
    print(f"  {fill['seconds']:.1f}s: {counts}", flush=True)
    rebuild_bench.warm_log()
    connection.close()
    result: dict[str, Any] = {
        "db": args.db,
        "server": _common.server_version(),
        "events": args.events,
        "handled": sum(v for k, v in counts.items() if k in SUMMARY_EVENTS),
    }

    reset()
    print("django_cqrs catch_up() ...", flush=True)
    m = measure(lambda: cqrs_catch_up(args.batch_size))
    ours = summary_rows()
    result["cqrs"] = {"seconds": m["seconds"], "cpu_seconds": m["cpu_seconds"], "read": m["value"]}
    print(f"  {m['seconds']:.2f}s, {args.events / m['seconds']:,.0f} events/s", flush=True)
    if ours != expected_prefix(args.events):
        raise SystemExit("catch_up's summary rows differ from the expected ones")

    reset()
    print("plain ORM loop ...", flush=True)
    m = measure(plain_loop)
    result["plain"] = {"seconds": m["seconds"], "cpu_seconds": m["cpu_seconds"], "read": m["value"]}
    print(f"  {m['seconds']:.2f}s, {args.events / m['seconds']:,.0f} events/s", flush=True)
    if summary_rows() != ours:
        raise SystemExit("the plain loop's summary rows differ from catch_up's")

    if args.es_events:
        print(f"eventsourcing ProjectionRunner over {args.es_events:,} events ...", flush=True)
        try:
            result["eventsourcing"] = eventsourcing_run(args, tmpdir)
            r = result["eventsourcing"]
            print(f"  {r['seconds']:.2f}s, {r['per_s']:,.0f} events/s", flush=True)
        except (ImportError, NotImplementedError) as exc:
            result["eventsourcing_skipped"] = str(exc)
            print(f"  skipped: {exc}", flush=True)

    if args.profile:
        import cProfile
        import pstats

        reset()
        profiler = cProfile.Profile()
        profiler.enable()
        cqrs_catch_up(args.batch_size)
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(20)

    if args.rebuild_events:
        result["rebuild"] = big_rebuild(args)
    return result


def big_rebuild(args: argparse.Namespace) -> dict[str, Any]:
    """Empty the log, write ``--rebuild-events`` events, rebuild the summary; time and memory."""
    from django.core.management.color import no_style
    from django.db import connection

    from django_cqrs.models import StoredEvent
    from django_cqrs.projections.rebuild import rebuild

    # The log refuses DELETE (django_cqrs.db.appendonly); a flush of its table empties it
    # (TRUNCATE on PostgreSQL, DELETE let through during the flush on SQLite).
    connection.ensure_connection()
    connection.ops.execute_sql_flush(
        connection.ops.sql_flush(no_style(), [StoredEvent._meta.db_table])
    )
    reset()
    big = argparse.Namespace(**{**vars(args), "events": args.rebuild_events})
    print(f"writing {args.rebuild_events:,} events for the rebuild ...", flush=True)
    fill = measure(lambda: rebuild_bench.fill_log(big))
    print(f"  {fill['seconds']:.1f}s", flush=True)
    rebuild_bench.warm_log()
    connection.close()
    print("django_cqrs rebuild() of CustomerSummaryProjection ...", flush=True)
    m = measure(lambda: rebuild(NAME))
    print(
        f"  {m['seconds']:.1f}s, {args.rebuild_events / m['seconds']:,.0f} events/s, peak RSS "
        f"{m['peak_rss'] / 2**20:.0f} MB (growth {(m['rss_growth'] or 0) / 2**20:.0f} MB)",
        flush=True,
    )
    return {
        "events": args.rebuild_events,
        "seconds": m["seconds"],
        "peak_rss": m["peak_rss"],
        "rss_growth": m["rss_growth"],
    }


# -- output ---------------------------------------------------------------------------

TARGETS = {"sqlite": 20_000, "postgres": 10_000}


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        target = TARGETS[r["db"]]
        for label, key in (
            ("django_cqrs catch_up()", "cqrs"),
            ("plain ORM loop", "plain"),
            ("eventsourcing ProjectionRunner", "eventsourcing"),
        ):
            m = r.get(key)
            if m is None:
                continue
            n = m.get("applied", r["events"])
            rate = n / m["seconds"]
            rows.append(
                [
                    r["server"],
                    label,
                    f"{n:,}",
                    f"{m['seconds']:.2f}",
                    f"{rate:,.0f}",
                    f"{rate / (r['events'] / r['cqrs']['seconds']):.2f}x",
                    (f">= {target:,}/s: " + ("met" if rate >= target else "MISSED"))
                    if key == "cqrs"
                    else "",
                ]
            )
    text = _common.table(
        ["database", "method", "events", "seconds", "events/s", "vs catch_up", "target"], rows
    )
    big = [r for r in results if r.get("rebuild")]
    if big:
        text += "\n\nRebuild of CustomerSummaryProjection:\n\n" + _common.table(
            ["database", "events", "seconds", "events/s", "peak RSS", "< 100 s and < 300 MB"],
            [
                [
                    r["server"],
                    f"{r['rebuild']['events']:,}",
                    f"{r['rebuild']['seconds']:.1f}",
                    f"{r['rebuild']['events'] / r['rebuild']['seconds']:,.0f}",
                    f"{r['rebuild']['peak_rss'] / 2**20:.0f} MB",
                    "met"
                    if r["rebuild"]["seconds"] < 100 and r["rebuild"]["peak_rss"] < 300 * 2**20
                    else "MISSED",
                ]
                for r in big
            ],
        )
    return text


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.lag:
        info = _common.machine_info()
        result = _projection_lag.run_lag(args, sys.modules[__name__])
        print(
            f"\n== Projection lag of CustomerSummaryProjection ({info['nproc']} x "
            f"{info['cpu']}, {info['ram']}, Python {info['python']}, Django {info['django']}) =="
        )
        print(_projection_lag.report(result))
        _common.write_json(args.json, result)
        return
    if args.db == "both":
        results = _common.run_children(__file__, argv, _common.DBS)
        info = _common.machine_info()
        print(
            f"\n== Async catch-up of CustomerSummaryProjection ({info['nproc']} x {info['cpu']}, "
            f"{info['ram']}, Python {info['python']}, Django {info['django']}) =="
        )
        print(report(results))
        if len(results) != len(_common.DBS):
            sys.exit(1)
        return
    tmpdir = tempfile.mkdtemp(prefix="cqrs_bench_es_")
    try:
        with _common.bench_database(args.db, args.pg_url, sqlite_init=args.sqlite_init):
            result = run(args, tmpdir)
    finally:
        import shutil

        shutil.rmtree(tmpdir, ignore_errors=True)
    print()
    print(report([result]))
    _common.write_json(args.json, result)


if __name__ == "__main__":
    with contextlib.suppress(KeyError):
        os.environ.pop("DATABASE_URL")
    main(sys.argv[1:])
