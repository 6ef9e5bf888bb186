"""The lane executor's promises: exact limits, batches, isolation, sync and async faces.

Scheduling semantics run on a virtual clock (:func:`support.run_virtual`): bodies sleep whole
virtual seconds, time moves only when every task is blocked, so "at most N at once", "the next
one starts when a slot frees" and "a timeout cuts at 0.2 s" are exact instants, not windows on a
real clock that a busy machine can blow. Thread lanes and the sync face use events instead.
"""

from __future__ import annotations

import _thread
import asyncio
import heapq
import signal
import threading
from collections import defaultdict
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Gauge, main_thread_waits_in, run_virtual, vnow

import lanepar as lp


def makespan(durations: list[float], slots: int) -> float:
    """When a FIFO queue of ``durations`` on ``slots`` workers ends (list scheduling)."""
    free = [0.0] * slots
    end = 0.0
    for d in durations:
        t = heapq.heappop(free) + d
        end = max(end, t)
        heapq.heappush(free, t)
    return end


# -- limits -----------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [10, 64])
def test_set_concurrency_is_honoured_exactly(limit: int) -> None:
    g = Gauge(vnow)

    async def main() -> tuple[lp.BatchResult, float]:
        async with lp.LaneExecutor(sample_hz=0) as ex:
            ex.set_concurrency("execute", limit)  # default 4: never clamped, whatever is asked
            t0 = vnow()
            b = await ex.arun_batch([lp.ToolCall(g.tool("execute", 1), lane="execute")
                                     for _ in range(limit * 2)])  # fmt: skip
            return b, vnow() - t0

    b, elapsed = run_virtual(main)
    assert b.ok
    assert g.peak["execute"] == limit
    assert elapsed == pytest.approx(2.0)  # two full waves of `limit`, not three
    assert g.starts("execute") == [0.0] * limit + [1.0] * limit
    assert b.summary()["per_lane"]["execute"]["peak_active"] == limit


def test_set_concurrency_live_while_a_batch_runs() -> None:
    """Growing starts new slots at once; shrinking retires surplus slots after their job."""
    g = Gauge(vnow)

    async def main() -> lp.BatchResult:
        lanes = {"q": lp.LaneConfig(max_concurrency=2)}
        async with lp.LaneExecutor(lanes=lanes, sample_hz=0) as ex:
            result: list[lp.BatchResult] = []

            async def run() -> None:
                calls = [lp.ToolCall(g.tool("q", 1), lane="q") for _ in range(30)]
                result.append(await ex.arun_batch(calls))

            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await anyio.sleep(0.5)
                ex.set_concurrency("q", 6)
                await anyio.sleep(1.75)  # t = 2.25: mid-job for every slot
                ex.set_concurrency("q", 1)
            return result[0]

    b = run_virtual(main)
    assert b.ok
    assert g.running_at(0.25, "q") == 2
    assert g.running_at(0.5, "q") == 6  # four new slots started at once, not at the next finish
    assert g.peak["q"] == 6
    # From t = 2.25 on the limit is 1: the running six finish their jobs (slots 2-5 at 2.5,
    # slots 0-1 at 3.0), then one at a time.
    assert g.running_at(2.5, "q") == 2
    late = sorted({t for t, *_ in g.log if t >= 3.0})  # instants; trio orders ties at random
    assert late and max(g.running_at(t, "q") for t in late) == 1
    starts = g.starts("q")
    assert len(starts) == 30
    assert starts[-5:] == pytest.approx([starts[-5] + i for i in range(5)])  # back to back


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    tasks=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4)), min_size=1, max_size=40),
)
def test_random_lane_configs_fill_exactly_their_limits(limits: list[int], tasks: Any) -> None:
    """Each lane runs min(limit, its tasks) at once, never more, and ends when list scheduling of
    its FIFO queue says: no slot idles while work waits, none is double-booked."""
    lanes = {
        f"l{i}": lp.LaneConfig(min_concurrency=0, max_concurrency=m) for i, m in enumerate(limits)
    }
    g = Gauge(vnow)
    calls = []
    per_lane: dict[str, list[float]] = defaultdict(list)
    for lane_i, ms in tasks:
        lane = f"l{lane_i % len(limits)}"
        calls.append(lp.ToolCall(g.tool(lane, ms), lane=lane))
        per_lane[lane].append(float(ms))

    async def main() -> tuple[lp.BatchResult, float]:
        async with lp.LaneExecutor(lanes=lanes, sample_hz=0) as ex:
            b = await ex.arun_batch(calls)
            return b, vnow()

    b, end = run_virtual(main)
    assert b.results == [c.lane for c in calls]
    for lane, durations in per_lane.items():
        assert g.peak[lane] == min(len(durations), lanes[lane].limit_ceiling)
    assert end == pytest.approx(
        max(makespan(d, lanes[ln].limit_ceiling) for ln, d in per_lane.items())
    )


