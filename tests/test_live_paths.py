"""A batch watched by a live view (the dashboard, any subscriber) runs the way an unwatched one
does: the same hot paths for async tools run on the loop and sync tools handed to threads, with
the view's "running now" entries kept beside them. Before, a subscriber sent every task through
the attempt machinery (deadline scope, retry loop), which made a watched batch of short tools
about a fifth slower than the same batch unwatched (``benchmarks/widget_cost.py``'s wall Δ).
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import lanepar as lp
from lanepar.run.lane import Lane


async def _no_attempt(*_args: Any, **_kwargs: Any) -> tuple[Exception, None]:
    return AssertionError("a watched batch went through the attempt machinery"), None


def test_a_watched_batch_takes_the_hot_paths_and_shows_each_task_while_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Lane, "_attempt", _no_attempt)
    both_running = threading.Barrier(2, timeout=10)
    deltas: list[int] = []

    async def main() -> tuple[lp.BatchResult, dict[int, Any], bool]:
        lanes = {"q": lp.LaneConfig(min_concurrency=2, max_concurrency=4)}
        async with lp.LaneExecutor(lanes=lanes) as ex:
            running = ex.recorder.running

            def names() -> list[str]:
                return sorted(r[2] for r in list(running.values()))

            def sync_tool() -> list[str]:
                both_running.wait()  # the async tool is under way too
                seen = names()
                both_running.wait()  # it has looked as well: neither has ended
                return seen

            async def async_tool() -> list[str]:
                await anyio.to_thread.run_sync(both_running.wait)
                seen = names()
                await anyio.to_thread.run_sync(both_running.wait)
                return seen

            unsubscribe = ex.subscribe(lambda d: deltas.append(len(d["tasks"])))
            live = ex.recorder.live
            try:
                batch = await ex.arun_batch(
                    [lp.ToolCall(sync_tool, lane="q"), lp.ToolCall(async_tool, lane="q")]
                )
            finally:
                unsubscribe()
            return batch, dict(running), live

    batch, left, live = anyio.run(main)
    assert live
    assert batch.ok, batch.errors
    # each saw both entries, its own and the other's, with the tool's name
    assert batch.results == [["async_tool", "sync_tool"], ["async_tool", "sync_tool"]]
    assert left == {}  # settling took each entry out
    assert [t.outcome for t in batch.trace.tasks] == ["ok", "ok"]
