"""Queued means waiting for capacity; dispatch is the executor's own delay; peak is what ran.

The situation of notebook 01: sync tools on a thread lane finish in their threads while the
event loop is busy, so the loop learns late that their slots are free. The tasks waiting behind
them did not wait for the lane's limit; charging that to ``queued`` told users to raise a limit
that was not the bottleneck. When what kept the loop busy was another tool's step, they waited
for that tool (a lock held by it), not for the executor either.
"""

from __future__ import annotations

import threading
import time

import anyio

import lanepar as lp
from lanepar.trace.model import TaskRecord

MS = 1_000_000
LIMIT = 4
BODY_KINDS = {"cpu", "wait", "gil", "runq"}


def _occupied_min(recs: list[TaskRecord], me: TaskRecord) -> int:
    """The fewest slots of ``me``'s lane held by other tasks (slot free → finished) at any
    moment while ``me`` was queued, probing between consecutive record boundaries."""
    others = [r for r in recs if r is not me and r.lane == me.lane and r.slot >= 0]
    lo, hi = me.submitted_ns, me.slot_free_ns
    cuts = sorted({lo, hi, *(t for r in others for t in (r.slot_free_ns, r.finished_ns)
                             if lo < t < hi)})  # fmt: skip
    held = [
        sum(1 for r in others if r.slot_free_ns <= (a + b) / 2 < r.finished_ns)
        for a, b in zip(cuts, cuts[1:])
        if b > a
    ]
    return min(held, default=LIMIT)


class _Watcher:
    """An observer of each task's end: a lane watched so never offers its next jobs to its
    threads (they would start before the loop could tell it the one before ended)."""

    def task_finished(self, record: TaskRecord) -> None:
        pass


def _loop_blocked_batch(watched: bool = True) -> lp.BatchResult:
    started = 0
    lock = threading.Lock()
    holding = threading.Event()

    def io_tool(i: int) -> int:
        nonlocal started
        with lock:
            started += 1
        # the first wave ends only once the loop is held: on a busy machine the blocker's
        # next poll can come later than a 20 ms body's end, and the loop would start the
        # second wave before it blocked (seen in CI with two burners beside the suite)
        assert holding.wait(10)
        time.sleep(0.02)
        return i

    async def blocks_the_loop() -> None:
        # wait until the first wave runs in its threads, then hold the loop far longer than
        # those bodies take: they finish while nobody on the loop can notice
        while started < LIMIT:
            await anyio.sleep(0.001)
        holding.set()
        time.sleep(0.3)

    lanes = {
        "q": lp.LaneConfig(max_concurrency=LIMIT, kind="thread"),
        "loop": lp.LaneConfig(max_concurrency=1, kind="async"),
    }
    calls = [lp.ToolCall(io_tool, i, lane="q") for i in range(2 * LIMIT)]
    calls.append(lp.ToolCall(blocks_the_loop, lane="loop"))
    with lp.LaneExecutor(lanes) as ex:
        if watched:
            ex.add_observer(_Watcher())
        b = ex.run_batch(calls)
    assert b.ok, b.errors
    return b


def test_waiting_behind_a_blocked_loop_is_lock_wait_not_queued() -> None:
    b = _loop_blocked_batch()
    assert b.trace is not None
    recs = [r for r in b.trace.tasks if r.lane == "q"]
    first, second = recs[:LIMIT], recs[LIMIT:]
    blocker = next(r for r in b.trace.tasks if r.lane == "loop")
    assert max(r.finished_ns for r in first) < blocker.finished_ns - 200 * MS  # the situation
    for r in recs:
        # queued only while every slot of the lane was held by another task
        assert _occupied_min(recs, r) == LIMIT, (r, _occupied_min(recs, r))
    for r in second:
        # the slot freed when a first-wave body ended; the rest was the loop's delay: the
        # blocking tool's step held it, so that is another lock's wait, not the executor's
        assert r.slot_free_ns <= max(x.finished_ns for x in first)
        assert r.lock_ns > 150 * MS > r.queued_ns
        assert r.gil_ns >= r.lock_ns > r.dispatch_ns


def test_a_blocked_loop_does_not_hold_back_jobs_offered_to_the_lanes_threads() -> None:
    """Unwatched, the lane offers its second wave to its threads as the first fills it: each
    thread goes on with one as its body ends, while the loop is still held, and the job's
    record says it waited for nothing."""
    b = _loop_blocked_batch(watched=False)
    assert b.trace is not None
    recs = [r for r in b.trace.tasks if r.lane == "q"]
    blocker = next(r for r in b.trace.tasks if r.lane == "loop")
    for r in recs[LIMIT:]:
        assert r.started_ns < blocker.finished_ns - 200 * MS  # started while the loop was held
        assert r.slot_free_ns <= max(x.finished_ns for x in recs[:LIMIT])
        assert r.lock_ns < 150 * MS and r.dispatch_ns < 150 * MS
    for r in recs:
        assert _occupied_min(recs, r) == LIMIT, (r, _occupied_min(recs, r))


def test_peak_is_what_the_timeline_draws() -> None:
    """The per-lane peak equals the most slot rows holding a body segment at one instant,
    counted from the segments the timeline paints."""
    b = _loop_blocked_batch()
    assert b.trace is not None
    s = lp.summarize(b.trace)
    for lane, info in s["per_lane"].items():
        edges = sorted(
            (t, d)
            for r in b.trace.tasks
            if r.lane == lane
            for k, a, e in r.segments
            if k in BODY_KINDS and e > a
            for t, d in ((a, 1), (e, -1))
        )
        # merge each task's adjacent body segments: count tasks, not segments
        drawn = cur = 0
        for _t, d in edges:
            cur += d
            drawn = max(drawn, cur)
        assert info["peak_active"] == drawn, (lane, info["peak_active"], drawn)
    assert s["per_lane"]["q"]["peak_active"] == LIMIT


def _spin_cpu(seconds: float) -> None:
    c0 = time.thread_time()
    while time.thread_time() - c0 < seconds:
        pass


def test_waiting_for_the_loop_held_by_another_tools_step_is_lock_wait_not_dispatch() -> None:
    """Two async tools submitted at once, each to a free slot of its own lane: the second can
    only start once the first's step lets go of the event loop. That wait is another tool's code
    holding the loop — a lock other than the GIL — not the executor's overhead: it is drawn as
    GIL / lock wait, and at least the first tool's CPU of it is counted as another lock's."""

    async def hog() -> str:
        _spin_cpu(0.03)  # 30 ms of CPU in one step, holding the loop
        return "hog"

    async def quick() -> str:
        return "quick"

    lanes = {"a": lp.LaneConfig(kind="async"), "b": lp.LaneConfig(kind="async")}
    with lp.LaneExecutor(lanes) as ex:
        assert ex.run_batch([lp.ToolCall(quick, lane=n) for n in lanes]).ok  # workers idle
        b = ex.run_batch([lp.ToolCall(hog, lane="a"), lp.ToolCall(quick, lane="b")])
    assert b.results == ["hog", "quick"]
    assert b.trace is not None
    first, second = b.trace.tasks
    body = next(a for k, a, _e in second.segments if k == "cpu")
    assert first.finished_ns <= body  # the situation: quick's body ran after the hog's step
    assert second.lock_ns >= 29 * MS  # its wait for the loop, the hog's CPU at least
    assert second.gil_ns >= second.lock_ns
    assert second.dispatch_ns < second.lock_ns
    assert second.queued_ns == 0  # its slot was free from the start
    kinds = [k for k, _s, _e in second.segments]
    assert kinds.index("gil") < kinds.index("cpu")  # drawn before its body
