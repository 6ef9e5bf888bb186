"""Dask lanes send a wave of ready jobs in one message, and each job keeps its own fate.

The scheduler is observed through Dask's own plugin hook (``SchedulerPlugin.update_graph`` runs
once per graph update a client sends), on a LocalCluster of this module: its scheduler lives in
this process, so the plugin's record is read directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import distributed
import pytest
from distributed.diagnostics.plugin import SchedulerPlugin
from support import assert_stopped, last_beat, spin, wait_until

import lanepar as lp
from lanepar.backends._dask_submit import CHUNK_MIN, Coalescer
from lanepar.backends._remote import dumps_call

pytestmark = [pytest.mark.dask, pytest.mark.dask_in_process, pytest.mark.timeout(120)]


def square(x: int) -> int:
    return x * x


def fail(msg: str) -> None:
    raise ValueError(msg)


def square_unless_five(x: int) -> int:
    if x == 5:
        raise ValueError("five")
    return x * x


class GraphUpdates(SchedulerPlugin):
    """Every graph update the scheduler receives: the lanepar keys it carried."""

    def __init__(self) -> None:
        self.updates: list[list[str]] = []

    def update_graph(self, scheduler: Any, *, tasks: list[Any], **kwargs: Any) -> None:
        keys = [str(k) for k in tasks if str(k).startswith("lanepar_")]
        if keys:
            self.updates.append(keys)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, GraphUpdates]]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        plugin = GraphUpdates()
        c.scheduler.add_plugin(plugin, name="lanepar-test-graph-updates")
        yield c, plugin


def run_connected(
    cluster: tuple[Any, GraphUpdates], limit: int, calls: list[lp.ToolCall], pack_ms: float = 0
) -> lp.BatchResult:
    """``calls`` on a Dask lane of ``limit`` slots already connected (one task of ``square`` ran
    first, and every slot is idle), with only their graph updates left in the plugin's record.
    Packing is off unless ``pack_ms`` says (these tests count one key per job)."""
    c, plugin = cluster
    lane = lp.LaneConfig(
        kind="dask", address=c.scheduler_address, max_concurrency=limit, pack_ms=pack_ms
    )
    with lp.LaneExecutor(lanes={"d": lane}) as ex:
        ex.run_batch([lp.ToolCall(square, 0, lane="d")])
        plugin.updates.clear()
        return ex.run_batch(calls)


def test_a_wave_of_ready_jobs_is_one_graph_update(cluster: tuple[Any, GraphUpdates]) -> None:
    plugin = cluster[1]
    calls = [lp.ToolCall(square, i, lane="d") for i in range(8)]
    calls[3] = lp.ToolCall(fail, "three", lane="d")
    b = run_connected(cluster, 8, calls)
    # Eight idle slots woken by one batch start in one loop pass: one message for all eight.
    assert [len(u) for u in plugin.updates] == [8]
    assert len(set(plugin.updates[0])) == 8
    # Coalesced, each job still has its own result and error.
    assert [b.results[i] for i in range(8) if i != 3] == [i * i for i in range(8) if i != 3]
    assert set(b.errors) == {3} and str(b.errors[3]) == "three"
    assert b.outcomes.count("ok") == 7


def test_more_jobs_than_slots_each_wave_one_update(cluster: tuple[Any, GraphUpdates]) -> None:
    """20 jobs on 4 slots: every job reaches the cluster exactly once, never more than the
    limit per update, and fewer updates than jobs."""
    plugin = cluster[1]
    b = run_connected(cluster, 4, [lp.ToolCall(square, i, lane="d") for i in range(20)])
    assert b.results == [i * i for i in range(20)]
    keys = [k for u in plugin.updates for k in u]
    assert len(keys) == len(set(keys)) == 20
    assert max(len(u) for u in plugin.updates) <= 4
    assert plugin.updates[0] and len(plugin.updates[0]) == 4  # the first wave: all slots at once


def test_a_call_cancelled_before_the_flush_never_reaches_the_cluster(
    cluster: tuple[Any, GraphUpdates],
) -> None:
    c, plugin = cluster

    async def scenario() -> list[int]:
        async with distributed.Client(
            c.scheduler_address, asynchronous=True, set_as_default=False
        ) as client:
            co = Coalescer(500_000, 64)
            payloads = [dumps_call((square, (i,), {}, False), square) for i in range(3)]
            plugin.updates.clear()
            waiters = [
                co.submit(client, f"lanepar_square-cancel{i}", f"cancel{i}", p)
                for i, p in enumerate(payloads)
            ]
            waiters[1].cancel()  # before the flush: this tick has not ended yet
            futs = [await waiters[0], await waiters[2]]
            replies = await client.gather(futs)
            return [pickle.loads(r)[1] for r in replies]

    assert asyncio.run(scenario()) == [0, 4]
    assert [sorted(u) for u in plugin.updates] == [
        ["lanepar_square-cancel0", "lanepar_square-cancel2"]
    ]


def test_a_wide_lane_refills_and_fetches_in_waves(cluster: tuple[Any, GraphUpdates]) -> None:
    """64 jobs on 16 slots of a 2-thread cluster: while enough of the lane's tasks are out to
    keep both threads busy, refills are held and go together — far fewer graph updates than
    jobs — yet every job runs once, in order, with its own result, and the batch ends (a held
    wave never waits for a task that cannot end)."""
    plugin = cluster[1]
    b = run_connected(cluster, 16, [lp.ToolCall(busy_square, i, lane="d") for i in range(64)])
    assert b.results == [i * i for i in range(64)]
    keys = [k for u in plugin.updates for k in u]
    assert len(keys) == len(set(keys)) == 64
    assert len(plugin.updates[0]) == 16
    # one update per finished task would be 49; waves of at least CHUNK_MIN make it ≤ 13
    assert len(plugin.updates) <= 1 + 48 // CHUNK_MIN


@contextlib.contextmanager
def packing(
    cluster: tuple[Any, GraphUpdates], limit: int, warm: lp.ToolCall, **cfg: Any
) -> Iterator[lp.LaneExecutor]:
    """An executor whose Dask lane (packing on) has run ``warm`` once — so its tool's length
    is known, and the cluster's threads were counted as it connected — with the plugin's record
    empty. Packs of up to a second of expected work: even if a stalled machine made that first
    run take 250 ms, the packs of these tests are bounded by the wave's share alone."""
    c, plugin = cluster
    lane = lp.LaneConfig(
        kind="dask", address=c.scheduler_address, max_concurrency=limit, pack_ms=1000.0, **cfg
    )
    with lp.LaneExecutor(lanes={"d": lane}) as ex:
        assert ex.run_batch([warm]).ok
        plugin.updates.clear()
        yield ex


