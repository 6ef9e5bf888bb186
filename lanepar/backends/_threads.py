"""Daemon worker threads for sync tool bodies, made on demand, reused, never waited on forever.

Not ``concurrent.futures.ThreadPoolExecutor``: Python joins its threads at interpreter exit, so a
tool that hangs (a model-chosen ``input()``, a stuck socket) would keep the interpreter from ever
exiting. A thread cannot be killed; what lanepar can promise is that the executor stops waiting
for it — bounded, on close — and that its slot stays taken while it runs (see ``LocalBackend``).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

_Item = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]] | None


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

    def _work(self) -> None:
        try:
            while True:
                item = self._q.get()
                if item is None:
                    return
                fut, fn, args = item
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(*args))
                    except BaseException as e:  # the body's fault is its future's, not ours
                        fut.set_exception(e)
                del item, fut, fn, args  # a parked thread must not keep a result alive
                self._idle.release()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def close(self, timeout: float) -> list[str]:
        """Stop every thread, waiting at most ``timeout`` seconds in all; returns the names of
        threads still running a body (abandoned: they are daemons and end with the process)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._q.put(None)
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive()]
