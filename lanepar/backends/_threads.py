"""Daemon worker threads for sync tool bodies, made on demand, reused, never waited on forever.

Not ``concurrent.futures.ThreadPoolExecutor``: Python joins its threads at interpreter exit, so a
tool that hangs (a model-chosen ``input()``, a stuck socket) would keep the interpreter from ever
exiting. A thread cannot be killed, but a body the executor has given up on (timed out, cancelled,
closing) can be *asked* to stop: :meth:`DaemonPool.interrupt` raises :class:`BodyAbandoned` in its
thread at the next Python instruction it runs (``PyThreadState_SetAsyncExc``, the mechanism
behind Ctrl-C in the main thread). A spinning body ends at once and its ``finally`` blocks run;
one blocked inside a C call (``time.sleep``, a socket read) ends when that call returns. What
lanepar promises beyond that is that it stops waiting — bounded, on close — and that the slot
stays taken while the body runs (see ``LocalBackend``).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

_Item = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]] | None
_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)


class BodyAbandoned(BaseException):
    """Raised inside a sync tool body whose task lanepar has already settled (timed out,
    cancelled, executor closing), so the body stops instead of running on unseen. A
    ``BaseException``, like ``KeyboardInterrupt``: a tool's ``except Exception`` does not eat it."""


def take(box: list[Any]) -> Any:
    """The value a pool future carried (it leaves the box: see ``DaemonPool._work``)."""
    return box.pop()


class DaemonPool:
    """``submit(fn, *args) -> Future`` of ``[fn(*args)]``, a box :func:`take` empties; idle
    threads park on a shared queue.

    An interrupt reaches only a tool's own code: the backend wraps the tool's function in
    :meth:`body`, and :meth:`interrupt` raises in a thread only while it is inside one. lanepar's
    bookkeeping around the body (the probe, the thread watch) never has an exception appear in
    the middle of it; at most one passes through its ``finally`` blocks, as any tool error does.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._q: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._n = 0
        # all three only under ``_lock``, keyed by thread ident
        self._job: dict[int, concurrent.futures.Future[Any]] = {}  # the future it works for
        self._inside: set[int] = set()  # inside a tool's code (``body``)
        self._asked: set[int] = set()  # told to stop (once per job)

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: the thread pool is closed")
            self._q.put((fut, fn, args))
            if not self._idle.acquire(blocking=False):
                self._n += 1
                t = threading.Thread(target=self._work, name=f"{self.name}_{self._n}", daemon=True)
                self._threads.add(t)
                t.start()
        return fut

    def body(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run a tool's own function where :meth:`interrupt` can reach it (on a pool thread)."""
        ident = threading.get_ident()
        with self._lock:
            if ident in self._asked:  # given up on before it began
                raise BodyAbandoned()
            self._inside.add(ident)
        try:
            return fn(*args, **kwargs)
        finally:
            self._leave(ident)

    def _leave(self, ident: int) -> None:
        """Out of the tool's code: an interrupt sent as it returned is withdrawn (under the lock
        that sending takes, so none can arrive after)."""
        with self._lock:
            if ident in self._inside:
                self._inside.discard(ident)
                if ident in self._asked:
                    _set_async_exc(ident, ctypes.py_object())  # NULL: clear a pending one

    def interrupt(self, fut: concurrent.futures.Future[Any]) -> bool:
        """Tell the thread working for ``fut`` to stop: :class:`BodyAbandoned` at the tool's next
        Python instruction, or as it enters the tool. ``False`` when no thread works for it."""
        with self._lock:
            for ident, job in self._job.items():
                if job is fut:
                    if ident not in self._asked:
                        self._asked.add(ident)
                        if ident in self._inside:
                            _set_async_exc(ident, BodyAbandoned)
                    return True
        return False

    def _work(self) -> None:
        ident = threading.get_ident()
        try:
            while True:
                item = self._q.get()
                if item is None:
                    return
                fut, fn, args = item
                if fut.set_running_or_notify_cancel():
                    with self._lock:
                        self._job[ident] = fut
                    try:
                        # boxed: the awaiting side takes the value out of the box, so this
                        # thread, not yet past ``del`` below when the batch returns on a busy
                        # machine, never keeps a tool's return value alive after its batch
                        fut.set_result([fn(*args)])
                    except BaseException as e:  # the body's fault is its future's, not ours
                        fut.set_exception(e)
                    finally:
                        self._leave(ident)  # the tool's own ``finally`` may have been cut short
                        with self._lock:
                            del self._job[ident]
                            self._asked.discard(ident)
                del item, fut, fn, args  # a parked thread must not keep a result alive
                self._idle.release()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def close(self, timeout: float) -> list[str]:
        """Stop every thread, waiting at most ``timeout`` seconds in all; bodies still running
        are interrupted first. Returns the names of threads still running a body after that
        (abandoned: they are daemons and end with the process, or when their C call returns)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            running = list(self._job.values())
        for fut in running:
            self.interrupt(fut)
        for _ in threads:
            self._q.put(None)
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive()]
