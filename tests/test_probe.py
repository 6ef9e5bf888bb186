"""The probe tells the truth: CPU, wait, queued and dispatch, within stated tolerances."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

import lanepar as lp

MS = 1_000_000


def burn(seconds: float) -> None:
    """Spin on this thread's CPU clock, so the burn is CPU time even on a busy machine."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def thread_tool() -> tuple[int, int]:
    """Returns its own ground truth: (CPU ns, wall ns) measured around the body."""
    c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
    burn(0.05)
    time.sleep(0.05)
    return time.thread_time_ns() - c0, time.perf_counter_ns() - t0


async def async_tool() -> tuple[int, int]:
    c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
    burn(0.03)
    c1 = time.thread_time_ns()
    await anyio.sleep(0.07)
    c2 = time.thread_time_ns()
    burn(0.02)
    # the loop runs other things while we sleep: that CPU is not ours
    return (c1 - c0) + (time.thread_time_ns() - c2), time.perf_counter_ns() - t0


def process_tool() -> tuple[int, int]:
    c0, t0 = time.process_time_ns(), time.perf_counter_ns()
    burn(0.05)
    time.sleep(0.05)
    return time.process_time_ns() - c0, time.perf_counter_ns() - t0


def phased_tool() -> None:
    with lp.phase("load"):
        time.sleep(0.02)
    with lp.phase("crunch"):
        burn(0.02)


def _one(lanes: dict[str, lp.LaneConfig], call: lp.ToolCall) -> tuple[lp.TaskRecord, Any]:
    with lp.LaneExecutor(lanes=lanes) as ex:
        b = ex.run_batch([call])
    assert b.ok, b.errors
    assert b.trace is not None
    return b.trace.tasks[0], b.results[0]


def _assert_truthful(rec: lp.TaskRecord, truth: Any, cpu_ms: float, wait_ms: float) -> None:
    """Against the tool's own measurement (exact on a busy machine, where preemption turns
    some wall time into waiting), and against the nominal figures with the stated tolerances
    (which hold on an idle machine)."""
    true_cpu, true_wall = truth
    assert rec.cpu_ns == pytest.approx(true_cpu, abs=5 * MS)
    assert rec.wait_ns == pytest.approx(true_wall - true_cpu, abs=7 * MS)
    assert rec.cpu_ns == pytest.approx(cpu_ms * MS, abs=5 * MS)
    if true_wall - true_cpu < (wait_ms + 5) * MS:  # nobody stole our core meanwhile
        assert rec.wait_ns == pytest.approx(wait_ms * MS, abs=7 * MS)


def _assert_consistent(rec: lp.TaskRecord) -> None:
    segs = rec.segments
    assert segs[0][1] == rec.submitted_ns and segs[-1][2] == rec.finished_ns
    for (_, _, e1), (_, s2, _) in zip(segs, segs[1:]):
        assert e1 == s2  # contiguous
    assert rec.cpu_ns + rec.wait_ns == rec.wall_ns
    assert rec.queued_ns + rec.dispatch_ns + rec.wall_ns == rec.finished_ns - rec.submitted_ns


def test_thread_lane_cpu_then_sleep() -> None:
    rec, truth = _one({"t": lp.LaneConfig(kind="thread")}, lp.ToolCall(thread_tool, lane="t"))
    _assert_truthful(rec, truth, 50, 50)
    _assert_consistent(rec)


def test_async_lane_steps_are_cpu_and_suspensions_are_wait() -> None:
    rec, truth = _one({"a": lp.LaneConfig()}, lp.ToolCall(async_tool, lane="a"))
    _assert_truthful(rec, truth, 50, 70)
    # preemption by other processes shows as short waits inside a step: look at the long pieces
    kinds = [k for k, s, e in rec.segments if k in ("cpu", "wait") and e - s > 5 * MS]
    assert kinds[:3] == ["cpu", "wait", "cpu"]
    _assert_consistent(rec)


def test_process_lane_measures_in_the_child_on_the_parent_clock() -> None:
    t_before = time.perf_counter_ns()
    rec, truth = _one({"p": lp.LaneConfig(kind="process")}, lp.ToolCall(process_tool, lane="p"))
    _assert_truthful(rec, truth, 50, 50)
    assert (
        t_before <= rec.submitted_ns <= rec.started_ns <= rec.finished_ns <= time.perf_counter_ns()
    )
    _assert_consistent(rec)


