"""Per-batch cost: what one batch costs beyond its tools, next to the nearest asyncio equivalents.

Run: ``python benchmarks/batch_cost.py [--reps 400] [--rounds 5] [--json]``.

- one no-op task: a traced sync ``run_batch`` (a thread waits for the executor's loop), the same
  batch on ``arun_batch`` (no thread crossing), and ``loop.run_in_executor`` round trips (the
  cheapest crossing asyncio itself offers: one hop to a thread and back);
- sixteen 30 ms sleeps: a traced sync ``run_batch`` against asyncio gather + Semaphore(16);
- a fan-out of sixteen sync tools started at once (each notes its first instruction, then blocks
  10 ms so all sixteen overlap): how long after the batch began each tool's first instruction
  ran, on ``arun_batch`` against ``gather`` of ``loop.run_in_executor`` on a warm 16-thread pool
  — both hand sixteen bodies to threads from one loop, one after the other.

Every contender runs in this one process, interleaved round by round so they share the machine's
noise; medians of each round, then the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import lanepar as lp

LANES = {"query": lp.LaneConfig(min_concurrency=1, max_concurrency=16)}


async def noop() -> None:
    return None


async def sleep30() -> None:
    await asyncio.sleep(0.03)


def _median_us(fn: Callable[[], object], reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        ts.append(time.perf_counter_ns() - t0)
    return statistics.median(ts) / 1e3


class AsyncSide:
    """A loop in a thread of its own running an async executor, driven round by round."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ex = lp.LaneExecutor(lanes=LANES)
        self._stop = asyncio.Event()
        entered = threading.Event()

        async def hold() -> None:  # entered and left in one task, as anyio requires
            async with self.ex:
                entered.set()
                await self._stop.wait()

        self._held = asyncio.run_coroutine_threadsafe(hold(), self.loop)
        entered.wait(60)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._held.result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()

    async def arun_us(self, reps: int) -> float:
        calls = [lp.ToolCall(noop, lane="query")]
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            await self.ex.arun_batch(calls)
            ts.append(time.perf_counter_ns() - t0)
        return statistics.median(ts) / 1e3

    async def executor_roundtrip_us(self, reps: int) -> float:
        loop = asyncio.get_running_loop()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            await loop.run_in_executor(None, int)
            ts.append(time.perf_counter_ns() - t0)
        return statistics.median(ts) / 1e3


#: What :func:`fanout_start_us` returns, in order.
FANOUT_KEYS = ("fanout_p50_us", "fanout_last_us", "executor_fanout_p50_us",
               "executor_fanout_last_us", "fanout_dispatch_p50_us")  # fmt: skip


def first_instruction(out: list[int]) -> None:
    """A sync tool: when its body began, then 10 ms blocked (so a fan-out's bodies overlap)."""
    out.append(time.perf_counter_ns())
    time.sleep(0.01)


async def fanout_start_us(side: AsyncSide, pool: concurrent.futures.Executor) -> tuple[float, ...]:
    """(lanepar p50, lanepar last, run_in_executor p50, run_in_executor last) µs from the
    batch's start to a body's first instruction, sixteen sync bodies at once; then lanepar's
    own dispatch p50 from its trace (slot free -> hand-off: the loop's own work per start)."""
    loop = asyncio.get_running_loop()
    starts: list[int] = []
    calls = [lp.ToolCall(first_instruction, starts, lane="query") for _ in range(16)]
    t0 = time.perf_counter_ns()
    b = await side.ex.arun_batch(calls)
    lp_us = [(t - t0) / 1e3 for t in starts]
    starts.clear()
    t0 = time.perf_counter_ns()
    await asyncio.gather(*(loop.run_in_executor(pool, first_instruction, starts)
                           for _ in range(16)))  # fmt: skip
    ex_us = [(t - t0) / 1e3 for t in starts]
    return (statistics.median(lp_us), max(lp_us), statistics.median(ex_us), max(ex_us),
            b.summary()["dispatch_p50_us"])


