"""Load generator of bench/http.py, run in its own process: threads over http.client.

    python bench/_http_load.py < spec.json   -> one JSON line on stdout

Spec: host, port, method, paths (cycled), bodies (cycled, JSON strings or null),
headers, expect (status), concurrency, duration (seconds), max_requests, warmup
(requests per thread, not measured). Each thread keeps one connection (gunicorn's sync
workers close it after every response; http.client then reconnects). Only 127.0.0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds http.py: keep it from shadowing the standard library's http package.
_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != _BENCH]

import http.client  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402


def run(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["host"] not in ("127.0.0.1", "localhost"):
        raise SystemExit("the load generator only talks to 127.0.0.1")
    lock = threading.Lock()
    counter = itertools.count()
    paths, bodies = spec["paths"], spec.get("bodies") or [None]
    latencies: list[float] = []
    errors: list[str] = []
    concurrency = int(spec["concurrency"])
    max_requests = int(spec.get("max_requests") or 10**9) + int(spec.get("warmup", 0)) * concurrency
    start_barrier = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker() -> None:
        conn = http.client.HTTPConnection(spec["host"], spec["port"], timeout=30)
        own: list[float] = []

        def once(i: int) -> float:
            body = bodies[i % len(bodies)]
            started = time.perf_counter()
            conn.request(
                spec["method"],
                paths[i % len(paths)],
                body=body.encode() if body is not None else None,
                headers=spec.get("headers") or {},
            )
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - started
            if response.status != spec["expect"]:
                with lock:
                    errors.append(f"{response.status}: {data[:300]!r}")
            if response.getheader("connection", "").lower() == "close":
                conn.close()
            return elapsed

        for _ in range(int(spec.get("warmup", 0))):
            once(next(counter))
        start_barrier.wait()
        while True:
            i = next(counter)
            if i >= max_requests or time.perf_counter() > deadline[0]:
                break
            own.append(once(i))
        conn.close()
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + 10**9
    start_barrier.wait()
    started = time.perf_counter()
    deadline[0] = started + float(spec["duration"])
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": pct(0.50) * 1000,
        "p95_ms": pct(0.95) * 1000,
        "errors": len(errors),
        "first_errors": errors[:3],
        **({"latencies_ms": [x * 1000 for x in latencies]} if spec.get("raw") else {}),
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.stdin.read()))))
