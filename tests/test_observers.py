"""One observer seam: hooks an observer defines are called; one that raises is removed and
logged, and neither the batch it watched nor any later batch notices."""

from __future__ import annotations

import logging

import anyio
import pytest

import lanepar as lp

LANES = {"q": lp.LaneConfig(max_concurrency=2), "t": lp.LaneConfig(kind="thread")}


async def nap(i: int) -> int:
    await anyio.sleep(0)
    return i


def work(i: int) -> int:
    return i * 2


class Recording:
    def __init__(self) -> None:
        self.tasks: list[lp.TaskRecord] = []
        self.batches: list[lp.BatchResult] = []

    def task_finished(self, record: lp.TaskRecord) -> None:
        self.tasks.append(record)

    def batch_finished(self, result: lp.BatchResult) -> None:
        self.batches.append(result)


class RaisesOnTask:
    def __init__(self) -> None:
        self.calls = 0

    def task_finished(self, record: lp.TaskRecord) -> None:
        self.calls += 1
        raise RuntimeError("observer bug")


class RaisesOnBatch:
    def batch_finished(self, result: lp.BatchResult) -> None:
        raise ValueError("observer bug")


def calls(n: int) -> list[lp.ToolCall]:
    return [lp.ToolCall(nap, i, lane="q") for i in range(n)] + [
        lp.ToolCall(work, i, lane="t") for i in range(n)
    ]


@pytest.mark.parametrize("trace", [True, False])
def test_hooks_see_every_task_and_batch(trace: bool) -> None:
    obs = Recording()
    with lp.LaneExecutor(LANES, trace=trace) as ex:
        ex.add_observer(obs)
        b = ex.run_batch(calls(5))
        ex.remove_observer(obs)
        ex.run_batch(calls(2))
    assert b.ok and len(obs.batches) == 1 and obs.batches[0] is b
    assert sorted((r.lane, r.name) for r in obs.tasks) == sorted(
        [("q", "nap")] * 5 + [("t", "work")] * 5
    )
    assert all(r.outcome == "ok" and r.finished_ns >= r.started_ns for r in obs.tasks)


def test_an_object_with_no_hook_is_refused() -> None:
    ex = lp.LaneExecutor(LANES)
    with pytest.raises(TypeError, match="not an observer"):
        ex.add_observer(object())


def test_a_raising_task_observer_is_removed_and_the_lanes_keep_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad, good = RaisesOnTask(), Recording()
    with lp.LaneExecutor(LANES) as ex, caplog.at_level(logging.ERROR, logger="lanepar"):
        ex.add_observer(bad)
        ex.add_observer(good)
        first = ex.run_batch(calls(4))
        second = ex.run_batch(calls(4))  # a wedged lane would hang here
    assert bad.calls == 1  # removed at its first failure
    assert first.ok and second.ok
    assert first.results == second.results == [0, 1, 2, 3, 0, 2, 4, 6]
    assert len(good.tasks) == 16 and len(good.batches) == 2
    assert any("observer" in r.getMessage() and "removed" in r.getMessage() for r in caplog.records)


def test_a_raising_batch_observer_never_loses_the_batch(caplog: pytest.LogCaptureFixture) -> None:
    with lp.LaneExecutor(LANES) as ex, caplog.at_level(logging.ERROR, logger="lanepar"):
        ex.add_observer(RaisesOnBatch())
        b = ex.run_batch(calls(3))
        again = ex.run_batch(calls(3))
    assert b.results == again.results == [0, 1, 2, 0, 2, 4]
    assert sum("removed" in r.getMessage() for r in caplog.records) == 1


async def test_observers_on_an_async_executor(anyio_backend: str) -> None:
    obs = Recording()
    async with lp.LaneExecutor(LANES) as ex:
        ex.add_observer(obs)
        ex.add_observer(RaisesOnTask())
        b = await ex.arun_batch(calls(3))
    assert b.ok and len(obs.tasks) == 6 and obs.batches == [b]


async def fails(i: int) -> int:
    await anyio.sleep(0)
    raise OSError(f"downstream refused {i}")


def test_adaptive_limits_are_an_observer_that_moves_the_limit() -> None:
    # Errors are the late congestion signal: a window of failures cuts the limit, and the cut
    # is a trace event saying who made it.
    lanes = {"a": lp.LaneConfig(min_concurrency=1, max_concurrency="auto", ceiling=8)}
    with lp.LaneExecutor(lanes) as ex:
        assert ex.lanes["a"].limit == 4  # adaptive lanes start at 4
        b = ex.run_batch([lp.ToolCall(fails, i, lane="a") for i in range(8)])
        limit = ex.lanes["a"].limit
        events = [e for e in ex.snapshot().events if e["type"] == "limit"]
    assert len(b.errors) == 8
    assert 1 <= limit < 4
    assert events and events[-1]["limit"] == limit and events[-1]["source"] == "adaptive"
