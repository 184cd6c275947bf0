"""``bench/projections.py --lag``: projection lag with real qcluster workers on Redis.

1. Creates the PostgreSQL bench database, configures Django with
   ``bench/_projection_lag_settings.py`` (Redis broker) and migrates.
2. Starts ``--lag-clusters`` ``manage.py qcluster`` processes (``--lag-workers`` workers
   each; default one cluster of 2 workers), each in its own process group.
3. Registers customers and products through the command bus and waits until the
   cluster has caught CustomerSummaryProjection up (this is also the readiness check).
4. Dispatches ``PlaceOrder`` through the command bus from ``--lag-threads`` threads,
   paced on a common schedule at ``--lag-rate`` commands/s for ``--lag-seconds``; a
   separate thread (own connection, autocommit) reads the projection's checkpoint every
   ``--lag-poll-ms`` and records when each position is first covered.
5. Lag of an event = time its position was first seen covered - its ``recorded_at``.
   Reports p50/p95/p99/max, the achieved rate, and checks the summary rows against the
   log. Kills the process groups (SIGKILL), checks that no member survives, deletes the
   cluster's Redis keys and drops the database.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import _common

SETTINGS = "bench._projection_lag_settings"
NAME = "orders.CustomerSummaryProjection"
TARGET_P95_MS = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lag",
        action="store_true",
        help="Measure projection lag with real qcluster workers on Redis (PostgreSQL only; "
        "runs instead of the catch-up comparison).",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
        help="Redis broker for --lag (default: $BENCH_REDIS_URL or %(default)s).",
    )
    parser.add_argument("--lag-rate", type=float, default=200.0, help="Commands/s (200).")
    parser.add_argument("--lag-seconds", type=float, default=30.0, help="Seconds (30).")
    parser.add_argument("--lag-threads", type=int, default=4, help="Dispatching threads (4).")
    parser.add_argument("--lag-clusters", type=int, default=1, help="qcluster processes (1).")
    parser.add_argument("--lag-workers", type=int, default=2, help="Workers per cluster (2).")
    parser.add_argument("--lag-poll-ms", type=float, default=5.0, help="Checkpoint poll (5 ms).")
    parser.add_argument("--lag-customers", type=int, default=200)
    parser.add_argument("--lag-products", type=int, default=50)


# -- database, Django, clusters -------------------------------------------------------


@contextlib.contextmanager
def lag_environment(args: argparse.Namespace) -> Iterator[dict[str, str]]:
    """Create the database, set up Django on the lag settings; drop it at the end."""
    for url in (args.pg_url, args.redis_url):
        host = urlsplit(url).hostname
        if host not in ("127.0.0.1", "localhost"):
            raise SystemExit(f"--lag talks to 127.0.0.1 only, not {host}")
    _common.ensure_postgres_running(args.pg_url)
    name = urlsplit(args.pg_url).path.lstrip("/")
    if not name.startswith("cqrs_bench"):
        raise SystemExit(f"refusing to CREATE/DROP {name!r}: the name must start with cqrs_bench")
    _common._pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _common._pg_admin(args.pg_url, f'CREATE DATABASE "{name}"')
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "CQRS_BENCH_LAG_DB_URL": args.pg_url,
        "CQRS_BENCH_LAG_REDIS_URL": args.redis_url,
        "CQRS_BENCH_LAG_CLUSTER": f"cqrs-bench-lag-{uuid.uuid4().hex[:10]}",
        "CQRS_BENCH_LAG_WORKERS": str(args.lag_workers),
    }
    os.environ.update(env)
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False, skip_checks=True)
        yield env
    finally:
        from django.db import connections

        connections.close_all()
        _common._pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            import redis

            client = redis.from_url(args.redis_url)
            keys = client.keys(f"django_q:{env['CQRS_BENCH_LAG_CLUSTER']}:*")
            if keys:
                client.delete(*keys)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


class Cluster:
    """One ``manage.py qcluster`` in its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(_common.REPO_ROOT)}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=_common.REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> list[int]:
        """SIGKILL the whole group; return the members still alive after 15 s."""
        if self.proc is None:
            return []
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        self.proc = None
        deadline = time.monotonic() + 15
        while (left := group_members(pgid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


# -- measuring --------------------------------------------------------------------------


def checkpoint() -> int:
    from django_cqrs.models import ProjectionState

    found = ProjectionState.objects.filter(name=NAME).values_list("position", flat=True).first()
    return found or 0


def wait_caught_up(clusters: list[Cluster], timeout: float) -> float:
    from django_cqrs import store

    started = time.monotonic()
    target = store.head()
    while checkpoint() < target:
        if time.monotonic() - started > timeout:
            raise SystemExit(
                f"not caught up after {timeout:.0f}s: {checkpoint()} of {target}\n"
                + "\n".join(c.tail() for c in clusters)
            )
        time.sleep(0.01)
    return time.monotonic() - started


class Poller(threading.Thread):
    """Reads the checkpoint every ``interval`` s on its own connection; (position, time)."""

    def __init__(self, interval: float, start_position: int) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.last = start_position
        self.seen: list[tuple[int, float]] = []
        self.polls = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connection

        from django_cqrs.models import ProjectionState

        sql = f"SELECT position FROM {ProjectionState._meta.db_table} WHERE name = %s"
        try:
            with connection.cursor() as cursor:
                while not self.stop.is_set():
                    cursor.execute(sql, [NAME])
                    found = cursor.fetchone()
                    now = time.time()
                    self.polls += 1
                    if found and found[0] > self.last:
                        self.last = found[0]
                        self.seen.append((found[0], now))
                    time.sleep(self.interval)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            connection.close()


def seed(args: argparse.Namespace) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Customers and products, registered through the bus (so their summaries exist)."""
    return _common.seed_through_bus(args.seed, args.lag_customers, args.lag_products)


def dispatch_paced(
    args: argparse.Namespace, customers: list[uuid.UUID], products: list[uuid.UUID]
) -> dict[str, Any]:
    """PlaceOrder at ``--lag-rate``/s for ``--lag-seconds`` from ``--lag-threads`` threads."""
    total = int(args.lag_rate * args.lag_seconds)
    commands = place_order_commands(total, customers, products, args.seed)
    return dispatch_at_rate(commands, args.lag_rate, args.lag_threads)


def place_order_commands(
    total: int, customers: list[uuid.UUID], products: list[uuid.UUID], seed: int
) -> list[Any]:
    """``total`` PlaceOrder commands of 1-4 random products, 1-5 units each."""
    from demo_project.orders.commands import OrderItem, PlaceOrder

    rng = random.Random(seed)
    return [
        PlaceOrder(
            customer_id=rng.choice(customers),
            items=[
                OrderItem(product_id=p, quantity=rng.randint(1, 5))
                for p in rng.sample(products, rng.randint(1, 4))
            ],
        )
        for _ in range(total)
    ]


def dispatch_at_rate(commands: list[Any], rate: float, threads: int) -> dict[str, Any]:
    """Dispatch ``commands`` through the bus at ``rate``/s on a common schedule from
    ``threads`` threads; how fast, how late and how long each dispatch took."""
    from django.db import connection

    from django_cqrs import command_bus

    total = len(commands)
    interval = 1.0 / rate
    threads = max(1, threads)
    late: list[list[float]] = [[] for _ in range(threads)]
    durations: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    start = time.perf_counter() + 0.05

    def worker(k: int) -> None:
        try:
            for i in range(k, total, threads):
                due = start + i * interval
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                began = time.perf_counter()
                late[k].append(max(0.0, began - due))
                command_bus.dispatch(commands[i])
                durations[k].append(time.perf_counter() - began)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    all_late = sorted(x for xs in late for x in xs)
    all_durations = sorted(x for xs in durations for x in xs)
    return {
        "commands": total,
        "seconds": elapsed,
        "rate": total / elapsed,
        "threads": threads,
        "late_p95_ms": 1000 * all_late[int(0.95 * (len(all_late) - 1))],
        "late_max_ms": 1000 * all_late[-1],
        "dispatch_p50_ms": 1000 * statistics.median(all_durations),
        "dispatch_p95_ms": 1000 * all_durations[int(0.95 * (len(all_durations) - 1))],
    }


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def run_lag(args: argparse.Namespace, bench: Any) -> dict[str, Any]:
    """Run the measurement; ``bench`` is bench/projections.py (its row checks)."""
    if args.db == "sqlite":
        raise SystemExit("--lag runs on PostgreSQL with a Redis broker: use --db postgres")

    tmpdir = Path(tempfile.mkdtemp(prefix="cqrs_bench_lag_"))
    clusters: list[Cluster] = []
    survivors: list[int] = []
    try:
        with lag_environment(args) as env:
            from django.db import connection

            from django_cqrs import store
            from django_cqrs.models import StoredEvent

            server = _common.server_version()
            import redis

            redis_version = redis.from_url(args.redis_url).info("server")["redis_version"]
            for n in range(args.lag_clusters):
                clusters.append(Cluster(env, tmpdir / f"qcluster{n}.log"))
            for cluster in clusters:
                cluster.start()
            print(
                f"{len(clusters)} qcluster x {args.lag_workers} workers on Redis "
                f"{redis_version} ({args.redis_url}); seeding "
                f"{args.lag_customers} customers, {args.lag_products} products ...",
                flush=True,
            )
            customers, products = seed(args)
            ready = wait_caught_up(clusters, timeout=120)
            print(f"  caught up {ready:.1f}s after seeding", flush=True)
            start_position = store.head()
            poller = Poller(args.lag_poll_ms / 1000, start_position)
            poller.start()
            print(
                f"PlaceOrder at {args.lag_rate:.0f}/s for {args.lag_seconds:.0f}s from "
                f"{args.lag_threads} thread(s) ...",
                flush=True,
            )
            sent = dispatch_paced(args, customers, products)
            print(
                f"  {sent['commands']:,} commands in {sent['seconds']:.1f}s = "
                f"{sent['rate']:.1f}/s (dispatch p50 {sent['dispatch_p50_ms']:.1f} ms, "
                f"p95 {sent['dispatch_p95_ms']:.1f} ms; start late p95 "
                f"{sent['late_p95_ms']:.1f} ms)",
                flush=True,
            )
            drain = wait_caught_up(clusters, timeout=120)
            time.sleep(3 * args.lag_poll_ms / 1000)
            poller.stop.set()
            poller.join(10)
            if poller.error:
                raise poller.error
            final = store.head()
            events = list(
                StoredEvent.objects.filter(
                    position__gt=start_position,
                    position__lte=final,
                    event_type__in=bench.SUMMARY_EVENTS,
                )
                .order_by("position")
                .values_list("position", "recorded_at")
            )
            seen_positions = [p for p, _ in poller.seen]
            lags = []
            for position, recorded_at in events:
                i = bisect.bisect_left(seen_positions, position)
                if i == len(seen_positions):
                    raise SystemExit(f"position {position} never seen covered")
                lags.append((poller.seen[i][1] - recorded_at.timestamp()) * 1000)
            lags.sort()
            if bench.summary_rows() != bench.expected_prefix(final):
                raise SystemExit("the summary rows differ from the expected ones")
            connection.close()
            result = {
                "db": "postgres",
                "server": server,
                "redis": f"Redis {redis_version}",
                "clusters": args.lag_clusters,
                "workers": args.lag_workers,
                **sent,
                "target_rate": args.lag_rate,
                "events": len(lags),
                "checkpoint_moves": len(poller.seen),
                "polls": poller.polls,
                "poll_ms": args.lag_poll_ms,
                "drain_seconds": drain,
                "p50_ms": percentile(lags, 0.50),
                "p95_ms": percentile(lags, 0.95),
                "p99_ms": percentile(lags, 0.99),
                "max_ms": lags[-1],
                "mean_ms": statistics.fmean(lags),
            }
            for cluster in clusters:
                survivors += cluster.kill()
    finally:
        for cluster in clusters:
            survivors += cluster.kill()
        import shutil

        shutil.rmtree(tmpdir, ignore_errors=True)
    if survivors:
        raise SystemExit(f"qcluster processes survived SIGKILL of their group: {survivors}")
    result["survivors"] = 0
    print(
        f"  lag over {result['events']:,} events: p50 {result['p50_ms']:.0f} ms, p95 "
        f"{result['p95_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, max "
        f"{result['max_ms']:.0f} ms; {result['checkpoint_moves']:,} checkpoint moves; "
        f"cluster process groups killed, none survived",
        flush=True,
    )
    return result


def report(r: dict[str, Any]) -> str:
    return _common.table(
        [
            "database / broker",
            "workers",
            "commands/s (target)",
            "events",
            "lag p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            f"p95 < {TARGET_P95_MS} ms",
        ],
        [
            [
                f"{r['server']} / {r['redis']}",
                f"{r['clusters']} x {r['workers']}",
                f"{r['rate']:.1f} ({r['target_rate']:.0f})",
                f"{r['events']:,}",
                f"{r['p50_ms']:.0f}",
                f"{r['p95_ms']:.0f}",
                f"{r['p99_ms']:.0f}",
                f"{r['max_ms']:.0f}",
                "met" if r["p95_ms"] < TARGET_P95_MS else "MISSED",
            ]
        ],
    )
