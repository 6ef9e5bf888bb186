"""One sync bridge: every way to wait for a sync-started executor, from any thread or loop."""

from __future__ import annotations

import asyncio
import collections
import gc
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import lanepar as lp


def event_tool(gate: threading.Event) -> str:
    """A thread-lane tool that ends exactly when the test says so (the bound only keeps a
    failing test from leaving a thread behind)."""
    assert gate.wait(120)
    return "done"


@pytest.mark.timeout(60)
def test_await_handle_from_a_foreign_running_loop_wakes_at_once() -> None:
    # The executor runs its own loop (started the sync way, as the %%lanepar session executor
    # is); the handle is awaited on another, running asyncio loop with no timer and no other
    # task: nothing but the bridge's thread-safe wake-up can end this await, so a missing
    # wake-up hangs here until the test's timeout fails it.
    gate = threading.Event()
    with lp.LaneExecutor({"t": lp.LaneConfig(kind="thread")}) as ex:
        handle = ex.submit(lp.ToolCall(event_tool, gate, lane="t"))

        async def main() -> str:
            waiter = asyncio.ensure_future(handle)
            await asyncio.sleep(0)  # the await is in place before the task can end
            assert not waiter.done()
            asyncio.get_running_loop().call_soon_threadsafe(gate.set)
            value: str = await waiter
            return value

        assert asyncio.run(main()) == "done"


async def test_await_handle_on_the_executors_own_loop(anyio_backend: str) -> None:
    async with lp.LaneExecutor() as ex:
        handle = ex.submit(lp.ToolCall(anyio.sleep, 0, lane="query"))
        assert await handle is None
        assert handle.done() and handle.outcome == "ok"


def test_result_and_cancel_cross_from_another_thread() -> None:
    gate = threading.Event()
    with lp.LaneExecutor({"t": lp.LaneConfig(kind="thread")}) as ex:
        h = ex.submit(lp.ToolCall(event_tool, gate, lane="t"))
        with pytest.raises(TimeoutError):
            h.result(timeout=0.05)
        gate.set()
        assert h.result(timeout=10) == "done"
        never = threading.Event()
        stuck = ex.submit(lp.ToolCall(event_tool, never, lane="t"))
        stuck.cancel()
        with pytest.raises(lp.TaskCancelledError):
            stuck.result(timeout=20)
        never.set()  # the thread itself cannot be interrupted: let it end before close()


def test_arun_batch_from_a_foreign_loop_and_set_concurrency_from_a_thread() -> None:
    with lp.LaneExecutor() as ex:

        async def main() -> lp.BatchResult:
            return await ex.arun_batch([lp.ToolCall(anyio.sleep, 0) for _ in range(5)])

        b = asyncio.run(main())
        assert b.ok and len(b) == 5
        t = threading.Thread(target=ex.set_concurrency, args=("query", 7))
        t.start()
        t.join()
        assert ex.lanes["query"].limit == 7


class Payload:
    """A tool's return value we can hold a weak reference to."""


def make_payload() -> Payload:
    return Payload()


@pytest.mark.parametrize("mode", ["parallel", "auto"])
def test_no_return_value_outlives_its_batch_result(mode: str) -> None:
    with lp.LaneExecutor() as ex:
        b = ex.run_batch([lp.ToolCall(make_payload, lane="execute") for _ in range(3)], mode=mode)
        refs = [weakref.ref(v) for v in b.results]
        del b
        gc.collect()
        assert all(r() is None for r in refs), "the executor kept a tool's return value"
        ex.run_batch([lp.ToolCall(make_payload, lane="execute")], mode=mode)  # still usable


def test_a_pool_future_gives_its_value_away() -> None:
    """The worker thread may still hold its job's future when the batch returns (a busy machine
    deschedules it between ``set_result`` and dropping it): the future must not keep the value."""
    from lanepar._threads import DaemonPool, take

    pool = DaemonPool("t")
    try:
        fut = pool.submit(make_payload)
        value = take(fut.result(timeout=20))
        assert isinstance(value, Payload)
        ref = weakref.ref(value)
        del value
        gc.collect()
        assert ref() is None and fut.done()  # ``fut`` is still alive here, as in the worker
    finally:
        assert pool.close(20) == []