def test_short_jobs_share_dask_tasks_and_each_keeps_its_fate(
    cluster: tuple[Any, GraphUpdates],
) -> None:
    """16 jobs of a tool known to take µs, on 16 slots of a 2-thread cluster: one message of
    four Dask tasks (two queued per thread), and still one result or error per job, each job
    timed on its own."""
    plugin = cluster[1]
    with packing(cluster, 16, lp.ToolCall(square_unless_five, 0, lane="d")) as ex:
        b = ex.run_batch([lp.ToolCall(square_unless_five, i, lane="d") for i in range(16)])
    assert [len(u) for u in plugin.updates] == [4]
    assert [b.results[i] for i in range(16) if i != 5] == [i * i for i in range(16) if i != 5]
    assert set(b.errors) == {5} and str(b.errors[5]) == "five"
    assert b.trace is not None and len(b.trace.tasks) == 16
    by_thread: dict[str, list[Any]] = {}
    for r in b.trace.tasks:
        assert r.started_ns < r.finished_ns
        by_thread.setdefault(r.worker or "", []).append(r)
    assert "" not in by_thread and len(by_thread) <= 2
    for recs in by_thread.values():  # jobs of one thread, packed or not, one after another
        recs.sort(key=lambda r: r.started_ns)
        assert all(a.finished_ns <= c.started_ns for a, c in zip(recs, recs[1:]))


def test_jobs_with_a_deadline_are_never_packed(cluster: tuple[Any, GraphUpdates]) -> None:
    plugin = cluster[1]
    warm = lp.ToolCall(square, 0, lane="d")
    with packing(cluster, 16, warm, timeout_s=60.0) as ex:
        b = ex.run_batch([lp.ToolCall(square, i, lane="d") for i in range(16)])
    assert b.results == [i * i for i in range(16)]
    assert [len(u) for u in plugin.updates] == [16]


