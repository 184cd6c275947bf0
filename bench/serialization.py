"""Event payload encoding and decoding: the per-type codecs vs an earlier serialization.py.

    .venv/bin/python bench/serialization.py                  # about 10 s
    .venv/bin/python bench/serialization.py --rounds 40 --number 5000
    .venv/bin/python bench/serialization.py --baseline 45b5911 --lines 10

Both implementations run in this one process: the current ``django_cqrs.serialization``
and the baseline's ``django_cqrs/serialization.py`` read from git (``git show
<baseline>:django_cqrs/serialization.py``; default 45b5911, the last commit with the
interpreted encoder), executed into a throwaway module object whose relative imports
resolve to the same ``django_cqrs`` package. No database and no Django set-up: events
are plain frozen dataclasses.

Events (the first three are the demo's, demo_project/orders/events.py):
  OrderPlaced         ``--lines`` order lines (default 5), each a nested dataclass
  ItemAdded           one nested line
  CustomerRegistered  flat: UUID, str, Decimal
  Scalars             flat, one field of each scalar type (str, int, float, bool, UUID,
                      Decimal, aware datetime, date, time, timedelta, Enum, X | None)

Operations: ``to_json_dict(event)`` (what ``store.append`` stores) and
``from_json_dict(cls, payload)`` (what every read and rebuild does). Before timing, the
script checks that both implementations give the same payload (as JSON text) and
decode it to equal events.

Rounds alternate the order of the two implementations (AB, BA, ...); in each round every
event and operation is timed over ``--number`` calls per implementation, with the
garbage collector off as ``timeit`` does. Printed: microseconds per call (median and
range over the rounds) and new/old (below 1 is faster): the ratio of the medians, and
the median and range of the per-round ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import gc
import itertools
import json
import statistics
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import _common

DEFAULT_BASELINE = "45b5911"
MODULE_PATH = "django_cqrs/serialization.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        help="Commit whose serialization.py is the baseline (default %(default)s, the "
        "merge-base with main before the codecs).",
    )
    parser.add_argument("--rounds", type=int, default=20, help="Alternating rounds (default 20).")
    parser.add_argument("--number", type=int, default=2000, help="Calls per timing (default 2000).")
    parser.add_argument(
        "--lines", type=int, default=5, help="Order lines of OrderPlaced (default 5)."
    )
    return parser.parse_args(argv)


# -- the two implementations --------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_common.REPO_ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def load_baseline(commit: str) -> types.ModuleType:
    """The baseline's serialization.py as a module object (not in sys.modules)."""
    source = git("show", f"{commit}:{MODULE_PATH}")
    module = types.ModuleType("django_cqrs._bench_baseline_serialization")
    module.__package__ = "django_cqrs"  # `from .exceptions import ...` finds the real one
    exec(compile(source, f"{commit}:{MODULE_PATH}", "exec"), module.__dict__)
    return module


# -- events -------------------------------------------------------------------------


class Channel(enum.Enum):
    WEB = "web"
    SHOP = "shop"


@dataclasses.dataclass(frozen=True)
class Scalars:
    text: str
    count: int
    ratio: float
    flag: bool
    ident: uuid.UUID
    amount: Decimal
    at: dt.datetime
    day: dt.date
    clock: dt.time
    duration: dt.timedelta
    channel: Channel
    note: str | None


def sample_events(lines: int) -> list[tuple[str, Any]]:
    from demo_project.orders.events import (
        CustomerRegistered,
        ItemAdded,
        OrderLineData,
        OrderPlaced,
    )

    ids = [uuid.UUID(int=i) for i in range(1, 3 + lines)]
    order_lines = [
        OrderLineData(product_id=ids[2 + i], quantity=i + 1, unit_price=Decimal(f"{i + 9}.90"))
        for i in range(lines)
    ]
    total = sum((line.unit_price * line.quantity for line in order_lines), Decimal("0"))
    return [
        (
            f"OrderPlaced ({lines} lines)",
            OrderPlaced(
                order_id=ids[0],
                customer_id=ids[1],
                customer_name="Customer 1",
                lines=order_lines,
                total=total,
                item_count=sum(line.quantity for line in order_lines),
            ),
        ),
        (
            "ItemAdded",
            ItemAdded(
                order_id=ids[0],
                customer_id=ids[1],
                line=order_lines[0],
                total=total,
                item_count=3,
            ),
        ),
        (
            "CustomerRegistered",
            CustomerRegistered(customer_id=ids[1], name="Customer 1", credit_limit=Decimal("500")),
        ),
        (
            "Scalars",
            Scalars(
                text="hello",
                count=42,
                ratio=0.25,
                flag=True,
                ident=ids[0],
                amount=Decimal("19.99"),
                at=dt.datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=dt.UTC),
                day=dt.date(2026, 11, 26),
                clock=dt.time(12, 0, 1),
                duration=dt.timedelta(hours=1, microseconds=5),
                channel=Channel.WEB,
                note=None,
            ),
        ),
    ]


