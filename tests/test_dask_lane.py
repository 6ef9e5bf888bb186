"""Dask lanes: the same promises as local lanes, with traces that crossed the wire.

One cluster (a scheduler and 2 single-thread workers, each its own process, as ``dask scheduler``
and ``dask worker`` start them) serves the module; every executor connects to it by ``address``.
Nothing of the cluster lives in this process, so the leak checks see only what lanepar and the
test open. The task bodies live at module level so the workers, which get this process's
``sys.path``, import them by reference. The test that kills a worker brings its own cluster, so
the tests run in any order.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed
import pytest
from support import assert_stopped, last_beat, spin, wait_until

import lanepar as lp
from lanepar.backends.dask import DaskLaneError, causal_offset, estimate_offset
from lanepar.backends.dask_worker import clock_probe

pytestmark = [pytest.mark.dask, pytest.mark.timeout(120)]

MS = 1_000_000


# -- bodies (run on the workers) -------------------------------------------------------------------
def square(x: int) -> int:
    return x * x


def fail(msg: str) -> None:
    raise ValueError(msg)


def burn(ms: float) -> float:
    """Spend ``ms`` of this thread's CPU time in pure Python."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
    return ms


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


async def async_square(x: int) -> int:
    import asyncio

    await asyncio.sleep(0.01)
    return x * x


