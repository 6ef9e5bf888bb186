"""The lane executor's promises: exact limits, batches, isolation, sync and async faces."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lanepar as lp


class Gauge:
    """Counts bodies running at once, per lane, from inside the bodies themselves."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.log: list[tuple[float, dict[str, int]]] = []

    def enter(self, lane: str) -> None:
        with self.lock:
            self.now[lane] += 1
            self.peak[lane] = max(self.peak[lane], self.now[lane])
            self.log.append((time.perf_counter(), dict(self.now)))

    def leave(self, lane: str) -> None:
        with self.lock:
            self.now[lane] -= 1
            self.log.append((time.perf_counter(), dict(self.now)))

    def tool(self, lane: str, seconds: float) -> Any:
        async def body() -> str:
            self.enter(lane)
            try:
                await anyio.sleep(seconds)
            finally:
                self.leave(lane)
            return lane

        body.__name__ = f"sleep_{lane}"
        return body


@pytest.mark.parametrize("limit", [10, 64])
def test_set_concurrency_is_honoured_exactly(limit: int) -> None:
    g = Gauge()
    with lp.LaneExecutor() as ex:
        ex.set_concurrency("execute", limit)  # default 4: never clamped, whatever the user asks
        b = ex.run_batch([lp.ToolCall(g.tool("execute", 0.15)) for _ in range(limit * 2)])
    assert b.ok
    assert g.peak["execute"] == limit
    assert b.trace is not None
    assert b.summary()["per_lane"]["execute"]["peak_active"] == limit


def test_set_concurrency_live_while_a_batch_runs() -> None:
    g = Gauge()
    lanes = {"q": lp.LaneConfig(max_concurrency=2)}
    with lp.LaneExecutor(lanes=lanes) as ex:
        h = threading.Timer(0.15, ex.set_concurrency, args=("q", 6))
        h.start()
        b = ex.run_batch([lp.ToolCall(g.tool("q", 0.1), lane="q") for _ in range(30)])
        h.join()
    assert b.ok
    assert g.peak["q"] == 6
    first = [n.get("q", 0) for t, n in g.log if t < g.log[0][0] + 0.1]
    assert max(first) == 2


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    tasks=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4)), min_size=1, max_size=40),
)
def test_random_lane_configs_never_exceed_limits(limits: list[int], tasks: list[Any]) -> None:
    lanes = {
        f"l{i}": lp.LaneConfig(min_concurrency=0, max_concurrency=m) for i, m in enumerate(limits)
    }
    g = Gauge()
    calls = []
    for lane_i, ms in tasks:
        lane = f"l{lane_i % len(limits)}"
        calls.append(lp.ToolCall(g.tool(lane, ms / 1000), lane=lane))
    with lp.LaneExecutor(lanes=lanes, sample_hz=0) as ex:
        b = ex.run_batch(calls)
    assert b.results == [c.lane for c in calls]
    for lane, peak in g.peak.items():
        assert peak <= lanes[lane].limit_ceiling


def test_max_total_reserves_min_slots_and_prefers_priority() -> None:
    g = Gauge()
    lanes = {
        "hi": lp.LaneConfig(min_concurrency=1, max_concurrency=4, priority=0),
        "lo": lp.LaneConfig(min_concurrency=1, max_concurrency=4, priority=5),
    }
    with lp.LaneExecutor(lanes=lanes, max_total=3) as ex:

        async def flood() -> lp.BatchResult:
            return await ex.arun_batch(
                [lp.ToolCall(g.tool("lo", 0.05), lane="lo") for _ in range(40)]
            )

        lo_done: list[lp.BatchResult] = []
        flooder = threading.Thread(target=lambda: lo_done.append(anyio.run(flood)))
        flooder.start()
        time.sleep(0.2)
        t_hi = time.perf_counter()
        b_hi = ex.run_batch([lp.ToolCall(g.tool("hi", 0.05), lane="hi") for _ in range(20)])
        flooder.join()
        b_lo = lo_done[0]
    assert b_hi.ok and b_lo.ok
    totals = [sum(n.values()) for _, n in g.log]
    assert max(totals) <= 3
    # before "hi" arrives, "lo" uses the shared slots plus its reserved one, never "hi"'s
    assert max(n.get("lo", 0) for t, n in g.log if t < t_hi) == 2
    # once "hi" has work, freed shared slots go to it: "lo" keeps only its reserved slot
    settled = [n for t, n in g.log if t_hi + 0.12 < t < t_hi + 0.3]
    assert settled and all(n.get("lo", 0) <= 1 for n in settled)
    assert max(n.get("hi", 0) for n in settled) == 2


