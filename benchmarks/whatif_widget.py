"""How long one move of a what-if slider takes: replay + prediction + replayed timeline (SVG).

Issue 16 asks for ≤ 100 ms per update on a 1,000-task trace, so that dragging a slider feels
live. The trace is synthetic but shaped like an agent batch: two lanes (8 async slots, 4 thread
slots), each task 0.1–3 ms of CPU and 0–10 ms of waiting, everything submitted at once. Each
limit of the ``query`` lane from 1 to 64 is one update, as a drag across the slider would be.

    PYTHONPATH=. python benchmarks/whatif_widget.py [--tasks 1000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import lanepar as lp
from lanepar.trace.model import KIND_CODE


def agent_trace(n: int, seed: int = 1) -> lp.Trace:
    rnd = random.Random(seed)
    t0 = 10**9
    ends: dict[tuple[str, int], int] = {}
    tasks = []
    for i in range(n):
        lane = "query" if i % 3 else "execute"
        slot = i % (8 if lane == "query" else 4)
        free = max(t0, ends.get((lane, slot), t0))
        start = free + 20_000
        cpu, wait = rnd.randint(100_000, 3_000_000), rnd.randint(0, 10_000_000)
        fin = start + cpu + wait
        ends[(lane, slot)] = fin
        segs = [(KIND_CODE["queued"], t0, free), (KIND_CODE["dispatch"], free, start),
                (KIND_CODE["cpu"], start, start + cpu), (KIND_CODE["wait"], start + cpu, fin)]
        tasks.append(lp.TaskRecord(
            id=i + 1, lane=lane, name=f"tool{i % 5}", args_summary="", outcome="ok",
            submitted_ns=t0, slot_free_ns=free, started_ns=start, finished_ns=fin, cpu_ns=cpu,
            wait_ns=wait, slot=slot, segments=segs,
        ))  # fmt: skip
    lanes = {
        "query": {"kind": "async", "max_concurrency": 8, "min_concurrency": 1, "priority": 1},
        "execute": {"kind": "thread", "max_concurrency": 4, "min_concurrency": 1, "priority": 2},
    }
    return lp.Trace(tasks, lanes=lanes, n_cores=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1000)
    a = ap.parse_args()
    trace = agent_trace(a.tasks)
    w = lp.whatif_widget(trace)
    times = []
    for limit in range(1, 65):
        t = time.perf_counter()
        w.sliders["query"].value = limit  # what a drag does: the observer replays and redraws
        times.append((time.perf_counter() - t) * 1000)
    for cores in (1, 2, 4, 8):
        t = time.perf_counter()
        w.cores.value = cores
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"what-if widget, {a.tasks}-task trace, {len(times)} slider moves")
    print(f"  per update: median {statistics.median(times):.1f} ms, "
          f"p90 {times[int(0.9 * (len(times) - 1))]:.1f} ms, max {times[-1]:.1f} ms "
          f"(target: <= 100 ms)")  # fmt: skip
    print(f"  SVG of the last update: {len(w.picture.value) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