def test_max_total_reserves_min_slots_and_prefers_priority() -> None:
    g = Gauge(vnow)
    lanes = {
        "hi": lp.LaneConfig(min_concurrency=1, max_concurrency=4, priority=0),
        "lo": lp.LaneConfig(min_concurrency=1, max_concurrency=4, priority=5),
    }

    async def main() -> list[lp.BatchResult]:
        out: list[lp.BatchResult] = []
        async with lp.LaneExecutor(lanes=lanes, max_total=3, sample_hz=0) as ex:

            async def flood() -> None:
                out.append(await ex.arun_batch(
                    [lp.ToolCall(g.tool("lo", 1), lane="lo") for _ in range(40)]))  # fmt: skip

            async with anyio.create_task_group() as tg:
                tg.start_soon(flood)
                await anyio.sleep(0.5)
                out.append(await ex.arun_batch(
                    [lp.ToolCall(g.tool("hi", 1), lane="hi") for _ in range(20)]))  # fmt: skip
        return out

    b_hi, b_lo = sorted(run_virtual(main), key=len)
    assert b_hi.ok and b_lo.ok and len(b_hi) == 20
    assert max(sum(n.values()) for *_, n in g.log) == 3  # the budget, always full, never over
    # Before "hi" has work, "lo" uses the one shared slot plus its reserved one, never "hi"'s.
    assert g.running_at(0.25, "lo") == 2
    # "hi" arrives at 0.5: its reserved slot is free at once.
    assert g.starts("hi")[0] == 0.5
    # At 1.0 the shared slot frees and goes to the higher priority: "lo" keeps its reserved one.
    hi_last_start = g.starts("hi")[-1]
    for t in [1.0 + k * 0.5 for k in range(int((hi_last_start - 1.0) * 2) + 1)]:
        assert (g.running_at(t, "hi"), g.running_at(t, "lo")) == (2, 1), t
    # Once "hi" has nothing queued, the shared slot returns to "lo".
    hi_end = max(t for t, ln, d, _ in g.log if ln == "hi" and d < 0)
    assert g.running_at(hi_end + 0.5, "lo") == 2


# -- results, errors, cancellation --------------------------------------------------------------
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
    assert b.outcomes[:3] + b.outcomes[4:] == ["ok"] * 10
    assert [r for i, r in enumerate(b.results) if i != 3] == list(range(10))
    assert b.results[3] is None
    assert b.trace is not None and b.trace.tasks[3].outcome == "error"
    assert [t.outcome for t in b.trace.tasks].count("ok") == 10
    assert "tool exploded" in (b.trace.tasks[3].error or "")
    with pytest.raises(RuntimeError, match="tool exploded"):
        b.raise_first()


def test_fail_fast_cancels_siblings_at_the_first_failure() -> None:
    async def boom() -> None:
        await anyio.sleep(0.02)
        raise ValueError("first failure")

    async def long() -> str:
        await anyio.sleep(5)
        return "never"

    async def main() -> tuple[lp.BatchResult, lp.BatchResult, float]:
        async with lp.LaneExecutor(lanes={"q": lp.LaneConfig(max_concurrency=4)}) as ex:
            calls = [lp.ToolCall(boom, lane="q")] + [lp.ToolCall(long, lane="q") for _ in range(8)]
            t0 = vnow()
            b = await ex.arun_batch(calls, fail_fast=True)
            elapsed = vnow() - t0
            # without fail_fast the same failure leaves its siblings alone
            plain = await ex.arun_batch(calls[:3])
            return b, plain, elapsed

    b, plain, elapsed = run_virtual(main)
    assert elapsed == pytest.approx(0.02)
    assert b.outcomes[0] == "error"
    assert b.outcomes[1:] == ["cancelled"] * 8  # running ones and queued ones alike
    assert all(isinstance(b.errors[i], lp.TaskCancelledError) for i in range(1, 9))
    assert b.trace is not None
    assert [t.outcome for t in b.trace.tasks] == b.outcomes
    assert [t.slot >= 0 for t in b.trace.tasks[1:]] == [True] * 3 + [False] * 5
    assert plain.outcomes == ["error", "ok", "ok"] and plain.results[1:] == ["never"] * 2


