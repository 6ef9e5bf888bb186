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


class DaemonPool:
    """``submit(fn, *args) -> Future``; idle threads park on a shared queue."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._q: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._n = 0
        #: thread ident -> the future whose body it runs now; only under ``_lock``
        self._busy: dict[int, concurrent.futures.Future[Any]] = {}
        self._interrupted: set[int] = set()  # idents sent an interrupt for their current body

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

    def interrupt(self, fut: concurrent.futures.Future[Any]) -> bool:
        """Raise :class:`BodyAbandoned` in the thread running ``fut``'s body, at most once per
        body; ``False`` when no thread runs it (not started, or already returned)."""
        with self._lock:
            for ident, running in self._busy.items():
                if running is fut:
                    if ident not in self._interrupted:
                        self._interrupted.add(ident)
                        _set_async_exc(ident, BodyAbandoned)
                    return True
        return False

    def _settled(self, ident: int) -> None:
        """The body of ``ident`` returned: no interrupt may land after this in the pool's own
        code, so a pending one (sent as the body returned) is withdrawn under the lock."""
        with self._lock:
            self._busy.pop(ident, None)
            if ident in self._interrupted:
                self._interrupted.discard(ident)
                _set_async_exc(ident, ctypes.py_object())  # NULL: clear a pending exception

    def _work(self) -> None:
        ident = threading.get_ident()
        try:
            while True:
                item = self._q.get()
                if item is None:
                    return
                fut, fn, args = item
                if fut.set_running_or_notify_cancel():
                    self._run_one(ident, fut, fn, args)
                del item, fut, fn, args  # a parked thread must not keep a result alive
                self._idle.release()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _run_one(
        self,
        ident: int,
        fut: concurrent.futures.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> None:
        ok, value, error = False, None, None
        try:
            with self._lock:
                self._busy[ident] = fut
            try:
                value, ok = fn(*args), True
            except BaseException as e:  # the body's fault is its future's, not ours
                error = e
            finally:
                self._settled(ident)
        except BodyAbandoned as e:  # landed between the body's return and ``_settled``
            self._settled(ident)
            ok, error = False, e
        # the interrupt is withdrawn: the future is set outside its reach
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(error if error is not None else BodyAbandoned())

    def busy(self) -> int:
        """Threads running a body now."""
        with self._lock:
            return len(self._busy)

    def close(self, timeout: float) -> list[str]:
        """Stop every thread, waiting at most ``timeout`` seconds in all; bodies still running
        are interrupted first. Returns the names of threads still running a body after that
        (abandoned: they are daemons and end with the process, or when their C call returns)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            running = list(self._busy.values())
        for fut in running:
            self.interrupt(fut)
        for _ in threads:
            self._q.put(None)
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive()]
