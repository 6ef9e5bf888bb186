"""The one bridge between the executor's event loop and everything outside it.

An executor used from sync code (a script, a Jupyter cell whose own loop is busy running the cell)
runs its lanes on a private asyncio loop in a thread, started through an anyio blocking portal.
Every blocking call and every awaitable the executor hands out crosses here, because each crossing
has the same two traps:

- a thread blocked in ``Future.result()`` never sees ``KeyboardInterrupt`` (some front ends send
  it with ``_thread.interrupt_main``, which is only noticed between bytecodes), so waits are
  sliced;
- an ``anyio.Event`` belongs to the loop that made it: awaiting it from another loop waits for
  a wake-up that loop never gets. Awaiting from a foreign loop therefore goes through a
  ``concurrent.futures.Future`` whose completion is delivered to the waiting loop thread-safely.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio.from_thread

from ..backends.base import await_future
from ._loopthread import LoopThread
from ._syncbatch import OneShot, SyncRun, Waker, arm_done, await_shot, fill

if TYPE_CHECKING:
    from .batch import _Batch

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Waitable(Protocol[T_co]):
    """What a blocking wait needs of a result: a ``concurrent.futures.Future``, or the sync
    batch's lighter ``OneShot``."""

    def result(self, timeout: float | None = None) -> T_co: ...

    def done(self) -> bool: ...


#: How long one slice of a blocking wait lasts on the main thread: the bound on noticing a
#: simulated interrupt.
WAIT_SLICE_S = 0.1
#: The same on any other thread, which no simulated interrupt reaches (``interrupt_main`` is the
#: main thread's): only the bound on noticing a dead loop thread. Each slice's end takes the GIL
#: back from a loop that is running, which gives it up at every poll and wakes the waiter each
#: time, for up to a switch interval (see ``Sampler.loop_tick``): ~0.9 µs a task of a sync
#: batch of 16-await tasks at 100 ms slices, by a scratch A/B against 1 s.
OTHER_SLICE_S = 1.0
#: The bound on waiting for a cancelled call to unwind on the loop after an interrupt.
UNWIND_TIMEOUT_S = 10.0


