"""What tracing costs: bytes per task record, sampler CPU, and dispatch latency.

Run: ``python benchmarks/tracing_cost.py [--tasks 100000] [--json]``. The µs/task cost of the
probe is in ``benchmarks/overhead.py`` (lanepar trace on vs off vs asyncio peers).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from typing import Any

import anyio

import lanepar as lp
from lanepar.trace.recorder import Recorder
from lanepar.trace.sampler import Sampler


async def read_like(path: str) -> int:
    """A no-op with a realistic argument, so the record carries a realistic args summary."""
    return len(path)


async def short_io() -> None:
    await anyio.sleep(0.002)


def bytes_per_record(n: int) -> dict[str, Any]:
    with lp.LaneExecutor(sample_hz=0) as ex:
        calls = [lp.ToolCall(read_like, f"lib/pkg/module_{i % 977}.py") for i in range(n)]
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        b = ex.run_batch(calls)
        # Count what the recorder keeps, not this one batch's result lists (4 pointers a task).
        del b
        ex.last_result = None
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        sample = ex.snapshot().tasks[-1]
    return {
        "tasks": n,
        "bytes_per_record": held / n,
        "segments_per_record": len(sample.segments),
        "args_summary_example": sample.args_summary,
    }


def sampler_cost(seconds: float, hz: float) -> dict[str, Any]:
    rec = Recorder()
    s = Sampler(rec, lambda: {"query": (0, 0, 16)}, hz=hz)
    s.start()
    time.sleep(seconds)
    s.stop()
    return {
        "hz": hz,
        "seconds": seconds,
        "samples": len(rec.samples),
        "sampler_cpu_pct_of_one_core": 100 * s.cpu_s / seconds,
        "us_per_sample": s.cpu_s / max(1, len(rec.samples)) * 1e6,
    }


def dispatch_latency(n: int) -> dict[str, Any]:
    lanes = {"query": lp.LaneConfig(min_concurrency=1, max_concurrency=16)}
    with lp.LaneExecutor(lanes=lanes) as ex:
        ex.run_batch([lp.ToolCall(short_io, lane="query") for _ in range(50)])  # warm up
        b = ex.run_batch([lp.ToolCall(short_io, lane="query") for _ in range(n)])
    assert b.trace is not None
    s = b.summary()
    return {k: s[k] for k in ("tasks", "dispatch_p50_us", "dispatch_p99_us", "queued_p50_us")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    out = {
        "memory": bytes_per_record(a.tasks),
        "sampler": sampler_cost(5.0, 20.0),
        "dispatch": dispatch_latency(2000),
    }
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    m, s, d = out["memory"], out["sampler"], out["dispatch"]
    print(
        f"record memory: {m['bytes_per_record']:.0f} bytes/record over {m['tasks']} tasks "
        f"({m['segments_per_record']} segments, args {m['args_summary_example']!r}); target <= 300"
    )
    print(
        f"sampler: {s['sampler_cpu_pct_of_one_core']:.2f}% of one core at {s['hz']:.0f} Hz "
        f"({s['us_per_sample']:.0f} µs/sample, {s['samples']} samples); target < 1%"
    )
    print(
        f"dispatch: p50 {d['dispatch_p50_us']:.1f} µs, p99 {d['dispatch_p99_us']:.1f} µs over "
        f"{d['tasks']} tasks (2 ms I/O each, 16 at once); target p99 <= 100 µs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