def test_a_pool_starts_its_workers_off_the_submitting_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``submit`` runs on the event loop, and ``Thread.start`` waits until the new thread has
    the GIL — milliseconds beside CPU-bound tools, every lane stalled meanwhile. Only the pool's
    first start (its spawner) may happen on the submitting thread; the workers, one per body
    running at once, are started by the spawner."""
    from lanepar._threads import DaemonPool, take

    starters: list[tuple[str, int]] = []
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        starters.append((self.name, threading.get_ident()))
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    gate, running = threading.Event(), threading.Semaphore(0)

    def held(i: int) -> int:
        running.release()
        gate.wait(20)
        return i

    pool = DaemonPool("t")
    try:
        futs = [pool.submit(held, i) for i in range(4)]
        for _ in range(4):  # four bodies at once: four workers
            assert running.acquire(timeout=20)
        gate.set()
        assert [take(f.result(timeout=20)) for f in futs] == [0, 1, 2, 3]
    finally:
        gate.set()
        assert pool.close(20) == []
    mine = [n for n, ident in starters if n.startswith("t_")]
    assert [n for n, ident in starters if ident == threading.get_ident()] == ["t_spawner"]
    assert sorted(mine) == ["t_1", "t_2", "t_3", "t_4", "t_spawner"]


def test_a_job_whose_thread_cannot_start_fails_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lanepar._threads import DaemonPool

    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if not self.name.endswith("_spawner"):
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    pool = DaemonPool("t")
    delivered: list[tuple[object, BaseException | None]] = []
    try:
        fut = pool.submit_to(lambda box, error: delivered.append((box, error)), int, "1")
        with pytest.raises(RuntimeError, match="can't start new thread"):
            fut.result(timeout=20)
    finally:
        assert pool.close(20) == []
    # whoever the job delivers to (an event loop's future) learns of it too: never a hang
    ((box, error),) = delivered
    assert box is None and "can't start new thread" in str(error)


def test_a_job_delivers_on_its_thread_then_settles_its_future() -> None:
    """The event loop awaits its own future, set by ``deliver`` from the job's thread, first:
    the loop is what waits for a result. Drains and interrupts keep using the pool's future,
    settled right after (a drain that asks meanwhile waits those few µs)."""
    from lanepar._threads import DaemonPool, take

    pool = DaemonPool("t")
    seen: list[tuple[object, object, bool, int]] = []
    done = threading.Event()
    futs: list[Any] = []

    def deliver(box: list[Any] | None, error: BaseException | None) -> None:
        seen.append((take(box) if box else None, error, futs[0].done(), threading.get_ident()))
        done.set()

    go = threading.Event()

    def job() -> int:
        go.wait(20)
        return 7

    try:
        futs.append(pool.submit_to(deliver, job))
        go.set()
        assert done.wait(20)
        assert futs[0].result(20) == []  # settled after, with the box the loop emptied
    finally:
        assert pool.close(20) == []
    ((value, error, settled, ident),) = seen
    assert (value, error, settled) == (7, None, False)
    assert ident != threading.get_ident()


def _first_calls_at_once(n: int) -> tuple[list[lp.BatchResult], list[BaseException]]:
    ex = lp.LaneExecutor()
    go = threading.Barrier(n)
    errors: list[BaseException] = []
    results: list[lp.BatchResult] = []

    def first_call() -> None:
        go.wait()
        try:
            results.append(ex.run_batch([lp.ToolCall(len, "ab", lane="query")]))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=first_call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ex.close()
    return results, errors


def test_threads_making_an_executors_first_calls_at_once_all_run() -> None:
    """A framework's thread pool (LangGraph's sync ``ToolNode``) makes a fresh executor's first
    calls from several threads at once: one starts the private loop, the others wait for it.
    None may be told the executor "is running on an event loop" because it looked while the
    loop was half started (the old code did, in about one round in four)."""
    for _ in range(12):
        results, errors = _first_calls_at_once(6)
        assert errors == []
        assert [b.results for b in results] == [[2]] * 6


def test_resolution_cache_is_bounded() -> None:
    from functools import partial

    from lanepar.run._submit import RESOLVE_CACHE_SIZE, Resolver

    def tool(i: int) -> int:
        return i

    lanes = lp.DEFAULT_LANES
    r = Resolver()
    for i in range(RESOLVE_CACHE_SIZE * 3):
        r(lp.ToolCall(partial(tool, i)), lanes)  # a new callable every call
    assert len(r) == RESOLVE_CACHE_SIZE


def test_trimmed_events_count_as_dropped() -> None:
    from lanepar.trace.recorder import Recorder

    rec = Recorder(max_events=10)
    for i in range(25):
        rec.add_event("limit", lane="q", limit=i)
    assert len(rec.events) == 10 and rec.dropped == 15


def test_the_private_loop_reads_its_self_pipe_before_the_turns_callbacks() -> None:
    """A sync batch starts in the callback that woke the loop, with the wake-up's pipe read
    already done (``PrivateLoop``): checked through the pipe itself, then through a flood of
    callbacks from other threads (more bytes than one read takes) that must all run."""
    import asyncio
    import socket

    from lanepar.run._loopthread import PrivateLoop

    with lp.LaneExecutor(lanes={"query": lp.LaneConfig(max_concurrency=2)}) as ex:
        ex.run_batch([])  # starts the private loop
        assert ex._bridge._loop is not None
        loop = ex._bridge._loop.loop
        assert isinstance(loop, PrivateLoop)
        pending: list[int] = []

        def in_callback() -> None:  # the pipe holds nothing more once a callback runs
            ssock: socket.socket = loop._ssock  # type: ignore[attr-defined]
            try:
                pending.append(len(ssock.recv(4096, socket.MSG_PEEK)))
            except BlockingIOError:
                pending.append(0)

        def look_then(done: threading.Event) -> None:
            in_callback()
            done.set()

        for _ in range(20):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(10)  # idle again
            done = threading.Event()
            loop.call_soon_threadsafe(look_then, done)  # one byte on the pipe
            assert done.wait(10)
        assert pending == [0] * 20

        ran: list[int] = []
        def send(k: int) -> None:
            for _ in range(5000):
                loop.call_soon_threadsafe(ran.append, k)

        senders = [threading.Thread(target=send, args=(k,)) for k in range(4)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        done = threading.Event()
        loop.call_soon_threadsafe(done.set)
        assert done.wait(30)
        assert sorted(collections.Counter(ran).values()) == [5000] * 4
        b = ex.run_batch([lp.ToolCall(lambda: 7, lane="query")])
        assert b.results == [7]


def test_only_the_main_thread_waits_in_short_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """A simulated interrupt reaches only the main thread, so only its waits are sliced short;
    another thread's wake-ups would each take the GIL from the running loop for nothing."""
    from lanepar.run import _sync, _syncbatch

    monkeypatch.setattr(_sync, "WAIT_SLICE_S", 0.005)
    monkeypatch.setattr(_sync, "OTHER_SLICE_S", 60.0)
    slices: dict[str, int] = collections.Counter()
    real = _syncbatch.OneShot.result

    def counted(self: Any, timeout: float | None = None) -> Any:
        if timeout is not None:
            slices[threading.current_thread().name] += 1
        return real(self, timeout)

    monkeypatch.setattr(_syncbatch.OneShot, "result", counted)

    async def slow() -> None:
        await asyncio.sleep(0.3)

    with lp.LaneExecutor() as ex:
        ex.run_batch([])  # the loop started
        slices.clear()
        assert ex.run_batch([lp.ToolCall(slow, lane="query")]).ok
        worker = threading.Thread(
            target=lambda: ex.run_batch([lp.ToolCall(slow, lane="query")]), name="caller"
        )
        worker.start()
        worker.join(60)
    assert slices["MainThread"] >= 10  # 300 ms in 5 ms slices (fewer on a busy machine)
    assert slices["caller"] == 1