def check_same(old: types.ModuleType, new: types.ModuleType, events: list[tuple[str, Any]]) -> None:
    """Both implementations store the same payload and read it back to the same event."""
    for label, event in events:
        old_json = json.dumps(old.to_json_dict(event))
        new_json = json.dumps(new.to_json_dict(event))
        if old_json != new_json:
            raise SystemExit(f"{label}: payloads differ:\nold {old_json}\nnew {new_json}")
        payload = json.loads(new_json)
        cls = type(event)
        if not (old.from_json_dict(cls, payload) == new.from_json_dict(cls, payload) == event):
            raise SystemExit(f"{label}: the payload does not decode to the same event")


# -- timing -------------------------------------------------------------------------


def per_call_us(call: Callable[[], Any], number: int) -> float:
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in itertools.repeat(None, number):
            call()
        elapsed = time.perf_counter() - started
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / number * 1e6


def operations(module: types.ModuleType, event: Any) -> dict[str, Callable[[], Any]]:
    to_json_dict, from_json_dict = module.to_json_dict, module.from_json_dict
    cls, payload = type(event), json.loads(json.dumps(to_json_dict(event)))
    return {
        "encode": lambda: to_json_dict(event),
        "decode": lambda: from_json_dict(cls, payload),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import django_cqrs.serialization as new

    old = load_baseline(args.baseline)
    events = sample_events(args.lines)
    check_same(old, new, events)
    impls = {"old": old, "new": new}
    calls = {
        (label, op, name): call
        for label, event in events
        for name, module in impls.items()
        for op, call in operations(module, event).items()
    }
    for call in calls.values():  # warm-up: codecs built, caches filled
        per_call_us(call, max(1, args.number // 10))

    times: dict[tuple[str, str, str], list[float]] = {key: [] for key in calls}
    for index in range(args.rounds):
        order = ("new", "old") if index % 2 == 0 else ("old", "new")
        for label, _ in events:
            for op in ("encode", "decode"):
                for name in order:
                    key = (label, op, name)
                    times[key].append(per_call_us(calls[key], args.number))
        summary = "  ".join(
            f"{op} {sum(times[(lb, op, 'old')][-1] for lb, _ in events):6.2f}"
            f" -> {sum(times[(lb, op, 'new')][-1] for lb, _ in events):6.2f} us"
            for op in ("encode", "decode")
        )
        print(f"round {index + 1:2}/{args.rounds}: all events, old -> new: {summary}", flush=True)

    results = []
    for label, _ in events:
        for op in ("encode", "decode"):
            old_us, new_us = times[(label, op, "old")], times[(label, op, "new")]
            ratios = [n / o for n, o in zip(new_us, old_us, strict=True)]
            results.append(
                {
                    "event": label,
                    "op": op,
                    "old_us": statistics.median(old_us),
                    "old_min": min(old_us),
                    "old_max": max(old_us),
                    "new_us": statistics.median(new_us),
                    "new_min": min(new_us),
                    "new_max": max(new_us),
                    "ratio": statistics.median(new_us) / statistics.median(old_us),
                    "ratio_round_median": statistics.median(ratios),
                    "ratio_round_min": min(ratios),
                    "ratio_round_max": max(ratios),
                }
            )
    return results


# -- output -------------------------------------------------------------------------


def report(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["event"],
            r["op"],
            f"{r['old_us']:.2f} ({r['old_min']:.2f}-{r['old_max']:.2f})",
            f"{r['new_us']:.2f} ({r['new_min']:.2f}-{r['new_max']:.2f})",
            f"{r['ratio']:.2f}x",
            f"{r['ratio_round_median']:.2f}x ({r['ratio_round_min']:.2f}-"
            f"{r['ratio_round_max']:.2f})",
        ]
        for r in results
    ]
    return _common.table(
        [
            "event",
            "operation",
            "old us/call, median (range)",
            "new us/call, median (range)",
            "new/old",
            "per-round new/old, median (range)",
        ],
        rows,
    )


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    baseline = git("rev-parse", "--short", args.baseline)
    current = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--", MODULE_PATH):
        current += " + uncommitted changes"
    info = _common.machine_info()
    print(
        f"old: {MODULE_PATH} at {baseline}; new: the imported django_cqrs.serialization "
        f"({current}); {args.rounds} rounds x {args.number} calls",
        flush=True,
    )
    results = run(args)
    print(
        f"\n== Serialization: per-type codecs vs {baseline} ({info['nproc']} x {info['cpu']}, "
        f"{info['ram']}, Python {info['python']}, Django {info['django']}) =="
    )
    print(report(results))


if __name__ == "__main__":
    main(sys.argv[1:])
