"""One lane: a priority queue and a fixed pool of workers that pull from it.

No task is spawned per call and nothing polls: a worker sleeps on its own event only when the
queue is empty and is woken by the submission that fills it. A worker runs bodies inline, so a
call costs a deque pop and an ``await`` — the reason lanepar beats ``gather`` + ``Semaphore``,
which creates a task and a future per call.

Each worker owns a cancel scope around the job it runs: cancelling or timing out one job cancels
that scope and the worker starts a fresh one, so no per-job scope is paid on the hot path.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._exceptions import TaskCancelledError
from ..backends.base import Backend, tool_exit
from ..config import LaneConfig
from ..trace._late import late_start
from ..trace.hooks import Observers
from ..trace.probe import (
    TaskProbe,
    activate,
    deactivate,
    loop_held,
    loop_mark,
    loop_state,
    stepped,
)
from ._hotpath import CONTENTION_MIN_NS, collect_handed, drop_handed, hand_early, run_job, running
from ._nested import BODY
from ._offers import adopt, claim, filled, lowered, restock
from ._settle import drain_interrupted, finish_interrupted, finish_job, settle, unstarted_probe
from .job import FutureWake, Job, Worker, wake_factory
from .jobqueue import JobQueue

if TYPE_CHECKING:
    from .batch import _Batch
    from .budget import SharedBudget

_pc = time.perf_counter_ns

#: A worker yields to the loop after this many jobs that never suspended, so a lane of instant
#: coroutines cannot starve the other lanes.
FAIRNESS_EVERY = 64
#: Process children (interpreters) and workers (idle coroutines) started ahead of the first batch
WARM_MAX, WORKERS_WARM = 8, 32
#: The longest back-off between two attempts of a retried job.
MAX_BACKOFF_S = 30.0


class Lane:
    def __init__(
        self,
        name: str,
        config: LaneConfig,
        backend: Backend,
        *,
        recorder: Any = None,
        hooks: Observers | None = None,
        budget: SharedBudget | None = None,
        resolution_ns: int = 500_000,
        max_segments: int = 64,
        owner: object = None,
    ) -> None:
        self.name = name
        self.owner = owner
        #: Tasks of this lane waiting for a batch they submitted (see ``_nested``).
        self.nested_waiting = 0
        self.config = config
        self.backend = backend
        self.recorder = recorder
        self.hooks = hooks if hooks is not None else Observers()
        self.budget = budget
        self.resolution_ns = resolution_ns
        self.max_segments = max_segments
        self.limit = config.initial_limit
        self.queue: JobQueue[Job] = JobQueue()
        self.active = 0
        self.peak_active = 0
        self.workers: dict[int, Worker] = {}
        self._idle: list[Worker] = []
        self.offered: dict[Any, tuple[Job, Any]] = {}  # (``_offers``: by their pool futures)
        self._tg: anyio.abc.TaskGroup | None = None
        # Backends with per-slot resources (a child process, a remote worker) set them up here,
        # before a task's deadline starts.
        self._prepare: Callable[[int], Awaitable[None]] | None = getattr(backend, "prepare", None)
        # Async bodies on local lanes run right here, skipping the backend call on the hot path.
        self.inline_async = config.kind in ("async", "thread")
        self._defers_deadline = bool(getattr(backend, "defers_deadline", False))
        #: Async bodies that take the hot paths of :mod:`._hotpath` (no child to prepare).
        self._inline = self.inline_async and self._prepare is None
        self._event: Callable[[], anyio.Event | FutureWake] = anyio.Event

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self._event = wake_factory()
        self._spawn(warm=min(self.limit, WORKERS_WARM))
        warm = getattr(self.backend, "warm", None)
        if warm is not None:  # process children start ahead of need, in the background
            tg.start_soon(warm, min(self.limit, WARM_MAX), name=f"lanepar-{self.name}-warm")

    def _spawn(self, warm: int = 0) -> None:
        """Start workers for the queued jobs no idle worker will take, never beyond the limit,
        and up to ``warm`` in all (``WORKERS_WARM`` at most: a large limit costs nothing idle).
        A worker made as its job arrives costs that job, and every job handed out after it in
        the batch, its start (a task, a cancel scope): 15-20 µs of dispatch each."""
        tg = self._tg
        if tg is None:
            return
        need = max(min(self.queue.n - len(self._idle), self.limit - len(self.workers)),
                   warm - len(self.workers))  # fmt: skip
        slot = 0
        while need > 0:
            while slot in self.workers:
                slot += 1
            w = self.workers[slot] = Worker(slot)
            # The slot exists (is free) from now, not from when its coroutine first runs: a
            # job waiting for that start waits for the executor (dispatch), not for capacity.
            w.free_at, w.free_held = _pc(), loop_held()
            tg.start_soon(self._worker_main, w, name=f"lanepar-{self.name}-{slot}")
            need -= 1

    def reset(self) -> None:
        """Forget the workers of a finished run (the task group that ran them has ended)."""
        self.workers.clear()
        self._idle.clear()
        self.active = 0
        self._tg = None

    def set_limit(self, n: int) -> None:
        """Apply a new limit now: new slots start at once, surplus slots retire after their job."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"lane {self.name!r}: concurrency {n!r} must be an integer >= 1")
        lowered(self, n)  # (a thread of a surplus slot must not start one more)
        self.limit = n
        self._spawn()
        for w in list(self._idle):
            if w.slot >= n and w.wake is not None:
                self._idle.remove(w)
                w.wake.set()

    @property
    def pending(self) -> int:
        return self.queue.n

    # -- submission ------------------------------------------------------------------------------
    def push(self, jobs: Iterable[tuple[int, Job]], front: bool = False) -> None:
        """Queue (priority, job) pairs in one step (``front``: ahead of all others) and wake as
        many idle workers as needed (``_submit.push_lanes`` does it for several lanes at once)."""
        owed = self.queue.push_front(jobs) if front else self.queue.push(jobs)
        while owed and self.wake_one():
            owed -= 1
        self.pushed(owed)

    def wake_one(self, hand_only: bool = False) -> bool:
        """Wake one idle worker for a queued job; False when none is idle (``hand_only``: or
        when the job it would take is not one to hand to a thread now). A traced sync job (no
        deadline or retries) that the woken worker would take is handed to a thread right here
        (``hand_early``): a batch's threads then all start before the first woken worker runs,
        instead of one per worker wake-up and task switch."""
        if not self._idle:
            return False
        w = self._idle.pop()
        wake = w.wake
        if (self._inline and self.budget is None and w.slot < self.limit
                and hand_early(self, w, self.queue)):  # fmt: skip
            self.active += 1
            if self.active > self.peak_active:
                self.peak_active = self.active
            if isinstance(wake, FutureWake):  # its result wakes it (see FutureWake)
                return True
        elif hand_only:
            self._idle.append(w)
            return False
        if wake is not None:
            wake.set()
        return True

    def pushed(self, owed: int) -> None:
        """After a push: workers for the ``owed`` jobs no idle one woke for, the budget, offers."""
        if owed > 0:
            self._spawn()
        if self.budget is not None:
            self.budget.work_arrived(self)
        elif owed > 0 or self.offered:
            restock(self)

    def drop(self, batch: _Batch) -> list[Job]:  # (cancellation must not wait for workers)
        dropped = self.queue.remove_if(lambda j: j.batch is batch)  # (one a thread took runs:
        return [j for j in dropped if j.offer is None or claim(self, j)]  # its worker stops it)

    def cancel_running(self, batch: _Batch | None) -> None:
        for w in self.workers.values():
            if w.job is not None and (batch is None or w.job.batch is batch) and w.scope:
                w.scope.cancel()

    # -- workers ---------------------------------------------------------------------------------
    async def _worker_main(self, w: Worker) -> None:
        BODY.set((self.owner, self.name))  # once per worker: tasks it runs see their lane
        w.ctx = contextvars.copy_context()
        try:
            while True:
                with anyio.CancelScope() as scope:
                    w.scope = scope
                    if await self._serve(w, scope):
                        return
                job, w.job = w.job, None
                if w.handed is not None:  # cancelled before it woke to collect it
                    drop_handed(w)
                    self.active -= 1  # (the hand-off counted it)
                if job is not None:
                    finish_interrupted(self, w, job)
                    await drain_interrupted(self, w, job)
                    del job
                w.freed(0, _pc(), loop_held())  # the interrupted job held the slot until now
                if self.offered:  # (its thread may have taken an offered job as it ended)
                    adopt(self, w, 0)
        finally:
            if self.workers.get(w.slot) is w:
                del self.workers[w.slot]
            if w in self._idle:
                self._idle.remove(w)

    async def _serve(self, w: Worker, scope: anyio.CancelScope) -> bool:
        """Run jobs until retired (True) or until this scope was cancelled (False)."""
        budget = self.budget
        since_yield = 0
        clock = loop_state()  # this loop thread's (``loop_held()`` without its call, per job)
        while True:
            handed, w.handed = w.handed, None
            granted = 0
            if handed is not None:  # given to a thread as it was queued: collect it
                job = w.job
                assert job is not None
                if job.batch.cancelled:  # (an offered job taken as its batch was cancelled)
                    scope.cancel()
                coro = collect_handed(self, w, job, *handed)
            else:
                if w.slot >= self.limit:
                    return True
                if scope.cancel_called:
                    return False
                if not self.queue.n:
                    ev = w.wake = self._event()
                    self._idle.append(w)
                    await ev.wait()
                    w.wake = None
                    since_yield = 0
                    continue
                if budget is not None:
                    if not budget.try_acquire(self):
                        await budget.acquire(self)
                        since_yield = 0
                    granted = _pc()
                    if not self.queue.n or w.slot >= self.limit:
                        budget.release(self)
                        continue
                job = self.queue.pop()
                if job.batch.cancelled:
                    if budget is not None:
                        budget.release(self)
                    self.record_unstarted(job, "cancelled")
                    job.batch.fail(job.index, TaskCancelledError(f"{job.name} was cancelled"),
                                   "cancelled")  # fmt: skip
                    del job  # an idle worker must not keep a finished batch (and its results)
                    continue
                if job.offer is not None and not claim(self, job):
                    continue  # (a thread has it: its slot's worker adopts it)
                w.job = job
                self.active += 1
                if self.active > self.peak_active:
                    self.peak_active = self.active
                coro = run_job(self, w, job, granted)
                if self.active == self.limit:  # (it may have just filled up: offer what waits)
                    filled(self)
            body_end = 0
            try:
                body_end = await coro
            finally:
                self.active -= 1
                if budget is not None:
                    budget.release(self)
            w.job = None
            del job  # an idle worker must not keep a finished batch (and its results) alive
            # The slot is free from its body's end, not from when this coroutine resumed (late on
            # a GIL-bound loop): a task waiting meanwhile waited for the executor, not capacity.
            w.freed(body_end, _pc(), clock.held)
            if self.offered:  # (its thread may have taken an offered job as the body ended)
                adopt(self, w, body_end)
            since_yield += 1
            if since_yield >= FAIRNESS_EVERY:
                since_yield = 0
                # The slot stays free while lent to the rest of the loop: a job waiting through
                # this checkpoint is charged dispatch (executor overhead), never queued.
                await anyio.lowlevel.checkpoint()

    async def _run(self, w: Worker, job: Job, granted: int) -> int:
        """Run a job to its end: attempts in a loop (retries are opt-in and bounded), then one
        record and one outcome. Whatever the body raises — even ``SystemExit`` — is the job's.
        Returns when the body ended (0 when unknown: untraced, or it never ran)."""
        if self._prepare is not None:
            try:  # a child that cannot start is this task's error, never the lane's end
                await self._prepare(w.slot)
            except Exception as e:
                start = max(job.pushed_ns, w.free_at, granted)
                finish_job(self.name, self.recorder, self.hooks, job, w.slot, start, None, None, e,
                           "error")  # fmt: skip
                return 0
        while True:
            free = max(job.pushed_ns, w.free_at, granted)
            probe = None
            if self.recorder is not None:
                probe = TaskProbe(self.resolution_ns, self.max_segments)
                probe.free_cpu_ns, probe.free_held = w.clocks_at(free, job)
            error, value = await self._attempt(w, job, free, probe)
            if error is None or not self._may_retry(job):
                break
            await self._backoff(job, error)  # not under the task's deadline
            granted = _pc()
        finish_job(self.name, self.recorder, self.hooks, job, w.slot, free, probe, value, error,
                   "ok" if error is None else "error")  # fmt: skip
        w.free_cpu = probe.end_loop_cpu_ns if probe is not None else 0
        w.free_held = probe.end_loop_held if probe is not None else -1
        return probe.finished_ns if probe is not None else 0

    async def _attempt(
        self, w: Worker, job: Job, free: int, probe: TaskProbe | None
    ) -> tuple[Exception | None, Any]:
        scope = w.scope
        assert scope is not None
        on_start: Callable[[], None] | None = None
        w.deadline = math.inf
        if job.timeout_s is not None:
            timeout = job.timeout_s

            def start_deadline() -> None:
                w.deadline = scope.deadline = anyio.current_time() + timeout

            if self._defers_deadline:
                on_start = start_deadline
            else:
                start_deadline()
        rec = self.recorder
        token: contextvars.Token[Any] | None = None
        if probe is not None:
            if rec.live:
                running(self, w, job)
            token = activate(probe)
        try:
            if job.is_async and self.inline_async:  # the hot path: no backend frames
                if probe is None:
                    return None, await job.fn(*job.args, **job.kwargs)
                cpu, mark = time.thread_time_ns(), loop_mark()
                try:
                    return None, await stepped(job.fn(*job.args, **job.kwargs), probe)
                finally:  # waking this worker waited for other tools or the GIL: not overhead
                    if probe.started_ns - free > CONTENTION_MIN_NS:
                        late_start(probe, free, probe.free_cpu_ns, cpu, probe.free_held, mark)
            if probe is not None:
                probe.started_ns = free  # what the backend may measure its hand-off from
            return None, await self.backend.run(
                w.slot, job.fn, job.args, job.kwargs, job.is_async, probe, on_start
            )
        except Exception as e:
            return e, None
        except (SystemExit, KeyboardInterrupt) as e:  # raised by the tool, not by a real Ctrl-C
            return tool_exit(job.fn, e), None
        finally:
            if token is not None:
                deactivate(token)
            if job.timeout_s is not None:
                scope.deadline = math.inf

    def _may_retry(self, job: Job) -> bool:
        return job.attempt < job.retries and not job.batch.cancelled

    async def _backoff(self, job: Job, error: Exception) -> None:
        delay = min(self.config.retry_backoff_s * (2.0 ** min(job.attempt, 30)), MAX_BACKOFF_S)
        job.attempt += 1
        if self.recorder is not None:
            self.recorder.running.pop(job.id, None)
            self.recorder.add_event("retry", lane=self.name, task=job.id, attempt=job.attempt,
                                    error=repr(error)[:300])  # fmt: skip
        await anyio.sleep(delay)

    def record_unstarted(self, job: Job, outcome: str) -> None:
        """A queued job dropped before it ran still shows in the trace (all queued)."""
        if self.recorder is not None:
            now = _pc()
            self.recorder.add(settle(self.name, job, -1, now, unstarted_probe(now), outcome, None))