def test_one_shot_hands_one_result_to_every_waiter() -> None:
    """The sync batch's hand-off (``OneShot``): a wait before the value times out the way a
    ``Future``'s does; once set, every waiter — those blocked already, and any later call —
    gets it, and it cannot be set twice."""
    import concurrent.futures

    from lanepar.run._syncbatch import OneShot

    shot: OneShot[int] = OneShot()
    assert not shot.done()
    with pytest.raises(concurrent.futures.TimeoutError):
        shot.result(timeout=0.01)
    got: list[int] = []
    started = threading.Barrier(4)

    def wait() -> None:
        started.wait(30)
        got.append(shot.result(timeout=60))

    waiters = [threading.Thread(target=wait) for _ in range(3)]
    for t in waiters:
        t.start()
    started.wait(30)
    shot.set_result(7)
    for t in waiters:
        t.join(60)
    assert got == [7, 7, 7]
    assert shot.done() and shot.result() == 7 and shot.result(timeout=0) == 7
    with pytest.raises(concurrent.futures.InvalidStateError):
        shot.set_result(8)
    with pytest.raises(concurrent.futures.InvalidStateError):
        shot.set_exception(ValueError("late"))
    assert shot.result() == 7


def test_one_shot_raises_the_error_it_was_given_to_each_caller() -> None:
    from lanepar.run._syncbatch import OneShot

    shot: OneShot[int] = OneShot()
    shot.set_exception(KeyError("bad call"))
    for _ in range(2):
        with pytest.raises(KeyError, match="bad call"):
            shot.result(timeout=1)