def test_fail_fast_counts_a_timeout_and_drains_a_sequence() -> None:
    async def nap(s: float) -> float:
        await anyio.sleep(s)
        return s

    async def boom() -> None:
        raise ValueError("first failure")

    async def main() -> tuple[lp.BatchResult, lp.BatchResult, float]:
        async with lp.LaneExecutor(lanes={"q": lp.LaneConfig(max_concurrency=4)}) as ex:
            t0 = vnow()
            timed = await ex.arun_batch(
                [lp.ToolCall(nap, 10, lane="q").options(timeout_s=0.5)]
                + [lp.ToolCall(nap, 60, lane="q") for _ in range(3)],
                fail_fast=True,
            )
            elapsed = vnow() - t0
            seq = await ex.arun_batch(
                [lp.ToolCall(nap, 1, lane="q"), lp.ToolCall(boom, lane="q")]
                + [lp.ToolCall(nap, 1, lane="q") for _ in range(3)],
                mode="sequential", fail_fast=True,
            )  # fmt: skip
            return timed, seq, elapsed

    timed, seq, elapsed = run_virtual(main)
    assert elapsed == pytest.approx(0.5)
    assert timed.outcomes == ["timeout"] + ["cancelled"] * 3
    assert seq.outcomes == ["ok", "error"] + ["cancelled"] * 3
    assert all(str(seq.errors[i]) == "nap was cancelled" for i in (2, 3, 4))


def test_timeouts_per_lane_and_per_call() -> None:
    async def nap(s: float) -> float:
        await anyio.sleep(s)
        return s

    async def main() -> tuple[lp.BatchResult, float]:
        lanes = {"q": lp.LaneConfig(max_concurrency=4, timeout_s=0.2)}
        async with lp.LaneExecutor(lanes=lanes) as ex:
            b = await ex.arun_batch(
                [
                    lp.ToolCall(nap, 0.01, lane="q"),
                    lp.ToolCall(nap, 3.0, lane="q"),
                    lp.ToolCall(nap, 0.1, lane="q").options(timeout_s=0.05),
                    lp.ToolCall(nap, 0.02, lane="q"),
                    lp.ToolCall(nap, 0.15, lane="q").options(timeout_s=1.0),  # longer than lane's
                ]
            )
            return b, vnow()

    b, end = run_virtual(main)
    assert b.outcomes == ["ok", "timeout", "timeout", "ok", "ok"]
    assert isinstance(b.errors[1], lp.TaskTimeoutError) and "0.2 s" in str(b.errors[1])
    assert isinstance(b.errors[2], lp.TaskTimeoutError) and "0.05 s" in str(b.errors[2])
    assert b.results[0] == 0.01 and b.results[3] == 0.02 and b.results[4] == 0.15
    assert end == pytest.approx(0.2)  # the 3 s body was cut at its deadline
    assert b.trace is not None
    assert [t.outcome for t in b.trace.tasks] == b.outcomes
    assert "TaskTimeoutError" in (b.trace.tasks[1].error or "")


def test_a_timeout_counts_from_the_start_of_the_body_not_from_submission() -> None:
    async def nap() -> str:
        await anyio.sleep(1.0)
        return "ok"

    async def main() -> tuple[lp.BatchResult, float]:
        lanes = {"one": lp.LaneConfig(max_concurrency=1, timeout_s=1.5)}
        async with lp.LaneExecutor(lanes=lanes) as ex:
            b = await ex.arun_batch([lp.ToolCall(nap, lane="one") for _ in range(3)])
            return b, vnow()

    b, end = run_virtual(main)
    assert b.outcomes == ["ok"] * 3  # the third waited 2 s in the queue, ran 1 s: no timeout
    assert end == pytest.approx(3.0)


async def _flaky(key: str, fail_times: int) -> str:
    _attempts[key].append(vnow())
    if len(_attempts[key]) <= fail_times:
        raise OSError("transient")
    return "ok"


_attempts: dict[str, list[float]] = defaultdict(list)
lp.tool(name="test_executor_idempotent_flaky", idempotent=True)(_flaky)


