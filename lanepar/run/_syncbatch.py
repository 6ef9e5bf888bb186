"""A batch run from sync code without a task on the loop: two callbacks and one future.

``run_batch`` is the call agents make per model turn, so its fixed cost is the executor's
floor. Going through the portal (``start_task_soon``) makes an anyio task, a cancel scope and a
task-group entry per batch — about 100 µs here; a thread-safe callback that submits the batch and
a completion callback that builds its result cost one loop wake-up each way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .batch import _Batch

R = TypeVar("R")


class SyncRun(Generic[R]):
    """One sync batch: :meth:`start` and :meth:`settle` run on the loop thread; the caller
    waits on :attr:`fut`.

    ``begin()`` submits the batch and returns it with whatever ``end`` needs; ``end(state)``
    turns the finished (or interrupted) batch into the caller's result, exactly once.
    """

    __slots__ = ("_begin", "_end", "_loop", "_runs", "batch", "fut", "state")

    def __init__(
        self,
        begin: Callable[[], tuple[_Batch, Any]],
        end: Callable[[Any], R],
        runs: set[SyncRun[Any]],
    ) -> None:
        self._begin = begin
        self._end = end
        self._runs = runs
        self.fut: concurrent.futures.Future[R] = concurrent.futures.Future()
        self.batch: _Batch | None = None
        self.state: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
            return False
        cancel(self.batch)
        return True
