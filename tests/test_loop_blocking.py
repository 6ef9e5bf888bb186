"""The event-loop blocking detector, through the executor: a step that holds the loop past
``loop_block_ms`` is an event naming the tool and the code that blocked."""

from __future__ import annotations

import asyncio
import time
import types
from typing import Any

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


@pytest.mark.parametrize("poll", ["python", "c"])
def test_the_watchdog_wakes_at_most_once_a_threshold_while_steps_run(
    monkeypatch: pytest.MonkeyPatch, poll: str
) -> None:
    """A wake takes the GIL from the loop: while short steps run back to back, the watchdog
    sleeps until the step it saw would cross the threshold, not on a fixed short poll; where
    the C driver is built its polling needs no GIL at all, and it takes the GIL only to act."""
    from lanepar.trace import loopwatch

    looks: list[float] = []
    if poll == "python":
        real_sleep = time.sleep

        def counted(s: float) -> None:
            looks.append(s)
            real_sleep(s)

        monkeypatch.setattr(loopwatch.time, "sleep", counted)
        monkeypatch.setattr(loopwatch, "_stepc", None)
        watch = loopwatch.LoopWatch(threshold_ns=50_000_000)
    else:
        if loopwatch._stepc is None:
            pytest.skip("the C step driver is built for CPython on Linux")

        class Counted(loopwatch.LoopWatch):
            __slots__ = ()

            def watch(self, *args: int) -> int:
                t0: int = super().watch(*args)  # type: ignore[misc]
                looks.append(t0)  # back in Python, with the GIL
                return t0

        watch = Counted(threshold_ns=50_000_000)
    try:
        t_end = time.perf_counter() + 0.4
        while time.perf_counter() < t_end:  # 400 ms of 50 µs steps, as a busy loop runs them
            watch.step_begin("tool")
            t1 = time.perf_counter() + 50e-6
            while time.perf_counter() < t1:
                pass
            watch.step_end()
    finally:
        watch.close()
    if poll == "python":
        assert looks, "the watchdog never ran"
        # 400 ms is 8 thresholds: about 8 sleeps (8-9 here, also with both cores busy); a step
        # stretched past the threshold by a busy machine adds one. The quarter-threshold poll
        # this replaced slept ~32 times, and ~20 when the steps' GIL held it back.
        assert len(looks) <= 16, looks
    else:
        # no step ran past the threshold: back in Python only as it stopped (0), and once for
        # each step a busy machine stretched past 50 ms (its start)
        assert looks and looks[-1] == 0, looks
        assert len(looks) <= 3, looks


def test_the_loop_thread_stays_watched_until_a_linger_after_the_last_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches back to back keep the loop thread registered (re-registering it per batch
    costs more than a one-task batch), through one timer that is not remade per batch; it is
    given back once ``LINGER_S`` has passed since the *last* batch ended, never while one runs."""
    from lanepar.run import _loopobs
    from lanepar.trace.recorder import Recorder

    class Clock:
        """A loop's clock and timers, moved by hand."""

        def __init__(self) -> None:
            self.now = 100.0
            self.timers: list[tuple[float, Any, tuple[Any, ...]]] = []

        def time(self) -> float:
            return self.now

        def call_later(self, delay: float, cb: Any, *args: Any) -> Any:
            self.timers.append((self.now + delay, cb, args))
            return types.SimpleNamespace(cancel=lambda: None)

        def advance(self, dt: float) -> None:
            self.now += dt
            due = [t for t in self.timers if t[0] <= self.now]
            self.timers = [t for t in self.timers if t[0] > self.now]
            for _, cb, args in due:
                cb(*args)

    class States:
        def __init__(self) -> None:
            self.held: list[int] = []
            self.given_back: list[int] = []

        def hold(self) -> int:
            self.held.append(7)
            return 7

        def unhold(self, slot: int) -> None:
            self.given_back.append(slot)

    clock, states = Clock(), States()
    monkeypatch.setattr(_loopobs.asyncio, "get_running_loop", lambda: clock)
    monkeypatch.setattr(_loopobs, "watch_loop", lambda *a: None)
    obs = _loopobs.LoopObservers(Recorder())
    obs.states = states  # type: ignore[assignment]
    linger = _loopobs.LINGER_S
    for _ in range(50):  # fifty short batches, a tenth of the linger apart
        obs.busy()
        obs.idle()
        clock.advance(linger / 10)
    assert states.held == [7] and states.given_back == []
    assert len(clock.timers) == 1  # one timer, re-armed by itself
    obs.busy()  # a long batch: the timer fires while it runs and gives nothing back
    clock.advance(linger * 3)
    assert states.given_back == [] and clock.timers == []
    obs.idle()
    clock.advance(linger * 0.9)
    assert states.given_back == []
    clock.advance(linger * 0.2)
    assert states.given_back == [7] and obs.slot == -1
    obs.busy()  # the next batch registers the thread again
    assert states.held == [7, 7]
