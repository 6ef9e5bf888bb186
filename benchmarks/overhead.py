"""Per-task overhead: 20 000 no-op tasks at concurrency 16, lanepar vs the usual asyncio recipes.

Run: ``python benchmarks/overhead.py [--tasks 20000] [--concurrency 16] [--repeat 5] [--json]``.
Each contender runs ``--repeat`` times in this one process and the best time counts (the minimum
is the least noisy estimate of cost on a shared machine). Ratios are against asyncio
gather + Semaphore, the recipe most agent frameworks use.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import sys
import time
from collections.abc import Awaitable, Callable

import anyio

import lanepar as lp


async def noop() -> None:
    return None


def noop_sync() -> None:
    return None


async def gather_semaphore(n: int, c: int) -> None:
    sem = asyncio.Semaphore(c)

    async def one() -> None:
        async with sem:
            await noop()

    await asyncio.gather(*(one() for _ in range(n)))


async def taskgroup_semaphore(n: int, c: int) -> None:
    sem = asyncio.Semaphore(c)

    async def one() -> None:
        async with sem:
            await noop()

    async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
        for _ in range(n):
            tg.create_task(one())


async def anyio_limiter(n: int, c: int) -> None:
    lim = anyio.CapacityLimiter(c)

    async def one() -> None:
        async with lim:
            await noop()

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)


async def aiometer_run(n: int, c: int) -> None:
    import aiometer

    await aiometer.run_all([noop for _ in range(n)], max_at_once=c)


async def thread_pool(n: int, c: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(c) as pool:
        for f in [pool.submit(noop_sync) for _ in range(n)]:
            f.result()


def lanepar_runner(trace: bool) -> Callable[[int, int], Awaitable[None]]:
    async def run(n: int, c: int) -> None:
        lanes = {"query": lp.LaneConfig(min_concurrency=1, max_concurrency=c)}
        async with lp.LaneExecutor(lanes=lanes, trace=trace, sample_hz=20) as ex:
            calls = [lp.ToolCall(noop, lane="query") for _ in range(n)]
            t0 = time.perf_counter()
            b = await ex.arun_batch(calls)
            run.elapsed = time.perf_counter() - t0  # type: ignore[attr-defined]
            assert b.ok and len(b.results) == n

    return run


def measure(fn: Callable[[int, int], Awaitable[None]], n: int, c: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        asyncio.run(fn(n, c))
        elapsed = getattr(fn, "elapsed", None) or (time.perf_counter() - t0)
        best = min(best, elapsed)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    contenders: list[tuple[str, Callable[[int, int], Awaitable[None]]]] = [
        ("asyncio gather+Semaphore", gather_semaphore),
        ("lanepar (trace off)", lanepar_runner(False)),
        ("lanepar (trace on)", lanepar_runner(True)),
        ("anyio TaskGroup+CapacityLimiter", anyio_limiter),
        ("aiometer run_all", aiometer_run),
        ("ThreadPoolExecutor", thread_pool),
    ]
    if sys.version_info >= (3, 11):
        contenders.insert(1, ("asyncio TaskGroup+Semaphore", taskgroup_semaphore))
    rows = []
    for name, fn in contenders:
        s = measure(fn, a.tasks, a.concurrency, a.repeat)
        rows.append({"name": name, "us_per_task": s / a.tasks * 1e6, "total_s": s})
    base = rows[0]["us_per_task"]
    for r in rows:
        r["ratio_vs_gather"] = r["us_per_task"] / base
    if a.json:
        print(json.dumps({"tasks": a.tasks, "concurrency": a.concurrency, "rows": rows}, indent=2))
        return 0
    print(f"{a.tasks} no-op tasks, concurrency {a.concurrency}, best of {a.repeat}")
    print(f"{'runner':34} {'µs/task':>9} {'x gather':>9}")
    for r in rows:
        print(f"{r['name']:34} {r['us_per_task']:9.2f} {r['ratio_vs_gather']:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
