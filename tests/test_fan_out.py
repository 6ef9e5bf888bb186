"""How a batch's fan-out reaches the threads: lanes handed their jobs in turn, a worker given a
job as it is queued woken only by that job's result, and one set of threads for all lanes.

These pin the order and number of things the event loop does (white-box spies on the hand-off),
never how long they take.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest

import lanepar as lp
from lanepar.backends.local import LocalBackend
from lanepar.run import _hotpath
from lanepar.run.job import FutureWake


def ok(i: int) -> int:
    return i


def ident(i: int) -> tuple[int, int, str]:
    t = threading.current_thread()
    return i, threading.get_ident(), t.name


@pytest.fixture
def handed_lanes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The lane of every sync body handed to a thread, in hand-off order (by Python or C)."""
    order: list[str] = []
    real = LocalBackend.hand_off

    def spy(self: LocalBackend, *args: Any, **kwargs: Any) -> Any:
        order.append(self.lane)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LocalBackend, "hand_off", spy)
    real_c = _hotpath._hand_c
    if real_c is not None:  # the C hand-off of a fan-out's plain jobs (``_handc.c``)

        def spy_c(backend: LocalBackend, *args: Any) -> Any:
            handed = real_c(backend, *args)
            if handed is not None:
                order.append(backend.lane)
            return handed

        monkeypatch.setattr(_hotpath, "_hand_c", spy_c)
    return order


def test_a_batch_hands_each_lane_its_next_job_in_turn(handed_lanes: list[str]) -> None:
    """A narrow lane queued after a wide one does not wait for the wide lane's whole fan-out:
    the lanes' first jobs go out first, then their second ones, and so on."""
    lanes = {
        "wide": lp.LaneConfig(kind="thread", max_concurrency=8),
        "narrow": lp.LaneConfig(kind="thread", max_concurrency=2),
    }
    calls = [lp.ToolCall(ok, i, lane="wide") for i in range(8)]
    calls += [lp.ToolCall(ok, 10 + i, lane="narrow") for i in range(2)]
    with lp.LaneExecutor(lanes) as ex:
        assert ex.run_batch(calls).ok  # every worker now waits, idle, for the next batch
        handed_lanes.clear()
        b = ex.run_batch(calls)
    assert b.results == [*range(8), 10, 11]
    assert handed_lanes[:4] == ["wide", "narrow", "wide", "narrow"]
    assert handed_lanes[4:] == ["wide"] * 6


async def aok(i: int) -> int:
    return i


def test_a_batch_hands_out_its_sync_jobs_before_it_wakes_any_worker(
    handed_lanes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain wake-up (an async lane's worker, which runs only once the batch is queued) never
    comes before a thread's hand-off, whichever lane the batch names first."""
    real_set = FutureWake.set

    def wake(self: FutureWake) -> None:
        handed_lanes.append("(a wake-up)")
        real_set(self)

    lanes = {"a": lp.LaneConfig(kind="async", max_concurrency=3),
             "t": lp.LaneConfig(kind="thread", max_concurrency=3)}  # fmt: skip
    calls = [lp.ToolCall(aok, i, lane="a") for i in range(3)]
    with lp.LaneExecutor(lanes) as ex:
        calls += [lp.ToolCall(ok, 10 + i, lane="t") for i in range(3)]
        assert ex.run_batch(calls).ok  # every worker now waits, idle, for the next batch
        handed_lanes.clear()
        monkeypatch.setattr(FutureWake, "set", wake)
        assert ex.run_batch(calls).results == [0, 1, 2, 10, 11, 12]
    assert handed_lanes[:6] == ["t"] * 3 + ["(a wake-up)"] * 3, handed_lanes


def test_the_hand_off_pass_asks_only_the_lanes_with_sync_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lane whose jobs in the batch are all async has nothing to hand a thread: it is not
    asked in the hand-offs' pass (each ask looked through its queue, between two hand-offs),
    only woken after it; a thread lane of the same batch is asked."""
    from lanepar.run.lane import Lane

    asked: list[tuple[str, bool]] = []
    real = Lane.wake_one

    def spy(self: Lane, hand_only: bool = False) -> bool:
        asked.append((self.name, hand_only))
        return real(self, hand_only)

    lanes = {"a": lp.LaneConfig(kind="async", max_concurrency=3),
             "t": lp.LaneConfig(kind="thread", max_concurrency=3)}  # fmt: skip
    calls = [lp.ToolCall(aok, i, lane="a") for i in range(3)]
    calls += [lp.ToolCall(ok, 10 + i, lane="t") for i in range(3)]
    with lp.LaneExecutor(lanes) as ex:
        assert ex.run_batch(calls).ok  # every worker now waits, idle, for the next batch
        monkeypatch.setattr(Lane, "wake_one", spy)
        assert ex.run_batch(calls).results == [0, 1, 2, 10, 11, 12]
    assert ("a", True) not in asked and ("t", True) in asked, asked
    assert ("a", False) in asked, asked


def test_a_worker_given_a_job_as_it_is_queued_wakes_with_its_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job's result (or error) is delivered into the future its idle worker sleeps on, so
    the loop wakes no worker at hand-off time — and an error still reaches its own task."""
    sets: list[int] = []
    real = FutureWake.set

    def counted(self: FutureWake) -> None:
        sets.append(1)
        real(self)

    def boom(i: int) -> int:
        raise ValueError(f"tool {i} failed")

    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=4)}
    with lp.LaneExecutor(lanes) as ex:
        assert ex.run_batch([lp.ToolCall(ok, 0, lane="t")]).ok
        monkeypatch.setattr(FutureWake, "set", counted)
        calls = [lp.ToolCall(f, i, lane="t") for i, f in ((1, ok), (2, boom), (3, ok))]
        b = ex.run_batch(calls)
        monkeypatch.undo()
    assert b.outcomes == ["ok", "error", "ok"]
    assert b.results[0] == 1 and b.results[2] == 3
    assert isinstance(b.errors[1], ValueError) and "tool 2 failed" in str(b.errors[1])
    assert sets == []  # three jobs handed to threads, no worker woken before their results
    gc.collect()  # a delivered error nobody retrieved would be reported here


