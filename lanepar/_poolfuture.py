"""The future of one job on lanepar's thread pool: a ``concurrent.futures.Future`` whose lock is
shared with the other jobs of its pool.

A plain ``Future()`` builds a ``threading.Condition`` of its own: a Python ``__init__``, an RLock,
a deque and five bound methods. That was the largest single cost of handing a sync body to a
thread (1.2 of the ~7 µs the loop spent per hand-off on a batch's fan-out, measured with
timestamps along the path), and nine of the objects each job left for the garbage collector.
One ``Condition`` per pool does the same job: its lock is only ever held for a few
instructions, and a job's future is almost never waited on by blocking (the loop is woken
through its inbox; ``concurrent.futures.wait`` installs waiters of its own).

It stays a real ``concurrent.futures.Future`` (``asyncio.wrap_future`` and
``concurrent.futures.wait`` check for one and use its lock). The one difference a shared lock
makes is that a ``notify_all`` for one job wakes threads blocked on another; :meth:`result`
and :meth:`exception`, whose base versions wait once and then give up, wait again until their
own future is done or their time is up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED))


class PoolFuture(concurrent.futures.Future[T]):
    """A future under ``condition``, the pool's shared one (see the module's docstring)."""

    def __init__(self, condition: threading.Condition) -> None:
        # not the base ``__init__``: that builds the Condition this class exists to share
        self._condition = condition
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []

    def _settled(self, timeout: float | None) -> None:
        """Block until this future is done or ``timeout`` seconds have passed, through the
        wake-ups meant for the pool's other futures."""
        if self._state in _DONE:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._state not in _DONE:
                if deadline is None:
                    self._condition.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._condition.wait(left)

    def result(self, timeout: float | None = None) -> T:
        self._settled(timeout)
        return super().result(0)  # done now, or its time is up (the base raises TimeoutError)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._settled(timeout)
        return super().exception(0)


def running_on_asyncio() -> bool:
    """Whether this thread runs an asyncio loop (else trio, the other loop anyio drives).

    Asked of asyncio itself because anyio no longer depends on sniffio; through the getter that
    returns None rather than raising, because a body's hand-off asks it every time."""
    return asyncio._get_running_loop() is not None


async def await_future(fut: concurrent.futures.Future[Any]) -> Any:
    """Await a ``concurrent.futures.Future`` on whichever loop anyio is running.

    anyio has no public way to await a foreign future; asyncio's ``wrap_future`` is the cheapest
    bridge, and on trio a done-callback re-enters the loop through its token."""
    if running_on_asyncio():
        return await asyncio.wrap_future(fut)
    import trio

    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:  # the loop ended first: nobody is waiting any more
            pass

    fut.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        fut.cancel()
        raise
    return fut.result()