class SyncBridge:
    """Owns the private loop of a sync executor and every call across it.

    ``lifespan`` is the executor's async context manager; it is entered on the private loop when
    the bridge starts and left when it closes (or at interpreter exit, through a finalizer, for an
    executor nobody closed).
    """

    def __init__(self, lifespan: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        self._lifespan = lifespan
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._loop: LoopThread | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        # Several threads may make the first call at once (a framework's own thread pool):
        # exactly one of them starts the loop.
        self._lock = threading.Lock()
        #: ``threading.get_ident()`` of whichever thread runs the executor's loop (the private
        #: one, or the caller's under ``async with``); set by the executor's lifespan.
        self.loop_thread: int | None = None

    # -- where am I ------------------------------------------------------------------------------
    def on_loop(self) -> bool:
        return self.loop_thread == threading.get_ident()

    @property
    def private(self) -> bool:
        """Whether the executor runs on the private loop (started the sync way)."""
        return self._loop is not None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, refuse: Callable[[], str | None] | None = None) -> None:
        """Start the private loop and enter the lifespan on it (idempotent, thread-safe).
        ``refuse`` is asked under the lock, before starting: a reason not to start raises
        ``RuntimeError`` with it. Asked outside the lock, it would see the lifespan half entered
        by a thread that is starting the loop right now (a framework's thread pool making its
        first calls at once), and refuse a call that only had to wait."""
        if self._portal is not None:
            return
        with self._lock:
            if self._portal is None:
                why = refuse() if refuse is not None else None
                if why:
                    raise RuntimeError(why)
                self._start_locked()

    def _start_locked(self) -> None:
        loop = LoopThread(self._lifespan)
        self._loop = loop
        self._portal = loop.portal
        # Runs at interpreter exit if the user never closed a lazily started executor; holds no
        # reference to the bridge itself, or the bridge could never be collected.
        self._finalizer = weakref.finalize(self, loop.close)

    def close(self) -> None:
        """Leave the lifespan and stop the private loop (bounded: see ``_loopthread``); a
        second call is a no-op. Safe from any thread, also while ``run_batch`` waits in another:
        that batch is cancelled and its ``run_batch`` returns."""
        with self._lock:
            self._portal = None
            self._loop = None
            fin, self._finalizer = self._finalizer, None
        if fin is not None:
            fin()

    # -- crossings -----------------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run sync ``fn`` on the executor's loop thread and return its result: one thread-safe
        callback and a :class:`OneShot`, where the portal's ``call`` made a task for it
        (``submit(call).result()`` took 380-535 µs through two of those, against 100-150 for a
        one-task ``run_batch``)."""
        if self.on_loop():
            return fn(*args)
        loop = self._private()
        shot: OneShot[T] = OneShot()
        loop.loop.call_soon_threadsafe(fill, shot, fn, args)
        return wait_interruptibly(shot, None, loop.thread)

    def wait_done(self, batch: _Batch, timeout: float | None) -> None:
        """Block until ``batch`` has ended, at most ``timeout`` seconds (``TimeoutError``)."""
        if self.on_loop():
            raise RuntimeError("this call would block the executor's own event loop: await it")
        loop = self._private()
        shot: OneShot[None] = OneShot()
        loop.loop.call_soon_threadsafe(arm_done, batch, shot)
        wait_interruptibly(shot, timeout, loop.thread)

    async def await_done(self, batch: _Batch) -> None:
        """Await the end of ``batch`` on a loop other than the private one it runs on (see
        :meth:`arun`; only where :attr:`private`)."""
        loop = self._private()
        waker = Waker()
        shot: OneShot[None] = OneShot(waker.wake)
        loop.loop.call_soon_threadsafe(arm_done, batch, shot)
        await await_shot(shot, waker, loop.thread, OTHER_SLICE_S)

    def soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule sync ``fn(*args)`` on the loop thread and return at once: the cheapest
        crossing (one thread-safe callback, no task), for callers that hand back their own
        future. Callbacks run in the order they were scheduled from one thread."""
        if self.on_loop():
            fn(*args)
            return
        self._private().loop.call_soon_threadsafe(fn, *args)

    def _private(self) -> LoopThread:
        """The private loop, started if need be (``start`` always makes one); a bridge closed
        meanwhile, from another thread, has none."""
        self.start()
        loop = self._loop
        if loop is None:
            raise RuntimeError("this executor is closed")
        return loop

    def result(self, fut: Waitable[T], timeout: float | None = None) -> T:
        """Wait for a future the loop thread completes (see :meth:`soon`), interruptibly; a loop
        thread that died with the future unfinished raises instead of hanging the caller."""
        loop = self._loop
        thread = loop.thread if loop is not None else None
        return wait_interruptibly(fut, timeout, thread)

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``afn(*args)`` on the loop and block until it returns. A ``KeyboardInterrupt``
        while waiting cancels it there before propagating, so no task is left running."""
        if self.on_loop():
            raise RuntimeError("this call would block the executor's own event loop: await it")
        self.start()
        assert self._portal is not None
        # A cancelled future is done at once, before the loop has even seen the cancellation:
        # this event is set only when ``afn`` itself has unwound on the loop.
        unwound = threading.Event()

        async def tracked() -> T:
            try:
                return await afn(*args)
            finally:
                unwound.set()

        fut = self._portal.start_task_soon(tracked)
        try:
            return wait_interruptibly(fut)
        except KeyboardInterrupt:
            fut.cancel()
            unwound.wait(UNWIND_TIMEOUT_S)
            raise

    async def arun(
        self,
        begin: Callable[[], tuple[Any, Any]],
        end: Callable[[Any], T],
        runs: set[SyncRun[Any]],
        cancel: Callable[[Any], None],
    ) -> T:
        """A batch as ``run_batch`` runs it (a :class:`SyncRun`), awaited on a loop other than
        the executor's (a notebook cell's, a framework's): the awaiting task is resumed on its
        own loop by a thread-safe wake-up, and nothing runs as a task on the executor's loop.
        Through the portal (:meth:`aawait`) a one-task batch took 290-380 µs here, the sync
        call 100-130. Cancelling the awaiting task cancels the batch."""
        waker = Waker()
        run: SyncRun[T] = SyncRun(begin, end, runs, waker.wake)
        loop = self._private()
        loop.loop.call_soon_threadsafe(run.start_soon)
        try:
            return await await_shot(run.fut, waker, loop.thread, OTHER_SLICE_S)
        except BaseException:
            if not run.fut.done():
                with contextlib.suppress(RuntimeError):  # (closed meanwhile: closing cancelled it)
                    self.soon(run.interrupt, cancel)
            raise

    async def aawait(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``afn(*args)`` from whatever loop the caller runs: directly on the executor's
        own loop, through a thread-safe future from any other (asyncio or trio)."""
        if self.on_loop():
            return await afn(*args)
        self.start()
        assert self._portal is not None
        fut = self._portal.start_task_soon(afn, *args)
        return await await_future(fut)  # type: ignore[no-any-return]


def wait_interruptibly(
    fut: Waitable[T],
    timeout: float | None = None,
    thread: threading.Thread | None = None,
) -> T:
    """``fut.result()`` in slices: a simulated interrupt (``_thread.interrupt_main``, as some
    front ends send) is only noticed between blocking calls, never inside one, so the main
    thread's are short (``WAIT_SLICE_S``; other threads' ``OTHER_SLICE_S``). With the
    ``thread`` that completes ``fut``, its death ends the wait."""
    deadline = None if timeout is None else time.monotonic() + timeout
    piece = WAIT_SLICE_S if threading.current_thread() is threading.main_thread() else OTHER_SLICE_S
    while True:
        left = piece if deadline is None else min(piece, deadline - time.monotonic())
        try:
            return fut.result(timeout=max(0.0, left))
        except concurrent.futures.TimeoutError as e:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            if thread is not None and not thread.is_alive() and not fut.done():
                raise RuntimeError("the executor's event loop stopped before the call ended") from e