def test_cancelled_packs_stop_their_running_jobs_and_never_start_the_rest(
    cluster: tuple[Any, GraphUpdates], tmp_path: Path
) -> None:
    """Eight bodies that turn out long, packed two to a Dask task after a short first run, on
    two single-thread workers: the first job of two packs runs; cancelled, those two are
    interrupted (each by its own token), their mates and the other packs never start, and the
    workers are free for the next batch at once."""
    plugin = cluster[1]
    beats = [tmp_path / f"p{i}" for i in range(8)]
    warm = lp.ToolCall(spin, str(tmp_path / "warm"), 0.005, lane="d")
    with packing(cluster, 8, warm) as ex:
        out: list[lp.BatchResult] = []
        calls = [lp.ToolCall(spin, str(p), 60.0, lane="d") for p in beats]
        runner = threading.Thread(target=lambda: out.append(ex.run_batch(calls)))
        runner.start()
        assert wait_until(lambda: sum(last_beat(p) > 0 for p in beats) == 2, 60)
        ex.cancel()
        runner.join(60)
        assert out and out[0].outcomes == ["cancelled"] * 8
        running = [p for p in beats if last_beat(p) > 0]
        assert_stopped(running)
        assert [len(u) for u in plugin.updates] == [4]
        again = ex.run_batch([lp.ToolCall(square, 3, lane="d") for _ in range(2)])
    assert again.results == [9, 9]
    assert sum(last_beat(p) > 0 for p in beats) == 2  # no queued job ever started


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_packed_job_stopped_alone_leaves_its_mates_running(
    cluster: tuple[Any, GraphUpdates], tmp_path: Path, anyio_backend: str
) -> None:
    """Eight jobs submitted in one step of the executor's own loop go as one wave: four packs of
    two. The first job spins until it is cancelled, alone; its pack-mate then runs and returns,
    as do the other six: a job is stopped by its own token, not by cancelling its pack."""
    c, plugin = cluster
    lane = lp.LaneConfig(
        kind="dask", address=c.scheduler_address, max_concurrency=8, pack_ms=1000.0
    )
    beats = [tmp_path / f"m{i}" for i in range(8)]
    async with lp.LaneExecutor(lanes={"d": lane}) as ex:
        assert (await ex.arun_batch([lp.ToolCall(spin, str(tmp_path / "w"), 0.005, lane="d")])).ok
        plugin.updates.clear()
        handles = [
            ex.submit(lp.ToolCall(spin, str(b), 60.0 if i == 0 else 0.02, lane="d"))
            for i, b in enumerate(beats)
        ]
        with anyio.fail_after(60):
            while last_beat(beats[0]) == 0:  # the long job runs: its mate waits behind it
                await anyio.sleep(0.01)
        assert last_beat(beats[1]) == 0
        handles[0].cancel()
        counts = [await h for h in handles[1:]]
        with pytest.raises(lp.TaskCancelledError):
            await handles[0]
    assert [len(u) for u in plugin.updates] == [4]
    assert all(isinstance(n, int) and n > 0 for n in counts)
    assert_stopped([beats[0]])


def busy_square(x: int) -> int:
    """A few ms of CPU: tasks end one by one, each in its own tick of the parent's loop."""
    t = time.thread_time()
    while time.thread_time() - t < 0.003:
        pass
    return x * x


class FakeFuture:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Any:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value
        yield  # (a generator: awaitable)


class FakeClient:
    """What the waves call on a client: ``map`` (recording each message) and ``gather``."""

    def __init__(self, fail_gather: bool = False) -> None:
        self.maps: list[list[str]] = []
        self.gathers: list[int] = []
        self.fail_gather = fail_gather

    def map(self, fn: Any, payloads: list[bytes], tokens: list[str], **kw: Any) -> list[str]:
        self.maps.append(list(kw["key"]))
        return [f"fut-{k}" for k in kw["key"]]

    async def gather(self, futs: list[FakeFuture]) -> list[Any]:
        self.gathers.append(len(futs))
        if self.fail_gather:
            raise KeyError("lost")
        return [f.value for f in futs]


