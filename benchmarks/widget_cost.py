"""Kernel-side cost of feeding the live dashboard during a 10 000-task batch (budget: ≤ 5 %).

Run: ``python benchmarks/widget_cost.py [--tasks 10000] [--repeat 3] [--json]``.

The same batch runs with and without a ``Dashboard`` subscribed, in this process. The dashboard
is a real widget object; its comm's ``publish_msg`` is replaced by a function that does what
ipykernel does with a message before it reaches the socket (JSON-encode the content, keep the
buffers), so packing, traitlet syncs and serialisation are all paid. Two numbers per workload:

- ``cost %``: CPU time spent inside the dashboard (its subscriber callback on the recorder's
  ticker thread, plus ``finish()`` given the summary the magic computes anyway) over the batch's
  wall time — the kernel-side cost the budget bounds; while the dashboard holds the GIL the
  batch's loop thread waits, so this is also what it steals.
- ``wall Δ %``: the median wall time difference with/without the dashboard — noisier on a shared
  machine, printed as a cross-check.
- ``spread``: how much the batch's own wall time moved between repeats without a dashboard (the
  machine's noise, which moves the percentage's denominator), and ``µs/task``: the dashboard's
  CPU per task, which the machine's load moves much less.

Workloads: ``io-1ms`` (async tools that sleep 1 ms, 64 at a time: an agent's reads and fetches)
and ``cpu-0.2ms`` (thread tools with 0.2 ms of Python work). ``noop`` (async tools that return at
once, ~10 µs each) is the adversarial floor: every task costs the dashboard about as much as the
executor spends on it, so its percentage is printed for information, not held to the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import lanepar as lp
from lanepar.analysis.summary import summarize
from lanepar.jupyter.dashboard import Dashboard

BUDGET = 0.05


async def io_1ms(i: int) -> int:
    await asyncio.sleep(0.001)
    return i


def cpu_200us(i: int) -> int:
    end = time.thread_time() + 0.0002
    while time.thread_time() < end:
        pass
    return i


async def noop(i: int) -> int:
    return i


WORKLOADS: dict[str, tuple[Callable[[int], Any], str, bool]] = {
    # name: (tool, lane, held to the budget)
    "io-1ms": (io_1ms, "query", True),
    "cpu-0.2ms": (cpu_200us, "execute", True),
    "noop": (noop, "query", False),
}


def capture_comm(d: Dashboard) -> dict[str, int]:
    """Route the widget's comm messages through JSON encoding into counters."""
    stats = {"messages": 0, "json_bytes": 0, "buffer_bytes": 0}

    def publish_msg(
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        stats["messages"] += 1
        stats["json_bytes"] += len(json.dumps({"data": data, "metadata": metadata, **keys}))
        stats["buffer_bytes"] += sum(len(memoryview(b).cast("B")) for b in buffers or ())

    d.comm.publish_msg = publish_msg
    return stats


def one_run(ex: lp.LaneExecutor, name: str, n: int, live: bool) -> dict[str, Any]:
    fn, lane, _ = WORKLOADS[name]
    calls = [lp.ToolCall(fn, i, lane=lane) for i in range(n)]
    d = Dashboard(ex) if live else None
    comm = capture_comm(d) if d is not None else {}
    t = time.perf_counter()
    batch = ex.run_batch(calls)
    wall = time.perf_counter() - t
    assert batch.trace is not None
    # the exact summary is the magic's (it shows one with or without a dashboard): not a cost
    # of feeding the dashboard, so it is computed outside the timed part on both sides
    summary = summarize(batch.trace)
    if d is not None:
        t = time.perf_counter()
        d.finish(batch.trace, summary=summary)
        wall += time.perf_counter() - t
    cost = d.cost_ns / 1e9 if d is not None else 0.0
    if d is not None:
        d.close()
    assert batch.ok, batch.errors
    return {"wall_s": wall, "cost_s": cost, **comm}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    lanes = {
        "query": lp.LaneConfig(max_concurrency=64),
        "execute": lp.LaneConfig(max_concurrency=4, kind="thread"),
    }
    rows = []
    load0 = os.getloadavg()[0]
    with lp.LaneExecutor(lanes=lanes) as ex:
        for name in WORKLOADS:
            one_run(ex, name, 500, live=True)  # warm-up: imports, thread pools, widget class
            base, live = [], []
            for _ in range(a.repeat):  # interleaved so drift hits both sides alike
                base.append(one_run(ex, name, a.tasks, live=False))
                live.append(one_run(ex, name, a.tasks, live=True))
            wall0 = statistics.median(r["wall_s"] for r in base)
            wall1 = statistics.median(r["wall_s"] for r in live)
            costs = [r["cost_s"] / r["wall_s"] for r in live]
            cost = max(costs)
            cost_us = statistics.median(r["cost_s"] for r in live) / a.tasks * 1e6
            walls0 = [r["wall_s"] for r in base]
            rows.append(
                {
                    "workload": name,
                    "tasks": a.tasks,
                    "wall_s": wall0,
                    "wall_live_s": wall1,
                    "wall_delta": (wall1 - wall0) / wall0,
                    "cost": cost,
                    "cost_median": statistics.median(costs),
                    "cost_us_per_task": cost_us,
                    "wall_spread": (max(walls0) - min(walls0)) / wall0,
                    "messages": statistics.median(r["messages"] for r in live),
                    "kib_sent": statistics.median(
                        (r["json_bytes"] + r["buffer_bytes"]) / 1024 for r in live
                    ),
                    "budgeted": WORKLOADS[name][2],
                    "ok": cost <= BUDGET or not WORKLOADS[name][2],
                }
            )
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        load1 = os.getloadavg()[0]
        print(f"{a.repeat} interleaved repeats; cost = the worst repeat (median in brackets); "
              f"{os.cpu_count()} cores, load average {load0:.1f} → {load1:.1f}")  # fmt: skip
        print(
            f"{'workload':<10} {'tasks':>6} {'wall':>8} {'spread':>7} {'wall+dash':>9} "
            f"{'wall Δ':>7} {'cost':>15} {'µs/task':>8} {'msgs':>5} {'KiB':>7}  "
            f"budget ≤ {BUDGET:.0%}"
        )
        for r in rows:
            verdict = ("ok" if r["ok"] else "OVER") if r["budgeted"] else "(info)"
            print(
                f"{r['workload']:<10} {r['tasks']:>6} {r['wall_s']:>7.3f}s {r['wall_spread']:>7.0%}"
                f" {r['wall_live_s']:>8.3f}s {r['wall_delta']:>+7.1%}"
                f" {r['cost']:>6.1%} [{r['cost_median']:>5.1%}] {r['cost_us_per_task']:>8.2f}"
                f" {r['messages']:>5.0f} {r['kib_sent']:>7.0f}  {verdict}"
            )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
