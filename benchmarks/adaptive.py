"""Adaptive concurrency against a loopback server with a fixed capacity, vs a sweep of fixed limits.

Run: ``python benchmarks/adaptive.py [--tasks 2000] [--json]``. The server (its own process)
answers after 20 ms while at most ``capacity`` (8) requests are in service, and 5 ms later per
request beyond that. A lane with ``max_concurrency="auto"`` starts at 1 and finds its limit from
latency alone. Target: ≥ 90% of the best fixed limit's throughput, p99 ≤ 1.5x that setting's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import lanepar as lp
from lanepar.tools.loopback import server_process

SERVER = {"delay_s": 0.02, "capacity": 8, "degrade_s_per_extra": 0.005}


def measure(host: str, port: int, limit: int | str, tasks: int) -> dict[str, Any]:
    lanes = {"query": lp.LaneConfig(min_concurrency=1, max_concurrency=limit, ceiling=64)}  # type: ignore[arg-type]
    with lp.LaneExecutor(lanes=lanes) as ex:
        b = ex.run_batch([lp.ToolCall("fetch", host, port) for _ in range(tasks)])
    assert b.trace is not None
    lat = sorted(t.wall_ns for t in b.trace.tasks)
    limits = [e["limit"] for e in b.trace.events if e["type"] == "limit"]
    return {
        "limit": limit,
        "throughput": tasks / b.wall_s,
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] / 1e6,
        "errors": len(b.errors),
        "limit_changes": len(limits),
        "final_limit": limits[-1] if limits else None,
    }


def compare(tasks: int, fixed: Sequence[int] = (2, 4, 8, 12, 16, 32)) -> dict[str, Any]:
    with server_process(**SERVER) as (host, port):
        rows = [measure(host, port, n, tasks) for n in fixed]
        auto = measure(host, port, "auto", tasks)
    best = max(rows, key=lambda r: r["throughput"])
    return {
        "server": SERVER,
        "tasks": tasks,
        "fixed": rows,
        "auto": auto,
        "best_fixed": best["limit"],
        "throughput_ratio": auto["throughput"] / best["throughput"],
        "p99_ratio": auto["p99_ms"] / best["p99_ms"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = compare(a.tasks)
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"server: {SERVER}; {a.tasks} fetches per run")
    print(f"{'limit':>6} {'req/s':>8} {'p99 ms':>8} {'errors':>7}")
    for row in [*r["fixed"], r["auto"]]:
        print(f"{row['limit']!s:>6} {row['throughput']:>8.0f} {row['p99_ms']:>8.1f} "
              f"{row['errors']:>7}")  # fmt: skip
    print(
        f"auto vs best fixed ({r['best_fixed']}): throughput {r['throughput_ratio']:.0%}, "
        f"p99 {r['p99_ratio']:.2f}x; final limit {r['auto']['final_limit']}, "
        f"{r['auto']['limit_changes']} changes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
