"""Where did the time go: GIL / lock wait and run-queue wait told apart from I/O (issue 12).

Run: ``python benchmarks/gil_truth.py [--reps 5] [--json]``. Prints, on calibrated bodies:

(a) three thread-lane tools burning 300 ms of pure-Python CPU at once: ``gil`` as a share of
    wall − cpu (target ≥ 80 %; also shown net of the run-queue wait other processes caused) and
    ``wait`` as a share of wall (target ≤ 10 %);
(b) a 200 ms sleep and a 200 ms loopback-socket wait beside two GIL-hungry tools: ``wait``
    (target 200 ms ± 10 %; the socket's truth is how long the asker sat in recv);
(c) a process-lane tool burning 300 ms among more CPU hogs than cores: ``runq`` as a share of
    wall − cpu (target ≥ 70 %);
(d) an async step burning 100 ms beside two GIL-hungry threads: its ``gil`` share;
(e) the loop-blocking detector on an async tool calling ``time.sleep(0.12)``;
(f) a thread-lane tool blocked 200 ms on another thread's ``threading.Lock``: ``lock_ns``, the
    part of its GIL / lock wait that was not the GIL;
and what the sampling helper costs: its CPU per second sampled (target ≤ 2 % of one core) and the
wall time of a mixed thread-lane batch with the split on vs off (target ≤ 5 %).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import anyio

import lanepar as lp
from lanepar.trace import threadstate
from lanepar.trace.loopwatch import LoopWatch
from lanepar.trace.probe import TaskProbe
from lanepar.trace.watched import stepped_watched

MS = 1e6


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def burn_process(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def nap(seconds: float) -> None:
    time.sleep(seconds)


def ask(port: int) -> float:
    """How long this thread sat in ``recv`` (s): from just before it (GIL held) to the server's
    send, on the monotonic clock both processes share. The server's hold time would also count
    this thread's GIL wait between ``sendall`` and ``recv``, which is rightly GIL."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"x")
        t_recv = time.perf_counter()
        return float(s.recv(64).decode()) - t_recv


def mixed() -> None:
    burn(0.01)
    time.sleep(0.02)
    burn(0.005)


_SERVER = r"""
import socket, sys, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
print(srv.getsockname()[1], flush=True)
while True:
    c, _ = srv.accept()
    c.recv(1); time.sleep(0.2)
    c.sendall(repr(time.perf_counter()).encode()); c.close()
"""


def _batch(calls: list[lp.ToolCall], lanes: dict[str, lp.LaneConfig]) -> lp.BatchResult:
    with lp.LaneExecutor(lanes=lanes, sample_hz=0) as ex:
        b = ex.run_batch(calls)
    assert b.ok, b.errors
    return b


def _row(rec: lp.TaskRecord) -> dict[str, float]:
    return {
        "wall_ms": rec.wall_ns / MS,
        "cpu_ms": rec.cpu_ns / MS,
        "gil_ms": rec.gil_ns / MS,
        "runq_ms": rec.runq_ns / MS,
        "wait_ms": rec.wait_ns / MS,
        "dispatch_us": rec.dispatch_ns / 1e3,
    }


def case_a() -> list[dict[str, float]]:
    b = _batch(
        [lp.ToolCall(burn, 0.3, lane="t") for _ in range(3)],
        {"t": lp.LaneConfig(kind="thread", max_concurrency=3)},
    )
    assert b.trace is not None
    out = []
    for rec in b.trace.tasks:
        row = _row(rec)
        off = rec.wall_ns - rec.cpu_ns
        row["gil_share"] = rec.gil_ns / off if off else 0.0
        row["gil_share_net_of_runq"] = rec.gil_ns / (off - rec.runq_ns) if off > rec.runq_ns else 1
        row["wait_share_of_wall"] = rec.wait_ns / rec.wall_ns
        out.append(row)
    return out


def case_b() -> dict[str, dict[str, float]]:
    with subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout is not None
            port = int(p.stdout.readline())
            calls = [
                lp.ToolCall(burn, 0.4, lane="t"),
                lp.ToolCall(burn, 0.4, lane="t"),
                lp.ToolCall(nap, 0.2, lane="t"),
                lp.ToolCall(ask, port, lane="t"),
            ]
            b = _batch(calls, {"t": lp.LaneConfig(kind="thread", max_concurrency=4)})
        finally:
            p.kill()
    assert b.trace is not None
    sleep, sock = b.trace.tasks[2], b.trace.tasks[3]
    return {
        "sleep": {**_row(sleep), "truth_ms": 200.0},
        "socket": {**_row(sock), "truth_ms": b.results[3] * 1e3},
    }


