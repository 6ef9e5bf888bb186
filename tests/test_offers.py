"""A narrow lane's queued jobs are offered to its threads: the thread whose body ends first
starts the next one itself (``lanepar/_relay.py``, ``lanepar/run/_offers.py``).

These pin what must hold whoever wins each race — the lane's limit, the queue's order, every
job settled once with its slot's record, cancellation — through events and the trace, never
through how long anything takes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lanepar as lp
from lanepar._relay import Relay
from tests.support import wait_until

LANE = "q"


class Body:
    """Sync tools that count how many run at once, log the order they start in, and can be
    held at a gate until the test opens it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.peak = 0
        self.started: list[Any] = []
        self.gate = threading.Event()

    def __call__(self, tag: Any, hold: bool = False, nap_ms: float = 0.0) -> Any:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.started.append(tag)
        try:
            if hold:
                self.gate.wait(60)
            if nap_ms:
                time.sleep(nap_ms / 1000)
            return tag
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def takes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every offered item a thread took as its body ended."""
    got: list[Any] = []
    real = Relay.take

    def spy(self: Relay, fut: Any, then: dict[Any, Any], ended: int) -> Any:
        item = real(self, fut, then, ended)
        if item is not None:
            got.append(item)
        return item

    monkeypatch.setattr(Relay, "take", spy)
    return got


def executor(limit: int) -> lp.LaneExecutor:
    return lp.LaneExecutor({LANE: lp.LaneConfig(min_concurrency=1, max_concurrency=limit,
                                                kind="thread")})  # fmt: skip


def check_slots(tasks: list[lp.TaskRecord], limit: int) -> None:
    """Each slot ran one body at a time, and no slot beyond the limit ran one. (Only bodies that
    ended: a cancelled one's end is when the loop gave it up, and its thread may have ended it
    and gone on with an offered job before that.)"""
    by_slot: dict[int, list[lp.TaskRecord]] = {}
    for t in tasks:
        if t.slot >= 0 and t.outcome == "ok":
            by_slot.setdefault(t.slot, []).append(t)
    assert set(by_slot) <= set(range(limit))
    for rows in by_slot.values():
        rows.sort(key=lambda t: t.started_ns)
        for a, b in zip(rows, rows[1:], strict=False):
            assert b.started_ns >= a.finished_ns


def test_a_thread_takes_its_lanes_next_job_as_its_body_ends(takes: list[Any]) -> None:
    body = Body()
    with executor(2) as ex:
        assert ex.run_batch([lp.ToolCall(body, i, lane=LANE) for i in range(4)]).ok  # warm
        lane = ex._lanes[LANE]
        body.started.clear()
        offered: list[bool] = []
        opener = threading.Thread(target=lambda: (
            offered.append(wait_until(lambda: len(lane.offered) == 2)), body.gate.set()))
        opener.start()
        b = ex.run_batch([lp.ToolCall(body, i, i < 2, lane=LANE) for i in range(8)])
        opener.join()
    assert offered == [True]  # both slots busy, the next two jobs offered to their threads
    assert b.results == list(range(8))
    assert len(takes) >= 2  # each held body's thread went on with an offered job
    assert body.peak <= 2
    assert sorted(t.id for t in b.trace.tasks) == sorted({t.id for t in b.trace.tasks})
    assert len(b.trace.tasks) == 8 and all(t.outcome == "ok" for t in b.trace.tasks)
    check_slots(b.trace.tasks, 2)
    assert not lane.offered and not lane.queue.n and lane.active == 0


def test_a_more_urgent_job_queued_later_is_offered_first(takes: list[Any]) -> None:
    """Jobs queued ahead of the offered ones (a lower priority number) take the offers back:
    the thread goes on with the urgent job, not with the one offered before it came."""
    body = Body()
    with executor(1) as ex:
        assert ex.run_batch([lp.ToolCall(body, "warm", lane=LANE)]).ok
        lane = ex._lanes[LANE]
        body.started.clear()
        calls = [lp.ToolCall(body, f"low{i}", i == 0, lane=LANE).options(priority=5)
                 for i in range(3)]  # fmt: skip
        out: list[lp.BatchResult] = []
        runner = threading.Thread(target=lambda: out.append(ex.run_batch(calls)))
        runner.start()
        assert wait_until(lambda: len(lane.offered) == 1)  # low1, behind the held low0
        urgent = ex.submit(lp.ToolCall(body, "urgent", lane=LANE).options(priority=0))
        assert wait_until(lambda: [j.name for j, _h in lane.offered.values()] != [])
        body.gate.set()
        assert urgent.result(timeout=60) == "urgent"
        runner.join(60)
    assert out and out[0].results == ["low0", "low1", "low2"]
    assert body.started == ["low0", "urgent", "low1", "low2"]
    assert takes  # (the urgent job itself was taken by the held body's thread)


def test_a_taken_job_whose_batch_is_cancelled_is_stopped_and_settled_once() -> None:
    body = Body()
    second = threading.Event()

    def blocker(tag: str) -> str:
        body.started.append(tag)
        second.wait(60)
        return tag

    with executor(1) as ex:
        assert ex.run_batch([lp.ToolCall(body, "warm", lane=LANE)]).ok
        lane = ex._lanes[LANE]
        out: list[lp.BatchResult] = []
        calls = [lp.ToolCall(body, "held", True, lane=LANE),
                 lp.ToolCall(blocker, "next", lane=LANE), lp.ToolCall(body, "last", lane=LANE)]
        runner = threading.Thread(target=lambda: out.append(ex.run_batch(calls)))
        runner.start()
        assert wait_until(lambda: len(lane.offered) == 1)
        body.gate.set()  # "held" ends; its thread goes on with "next", which blocks
        assert wait_until(lambda: "next" in body.started)
        ex.cancel()
        second.set()
        runner.join(60)
        assert not runner.is_alive()
        assert ex.run_batch([lp.ToolCall(body, "after", lane=LANE)]).results == ["after"]
    b = out[0]
    assert b.outcomes[0] == "ok" and b.outcomes[2] == "cancelled"
    assert b.outcomes[1] in ("ok", "cancelled")  # (it may end before the cancel reaches it)
    assert len(b.trace.tasks) == 3
    assert not lane.offered and lane.active == 0


def test_a_lane_filled_by_an_async_job_still_offers_the_sync_jobs_behind_it() -> None:
    """An async job that takes the lane's last slot makes no offer of its own kind (it has
    nothing to offer: ``_offers.filled``), but the sync jobs queued behind it in its batch
    are offered all the same."""
    body = Body()

    async def held() -> str:
        while not body.gate.is_set():  # (holds its slot without blocking the loop)
            await asyncio.sleep(0.001)
        return "async"

    with executor(2) as ex:
        assert ex.run_batch([lp.ToolCall(body, "warm", lane=LANE)]).ok
        lane = ex._lanes[LANE]
        calls = [lp.ToolCall(body, 0, True, lane=LANE), lp.ToolCall(held, lane=LANE),
                 *(lp.ToolCall(body, i, lane=LANE) for i in range(1, 4))]  # fmt: skip
        out: list[lp.BatchResult] = []
        runner = threading.Thread(target=lambda: out.append(ex.run_batch(calls)))
        runner.start()
        offered = wait_until(lambda: len(lane.offered) == 2)
        body.gate.set()
        runner.join(60)
    assert offered  # the two slots busy (one async): the next two sync jobs offered
    assert out and out[0].results == [0, "async", 1, 2, 3]
    check_slots(out[0].trace.tasks, 2)


@settings(max_examples=25, deadline=None)
@given(
    limit=st.integers(1, 3),
    naps=st.lists(st.sampled_from([0.0, 0.2, 1.0, 2.0]), min_size=2, max_size=12),
    cancel_after=st.none() | st.sampled_from([0.0, 0.5, 2.0, 5.0]),
)
def test_whoever_wins_each_race_every_job_is_settled_once_within_the_limit(
    limit: int, naps: list[float], cancel_after: float | None
) -> None:
    body = Body()
    with executor(limit) as ex:
        assert ex.run_batch([lp.ToolCall(body, -1, lane=LANE) for _ in range(limit)]).ok
        canceller = None
        if cancel_after is not None:
            canceller = threading.Timer(cancel_after / 1000, ex.cancel)
            canceller.start()
        b = ex.run_batch([lp.ToolCall(body, i, False, ms, lane=LANE) for i, ms in enumerate(naps)])
        if canceller is not None:
            canceller.join()
        lane = ex._lanes[LANE]
        assert wait_until(lambda: lane.active == 0)  # (cancelled bodies drain after it returns)
        assert not lane.offered
    assert body.peak <= limit
    assert len(b.trace.tasks) == len(naps)
    for i, (outcome, value) in enumerate(zip(b.outcomes, b.results, strict=True)):
        assert outcome in ("ok", "cancelled")
        if outcome == "ok":
            assert value == i
    if cancel_after is None:
        assert b.ok
    check_slots(b.trace.tasks, limit)
