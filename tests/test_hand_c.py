"""The C hand-off (``lanepar/trace/_handc.c``) is the Python one, item for item.

A traced sync body is handed over twice from the same state, once by ``_stepc.hand_plain`` and
once by the Python path it replaces (``hand_sync`` -> ``LocalBackend.hand_off`` ->
``DaemonPool.submit_to``), into a held pool; the queued items, the probes, the handles and the
backend's slot table must agree in everything but the clock readings, and both bodies must then
run to the same result. The cases it does not take go to the Python path untouched.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lanepar as lp
from lanepar.backends.base import BackendContext
from lanepar.backends.local import LocalBackend
from lanepar.run import _hotpath
from lanepar.run.batch import _Batch
from lanepar.run.job import Job, Worker
from lanepar.trace import threadstate
from lanepar.trace._loopclock import _stepc
from lanepar.trace.probe import TaskProbe

pytestmark = pytest.mark.skipif(_stepc is None, reason="the C step driver's module is not built")

MARK = contextvars.ContextVar("mark", default="unset")


def body(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return args, tuple(sorted(kwargs.items())), MARK.get()


class _Lane:
    """What ``hand_sync`` reads of its lane."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.resolution_ns, self.max_segments = 500_000, 64
        self.recorder = type("R", (), {"live": False})()


async def warm_up(backend: LocalBackend) -> None:
    """What a fan-out finds after an executor's first batch: the pool's spawner under way, the
    thread watch taken, and the loop's hand-off parts looked up (``_at``)."""
    await backend.collect(0, backend.hand_off(0, body, (), {}, None))
    if backend._watch is None:  # (taken even where LANEPAR_THREADSTATE=0 turns it off)
        backend._watch = threadstate.acquire()
    await backend.collect(0, backend.hand_off(0, body, (), {}, TaskProbe()))


def python_hand(lane: Any, w: Worker, job: Job, free: int, into: Any) -> Any:
    """``hand_sync`` with the C path switched off (the reference)."""
    saved, _hotpath._hand_c = _hotpath._hand_c, None
    try:
        return _hotpath.hand_sync(lane, w, job, free, into)
    finally:
        _hotpath._hand_c = saved


def state_of(probe: Any) -> dict[str, Any]:
    slots = ("resolution", "max_segments", "segs", "p_start", "p_end", "p_cpu", "p_wait",
             "cpu_ns", "wait_ns", "started_ns", "finished_ns")  # fmt: skip
    seen = {k: getattr(probe, k) for k in slots}
    seen["segs"] = [list(seg) for seg in probe.segs]  # (as handed: the body fills them later)
    seen["dict"] = {k: v for k, v in vars(probe).items() if k != "hand_held"}
    seen["hand_held"] = type(vars(probe).get("hand_held"))
    return seen


def shape(item: Any, pool: Any, backend: LocalBackend, handle: Any) -> dict[str, Any]:
    """An item and its handle with this run's own objects named and clock readings dropped."""
    fut, run, call, deliver = item
    guarded, fn, probed, inner, kw = call
    probe, pbody, fargs, kwargs, tt, watch, handed, clock, loop = inner
    hfut, afut, hprobe, free, hhanded, hand_cpu = handle
    return {
        "fut": (type(fut).__name__, fut.done(), fut is hfut, fut._condition is pool.condition),
        "run": (run.__self__.__class__.__name__, run.__name__),
        "call": (guarded.__name__, fn, probed.__name__, fargs, kwargs, kw, tt),
        "mine": (pbody == pool.body, watch is backend._watch, clock == backend._at[4],
                 loop is backend._at[5], handed is hhanded, probe is hprobe),
        "handed": (type(handed), len(handed), hand_cpu >= 0),
        "deliver": (type(deliver), deliver.args == (afut,), deliver.func == backend._at[3]),
        "probe": state_of(probe),
        "free": free,
        "running": backend._running.get(0) is fut,
    }