def test_named_phases_show_as_labelled_spans() -> None:
    rec, _ = _one({"t": lp.LaneConfig(kind="thread")}, lp.ToolCall(phased_tool, lane="t"))
    names = [n for n, _, _ in rec.phases]
    assert names == ["load", "crunch"]
    (_, s1, e1), (_, s2, e2) = rec.phases
    assert rec.started_ns <= s1 <= e1 <= s2 <= e2 <= rec.finished_ns
    assert e1 - s1 == pytest.approx(20 * MS, abs=6 * MS)
    # the phase boundaries split the body: the sleep shows as wait, the burn as cpu
    kinds = [k for k, s, e in rec.segments if k in ("cpu", "wait") and e - s > 5 * MS]
    assert kinds[-2:] == ["wait", "cpu"]


def test_queued_is_the_wait_for_a_slot_and_dispatch_is_overhead() -> None:
    async def nap() -> None:
        await anyio.sleep(0.05)

    with lp.LaneExecutor(lanes={"q": lp.LaneConfig(max_concurrency=1)}) as ex:
        b = ex.run_batch([lp.ToolCall(nap, lane="q") for _ in range(3)])
    assert b.trace is not None
    recs = b.trace.tasks
    for i, rec in enumerate(recs):
        assert rec.queued_ns == pytest.approx(i * 50 * MS, abs=10 * MS)
        assert rec.dispatch_ns < 5 * MS
        if i:  # a queued task's slot frees exactly when its predecessor finishes
            assert rec.slot_free_ns >= recs[i - 1].finished_ns
            assert rec.slot_free_ns - recs[i - 1].finished_ns < 5 * MS


def test_recorder_is_a_bounded_ring() -> None:
    async def noop() -> None:
        return None

    with lp.LaneExecutor(max_tasks=50, sample_hz=0) as ex:
        ex.run_batch([lp.ToolCall(noop) for _ in range(120)])
        t = ex.snapshot()
    assert len(t.tasks) == 50
    assert t.dropped == 70
    assert [r.id for r in t.tasks] == list(range(71, 121))


def test_process_lane_cancel_kills_its_child_and_nothing_is_left() -> None:
    def sleeper() -> int:
        time.sleep(30)
        return 1

    me = psutil.Process()
    with lp.LaneExecutor(
        lanes={"p": lp.LaneConfig(kind="process", max_concurrency=2, timeout_s=0.5)}
    ) as ex:
        t0 = time.perf_counter()
        b = ex.run_batch([lp.ToolCall(sleeper, lane="p"), lp.ToolCall(os.getpid, lane="p")])
        assert time.perf_counter() - t0 < 5
        children = me.children(recursive=True)
        assert b.results[1] in {c.pid for c in children}  # the body ran in a child of ours
    assert b.outcomes == ["timeout", "ok"]
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, "process-lane children outlived the executor"


def test_sequential_waits_are_queued_not_dispatch() -> None:
    async def nap() -> None:
        await anyio.sleep(0.02)

    with lp.LaneExecutor() as ex:
        calls = [lp.ToolCall(nap, lane=lane) for lane in ("query", "generate", "query", "control")]
        b = ex.run_batch(calls, mode="sequential")
    assert b.trace is not None
    recs = b.trace.tasks
    for i, rec in enumerate(recs):
        assert rec.dispatch_ns < 5 * MS  # waiting for the predecessor is not scheduler overhead
        if i:
            assert rec.queued_ns >= recs[i - 1].finished_ns - rec.submitted_ns - 1 * MS


def test_a_script_without_a_main_guard_can_use_process_lanes(tmp_path: Path) -> None:
    """multiprocessing's spawn/forkserver re-run ``__main__`` in children; lanepar's don't."""
    import subprocess
    import sys

    script = tmp_path / "agent.py"
    script.write_text(
        "import lanepar as lp\n"
        "def square(x):\n"
        "    return x * x\n"
        "lanes = {'p': lp.LaneConfig(kind='process', max_concurrency=2)}\n"
        "with lp.LaneExecutor(lanes=lanes) as ex:\n"
        "    b = ex.run_batch([lp.ToolCall(square, i, lane='p') for i in range(4)])\n"
        "print(b.results)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 1, 4, 9]"


def test_a_body_the_worker_cannot_load_is_an_error_not_a_dead_worker() -> None:
    class Local:  # defined in a function: pickle cannot find it by name
        def __call__(self) -> int:
            return 1

    with lp.LaneExecutor(lanes={"p": lp.LaneConfig(kind="process")}) as ex:
        b = ex.run_batch([lp.ToolCall(Local(), lane="p"), lp.ToolCall(os.getpid, lane="p")])
    assert b.outcomes[1] == "ok" and b.results[1] != os.getpid()
