"""Adaptive concurrency against a loopback server with a fixed capacity, vs a sweep of fixed limits.

Run: ``python benchmarks/adaptive.py [--tasks 2000] [--rounds 3] [--json]``. The server (its own
process) answers after 20 ms while at most ``capacity`` (8) requests are in service, and 5 ms
later per request beyond that. A lane with ``max_concurrency="auto"`` starts at 1 and finds its
limit from latency alone. Target: ≥ 90% of the best fixed limit's throughput, p99 ≤ 1.5x that
setting's.

The machine's noise is measured, not assumed away: every round runs each fixed limit and the
adaptive lane once (in a rotated order, so no contender always runs first), and each round
compares the adaptive lane with the best fixed limit *of that round*. The spread of the best
fixed limit's throughput over the rounds is the noise floor: a ratio that misses the target by
less than that spread is reported as within noise, not as a pass.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Sequence
from typing import Any

import lanepar as lp
from lanepar.tools.loopback import server_process

SERVER = {"delay_s": 0.02, "capacity": 8, "degrade_s_per_extra": 0.005}
FIXED = (4, 8, 12, 16, 32)


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
        "mean_limit": statistics.mean(limits) if limits else None,
    }


def one_round(host: str, port: int, tasks: int, fixed: Sequence[int], turn: int) -> dict[str, Any]:
    order: list[int | str] = [*fixed, "auto"]
    k = turn % len(order)
    results = {r: measure(host, port, r, tasks) for r in order[k:] + order[:k]}
    rows = [results[n] for n in fixed]
    auto = results["auto"]
    best = max(rows, key=lambda r: r["throughput"])
    return {
        "fixed": rows,
        "auto": auto,
        "best_fixed": best["limit"],
        "throughput_ratio": auto["throughput"] / best["throughput"],
        "p99_ratio": auto["p99_ms"] / best["p99_ms"],
    }


def compare(tasks: int, fixed: Sequence[int] = FIXED, rounds: int = 1) -> dict[str, Any]:
    """``rounds`` interleaved rounds; the top-level figures are the median round's."""
    with server_process(**SERVER) as (host, port):
        per_round = [one_round(host, port, tasks, fixed, i) for i in range(rounds)]
    ranked = sorted(per_round, key=lambda r: r["throughput_ratio"])
    median = ranked[len(ranked) // 2]
    # Noise: how much the same fixed limit's throughput moves between rounds (the best one's).
    best = median["best_fixed"]
    same = [next(r["throughput"] for r in rd["fixed"] if r["limit"] == best) for rd in per_round]
    noise = (max(same) - min(same)) / statistics.median(same) if len(same) > 1 else None
    return {**median, "server": SERVER, "tasks": tasks, "rounds": per_round, "noise": noise}


def verdict(ratio: float, p99: float, noise: float | None) -> str:
    if ratio >= 0.9 and p99 <= 1.5:
        return "meets target"
    if noise is not None and ratio >= 0.9 - noise and p99 <= 1.5 * (1 + noise):
        return f"misses target by less than the noise ({noise:.0%})"
    return "MISSES target"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    r = compare(a.tasks, rounds=a.rounds)
    r["loadavg"] = [load0, os.getloadavg()[0]]
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    load = r["loadavg"]
    print(f"server: {SERVER}; {a.tasks} fetches per run; {a.rounds} interleaved rounds; "
          f"{os.cpu_count()} cores, load average {load[0]:.1f} → {load[1]:.1f}")  # fmt: skip
    for i, rd in enumerate(r["rounds"], 1):
        cells = "  ".join(f"{x['limit']}: {x['throughput']:.0f}/{x['p99_ms']:.0f}"
                          for x in [*rd["fixed"], rd["auto"]])  # fmt: skip
        print(f"round {i} (req/s / p99 ms)  {cells}")
        au = rd["auto"]
        print(f"  auto vs best fixed ({rd['best_fixed']}): throughput "
              f"{rd['throughput_ratio']:.0%}, p99 {rd['p99_ratio']:.2f}x; mean limit "
              f"{au['mean_limit'] or 0:.1f}, final {au['final_limit']}, "
              f"{au['limit_changes']} changes; "
              f"{verdict(rd['throughput_ratio'], rd['p99_ratio'], r['noise'])}")  # fmt: skip
    noise = r["noise"]
    print(f"noise floor: fixed limit {r['best_fixed']} moved "
          f"{'n/a' if noise is None else f'{noise:.0%}'} between rounds")  # fmt: skip
    print(f"median round: throughput {r['throughput_ratio']:.0%}, p99 {r['p99_ratio']:.2f}x — "
          f"{verdict(r['throughput_ratio'], r['p99_ratio'], noise)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
