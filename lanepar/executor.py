"""`LaneExecutor`: owns the lanes, takes batches, and offers sync and async faces.

Async use runs on the caller's loop (asyncio, or trio through anyio). Sync use — including inside a
running Jupyter kernel, whose own loop is busy running the cell — starts a private event loop in a
thread through an anyio blocking portal, so ``run_batch`` never touches the caller's loop.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import psutil

from .backends.base import Backend, await_future
from .backends.local import LocalBackend
from .backends.process import ProcessBackend
from .batch import BatchResult, TaskHandle, _Batch
from .budget import SharedBudget
from .config import DEFAULT_LANES, LaneConfig, validate_lanes
from .lane import Job, Lane, TaskCancelledError
from .policy.auto import AutoPolicy, Decision, seed_rule
from .tools.registry import Resolved, ToolCall, resolve, summarize_args
from .trace.model import Delta, Trace
from .trace.recorder import Recorder
from .trace.sampler import Sampler

Mode = Literal["parallel", "sequential", "auto"]
T = TypeVar("T")
_pc = time.perf_counter_ns

_current: list[LaneExecutor] = []


def current() -> LaneExecutor:
    """The executor a ``%%lanepar`` cell (or ``with executor.activate():``) made current."""
    if not _current:
        raise RuntimeError("no current lanepar executor: use %%lanepar or executor.activate()")
    return _current[-1]


class LaneExecutor:
    """Runs tool calls on named lanes with exact per-lane limits, and traces every task.

    ``max_total`` is a budget shared by all lanes; each lane's ``min_concurrency`` slots stay
    reserved inside it. ``trace=False`` removes the probe entirely (the fastest path).
    """

    def __init__(
        self,
        lanes: Mapping[str, LaneConfig] | None = None,
        max_total: int | None = None,
        trace: bool = True,
        *,
        sample_hz: float = 20.0,
        resolution_ms: float = 0.5,
        max_segments: int = 64,
        max_tasks: int = 1_000_000,
    ) -> None:
        self.lane_configs = validate_lanes(lanes if lanes is not None else DEFAULT_LANES, max_total)
        self.max_total = max_total
        self.tracing = bool(trace)
        if resolution_ms < 0 or max_segments < 2:
            raise ValueError("resolution_ms must be >= 0 and max_segments >= 2")
        self.resolution_ns = int(resolution_ms * 1e6)
        self.max_segments = max_segments
        self.recorder = Recorder(max_tasks=max_tasks)
        self.sample_hz = sample_hz
        self._budget = SharedBudget(max_total) if max_total is not None else None
        self._lanes: dict[str, Lane] = {}
        #: The adaptive limiters of ``max_concurrency="auto"`` lanes, by lane name.
        self.limiters: dict[str, Any] = {}
        for name, cfg in self.lane_configs.items():
            self._lanes[name] = self._make_lane(name, cfg)
        if self._budget is not None:
            self._budget.attach(list(self._lanes.values()))
        self._sampler = Sampler(self.recorder, self.lane_counts, hz=sample_hz)
        self._tg: anyio.abc.TaskGroup | None = None
        self._loop_thread: int | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._portal_cm: Any = None
        self._sync_cm: Any = None
        self._async_cm: Any = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._batches: set[_Batch] = set()
        self.last_result: BatchResult | None = None
        #: Hooks for policies (auto mode learns from traces): called with each finished batch.
        self.batch_observers: list[Callable[[BatchResult], None]] = []
        self._resolved: dict[tuple[Any, ...], Resolved] = {}
        #: Auto mode's memory: per-tool profiles learnt from traced batches. Learning is
        #: deferred to the next auto decision (and bounded per batch), so executors that never
        #: use auto mode pay one list append per batch for it.
        self.auto_policy = AutoPolicy()
        self._unlearnt: collections.deque[BatchResult] = collections.deque(maxlen=16)
        if self.tracing:
            self.batch_observers.append(self._unlearnt.append)
        self._decider: Callable[[LaneExecutor, list[Resolved]], Decision] | None = None

    # -- construction helpers ----------------------------------------------------------------
    def _make_lane(self, name: str, cfg: LaneConfig) -> Lane:
        lane = Lane(
            name,
            cfg,
            self._make_backend(name, cfg),
            recorder=self.recorder if self.tracing else None,
            budget=self._budget,
            resolution_ns=self.resolution_ns,
            max_segments=self.max_segments,
        )
        if cfg.adaptive:
            from .policy.autotune import attach_to_lane

            def on_change(new: int, lane_name: str = name) -> None:
                if self.tracing:
                    self.recorder.add_event("limit", lane=lane_name, limit=new, source="adaptive")

            self.limiters[name] = attach_to_lane(lane, on_change)
        return lane

    def _make_backend(self, name: str, cfg: LaneConfig) -> Backend:
        if cfg.kind == "process":
            return ProcessBackend(name, self.resolution_ns, self.max_segments)
        if cfg.kind == "dask":
            from .backends.dask import DaskBackend

            return DaskBackend(name, cfg, self)
        return LocalBackend(name)

    @property
    def lanes(self) -> dict[str, Lane]:
        return dict(self._lanes)

    def lane_counts(self) -> dict[str, tuple[int, int, int]]:
        return {n: (ln.active, ln.queue.n, ln.limit) for n, ln in list(self._lanes.items())}

    def lane_table(self) -> dict[str, dict[str, Any]]:
        """Each lane's configuration and live limit, as traces and reports store it."""
        return {
            n: {
                "kind": ln.config.kind,
                "priority": ln.config.priority,
                "min_concurrency": ln.config.min_concurrency,
                "max_concurrency": ln.limit,
                "adaptive": ln.config.adaptive,
            }
            for n, ln in self._lanes.items()
        }

    # -- lifecycle ------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[LaneExecutor]:
        if self._tg is not None:
            raise RuntimeError("this LaneExecutor is already running")
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._loop_thread = threading.get_ident()
                for lane in self._lanes.values():
                    lane.start(tg)
                if self.tracing:
                    self._sampler.start()
                try:
                    yield self
                finally:
                    for batch in list(self._batches):
                        self._cancel_batch(batch)
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            for lane in self._lanes.values():
                lane.workers.clear()
                lane._idle.clear()
                lane.active = 0
            with anyio.CancelScope(shield=True):
                for lane in self._lanes.values():
                    await lane.backend.aclose()
            self._sampler.stop()
            self._loop_thread = None

    async def __aenter__(self) -> LaneExecutor:
        cm = self._lifespan()
        await cm.__aenter__()
        self._async_cm = cm
        return self

    async def __aexit__(self, *exc: Any) -> None:
        cm, self._async_cm = self._async_cm, None
        await cm.__aexit__(*exc)

    def __enter__(self) -> LaneExecutor:
        self._start_sync()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _start_sync(self) -> None:
        if self._portal is not None:
            return
        if self._tg is not None:
            raise RuntimeError("this LaneExecutor is running on an event loop: use `async with`")
        portal_cm = anyio.from_thread.start_blocking_portal("asyncio", name="lanepar-loop")
        portal = portal_cm.__enter__()
        try:
            sync_cm = portal.wrap_async_context_manager(self._lifespan())
            sync_cm.__enter__()
        except BaseException:
            portal_cm.__exit__(None, None, None)
            raise
        self._portal, self._portal_cm, self._sync_cm = portal, portal_cm, sync_cm
        # Runs at interpreter exit if the user never closed a lazily started executor.
        self._finalizer = weakref.finalize(self, _close_portal, sync_cm, portal_cm)

    def close(self) -> None:
        """Stop a sync executor: cancel what runs, join its threads, end its processes."""
        if self._sync_cm is None:
            return
        self._sync_cm = self._portal_cm = self._portal = None
        if self._finalizer is not None:
            self._finalizer()  # closes once; a second call is a no-op

    @property
    def running(self) -> bool:
        return self._tg is not None

    @contextlib.contextmanager
    def activate(self) -> Any:
        """Make this the executor ``lanepar.current()`` returns (what ``%%lanepar`` does)."""
        _current.append(self)
        try:
            yield self
        finally:
            _current.remove(self)

    # -- thread plumbing -----------------------------------------------------------------------
    def _on_loop(self) -> bool:
        return self._loop_thread == threading.get_ident()

    def _call_on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        if self._tg is None:
            self._start_sync()
        if self._on_loop():
            return fn(*args)
        assert self._portal is not None, "executor runs on another loop; call from that loop"
        return self._portal.call(fn, *args)

    # -- submission ----------------------------------------------------------------------------
    def _submit(
        self, calls: Iterable[ToolCall], mode: str, fail_fast: bool
    ) -> tuple[_Batch, Decision | None, str]:
        """Queue a whole batch in one step, on the loop thread. Every call is resolved first,
        so a bad tool or lane raises before anything runs."""
        if mode not in ("parallel", "sequential", "auto"):
            raise ValueError(f"mode={mode!r}: expected 'parallel', 'sequential' or 'auto'")
        calls = list(calls)
        resolved = [self._resolve(c) for c in calls]
        decision: Decision | None = None
        if mode == "auto":
            decision = self._decide(resolved)
            mode = decision.mode
            if self.tracing:
                self.recorder.add_event("decision", **decision.to_dict(), tasks=len(calls))
        batch = _Batch(
            len(calls),
            fail_fast=fail_fast,
            on_fail_fast=self._cancel_batch,
            traced=self.tracing,
        )
        rec = self.recorder if self.tracing else None
        now = batch.submitted_ns = _pc()
        per_lane: dict[Lane, list[tuple[int, Job]]] = {}
        ordered: list[tuple[Lane, int, Job]] = []
        lanes = self._lanes
        routes = decision.routes if decision else {}
        for i, (call, r) in enumerate(zip(calls, resolved)):
            lane = lanes[routes.get(i, r.lane)]
            job = Job(
                batch,
                i,
                r.fn,
                call.args,
                call.kwargs,
                r.is_async,
                r.name,
                call.timeout_s if call.timeout_s is not None else lane.config.timeout_s,
                rec.next_id() if rec is not None else 0,
                now,
            )
            if call.call_id is not None:
                job.call_id = call.call_id
            if rec is not None and (call.args or call.kwargs):
                job.args_summary = summarize_args(call.args, call.kwargs)
            if mode == "sequential":
                ordered.append((lane, call.priority, job))
            else:
                per_lane.setdefault(lane, []).append((call.priority, job))
        if rec is not None:
            rec.submitted += len(calls)
            # A job is submitted when it is in its queue, all of the batch at once: building a
            # large batch takes milliseconds, and charging that to the first tasks' dispatch
            # would hide the scheduler's real per-task overhead.
        self._batches.add(batch)
        if mode == "sequential":
            batch.lanes = {ln for ln, _, _ in ordered}
            if ordered:
                lane, prio, job = ordered[0]
                batch.sequence = collections.deque(ordered[1:])
                lane.push(((prio, job),))
        else:
            batch.lanes = set(per_lane)
            for lane, items in per_lane.items():
                lane.push(items)
        if rec is not None:
            # A job is submitted once it is in its queue, the whole batch at once (no worker can
            # run before this returns): building and queueing a large batch takes milliseconds,
            # and charging that to the first tasks' dispatch would hide the real per-task cost.
            now = batch.submitted_ns = _pc()
            for _lane, _prio, job in ordered:
                job.submitted_ns = job.pushed_ns = now
            for items in per_lane.values():
                for _prio, job in items:
                    job.submitted_ns = job.pushed_ns = now
        return batch, decision, mode

    def _decide(self, resolved: list[Resolved]) -> Decision:
        if self._decider is not None:
            return self._decider(self, resolved)
        if not self.tracing:  # nothing to learn from: the seed's rule
            return seed_rule([r.name for r in resolved])
        learnt = list(self._unlearnt)  # drained in place: batch_observers holds its append
        self._unlearnt.clear()
        self.auto_policy.learn(learnt)
        self.auto_policy.process_lane = self._process_lane_for_auto()
        return self.auto_policy.decider(self, resolved)

    def _process_lane_for_auto(self) -> str:
        """Auto mode routes CPU-heavy pure-Python tools to a process lane; when the user
        configured none, one is added (children start only when a task is routed there)."""
        for name, lane in self._lanes.items():
            if lane.config.kind == "process":
                return name
        name = "cpu" if "cpu" not in self._lanes else "auto-process"
        cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
        cfg = LaneConfig(min_concurrency=0, max_concurrency=cores, kind="process", priority=2)
        lane = self._make_lane(name, cfg)
        self.lane_configs[name] = cfg
        self._lanes[name] = lane
        if self._budget is not None:
            self._budget.add_lane(lane)
        if self._tg is not None:
            lane.start(self._tg)
        return name

    def _resolve(self, call: ToolCall) -> Resolved:
        # Agents send the same few tools over and over: resolve each (target, lane, name) once.
        try:
            key = (call.target, call.lane, call.name)
            r = self._resolved.get(key)
        except TypeError:  # an unhashable callable
            return resolve(call, self._lanes)
        if r is None:
            r = self._resolved[key] = resolve(call, self._lanes)
        return r

    def _cancel_batch(self, batch: _Batch) -> None:
        if batch.cancelled or batch.done.is_set():
            return
        batch.cancelled = True
        for lane in batch.lanes:
            for job in lane.drop(batch):
                lane.record_unstarted(job, "cancelled")
                batch.fail(job.index, TaskCancelledError(f"{job.name} was cancelled"), "cancelled")
        for job in batch.drain_sequence():
            batch.fail(job.index, TaskCancelledError(f"{job.name} was cancelled"), "cancelled")
        for lane in batch.lanes:
            lane.cancel_running(batch)

    def cancel(self) -> None:
        """Cancel every batch in flight: queued tasks are dropped, running ones cancelled."""
        if self._tg is None:
            return
        self._call_on_loop(self._cancel_all)

    def _cancel_all(self) -> None:
        for batch in list(self._batches):
            self._cancel_batch(batch)

    def _result(self, batch: _Batch, t0: int, mode: str, decision: Decision | None) -> BatchResult:
        self._batches.discard(batch)
        t1 = _pc()
        trace = None
        if batch.records is not None:
            if self.sample_hz > 0:  # a short batch still gets a sample of its own
                self._sampler.tick()
            recs = [r for r in batch.records if r is not None]
            start, end = (batch.submitted_ns, batch.end_ns) if recs else (t0, t1)
            samples, events = self.recorder.window(min(start, t0), _pc())
            trace = Trace(
                recs,
                samples,
                lanes=self.lane_table(),
                start_ns=start,
                end_ns=end,
                events=events,
                n_cores=psutil.cpu_count() or 1,
            )
        result = BatchResult(
            batch.results, batch.errors, batch.outcomes, trace, (t1 - t0) / 1e9, mode, decision
        )
        self.last_result = result
        for obs in list(self.batch_observers):
            obs(result)
        return result

    async def _await_batch(self, batch: _Batch) -> Any:
        try:
            await batch.done.wait()
        except BaseException:
            self._cancel_batch(batch)
            raise
        self._batches.discard(batch)
        if 0 in batch.errors:
            raise batch.errors[0]
        return batch.results[0]

    def _wait_batch_sync(self, batch: _Batch, timeout: float | None) -> None:
        if self._on_loop():
            raise RuntimeError("TaskHandle.result() would block the event loop: await the handle")
        assert self._portal is not None
        fut = self._portal.start_task_soon(batch.done.wait)
        try:
            _wait_interruptibly(fut, timeout)
        except KeyboardInterrupt:
            self._portal.call(self._cancel_batch, batch)
            raise

    # -- public batch API ------------------------------------------------------------------------
    async def arun_batch(
        self, calls: Iterable[ToolCall], mode: Mode = "parallel", *, fail_fast: bool = False
    ) -> BatchResult:
        """Run a batch and wait for all of it; cancelling the caller cancels the batch."""
        if not self._on_loop():
            # Awaited on a different loop (a notebook cell with a sync executor): bridge.
            self._start_sync()
            assert self._portal is not None
            fut = self._portal.start_task_soon(self._arun, list(calls), mode, fail_fast)
            return await await_future(fut)  # type: ignore[no-any-return]
        return await self._arun(calls, mode, fail_fast)

    async def _arun(self, calls: Iterable[ToolCall], mode: str, fail_fast: bool) -> BatchResult:
        t0 = _pc()
        batch, decision, chosen = self._submit(calls, mode, fail_fast)
        try:
            await batch.done.wait()
        except BaseException:
            self._cancel_batch(batch)
            raise
        return self._result(batch, t0, chosen, decision)

    def run_batch(
        self, calls: Iterable[ToolCall], mode: Mode = "parallel", *, fail_fast: bool = False
    ) -> BatchResult:
        """Run a batch from sync code (a script, a Jupyter cell). Ctrl-C / kernel interrupt
        cancels the batch cleanly before ``KeyboardInterrupt`` propagates."""
        if self._on_loop():
            raise RuntimeError("run_batch() would block the event loop: use await arun_batch()")
        self._start_sync()
        assert self._portal is not None
        fut = self._portal.start_task_soon(self._arun, list(calls), mode, fail_fast)
        try:
            return _wait_interruptibly(fut)
        except KeyboardInterrupt:
            fut.cancel()
            with contextlib.suppress(BaseException):
                fut.result(timeout=10)
            raise

    def submit(self, call: ToolCall) -> TaskHandle:
        """Queue one call; ``await`` the handle (async) or call ``.result()`` (sync)."""
        batch, _, _ = self._call_on_loop(self._submit, [call], "parallel", False)
        return TaskHandle(batch, self)

    def set_concurrency(self, lane: str, n: int) -> None:
        """Change a lane's limit now; running batches see it at their next dispatch."""
        if lane not in self._lanes:
            raise KeyError(f"unknown lane {lane!r}; lanes are {', '.join(self._lanes)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"set_concurrency({lane!r}, {n!r}): n must be an integer >= 1")
        target = self._lanes[lane]
        if self._tg is None or self._on_loop():
            target.set_limit(n)
        else:
            assert self._portal is not None
            self._portal.call(target.set_limit, n)
        if self.tracing:
            self.recorder.add_event("limit", lane=lane, limit=n, source="user")

    # -- tracing -------------------------------------------------------------------------------
    @property
    def trace(self) -> Trace:
        """Everything this executor ran so far (bounded by ``max_tasks``)."""
        t = self.recorder.snapshot(lanes=self.lane_table())
        t.n_cores = psutil.cpu_count() or 1
        return t

    def subscribe(self, callback: Callable[[Delta], None]) -> Callable[[], None]:
        """``callback(delta)`` at most 10 times a second with new records and samples, from a
        background thread. Returns a function that unsubscribes."""
        return self.recorder.subscribe(callback)


def _close_portal(sync_cm: Any, portal_cm: Any) -> None:
    try:
        sync_cm.__exit__(None, None, None)
    finally:
        portal_cm.__exit__(None, None, None)


def _wait_interruptibly(fut: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    """``fut.result()`` in short slices: a simulated interrupt (``_thread.interrupt_main``, as
    some front ends send) is only noticed between blocking calls, never inside one."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
        try:
            return fut.result(timeout=max(0.0, left))
        except concurrent.futures.TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise
