"""The private event loop of a sync executor: a daemon thread, an anyio portal, a held lifespan.

Not ``anyio.from_thread.start_blocking_portal``: its thread comes from a ``ThreadPoolExecutor``,
which Python joins at interpreter exit *before* ``atexit`` handlers run, so an executor nobody
closed (or one whose loop a tool blocks) would hang the interpreter's exit. Here the loop thread
is a daemon, every wait on it has a bound, and live loops are closed from a threading-atexit hook
that runs before non-daemon threads are joined.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal

log = logging.getLogger("lanepar")

#: The bound on closing: leaving the lifespan (cancel, join helpers) and stopping the loop.
CLOSE_TIMEOUT_S = 1.5
#: The bound on starting the loop thread and entering the lifespan.
START_TIMEOUT_S = 60.0

_live: weakref.WeakSet[LoopThread] = weakref.WeakSet()
_atexit_registered = False
_atexit_lock = threading.Lock()


class LoopThread:
    """One running private loop holding one lifespan open until :meth:`close`."""

    def __init__(self, lifespan: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        handoff: queue.SimpleQueue[BlockingPortal | BaseException] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(
            target=self._main, args=(handoff,), name="lanepar-loop", daemon=True
        )
        self.thread.start()
        got = handoff.get(timeout=START_TIMEOUT_S)
        if isinstance(got, BaseException):
            raise got
        self.portal: BlockingPortal = got
        #: The loop itself: a crossing that needs no task (a callback) goes straight to it,
        #: at a quarter of the portal's cost.
        assert self._loop is not None  # set before the portal was handed over
        self.loop: asyncio.AbstractEventLoop = self._loop
        self._stop: anyio.Event | None = None
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._held: concurrent.futures.Future[None]
        self._held = self.portal.start_task_soon(self._hold, lifespan, ready)
        try:
            _first_of(ready, self._held, START_TIMEOUT_S)
        except BaseException:
            self._stop_portal(CLOSE_TIMEOUT_S)
            raise
        _register(self)

    def _main(self, handoff: queue.SimpleQueue[BlockingPortal | BaseException]) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            _mark_asyncio_thread()
            async with BlockingPortal() as portal:
                handoff.put(portal)
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve, backend="asyncio", backend_options=_LOOP_OPTIONS)
        except BaseException as e:  # reported to whoever is waiting for the portal
            handoff.put(e)

    async def _hold(
        self,
        lifespan: Callable[[], AbstractAsyncContextManager[Any]],
        ready: concurrent.futures.Future[None],
    ) -> None:
        async with lifespan():
            self._stop = anyio.Event()
            ready.set_result(None)
            await self._stop.wait()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Leave the lifespan and stop the loop, within ``timeout`` seconds in all. Returns
        whether it all finished; what did not (a body that ignores cancellation, a loop a tool
        blocks) is abandoned on the daemon thread and logged."""
        _live.discard(self)
        if threading.current_thread() is self.thread:
            raise RuntimeError("a LaneExecutor cannot be closed from its own event loop")
        deadline = time.monotonic() + timeout
        stop = self._stop
        if stop is not None:
            try:
                self.portal.start_task_soon(_set, stop)
            except RuntimeError:  # the portal has stopped already
                pass
        clean = True
        try:
            self._held.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            clean = False
            log.warning("lanepar: the executor did not shut down within %.1f s", timeout)
        except BaseException:
            log.exception("lanepar: error while shutting the executor down")
        return self._stop_portal(max(0.05, deadline - time.monotonic())) and clean

    def _stop_portal(self, timeout: float) -> bool:
        try:
            self.portal.start_task_soon(self.portal.stop, True)
        except RuntimeError:
            pass
        self.thread.join(timeout)
        return not self.thread.is_alive()


class PrivateLoop(asyncio.SelectorEventLoop):
    """The private loop: asyncio's own, reading its self-pipe where it learns of it.

    Every sync batch wakes this loop from another thread (``call_soon_threadsafe``: a byte on
    the self-pipe). Stock asyncio queues the pipe's reader behind the callbacks already
    waiting, so the batch's own callback would run first and the read — two ``recv`` calls, the
    second raising ``BlockingIOError`` — would land in its first jobs' dispatch; the batch's
    start was deferred a loop turn to keep it out. Here the pipe is read inside the event
    processing, before any callback of the turn runs, with one ``recv`` (level-triggered: a
    full buffer is simply readable again at the next poll): callbacks from other threads then
    run with nothing of the wake-up left to pay (``self_pipe_first``)."""

    #: Callbacks scheduled from other threads run after this turn's self-pipe read.
    self_pipe_first = True

    def _read_from_self(self) -> None:
        try:
            data = self._ssock.recv(4096)  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError):
            return
        if data:
            self._process_self_data(data)  # type: ignore[attr-defined]

    def _process_events(self, event_list: list[tuple[Any, int]]) -> None:
        fd = self._ssock.fileno()  # type: ignore[attr-defined]
        for i, (key, _mask) in enumerate(event_list):
            if key.fd == fd:
                self._read_from_self()
                event_list = event_list[:i] + event_list[i + 1 :]
                break
        super()._process_events(event_list)  # type: ignore[misc]


def _loop_options() -> dict[str, Any]:
    """The private loop's class where asyncio's internals it relies on are there."""
    base = asyncio.SelectorEventLoop
    if all(hasattr(base, a) for a in ("_read_from_self", "_process_events", "_process_self_data")):
        return {"loop_factory": PrivateLoop}
    return {}


_LOOP_OPTIONS = _loop_options()


def _mark_asyncio_thread() -> None:
    """Callbacks scheduled on this loop from other threads (see ``SyncBridge.soon``) run outside
    any task, where sniffio — which anyio asks which library runs — finds none: this thread only
    ever runs asyncio, so say so for the thread."""
    try:
        import sniffio
    except ImportError:  # anyio then asks asyncio itself, which answers in callbacks too
        return
    sniffio.thread_local.name = "asyncio"


async def _set(ev: anyio.Event) -> None:
    ev.set()


def _first_of(
    ready: concurrent.futures.Future[None], held: concurrent.futures.Future[Any], timeout: float
) -> None:
    """Wait until the lifespan is entered, or raise what made it fail."""
    done, _ = concurrent.futures.wait(
        [ready, held], timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
    )
    if ready in done:
        return
    if held in done:
        held.result()  # raises the lifespan's error
        raise RuntimeError("the executor's lifespan ended while starting")
    raise TimeoutError(f"the executor's loop did not start within {timeout} s")


def _register(loop: LoopThread) -> None:
    global _atexit_registered
    _live.add(loop)
    with _atexit_lock:
        if _atexit_registered:
            return
        try:
            # Runs before Python joins non-daemon threads at exit (where concurrent.futures'
            # own hook would otherwise wait on our helpers), unlike atexit.
            threading._register_atexit(_close_all)  # type: ignore[attr-defined]
        except RuntimeError:  # interpreter already shutting down
            return
        _atexit_registered = True


def _close_all() -> None:
    for loop in list(_live):
        loop.close()
