"""A batch in flight, its user-facing result, and the handle ``submit`` returns."""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .._exceptions import TaskCancelledError
from ..trace.model import TaskRecord, Trace
from ..trace.recorder import Recorder
from ..trace.sampler import Sampler

#: The kernel's CPU counters tick in jiffies (``/proc/stat``, 10 ms at the usual 100 Hz): a
#: sample spanning less than one reads 0 % or 100 % whatever ran, so a batch's end is sampled
#: only when the last sample is at least this old; a shorter batch is then summarised from its
#: tasks' own CPU time (the summary says ``estimate``) instead of from a meaningless tick.
MIN_SAMPLE_SPAN_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)

if TYPE_CHECKING:
    from ._seams import Decision
    from ._sync import SyncBridge
    from .job import Job
    from .lane import Lane


@dataclasses.dataclass
class BatchResult:
    """Results in submission order; ``errors`` maps an index to the exception of that call.

    A failed call never hides its siblings' results: look at ``errors`` (or ``outcomes``) instead
    of expecting an exception.
    """

    results: list[Any]
    errors: dict[int, BaseException]
    outcomes: list[str]
    trace: Trace | None
    wall_s: float
    mode: str
    decision: Decision | None = None
    #: A Ctrl-C / kernel interrupt stopped the batch: unfinished calls are ``cancelled``.
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_first(self) -> None:
        """Raise the first error (by index), for callers who want exceptions after all."""
        if self.errors:
            raise self.errors[min(self.errors)]

    def __len__(self) -> int:
        return len(self.results)

    # Conveniences over the trace-as-data functions, for the object users hold after a run.
    def _traced(self) -> Trace:
        if self.trace is None:
            raise ValueError("this batch ran with trace=False: there is no trace to analyse")
        return self.trace

    def summary(self) -> dict[str, Any]:
        """``lanepar.summarize(self.trace)``."""
        from ..analysis.summary import summarize

        return summarize(self._traced())

    def replay(self, **kwargs: Any) -> dict[str, Any]:
        """``lanepar.replay(self.trace, ...)``: this batch under other limits or core counts."""
        from ..analysis.replay import replay

        return replay(self._traced(), **kwargs)

    def write_perfetto(self, path: str | os.PathLike[str]) -> None:
        """``lanepar.write_perfetto(self.trace, path)``."""
        from ..export.chrome import write_perfetto

        write_perfetto(self._traced(), path)

    def write_html(self, path: str | os.PathLike[str]) -> None:
        """``lanepar.write_html(self.trace, path)`` (needs the ``lab`` extra: plotly)."""
        from ..export.html import write_html

        write_html(self._traced(), path)


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
        self.done = anyio.Event()
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
            self.done.set()

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the batch is done (now, if it is): how a sync caller waits
        without a task on the loop. It runs inside the last job's settling, so it must only
        schedule work, never finish the batch itself."""
        if self.done.is_set():
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
            self.done.set()
            callbacks, self._on_done = self._on_done, None
            for cb in callbacks or ():
                cb()

    def drain_sequence(self) -> list[Job]:
        jobs = [j for _, _, j in self.sequence or ()]
        if self.sequence:
            self.sequence.clear()
        return jobs


def forget(job: Job) -> None:
    """A job that will never run: a body already handed for it (``Job.prehanded``) is given up."""
    pre = job.prehanded
    if pre is not None:
        job.prehanded = None
        pre[1]()


def cancel_batch(batch: _Batch) -> None:
    """Cancel a batch at once: queued jobs are dropped (and recorded as such), the sequence is
    emptied, running bodies' scopes are cancelled. A no-op on a batch already done."""
    if batch.cancelled or batch.done.is_set():
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


def finish_batch(
    batch: _Batch,
    t0: int,
    mode: str,
    decision: Decision | None,
    recorder: Recorder,
    lane_table: Callable[[], dict[str, dict[str, Any]]],
    sampler: Sampler | None,
) -> BatchResult:
    """The user-facing result of a finished batch, with its trace when it was traced: its own
    records in submission order, and the samples and events of its time window."""
    t1 = time.perf_counter_ns()
    trace = None
    if batch.records is not None:
        if sampler is not None and sampler.age_ns() >= MIN_SAMPLE_SPAN_NS:
            sampler.tick()  # a batch of a few jiffies still gets a sample of its own
        recs = [r for r in batch.records if r is not None]
        start, end = (batch.submitted_ns, batch.end_ns) if recs else (t0, t1)
        lo = min(t0, batch.opened_ns or t0)
        trace = recorder.trace(recs, lanes=lane_table(), start_ns=start, end_ns=end,
                               window_from_ns=lo)  # fmt: skip
    return BatchResult(
        batch.results, batch.errors, batch.outcomes, trace, (t1 - t0) / 1e9, mode, decision
    )


class TaskHandle:
    """What ``submit`` returns: ``await handle`` from any event loop, ``handle.result()`` in
    sync code. Both cross to the executor's loop through its sync bridge."""

    def __init__(self, batch: _Batch, bridge: SyncBridge, cancel: Callable[[_Batch], None]) -> None:
        self._batch = batch
        self._bridge = bridge
        self._cancel = cancel

    def done(self) -> bool:
        return self._batch.done.is_set()

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
        await self._bridge.aawait(self._wait)
        return self._value()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    def result(self, timeout: float | None = None) -> Any:
        """Block until the task ends (sync code only) and return its value or raise its error."""
        try:
            self._bridge.wait(self._batch.done.wait, timeout)
        except KeyboardInterrupt:
            self.cancel()
            raise
        return self._value()

    def cancel(self) -> None:
        self._bridge.call(self._cancel, self._batch)

    @property
    def outcome(self) -> str | None:
        return self._batch.outcomes[0] if self.done() else None
