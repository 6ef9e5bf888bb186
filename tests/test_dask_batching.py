"""Dask lanes send a wave of ready jobs in one message, and each job keeps its own fate.

The scheduler is observed through Dask's own plugin hook (``SchedulerPlugin.update_graph`` runs
once per graph update a client sends), on a LocalCluster of this module: its scheduler lives in
this process, so the plugin's record is read directly.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterator
from typing import Any

import distributed
import pytest
from distributed.diagnostics.plugin import SchedulerPlugin

import lanepar as lp
from lanepar.backends._dask_submit import Coalescer
from lanepar.backends._remote import dumps_call

pytestmark = [pytest.mark.dask, pytest.mark.dask_in_process, pytest.mark.timeout(120)]


def square(x: int) -> int:
    return x * x


def fail(msg: str) -> None:
    raise ValueError(msg)


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


def test_a_wave_of_ready_jobs_is_one_graph_update(cluster: tuple[Any, GraphUpdates]) -> None:
    c, plugin = cluster
    lane = lp.LaneConfig(kind="dask", address=c.scheduler_address, max_concurrency=8)
    calls = [lp.ToolCall(square, i, lane="d") for i in range(8)]
    calls[3] = lp.ToolCall(fail, "three", lane="d")
    with lp.LaneExecutor(lanes={"d": lane}) as ex:
        ex.run_batch([lp.ToolCall(square, 0, lane="d")])  # connected, every slot idle
        plugin.updates.clear()
        b = ex.run_batch(calls)
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
    c, plugin = cluster
    lane = lp.LaneConfig(kind="dask", address=c.scheduler_address, max_concurrency=4)
    with lp.LaneExecutor(lanes={"d": lane}) as ex:
        ex.run_batch([lp.ToolCall(square, 0, lane="d")])
        plugin.updates.clear()
        b = ex.run_batch([lp.ToolCall(square, i, lane="d") for i in range(20)])
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