@settings(max_examples=60, deadline=None)
@given(
    args=st.lists(st.integers(), max_size=3).map(tuple),
    kwargs=st.dictionaries(st.sampled_from("xyz"), st.integers(), max_size=2),
    where=st.sampled_from(["slot", "batch", "neither"]),
    worker_ctx=st.booleans(),
    into=st.booleans(),
    late=st.booleans(),
)
def test_the_c_hand_off_queues_what_the_python_one_does(
    args: tuple[int, ...], kwargs: dict[str, int], where: str, worker_ctx: bool, into: bool,
    late: bool,
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        backend = LocalBackend(BackendContext("t"))
        pool: Any = backend._get_pool()
        lane: Any = _Lane(backend)
        try:
            await warm_up(backend)
            got = []
            now = time.perf_counter_ns() - (400_000 if late else 0)
            for c_path in (True, False):
                batch = _Batch(1, fail_fast=False, on_fail_fast=lambda b: None, traced=True)
                batch.submitted_ns, batch.submitted_cpu, batch.submitted_held = now, 77, 5
                job = Job(batch, 0, body, args, kwargs, False, "body", None, 1, now)
                w = Worker(0)
                w.free_at, w.free_cpu, w.free_held = now - 1, 11, 3
                if worker_ctx:
                    w.ctx = contextvars.copy_context()
                    w.ctx.run(MARK.set, "the worker's")
                free = {"slot": w.free_at, "batch": now, "neither": now + 1}[where]
                fut = loop.create_future() if into else None
                pool.hold()
                try:
                    if c_path:
                        h = _stepc.hand_plain(backend, w, job, free, fut, 500_000, 64)
                    else:
                        h = python_hand(lane, w, job, free, fut)
                    assert h is not None
                    item = pool._held[-1]
                    got.append(shape(item, pool, backend, h))
                finally:
                    pool.release()
                value = await backend.collect(0, h)
                got[-1]["value"] = value
                if fut is not None:
                    assert h[1] is fut
            assert got[0] == got[1]
            assert got[0]["value"] == (args, tuple(sorted(kwargs.items())),
                                       "the worker's" if worker_ctx else "unset")  # fmt: skip
        finally:
            backend.close_now()
            pool.close(5)

    asyncio.run(main())


def test_a_fan_out_takes_the_c_path_and_the_rest_the_python_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    python: list[str] = []
    real = LocalBackend.hand_off

    def spy(self: LocalBackend, *a: Any, **k: Any) -> Any:
        python.append(self.lane)
        return real(self, *a, **k)

    monkeypatch.setattr(LocalBackend, "hand_off", spy)
    monkeypatch.setenv("LANEPAR_THREADSTATE", "1")  # (the C path is for watched bodies)
    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=4)}
    calls = [lp.ToolCall(body, i, lane="t") for i in range(4)]
    with lp.LaneExecutor(lanes) as ex:
        first = ex.run_batch(calls)  # the first hand-off takes the watch and starts the threads
        assert python
        python.clear()
        b = ex.run_batch(calls)
        assert python == [] and b.results == first.results
        assert all(r.cpu_ns + r.wait_ns + r.gil_ns + r.runq_ns > 0 for r in b.trace.tasks)
        seen: list[Any] = []
        unsubscribe = ex.subscribe(seen.append)  # a live view's entries are made before
        try:
            assert ex.run_batch(calls).results == first.results
        finally:
            unsubscribe()
        assert python == []  # (its running entries: tests/test_live_paths.py)
        seq = ex.run_batch(calls, mode="sequential")  # a sequence is chained in Python
        assert seq.results == first.results and python


def test_a_pool_closed_under_the_c_hand_off_fails_as_the_python_one_does() -> None:
    async def main() -> None:
        backend = LocalBackend(BackendContext("t"))
        pool: Any = backend._get_pool()
        lane: Any = _Lane(backend)
        await warm_up(backend)
        batch = _Batch(1, fail_fast=False, on_fail_fast=lambda b: None, traced=True)
        job = Job(batch, 0, body, (), {}, False, "body", None, 1, time.perf_counter_ns())
        pool.close(5)
        assert _stepc.hand_plain(backend, Worker(0), job, 0, None, 500_000, 64) is None
        with pytest.raises(RuntimeError, match="thread pool is closed"):
            _hotpath.hand_sync(lane, Worker(0), job, 0)
        backend.close_now()

    asyncio.run(main())


def test_the_python_path_stays_whole_without_the_c_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hotpath, "_hand_c", None)
    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=3)}
    with lp.LaneExecutor(lanes) as ex:
        for _ in range(2):
            b = ex.run_batch([lp.ToolCall(body, i, lane="t") for i in range(3)])
            assert [r[0] for r in b.results] == [(0,), (1,), (2,)]


def test_the_c_hand_off_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="takes 7 arguments"):
        _stepc.hand_plain()