def test_results_in_submission_order_and_errors_isolated() -> None:
    async def slow_echo(x: int) -> int:
        await anyio.sleep(0.01 * (5 - x % 5))
        return x

    def boom() -> None:
        raise RuntimeError("tool exploded")

    calls = [lp.ToolCall(slow_echo, i) for i in range(10)]
    calls.insert(3, lp.ToolCall(boom))
    with lp.LaneExecutor() as ex:
        b = ex.run_batch(calls)
    assert not b.ok
    assert set(b.errors) == {3}
    assert isinstance(b.errors[3], RuntimeError)
    assert b.outcomes[3] == "error"
    assert [r for i, r in enumerate(b.results) if i != 3] == list(range(10))
    assert b.trace is not None and b.trace.tasks[3].outcome == "error"
    assert "tool exploded" in (b.trace.tasks[3].error or "")


def test_fail_fast_cancels_siblings() -> None:
    async def boom() -> None:
        await anyio.sleep(0.02)
        raise ValueError("first failure")

    async def long() -> str:
        await anyio.sleep(5)
        return "never"

    with lp.LaneExecutor() as ex:
        t0 = time.perf_counter()
        b = ex.run_batch(
            [lp.ToolCall(boom)] + [lp.ToolCall(long) for _ in range(8)], fail_fast=True
        )
        elapsed = time.perf_counter() - t0
    assert elapsed < 2
    assert b.outcomes[0] == "error"
    assert set(b.outcomes[1:]) == {"cancelled"}
    assert all(isinstance(b.errors[i], lp.TaskCancelledError) for i in range(1, 9))


def test_timeouts_per_lane_and_per_call() -> None:
    async def nap(s: float) -> float:
        await anyio.sleep(s)
        return s

    lanes = {"q": lp.LaneConfig(max_concurrency=4, timeout_s=0.2)}
    with lp.LaneExecutor(lanes=lanes) as ex:
        b = ex.run_batch(
            [
                lp.ToolCall(nap, 0.01, lane="q"),
                lp.ToolCall(nap, 3.0, lane="q"),
                lp.ToolCall(nap, 0.1, lane="q").options(timeout_s=0.05),
                lp.ToolCall(nap, 0.02, lane="q"),
            ]
        )
    assert b.outcomes == ["ok", "timeout", "timeout", "ok"]
    assert isinstance(b.errors[1], lp.TaskTimeoutError)
    assert b.results[0] == 0.01 and b.results[3] == 0.02
    assert b.wall_s < 1.5
    assert b.trace is not None and b.trace.tasks[1].outcome == "timeout"


def test_retries_are_opt_in_with_backoff() -> None:
    attempts: dict[str, int] = defaultdict(int)

    def flaky(key: str) -> str:
        attempts[key] += 1
        if attempts[key] < 3:
            raise OSError("transient")
        return "ok"

    lanes = {
        "plain": lp.LaneConfig(kind="thread"),
        "retrying": lp.LaneConfig(kind="thread", retries=2, retry_backoff_s=0.01),
    }
    lp.tool(name="idempotent_flaky", idempotent=True)(flaky)
    with lp.LaneExecutor(lanes=lanes) as ex:
        b = ex.run_batch(
            [
                lp.ToolCall(flaky, "a", lane="plain"),
                lp.ToolCall("idempotent_flaky", "b", lane="retrying"),  # the lane retries it
                lp.ToolCall(flaky, "c", lane="retrying"),  # not declared idempotent: never
                lp.ToolCall(flaky, "d", lane="plain").options(retries=2),  # opted in
            ]
        )
    assert attempts == {"a": 1, "b": 3, "c": 1, "d": 3}
    assert b.outcomes == ["error", "ok", "error", "ok"]
    assert b.trace is not None and b.trace.tasks[1].extra["attempts"] == 3
    assert lp.DEFAULT_LANES["execute"].retries == 0  # bash must never be retried by default


