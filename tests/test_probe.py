"""The probe tells the truth about real bodies on the real clocks: CPU, wait, queued, dispatch.

Each tool measures itself (thread CPU and wall time around its own body) and returns that as
ground truth. The probe's window holds the tool's window, so every comparison is an inequality
with a margin that this very run measures, never a fixed tolerance that a busy machine breaks:

- ``slack``: how much longer the probe's window was than the tool's (``rec.wall - true wall``).
  CPU the probe sees outside the tool's window fits in that slack.
- ``eps``: the misplacement of reading two clocks one after the other, four times the slowest
  pair of reads measured below (each of the two windows has two boundaries).

The arithmetic itself (segments, merging, steps) is exact on a fake clock in
``test_probe_model.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

import lanepar as lp
from lanepar.trace.probe import FRESH_NS

MS = 1_000_000


def burn(seconds: float) -> None:
    """Spin on this thread's CPU clock, so the burn is CPU time even on a busy machine."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def clock_read_eps() -> int:
    """Four times the slowest (wall, thread CPU) pair of reads of 2000, in this run."""
    worst = 0
    for _ in range(2000):
        t0 = time.perf_counter_ns()
        time.thread_time_ns()
        worst = max(worst, time.perf_counter_ns() - t0)
    return 4 * worst


def thread_tool() -> tuple[int, int, int]:
    """Returns its own ground truth: (CPU ns, CPU ns of the whole body, wall ns)."""
    c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
    burn(0.05)
    time.sleep(0.05)
    c1 = time.thread_time_ns()
    return c1 - c0, c1 - c0, time.perf_counter_ns() - t0


async def async_tool() -> tuple[int, int, int]:
    c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
    burn(0.03)
    c1 = time.thread_time_ns()
    await anyio.sleep(0.07)
    c2 = time.thread_time_ns()
    burn(0.02)
    c3 = time.thread_time_ns()
    # While we sleep the loop thread runs its own machinery: that CPU is not the body's (the
    # probe draws it as wait), so the truth is a range: the body's own CPU .. the thread's.
    return (c1 - c0) + (c3 - c2), c3 - c0, time.perf_counter_ns() - t0


def phased_tool() -> list[tuple[int, int]]:
    marks = []
    with lp.phase("load"):
        t0 = time.perf_counter_ns()
        time.sleep(0.02)
        marks.append((t0, time.perf_counter_ns()))
    with lp.phase("crunch"):
        t0 = time.perf_counter_ns()
        burn(0.02)
        marks.append((t0, time.perf_counter_ns()))
    return marks


def _one(lanes: dict[str, lp.LaneConfig], call: lp.ToolCall) -> tuple[lp.TaskRecord, Any]:
    with lp.LaneExecutor(lanes=lanes) as ex:
        b = ex.run_batch([call])
    assert b.ok, b.errors
    assert b.trace is not None
    return b.trace.tasks[0], b.results[0]


def _assert_truthful(
    rec: lp.TaskRecord, truth: tuple[int, int, int], cpu_ms: int, wait_ms: int, extra: int = 0
) -> None:
    """CPU between the body's own and the thread's CPU plus what fits in the slack; the nominal
    figures as lower bounds: a burn of ``cpu_ms`` is at least that much CPU however busy the
    machine is, and a sleep of ``wait_ms`` is at least that much wall time, of which only the
    thread's CPU beyond the burn (the sleep call's own, measured) can have been CPU."""
    body_cpu, thread_cpu, true_wall = truth
    eps = clock_read_eps()
    slack = rec.wall_ns - true_wall
    assert slack >= -eps, "the probe's window must hold the tool's"
    assert body_cpu - eps <= rec.cpu_ns <= thread_cpu + max(slack, 0) + extra + eps
    assert rec.cpu_ns >= cpu_ms * MS
    # Off the CPU is wait, or (where the lane can tell) waiting for the GIL or for a core.
    off = rec.wait_ns + rec.gil_ns + rec.runq_ns
    assert off >= wait_ms * MS - (thread_cpu - cpu_ms * MS) - extra - eps


def _assert_consistent(rec: lp.TaskRecord) -> None:
    segs = rec.segments
    assert segs[0][1] == rec.submitted_ns and segs[-1][2] == rec.finished_ns
    for (_, _, e1), (_, s2, _) in zip(segs, segs[1:]):
        assert e1 == s2  # contiguous
    assert rec.cpu_ns + rec.wait_ns + rec.gil_ns + rec.runq_ns == rec.wall_ns
    assert rec.queued_ns + rec.dispatch_ns + rec.wall_ns == rec.finished_ns - rec.submitted_ns
    assert rec.submitted_ns <= rec.slot_free_ns <= rec.started_ns <= rec.finished_ns


