"""The thread pool's futures share one lock per pool (``lanepar._poolfuture``): what every
``concurrent.futures.Future`` user relies on must still hold when the pool's other futures
are being settled all around them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from lanepar._poolfuture import PoolFuture
from lanepar._threads import DaemonPool, take


def test_a_blocking_result_waits_through_other_futures_wake_ups() -> None:
    cond = threading.Condition()
    mine: PoolFuture[int] = PoolFuture(cond)
    others = [PoolFuture[int](cond) for _ in range(50)]
    got: list[object] = []
    waiting = threading.Event()

    def wait_for_mine() -> None:
        waiting.set()
        try:
            got.append(mine.result())
        except BaseException as e:  # a wake-up for another future must not end this wait
            got.append(e)

    t = threading.Thread(target=wait_for_mine)
    t.start()
    assert waiting.wait(10)
    for f in others:  # each notifies the shared condition the waiter sleeps on
        assert f.set_running_or_notify_cancel()
        f.set_result(1)
    assert got == []
    mine.set_result(7)
    t.join(10)
    assert got == [7]


def test_a_timed_result_times_out_only_at_its_own_deadline() -> None:
    cond = threading.Condition()
    mine: PoolFuture[int] = PoolFuture(cond)
    stop = threading.Event()

    def churn() -> None:  # keeps waking the shared condition until the wait has ended
        while not stop.is_set():
            f: PoolFuture[int] = PoolFuture(cond)
            f.set_result(0)

    t = threading.Thread(target=churn)
    t.start()
    try:
        with pytest.raises(concurrent.futures.TimeoutError):
            mine.result(timeout=0.05)
        with pytest.raises(concurrent.futures.TimeoutError):
            mine.exception(timeout=0.05)
    finally:
        stop.set()
        t.join(10)
    mine.set_exception(ValueError("boom"))
    assert isinstance(mine.exception(0), ValueError)
    with pytest.raises(ValueError, match="boom"):
        mine.result(0)


def test_cancel_wait_and_wrap_future_behave_as_for_any_future() -> None:
    cond = threading.Condition()
    a, b, c = (PoolFuture[int](cond) for _ in range(3))
    assert c.cancel() and c.cancelled() and not c.set_running_or_notify_cancel()
    assert b.set_running_or_notify_cancel() and not b.cancel()
    b.set_result(2)
    done, pending = concurrent.futures.wait([a, b, c], timeout=0)
    assert done == {b, c} and pending == {a}
    threading.Timer(0.01, a.set_result, (1,)).start()
    done, pending = concurrent.futures.wait([a], timeout=10)
    assert done == {a} and not pending

    async def bridged() -> int:
        d: PoolFuture[int] = PoolFuture(cond)
        threading.Timer(0.01, d.set_result, (5,)).start()
        return await asyncio.wrap_future(d)

    assert asyncio.run(bridged()) == 5


def test_a_pools_jobs_share_its_lock_and_settle_apart() -> None:
    pool = DaemonPool("t")
    try:
        gate = threading.Event()
        slow = pool.submit(gate.wait, 10)
        quick = [pool.submit(pow, 2, k) for k in range(8)]
        assert all(isinstance(f, PoolFuture) and f._condition is pool.condition
                   for f in (slow, *quick))  # fmt: skip
        assert [take(f.result(10)) for f in quick] == [2**k for k in range(8)]
        assert not slow.done()
        gate.set()
        assert take(slow.result(10)) is True
    finally:
        pool.close(1.0)
