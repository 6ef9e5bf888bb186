"""Per-task overhead: 20 000 tasks at concurrency 16, lanepar vs the usual asyncio recipes.

Run: ``python benchmarks/overhead.py [--tasks 20000] [--concurrency 16] [--repeat 5]
[--suspensions 0,1,4,16] [--json]``. Each task awaits ``asyncio.sleep(0)`` as many times as the
column says (0: a no-op), because real tools suspend and tracing pays per step. Every contender
runs ``--repeat`` times in this one process, the contenders interleaved round by round so they
share the machine's noise, and the best time counts (the minimum is the least noisy estimate of
cost on a shared machine). Ratios are against asyncio gather + Semaphore, the recipe most agent
frameworks use. The k=0 column also has sync no-op tools, which a lane runs on the executor's
threads (most agent tools are sync functions), next to ``ThreadPoolExecutor``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio

import lanepar as lp
from lanepar.run import _hotpath
from lanepar.trace import probe as probe_mod

Runner = Callable[[int, int, int], float]  # (tasks, concurrency, suspensions) -> seconds


async def body(k: int) -> None:
    for _ in range(k):
        await asyncio.sleep(0)


def noop_sync() -> None:
    return None


def gather_semaphore(n: int, c: int, k: int) -> float:
    async def main() -> float:
        sem = asyncio.Semaphore(c)

        async def one() -> None:
            async with sem:
                await body(k)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - t0

    return asyncio.run(main())


def taskgroup_semaphore(n: int, c: int, k: int) -> float:
    async def main() -> float:
        sem = asyncio.Semaphore(c)

        async def one() -> None:
            async with sem:
                await body(k)

        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
            for _ in range(n):
                tg.create_task(one())
        return time.perf_counter() - t0

    return asyncio.run(main())


def anyio_limiter(n: int, c: int, k: int) -> float:
    async def main() -> float:
        lim = anyio.CapacityLimiter(c)

        async def one() -> None:
            async with lim:
                await body(k)

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
        return time.perf_counter() - t0

    return asyncio.run(main())


def aiometer_run(n: int, c: int, k: int) -> float:
    import aiometer

    async def main() -> float:
        t0 = time.perf_counter()
        await aiometer.run_all([functools.partial(body, k) for _ in range(n)], max_at_once=c)
        return time.perf_counter() - t0

    return asyncio.run(main())


def thread_pool(n: int, c: int, k: int) -> float:
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(c) as pool:
        for f in [pool.submit(noop_sync) for _ in range(n)]:
            f.result()
    return time.perf_counter() - t0


def _lanes(c: int) -> dict[str, lp.LaneConfig]:
    return {"query": lp.LaneConfig(min_concurrency=1, max_concurrency=c)}


def lanepar_async(trace: bool, python_driver: bool = False) -> Runner:
    """``arun_batch`` of the async bodies; ``python_driver``: traced steps driven by the Python
    step driver rather than the C one (the same state machine: what C saves per step)."""

    def run(n: int, c: int, k: int) -> float:
        if not python_driver:
            return run_it(n, c, k)
        # the Python driver where the probe and the lane's hot path call one
        saved = probe_mod.first_step, probe_mod._Resumed, _hotpath.first_step
        probe_mod.first_step = _hotpath.first_step = probe_mod._first_step
        probe_mod._Resumed = probe_mod._resumed
        try:
            return run_it(n, c, k)
        finally:
            probe_mod.first_step, probe_mod._Resumed, _hotpath.first_step = saved

    def run_it(n: int, c: int, k: int) -> float:
        async def main() -> float:
            async with lp.LaneExecutor(lanes=_lanes(c), trace=trace, sample_hz=20) as ex:
                calls = [lp.ToolCall(body, k, lane="query") for _ in range(n)]
                t0 = time.perf_counter()
                b = await ex.arun_batch(calls)
                elapsed = time.perf_counter() - t0
                assert b.ok and len(b.results) == n
                return elapsed

        return asyncio.run(main())

    return run


def lanepar_sync(trace: bool, sync_tools: bool) -> Runner:
    """``run_batch`` from a plain thread: of the async bodies, or of sync no-op tools, which a
    lane runs on the executor's threads (most agent tools are sync functions) — beside
    ``ThreadPoolExecutor``, what a thread hop and its tracing cost."""

    def run(n: int, c: int, k: int) -> float:
        with lp.LaneExecutor(lanes=_lanes(c), trace=trace, sample_hz=20) as ex:
            if sync_tools:
                calls = [lp.ToolCall(noop_sync, lane="query") for _ in range(n)]
            else:
                calls = [lp.ToolCall(body, k, lane="query") for _ in range(n)]
            t0 = time.perf_counter()
            b = ex.run_batch(calls)
            elapsed = time.perf_counter() - t0
            assert b.ok and len(b.results) == n
            return elapsed

    return run


#: name, runner, whether its tasks can suspend (a thread pool runs sync no-ops only)
CONTENDERS: list[tuple[str, Runner, bool]] = [
    ("asyncio gather+Semaphore", gather_semaphore, True),
    ("lanepar (trace off)", lanepar_async(False), True),
    ("lanepar (trace on)", lanepar_async(True), True),
    ("lanepar (trace on, Python driver)", lanepar_async(True, python_driver=True), True),
    ("lanepar sync run_batch (trace on)", lanepar_sync(True, False), True),
    ("anyio TaskGroup+CapacityLimiter", anyio_limiter, True),
    ("aiometer run_all", aiometer_run, True),
    ("ThreadPoolExecutor", thread_pool, False),
    ("lanepar sync tools (trace off)", lanepar_sync(False, True), False),
    ("lanepar sync tools (trace on)", lanepar_sync(True, True), False),
]
if sys.version_info >= (3, 11):
    CONTENDERS.insert(1, ("asyncio TaskGroup+Semaphore", taskgroup_semaphore, True))


def measure(n: int, c: int, ks: list[int], repeat: int) -> list[dict[str, Any]]:
    best: dict[tuple[str, int], float] = {}
    for _ in range(repeat):  # round-robin: every contender sees each stretch of noise
        for k in ks:
            for name, fn, suspends in CONTENDERS:
                if k and not suspends:
                    continue
                gc.collect()  # every run starts from the same collected heap
                s = fn(n, c, k)
                best[name, k] = min(best.get((name, k), float("inf")), s)
    rows = []
    for name, _fn, _s in CONTENDERS:
        cols = {}
        for k in ks:
            if (name, k) in best:
                us = best[name, k] / n * 1e6
                base = best["asyncio gather+Semaphore", k] / n * 1e6
                cols[str(k)] = {"us_per_task": us, "ratio_vs_gather": us / base}
        rows.append({"name": name, "by_suspensions": cols})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--suspensions", default="0,1,4,16",
                    help="awaits of asyncio.sleep(0) per task, comma-separated")  # fmt: skip
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    ks = [int(x) for x in a.suspensions.split(",")]
    rows = measure(a.tasks, a.concurrency, ks, a.repeat)
    if a.json:
        out = {"tasks": a.tasks, "concurrency": a.concurrency, "driver": probe_mod.DRIVER}
        print(json.dumps({**out, "rows": rows}, indent=2))
        return 0
    print(f"{a.tasks} tasks, concurrency {a.concurrency}, best of {a.repeat}; "
          "µs/task (x gather+Semaphore) by suspensions per task; "
          f"step driver: {probe_mod.DRIVER}")  # fmt: skip
    print(f"{'runner':36}" + "".join(f"{'k=' + str(k):>18}" for k in ks))
    for r in rows:
        cells = []
        for k in ks:
            c = r["by_suspensions"].get(str(k))
            cells.append(f"{c['us_per_task']:8.2f} ({c['ratio_vs_gather']:4.2f}x)" if c else "—")
        print(f"{r['name']:36}" + "".join(f"{x:>18}" for x in cells))
    if len(ks) > 1 and ks[0] == 0:
        print("tracing's cost per suspension step (trace on − trace off, per extra step):")
        on, off = (next(r for r in rows if r["name"] == n)["by_suspensions"]
                   for n in ("lanepar (trace on)", "lanepar (trace off)"))  # fmt: skip
        for k in ks[1:]:
            d = (on[str(k)]["us_per_task"] - off[str(k)]["us_per_task"]
                 - on["0"]["us_per_task"] + off["0"]["us_per_task"]) / k  # fmt: skip
            print(f"  k={k}: {d:+.2f} µs/step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
