"""Short jobs share a Dask task ("packs"): the plan is pure, and each packed job keeps its fate.

The plan and the bookkeeping are checked without a cluster (a fake client records what a wave
sends); the behaviour on a real cluster is in ``test_dask_batching.py`` and ``test_dask_lane.py``.
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lanepar as lp
from lanepar.backends._dask_pack import PACK_MAX, Durations, Member, Pack, plan
from lanepar.backends._dask_submit import Coalescer
from lanepar.backends._remote import dumps_call
from lanepar.backends.dask_worker import run_pack

MS = 1_000_000

expected_lengths = st.lists(st.one_of(st.none(), st.integers(0, 300 * MS)), max_size=80)


@given(expected_lengths, st.integers(-1, 12), st.integers(-1, 200 * MS))
def test_a_plan_covers_the_wave_in_order_within_its_bounds(
    expected: list[int | None], spread: int, pack_ns: int
) -> None:
    sizes = plan(expected, spread, pack_ns)
    assert sum(sizes) == len(expected) and all(s >= 1 for s in sizes)
    if spread < 1 or pack_ns <= 0:
        assert sizes == [1] * len(expected)
        return
    assert max(sizes, default=1) <= min(PACK_MAX, max(1, len(expected) // spread))
    if len(expected) >= spread:
        assert len(sizes) >= spread  # every worker thread's next task is queued
    at = 0
    for size in sizes:
        group = expected[at : at + size]
        if size > 1:  # only known lengths are packed, and only up to pack_ns together
            assert None not in group
            assert sum(e for e in group if e is not None) <= pack_ns
        at += size


def test_a_plan_packs_known_short_jobs_and_sends_the_rest_alone() -> None:
    twenty = 20 * MS
    assert plan([twenty] * 40, 2, 100 * MS) == [5] * 8  # Dask's 100 ms a task
    assert plan([twenty] * 40, 2, 0) == [1] * 40  # packing off
    assert plan([twenty] * 4, 2, 100 * MS) == [2, 2]  # at least one task per thread
    assert plan([None, 1, 1, None, 1], 1, 100) == [1, 2, 1, 1]  # unknown: alone
    assert plan([150 * MS, twenty, twenty], 1, 100 * MS) == [1, 2]  # too long to share
    assert plan([1] * 40, 1, 100 * MS) == [PACK_MAX, PACK_MAX, 8]


def test_durations_follow_a_tool_and_forget_slowly() -> None:
    d = Durations()
    assert d.expect("t") is None
    d.record("t", 100)
    assert d.expect("t") == 100
    for _ in range(40):
        d.record("t", 20)
    assert d.expect("t") == 20  # the old length fades
    d.record("t", 1_000)
    assert 20 < (d.expect("t") or 0) < 1_000  # one outlier moves it, does not replace it


def test_a_pack_is_cancelled_once_every_job_in_it_was_stopped() -> None:
    pack = Pack("fut", 3)
    assert [pack.stop_one(), pack.stop_one(), pack.stop_one()] == [False, False, True]
    assert [pack.leave(), pack.leave(), pack.leave()] == [False, False, True]


def square(x: int) -> int:
    return x * x


def fail(msg: str) -> None:
    raise ValueError(msg)


def test_run_pack_runs_each_job_as_its_own_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the worker: one reply a job, each with its own value or error and its own times, one
    after the other; a job cancelled before its turn is skipped without its mates."""
    from lanepar.backends import _remote, dask_worker

    monkeypatch.setattr(_remote, "_RUNQ_WATCH", [])  # a run-queue watch of this test's own
    calls = [(square, (3,)), (fail, ("two",)), (square, (4,))]
    payloads = [dumps_call((fn, args, {}, False), fn) for fn, args in calls]
    dask_worker.interrupt(["skip-me"])  # cancelled before it began: remembered, then skipped
    try:
        raw = run_pack([*payloads, payloads[0]], ["a", "b", "c", "skip-me"], 500_000, 64)
    finally:
        for watch in _remote._RUNQ_WATCH:
            watch.close()  # (a worker keeps it for its life; this process must not)
    replies = [pickle.loads(r) for r in raw]
    assert [r[0] for r in replies] == [0, 1, 0, 1]
    assert replies[0][1] == 9 and replies[2][1] == 16
    assert isinstance(replies[1][1], ValueError) and str(replies[1][1]) == "two"
    assert "interrupted" in str(replies[3][1])
    for a, b in zip(replies, replies[1:3]):
        assert a[2] <= a[3] <= b[2]  # (t0, t1) one after another on this thread


class FakeClient:
    """What a wave calls on a client: ``map`` (recording the function and keys of each message),
    ``gather`` and ``nthreads``."""

    def __init__(self) -> None:
        self.maps: list[tuple[str, list[str], list[Any]]] = []
        self.gathers: list[int] = []

    def map(self, fn: Any, payloads: list[Any], tokens: list[Any], **kw: Any) -> list[Any]:
        self.maps.append((fn.__name__, list(kw["key"]), list(tokens)))
        return [FakeFuture(k) for k in kw["key"]]

    async def gather(self, futs: list[FakeFuture]) -> list[Any]:
        self.gathers.append(len(futs))
        return [f.value for f in futs]

    async def nthreads(self) -> dict[str, int]:
        return {"w1": 1, "w2": 1}


