"""A batch in flight and the handle ``submit`` returns (what it hands back: ``result``)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .._exceptions import TaskCancelledError
from .result import MIN_SAMPLE_SPAN_NS as MIN_SAMPLE_SPAN_NS
from .result import BatchResult as BatchResult
from .result import finish_batch as finish_batch

if TYPE_CHECKING:
    from ..trace.model import TaskRecord
    from ._sync import SyncBridge
    from .job import Job
    from .lane import Lane


class _Batch:
    """Book-keeping of one submitted batch, touched only on the executor's loop thread."""

    def __init__(
        self,
        n: int,
        *,
        fail_fast: bool,
        on_fail_fast: Callable[[_Batch], None],
        traced: bool,
    ) -> None:
        self.n = n
        self.results: list[Any] = [None] * n
        self.errors: dict[int, BaseException] = {}
        self.outcomes: list[str] = ["ok"] * n
        self.remaining = n
        #: Whether every job has ended (readable from any thread, unlike ``done``).
        self.finished = False
        self._done: anyio.Event | None = None
        self.cancelled = False
        self.fail_fast = fail_fast
        self._on_fail_fast = on_fail_fast
        # Indexed like the calls, so the trace comes out in submission order without a sort.
        self.records: list[TaskRecord | None] | None = [None] * n if traced else None
        self.submitted_ns = 0
        self.submitted_cpu = 0  # the loop thread's CPU clock then (0: untraced)
        self.submitted_held = -1  # ``probe.loop_held()`` then (-1: untraced)
        self.end_ns = 0  # the last finish seen, for the trace window
        #: Whether any of its jobs runs a sync body: a lane waking a worker for an all-async
        #: batch's job need not look for one to hand to a thread (``hand_early``).
        self.any_sync = False
        #: when the sample that opens this batch's window was taken (0: no sampler): the end of
        #: the batch before, when that was fresh enough to serve
        self.opened_ns = 0
        self.lanes: set[Lane] = set()
        # Sequential mode: the next job is queued only when the previous one ends.
        self.sequence: collections.deque[tuple[Lane, int, Job]] | None = None
        self._on_done: list[Callable[[], None]] | None = None
        if n == 0:
            self.finished = True

    @property
    def done(self) -> anyio.Event:
        """Set once every job has ended; made on first use, on the loop thread. A sync caller
        waits through :meth:`when_done` and never needs it: ``anyio.Event()`` asks which
        backend runs each time it is made, 7 µs here, a tenth of a one-task batch."""
        ev = self._done
        if ev is None:
            ev = self._done = _new_event()
            if self.finished:
                ev.set()
        return ev

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the batch is done (now, if it is): how a sync caller waits
        without a task on the loop. It runs inside the last job's settling, so it must only
        schedule work, never finish the batch itself."""
        if self.finished:
            callback()
        elif self._on_done is None:
            self._on_done = [callback]
        else:
            self._on_done.append(callback)

    def succeed(self, index: int, value: Any) -> None:
        self.results[index] = value
        self._one_done()

    def fail(self, index: int, exc: BaseException, outcome: str) -> None:
        if index in self.errors:
            return
        self.errors[index] = exc
        self.outcomes[index] = outcome
        if self.fail_fast and outcome in ("error", "timeout") and not self.cancelled:
            self._on_fail_fast(self)
        self._one_done()

    def _one_done(self) -> None:
        self.remaining -= 1
        seq = self.sequence
        if seq:
            lane, prio, job = seq.popleft()
            if self.cancelled:
                forget(job)
                self.fail(job.index, TaskCancelledError(f"{job.name} was cancelled"), "cancelled")
                return
            job.pushed_ns = time.perf_counter_ns()
            # a job whose body runs already (``Job.prehanded``) takes the next free slot
            lane.push(((prio, job),), front=job.prehanded is not None)
        if self.remaining <= 0:
            self.finished = True
            if self._done is not None:
                self._done.set()
            callbacks, self._on_done = self._on_done, None
            for cb in callbacks or ():
                cb()

    def drain_sequence(self) -> list[Job]:
        jobs = [j for _, _, j in self.sequence or ()]
        if self.sequence:
            self.sequence.clear()
        return jobs


def _new_event() -> anyio.Event:
    """An ``anyio.Event`` of the running backend: on asyncio its class, made directly (what
    ``anyio.Event()`` returns there, without asking sniffio which library runs)."""
    global _asyncio_event
    if asyncio._get_running_loop() is None:
        return anyio.Event()
    if _asyncio_event is None:
        _asyncio_event = type(anyio.Event())
    return _asyncio_event()


_asyncio_event: type[anyio.Event] | None = None


def forget(job: Job) -> None:
    """A job that will never run: a body already handed for it (``Job.prehanded``) is given up."""
    pre = job.prehanded
    if pre is not None:
        job.prehanded = None
        pre[1]()


def cancel_batch(batch: _Batch) -> None:
    """Cancel a batch at once: queued jobs are dropped (and recorded as such), the sequence is
    emptied, running bodies' scopes are cancelled. A no-op on a batch already done."""
    if batch.cancelled or batch.finished:
        return
    batch.cancelled = True
    for lane in batch.lanes:
        for job in lane.drop(batch):
            forget(job)
            lane.record_unstarted(job, "cancelled")
            batch.fail(job.index, TaskCancelledError(f"{job.name} was cancelled"), "cancelled")
    for job in batch.drain_sequence():
        forget(job)
        batch.fail(job.index, TaskCancelledError(f"{job.name} was cancelled"), "cancelled")
    for lane in batch.lanes:
        lane.cancel_running(batch)