def test_retries_are_opt_in_with_exponential_backoff() -> None:
    _attempts.clear()
    idem = "test_executor_idempotent_flaky"

    async def main() -> tuple[lp.BatchResult, list[dict[str, Any]]]:
        lanes = {
            "plain": lp.LaneConfig(),
            "retrying": lp.LaneConfig(retries=2, retry_backoff_s=0.25),
        }
        async with lp.LaneExecutor(lanes=lanes) as ex:
            b = await ex.arun_batch(
                [
                    lp.ToolCall(idem, "a", 2, lane="plain"),  # the lane does not retry
                    lp.ToolCall(idem, "b", 2, lane="retrying"),  # idempotent: the lane retries
                    lp.ToolCall(idem, "c", 5, lane="retrying"),  # more failures than retries
                    lp.ToolCall(_flaky, "d", 2, lane="retrying"),  # not idempotent: never
                    lp.ToolCall(_flaky, "e", 2, lane="retrying").options(retries=2),  # opted in
                    lp.ToolCall(idem, "f", 2, lane="retrying").options(retries=0),  # opted out
                ]
            )
            return b, [e for e in ex.snapshot().events if e["type"] == "retry"]

    b, retry_events = run_virtual(main)
    assert b.outcomes == ["error", "ok", "error", "error", "ok", "error"]
    assert _attempts["a"] == [0.0] and _attempts["d"] == [0.0] and _attempts["f"] == [0.0]
    # backoff * 2**attempt: 0.25 s after the first failure, 0.5 s after the second
    for key in "bce":
        assert _attempts[key] == pytest.approx([0.0, 0.25, 0.75]), key
    assert isinstance(b.errors[2], OSError)
    assert b.trace is not None
    assert [t.extra.get("attempts") for t in b.trace.tasks] == [None, 3, 3, None, 3, None]
    assert sorted((e["attempt"], e["lane"]) for e in retry_events) == sorted(
        [(1, "retrying"), (2, "retrying")] * 3)  # fmt: skip
    ids = [t.id for t in b.trace.tasks]
    assert sorted(e["task"] for e in retry_events) == sorted([ids[1], ids[2], ids[4]] * 2)
    assert all(e["error"] == "OSError('transient')" for e in retry_events)
    assert lp.DEFAULT_LANES["execute"].retries == 0  # bash must never be retried by default


def test_retries_on_a_thread_lane() -> None:
    attempts: dict[str, int] = defaultdict(int)

    def flaky(key: str) -> str:
        attempts[key] += 1
        if attempts[key] < 3:
            raise OSError("transient")
        return "ok"

    lanes = {
        "plain": lp.LaneConfig(kind="thread"),
        "retrying": lp.LaneConfig(kind="thread", retries=2, retry_backoff_s=0.0),
    }
    lp.tool(name="test_executor_idempotent_thread_flaky", idempotent=True)(flaky)
    with lp.LaneExecutor(lanes=lanes, trace=False) as ex:
        b = ex.run_batch(
            [
                lp.ToolCall(flaky, "a", lane="plain"),
                lp.ToolCall("test_executor_idempotent_thread_flaky", "b", lane="retrying"),
                lp.ToolCall(flaky, "c", lane="retrying"),  # not declared idempotent: never
                lp.ToolCall(flaky, "d", lane="plain").options(retries=2),  # opted in
            ]
        )
    assert attempts == {"a": 1, "b": 3, "c": 1, "d": 3}
    assert b.outcomes == ["error", "ok", "error", "ok"] and b.results[1] == "ok"


def test_sequential_runs_one_at_a_time_in_order() -> None:
    g = Gauge(vnow)
    order: list[int] = []

    async def step(i: int) -> int:
        g.enter("all")
        order.append(i)
        await anyio.sleep(1)
        g.leave("all")
        return i

    lanes = ("query", "generate", "query", "control", "query", "generate")

    async def main() -> lp.BatchResult:
        async with lp.LaneExecutor() as ex:
            return await ex.arun_batch(
                [lp.ToolCall(step, i, lane=ln) for i, ln in enumerate(lanes)], mode="sequential"
            )

    b = run_virtual(main)
    assert b.results == list(range(6)) and order == list(range(6))
    assert g.peak["all"] == 1
    assert g.starts("all") == [float(i) for i in range(6)]  # each the moment the last ended
    assert b.mode == "sequential"


def test_cancelling_a_sequential_batch_drops_what_never_started() -> None:
    started: list[int] = []

    async def step(i: int) -> int:
        started.append(i)
        await anyio.sleep(1)
        return i

    async def main() -> list[str]:
        async with lp.LaneExecutor() as ex:
            with anyio.move_on_after(1.5):
                await ex.arun_batch([lp.ToolCall(step, i) for i in range(5)], mode="sequential")
            await anyio.sleep(1)
            return sorted(t.outcome for t in ex.snapshot().tasks)

    outcomes = run_virtual(main)
    assert started == [0, 1]
    assert outcomes == ["cancelled", "ok"]  # the 3 never queued are not traced as tasks


