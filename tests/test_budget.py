"""The shared ``max_total`` budget on its own (a unit test of ``run/budget.py``'s contract):
reserved slots are never contested, the shared pool goes to the highest priority with work,
and a waiter cancelled while being granted gives its slot back.

The budget sees lanes only through ``name``, ``config`` and ``queue.n``; the stand-ins below
have exactly those. The same rules through a real executor are in ``test_executor.py``.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from support import run_virtual

import lanepar as lp
from lanepar.run.budget import SharedBudget


class Queue:
    def __init__(self, n: int = 0) -> None:
        self.n = n


class FakeLane:
    def __init__(self, name: str, priority: int, reserved: int, queued: int = 0) -> None:
        self.name = name
        self.config = lp.LaneConfig(min_concurrency=reserved, max_concurrency=8, priority=priority)
        self.queue = Queue(queued)


def budget(total: int, *lanes: FakeLane) -> SharedBudget:
    b = SharedBudget(total)
    b.attach(list(lanes))  # type: ignore[arg-type]
    return b


def take(b: SharedBudget, lane: FakeLane, n: int) -> list[bool]:
    return [b.try_acquire(lane) for _ in range(n)]  # type: ignore[arg-type]


def test_reserved_slots_then_the_shared_pool() -> None:
    hi, lo = FakeLane("hi", 0, 2), FakeLane("lo", 5, 1)
    b = budget(5, hi, lo)
    assert b.shared_cap == 2
    assert take(b, lo, 4) == [True, True, True, False]  # 1 reserved + 2 shared
    assert b.shared_used == 2 and b.active == {"hi": 0, "lo": 3}
    assert take(b, hi, 3) == [True, True, False]  # hi's two reserved are still there
    assert b.shared_used == 2 and b.active == {"hi": 2, "lo": 3}


def test_release_returns_shared_slots_before_reserved_ones() -> None:
    a = FakeLane("a", 1, 1)
    b = budget(3, a)
    assert take(b, a, 3) == [True, True, True]
    assert b.shared_used == 2
    b.release(a)  # type: ignore[arg-type]
    assert (b.active["a"], b.shared_used) == (2, 1)
    b.release(a)  # type: ignore[arg-type]
    assert (b.active["a"], b.shared_used) == (1, 0)
    b.release(a)  # type: ignore[arg-type]
    assert (b.active["a"], b.shared_used) == (0, 0)
    assert take(b, a, 4) == [True, True, True, False]


def test_a_lower_priority_may_not_jump_waiting_higher_priority_work() -> None:
    hi, lo = FakeLane("hi", 0, 1, queued=3), FakeLane("lo", 5, 1, queued=3)
    b = budget(4, hi, lo)

    async def main() -> None:
        assert take(b, hi, 1) == [True]  # hi's reserved slot
        assert take(b, lo, 2) == [True, True]  # lo: reserved + one shared
        assert take(b, hi, 2) == [True, False]  # hi: the last shared; now full
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.acquire, hi)  # hi waits for a shared slot
            await anyio.sleep(1)
            assert b._waiters["hi"]
            # lo gives back its shared slot: it goes to the waiting hi, not to lo
            b.release(lo)  # type: ignore[arg-type]
            assert b.active == {"hi": 3, "lo": 1}
            assert take(b, lo, 1) == [False]
            b.release(hi)  # type: ignore[arg-type]
            # hi still has work queued but no waiter: lo may take the slot
            assert take(b, lo, 1) == [True]

    run_virtual(main)


def test_blocked_by_priority_only_while_the_higher_lane_has_work_and_waiters() -> None:
    hi, mid, lo = FakeLane("hi", 0, 0, queued=1), FakeLane("mid", 1, 0), FakeLane("lo", 2, 0)
    b = budget(2, hi, mid, lo)

    async def main() -> None:
        assert take(b, lo, 2) == [True, True]
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.acquire, hi)
            await anyio.sleep(1)
            b.release(lo)  # type: ignore[arg-type]
            assert b.active == {"hi": 1, "mid": 0, "lo": 1}
        b.release(lo)  # type: ignore[arg-type]
        hi.queue.n = 1  # hi has work but no waiter: nothing blocks mid
        assert take(b, mid, 1) == [True]
        assert take(b, lo, 1) == [False]  # full

    run_virtual(main)


def waiting(b: SharedBudget, lane: FakeLane) -> None:
    """A worker of ``lane`` in line for a slot, as the budget sees it once the grant passed it
    by (its lane had nothing queued then) and before the work that arrived is announced."""
    b._waiters[lane.name].append(anyio.Event())


@pytest.mark.parametrize("lo_reserved", [0, 1])
def test_a_waiting_higher_priority_lane_blocks_the_shared_pool(lo_reserved: int) -> None:
    hi, lo = FakeLane("hi", 0, 0, queued=1), FakeLane("lo", 5, lo_reserved, queued=5)
    b = budget(3, hi, lo)

    async def main() -> None:
        assert take(b, lo, lo_reserved) == [True] * lo_reserved  # its own slot: never contested
        waiting(b, hi)
        assert take(b, lo, 1) == [False]  # a shared slot is free, but hi is first in line
        hi.queue.n = 0
        assert take(b, lo, 1) == [True]  # hi has nothing to run: no reason to hold the slot
        assert b.active["lo"] == lo_reserved + 1

    run_virtual(main)


def test_a_lower_priority_lane_never_blocks_a_higher_one() -> None:
    hi, mid, lo = FakeLane("hi", 0, 0), FakeLane("mid", 1, 0), FakeLane("lo", 2, 0, queued=3)
    b = budget(2, hi, mid, lo)
    waiting(b, lo)
    assert take(b, mid, 1) == [True]
    assert take(b, hi, 1) == [True]


def test_equal_priorities_yield_to_the_lane_listed_first() -> None:
    a, c = FakeLane("a", 1, 0, queued=2), FakeLane("c", 1, 0, queued=2)
    b = budget(2, a, c)
    waiting(b, a)
    assert take(b, c, 1) == [False]
    d = budget(2, a, c)
    waiting(d, c)
    assert take(d, a, 1) == [True]  # c is listed after a: it does not hold a back


def test_grants_go_only_to_lanes_with_queued_work() -> None:
    hi, lo = FakeLane("hi", 0, 0, queued=0), FakeLane("lo", 1, 0, queued=1)
    b = budget(1, hi, lo)
    order: list[str] = []

    async def waiter(lane: FakeLane) -> None:
        await b.acquire(lane)  # type: ignore[arg-type]
        order.append(lane.name)

    async def main() -> None:
        assert take(b, lo, 1) == [True]
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, hi)
            tg.start_soon(waiter, lo)
            await anyio.sleep(1)
            b.release(lo)  # type: ignore[arg-type]
            await anyio.sleep(1)
            assert order == ["lo"]  # hi waits but has nothing queued
            hi.queue.n = 1
            b.work_arrived(hi)  # type: ignore[arg-type]
            await anyio.sleep(1)
            assert order == ["lo"]  # no free slot: arrival alone grants nothing
            b.release(lo)  # type: ignore[arg-type]
        assert order == ["lo", "hi"]

    run_virtual(main)


def test_work_arriving_wakes_a_waiter_when_a_slot_is_free() -> None:
    a = FakeLane("a", 0, 0, queued=0)
    b = budget(1, a)
    got: list[bool] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                await b.acquire(a)  # type: ignore[arg-type]
                got.append(True)

            tg.start_soon(wait)
            await anyio.sleep(1)
            assert got == []
            a.queue.n = 1
            b.work_arrived(a)  # type: ignore[arg-type]
        assert got == [True] and b.active["a"] == 1 and b.shared_used == 1

    run_virtual(main)


def test_a_cancelled_waiter_leaves_the_line() -> None:
    a = FakeLane("a", 0, 0, queued=1)
    b = budget(1, a)

    async def main() -> None:
        assert take(b, a, 1) == [True]
        with anyio.move_on_after(1):
            await b.acquire(a)  # type: ignore[arg-type]
        assert not b._waiters["a"]
        b.release(a)  # type: ignore[arg-type]
        assert b.active["a"] == 0 and b.shared_used == 0

    run_virtual(main)


def test_a_waiter_cancelled_as_it_is_granted_gives_the_slot_back() -> None:
    """Granted and cancelled before it could run (asyncio lets a cancel overtake a set event):
    the slot must come back, or the budget shrinks by one for good."""
    import asyncio
    import contextlib

    a = FakeLane("a", 0, 0, queued=1)
    b = budget(1, a)

    async def main() -> None:
        assert take(b, a, 1) == [True]
        waiter = asyncio.ensure_future(b.acquire(a))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # it waits in line now
        assert b._waiters["a"]
        b.release(a)  # type: ignore[arg-type]  # grants the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs again
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        assert waiter.cancelled()

    asyncio.run(main())
    assert b.active["a"] == 0 and b.shared_used == 0 and not b._waiters["a"]


def test_a_lane_added_later_joins_in_priority_order() -> None:
    lo = FakeLane("lo", 5, 0, queued=1)
    b = budget(2, lo)
    new = FakeLane("new", 0, 1, queued=1)
    b.add_lane(new)  # type: ignore[arg-type]
    assert [ln.name for ln in b.lanes] == ["new", "lo"]
    assert b.shared_cap == 1 and b.active["new"] == 0
    assert take(b, lo, 2) == [True, False]
    assert take(b, new, 1) == [True]  # its reserved slot
    got: list[bool] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                await b.acquire(new)  # type: ignore[arg-type]
                got.append(True)

            tg.start_soon(wait)
            await anyio.sleep(1)
            b.release(lo)  # type: ignore[arg-type]

    run_virtual(main)
    assert got == [True] and b.active == {"new": 2, "lo": 0}


@pytest.mark.parametrize("total", [2, 3])
def test_an_executor_checks_the_budget_covers_the_reservations(total: int) -> None:
    lanes: dict[str, Any] = {n: lp.LaneConfig(min_concurrency=1, max_concurrency=2)
                             for n in ("a", "b", "c")}  # fmt: skip
    if total < 3:
        with pytest.raises(lp.LaneConfigError, match=f"max_total={total}"):
            lp.LaneExecutor(lanes, max_total=total)
    else:
        lp.LaneExecutor(lanes, max_total=total)


def test_a_budget_can_start_empty_and_grow_lane_by_lane() -> None:
    b = SharedBudget(3)
    assert (b.lanes, b.active, b.shared_used, b.shared_cap) == ([], {}, 0, 3)
    b.work_arrived(FakeLane("none", 0, 0))  # type: ignore[arg-type]  # nobody waits: a no-op
    a = FakeLane("a", 2, 1, queued=1)
    b.add_lane(a)  # type: ignore[arg-type]
    assert b.shared_cap == 2 and take(b, a, 4) == [True, True, True, False]