def test_held_waves_go_when_full_or_when_the_cluster_runs_short() -> None:
    async def scenario() -> tuple[list[list[str]], list[list[str]]]:
        client = FakeClient()
        co = Coalescer(500_000, 64, deep=4)
        first = [co.submit(client, f"k{i}", f"t{i}", b"") for i in range(16)]
        await asyncio.gather(*first)  # not held: nothing was out
        assert co.out.n == 16
        # 16 out, 4 enough: a refill is held...
        refill = [co.submit(client, "r0", "r0", b"")]
        await asyncio.sleep(0)
        held = list(client.maps)
        # ...until a quarter of what is out and waiting waits (16 + 4 → 5 would; 4 do not)
        for i in range(1, 5):
            co.finished()
            refill.append(co.submit(client, f"r{i}", f"r{i}", b""))
        await asyncio.gather(*refill)
        after_full = list(client.maps)
        # the cluster runs short: a wave held below a quarter goes at once
        late = co.submit(client, "late", "late", b"")
        for _ in range(co.out.n - co.deep + 1):
            co.finished()
        assert await late == "fut-late"
        return held, after_full

    held, after_full = asyncio.run(scenario())
    assert held == [[f"k{i}" for i in range(16)]]
    assert after_full[1:] == [[f"r{i}" for i in range(5)]]


def test_results_of_one_wave_are_one_gather_and_each_keeps_its_fate() -> None:
    async def scenario(fail: bool) -> tuple[list[int], list[Any]]:
        client = FakeClient(fail_gather=fail)
        co = Coalescer(500_000, 64)
        second = ValueError("two") if fail else 2  # (a wave's gather fails when one is lost)
        futs = [FakeFuture(1), FakeFuture(second), FakeFuture(3)]
        waiters = [co.results.get(client, f) for f in futs]
        out = await asyncio.gather(*waiters, return_exceptions=True)
        return client.gathers, out

    gathers, out = asyncio.run(scenario(False))
    assert gathers == [3] and out == [1, 2, 3]  # one message for the wave
    gathers, out = asyncio.run(scenario(True))  # the wave's gather failed: each alone
    assert gathers == [3] and out[0] == 1 and out[2] == 3
    assert isinstance(out[1], ValueError) and str(out[1]) == "two"


def test_a_task_that_ended_no_longer_holds_the_fetch_of_its_value() -> None:
    """A lane at its limit with every task out: the first to end is fetched at once. Counted
    as out until its value arrived, it would hold its own fetch for the whole ``HOLD_S``."""

    async def scenario() -> list[int]:
        client = FakeClient()
        co = Coalescer(500_000, 64, deep=4)
        await asyncio.gather(*[co.submit(client, f"k{i}", f"t{i}", b"") for i in range(4)])
        assert co.out.n == 4 and co.out.holding()
        co.finished()  # Dask reported one ended: three still run
        waiter = co.results.get(client, FakeFuture(7))
        for _ in range(3):  # a few loop turns, far less than HOLD_S
            await asyncio.sleep(0)
        assert waiter.done() and waiter.result() == 7
        return client.gathers

    assert asyncio.run(scenario()) == [1]


def test_the_hold_threshold_follows_the_clusters_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """``per_thread`` tasks per worker thread, counted as tasks are submitted: a cluster that
    grows gets a higher threshold (its new threads must not wait on held waves), and one whose
    count fails keeps the last."""
    import lanepar.backends._dask_submit as ds

    monkeypatch.setattr(ds, "RECOUNT_S", 0.0)  # count at every submit

    class Growing(FakeClient):
        threads: dict[str, int] = {}  # noqa: RUF012 (set per step below)

        async def nthreads(self) -> dict[str, int]:
            if not self.threads:
                raise OSError("scheduler gone")
            return dict(self.threads)

    async def scenario() -> list[int]:
        client, co = Growing(), Coalescer(500_000, 64, per_thread=2)
        seen = [co.deep]  # nothing counted yet: nothing is held
        for threads in ({"w1": 1, "w2": 1}, {"w1": 1, "w2": 1, "w3": 4}, {}):
            client.threads = threads
            await co.submit(client, f"k{len(seen)}", "t", b"")
            for _ in range(3):
                await asyncio.sleep(0)
            seen.append(co.deep)
        return seen

    assert asyncio.run(scenario()) == [0, 4, 12, 12]