def case_c() -> dict[str, float]:
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range((os.cpu_count() or 1) + 1)
    ]
    try:
        b = _batch([lp.ToolCall(burn_process, 0.3, lane="p")], {"p": lp.LaneConfig(kind="process")})
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert b.trace is not None
    rec = b.trace.tasks[0]
    return {**_row(rec), "runq_share": rec.runq_ns / max(1, rec.wall_ns - rec.cpu_ns)}


def case_d() -> dict[str, float]:
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            burn(0.01)

    async def crunch() -> None:
        burn(0.1)

    watch = threadstate.ThreadWatch()
    hogs = [threading.Thread(target=hog) for _ in range(2)]
    for h in hogs:
        h.start()
    probe = TaskProbe()

    async def main() -> None:
        await stepped_watched(crunch(), probe, states=watch)

    try:
        anyio.run(main)
    finally:
        stop.set()
        for h in hogs:
            h.join()
        watch.close()
    wall = probe.finished_ns - probe.started_ns
    return {
        "wall_ms": wall / MS,
        "cpu_ms": probe.cpu_ns / MS,
        "gil_ms": probe.gil_ns / MS,
        "runq_ms": probe.runq_ns / MS,
        "wait_ms": probe.wait_ns / MS,
        "gil_share": probe.gil_ns / max(1, wall - probe.cpu_ns),
    }