def test_lanes_share_one_set_of_threads() -> None:
    """A thread a lane's body ran on serves the next lane's body: an executor keeps as many
    threads as its lanes ran bodies at once, not a set per lane."""
    lanes = {
        "a": lp.LaneConfig(kind="thread", max_concurrency=2),
        "b": lp.LaneConfig(kind="thread", max_concurrency=2),
    }
    with lp.LaneExecutor(lanes) as ex:
        first = ex.run_batch([lp.ToolCall(ident, 0, lane="a")])
        second = ex.run_batch([lp.ToolCall(ident, 1, lane="b")])
    (_, a_thread, a_name), (_, b_thread, b_name) = first.results[0], second.results[0]
    assert a_thread == b_thread
    assert a_name.startswith("lanepar-threads") and b_name == a_name


def test_closing_one_lane_stops_only_its_own_bodies() -> None:
    """With shared threads a lane that closes (its backend) stops its own bodies and leaves the
    pool working for the others; the executor closes the pool last."""
    gate = threading.Event()
    started = threading.Event()

    def held() -> str:
        started.set()
        gate.wait(20)
        return "done"

    lanes = {
        "a": lp.LaneConfig(kind="thread", max_concurrency=1),
        "b": lp.LaneConfig(kind="thread", max_concurrency=1),
    }
    with lp.LaneExecutor(lanes) as ex:
        assert ex.run_batch([lp.ToolCall(ok, 0, lane="a"), lp.ToolCall(ok, 1, lane="b")]).ok
        lane_a: Any = ex.lanes["a"]._lane
        handle = ex.submit(lp.ToolCall(held, lane="b"))
        assert started.wait(20)
        ex._bridge.call(lane_a.backend.close_now)  # on the loop, as the executor closes it
        gate.set()
        assert handle.result(20) == "done"
        assert ex.run_batch([lp.ToolCall(ok, 2, lane="a")]).results == [2]  # a takes it again


def test_an_idle_workers_wait_swallows_a_delivered_error_but_not_its_own_end() -> None:
    """``FutureWake.wait`` returns when a handed job's error is delivered into its future (the
    collect raises it), but a cancel or a close of the waiting coroutine still ends it."""
    import asyncio

    async def main() -> None:
        loop = asyncio.get_running_loop()
        w = FutureWake(loop)
        w.fut.set_exception(ValueError("the tool's"))
        await w.wait()  # no raise: the error is the collect's
        with pytest.raises(ValueError):
            w.fut.result()
        parked = FutureWake(loop).wait()
        assert parked.send(None) is not None  # suspended on the future
        parked.close()  # GeneratorExit goes through (it is not swallowed as an error)
        task = asyncio.ensure_future(FutureWake(loop).wait())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


class _Puts:
    """A pool's job queue that notes, in ``log``, each job put on it (then puts it)."""

    def __init__(self, q: Any, log: list[str]) -> None:
        self._q, self._log = q, log

    def put(self, item: Any) -> None:
        self._log.append("(queued)")
        self._q.put(item)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._q, name)


def test_a_fan_out_queues_its_jobs_for_the_threads_only_once_all_are_handed_over(
    handed_lanes: list[str],
) -> None:
    """Waking a parked thread costs the loop most on a VM whose other core is idle, and no
    woken thread could run before the fan-out gives up the GIL: every hand-off comes first."""
    lanes = {"a": lp.LaneConfig(kind="thread", max_concurrency=4),
             "b": lp.LaneConfig(kind="thread", max_concurrency=2)}  # fmt: skip
    calls = [lp.ToolCall(ok, i, lane="a") for i in range(4)]
    calls += [lp.ToolCall(ok, 10 + i, lane="b") for i in range(2)]
    with lp.LaneExecutor(lanes) as ex:
        assert ex.run_batch(calls).ok
        pool: Any = ex._threads.get()
        pool._q = _Puts(pool._q, handed_lanes)
        handed_lanes.clear()
        b = ex.run_batch(calls)
    assert b.results == [0, 1, 2, 3, 10, 11]
    assert handed_lanes[:6] == ["a", "b", "a", "b", "a", "a"]
    assert handed_lanes[6:12] == ["(queued)"] * 6


def test_a_held_pool_queues_on_its_last_release_and_fails_what_a_close_stranded() -> None:
    from lanepar._threads import DaemonPool, take

    pool = DaemonPool("held")
    try:
        assert take(pool.submit(ok, 0).result(20)) == 0  # a worker, parked
        pool.hold()
        pool.hold()  # (two lanes sharing the pool)
        futs = [pool.submit(ok, i) for i in (1, 2)]
        assert pool._q.qsize() == 0 and not any(f.running() or f.done() for f in futs)
        pool.release()
        assert pool._q.qsize() == 0  # one hold is still open
        pool.release()
        assert [take(f.result(20)) for f in futs] == [1, 2]
        pool.hold()
        stranded = pool.submit(ok, 3)
    finally:
        pool.close(5)
    pool.release()
    with pytest.raises(RuntimeError, match="closed before this job ran"):
        stranded.result(20)