class FakeFuture:
    """Ended at once, its value a list of per-job "replies" (the job's token), or failed with
    ``error`` (status "error"), which awaiting it raises as a Dask future's does."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.value: Any = None
        self.status = "finished"
        self.error: BaseException | None = None
        self._state = self

    async def wait(self) -> None:
        return None

    def __await__(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value
        yield  # (a generator: awaitable)


def test_a_wave_of_known_short_jobs_goes_as_packs_and_each_gets_its_own_value() -> None:
    async def scenario() -> tuple[FakeClient, list[Any], Coalescer]:
        client = FakeClient()
        co = Coalescer(500_000, 64, per_thread=2, pack_ns=100 * MS)
        await co.submit(client, "k-first", "first", b"")  # before the threads' count: alone
        co.finished()
        for _ in range(3):
            await asyncio.sleep(0)
        waiters = [co.submit(client, f"k-{i}", f"t{i}", b"", 10 * MS) for i in range(8)]
        waiters.append(co.submit(client, "k-new", "new", b""))  # a tool never seen
        sent = [await w for w in waiters]
        for _, keys, tokens in client.maps[1:]:
            for key, toks in zip(keys, tokens):
                future = next(m for m in sent if isinstance(m, Member) and m.pack.fut.key == key)
                future.pack.fut.value = list(toks)  # each job's "reply" is its token
        values = await asyncio.gather(*[co.collect(client, s) for s in sent])
        return client, values, co

    client, values, co = asyncio.run(scenario())
    assert client.maps[0][0] == "run_task" and client.maps[0][1] == ["k-first"]
    fn, keys, tokens = client.maps[1]  # one message for the whole wave
    assert fn == "run_pack" and len(client.maps) == 2
    assert tokens == [["t0", "t1"], ["t2", "t3"], ["t4", "t5"], ["t6", "t7"], ["new"]]
    assert keys == ["k-0", "k-2", "k-4", "k-6", "k-new"]  # a pack goes by its first job's key
    assert [v for _, v in values] == [*(f"t{i}" for i in range(8)), "new"]
    assert client.gathers == [1] * 5  # a pack's values fetched once, for all its jobs
    assert co.out.n == 0  # each Dask task counted out once, however many jobs it held


def test_pack_ms_is_checked_and_only_for_dask_lanes() -> None:
    assert lp.LaneConfig(kind="dask", pack_ms=0).pack_ms == 0
    with pytest.raises(lp.LaneConfigError, match="pack_ms=5 only applies to kind='dask'"):
        lp.LaneConfig(kind="thread", pack_ms=5)
    for bad in (-1, float("inf"), True, "10"):
        with pytest.raises(lp.LaneConfigError, match="must be a number of ms"):
            lp.LaneConfig(kind="dask", pack_ms=bad)  # type: ignore[arg-type]


class WorkerLost(Exception):
    """What Dask raises for a task whose worker died under it (``KilledWorker``)."""


class DyingPackClient(FakeClient):
    """A cluster where every pack dies (one of its jobs ends its worker's process) and a job
    sent alone runs for real here, unless it is the one that kills its worker (``poison``)."""

    def __init__(self, poison: int) -> None:
        super().__init__()
        self.poison = poison

    def map(self, fn: Any, payloads: list[Any], tokens: list[Any], **kw: Any) -> list[Any]:
        self.maps.append((fn.__name__, list(kw["key"]), list(tokens)))
        futs = []
        for key, payload, token in zip(kw["key"], payloads, tokens):
            fut = FakeFuture(key)
            if fn is run_pack or pickle.loads(payload)[1] == (self.poison,):
                fut.status, fut.error = "error", WorkerLost(f"{key} lost its worker")
            else:
                fut.value = fn(payload, token, kw["resolution_ns"], kw["max_segments"])
            futs.append(fut)
        return futs


def test_a_pack_dask_gives_up_runs_each_job_again_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pack's Dask task failing as a whole (``KilledWorker``: one job ended its worker's
    process) fails no job for its mates: each runs again alone under a new key, and only the
    job that kills its worker alone too gets Dask's error."""
    from lanepar.backends import _remote
    from lanepar.backends.base import BackendContext
    from lanepar.backends.dask import DaskBackend

    monkeypatch.setattr(_remote, "_RUNQ_WATCH", [])
    client = DyingPackClient(poison=3)
    backend = DaskBackend(BackendContext("dask"), lp.LaneConfig(kind="dask", pack_ms=100))
    backend.client = client
    backend._runs.record(f"{square.__module__}.{square.__qualname__}", 10 * MS)  # known short

    async def scenario() -> list[Any]:
        await backend._coalescer.recount(client)
        return await asyncio.gather(
            *(backend.run(i, square, (i,), {}, False, None) for i in range(8)),
            return_exceptions=True,
        )

    try:
        outcomes = asyncio.run(scenario())
    finally:
        for watch in _remote._RUNQ_WATCH:
            watch.close()
    assert client.maps[0][0] == "run_pack" and len(client.maps[0][1]) < 8  # packed at first
    assert all(fn == "run_task" for fn, _, _ in client.maps[1:])
    resent = [k for _, keys, _ in client.maps[1:] for k in keys]
    assert len(resent) == 8 and not set(resent) & set(client.maps[0][1])  # each, under a new key
    assert [o for i, o in enumerate(outcomes) if i != 3] == [i * i for i in range(8) if i != 3]
    assert isinstance(outcomes[3], WorkerLost)  # its own fate: Dask's error, raised once
    assert backend._coalescer.out.n == 0  # every Dask task counted out once
