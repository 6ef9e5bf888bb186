"""A narrow thread lane of short sync tools against ``ThreadPoolExecutor``, in one run.

Run: ``python benchmarks/narrow_lane.py [--tools 40] [--ms 1] [--slots 2] [--rounds 15]``.

Every queued job of a narrow lane waits for the slot before it to come free. In a
``ThreadPoolExecutor`` the thread that finished takes the next job itself; in lanepar the event
loop first learns the body ended (the thread's result delivered through the loop's inbox, the
loop woken and given the GIL, the worker task resumed), then settles it and hands the next job
over. This prints what that costs: the batch's wall time for ``--tools`` sync tools that each
block ``--ms`` ms (``time.sleep``: the tool's own time is exact, so what is left is scheduling)
on ``--slots`` slots, lanepar traced and untraced, against ``ThreadPoolExecutor(--slots).map``
of the same function, taking turns round by round; and the traced run's queued-job dispatch.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import time
from typing import Any

import lanepar as lp


def block(ms: float) -> float:
    time.sleep(ms / 1000)
    return ms


def run(tools: int, ms: float, slots: int, rounds: int) -> dict[str, Any]:
    lanes = {"q": lp.LaneConfig(min_concurrency=1, max_concurrency=slots, kind="thread")}
    calls = [lp.ToolCall(block, ms, lane="q") for _ in range(tools)]
    walls: dict[str, list[float]] = {"pool": [], "traced": [], "untraced": []}
    dispatch: list[float] = []
    with (
        concurrent.futures.ThreadPoolExecutor(slots) as pool,
        lp.LaneExecutor(lanes=lanes) as traced,
        lp.LaneExecutor(lanes=lanes, trace=False) as untraced,
    ):
        for ex in (traced, untraced):  # warm: threads started, the thread watch taken
            ex.run_batch(calls[: 2 * slots])
        list(pool.map(block, [ms] * 2 * slots))
        for _ in range(rounds):
            t = time.perf_counter()
            list(pool.map(block, [ms] * tools))
            walls["pool"].append(time.perf_counter() - t)
            for name, ex in (("traced", traced), ("untraced", untraced)):
                t = time.perf_counter()
                b = ex.run_batch(calls)
                walls[name].append(time.perf_counter() - t)
                assert b.ok, b.errors
                for r in b.trace.tasks if b.trace is not None else ():
                    if r.slot_free_ns > r.submitted_ns:  # (queued: every slot was taken)
                        dispatch.append(sum(e - s for k, s, e in r.segments if k == "dispatch"))
    dispatch = [d / 1e3 for d in dispatch]
    out: dict[str, Any] = {"tools": tools, "ms": ms, "slots": slots, "rounds": rounds}
    for name, ws in walls.items():
        out[f"{name}_ms"] = statistics.median(ws) * 1e3
    out["ideal_ms"] = tools * ms / slots
    out["traced_vs_pool"] = out["traced_ms"] / out["pool_ms"]
    out["untraced_vs_pool"] = out["untraced_ms"] / out["pool_ms"]
    out["queued_dispatch_p50_us"] = statistics.median(dispatch) if dispatch else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tools", type=int, default=40)
    ap.add_argument("--ms", type=float, default=1.0)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = run(a.tools, a.ms, a.slots, a.rounds)
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{a.tools} sync tools of {a.ms:g} ms on {a.slots} slots, median of {a.rounds} rounds "
          f"(ideal {r['ideal_ms']:.1f} ms):")  # fmt: skip
    print(f"  ThreadPoolExecutor({a.slots}).map   {r['pool_ms']:7.2f} ms")
    print(f"  lanepar run_batch, traced       {r['traced_ms']:7.2f} ms  "
          f"({r['traced_vs_pool']:.2f}x the pool)")  # fmt: skip
    print(f"  lanepar run_batch, untraced     {r['untraced_ms']:7.2f} ms  "
          f"({r['untraced_vs_pool']:.2f}x the pool)")  # fmt: skip
    print(f"  traced: a queued job's dispatch p50 {r['queued_dispatch_p50_us']:.0f} µs "
          "(its slot free -> its hand-off to a thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
