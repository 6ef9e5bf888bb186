"""What a tool tells the trace of its own waits (``lanepar.trace.notes``) lands where it belongs.

An async tool that hands work to a thread (``bash``'s system calls) notes, as it resumes, how much
of that wait was the thread's and the loop's wait for the GIL. The step driver counts the wait a
step ended only with that step, so a note is kept on the probe and applied as the task settles:
moved out of the wait total (never more than there is) and drawn in its window.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

import lanepar as lp
from lanepar.trace.model import KIND_CODE
from lanepar.trace.notes import note_core_wait, note_gil_wait
from lanepar.trace.segments import TaskProbe

CPU, WAIT, GIL, RUNQ = (KIND_CODE[k] for k in ("cpu", "wait", "gil", "runq"))
MS = 1_000_000

pieces = st.lists(st.tuples(st.booleans(), st.integers(1, 5 * MS), st.floats(0, 1)),
                  min_size=1, max_size=40)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    body=pieces,
    notes=st.lists(st.tuples(st.sampled_from([GIL, RUNQ]), st.integers(0, 20 * MS),
                             st.floats(0, 1), st.floats(0, 1)), max_size=4),
    resolution=st.sampled_from([0, 100_000, 1 * MS]),
    max_segments=st.integers(2, 12),
)
def test_recasts_move_at_most_the_wait_and_keep_the_picture_whole(
    body: list[tuple[bool, int, float]],
    notes: list[tuple[int, int, float, float]],
    resolution: int,
    max_segments: int,
) -> None:
    probe = TaskProbe(resolution, max_segments)
    t = 0
    for is_wait, d, cpu_share in body:
        if is_wait:
            probe.wait(t, t + d)
        else:
            probe.step(t, t + d, int(d * cpu_share))
        t += d
    span = (0, t)
    for kind, ns, a, b in notes:
        lo, hi = sorted((int(a * t), int(b * t)))
        probe.recast(kind, ns, lo, hi)
    before = (probe.cpu_ns, probe.wait_ns, probe.gil_ns, probe.runq_ns)
    probe.apply_recasts()

    left = before[1]
    gil = runq = 0
    for kind, ns, _a, _b in notes:  # moved in order, each bounded by what is left
        moved = max(0, min(ns, left))
        left -= moved
        gil, runq = (gil + moved, runq) if kind == GIL else (gil, runq + moved)
    assert (probe.cpu_ns, probe.wait_ns, probe.gil_ns, probe.runq_ns) == (
        before[0], left, before[2] + gil, before[3] + runq)  # fmt: skip
    segs = probe.finish()  # (as settling does: the pending run closed)
    assert (segs[0][1], segs[-1][2]) == span
    assert all(a[2] == b[1] and a[0] != b[0] for a, b in zip(segs, segs[1:]))
    assert all(s < e for _k, s, e in segs)
    assert len(segs) < max(max_segments, 3)
    assert probe.recasts is None


def test_a_recast_redraws_the_wait_of_its_window_and_nothing_else() -> None:
    probe = TaskProbe(0, 64)
    probe.step(0, 1 * MS, 1 * MS)
    probe.wait(1 * MS, 11 * MS)
    probe.step(11 * MS, 12 * MS, 1 * MS)
    probe.wait(12 * MS, 20 * MS)
    probe.recast(GIL, 4 * MS, 3 * MS, 9 * MS)
    probe.recast(RUNQ, 100 * MS, 12 * MS, 14 * MS)  # more than its window: the window's wait
    probe.apply_recasts()
    assert probe.segs == [[CPU, 0, 1 * MS], [WAIT, 1 * MS, 3 * MS], [GIL, 3 * MS, 7 * MS],
                          [WAIT, 7 * MS, 11 * MS], [CPU, 11 * MS, 12 * MS],
                          [RUNQ, 12 * MS, 14 * MS], [WAIT, 14 * MS, 20 * MS]]  # fmt: skip
    # the totals move by what was noted, bounded by the wait there is (18 ms): 4 + 14
    assert (probe.wait_ns, probe.gil_ns, probe.runq_ns) == (0, 4 * MS, 14 * MS)


async def noted_sleeper(gil_ms: int, runq_ms: int, window: list[int]) -> str:
    """Sleeps 60 ms, then says part of that wait was GIL and run-queue wait (as ``bash`` says
    of its helper thread's and its child's waits, once it runs again)."""
    t0 = time.perf_counter_ns()
    await anyio.sleep(0.06)
    t1 = time.perf_counter_ns()
    note_gil_wait(gil_ms * MS, t0, t1)
    note_core_wait(runq_ms * MS, t0, t1)
    window += (t0, t1)
    return "slept"


def test_a_note_made_as_the_step_resumes_moves_that_steps_wait(tmp_path: Path) -> None:
    """Before notes were kept to the end, the 60 ms wait was not yet counted when the tool noted
    it: nothing moved, and the trace called the helper's GIL wait I/O. (A busy machine may add
    contention of its own around the sleep: the totals are at least what was noted, and the
    sleep's window holds exactly that.)"""
    window: list[int] = []
    with lp.LaneExecutor(lanes={"io": lp.LaneConfig(1, 2, kind="async")}) as ex:
        calls = [lp.ToolCall(noted_sleeper, 30, 10, window, lane="io")]
        b = ex.run_batch(calls, mode="parallel")
    assert b.results == ["slept"]
    (rec,) = b.trace.tasks
    assert rec.gil_ns >= 30 * MS and rec.runq_ns >= 10 * MS
    wall = rec.finished_ns - rec.started_ns
    assert rec.cpu_ns + rec.wait_ns + rec.gil_ns + rec.runq_ns == wall
    assert rec.wait_ns >= 20 * MS  # (the sleep's 60 ms at least, less the 40 that moved)
    t0, t1 = window
    drawn = {k: sum(max(0, min(e, t1) - max(s, t0)) for kk, s, e in rec.segments if kk == k)
             for k in ("gil", "runq")}  # fmt: skip
    assert drawn == {"gil": 30 * MS, "runq": 10 * MS}


def test_a_note_outside_any_task_does_nothing() -> None:
    note_gil_wait(5 * MS, 0, 1)
    note_core_wait(5 * MS)