def test_sequential_runs_one_at_a_time_in_order() -> None:
    g = Gauge()
    order: list[int] = []

    async def step(i: int) -> int:
        g.enter("q")
        order.append(i)
        await anyio.sleep(0.01)
        g.leave("q")
        return i

    with lp.LaneExecutor() as ex:
        b = ex.run_batch([lp.ToolCall(step, i, lane="query") for i in range(6)], mode="sequential")
    assert b.results == list(range(6)) and order == list(range(6))
    assert g.peak["q"] == 1
    assert b.mode == "sequential"


def test_auto_mode_starts_from_the_seed_rule() -> None:
    async def noop() -> None:
        return None

    with lp.LaneExecutor() as ex:
        two = ex.run_batch([lp.ToolCall(noop), lp.ToolCall(noop)], mode="auto")
    with lp.LaneExecutor() as ex:
        five = ex.run_batch([lp.ToolCall(noop) for _ in range(5)], mode="auto")
        # once profiled, instant tools run sequentially: parallelism cannot repay dispatch
        again = ex.run_batch([lp.ToolCall(noop) for _ in range(5)], mode="auto")
    assert two.mode == "sequential" and two.decision is not None
    assert "fewer than 3" in two.decision.reason
    assert five.mode == "parallel" and "seed rule" in (
        five.decision.reason if five.decision else ""
    )
    assert again.mode == "sequential"
    assert five.trace is not None
    assert [e["mode"] for e in five.trace.events if e["type"] == "decision"] == ["parallel"]


def test_sync_bodies_never_run_on_the_loop() -> None:
    def where() -> str:
        time.sleep(0.05)
        return threading.current_thread().name

    async def ticker() -> int:
        n = 0
        for _ in range(10):
            await anyio.sleep(0.01)
            n += 1
        return n

    with lp.LaneExecutor() as ex:
        b = ex.run_batch(
            [lp.ToolCall(where, lane="query") for _ in range(4)] + [lp.ToolCall(ticker)]
        )
    assert all(name.startswith("lanepar-query") for name in b.results[:4])
    assert b.results[4] == 10
    assert b.wall_s < 0.18  # four 50 ms sleeps ran side by side, not on the loop


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ValueError, match="min_concurrency=5 is greater than max_concurrency=2"):
        lp.LaneConfig(min_concurrency=5, max_concurrency=2)
    with pytest.raises(ValueError, match="max_concurrency=0"):
        lp.LaneConfig(max_concurrency=0)
    with pytest.raises(ValueError, match="kind='gpu'"):
        lp.LaneConfig(kind="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_total=2"):
        lp.LaneExecutor(max_total=2)  # default lanes reserve 5 slots
    with lp.LaneExecutor() as ex:
        with pytest.raises(KeyError, match="unknown lane 'nope'"):
            ex.set_concurrency("nope", 3)
        with pytest.raises(ValueError, match=r"must be an integer in 1\.\.4096"):
            ex.set_concurrency("query", 0)
        with pytest.raises(KeyError, match="unknown tool 'no_such_tool'"):
            ex.run_batch([lp.ToolCall("no_such_tool")])
        with pytest.raises(KeyError, match="unknown lane 'gpu'"):
            ex.run_batch([lp.ToolCall(print, lane="gpu")])
        with pytest.raises(ValueError, match="mode='fast'"):
            ex.run_batch([], mode="fast")  # type: ignore[arg-type]


def test_sync_use_inside_a_running_event_loop() -> None:
    """A Jupyter cell runs on the kernel's loop: the sync face must not touch that loop."""

    async def echo(x: int) -> int:
        await anyio.sleep(0.001)
        return x

    async def cell() -> list[Any]:
        with lp.LaneExecutor() as ex:
            b = ex.run_batch([lp.ToolCall(echo, i) for i in range(20)])
            h = ex.submit(lp.ToolCall(echo, 99))
            # top-level await in a notebook cell against the same sync executor
            b2 = await ex.arun_batch([lp.ToolCall(echo, 7)])
            return [*b.results, h.result(), *b2.results]

    assert asyncio.run(cell()) == [*range(20), 99, 7]


