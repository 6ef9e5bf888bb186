"""A burst of greps at once: regex workers bounded to one per core, against one per search.

Run: ``python benchmarks/grep_burst.py [--greps 12] [--rounds 5] [--json]``.

``grep`` runs its regex in a worker process (a deadline can kill it). When more searches run at
once than workers sit idle, the unbounded alternative starts an interpreter per search (~20 ms
of CPU each, on cores the searches already use); lanepar's grep runs at most one worker per core
and a search waits for a free one. Every round starts from one idle worker (what a sequential
run leaves) and runs the same ``--greps`` demo searches over the standard library: one by one,
all at once with the bound, and all at once with the bound lifted, interleaved so the three share
the machine's noise. Medians over rounds; the trace's speedup estimate is shown beside the
measured one (sequential wall / parallel wall).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
from typing import Any

import lanepar as lp
from lanepar.tools import grepper
from lanepar.tools.workload import default_root, demo_calls


def _calls(n: int) -> list[lp.ToolCall]:
    calls = [c for c in demo_calls(default_root(), n=6 * n) if str(c.target) == "grep"]
    return calls[:n]


def _bound(n: int) -> None:
    grepper._busy = threading.BoundedSemaphore(n)


def run(greps: int, rounds: int) -> dict[str, Any]:
    calls = _calls(greps)
    walls: dict[str, list[float]] = {"sequential": [], "bounded": [], "unbounded": []}
    estimates: dict[str, list[float]] = {"bounded": [], "unbounded": []}
    lanes = {"query": lp.LaneConfig(min_concurrency=1, max_concurrency=max(16, greps))}
    try:
        with lp.LaneExecutor(lanes) as ex:
            ex.run_batch(calls[:1])  # warm-up: imports, the pool
            for _ in range(rounds):
                for name in walls:
                    grepper.close_workers()
                    _bound(grepper._MAX_BUSY if name != "unbounded" else 10_000)
                    ex.run_batch(calls[:1])  # one idle worker, as a sequential run leaves
                    mode = "sequential" if name == "sequential" else "parallel"
                    b = ex.run_batch(calls, mode=mode)
                    walls[name].append(b.wall_s)
                    if name in estimates:
                        estimates[name].append(b.summary()["speedup"])
    finally:
        _bound(grepper._MAX_BUSY)
        grepper.close_workers()
    seq = statistics.median(walls["sequential"])
    rows = []
    for name, w in walls.items():
        wall = statistics.median(w)
        rows.append({
            "contender": name,
            "wall_ms": round(wall * 1e3, 1),
            "measured_speedup": round(seq / wall, 2),
            "trace_speedup": round(statistics.median(estimates[name]), 2) if name in estimates
            else None,
        })  # fmt: skip
    return {"greps": len(calls), "rounds": rounds, "max_busy": grepper._MAX_BUSY, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--greps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = run(a.greps, a.rounds)
    if a.json:
        print(json.dumps(r, indent=2))
        return
    print(f"{r['greps']} greps over the standard library, median of {r['rounds']} rounds; "
          f"bounded = at most {r['max_busy']} regex workers (one per core)")  # fmt: skip
    print(f"{'contender':<12} {'wall ms':>9} {'measured speedup':>17} {'trace speedup':>14}")
    for row in r["rows"]:
        est = "" if row["trace_speedup"] is None else f"{row['trace_speedup']:.2f}×"
        print(f"{row['contender']:<12} {row['wall_ms']:>9.1f} {row['measured_speedup']:>16.2f}×"
              f" {est:>14}")  # fmt: skip


if __name__ == "__main__":
    main()
