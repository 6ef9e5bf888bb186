"""`LaneExecutor`: owns the lanes, takes batches, and offers sync and async faces.

Async use runs on the caller's loop (asyncio, or trio through anyio). Sync use — including inside a
running Jupyter kernel, whose own loop is busy running the cell — runs a private event loop in a
thread; every crossing between the two goes through :mod:`lanepar.run._sync`.

Policies (auto mode, adaptive limits) and live views plug in through seams — ``BatchPolicy`` and
observers — so this module imports neither ``policy`` nor ``jupyter``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import anyio
import anyio.abc

from .._exceptions import LaneConfigError
from ..backends.base import BackendContext
from ..backends.factory import make_backend
from ..backends.local import SharedThreads
from ..config import DEFAULT_LANES, MAX_CONCURRENCY, LaneConfig, check_options, validate_lanes
from ..tools.registry import ToolCall
from ..trace.hooks import Observers, is_observer
from ..trace.model import Delta, Trace
from ..trace.recorder import Recorder
from ..trace.sampler import Sampler
from . import _seams
from ._current import current as current
from ._current import push_current
from ._loopobs import LoopObservers
from ._nested import caller_lane, enter_nested, leave_nested
from ._submit import Resolver, async_only, build_batch
from ._sync import SyncBridge
from ._syncbatch import SyncRun
from .batch import BatchResult, TaskHandle, _Batch, cancel_batch, finish_batch, wind_down
from .budget import SharedBudget
from .lane import Lane

_pc = time.perf_counter_ns
#: After a Ctrl-C, how long run_batch waits for the cancelled batch to settle.
INTERRUPT_GRACE_S = 1.0
#: On close, how long running batches get to settle as cancelled.
WIND_DOWN_S = 0.5
Mode = Literal["parallel", "sequential", "auto"]
MODES: tuple[str, ...] = ("parallel", "sequential", "auto")

_ENTERED_ASYNC = "this LaneExecutor is running on an event loop: use `async with`"


def _check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected 'parallel', 'sequential' or 'auto'")
    return str(mode)


class LaneExecutor:
    """Runs tool calls on named lanes with exact per-lane limits, and traces every task.

    ``max_total`` is a budget shared by all lanes; each lane's ``min_concurrency`` slots stay
    reserved inside it. ``trace=False`` removes the probe entirely (the fastest path). ``mode``
    is what a batch runs as when its call does not say (``%%lanepar --mode`` sets it per cell).
    """

    def __init__(
        self,
        lanes: Mapping[str, LaneConfig] | None = None,
        *,
        max_total: int | None = None,
        trace: bool = True,
        mode: Mode = "parallel",
        sample_hz: float = 20.0,
        resolution_ms: float = 0.5,
        max_segments: int = 64,
        max_tasks: int = 1_000_000,
        loop_block_ms: float | None = 50.0,
        auto_policy: _seams.BatchPolicy | None = None,
    ) -> None:
        self._configs = validate_lanes(lanes if lanes is not None else DEFAULT_LANES, max_total)
        self.max_total = max_total
        self.tracing = bool(trace)
        self.default_mode: str = _check_mode(mode)
        check_options(sample_hz=sample_hz, resolution_ms=resolution_ms,
                      max_segments=max_segments, max_tasks=max_tasks)  # fmt: skip
        if loop_block_ms is not None and not loop_block_ms > 0:
            raise LaneConfigError(f"loop_block_ms={loop_block_ms!r} must be > 0, or None (off)")
        self.loop_block_ms = loop_block_ms
        self.resolution_ns = int(resolution_ms * 1e6)
        self.max_segments = max_segments
        self.recorder = Recorder(max_tasks=max_tasks)
        self.sample_hz = sample_hz
        self._hooks = Observers()
        self._owner = object()  # identity token: which lanes' tasks are ours (nested batches)
        self._nested: set[_Batch] = set()
        self._budget = SharedBudget(max_total) if max_total is not None else None
        self._threads = SharedThreads()  # the lanes' sync bodies run on these
        self._lanes = {name: self._make_lane(name, cfg) for name, cfg in self._configs.items()}
        if self._budget is not None:
            self._budget.attach(list(self._lanes.values()))
        for name, cfg in self._configs.items():
            if cfg.adaptive:
                self.add_observer(_seams.adaptive_observer(self, name))
        self._sampler = Sampler(self.recorder, self.lane_counts, hz=sample_hz)
        self._tg: anyio.abc.TaskGroup | None = None
        self._bridge = SyncBridge(self._lifespan)
        self._async_cm: Any = None
        self._batches: set[_Batch] = set()
        self._sync_runs: set[SyncRun[Any]] = set()
        ticks = self._sampler if sample_hz > 0 else None  # (its ticks taken on the loop)
        self._loop_obs = LoopObservers(self.recorder, ticks) if self.tracing else None
        self._resolve = Resolver()
        #: The policy of ``mode="auto"`` batches, made (and subscribed) on first use, so an
        #: executor that never runs auto mode keeps nothing for it.
        self.auto_policy: _seams.BatchPolicy | None = auto_policy
        if auto_policy is not None and is_observer(auto_policy):
            self.add_observer(auto_policy)

    # -- lanes ---------------------------------------------------------------------------------
    def _make_lane(self, name: str, cfg: LaneConfig) -> Lane:
        emit = self.recorder.add_event if self.tracing else None
        ctx = BackendContext(name, self.resolution_ns, self.max_segments, emit, self._threads.get)
        return Lane(name, cfg, make_backend(ctx, cfg),
                    recorder=self.recorder if self.tracing else None, hooks=self._hooks,
                    budget=self._budget, resolution_ns=self.resolution_ns,
                    max_segments=self.max_segments, owner=self._owner)  # fmt: skip

    @property
    def lanes(self) -> dict[str, _seams.LaneView]:
        """Read-only views of the lanes (name, kind, limit, active, pending, config)."""
        return {n: _seams.LaneView(ln) for n, ln in self._lanes.items()}

    @property
    def lane_configs(self) -> dict[str, LaneConfig]:
        return dict(self._configs)

    def add_lane(self, name: str, config: LaneConfig) -> None:
        """Add a lane, also while running (auto mode adds a process lane for CPU-heavy tools)."""
        if name in self._lanes:
            raise LaneConfigError(f"lane {name!r} exists already")
        validate_lanes({**self._configs, name: config}, self.max_total)
        if self.running:
            self._bridge.call(self._add_lane, name, config)
        else:
            self._add_lane(name, config)

    def _add_lane(self, name: str, config: LaneConfig) -> None:
        self._configs[name], lane = config, self._make_lane(name, config)
        self._lanes[name] = lane
        if self._budget is not None:
            self._budget.add_lane(lane)
        if self._tg is not None:
            lane.start(self._tg)
        if config.adaptive:
            self.add_observer(_seams.adaptive_observer(self, name))

    def lane_counts(self) -> dict[str, tuple[int, int, int]]:
        return {n: (ln.active, ln.queue.n, ln.limit) for n, ln in list(self._lanes.items())}

    def lane_table(self) -> dict[str, dict[str, Any]]:
        """Each lane's configuration and live limit, as traces and reports store it."""
        return _seams.lane_table(self._lanes)

    # -- observers -----------------------------------------------------------------------------
    def add_observer(self, observer: Any) -> None:
        """Call ``observer.task_finished(record)`` / ``observer.batch_finished(result)`` (those it
        defines) on the executor's loop thread. One that raises is removed and logged."""
        self._hooks.add(observer)

    def remove_observer(self, observer: Any) -> None:
        self._hooks.remove(observer)

    # -- lifecycle -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[LaneExecutor]:
        if self._tg is not None:
            raise RuntimeError("this LaneExecutor is already running")
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._bridge.loop_thread = threading.get_ident()
                for lane in self._lanes.values():
                    lane.start(tg)
                if self.tracing:
                    self._sampler.start()
                if self._loop_obs is not None:
                    self._loop_obs.start(self.loop_block_ms)
                try:
                    yield self
                finally:
                    await wind_down(list(self._batches), WIND_DOWN_S)
                    for run in list(self._sync_runs):  # a body ignored cancellation: return
                        run.settle()  # what finished rather than leave run_batch waiting
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            for lane in self._lanes.values():
                lane.reset()
            with anyio.CancelScope(shield=True):
                for lane in self._lanes.values():
                    await lane.backend.aclose()
                self._threads.close()
            self._sampler.stop()
            if self._loop_obs is not None:
                self._loop_obs.stop()
            self._bridge.loop_thread = None

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

    def _start_sync(self) -> None:  # the bridge asks, under its lock, whether it may start
        self._bridge.start(lambda: _ENTERED_ASYNC if self._tg is not None else None)

    def close(self) -> None:
        """Stop a sync executor: cancel what runs, join its threads, end its processes."""
        self._bridge.close()

    @property
    def running(self) -> bool:
        return self._tg is not None

    @contextlib.contextmanager
    def activate(self) -> Iterator[LaneExecutor]:
        """Make this the executor ``lanepar.current()`` returns (what ``%%lanepar`` does)."""
        with push_current(self):
            yield self

    # -- submission ----------------------------------------------------------------------------
    def _submit(
        self, calls: Iterable[ToolCall], mode: str | None, fail_fast: bool
    ) -> tuple[_Batch, _seams.Decision | None, str]:
        """Queue a whole batch in one step, on the loop thread (see ``_submit.build_batch``)."""
        mode = self.default_mode if mode is None else _check_mode(mode)
        calls = list(calls)
        lanes = self._lanes
        resolved = self._resolve.all(calls, lanes)
        decision: _seams.Decision | None = None
        if mode == "auto":
            if self.auto_policy is None:
                self.auto_policy = _seams.default_auto_policy()
                if is_observer(self.auto_policy):
                    self.add_observer(self.auto_policy)
            decision = self.auto_policy.decide_batch(self, resolved)
            mode = decision.mode
            if self.tracing:
                self.recorder.add_event("decision", **decision.to_dict(), tasks=len(calls))
        sampled = self.tracing and self.sample_hz > 0
        opened = self._sampler.open_window(async_only(resolved)) if sampled else 0
        build = functools.partial(build_batch, calls, resolved, self._lanes, mode=mode,
                                  routes=decision.routes if decision else {},
                                  recorder=self.recorder if self.tracing else None,
                                  fail_fast=fail_fast, on_fail_fast=cancel_batch)  # fmt: skip
        obs = self._loop_obs
        batch = obs.first_batch(build) if obs and not self._batches else build()
        batch.opened_ns = opened
        self._batches.add(batch)
        return batch, decision, mode

    def cancel(self) -> None:
        """Cancel every batch in flight: queued tasks are dropped, running ones cancelled."""
        if self._tg is not None:
            self._bridge.call(self._cancel_all)

    def _cancel_all(self) -> None:
        for batch in list(self._batches):
            cancel_batch(batch)

    def _result(
        self, batch: _Batch, t0: int, mode: str, decision: _seams.Decision | None, later: bool
    ) -> BatchResult:
        self._batches.discard(batch)
        if self._loop_obs is not None and not self._batches:
            self._loop_obs.idle()
        result = finish_batch(batch, t0, mode, decision, self.recorder, self.lane_table,
                              self._sampler if self.sample_hz > 0 else None, later)  # fmt: skip
        if self._hooks.batch_finished:
            self._hooks.emit("batch_finished", result)
        return result

    # -- public batch API ------------------------------------------------------------------------
    async def arun_batch(
        self, calls: Iterable[ToolCall], mode: Mode | None = None, *, fail_fast: bool = False
    ) -> BatchResult:
        """Run a batch and wait for all of it; cancelling the caller cancels the batch. Awaited
        from another loop (a notebook cell with a sync executor), it runs as ``run_batch`` does."""
        nested = caller_lane(self._owner)
        if self._bridge.on_loop() or (self._tg is not None and not self._bridge.private):
            return await self._bridge.aawait(self._arun, list(calls), mode, fail_fast, nested)
        self._start_sync()
        begin = functools.partial(self._begin, list(calls), mode, fail_fast, nested)
        return await self._bridge.arun(begin, self._end, self._sync_runs, cancel_batch)

    async def _arun(
        self, calls: list[ToolCall], mode: str | None, fail_fast: bool, nested: str | None
    ) -> BatchResult:
        batch, state = self._begin(calls, mode, fail_fast, nested)
        try:
            await batch.done.wait()
        except BaseException:
            cancel_batch(batch)
            # Cancelled workers settle on their next turn of the loop: wait for them, so that
            # when the caller's cancellation (or Ctrl-C) propagates no task of it is running.
            with anyio.CancelScope(shield=True):
                await batch.done.wait()
            leave_nested(self._lanes, self._nested, nested, batch)
            raise
        return self._end(state, later=True)  # (the caller is a task on this loop)

    def _begin(
        self, calls: list[ToolCall], mode: str | None, fail_fast: bool, nested: str | None
    ) -> tuple[_Batch, tuple[Any, ...]]:
        """Submit a batch (on the loop thread); returns it and what ``_end`` needs."""
        t0 = _pc()
        batch, decision, chosen = self._submit(calls, mode, fail_fast)
        enter_nested(self._lanes, self._nested, nested, batch)
        return batch, (batch, t0, chosen, decision, nested)

    def _end(self, state: tuple[Any, ...], later: bool = False) -> BatchResult:
        batch, t0, chosen, decision, nested = state
        leave_nested(self._lanes, self._nested, nested, batch)
        return self._result(batch, t0, chosen, decision, later)

    def run_batch(
        self, calls: Iterable[ToolCall], mode: Mode | None = None, *, fail_fast: bool = False
    ) -> BatchResult:
        """Run a batch from sync code (a script, a Jupyter cell). A Ctrl-C / kernel interrupt
        cancels the batch and returns what finished (``interrupted`` set, the rest cancelled);
        a second one while it winds down raises ``KeyboardInterrupt``."""
        if self._bridge.on_loop():
            raise RuntimeError("run_batch() would block the event loop: use await arun_batch()")
        self._start_sync()
        nested = caller_lane(self._owner)
        begin = functools.partial(self._begin, list(calls), mode, fail_fast, nested)
        run: SyncRun[BatchResult] = SyncRun(begin, self._end, self._sync_runs)
        self._bridge.soon(run.start_soon)
        try:
            return self._bridge.result(run.fut)
        except KeyboardInterrupt:
            if not self._bridge.call(run.interrupt, cancel_batch):
                raise  # interrupted before the batch was submitted: nothing ran
            try:  # cancelled: ends at once, unless a body ignores cancellation
                result = self._bridge.result(run.fut, INTERRUPT_GRACE_S)
            except concurrent.futures.TimeoutError:
                self._bridge.call(run.settle)
                result = run.fut.result()
            result.interrupted = True
            if self.tracing:
                self.recorder.add_event("interrupted", tasks=len(result))
            return result

    def submit(self, call: ToolCall) -> TaskHandle:
        """Queue one call; ``await`` the handle (from any loop) or call ``.result()`` (sync)."""
        batch, _, _ = self._bridge.call(self._submit, [call], "parallel", False)
        return TaskHandle(batch, self._bridge, cancel_batch)

    def set_concurrency(self, lane: str, n: int, *, source: str = "user") -> None:
        """Change a lane's limit now; running batches see it at their next dispatch."""
        if lane not in self._lanes:
            raise KeyError(f"unknown lane {lane!r}; lanes are {', '.join(self._lanes)}")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CONCURRENCY:
            raise LaneConfigError(
                f"set_concurrency({lane!r}, {n!r}): n must be an integer in 1..{MAX_CONCURRENCY}"
            )
        target = self._lanes[lane]
        if self._tg is None:
            target.set_limit(n)
        else:
            self._bridge.call(target.set_limit, n)
        if self.tracing:
            self.recorder.add_event("limit", lane=lane, limit=n, source=source)

    # -- tracing -------------------------------------------------------------------------------
    def snapshot(self) -> Trace:
        """Everything this executor ran so far (bounded by ``max_tasks``), as one trace."""
        return self.recorder.snapshot(lanes=self.lane_table())

    def subscribe(self, callback: Callable[[Delta], None]) -> Callable[[], None]:
        """``callback(delta)`` at most 10 times a second with new records and samples: from the
        executor's event loop while its batches run, else from the sampler's thread. Returns a
        function that unsubscribes."""
        return self.recorder.subscribe(callback)
