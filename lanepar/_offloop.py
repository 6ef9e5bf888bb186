"""The threads tools hand their blocking helpers to, off the event loop (:func:`off_loop`).

``bash`` starts programs and reads /proc there: each system call gives the GIL up and must take
it back, which beside CPU-bound tools would stall every lane if done on the loop. One pool for
the process, apart from any executor's (a tool may run under several), made on first use, kept
idle between calls (a cache, like grep's workers) and dropped in a fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.lowlevel

from ._threads import DaemonPool, await_future, take

_T = TypeVar("_T")
_pool: DaemonPool | None = None
_pool_lock = threading.Lock()


def _shared() -> DaemonPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DaemonPool("lanepar-offloop")
        return _pool


def close_off_loop() -> None:
    """Stop the idle threads (they are daemons: they also end with the process)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close(0.5)


def _forget_after_fork() -> None:
    # the child has none of the parent's threads: a pool that counts them idle would hang
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


async def off_loop(fn: Callable[[], _T]) -> _T:
    """``fn()`` on a pool thread, never abandoned: a cancelled caller still gets what it
    returned (a started program, to kill) and is cancelled at its next checkpoint.

    Not ``anyio.to_thread``: its pool starts a new thread on the calling thread, and
    ``Thread.start`` waits until that thread holds the GIL — beside CPU-bound tools a switch
    interval or more with the event loop, and every lane, standing still. This pool's spawner
    thread starts them instead (see ``DaemonPool.submit``)."""
    await anyio.lowlevel.checkpoint_if_cancelled()  # nothing is started for a cancelled caller
    fut = _shared().submit(fn)
    with anyio.CancelScope(shield=True):
        box = await await_future(fut)
    return take(box)  # type: ignore[no-any-return]
