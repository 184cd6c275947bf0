"""Shared helpers of the benchmarks: Django set-up, bench databases, tables, machine info.

Each benchmark script runs one database per process (Django is configured once per
process): with ``--db both`` the script re-runs itself with ``--db sqlite`` and then
``--db postgres``, collects their JSON results and prints them side by side.

Nothing here touches the project's own databases: SQLite runs in a temporary directory
and PostgreSQL in a database created for the run (``cqrs_bench_<script>`` by default)
and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# Run as `.venv/bin/python bench/x.py`, bench/ comes first on sys.path, and bench/http.py
# would then shadow the standard library's `http` (which Django imports): move bench/ to
# the end, and make `demo_project` importable.
sys.path[:] = [p for p in sys.path if not (p and Path(p).resolve() == BENCH_DIR)]
sys.path.append(str(BENCH_DIR))
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_PG_SERVER = "postgres://postgres@127.0.0.1:5432"
#: The demo's SQLite connection set-up (demo_project/settings.py).
DEMO_SQLITE_INIT = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;"
DBS = ("sqlite", "postgres")


# -- command line -------------------------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser, script: str) -> None:
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgres", "both"),
        default="both",
        help="Database(s) to run on (default: both, one process each).",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", f"{DEFAULT_PG_SERVER}/cqrs_bench_{script}"),
        help="PostgreSQL database to CREATE and DROP for the run "
        "(default: $BENCH_PG_URL or %(default)s). Never point it at a database you keep.",
    )
    parser.add_argument(
        "--sqlite-init",
        default=DEMO_SQLITE_INIT,
        help="SQLite init_command (default: the demo's, %(default)r); e.g. add "
        "'PRAGMA temp_store=MEMORY;' to see its effect on savepoints.",
    )
    parser.add_argument("--json", help=argparse.SUPPRESS)  # child -> parent results file


def run_children(script: str, argv: Sequence[str], dbs: Sequence[str]) -> list[Any]:
    """Run ``script`` once per database in a fresh process; return their JSON results."""
    results = []
    cleaned: list[str] = []  # argv without `--db X` / `--db=X`
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--db":
            skip = True
            continue
        if arg.startswith("--db="):
            continue
        cleaned.append(arg)
    for db in dbs:
        with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
            cmd = [sys.executable, script, *cleaned, "--db", db, "--json", out.name]
            print(f"\n==== {db} ====", flush=True)
            proc = subprocess.run(cmd, check=False)
            if proc.returncode != 0:
                print(f"!! {db} run failed with exit code {proc.returncode}", flush=True)
                continue
            results.append(json.loads(Path(out.name).read_text() or "null"))
    return results


def write_json(path: str | None, data: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(data, default=str))


# -- Django and databases -----------------------------------------------------------


def sqlite_database(path: Path, init_command: str = DEMO_SQLITE_INIT) -> dict[str, Any]:
    """The demo's SQLite configuration (WAL, busy timeout, immediate transactions)."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": init_command,
        },
    }


def postgres_database(url: str) -> dict[str, Any]:
    import dj_database_url

    config: dict[str, Any] = dj_database_url.parse(url, conn_max_age=None)
    return config


def configure_django(database: dict[str, Any], **extra: Any) -> None:
    """Configure and set up Django for the demo domain on ``database``."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,  # no query log: it would grow without bound
        SECRET_KEY="bench-only",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_q",
            "django_cqrs",
            "demo_project.orders",
        ],
        DATABASES={"default": database},
        Q_CLUSTER={
            "name": "django_cqrs_bench",
            "orm": "default",
            "timeout": 60,
            "retry": 90,
            "max_attempts": 3,
            "catch_up": False,
        },
        DJANGO_CQRS={},
        LOGGING_CONFIG=None,
        **extra,
    )
    django.setup()


def _server_url(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_server_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql)


def ensure_postgres_running(url: str) -> None:
    """Start the local cluster like ``.ci/run`` does when nothing answers on the port."""
    host = urlsplit(url).hostname or "127.0.0.1"
    port = str(urlsplit(url).port or 5432)
    if subprocess.run(["pg_isready", "-q", "-h", host, "-p", port], check=False).returncode == 0:
        return
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"PostgreSQL is not answering at {host}:{port}")
    print(f"starting PostgreSQL {versions[-1]} ...", flush=True)
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False
    )
    for _ in range(30):
        if (
            subprocess.run(["pg_isready", "-q", "-h", host, "-p", port], check=False).returncode
            == 0
        ):
            return
        time.sleep(1)
    raise SystemExit(f"PostgreSQL did not start at {host}:{port}")


@contextlib.contextmanager
def bench_database(
    db: str, pg_url: str, *, sqlite_init: str = DEMO_SQLITE_INIT, **extra_settings: Any
) -> Iterator[dict[str, Any]]:
    """Create a scratch database, configure Django on it, migrate; drop it at the end."""
    from django.core.management import call_command

    tmpdir: str | None = None
    if db == "sqlite":
        tmpdir = tempfile.mkdtemp(prefix="cqrs_bench_")
        database = sqlite_database(Path(tmpdir) / "bench.sqlite3", sqlite_init)
    else:
        ensure_postgres_running(pg_url)
        name = urlsplit(pg_url).path.lstrip("/")
        if not name.startswith("cqrs_bench"):
            raise SystemExit(
                f"refusing to CREATE/DROP {name!r}: the name must start with cqrs_bench"
            )
        _pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _pg_admin(pg_url, f'CREATE DATABASE "{name}"')
        database = postgres_database(pg_url)
    try:
        configure_django(database, **extra_settings)
        call_command("migrate", verbosity=0, interactive=False, skip_checks=True)
        yield database
    finally:
        from django.db import connections

        connections.close_all()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            name = urlsplit(pg_url).path.lstrip("/")
            _pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_version() -> str:
    from django.db import connection

    if connection.vendor == "sqlite":
        import sqlite3

        init = connection.settings_dict.get("OPTIONS", {}).get("init_command", "")
        extra = init.replace(DEMO_SQLITE_INIT, "").strip()
        return f"SQLite {sqlite3.sqlite_version}" + (f" + {extra}" if extra else "")
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return f"PostgreSQL {cursor.fetchone()[0].split()[0]}"


# -- machine ------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    import django

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "django": django.get_version(),
    }


# -- memory -------------------------------------------------------------------------


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def hwm_bytes() -> int:
    """Peak resident set size (VmHWM) since start or the last :func:`reset_peak_rss`."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# -- output -------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table, right-aligned numbers."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [
        all(_looks_numeric(r[i]) for r in cells) and bool(cells) for i in range(len(headers))
    ]

    def fmt(row: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    sep = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if num else ("-" * (w + 2))
            for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([fmt(list(headers)), sep, *(fmt(r) for r in cells)])


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("%", "").replace("x", "").replace(" MB", "").strip()
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = func()
    return time.perf_counter() - started, value


def seed_through_bus(
    seed: int, customers: int, products: int
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Customers and products, registered through the bus (so their summaries exist)."""
    from decimal import Decimal

    from demo_project.orders.commands import AddProduct, RegisterCustomer
    from django_cqrs import command_bus

    rng = random.Random(seed)
    customer_ids = [
        command_bus.dispatch(
            RegisterCustomer(name=f"Customer {i}", credit_limit=Decimal("1000000000"))
        ).value
        for i in range(customers)
    ]
    product_ids = [
        command_bus.dispatch(
            AddProduct(name=f"Product {i}", price=Decimal(rng.randint(100, 99999)) / 100)
        ).value
        for i in range(products)
    ]
    return customer_ids, product_ids