def test_auto_mode_starts_from_the_seed_rule() -> None:
    async def noop() -> None:
        return None

    with lp.LaneExecutor() as ex:
        two = ex.run_batch([lp.ToolCall(noop), lp.ToolCall(noop)], mode="auto")
    with lp.LaneExecutor() as ex:
        five = ex.run_batch([lp.ToolCall(noop) for _ in range(5)], mode="auto")
        # once profiled, the decision comes from the measured profile, not the seed rule (which
        # way it goes depends on this machine's measured costs: test_auto_policy.py pins the
        # rule on known profiles)
        again = ex.run_batch([lp.ToolCall(noop) for _ in range(5)], mode="auto")
    assert two.mode == "sequential" and two.decision is not None
    assert "fewer than 3" in two.decision.reason
    assert five.mode == "parallel" and "seed rule" in (
        five.decision.reason if five.decision else ""
    )
    assert again.decision is not None and again.mode == again.decision.mode
    assert "seed rule" not in again.decision.reason and "predicted" in again.decision.reason
    assert five.trace is not None
    assert [e["mode"] for e in five.trace.events if e["type"] == "decision"] == ["parallel"]


def test_sync_bodies_never_run_on_the_loop() -> None:
    """Four thread bodies block until an async body on the loop has ticked ten times: if a sync
    body ran on the loop, the ticker could never tick and the bodies would report it."""
    ticked = threading.Event()

    def where() -> tuple[str, bool]:
        return threading.current_thread().name, ticked.wait(60)

    async def ticker() -> int:
        n = 0
        for _ in range(10):
            await anyio.sleep(0)
            n += 1
        ticked.set()
        return n

    barrier = threading.Barrier(4, timeout=60)

    def together() -> int:
        return barrier.wait()  # only returns once four bodies run at the same time

    with lp.LaneExecutor() as ex:
        b = ex.run_batch(
            [lp.ToolCall(where, lane="query") for _ in range(4)] + [lp.ToolCall(ticker)]
        )
        side = ex.run_batch([lp.ToolCall(together, lane="execute") for _ in range(4)])
    assert b.ok and side.ok
    assert all(name.startswith("lanepar-threads") and ok for name, ok in b.results[:4])
    assert b.results[4] == 10
    assert sorted(side.results) == [0, 1, 2, 3]  # four threads of the execute lane at once


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
        for bad in (0, -1, True, 2.5, 4097):
            with pytest.raises(ValueError, match=r"must be an integer in 1\.\.4096"):
                ex.set_concurrency("query", bad)  # type: ignore[arg-type]
        assert ex.lanes["query"].limit == 16
        with pytest.raises(KeyError, match="unknown tool 'no_such_tool'"):
            ex.run_batch([lp.ToolCall("no_such_tool")])
        with pytest.raises(KeyError, match="unknown lane 'gpu'"):
            ex.run_batch([lp.ToolCall(print, lane="gpu")])
        with pytest.raises(ValueError, match="mode='fast'"):
            ex.run_batch([], mode="fast")  # type: ignore[arg-type]
        with pytest.raises(lp.LaneConfigError, match="exists already"):
            ex.add_lane("query", lp.LaneConfig())
    with pytest.raises(ValueError, match="mode='fast'"):
        lp.LaneExecutor(mode="fast")  # type: ignore[arg-type]


def test_a_bad_call_queues_nothing_of_its_batch() -> None:
    ran: list[int] = []

    async def mark(i: int) -> None:
        ran.append(i)

    with lp.LaneExecutor() as ex:
        with pytest.raises(KeyError, match="unknown tool"):
            ex.run_batch([lp.ToolCall(mark, 0), lp.ToolCall("no_such_tool"), lp.ToolCall(mark, 1)])
        assert all(v.pending == 0 and v.active == 0 for v in ex.lanes.values())
        assert ex.snapshot().tasks == []
    assert ran == []


def test_task_ids_are_unique_and_in_submission_order_across_batches() -> None:
    """A batch takes its ids in one block: each record's id follows its call's index, the next
    batch continues after it, and a batch refused before queueing takes none."""

    async def noop(i: int) -> int:
        return i

    with lp.LaneExecutor() as ex:
        a = ex.run_batch([lp.ToolCall(noop, i) for i in range(5)])
        with pytest.raises(KeyError, match="unknown tool"):
            ex.run_batch([lp.ToolCall(noop, 0), lp.ToolCall("no_such_tool")])
        b = ex.run_batch([lp.ToolCall(noop, i) for i in range(3)], mode="sequential")
    assert a.trace is not None and b.trace is not None
    ids_a = [r.id for r in sorted(a.trace.tasks, key=lambda r: int(r.args_summary))]
    ids_b = [r.id for r in sorted(b.trace.tasks, key=lambda r: int(r.args_summary))]
    assert ids_a == [1, 2, 3, 4, 5]
    assert ids_b == [6, 7, 8]