def case_f() -> dict[str, float]:
    """A thread tool blocked 200 ms on a ``threading.Lock`` another thread holds: all of it
    ``gil`` (GIL / lock wait), and within that ``lock_ns`` — the lock is not the GIL."""
    lock, held = threading.Lock(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            time.sleep(0.2)

    def waits() -> float:
        held.wait(10)
        t0 = time.perf_counter()
        with lock:
            return time.perf_counter() - t0

    h = threading.Thread(target=holder)
    h.start()
    try:
        b = _batch([lp.ToolCall(waits, lane="t")], {"t": lp.LaneConfig(kind="thread")})
    finally:
        h.join()
    assert b.trace is not None
    rec = b.trace.tasks[0]
    return {**_row(rec), "lock_ms": rec.lock_ns / 1e6, "truth_ms": b.results[0] * 1e3}


def case_e() -> dict[str, Any]:
    def sleepy_helper() -> None:
        time.sleep(0.12)

    held: list[float] = []

    async def blocking_tool() -> None:
        await anyio.sleep(0)
        t0 = time.perf_counter()
        sleepy_helper()
        held.append((time.perf_counter() - t0) * 1e3)

    events: list[dict[str, Any]] = []
    blocks = LoopWatch(50_000_000, events.append)

    async def main() -> None:
        await stepped_watched(blocking_tool(), TaskProbe(), blocks=blocks, tool="blocking_tool")

    try:
        anyio.run(main)
    finally:
        blocks.close()
    return {
        "events": len(events),
        "tool_saw_ms": held[0] if held else 0.0,
        **(events[0] if events else {}),
    }


def cost(reps: int, keep_helper: bool) -> dict[str, Any]:
    """Wall time of a mixed batch with the split on and off (alternating, medians), and the
    helper's CPU over the runs that had it on. ``keep_helper``: one helper serves every batch,
    as in a long-lived executor or kernel; else each executor starts its own."""
    calls = [lp.ToolCall(mixed, lane="t") for _ in range(24)]
    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=6)}
    walls: dict[str, list[float]] = {"on": [], "off": []}
    cpu = ticks = startup = 0
    period = 0
    seen: list[threadstate.ThreadWatch] = []

    def grab() -> None:
        w = threadstate.current()
        if w is not None:
            seen.append(w)

    held = threadstate.acquire() if keep_helper else None
    for i in range(2 * reps):
        mode = "on" if i % 2 == 0 else "off"
        os.environ["LANEPAR_THREADSTATE"] = "1" if mode == "on" else "0"
        t0 = time.perf_counter()
        _batch([*calls, lp.ToolCall(grab, lane="t")], lanes)
        walls[mode].append(time.perf_counter() - t0)
    os.environ.pop("LANEPAR_THREADSTATE", None)
    if held is not None:
        threadstate.release(held)
    sampled = 0
    for w in {id(w): w for w in seen}.values():
        if w.stats:
            cpu += w.stats["sampling_cpu_ns"]
            sampled += w.stats["sampled_ns"]
            ticks += w.stats["ticks"]
            startup += w.stats["startup_cpu_ns"]
            period = w.stats["period_ns"]
    on, off = statistics.median(walls["on"]), statistics.median(walls["off"])
    sampled_s = sampled / 1e9
    return {
        "batch_wall_on_s": on,
        "batch_wall_off_s": off,
        "wall_cost_pct": 100 * (on / off - 1),
        "helper_hz_at_end": 1e9 / period if period else 0,
        "helper_ticks_per_s": ticks / sampled_s if sampled_s else 0,
        "helper_sampling_pct_of_core": 100 * cpu / 1e9 / sampled_s if sampled_s else 0,
        "helper_startup_cpu_ms": startup / MS / max(1, len({id(w) for w in seen})),
        "helper_max_gap_ms": max((w.stats or {}).get("max_gap_ns", 0) for w in seen) / MS,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    w = threadstate.ThreadWatch()
    result: dict[str, Any] = {"status": w.reason or "ok"}
    w.close()
    result["a_three_gil_hungry"] = case_a()
    result["b_waits_beside_gil_hogs"] = case_b()
    result["c_process_among_hogs"] = case_c()
    result["d_async_step_beside_gil_hogs"] = case_d()
    result["e_loop_blocked"] = case_e()
    result["f_other_lock"] = case_f()
    result["cost"] = cost(args.reps, keep_helper=True)
    result["cost_helper_per_executor"] = cost(args.reps, keep_helper=False)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"thread states: {result['status']}")
    print(
        "(a) three 300 ms pure-Python burners on a thread lane (targets: gil ≥ 80 %, wait ≤ 10 %)"
    )
    for r in result["a_three_gil_hungry"]:
        print(
            f"    wall {r['wall_ms']:6.0f} ms  cpu {r['cpu_ms']:4.0f}  gil {r['gil_ms']:4.0f}  "
            f"runq {r['runq_ms']:4.0f}  wait {r['wait_ms']:3.0f}   gil/(wall-cpu) "
            f"{r['gil_share']:.0%} (net of runq {r['gil_share_net_of_runq']:.0%})  "
            f"wait/wall {r['wait_share_of_wall']:.1%}  dispatch {r['dispatch_us']:.0f} µs"
        )
    print("(b) waits beside two GIL-hungry tools (target: wait = truth ± 10 %)")
    for name, r in result["b_waits_beside_gil_hogs"].items():
        print(
            f"    {name:6s} wait {r['wait_ms']:5.1f} ms vs truth {r['truth_ms']:5.1f}  "
            f"(gil {r['gil_ms']:.1f}, runq {r['runq_ms']:.1f}, wall {r['wall_ms']:.0f})"
        )
    r = result["c_process_among_hogs"]
    print(
        f"(c) process lane among {(os.cpu_count() or 1) + 1} hogs: wall {r['wall_ms']:.0f} ms "
        f"cpu {r['cpu_ms']:.0f} runq {r['runq_ms']:.0f} wait {r['wait_ms']:.0f}  "
        f"runq/(wall-cpu) {r['runq_share']:.0%} (target ≥ 70 %)"
    )
    r = result["d_async_step_beside_gil_hogs"]
    print(
        f"(d) async 100 ms step beside 2 GIL hogs: wall {r['wall_ms']:.0f} cpu {r['cpu_ms']:.0f} "
        f"gil {r['gil_ms']:.0f} runq {r['runq_ms']:.0f} wait {r['wait_ms']:.0f}  "
        f"gil/(wall-cpu) {r['gil_share']:.0%}"
    )
    r = result["e_loop_blocked"]
    print(
        f"(e) loop blocked by time.sleep(0.12): {r['events']} event(s), "
        f"{r.get('duration_ms', 0):.1f} ms (the tool's own clock: {r['tool_saw_ms']:.1f} ms), "
        f"innermost frame: {(r.get('stack') or ['-'])[-1]}"
    )
    r = result["f_other_lock"]
    print(
        f"(f) a 200 ms wait on another thread's threading.Lock: gil {r['gil_ms']:.1f} ms, of "
        f"which another lock {r['lock_ms']:.1f} ms vs truth {r['truth_ms']:.1f} ms "
        f"(wait {r['wait_ms']:.1f}, runq {r['runq_ms']:.1f})"
    )
    for key, label in (("cost", "one helper for all batches"), ("cost_helper_per_executor",
                       "a helper per executor")):  # fmt: skip
        c = result[key]
        print(
            f"cost ({label}): helper at {c['helper_ticks_per_s']:.0f} Hz uses "
            f"{c['helper_sampling_pct_of_core']:.2f} % of one core while sampling (target ≤ 2 %; "
            f"longest gap {c['helper_max_gap_ms']:.0f} ms), "
            f"{c['helper_startup_cpu_ms']:.0f} ms CPU to start; mixed batch wall "
            f"{c['batch_wall_on_s'] * 1e3:.0f} ms on vs {c['batch_wall_off_s'] * 1e3:.0f} ms off "
            f"= {c['wall_cost_pct']:+.1f} % (target ≤ 5 %)"
        )


if __name__ == "__main__":
    main()
