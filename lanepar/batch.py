"""A batch in flight, its user-facing result, and the handle ``submit`` returns."""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import anyio

from .lane import TaskCancelledError
from .trace.model import TaskRecord, Trace

if TYPE_CHECKING:
    from .lane import Job, Lane
    from .policy.auto import Decision


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

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_first(self) -> None:
        """Raise the first error (by index), for callers who want exceptions after all."""
        if self.errors:
            raise self.errors[min(self.errors)]

    def __len__(self) -> int:
        return len(self.results)


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
        self.end_ns = 0  # the last finish seen, for the trace window
        self.lanes: set[Lane] = set()
        # Sequential mode: the next job is queued only when the previous one ends.
        self.sequence: collections.deque[tuple[Lane, int, Job]] | None = None
        if n == 0:
            self.done.set()

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
                self.fail(job.index, TaskCancelledError(f"{job.name} was cancelled"), "cancelled")
                return
            job.pushed_ns = time.perf_counter_ns()
            lane.push(((prio, job),))
        if self.remaining <= 0:
            self.done.set()

    def drain_sequence(self) -> list[Job]:
        jobs = [j for _, _, j in self.sequence or ()]
        if self.sequence:
            self.sequence.clear()
        return jobs


class TaskHandle:
    """What ``submit`` returns: ``await handle`` in async code, ``handle.result()`` in sync code."""

    def __init__(self, batch: _Batch, executor: Any) -> None:
        self._batch = batch
        self._executor = executor

    def done(self) -> bool:
        return self._batch.done.is_set()

    def _value(self) -> Any:
        if 0 in self._batch.errors:
            raise self._batch.errors[0]
        return self._batch.results[0]

    def __await__(self) -> Generator[Any, None, Any]:
        return self._executor._await_batch(self._batch).__await__()  # type: ignore[no-any-return]

    def result(self, timeout: float | None = None) -> Any:
        """Block until the task ends (sync code only) and return its value or raise its error."""
        self._executor._wait_batch_sync(self._batch, timeout)
        return self._value()

    def cancel(self) -> None:
        self._executor._call_on_loop(self._executor._cancel_batch, self._batch)

    @property
    def outcome(self) -> str | None:
        return self._batch.outcomes[0] if self.done() else None