def test_empty_batch() -> None:
    with lp.LaneExecutor() as ex:
        b = ex.run_batch([])
    assert b.ok and b.results == [] and len(b) == 0


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
        with pytest.raises(RuntimeError, match="await arun_batch"):
            ex.run_batch([lp.ToolCall(echo, 1)])  # would block the loop it runs on
    assert b.results == [i * 2 for i in range(10)] + [2]
    assert b.trace is not None and len(b.trace.tasks) == 11
    assert not ex.running


@pytest.mark.anyio
async def test_cancelling_the_caller_cancels_the_batch(anyio_backend: str) -> None:
    started = 0
    all_started = anyio.Event()

    async def long() -> None:
        nonlocal started
        started += 1
        if started == 3:
            all_started.set()
        await anyio.sleep(3600)

    lanes = {"q": lp.LaneConfig(max_concurrency=3)}
    async with lp.LaneExecutor(lanes=lanes) as ex:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ex.arun_batch, [lp.ToolCall(long, lane="q") for _ in range(10)])
                await all_started.wait()
                scope.cancel()
        lane = ex.lanes["q"]
        # the cancellation reached the caller only once every task of it had stopped
        assert lane.pending == 0 and lane.active == 0
        await anyio.wait_all_tasks_blocked()
        tasks = ex.snapshot().tasks
    assert started == 3
    assert sorted(t.outcome for t in tasks) == ["cancelled"] * 10
    assert sorted(t.slot for t in tasks)[:7] == [-1] * 7
    assert sorted(t.slot >= 0 for t in tasks) == [False] * 7 + [True] * 3
    assert all("was cancelled" in (t.error or "") for t in tasks if t.slot >= 0)


def test_cancelling_one_batch_leaves_the_others_alone() -> None:
    """Two batches share a lane: cancelling one drops its queued jobs at once and cancels its
    running ones, as "cancelled" even when they have a timeout; the other's jobs, running and
    queued, finish normally."""

    async def nap(tag: str) -> str:
        await anyio.sleep(1)
        return tag

    async def main() -> tuple[list[Any], list[Any], list[lp.TaskRecord], int]:
        lanes = {"q": lp.LaneConfig(max_concurrency=2, timeout_s=100)}
        async with lp.LaneExecutor(lanes=lanes) as ex:
            a = [ex.submit(lp.ToolCall(nap, f"a{i}", lane="q")) for i in range(3)]
            b = [ex.submit(lp.ToolCall(nap, f"b{i}", lane="q")) for i in range(3)]
            await anyio.sleep(0.5)  # a0 and a1 run; a2 and b0..b2 wait
            assert ex.lanes["q"].pending == 4
            for h in a:
                h.cancel()
            pending_now = ex.lanes["q"].pending  # before any worker ran again
            got_b = [await h for h in b]
            outcomes = [h.outcome for h in a]
            return outcomes, got_b, ex.snapshot().tasks, pending_now

    outcomes, got_b, tasks, pending_now = run_virtual(main)
    assert pending_now == 3  # a2 dropped from the queue at once
    assert outcomes == ["cancelled"] * 3 and got_b == ["b0", "b1", "b2"]
    by_args = {t.args_summary: t for t in tasks}
    assert sorted(t.outcome for t in tasks) == ["cancelled"] * 3 + ["ok"] * 3
    dropped = [t for t in tasks if t.outcome == "cancelled" and t.slot < 0]
    assert len(dropped) == 1 and dropped[0].slot == -1
    assert dropped[0].wall_ns == 0 and dropped[0].started_ns == dropped[0].slot_free_ns
    assert len(by_args) == 6


def test_a_cancelled_task_says_so() -> None:
    async def long() -> None:
        await anyio.sleep(3600)

    async def main() -> lp.BatchResult:
        async with lp.LaneExecutor(lanes={"q": lp.LaneConfig(max_concurrency=1)}) as ex:
            with anyio.move_on_after(1):
                await ex.arun_batch([lp.ToolCall(long, lane="q") for _ in range(2)])
            h = ex.submit(lp.ToolCall(long, lane="q"))
            with anyio.move_on_after(1):
                await h  # cancelling the awaiting caller cancels the task too
            await anyio.sleep(1)
            assert h.done() and h.outcome == "cancelled"
            with pytest.raises(lp.TaskCancelledError, match="long was cancelled"):
                await h
            return await ex.arun_batch([])

    assert run_virtual(main).ok


