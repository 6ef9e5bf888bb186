"""The event-loop blocking detector, through the executor: a step that holds the loop past
``loop_block_ms`` is an event naming the tool and the code that blocked."""

from __future__ import annotations

import asyncio
import time

import pytest

import lanepar as lp
from lanepar.trace.loopwatch import STARVED


def sleepy_helper(seconds: float) -> float:
    t0 = time.perf_counter()
    time.sleep(seconds)
    return time.perf_counter() - t0


async def blocking_tool() -> float:
    await asyncio.sleep(0)
    return sleepy_helper(0.12)  # a sync call inside an async tool: the loop stalls


async def polite_tool() -> None:
    await asyncio.sleep(0.01)


def test_a_blocking_step_is_one_event_with_its_duration_and_stack() -> None:
    with lp.LaneExecutor(loop_block_ms=50) as ex:
        calls = [lp.ToolCall(blocking_tool, lane="query")]
        b = ex.run_batch(calls + [lp.ToolCall(polite_tool, lane="query")] * 4)
    assert b.ok and b.trace is not None
    events = [e for e in b.trace.events if e["type"] == "loop_blocked"]
    assert len(events) == 1, events
    ev = events[0]
    slept_ms = b.results[0] * 1e3  # the tool's own clock around the sleep
    assert ev["tool"] == "blocking_tool" and ev["lane"] == "query"
    # the step lasted the sleep plus a few instructions: within 20 % of what the tool measured
    assert slept_ms * 0.95 <= ev["duration_ms"] <= slept_ms * 1.2
    # the watchdog names the culprit, unless a busy machine gave it no CPU in time (then it says so)
    if ev["stack"] != [STARVED]:
        assert any("sleepy_helper" in frame for frame in ev["stack"]), ev["stack"]
        assert any("blocking_tool" in frame for frame in ev["stack"]), ev["stack"]
    s = b.summary()
    assert s["loop_blocked_count"] == 1 and s["loop_blocked_max_ms"] == ev["duration_ms"]
    assert s["gil_wait_s"] == sum(t.gil_ns for t in b.trace.tasks) / 1e9
    assert s["runq_wait_s"] == sum(t.runq_ns for t in b.trace.tasks) / 1e9


def test_polite_tools_and_the_switch_are_quiet() -> None:
    with lp.LaneExecutor(loop_block_ms=50) as ex:
        b = ex.run_batch([lp.ToolCall(polite_tool)] * 8)
    assert b.trace is not None
    assert not [e for e in b.trace.events if e["type"] == "loop_blocked"]
    with lp.LaneExecutor(loop_block_ms=None) as ex:
        b = ex.run_batch([lp.ToolCall(blocking_tool, lane="query")])
    assert b.trace is not None
    assert not [e for e in b.trace.events if e["type"] == "loop_blocked"]


def test_a_first_batch_that_cannot_be_built_leaves_the_loop_thread_unwatched() -> None:
    """The loop thread is registered with the thread watch before a first batch's jobs are
    built (so their dispatch does not pay for it); a build that fails must give it back, or an
    idle executor would keep the helper sampling its loop."""
    from lanepar.run._loopobs import LoopObservers
    from lanepar.trace.recorder import Recorder

    obs = LoopObservers(Recorder())
    calls: list[str] = []
    obs.busy = lambda: calls.append("busy")  # type: ignore[method-assign]
    obs.idle = lambda: calls.append("idle")  # type: ignore[method-assign]

    def broken() -> None:
        raise ValueError("no such lane")

    with pytest.raises(ValueError, match="no such lane"):
        obs.first_batch(broken)
    assert calls == ["busy", "idle"]
    assert obs.first_batch(lambda: 7) == 7 and calls[2:] == ["busy"]