def test_a_bodys_cpu_clock_is_read_inside_its_wall_clock_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Wall clock first at the start, CPU clock first at the end: the CPU measured can never
    exceed the wall time around it by whatever stretched a clock read (a fault, an interrupt)."""
    from lanepar.trace import _threadprobe
    from lanepar.trace.segments import TaskProbe

    reads: list[str] = []

    def wall() -> int:
        reads.append("wall")
        return time.perf_counter_ns()

    def cpu() -> int:
        reads.append("cpu")
        return time.thread_time_ns()

    monkeypatch.setattr(_threadprobe, "_pc", wall)
    probe = TaskProbe()
    _threadprobe.run_sync_probed(probe, lambda: reads.append("body"), (), {}, cpu)
    assert reads == ["wall", "cpu", "body", "cpu", "wall"]
    assert probe.cpu_ns <= probe.finished_ns - probe.started_ns


def test_thread_lane_cpu_then_sleep() -> None:
    rec, truth = _one({"t": lp.LaneConfig(kind="thread")}, lp.ToolCall(thread_tool, lane="t"))
    _assert_truthful(rec, truth, 50, 50)
    _assert_consistent(rec)


def test_async_lane_steps_are_cpu_and_suspensions_are_wait() -> None:
    rec, truth = _one({"a": lp.LaneConfig()}, lp.ToolCall(async_tool, lane="a"))
    # A step shorter than FRESH_NS is counted as CPU outright; the body has a handful of steps.
    _assert_truthful(rec, truth, 50, 70, extra=8 * FRESH_NS)
    # The sleep between the burns is a suspension: one long piece of wait with the burns on
    # both sides.
    body = [(k, s, e) for k, s, e in rec.segments if k in ("cpu", "wait", "gil", "runq")]
    waits = [(s, e) for k, s, e in body if k == "wait" and e - s >= 35 * MS]
    assert waits, body  # (at least half the sleep in one piece; all of it unless preempted)
    s, e = waits[0]
    # the burns before and after it (drawn as CPU, or as run-queue wait on a busy machine)
    assert any(k != "wait" and e1 <= s for k, _, e1 in body)
    assert any(k != "wait" and s1 >= e for k, s1, _ in body)
    _assert_consistent(rec)


def test_process_lane_measures_in_the_child_on_the_parent_clock() -> None:
    t_before = time.perf_counter_ns()
    rec, truth = _one({"p": lp.LaneConfig(kind="process")}, lp.ToolCall(thread_tool, lane="p"))
    _assert_truthful(rec, truth, 50, 50)
    assert (
        t_before <= rec.submitted_ns <= rec.started_ns <= rec.finished_ns <= time.perf_counter_ns()
    )
    _assert_consistent(rec)


def test_named_phases_show_as_labelled_spans() -> None:
    rec, marks = _one({"t": lp.LaneConfig(kind="thread")}, lp.ToolCall(phased_tool, lane="t"))
    assert [n for n, _, _ in rec.phases] == ["load", "crunch"]
    (_, s1, e1), (_, s2, e2) = rec.phases
    assert rec.started_ns <= s1 <= e1 <= s2 <= e2 <= rec.finished_ns
    # each phase holds what the tool measured inside it, and nothing of the other phase
    (load0, load1), (crunch0, crunch1) = marks
    assert s1 <= load0 <= load1 <= e1 <= crunch0 <= crunch1 <= e2
    assert e1 - s1 >= 20 * MS  # the sleep inside lasted at least that
    # The phase boundaries split the body: the load phase, a sleep, is mostly wait, and the
    # crunch phase, a burn, wanted a core for at least its 20 ms of CPU. On a busy machine the
    # burn is interleaved with GIL and run-queue waits, and the picture merges pieces shorter
    # than its resolution into the kind that dominated, so what counts is time *not* waiting.
    busy_in = {name: 0 for name in ("load", "crunch")}
    for kind, s, e in rec.segments:
        if kind in ("cpu", "gil", "runq"):
            for name, ps, pe in rec.phases:
                busy_in[name] += max(0, min(e, pe) - max(s, ps))
    assert busy_in["crunch"] >= 20 * MS - clock_read_eps()
    assert busy_in["load"] < busy_in["crunch"]


def test_queued_is_the_wait_for_a_slot_and_dispatch_is_overhead() -> None:
    async def nap() -> None:
        await anyio.sleep(0.05)

    with lp.LaneExecutor(lanes={"q": lp.LaneConfig(max_concurrency=1)}) as ex:
        b = ex.run_batch([lp.ToolCall(nap, lane="q") for _ in range(3)])
    assert b.trace is not None
    recs = b.trace.tasks
    assert len({r.submitted_ns for r in recs}) == 1  # one batch, queued in one step
    for prev, rec in zip(recs, recs[1:]):
        # A queued task's slot frees when its predecessor's body has finished, not before
        # (that would be overlap) and not after its own start (that would hide dispatch).
        assert prev.finished_ns <= rec.slot_free_ns <= rec.started_ns
        assert rec.queued_ns >= prev.queued_ns + prev.dispatch_ns + prev.wall_ns
    for rec in recs:
        _assert_consistent(rec)


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
        time.sleep(3600)
        return 1

    me = psutil.Process()
    before = {c.pid for c in me.children(recursive=True)}
    lanes = {"p": lp.LaneConfig(kind="process", max_concurrency=2)}
    with lp.LaneExecutor(lanes=lanes) as ex:
        sleeps = lp.ToolCall(sleeper, lane="p").options(timeout_s=0.5)
        b = ex.run_batch([sleeps, lp.ToolCall(os.getpid, lane="p")])
        ours = [c for c in me.children(recursive=True) if c.pid not in before]
        assert b.results[1] in {c.pid for c in ours}  # the body ran in a new child of ours
        assert b.results[1] != os.getpid()
    assert b.outcomes == ["timeout", "ok"]
    _gone, alive = psutil.wait_procs(ours, timeout=30)
    assert not alive, "process-lane children outlived the executor"


def test_sequential_waits_are_queued_not_dispatch() -> None:
    async def nap() -> None:
        await anyio.sleep(0.02)

    with lp.LaneExecutor() as ex:
        calls = [lp.ToolCall(nap, lane=lane) for lane in ("query", "generate", "query", "control")]
        b = ex.run_batch(calls, mode="sequential")
    assert b.trace is not None
    recs = b.trace.tasks
    for prev, rec in zip(recs, recs[1:]):
        # Waiting for the predecessor is queueing: the slot counts as free only once the task
        # could be handed to it, i.e. after the predecessor ended.
        assert rec.slot_free_ns >= prev.finished_ns
        assert rec.queued_ns >= prev.finished_ns - rec.submitted_ns
    for rec in recs:
        _assert_consistent(rec)


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
