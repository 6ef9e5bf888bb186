"""A CPU-bound batch on a Dask lane (LocalCluster, 2 worker processes) vs a process lane (2 slots).

Run: ``python benchmarks/dask_lane.py [--tasks 200] [--ms 20] [--noop 500] [--json]``.

Both lanes run in this one process, one after the other, each warmed up first (cluster started,
children spawned) so start-up is not counted. Per lane:

- the CPU batch: ``--tasks`` pure-Python bodies of ``--ms`` ms each (an FNV-1a hash over bytes,
  calibrated here to the requested CPU time), its wall time and its parallel efficiency
  (body CPU / (wall × workers));
- the no-op batch: ``--noop`` empty bodies, giving the overhead per task as wall / tasks at the
  lane's concurrency, and the median dispatch latency (slot free → body start, from the trace).

Dask runs at concurrency 2 (as many tasks in flight as the process lane) and at 16, because a
Dask cluster hides its per-task latency only with many tasks in flight.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import lanepar as lp

WORKERS = 2


def fnv_work(rounds: int) -> int:
    """Pure-Python hashing (FNV-1a over a 4 KiB buffer, ``rounds`` times): holds the GIL."""
    data = bytes(range(256)) * 16
    h = 0xCBF29CE484222325
    for _ in range(rounds):
        for b in data:
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def noop() -> None:
    return None


def calibrate(ms: float) -> int:
    """Rounds of :func:`fnv_work` that take ``ms`` of CPU here (best of three)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.thread_time()
        fnv_work(4)
        best = min(best, (time.thread_time() - t0) / 4)
    return max(1, round(ms / 1000 / best))


def run_lane(cfg: lp.LaneConfig, rounds: int, tasks: int, noops: int) -> dict[str, Any]:
    with lp.LaneExecutor(lanes={"x": cfg}) as ex:
        ex.run_batch([lp.ToolCall(noop, lane="x") for _ in range(cfg.limit_ceiling * 4)])  # warm
        cpu = ex.run_batch([lp.ToolCall(fnv_work, rounds, lane="x") for _ in range(tasks)])
        cpu.raise_first()
        nop = ex.run_batch([lp.ToolCall(noop, lane="x") for _ in range(noops)])
        nop.raise_first()
    assert cpu.trace is not None and nop.trace is not None
    body_cpu = sum(r.cpu_ns for r in cpu.trace.tasks) / 1e9
    body_ms = statistics.median(r.wall_ns for r in cpu.trace.tasks) / 1e6
    return {
        "cpu_wall_s": cpu.wall_s,
        "body_ms": body_ms,
        "efficiency": body_cpu / (cpu.wall_s * WORKERS),
        "noop_us_per_task": nop.wall_s / noops * 1e6,
        "dispatch_us_median": statistics.median(r.dispatch_ns for r in nop.trace.tasks) / 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--ms", type=float, default=20.0)
    ap.add_argument("--noop", type=int, default=500)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rounds = calibrate(a.ms)
    contenders = {
        "process x2": lp.LaneConfig(kind="process", max_concurrency=WORKERS),
        "dask x2": lp.LaneConfig(kind="dask", max_concurrency=WORKERS),
        "dask x16": lp.LaneConfig(kind="dask", max_concurrency=16),
    }
    rows = {name: run_lane(cfg, rounds, a.tasks, a.noop) for name, cfg in contenders.items()}
    ideal = a.tasks * a.ms / 1000 / WORKERS
    if a.json:
        print(json.dumps({"tasks": a.tasks, "ms": a.ms, "ideal_s": ideal, "rows": rows}, indent=2))
        return 0
    print(f"{a.tasks} x {a.ms:g} ms pure-Python CPU on {WORKERS} workers (ideal {ideal:.2f} s); "
          f"{a.noop} no-op tasks for overhead")  # fmt: skip
    head = ("lane", "CPU batch s", "body ms", "efficiency", "no-op µs/task", "dispatch µs")
    print(f"{head[0]:<12}{head[1]:>13}{head[2]:>9}{head[3]:>12}{head[4]:>15}{head[5]:>13}")
    for name, r in rows.items():
        print(f"{name:<12}{r['cpu_wall_s']:>13.2f}{r['body_ms']:>9.1f}{r['efficiency']:>12.0%}"
              f"{r['noop_us_per_task']:>15.0f}{r['dispatch_us_median']:>13.0f}")  # fmt: skip
    d, p = rows["dask x2"], rows["process x2"]
    print(
        f"\nDask costs {d['noop_us_per_task']:.0f} µs a task at 2 in flight "
        f"({rows['dask x16']['noop_us_per_task']:.0f} µs at 16) against "
        f"{p['noop_us_per_task']:.0f} µs for a local process slot. It pays off when a body is "
        "long next to that (tens of ms and up) and needs more cores or memory than this machine "
        "has; on one machine a process lane does the same work with less overhead."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
