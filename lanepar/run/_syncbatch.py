"""A batch run from outside the executor's loop without a task on it: two callbacks and one
hand-off.

``run_batch`` is the call agents make per model turn, so its fixed cost is the executor's
floor. Going through the portal (``start_task_soon``) makes an anyio task, a cancel scope and a
task-group entry per batch — about 100 µs here; a thread-safe callback that submits the batch and
a completion callback that builds its result cost one loop wake-up each way. ``arun_batch``
awaited on another loop (a notebook cell's, a framework's, with the executor on its own thread)
takes the same way, with a :class:`Waker` to resume the awaiting task on its loop.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .batch import _Batch

R = TypeVar("R")


class OneShot(Generic[R]):
    """A result set once by the loop thread and waited for by the caller: the part of
    ``concurrent.futures.Future`` a sync batch uses, on one lock.

    A ``Future`` guards its state with a condition: the waiter, woken by ``notify_all`` while
    the loop thread still holds the condition's lock, at once blocks again on that lock and is
    woken a second time when the loop lets go. Two wake-ups a batch, each a futex round trip
    and a scheduling delay: a plain crossing (a callback on the loop that completes what the
    caller waits for) took 57 µs through a ``Future`` and 38 µs through a lock here
    (median of seven rounds of 2 000). The lock is made held and released once, by the loop;
    a waiter that gets it releases it at once, so every later wait (another waiter, a second
    ``result()``) returns at once."""

    __slots__ = ("_error", "_lock", "_on_set", "_set", "_value")

    def __init__(self, on_set: Callable[[], None] | None = None) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._set = False
        self._value: Any = None
        self._error: BaseException | None = None
        #: Called (on the setting thread) once the result is there: given before anyone can
        #: set it, so no registration races the setting.
        self._on_set = on_set

    def done(self) -> bool:
        return self._set

    def set_result(self, value: R) -> None:
        self._check_unset()
        self._value = value
        self._release()

    def set_exception(self, error: BaseException) -> None:
        self._check_unset()
        self._error = error
        self._release()

    def _check_unset(self) -> None:
        if self._set:
            raise concurrent.futures.InvalidStateError("this result was already set")

    def _release(self) -> None:
        self._set = True
        self._lock.release()
        if self._on_set is not None:
            self._on_set()

    def result(self, timeout: float | None = None) -> R:
        """The value (or raise the error) once set; ``concurrent.futures.TimeoutError`` if
        that takes longer than ``timeout`` seconds (None: wait as long as it takes)."""
        if not self._set:
            if not self._lock.acquire(True, -1 if timeout is None else timeout):
                raise concurrent.futures.TimeoutError
            self._lock.release()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[no-any-return]


class SyncRun(Generic[R]):
    """One sync batch: :meth:`start` and :meth:`settle` run on the loop thread; the caller
    waits on :attr:`fut`.

    ``begin()`` submits the batch and returns it with whatever ``end`` needs; ``end(state)``
    turns the finished (or interrupted) batch into the caller's result, exactly once.
    """

    __slots__ = ("_begin", "_cancelled", "_end", "_loop", "_runs", "batch", "fut", "state")

    def __init__(
        self,
        begin: Callable[[], tuple[_Batch, Any]],
        end: Callable[[Any], R],
        runs: set[SyncRun[Any]],
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self._begin = begin
        self._end = end
        self._runs = runs
        self.fut: OneShot[R] = OneShot(on_settled)
        self.batch: _Batch | None = None
        self.state: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancelled = False  # interrupted before it started: it never will

    def start_soon(self) -> None:
        """:meth:`start` now on the executor's private loop, which read its self-pipe before
        this callback ran (``_loopthread.PrivateLoop``); elsewhere one loop turn later. Called
        from the caller's thread, this woke the loop through its self-pipe, and on a stock
        loop reading that pipe is queued behind it: the batch starts after that read, which is
        then not part of its first jobs' dispatch."""
        loop = asyncio.get_running_loop()
        if getattr(loop, "self_pipe_first", False):
            self.start()
        else:
            loop.call_soon(self.start)

    def start(self) -> None:
        if self._cancelled:
            self.fut.set_exception(concurrent.futures.CancelledError())
            return
        try:
            self.batch, self.state = self._begin()
        except BaseException as e:  # a bad call: the caller raises it
            self.fut.set_exception(e)
            return
        self._runs.add(self)
        # Settled on the next loop turn, as an awaiting task would be: the last job's
        # ``task_finished`` hook runs before the batch's ``batch_finished``.
        self._loop = asyncio.get_running_loop()
        self.batch.when_done(self._done)

    def _done(self) -> None:
        assert self._loop is not None
        self._loop.call_soon(self.settle)

    def settle(self) -> None:
        """Hand the caller its result (idempotent: also what closing does with a batch that
        would not end in time)."""
        if self.batch is None or self.fut.done():
            return
        self._runs.discard(self)
        try:
            self.fut.set_result(self._end(self.state))
        except BaseException as e:
            self.fut.set_exception(e)

    def interrupt(self, cancel: Callable[[_Batch], None]) -> bool:
        """A Ctrl-C in the caller: ``cancel`` the batch (its result follows as it settles).
        False when nothing was submitted."""
        if self.batch is None:
            self._cancelled = True
            return False
        cancel(self.batch)
        return True