def test_submit_runs_as_one_parallel_call_whatever_the_default_mode() -> None:
    async def echo(x: int) -> int:
        return x

    async def main() -> tuple[int, list[str]]:
        async with lp.LaneExecutor(mode="auto") as ex:
            value = await ex.submit(lp.ToolCall(echo, 3))
            return value, [e["type"] for e in ex.snapshot().events]

    value, events = run_virtual(main)
    assert value == 3 and "decision" not in events


def test_keyboard_interrupt_returns_what_finished_and_cancels_the_rest() -> None:
    quick_done = threading.Event()
    finished: list[int] = []

    async def quick(i: int) -> int:
        finished.append(i)
        if len(finished) == 5:
            quick_done.set()
        return i

    async def long() -> None:
        await anyio.sleep(3600)

    def interrupt_when_quick_ones_are_done() -> None:
        assert quick_done.wait(60)
        # once the caller waits for the batch, what a kernel interrupt / Ctrl-C does
        assert main_thread_waits_in("wait_interruptibly")
        _thread.interrupt_main()

    # interrupt_main() does nothing unless Python's own handler is installed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
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
        events = [e["type"] for e in ex.snapshot().events]
    assert events.count("interrupted") == 1


def test_cancel_from_another_thread() -> None:
    started = threading.Event()

    async def long() -> None:
        started.set()
        await anyio.sleep(3600)

    with lp.LaneExecutor() as ex:
        ex.cancel()  # nothing in flight: a no-op
        canceller = threading.Thread(target=lambda: started.wait(60) and ex.cancel())
        canceller.start()
        b = ex.run_batch([lp.ToolCall(long) for _ in range(6)])
        canceller.join()
    assert b.outcomes == ["cancelled"] * 6
    assert all(isinstance(e, lp.TaskCancelledError) for e in b.errors.values())


def test_submit_handles() -> None:
    async def echo(x: int) -> int:
        return x

    def bad() -> None:
        raise KeyError("missing")

    with lp.LaneExecutor() as ex:
        h = ex.submit(lp.ToolCall(echo, 5))
        assert h.result(timeout=60) == 5 and h.done() and h.outcome == "ok"
        failing = ex.submit(lp.ToolCall(bad))
        with pytest.raises(KeyError, match="missing"):
            failing.result(timeout=60)
        assert failing.outcome == "error"


def test_lazy_start_and_close() -> None:
    ex = lp.LaneExecutor()
    assert not ex.running
    try:
        assert ex.run_batch([lp.ToolCall(anyio.sleep, 0)]).ok
        assert ex.running
    finally:
        ex.close()
    assert not ex.running
    ex.close()  # idempotent


def test_activate_makes_an_executor_current_and_nests() -> None:
    a, b = lp.LaneExecutor(), lp.LaneExecutor()
    with pytest.raises(RuntimeError, match="no current lanepar executor"):
        lp.current()
    with a.activate():
        assert lp.current() is a
        with b.activate():
            assert lp.current() is b
        assert lp.current() is a
    with pytest.raises(RuntimeError):
        lp.current()


# -- lanes added, limits changed, what the trace and observers see ------------------------------
class Seen:
    def __init__(self) -> None:
        self.records: list[lp.TaskRecord] = []

    def task_finished(self, record: lp.TaskRecord) -> None:
        self.records.append(record)


def test_cancelled_and_timed_out_tasks_reach_observers_and_leave_nothing_running() -> None:
    async def long() -> None:
        await anyio.sleep(3600)

    async def main() -> tuple[list[lp.TaskRecord], dict[int, Any], list[str]]:
        seen = Seen()
        lanes = {"q": lp.LaneConfig(max_concurrency=2, timeout_s=1)}
        async with lp.LaneExecutor(lanes=lanes) as ex:
            ex.add_observer(seen)
            await ex.arun_batch([lp.ToolCall(long, lane="q")])  # times out at 1 s
            with anyio.move_on_after(0.5):
                await ex.arun_batch([lp.ToolCall(long, lane="q") for _ in range(3)])
            await anyio.sleep(1)
            running = dict(ex.recorder.running)
            traced = [t.outcome for t in ex.snapshot().tasks]
        return seen.records, running, traced

    records, running, traced = run_virtual(main)
    assert running == {}
    assert traced == ["timeout", "cancelled", "cancelled", "cancelled"]
    # the observer sees the ones that ran (a timeout and two cancelled), with their lane
    assert sorted(r.outcome for r in records) == ["cancelled", "cancelled", "timeout"]
    assert {r.lane for r in records} == {"q"}