# -- helpers --------------------------------------------------------------------------------------
@contextlib.contextmanager
def subprocess_cluster(tmp: Path, n_workers: int = 2) -> Iterator[str]:
    """A scheduler and ``n_workers`` nanny-supervised workers as child processes; yields the
    scheduler's address once every worker has joined."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
                             "env": env}  # fmt: skip
    sched_file = tmp / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                               "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], **quiet)]  # fmt: skip
    try:
        info: dict[str, Any] = {}

        def written() -> bool:  # the file appears before its contents do
            try:
                info.update(json.loads(sched_file.read_text()))
            except (FileNotFoundError, ValueError):
                return False
            return "address" in info

        assert wait_until(written, 120), "the scheduler did not start"
        address = str(info["address"])
        procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                    "--nthreads", "1", "--no-dashboard", "--memory-limit", "0"],
                                   **quiet) for _ in range(n_workers)]  # fmt: skip
        with distributed.Client(address, set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with subprocess_cluster(tmp_path_factory.mktemp("dask")) as address:
        # distributed keeps one IO-loop thread for every client of the process, made here
        # rather than inside the first test that connects
        with distributed.Client(address, set_as_default=False):
            pass
        yield address


def dask_executor(cluster: str, **cfg: Any) -> lp.LaneExecutor:
    lane = lp.LaneConfig(kind="dask", address=cluster, **cfg)
    return lp.LaneExecutor(lanes={"d": lane})


# -- clock conversion (pure) -------------------------------------------------------------------
def test_estimate_offset_picks_the_tightest_round() -> None:
    true = 7_000  # worker clock = parent clock + 7 µs
    rounds = [(0, 300 + true, 1_000), (2_000, 2_010 + true, 2_040), (5_000, 5_500 + true, 6_000)]
    offset, unc, rtt = estimate_offset(rounds)
    assert rtt == 40
    assert abs(offset - true) <= unc == 20
    with pytest.raises(ValueError):
        estimate_offset([])


def test_causal_offset_keeps_tasks_inside_their_window() -> None:
    # Worker ran [1000, 1500] on its clock; the parent sent at 900 and got the reply at 1700.
    assert causal_offset(0, 1_000, 1_500, 900, 1_700) == 0
    assert causal_offset(500, 1_000, 1_500, 900, 1_700) == 100  # would start before sending
    assert causal_offset(-400, 1_000, 1_500, 900, 1_700) == -200  # would end after the reply
    assert causal_offset(50, 1_000, 1_500, 1_200, 1_300) == 50  # impossible window: unchanged


def test_ping_estimate_contains_the_true_offset(cluster: str) -> None:
    """Workers on this host share the monotonic clock, so the true offset is 0: the ping
    estimate must contain it within its stated uncertainty."""
    with distributed.Client(cluster, set_as_default=False) as client:
        rounds: dict[str, list[tuple[int, int, int]]] = {}
        for _ in range(5):
            t0 = time.perf_counter_ns()
            res = client.run(clock_probe)
            t1 = time.perf_counter_ns()
            for w, (wt, _host) in res.items():
                rounds.setdefault(w, []).append((t0, wt, t1))
    assert len(rounds) == 2
    for rs in rounds.values():
        offset, unc, _rtt = estimate_offset(rs)
        assert abs(offset) <= unc


# -- behaviour ------------------------------------------------------------------------------------
def test_results_in_order_errors_isolated_and_limit_exact(cluster: str) -> None:
    calls = [lp.ToolCall(square, i, lane="d") for i in range(12)]
    calls[5] = lp.ToolCall(fail, "five", lane="d")
    calls.append(lp.ToolCall(async_square, 4, lane="d"))
    with dask_executor(cluster, max_concurrency=1) as ex:
        b = ex.run_batch(calls)
    assert [b.results[i] for i in range(12) if i != 5] == [i * i for i in range(12) if i != 5]
    assert b.results[12] == 16
    assert set(b.errors) == {5}
    assert isinstance(b.errors[5], ValueError) and str(b.errors[5]) == "five"
    assert b.outcomes.count("ok") == 12 and b.outcomes[5] == "error"
    assert b.trace is not None
    recs = sorted(b.trace.tasks, key=lambda r: r.started_ns)
    assert len(recs) == 13 and {r.lane for r in recs} == {"d"}
    # Limit 1 on a 2-worker cluster: the converted worker times never overlap.
    for a, c in zip(recs, recs[1:]):
        assert a.finished_ns <= c.started_ns
    assert [r.error for r in recs if r.outcome == "error"] == ["ValueError: five"]


def test_trace_times_in_parent_window_and_cpu_wait_plausible(cluster: str) -> None:
    calls = [lp.ToolCall(burn, 50, lane="d") for _ in range(4)]
    calls += [lp.ToolCall(nap, 0.1, lane="d") for _ in range(2)]
    with dask_executor(cluster, max_concurrency=2) as ex:
        ex.run_batch([lp.ToolCall(square, 1, lane="d")])  # connect before timing anything
        t_before = time.perf_counter_ns()
        b = ex.run_batch(calls)
        t_after = time.perf_counter_ns()
        # A second, longer busy stretch so each worker gets a CPU sample after its first.
        long = ex.run_batch([lp.ToolCall(burn, 400, lane="d") for _ in range(4)])
        t_end = time.perf_counter_ns()
        clock_events = [e for e in ex.snapshot().events if e["type"] == "clock"]
    assert b.ok and long.ok and b.trace is not None and long.trace is not None
    for r in b.trace.tasks:
        assert t_before <= r.submitted_ns <= r.slot_free_ns <= r.started_ns
        assert r.started_ns < r.finished_ns <= t_after
        assert r.cpu_ns + r.wait_ns + r.gil_ns + r.runq_ns == r.wall_ns
        for _kind, s, e in r.segments:
            assert r.submitted_ns <= s <= e <= r.finished_ns
        if r.name == "burn":  # spins until its thread has used 50 ms of CPU
            assert 50 * MS <= r.cpu_ns <= r.wall_ns
        else:  # asleep: a sleeping thread uses (almost) no CPU, and a 100 ms sleep never ends
            # early. (Not "off CPU 100 ms": ``time.sleep`` fixes its deadline and then releases
            # the GIL, waking a waiter, on its own CPU clock: a rehearsal saw 99.98 ms off CPU.)
            assert r.cpu_ns < 10 * MS
            assert r.wall_ns >= 100 * MS
            # mostly as I/O wait: the rest is run-queue wait, the worker thread's schedstat read
            # just outside the body's clock readings, so on a busy machine a preemption between
            # the two reads can move a few ms from wait to runq
            assert r.wait_ns >= 80 * MS
    assert {e["method"] for e in clock_events} == {"shared"}  # same host: one monotonic clock
    assert {e["offset_ns"] for e in clock_events} == {0}
    cpu = [e for e in long.trace.events if e["type"] == "worker_cpu"]
    assert cpu, "no per-worker CPU samples during a 0.8 s busy stretch"
    for ev in cpu:
        assert ev["worker"].startswith("tcp://")
        assert t_after <= ev["t_ns"] <= t_end
        assert 0.0 <= ev["cpu_percent"] <= 150.0  # one busy thread per worker (+ noise)


def test_perfetto_export_includes_dask_tasks(cluster: str, tmp_path: Path) -> None:
    with dask_executor(cluster, max_concurrency=2) as ex:
        b = ex.run_batch([lp.ToolCall(burn, 5, lane="d") for _ in range(4)])
    assert b.trace is not None
    out = tmp_path / "dask.json"
    b.write_perfetto(out)
    doc = json.loads(out.read_text())
    tasks = [e for e in doc["traceEvents"] if e.get("cat") == "task"]
    assert len(tasks) == 4
    assert {e["args"]["lane"] for e in tasks} == {"d"}
    assert all(e["name"] == "burn" and e["dur"] > 4_000 for e in tasks)  # µs: the 5 ms body


def test_timeout_outcome_and_the_remote_body_stops(cluster: str, tmp_path: Path) -> None:
    beats = [tmp_path / f"t{i}" for i in range(2)]
    # The deadline runs from dispatch (a Dask worker sends no start signal), so the bodies must
    # start inside it for the test to see them stopped: CI beside two spinning processes once
    # took over 0.5 s to start one; 3 s is many times a warm worker's start, far below 30 s.
    with dask_executor(cluster, max_concurrency=2, timeout_s=3.0) as ex:
        b = ex.run_batch([lp.ToolCall(spin, str(p), 30.0, lane="d") for p in beats])
        assert b.outcomes == ["timeout", "timeout"]
        assert all(isinstance(e, lp.TaskTimeoutError) for e in b.errors.values())
        assert all(last_beat(p) > 0 for p in beats)  # they did run remotely
        assert_stopped(beats)
        # Both workers are free again: the next batch does not wait for the 30 s bodies.
        again = ex.run_batch([lp.ToolCall(square, 3, lane="d") for _ in range(2)])
    assert again.results == [9, 9]
    assert b.trace is not None
    assert [r.outcome for r in b.trace.tasks] == ["timeout", "timeout"]


def test_cancel_stops_running_and_queued_remote_tasks(cluster: str, tmp_path: Path) -> None:
    beats = [tmp_path / f"c{i}" for i in range(4)]
    with dask_executor(cluster, max_concurrency=4) as ex:
        # Limit 4 on 2 single-thread workers: two run, two wait in Dask's own queue.
        handles = [ex.submit(lp.ToolCall(spin, str(p), 30.0, lane="d")) for p in beats]
        assert wait_until(lambda: sum(last_beat(p) > 0 for p in beats) == 2, 60)
        ex.cancel()
        for h in handles:
            with pytest.raises(lp.TaskCancelledError):
                h.result(timeout=10)
        running = [p for p in beats if last_beat(p) > 0]
        assert len(running) == 2
        assert_stopped(running)
        assert sum(last_beat(p) > 0 for p in beats) == 2  # the queued two never started
        again = ex.run_batch([lp.ToolCall(square, 2, lane="d") for _ in range(2)])
    assert again.results == [4, 4]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_async_face_on_asyncio_and_clear_error_on_trio(
    cluster: str, anyio_backend: str
) -> None:
    async with dask_executor(cluster, max_concurrency=2) as ex:
        b = await ex.arun_batch([lp.ToolCall(square, i, lane="d") for i in range(4)])
    if anyio_backend == "asyncio":
        assert b.results == [0, 1, 4, 9]
    else:
        assert set(b.errors) == {0, 1, 2, 3}
        err = b.errors[0]
        assert isinstance(err, DaskLaneError)
        assert "asyncio" in str(err) and "trio" in str(err)


def test_unreachable_scheduler_fails_each_task_clearly() -> None:
    import dask

    lane = lp.LaneConfig(kind="dask", address="tcp://127.0.0.1:1", max_concurrency=2)
    fast_fail = dask.config.set({"distributed.comm.timeouts.connect": "1s"})
    with fast_fail, lp.LaneExecutor(lanes={"d": lane}) as ex:
        b = ex.run_batch([lp.ToolCall(square, i, lane="d") for i in range(3)])
    assert b.outcomes == ["error"] * 3
    assert all(isinstance(e, DaskLaneError) for e in b.errors.values())
    assert "tcp://127.0.0.1:1" in str(b.errors[0])


def test_killed_worker_does_not_hang_the_batch(tmp_path: Path) -> None:
    """SIGKILLs a worker (its nanny restarts it), so it brings its own cluster."""
    beats = [tmp_path / f"k{i}" for i in range(6)]
    killed: list[int] = []
    own_cluster = subprocess_cluster(tmp_path)
    with own_cluster as own, distributed.Client(own, set_as_default=False) as client:
        pids = set(client.run(os.getpid).values())

        def killer() -> None:
            if wait_until(lambda: last_beat(beats[0]) > 0, 60):
                pid = int(beats[0].read_text().split()[0])
                assert pid in pids  # a worker process of this cluster, nothing else
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        thread = threading.Thread(target=killer)
        thread.start()
        with dask_executor(own, max_concurrency=2) as ex:
            b = ex.run_batch([lp.ToolCall(spin, str(p), 0.4, lane="d") for p in beats])
        thread.join()
    assert killed, "the body never started"
    assert len(b.outcomes) == 6 and set(b.outcomes) <= {"ok", "error"}
    # Dask reschedules the killed task on a live worker (or gives up with KilledWorker); every
    # other task keeps its result.
    assert b.outcomes[1:] == ["ok"] * 5
    assert all(isinstance(b.results[i], int) and b.results[i] > 0 for i in range(1, 6))
    if b.outcomes[0] == "error":
        assert "Killed" in type(b.errors[0]).__name__ or "died" in str(b.errors[0])