async def wind_down(batches: list[_Batch], bound_s: float) -> None:
    """Closing: cancel every batch and let their waiters take their results (within
    ``bound_s``), so a ``run_batch`` blocked in another thread returns a cancelled result."""
    for batch in batches:
        cancel_batch(batch)
    with anyio.move_on_after(bound_s, shield=True):
        for batch in batches:
            await batch.done.wait()
        for _ in range(3):  # the waiters run on the next loop turns
            await anyio.lowlevel.checkpoint()


class TaskHandle:
    """What ``submit`` returns: ``await handle`` from any event loop, ``handle.result()`` in
    sync code. Both cross to the executor's loop through its sync bridge."""

    def __init__(self, batch: _Batch, bridge: SyncBridge, cancel: Callable[[_Batch], None]) -> None:
        self._batch = batch
        self._bridge = bridge
        self._cancel = cancel

    def done(self) -> bool:
        return self._batch.finished

    def _value(self) -> Any:
        if 0 in self._batch.errors:
            raise self._batch.errors[0]
        return self._batch.results[0]

    async def _wait(self) -> None:
        try:
            await self._batch.done.wait()
        except BaseException:
            self._cancel(self._batch)
            raise

    async def _result(self) -> Any:
        bridge = self._bridge
        if bridge.on_loop() or not bridge.private:
            await bridge.aawait(self._wait)
            return self._value()
        try:  # from another loop: woken on it, with no task on the executor's
            await bridge.await_done(self._batch)
        except BaseException:
            with contextlib.suppress(RuntimeError):  # (closed meanwhile: closing cancelled it)
                bridge.soon(self._cancel, self._batch)
            raise
        return self._value()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    def result(self, timeout: float | None = None) -> Any:
        """Block until the task ends (sync code only) and return its value or raise its error."""
        try:
            self._bridge.wait_done(self._batch, timeout)
        except KeyboardInterrupt:
            self.cancel()
            raise
        return self._value()

    def cancel(self) -> None:
        self._bridge.call(self._cancel, self._batch)

    @property
    def outcome(self) -> str | None:
        return self._batch.outcomes[0] if self.done() else None
