"""Dask lanes: task bodies run on a ``dask.distributed`` cluster.

The lane keeps doing what it does for every backend — priority queue, exact concurrency limit,
timeouts and cancellation through its cancel scope — and this backend only moves the body: each
lane slot's call becomes one Dask future it awaits, so the lane's limit is the number of tasks
this lane has on the cluster at once; the calls of one loop tick travel in one message
(``_dask_submit``). The client is ``distributed.Client(asynchronous=True)`` on the
executor's own loop (asyncio only: the client is built on tornado/asyncio and cannot run on trio).

With no ``address`` a ``LocalCluster`` with the lane's settings (``_dask_cluster``) is started on
first use (in ``prepare``, before the first task's deadline, so start-up shows as dispatch and
never as a timeout) and closed with the executor. It is started synchronously in a helper thread
so that its scheduler runs on its own loop, not on the executor's: the two would otherwise slow
each other down.

Times cross the wire once: a task measures itself on the worker (``dask_worker.run_task``) and
its worker-clock timestamps are converted with a per-worker offset. The offset is estimated by
bracketing ``Client.run(clock_probe)`` with the parent's clock (offset = worker − midpoint,
uncertainty = rtt / 2, the best of a few rounds); workers on this host sharing the monotonic clock
get offset 0 exactly. Each conversion is also clamped so a task starts after it was submitted and
ends before its result arrived — causality is the one bound that holds on any cluster.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import math
import pickle
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio

from ..config import LaneConfig
from ..trace.probe import TaskProbe
from ._clock import WorkerClock, causal_offset, estimate_offset
from ._dask_cluster import DEFAULT_CLUSTER_KWARGS, distributed_module, start_local_cluster
from ._dask_cluster import LOCAL_SCHEDULER_CONFIG as LOCAL_SCHEDULER_CONFIG  # (re-exported)
from ._dask_pack import DEFAULT_PACK_MS, Durations, Member
from ._dask_submit import Coalescer
from ._remote import RESULT_ERR, dumps_call, settle_reply
from .base import BackendContext, await_future, running_on_asyncio
from .dask_worker import clock_probe, cpu_sample, host_clock_id, interrupt

_pc = time.perf_counter_ns

#: Tasks running per worker thread above which a lane's refills and fetches go in waves.
DEEP_PER_THREAD = 2
#: Seconds between per-worker CPU samples while the lane has tasks on the cluster.
CPU_SAMPLE_S = 0.5
#: A worker's clock offset is re-estimated when older than this (clocks drift, NTP steps).
CLOCK_REFRESH_S = 30.0
#: Rounds of the clock ping at start-up; the round with the smallest round trip wins.
CLOCK_ROUNDS = 3
#: Bound on cleanup network calls (cancel, interrupt, close) so a dead cluster cannot hang us.
CLEANUP_TIMEOUT_S = 5.0
#: How long the first cancelled task waits for siblings cancelled with it (see _stop_remote).
STOP_GATHER_S = 0.002


class DaskLaneError(RuntimeError):
    """A Dask lane cannot run: wrong loop, scheduler unreachable, lanepar missing on workers."""


class DaskBackend:
    """Runs a lane's bodies on a Dask cluster (see the module docstring for the design)."""

    def __init__(
        self,
        ctx: BackendContext,
        cfg: LaneConfig,
        *,
        cluster_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.lane = ctx.lane
        self.address = cfg.address
        self._emit = ctx.emit
        self.resolution_ns = ctx.resolution_ns
        self.max_segments = ctx.max_segments
        self.cluster_kwargs = {**DEFAULT_CLUSTER_KWARGS, **(cluster_kwargs or {})}
        self.client: Any = None
        self.cluster: Any = None
        self.clocks: dict[str, WorkerClock] = {}
        self._host = host_clock_id()
        self._lock: anyio.Lock | None = None
        self._error: BaseException | None = None
        self._inflight = 0
        self._busy: asyncio.Event | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._io: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopping: list[tuple[Any, str]] = []
        pack_ns = int((DEFAULT_PACK_MS if cfg.pack_ms is None else cfg.pack_ms) * 1e6)
        self._coalescer = Coalescer(
            ctx.resolution_ns, ctx.max_segments, per_thread=DEEP_PER_THREAD, pack_ns=pack_ns
        )
        self._runs = Durations()  # per tool, for packing short ones
        # Keys unique across every client of a shared cluster: a random prefix, then a counter.
        self._token_prefix = uuid.uuid4().hex[:16]
        self._tokens = itertools.count()

    # -- start-up ---------------------------------------------------------------------------------
    async def prepare(self, slot: int) -> None:
        """Connect (or start the local cluster) before the task's deadline starts.

        Never raises for a broken cluster: the lane calls this outside its error handling, so a
        failure is kept and raised by ``run`` as each task's own error — the batch still ends.
        """
        with contextlib.suppress(DaskLaneError):
            await self._ensure()

    async def _ensure(self) -> Any:
        if self.client is not None:
            return self.client
        if self._error is None and not running_on_asyncio():
            self._error = DaskLaneError(
                f"lane {self.lane!r} (kind='dask') needs an asyncio event loop: distributed.Client "
                "cannot run on trio. Run the executor on asyncio (anyio.run(..., "
                "backend='asyncio')) or use its sync face (with LaneExecutor(...) as ex: "
                "ex.run_batch(...))."
            )
        if self._error is None:
            if self._lock is None:
                self._lock = anyio.Lock()
            async with self._lock:
                if self.client is None and self._error is None:
                    try:
                        await self._start()
                    except DaskLaneError as e:
                        self._error = e
                    except Exception as e:
                        where = self.address or "a new LocalCluster"
                        self._error = DaskLaneError(
                            f"lane {self.lane!r}: cannot use the Dask cluster at {where}: "
                            f"{type(e).__name__}: {e}"
                        )
        if self._error is not None:
            # A fresh exception per task: re-raising one object would chain every traceback.
            raise DaskLaneError(str(self._error)) from self._error
        return self.client

    async def _start(self) -> None:
        address = self.address
        if address is None:
            address = await await_future(self._get_io().submit(self._start_cluster))
        # Not the user's default client: their own dask code must not start using this one.
        # direct_to_workers=False is the default behaviour, said so each await skips get_worker().
        client = distributed_module().Client(
            address, asynchronous=True, set_as_default=False, direct_to_workers=False
        )
        try:
            await client
            try:
                await self._measure_clocks(client, None, on_error="raise")
            except (ImportError, AttributeError) as e:
                raise DaskLaneError(
                    f"lane {self.lane!r}: lanepar must be importable on the Dask workers "
                    f"(install it where the workers run): {type(e).__name__}: {e}"
                ) from e
        except BaseException:
            with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                await client.close()
            raise
        await self._coalescer.recount(client)
        self.client = client
        if self._emit is not None:
            self._busy = asyncio.Event()
            if self._inflight:
                self._busy.set()
            self._sampler = asyncio.get_running_loop().create_task(
                self._sample_loop(), name=f"lanepar-{self.lane}-dask-cpu"
            )

    def _start_cluster(self) -> str:
        """In the helper thread (one at a time): a start whose waiter was cancelled still
        leaves its cluster here, where the next start reuses it and ``aclose`` closes it."""
        if self.cluster is None:
            self.cluster = start_local_cluster(self.cluster_kwargs)
        return str(self.cluster.scheduler_address)

    def _get_io(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._io is None:
            self._io = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"lanepar-{self.lane}-dask"
            )
        return self._io

    # -- clocks ---------------------------------------------------------------------------------
    async def _measure_clocks(
        self, client: Any, workers: list[str] | None, on_error: str = "return"
    ) -> None:
        rounds: dict[str, list[tuple[int, int, int]]] = {}
        hosts: dict[str, str] = {}
        for _ in range(CLOCK_ROUNDS):
            t0 = _pc()
            res = await client.run(clock_probe, workers=workers, on_error=on_error)
            t1 = _pc()
            for w, r in res.items():
                if isinstance(r, BaseException):
                    continue
                rounds.setdefault(w, []).append((t0, r[0], t1))
                hosts[w] = r[1]
        for w, rs in rounds.items():
            self._set_clock(w, *estimate_offset(rs), same_host=hosts.get(w) == self._host)

    def _set_clock(self, worker: str, offset: int, unc: int, rtt: int, *, same_host: bool) -> None:
        if same_host and abs(offset) <= unc:  # the ping agrees with a shared monotonic clock
            clock = WorkerClock(0, 0, rtt, "shared", _pc())
        else:
            clock = WorkerClock(offset, unc, rtt, "ping", _pc())
        self.clocks[worker] = clock
        if self._emit is not None:
            self._emit(
                "clock", lane=self.lane, worker=worker, offset_ns=clock.offset_ns,
                uncertainty_ns=clock.uncertainty_ns, rtt_ns=rtt, method=clock.method,
            )  # fmt: skip

    async def _clock(self, client: Any, worker: str) -> WorkerClock:
        clock = self.clocks.get(worker)
        if clock is None:  # a new worker (or one restarted after a crash, at a new address)
            with contextlib.suppress(Exception):
                await self._measure_clocks(client, [worker])
            clock = self.clocks.get(worker)
            if clock is None:  # it died meanwhile: causality clamping still bounds its times
                clock = self.clocks[worker] = WorkerClock(0, -1, -1, "unknown", _pc())
        return clock

    # -- running ----------------------------------------------------------------------------------
    async def run(
        self,
        slot: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        is_async: bool,
        probe: TaskProbe | None,
        on_start: Callable[[], None] | None = None,
    ) -> Any:
        client = await self._ensure()
        name = getattr(fn, "__name__", "task").replace("-", "_") or "task"
        token, key = self._new_key(name)
        payload = dumps_call((fn, args, kwargs, is_async), fn)
        tool = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', name)}"
        self._inflight += 1
        if self._busy is not None and not self._busy.is_set():
            self._busy.set()
        fut: Any = None
        # A job with a deadline goes alone: its value must not wait for a pack-mate that runs
        # past it (a packed job's value arrives with its pack's).
        bounded = anyio.current_effective_deadline() != math.inf
        expect = None if bounded else self._runs.expect(tool)
        try:
            while True:
                sent = _pc()
                waiter = self._coalescer.submit(client, key, token, payload, expect)
                try:
                    fut = await waiter
                    recv, data = await self._coalescer.collect(client, fut)
                    break
                except Exception:
                    # Dask's own failure (KilledWorker, lost scheduler) is the task's error;
                    # a pack's is its mates' too (one that killed its worker takes the pack
                    # down): each runs again alone, under a new key, and keeps its own fate.
                    if not (isinstance(fut, Member) and fut.pack.n > 1):
                        raise
                    fut, expect = None, None
                    token, key = self._new_key(name)
                except BaseException:
                    if fut is None and waiter.done() and not waiter.cancelled():
                        fut = waiter.result()  # sent in the tick this task was cancelled
                        self._coalescer.gone(fut)  # (given up before it was collected)
                    if fut is not None:
                        await self._stop_remote(client, fut, token)
                    raise
        finally:
            self._inflight -= 1
            if not self._inflight and self._busy is not None:
                self._busy.clear()
        reply = pickle.loads(data)
        t0, t1, where = reply[2], reply[3], reply[7]
        off = 0
        if t0:
            self._runs.record(tool, t1 - t0)
        if probe is not None and t0:
            worker = where.rpartition("/")[0]
            clock = self.clocks.get(worker) or await self._clock(client, worker)
            off = causal_offset(clock.offset_ns, t0, t1, sent, recv)
        status, value = settle_reply(probe, reply, off)
        if status == RESULT_ERR:
            if isinstance(value, Exception):
                raise value
            raise RuntimeError(f"{name} raised {type(value).__name__}: {value}") from value
        return value

    def _new_key(self, name: str) -> tuple[str, str]:
        """(the token a worker knows a task by, its Dask key), unique across a shared cluster's
        clients: a random prefix, then a counter (``os.urandom`` per task drops the GIL)."""
        token = f"{self._token_prefix}{next(self._tokens):x}"
        return token, f"lanepar_{name}-{token}"  # Dask groups keys by the part before "-"

    async def _stop_remote(self, client: Any, sent: Any, token: str) -> None:
        """The task was cancelled or timed out here: make the cluster stop it too.

        ``cancel`` keeps a queued task from starting; a running one is interrupted in its worker
        thread, because Dask would let it run to the end and hold the worker meanwhile. Tasks
        cancelled together (a batch, executor close) are stopped in one ``cancel`` and one
        ``interrupt``: one at a time, the first freed thread would start a queued sibling whose
        own cancel was still on its way. A packed job is skipped or interrupted by its token
        alone; its pack's Dask task is cancelled once every job in it was stopped.
        """
        if isinstance(sent, Member):
            fut = sent.pack.fut if sent.pack.stop_one() else None
        else:
            fut = sent
        self._stopping.append((fut, token))
        if len(self._stopping) > 1:
            return  # the first task of this wave stops them all
        with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
            await anyio.sleep(STOP_GATHER_S)  # siblings cancelled in the same step join in
            wave, self._stopping = self._stopping, []
            with contextlib.suppress(Exception):
                futs = [f for f, _ in wave if f is not None]  # (a pack's once: its last stop)
                await client.cancel(futs, reason="lanepar: cancelled/timed out")
            with contextlib.suppress(Exception):
                await client.run(interrupt, [k for _, k in wave], on_error="ignore")

    # -- per-worker CPU -------------------------------------------------------------------------
    async def _sample_loop(self) -> None:
        """While this lane has tasks on the cluster, sample each worker's CPU every
        ``CPU_SAMPLE_S`` as ``worker_cpu`` events; idle, it sleeps on an event (no polling)."""
        busy = self._busy
        assert busy is not None
        while True:
            await busy.wait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sample_once(), CLEANUP_TIMEOUT_S)
            await asyncio.sleep(CPU_SAMPLE_S)

    async def _sample_once(self) -> None:
        client = self.client
        if client is None:
            return
        t0 = _pc()
        res = await client.run(cpu_sample, on_error="return")
        t1 = _pc()
        emit = self._emit
        assert emit is not None  # sampling runs only while tracing
        for w, r in res.items():
            if isinstance(r, BaseException):
                continue
            wt, pct, first = r
            clock = self.clocks.get(w)
            if clock is not None and clock.method == "ping":
                # Every sample is also a clock ping: keep the tightest, refresh a stale one.
                stale = t1 - clock.measured_ns > CLOCK_REFRESH_S * 1e9
                if t1 - t0 < clock.rtt_ns or stale:
                    self._set_clock(w, *estimate_offset([(t0, wt, t1)]), same_host=False)
                    clock = self.clocks[w]
            if not first:
                t = wt - clock.offset_ns if clock is not None else (t0 + t1) // 2
                emit("worker_cpu", lane=self.lane, worker=w, t_ns=t, cpu_percent=pct)

    # -- closing --------------------------------------------------------------------------------
    async def aclose(self) -> None:
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sampler
        client, self.client = self.client, None
        if client is not None:
            with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                with contextlib.suppress(Exception):
                    await client.close()
        io, self._io = self._io, None
        if io is not None:
            # Joins a start still in flight, so the cluster it made is closed below.
            await await_future(io.submit(self._close_cluster))
            io.shutdown(wait=True)
        self._error = None
        self._busy = None
        self._lock = None
        self.clocks = {}

    def _close_cluster(self) -> None:
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.close()

    def close_now(self) -> None:
        """Last resort from sync code: a LocalCluster runs on its own loop, so it can be closed
        from any thread; the async client dies with the executor's loop."""
        self._close_cluster()
        io, self._io = self._io, None
        if io is not None:
            io.shutdown(wait=False, cancel_futures=True)