def test_add_lane_before_and_while_running() -> None:
    g = Gauge(vnow)

    async def main() -> tuple[lp.BatchResult, lp.BatchResult, lp.Trace, dict[str, Any]]:
        lanes = {"q": lp.LaneConfig(min_concurrency=1, max_concurrency=4)}
        ex = lp.LaneExecutor(lanes=lanes, max_total=4)
        ex.add_lane("early", lp.LaneConfig(min_concurrency=1, max_concurrency=2))
        with pytest.raises(lp.LaneConfigError, match="max_total=4"):
            ex.add_lane("greedy", lp.LaneConfig(min_concurrency=3, max_concurrency=3))
        async with ex:
            ex.add_lane(
                "late", lp.LaneConfig(min_concurrency=1, max_concurrency="auto", ceiling=3)
            )
            assert ex.lanes["late"].limit == 3
            early = await ex.arun_batch([lp.ToolCall(g.tool("early", 1), lane="early")] * 4)
            late = await ex.arun_batch([lp.ToolCall(refuse, lane="late") for _ in range(8)])
            limit_events = [e for e in ex.snapshot().events if e["type"] == "limit"]
            return early, late, ex.snapshot(), {"events": limit_events, "ex": ex}

    early, late, snap, more = run_virtual(main)
    ex = more["ex"]
    assert early.ok and g.peak["early"] == 2
    assert late.outcomes == ["error"] * 8
    # the adaptive observer of the lane added while running cut its limit after 8 failures
    assert [(e["lane"], e["limit"], e["source"]) for e in more["events"]] == [
        ("late", 2, "adaptive")
    ]
    assert set(ex.lane_configs) == {"q", "early", "late"}
    assert set(snap.lanes) == {"q", "early", "late"}
    assert snap.lanes["early"]["max_concurrency"] == 2
    assert {t.lane for t in snap.tasks} == {"early", "late"}


async def refuse() -> None:
    await anyio.sleep(0)
    raise ConnectionRefusedError("full")


def test_set_concurrency_before_start_and_its_validation() -> None:
    ex = lp.LaneExecutor()
    ex.set_concurrency("query", 3)  # applied without starting anything
    assert not ex.running and ex.lanes["query"].limit == 3
    for bad in (0, 2.5, True):
        with pytest.raises(lp.LaneConfigError, match=r"set_concurrency\('query', .*1\.\.4096"):
            ex.set_concurrency("query", bad)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="lanes are control, query, execute, generate"):
        ex.set_concurrency("nope", 1)
    events = [e for e in ex.snapshot().events if e["type"] == "limit"]
    assert [(e["lane"], e["limit"], e["source"]) for e in events] == [("query", 3, "user")]
    assert ex.snapshot().lanes["query"]["max_concurrency"] == 3
    assert not ex.running


def test_shrinking_an_idle_lane_strands_no_work() -> None:
    """Surplus idle workers retire at once: a later job must never be handed to one of them
    and left waiting while a worker inside the limit sleeps."""

    async def echo(i: int) -> int:
        await anyio.sleep(1)
        return i

    async def main() -> list[lp.BatchResult]:
        async with lp.LaneExecutor(lanes={"q": lp.LaneConfig(max_concurrency=4)}) as ex:
            await ex.arun_batch([lp.ToolCall(echo, i, lane="q") for i in range(4)])  # all idle
            out = []
            for n in (2, 1):
                ex.set_concurrency("q", n)
                out.append(await ex.arun_batch([lp.ToolCall(echo, 9, lane="q")]))
            return out

    assert [b.results for b in run_virtual(main)] == [[9], [9]]


def test_results_need_a_trace_to_analyse() -> None:
    async def echo() -> int:
        return 1

    with lp.LaneExecutor(trace=False) as ex:
        b = ex.run_batch([lp.ToolCall(echo)])
    assert b.ok and b.trace is None
    for call in (b.summary, b.replay):
        with pytest.raises(ValueError, match=r"^this batch ran with trace=False: there is no"):
            call()


def test_a_policy_that_only_observes_tasks_is_subscribed() -> None:
    class Policy:
        def __init__(self) -> None:
            self.seen = 0

        def decide_batch(self, executor: Any, calls: list[Any]) -> lp.Decision:
            return lp.Decision("parallel", "test policy")

        def task_finished(self, record: lp.TaskRecord) -> None:
            self.seen += 1

    async def echo() -> int:
        return 1

    pol = Policy()
    with lp.LaneExecutor(auto_policy=pol) as ex:
        b = ex.run_batch([lp.ToolCall(echo) for _ in range(3)], mode="auto")
    assert b.decision is not None and b.decision.reason == "test policy" and pol.seen == 3