class Waker:
    """Resumes a task awaiting on its own loop (asyncio or trio, whichever anyio runs there)
    when another thread calls :meth:`wake`: how ``arun_batch`` awaited on a foreign loop learns
    that its :class:`SyncRun` settled. Made on the awaiting loop, before the run starts."""

    __slots__ = ("_event", "_fut", "_loop", "_token", "_woken")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fut: asyncio.Future[None] | None = None
        self._token: Any = None
        self._event: Any = None
        self._woken = False  # (asyncio: only ever touched on the awaiting loop)
        loop = asyncio._get_running_loop()  # (None: trio, the other loop anyio drives)
        if loop is not None:
            self._loop = loop
        else:
            import trio

            self._token = trio.lowlevel.current_trio_token()
            self._event = trio.Event()

    def wake(self) -> None:
        """From any thread, any number of times; a loop that has ended is nobody's to wake
        (asyncio's closed loop and trio's finished run both raise ``RuntimeError``)."""
        try:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._resolve, True)
            else:
                self._token.run_sync_soon(self._event.set)
        except RuntimeError:
            pass

    def _resolve(self, woken: bool) -> None:
        self._woken = self._woken or woken
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait(self, timeout: float) -> bool:
        """Until woken (True) or ``timeout`` seconds have passed (False); cancellable. On
        asyncio a future and a timer of its own (``asyncio.wait`` costs a set, a waiter and
        callbacks on top: 15-20 µs a batch here)."""
        loop = self._loop
        if loop is None:
            import trio

            with trio.move_on_after(timeout):
                await self._event.wait()
                return True
            return False
        if not self._woken:
            fut = self._fut = loop.create_future()
            timer = loop.call_later(timeout, self._resolve, False)
            try:
                await fut
            finally:
                timer.cancel()
                self._fut = None
        return self._woken


async def await_shot(
    fut: OneShot[R], waker: Waker, thread: threading.Thread | None, slice_s: float
) -> R:
    """``fut``'s result, awaited through the ``waker`` it calls as it is set; a loop ``thread``
    that died with it unset raises instead of leaving the caller waiting (as
    ``wait_interruptibly`` does)."""
    while not await waker.wait(slice_s):
        if fut.done():
            break
        if thread is not None and not thread.is_alive():
            raise RuntimeError("the executor's event loop stopped before the call ended")
    return fut.result(timeout=0)


def fill(shot: OneShot[R], fn: Callable[..., R], args: tuple[Any, ...]) -> None:
    """On the loop thread: ``shot`` gets what ``fn(*args)`` returns or raises."""
    try:
        value = fn(*args)
    except BaseException as e:
        shot.set_exception(e)
        return
    shot.set_result(value)


def arm_done(batch: _Batch, shot: OneShot[None]) -> None:
    """On the loop thread: ``shot`` is set once ``batch`` has ended, a loop turn after its last
    job settled (as :meth:`SyncRun._done` does: a waiter woken inside that job's step would
    wait for the GIL the step still holds)."""
    loop = asyncio.get_running_loop()

    def done() -> None:
        loop.call_soon(shot.set_result, None)

    batch.when_done(done)