@pytest.mark.anyio
async def test_async_use_on_the_callers_loop(anyio_backend: str) -> None:
    async def echo(x: int) -> int:
        await anyio.sleep(0.001)
        return x * 2

    def sync_echo(x: int) -> int:
        return x + 1

    async with lp.LaneExecutor() as ex:
        b = await ex.arun_batch(
            [lp.ToolCall(echo, i) for i in range(10)] + [lp.ToolCall(sync_echo, 1)]
        )
        h = ex.submit(lp.ToolCall(echo, 21))
        assert await h == 42
    assert b.results == [i * 2 for i in range(10)] + [2]
    assert b.trace is not None and len(b.trace.tasks) == 11


@pytest.mark.anyio
async def test_cancelling_the_caller_cancels_the_batch(anyio_backend: str) -> None:
    started = 0

    async def long() -> None:
        nonlocal started
        started += 1
        await anyio.sleep(10)

    lanes = {"q": lp.LaneConfig(max_concurrency=3)}
    async with lp.LaneExecutor(lanes=lanes) as ex:
        with anyio.move_on_after(0.1):
            await ex.arun_batch([lp.ToolCall(long, lane="q") for _ in range(10)])
        await anyio.sleep(0.05)
        lane = ex.lanes["q"]
        assert lane.pending == 0 and lane.active == 0
        tasks = ex.snapshot().tasks
    assert started == 3
    assert sorted(t.outcome for t in tasks) == ["cancelled"] * 10


def test_keyboard_interrupt_returns_what_finished_and_cancels_the_rest() -> None:
    import _thread

    quick_done = threading.Event()
    finished: list[int] = []

    async def quick(i: int) -> int:
        finished.append(i)
        if len(finished) == 5:
            quick_done.set()
        return i

    async def long() -> None:
        await anyio.sleep(60)

    def interrupt_when_quick_ones_are_done() -> None:
        quick_done.wait(30)
        _thread.interrupt_main()  # what a kernel interrupt / Ctrl-C does

    with lp.LaneExecutor() as ex:
        t = threading.Thread(target=interrupt_when_quick_ones_are_done)
        t.start()
        calls = [lp.ToolCall(quick, i) for i in range(5)] + [lp.ToolCall(long) for _ in range(5)]
        b = ex.run_batch(calls)
        t.join()
        assert b.interrupted
        assert b.results[:5] == [0, 1, 2, 3, 4] and b.outcomes[:5] == ["ok"] * 5
        assert b.outcomes[5:] == ["cancelled"] * 5
        assert all(isinstance(b.errors[i], lp.TaskCancelledError) for i in range(5, 10))
        assert all(ln.active == 0 and ln.pending == 0 for ln in ex.lanes.values())
        after = ex.run_batch([lp.ToolCall(anyio.sleep, 0)])  # the executor is still usable
        assert after.ok and not after.interrupted


def test_cancel_from_another_thread() -> None:
    async def long() -> None:
        await anyio.sleep(10)

    with lp.LaneExecutor() as ex:
        threading.Timer(0.1, ex.cancel).start()
        b = ex.run_batch([lp.ToolCall(long) for _ in range(6)])
    assert set(b.outcomes) == {"cancelled"}
    assert b.wall_s < 3


def test_submit_handles() -> None:
    async def echo(x: int) -> int:
        return x

    def bad() -> None:
        raise KeyError("missing")

    with lp.LaneExecutor() as ex:
        h = ex.submit(lp.ToolCall(echo, 5))
        assert h.result(timeout=5) == 5 and h.done() and h.outcome == "ok"
        with pytest.raises(KeyError, match="missing"):
            ex.submit(lp.ToolCall(bad)).result(timeout=5)


def test_lazy_start_and_close() -> None:
    ex = lp.LaneExecutor()
    try:
        assert ex.run_batch([lp.ToolCall(anyio.sleep, 0)]).ok
        assert ex.running
    finally:
        ex.close()
    assert not ex.running
    ex.close()  # idempotent