def test_arun_batch_from_a_trio_run_resumes_on_trio() -> None:
    """A sync-started executor awaited from trio: the batch runs on the executor's loop and the
    awaiting trio task is woken through its token (nothing else can end this await)."""
    import trio

    def in_thread() -> str:
        return threading.current_thread().name

    with lp.LaneExecutor() as ex:

        async def main() -> lp.BatchResult:
            return await ex.arun_batch([lp.ToolCall(in_thread, lane="execute") for _ in range(3)])

        b = trio.run(main)
        assert b.ok and len(b) == 3 and threading.main_thread().name not in b.results


def cancellable_tool() -> tuple[Callable[[], Awaitable[None]], threading.Event, threading.Event]:
    """An async tool that sleeps until cancelled, and two events: it began; it was cancelled."""
    entered, cancelled = threading.Event(), threading.Event()

    async def long_tool() -> None:
        entered.set()
        try:
            await anyio.sleep(120)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    return long_tool, entered, cancelled


async def cancel_once_entered(aw: Awaitable[Any], entered: threading.Event) -> None:
    """Await ``aw`` in a task of this (asyncio) loop and cancel the task once the tool it runs
    has begun: the cancellation comes out of it."""
    task = asyncio.ensure_future(aw)
    await asyncio.sleep(0)  # the task awaits (a batch is submitted) before it is cancelled
    while not entered.is_set():
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_cancelling_a_foreign_await_cancels_its_batch() -> None:
    """The awaiting task on another loop is cancelled while its batch runs: the batch's task is
    cancelled on the executor's loop (the tool sees it), and the executor goes on serving."""
    long_tool, entered, cancelled = cancellable_tool()
    with lp.LaneExecutor() as ex:
        asyncio.run(cancel_once_entered(ex.arun_batch([lp.ToolCall(long_tool)]), entered))
        assert cancelled.wait(60)
        assert ex.run_batch([lp.ToolCall(lambda: 3, lane="execute")]).results == [3]


def test_a_sync_run_interrupted_before_it_starts_never_submits() -> None:
    """A cancel that reaches the loop before the run's start (a stock loop defers the start a
    turn) leaves nothing to run: the start sees it and submits nothing."""
    from lanepar.run._syncbatch import SyncRun

    begun: list[int] = []
    def begin() -> tuple[Any, Any]:
        begun.append(1)
        return None, None

    run: SyncRun[int] = SyncRun(begin, lambda s: 1, set())
    assert run.interrupt(lambda b: None) is False
    run.start()
    assert begun == [] and run.fut.done()


async def test_awaiting_a_run_whose_loop_died_raises(anyio_backend: str) -> None:
    """The executor's loop thread gone with the run unsettled: the foreign await raises, as the
    sync wait does, instead of waiting forever."""
    from lanepar.run._syncbatch import SyncRun, Waker, await_shot

    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    waker = Waker()
    run: SyncRun[int] = SyncRun(lambda: (None, None), lambda s: 1, set(), waker.wake)
    with pytest.raises(RuntimeError, match="stopped before the call ended"):
        await await_shot(run.fut, waker, dead, 0.01)


def test_a_call_across_returns_or_raises_what_the_loop_did() -> None:
    """``SyncBridge.call`` on the private loop: the value, or the very error, of the function
    run there, from the main thread and from another."""
    with lp.LaneExecutor() as ex:
        on_loop: list[bool] = []
        assert ex._bridge.call(lambda: on_loop.append(ex._bridge.on_loop()) or 5) == 5
        assert on_loop == [True]
        with pytest.raises(ZeroDivisionError):
            ex._bridge.call(lambda: 1 // 0)
        got: list[int] = []
        t = threading.Thread(target=lambda: got.append(ex._bridge.call(lambda: 6)))
        t.start()
        t.join(60)
        assert got == [6]


def test_a_handle_awaited_on_trio_and_cancelled_from_asyncio() -> None:
    """A submitted call's handle awaited on a foreign trio run gets its value; a foreign
    asyncio await of another, cancelled, cancels that task on the executor's loop."""
    import trio

    long_tool, entered, cancelled = cancellable_tool()
    with lp.LaneExecutor() as ex:

        async def on_trio() -> int:
            value: int = await ex.submit(lp.ToolCall(lambda: 4, lane="execute"))
            return value

        assert trio.run(on_trio) == 4
        handle = ex.submit(lp.ToolCall(long_tool))
        asyncio.run(cancel_once_entered(handle, entered))
        assert cancelled.wait(60)
        with pytest.raises(lp.TaskCancelledError):
            handle.result(timeout=60)