async def gather16(n: int = 16) -> float:
    sem = asyncio.Semaphore(16)

    async def one() -> None:
        async with sem:
            await sleep30()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=400, help="one-task batches per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sleep-reps", type=int, default=10, help="16 x 30 ms batches per round")
    ap.add_argument("--fan-reps", type=int, default=40, help="16-tool fan-outs per round")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rounds: dict[str, list[float]] = {k: [] for k in (
        "run_batch_1_us", "arun_batch_1_us", "run_in_executor_us",
        "run_batch_16x30ms_ms", "gather_16x30ms_ms", *FANOUT_KEYS)}  # fmt: skip
    pool = concurrent.futures.ThreadPoolExecutor(16)
    side = AsyncSide()
    one = [lp.ToolCall(noop, lane="query")]
    sixteen = [lp.ToolCall(sleep30, lane="query") for _ in range(16)]
    with lp.LaneExecutor(lanes=LANES) as ex:
        for _ in range(50):  # warm: workers exist, caches are full
            ex.run_batch(one)
            side.call(side.ex.arun_batch(one))
        for _ in range(20):  # both pools: sixteen threads made and parked
            side.call(fanout_start_us(side, pool))
        for _ in range(a.rounds):
            rounds["run_batch_1_us"].append(_median_us(lambda: ex.run_batch(one), a.reps))
            rounds["arun_batch_1_us"].append(side.call(side.arun_us(a.reps)))
            rounds["run_in_executor_us"].append(side.call(side.executor_roundtrip_us(a.reps)))
            lp_ms, g_ms = [], []
            for _ in range(a.sleep_reps):
                lp_ms.append(ex.run_batch(sixteen).wall_s * 1e3)
                g_ms.append(side.call(gather16()) * 1e3)
            rounds["run_batch_16x30ms_ms"].append(statistics.median(lp_ms))
            rounds["gather_16x30ms_ms"].append(statistics.median(g_ms))
            fan = [side.call(fanout_start_us(side, pool)) for _ in range(a.fan_reps)]
            for i, k in enumerate(FANOUT_KEYS):
                rounds[k].append(statistics.median(f[i] for f in fan))
    side.close()
    pool.shutdown()
    out: dict[str, Any] = {k: statistics.median(v) for k, v in rounds.items()}
    out["rounds"] = rounds
    out["sleep_ratio"] = out["run_batch_16x30ms_ms"] / out["gather_16x30ms_ms"]
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"one no-op task, median of {a.reps} x {a.rounds} rounds (round medians in brackets):")
    for k, label in (("run_batch_1_us", "lanepar run_batch (sync, traced)"),
                     ("arun_batch_1_us", "lanepar arun_batch (traced)"),
                     ("run_in_executor_us", "loop.run_in_executor round trip")):  # fmt: skip
        r = " ".join(f"{x:.0f}" for x in rounds[k])
        print(f"  {label:34} {out[k]:7.1f} µs  [{r}]")
    print("sixteen 30 ms sleeps, 16 at once:")
    print(f"  lanepar run_batch (sync, traced)   {out['run_batch_16x30ms_ms']:7.2f} ms")
    print(f"  asyncio gather+Semaphore           {out['gather_16x30ms_ms']:7.2f} ms")
    print(f"  ratio {out['sleep_ratio']:.3f} (target <= 1.03)")
    print("sixteen sync tools at once: batch start -> a body's first instruction, p50 / last:")
    print(f"  lanepar arun_batch (traced)        {out['fanout_p50_us']:7.1f} / "
          f"{out['fanout_last_us']:.1f} µs")
    print(f"  gather of run_in_executor          {out['executor_fanout_p50_us']:7.1f} / "
          f"{out['executor_fanout_last_us']:.1f} µs")
    print(f"  lanepar's own dispatch p50 in that fan-out (its trace): "
          f"{out['fanout_dispatch_p50_us']:.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
