"""Dask lanes next to plain Dask and a process lane, on one LocalCluster (2 workers × 1 thread).

Run: ``python benchmarks/dask_lane.py [--tasks 200] [--ms 20] [--noop 500] [--rounds 3] [--json]``.

Every contender runs in this one process, on the same cluster, interleaved round by round (the
machine's load moves between rounds; interleaving gives each contender the same share of it):

- ``process x2``: a lanepar process lane with 2 slots — the noise floor: what two busy processes
  get from this machine right now;
- ``dask xN``: a lanepar Dask lane with N tasks on the cluster at once (N = 2: one per worker;
  N ≥ 4: the next task already waits on the worker when a body ends; N = 256, above the batch
  size: the whole batch goes out at once, as ``Client.map`` sends it, and the lane only fetches);
- ``plain map``: ``Client.map`` + ``gather`` of the whole batch — Dask's own best case;
- ``plain x16``: ``Client.submit`` refilled from ``as_completed`` with 16 in flight — the usual
  way to bound work in flight with plain Dask.

Per contender: the CPU batch (``--tasks`` pure-Python bodies of ``--ms`` ms, an FNV-1a hash
calibrated here) with its parallel efficiency (body CPU / (wall × workers)), and the no-op batch
(``--noop`` empty bodies) with the overhead per task (wall / tasks) and the CPU this process
spent per task meanwhile (client, scheduler and lanepar: less sensitive to the machine's load).
Figures are medians over ``--rounds`` rounds with their min–max, which is this machine's noise.

The cluster is started the way a Dask lane without ``address`` starts its own
(``DEFAULT_CLUSTER_KWARGS`` and ``LOCAL_SCHEDULER_CONFIG``), so plain Dask gets the same settings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import dask

import lanepar as lp
from lanepar.backends.dask import DEFAULT_CLUSTER_KWARGS, LOCAL_SCHEDULER_CONFIG

WORKERS = 2
#: Partly untyped: used loosely, as lanepar's own Dask backend does.
distributed: Any = importlib.import_module("distributed")


def fnv_work(rounds: int) -> int:
    """Pure-Python hashing (FNV-1a over a 4 KiB buffer, ``rounds`` times): holds the GIL."""
    data = bytes(range(256)) * 16
    h = 0xCBF29CE484222325
    for _ in range(rounds):
        for b in data:
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def timed_fnv(rounds: int) -> float:
    """:func:`fnv_work` reporting its own thread CPU (plain Dask has no trace to read it from)."""
    t0 = time.thread_time()
    fnv_work(rounds)
    return time.thread_time() - t0


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


Row = dict[str, float]


def row(cpu_wall: float, body_cpu: float, nop_wall: float, nop_cpu: float, noops: int) -> Row:
    return {
        "cpu_wall_s": cpu_wall,
        "efficiency": body_cpu / (cpu_wall * WORKERS),
        "noop_us": nop_wall / noops * 1e6,
        "noop_cpu_us": nop_cpu / noops * 1e6,
    }


def lanepar_runner(ex: lp.LaneExecutor) -> Callable[[int, int, int], Row]:
    def run(rounds: int, tasks: int, noops: int) -> Row:
        cpu = ex.run_batch([lp.ToolCall(fnv_work, rounds, lane="x") for _ in range(tasks)])
        cpu.raise_first()
        p0 = time.process_time()
        nop = ex.run_batch([lp.ToolCall(noop, lane="x") for _ in range(noops)])
        p1 = time.process_time()
        nop.raise_first()
        assert cpu.trace is not None
        body_cpu = sum(r.cpu_ns for r in cpu.trace.tasks) / 1e9
        return row(cpu.wall_s, body_cpu, nop.wall_s, p1 - p0, noops)

    return run


def plain_runner(client: Any, inflight: int | None) -> Callable[[int, int, int], Row]:
    def batch(fn: Callable[..., Any], args: list[Any]) -> tuple[float, list[Any]]:
        t0 = time.perf_counter()
        if inflight is None:
            out = client.gather(client.map(fn, args, pure=False))
        else:
            it = iter(args)
            seq = distributed.as_completed(
                [client.submit(fn, a, pure=False) for a, _ in zip(it, range(inflight))],
                loop=client.loop,
            )
            out = []
            for fut in seq:
                out.append(fut.result())
                for a in it:  # refill one: keeps ``inflight`` on the cluster
                    seq.add(client.submit(fn, a, pure=False))
                    break
        return time.perf_counter() - t0, out

    def run(rounds: int, tasks: int, noops: int) -> Row:
        wall, cpus = batch(timed_fnv, [rounds] * tasks)
        p0 = time.process_time()
        nop_wall, _ = batch(lambda _: None, list(range(noops)))
        p1 = time.process_time()
        return row(wall, sum(cpus), nop_wall, p1 - p0, noops)

    return run


def summarize(samples: list[Row]) -> dict[str, list[float]]:
    """Per metric: [median, min, max] over the rounds."""
    return {
        k: [statistics.median(v), min(v), max(v)]
        for k in samples[0]
        for v in [[s[k] for s in samples]]
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--ms", type=float, default=20.0)
    ap.add_argument("--noop", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rounds = calibrate(a.ms)
    load0 = os.getloadavg()[0]
    with dask.config.set(LOCAL_SCHEDULER_CONFIG):
        cluster = distributed.LocalCluster(**DEFAULT_CLUSTER_KWARGS)
    client = distributed.Client(cluster.scheduler_address, set_as_default=False)
    lanes = {
        "process x2": lp.LaneConfig(kind="process", max_concurrency=WORKERS),
        **{
            f"dask x{n}": lp.LaneConfig(
                kind="dask", max_concurrency=n, address=cluster.scheduler_address
            )
            for n in (2, 4, 16, 64, 256)
        },
    }
    executors = {name: lp.LaneExecutor(lanes={"x": cfg}) for name, cfg in lanes.items()}
    runners: dict[str, Callable[[int, int, int], Row]] = {}
    try:
        for name, ex in executors.items():
            ex.__enter__()
            ex.run_batch([lp.ToolCall(noop, lane="x") for _ in range(32)])  # start, connect
            # A lane learns its tools' lengths (a Dask lane packs short ones): it has seen the
            # CPU tool once before it is timed, as an agent's lane has seen its tools.
            ex.run_batch([lp.ToolCall(fnv_work, rounds, lane="x") for _ in range(4)])
            runners[name] = lanepar_runner(ex)
        client.gather(client.map(lambda _: None, range(32), pure=False))
        runners["plain map"] = plain_runner(client, None)
        runners["plain x16"] = plain_runner(client, 16)
        samples: dict[str, list[Row]] = {name: [] for name in runners}
        for _ in range(a.rounds):
            for name, run in runners.items():
                samples[name].append(run(rounds, a.tasks, a.noop))
    finally:
        for ex in executors.values():
            ex.__exit__(None, None, None)
        client.close()
        cluster.close()
    rows = {name: summarize(s) for name, s in samples.items()}
    load1 = os.getloadavg()[0]
    ideal = a.tasks * a.ms / 1000 / WORKERS
    if a.json:
        print(json.dumps({"tasks": a.tasks, "ms": a.ms, "ideal_s": ideal, "rounds": a.rounds,
                          "loadavg": [load0, load1], "cpus": os.cpu_count(), "rows": rows},
                         indent=2))  # fmt: skip
        return 0
    print(f"{a.tasks} x {a.ms:g} ms pure-Python CPU on {WORKERS} Dask workers (ideal "
          f"{ideal:.2f} s); {a.noop} no-op tasks; median [min–max] of {a.rounds} interleaved "
          f"rounds; {os.cpu_count()} cores, load average {load0:.1f} → {load1:.1f}")  # fmt: skip
    print(f"{'contender':<12}{'CPU batch s':>20}{'efficiency':>20}{'no-op µs/task':>24}"
          f"{'parent CPU µs/task':>22}")  # fmt: skip
    for name, r in rows.items():
        w, e, n, c = r["cpu_wall_s"], r["efficiency"], r["noop_us"], r["noop_cpu_us"]
        print(f"{name:<12}{w[0]:>8.2f} [{w[1]:.2f}–{w[2]:.2f}]"
              f"{e[0]:>9.0%} [{e[1]:.0%}–{e[2]:.0%}]{n[0]:>10.0f} [{n[1]:.0f}–{n[2]:.0f}]"
              f"{c[0]:>10.0f} [{c[1]:.0f}–{c[2]:.0f}]")  # fmt: skip
    floor = rows["process x2"]["efficiency"][0]
    best = min(rows, key=lambda k: rows[k]["noop_us"][0] if k.startswith("dask") else 1e18)
    print(f"\nNoise floor: two busy processes got {floor:.0%} of two cores this run (process x2); "
          f"Dask lane efficiency relative to it: "
          + ", ".join(f"{k} {rows[k]['efficiency'][0] / floor:.0%}" for k in rows
                      if k.startswith("dask")))  # fmt: skip
    plain = rows["plain map"]["noop_us"][0], rows["plain x16"]["noop_us"][0]
    print(f"Lowest Dask lane overhead: {best} at {rows[best]['noop_us'][0]:.0f} µs/task, against "
          f"{plain[0]:.0f} µs for plain Client.map and {plain[1]:.0f} µs for plain submit with "
          "16 in flight.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
