"""``summarize(trace)``: known answers on hand-built traces, and sanity on a real run."""

from __future__ import annotations

import math
from typing import Any

import anyio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lanepar as lp
from lanepar.analysis.stats import peak_overlap, percentile, union_length
from lanepar.analysis.summary import summarize
from lanepar.trace.model import KIND_CODE, OUTCOMES, Sample, TaskRecord, Trace

MS = 1_000_000
US = 1_000

Q, D, C, W = (KIND_CODE[k] for k in ("queued", "dispatch", "cpu", "wait"))


def rec(
    id: int,
    *,
    lane: str = "a",
    sub: int,
    free: int,
    start: int,
    fin: int,
    cpu: int | None = None,
    slot: int = 0,
    outcome: str = "ok",
    error: str | None = None,
) -> TaskRecord:
    """A task whose body is one cpu piece then one wait piece (cpu defaults to half the body)."""
    cpu = (fin - start) // 2 if cpu is None else cpu
    segs = []
    if free > sub:
        segs.append((Q, sub, free))
    if start > free:
        segs.append((D, free, start))
    if cpu:
        segs.append((C, start, start + cpu))
    if fin > start + cpu:
        segs.append((W, start + cpu, fin))
    return TaskRecord(
        id=id,
        lane=lane,
        name=f"tool{id}",
        args_summary=f"x={id}",
        outcome=outcome,
        submitted_ns=sub,
        slot_free_ns=free,
        started_ns=start,
        finished_ns=fin,
        cpu_ns=cpu,
        wait_ns=fin - start - cpu,
        slot=slot,
        segments=segs,
        extra={"error": error} if error else None,
    )


LANES: dict[str, dict[str, Any]] = {
    "a": {"kind": "async", "priority": 1, "min_concurrency": 1, "max_concurrency": 2},
    "b": {"kind": "thread", "priority": 2, "min_concurrency": 1, "max_concurrency": 3},
    "unused": {"kind": "async", "priority": 5, "min_concurrency": 1, "max_concurrency": 50},
}


def known_trace() -> Trace:
    """Lane a (limit 2): four 10 ms tasks, two at a time, on slots 0 and 1.
    Lane b (limit 3): one 20 ms task that failed. Window 0..20 ms."""
    base = 1_000 * MS
    tasks = [
        rec(1, sub=base, free=base + 100 * US, start=base + 110 * US, fin=base + 10 * MS),
        rec(2, sub=base, free=base + 100 * US, start=base + 120 * US, fin=base + 10 * MS, slot=1),
        rec(3, sub=base, free=base + 10 * MS, start=base + 10 * MS + 10 * US, fin=base + 20 * MS),
        rec(4, sub=base, free=base + 10 * MS, start=base + 10 * MS + 30 * US, fin=base + 20 * MS,
            slot=1),
        rec(5, lane="b", sub=base, free=base, start=base + 40 * US, fin=base + 20 * MS,
            cpu=20 * MS - 40 * US, outcome="error", error="ValueError: boom"),
    ]  # fmt: skip
    # A sample holds the utilisation since the sample before it (as the sampler and the
    # executor's per-batch ticks take them): the first one and the last only bound intervals
    # that lie outside the window, so they count for nothing.
    samples = [
        Sample(base - 50 * MS, (0.9, 0.9), 7.0, {}),
        Sample(base + 10 * MS, (0.5, 1.0), 1.5, {"a": (2, 2, 2)}),
        Sample(base + 20 * MS, (0.25, 0.75), 0.5, {"a": (2, 0, 2)}),
        Sample(base + 99 * MS, (0.0, 0.0), 9.0, {}),  # covers 20..99 ms: after the window
    ]
    events = [
        {"t_ns": base, "type": "decision", "mode": "parallel"},
        {"t_ns": base + 1, "type": "limit", "lane": "a", "limit": 2},
    ]
    return Trace(
        tasks, samples, lanes=LANES, start_ns=base, end_ns=base + 20 * MS, events=events, dropped=3
    )


def test_known_answers() -> None:
    s = lp.summarize(known_trace())
    assert s["tasks"] == 5
    assert s["errors"] == 1
    assert s["outcomes"] == {"ok": 4, "error": 1, "cancelled": 0, "timeout": 0}
    assert s["wall_s"] == pytest.approx(0.020)
    bodies = [10 * MS - 110 * US, 10 * MS - 120 * US, 10 * MS - 10 * US, 10 * MS - 30 * US]
    task_ns = sum(bodies) + 20 * MS - 40 * US
    assert s["task_time_s"] == pytest.approx(task_ns / 1e9)
    # cpu + wait split every body here, so the sequential estimate is the bodies' sum
    assert s["speedup"] == pytest.approx(task_ns / (20 * MS))
    assert s["sequential_estimate_s"] == pytest.approx(task_ns / 1e9)
    # lanes used: a (4 tasks, limit 2) + b (1 task, limit 3); "unused" does not count.
    assert s["ideal_speedup"] == 2 + 1
    assert s["efficiency"] == pytest.approx(s["speedup"] / 3)
    assert s["cpu_s"] + s["wait_s"] == pytest.approx(s["task_time_s"])
    assert s["cpu_s"] == pytest.approx((sum(b // 2 for b in bodies) + 20 * MS - 40 * US) / 1e9)
    # queued: 100us, 100us, 10ms, 10ms, 0 -> p50 is 100us
    assert s["queued_p50_us"] == pytest.approx(100.0)
    # dispatch: 10, 20, 10, 30, 40 us -> sorted 10,10,20,30,40
    assert s["dispatch_p50_us"] == pytest.approx(20.0)
    assert s["dispatch_p99_us"] == pytest.approx(30 + 0.96 * 10)
    assert s["cpu_util_source"] == "samples"
    assert s["cpu_util_per_core"] == pytest.approx([0.375, 0.875])
    assert s["cpu_util_avg"] == pytest.approx(0.625)
    assert s["proc_cpu_avg"] == pytest.approx(1.0)
    assert s["dropped"] == 3
    assert s["decisions"] == [{"t_ns": 1_000 * MS, "type": "decision", "mode": "parallel"}]

    a, b = s["per_lane"]["a"], s["per_lane"]["b"]
    assert list(s["per_lane"]) == ["a", "b"]
    assert a["tasks"] == 4 and a["errors"] == 0 and a["peak_active"] == 2
    assert a["max_concurrency"] == 2
    # Both first-wave tasks end at exactly 10 ms and the second wave starts 10 us later: the
    # union of a's bodies is two spans with a 10 us hole.
    assert a["busy_s"] == pytest.approx((10 * MS - 110 * US + 10 * MS - 10 * US) / 1e9)
    assert a["dispatch_p99_us"] == pytest.approx(20 + 0.97 * 10)
    assert b["tasks"] == 1 and b["errors"] == 1 and b["peak_active"] == 1
    assert b["busy_s"] == pytest.approx((20 * MS - 40 * US) / 1e9)


def test_empty_trace_is_all_zeros() -> None:
    s = summarize(Trace([]))
    assert s["tasks"] == 0 and s["errors"] == 0
    for key in ("wall_s", "task_time_s", "speedup", "ideal_speedup", "efficiency", "cpu_s",
                "wait_s", "queued_p50_us", "dispatch_p50_us", "dispatch_p99_us", "cpu_util_avg",
                "proc_cpu_avg"):  # fmt: skip
        assert s[key] == 0, key
    assert s["per_lane"] == {} and s["decisions"] == [] and s["cpu_util_per_core"] == []
    assert s["cpu_util_source"] == "none"


def test_estimate_without_samples_and_peak_fallback() -> None:
    """No samples: CPU use comes from task CPU time; a lane of unknown limit uses its peak."""
    base = 10 * MS
    tasks = [
        rec(i, lane="x", sub=base, free=base, start=base, fin=base + 10 * MS, cpu=10 * MS, slot=i)
        for i in range(3)
    ]
    t = Trace(tasks, lanes={"x": {"max_concurrency": "auto"}}, n_cores=4)
    s = lp.summarize(t)
    assert s["cpu_util_source"] == "estimate"
    assert s["cpu_util_avg"] == pytest.approx(30 / (10 * 4))
    assert s["proc_cpu_avg"] == pytest.approx(3.0)
    assert s["per_lane"]["x"]["max_concurrency"] is None
    assert s["per_lane"]["x"]["peak_active"] == 3
    assert s["ideal_speedup"] == 3 and s["speedup"] == pytest.approx(3.0)
    assert s["efficiency"] == pytest.approx(1.0)


def test_unstarted_tasks_do_not_count_as_active_or_dispatch() -> None:
    base = 5 * MS
    tasks = [
        rec(1, sub=base, free=base, start=base + 10 * US, fin=base + MS),
        rec(2, sub=base, free=base + MS, start=base + MS, fin=base + MS, cpu=0, slot=-1,
            outcome="cancelled"),
    ]  # fmt: skip
    s = lp.summarize(Trace(tasks, lanes=LANES))
    assert s["per_lane"]["a"]["peak_active"] == 1
    assert s["dispatch_p50_us"] == pytest.approx(10.0)
    assert s["outcomes"]["cancelled"] == 1 and s["errors"] == 1


finite = st.floats(-1e9, 1e9, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_matches_numpy_linear(xs: list[float], q: float) -> None:
    expect = float(np.percentile(xs, q, method="linear"))
    assert percentile(xs, q) == pytest.approx(expect, rel=1e-9, abs=1e-6)


def test_percentile_rejects_bad_q() -> None:
    with pytest.raises(ValueError, match="q="):
        percentile([1.0], 101)


intervals = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda p: (min(p), max(p))),
    max_size=25,
)


@given(intervals)
def test_peak_and_union_match_brute_force(spans: list[tuple[int, int]]) -> None:
    alive = [sum(1 for s, e in spans if s <= t < e) for t in range(61)]
    assert peak_overlap(spans) == max(alive, default=0)
    assert union_length(spans) == sum(1 for n in alive if n)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6),
            st.integers(0, 10**6), st.integers(-1, 3), st.sampled_from(OUTCOMES),
        ),
        max_size=30,
    )
)  # fmt: skip
def test_summary_never_raises_and_stays_in_range(rows: list[tuple[Any, ...]]) -> None:
    tasks = []
    for i, (sub, q, d, w, slot, outcome) in enumerate(rows):
        tasks.append(
            rec(i, sub=sub, free=sub + q, start=sub + q + d, fin=sub + q + d + w, slot=slot,
                outcome=outcome)
        )  # fmt: skip
    s = lp.summarize(Trace(tasks, lanes=LANES))
    assert s["tasks"] == len(rows)
    assert sum(s["outcomes"].values()) == len(rows)
    assert 0 <= s["cpu_util_avg"] <= 1
    for v in (s["speedup"], s["efficiency"], s["wall_s"], s["dispatch_p99_us"]):
        assert math.isfinite(v) and v >= 0
    # Bodies summed over the window can never exceed the peak number running at once.
    peak = max((lane["peak_active"] for lane in s["per_lane"].values()), default=0)
    assert s["speedup"] <= peak + 1e-9


def test_real_run_summary() -> None:
    arrived = 0
    everyone = anyio.Event()

    async def together() -> None:  # every body runs at once, whatever the machine's load
        nonlocal arrived
        arrived += 1
        if arrived == 9:
            everyone.set()
        await everyone.wait()

    async def nap(i: int) -> int:
        await together()
        await anyio.sleep(0.05)
        return i

    async def boom() -> None:
        await together()
        raise ValueError("boom")

    with lp.LaneExecutor() as ex:
        b = ex.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(8)]
                         + [lp.ToolCall(boom, lane="query")])  # fmt: skip
    assert b.trace is not None
    s = b.summary()
    assert s["tasks"] == 9
    assert s["errors"] == 1 and s["outcomes"]["error"] == 1 and s["outcomes"]["ok"] == 8
    lane = s["per_lane"]["query"]
    assert lane["tasks"] == 9 and lane["errors"] == 1
    limit = b.trace.lanes["query"]["max_concurrency"]
    assert lane["max_concurrency"] == limit == 16
    assert lane["peak_active"] == 9
    assert s["ideal_speedup"] == min(9, limit)
    # Each of the eight naps slept at least 50 ms; the batch's speedup is the time its bodies
    # would take alone (their CPU and I/O waits) over its wall time, bounded by how many ran at
    # once. A step a busy machine preempted, or a body the loop thread was slow to reach, also
    # waited for the GIL or a core: that comes from running beside others, not alone.
    assert s["task_time_s"] >= 8 * 0.05
    assert s["sequential_estimate_s"] == pytest.approx(s["cpu_s"] + s["wait_s"])
    assert s["speedup"] == pytest.approx(s["sequential_estimate_s"] / s["wall_s"])
    assert 0 < s["speedup"] <= lane["peak_active"]
    assert s["efficiency"] == pytest.approx(s["speedup"] / s["ideal_speedup"])
    # cpu, wait, GIL and run-queue waits split each body's wall time exactly.
    split = s["cpu_s"] + s["wait_s"] + s["gil_wait_s"] + s["runq_wait_s"]
    assert split == pytest.approx(s["task_time_s"], rel=1e-6, abs=1e-6)
    assert s["wait_s"] >= 8 * 0.05 - s["cpu_s"]  # a suspension is all wait
    assert 0 <= s["cpu_util_avg"] <= 1


def test_speedup_counts_only_the_time_a_task_would_spend_alone() -> None:
    """GIL, run-queue, queued and dispatch time come from running beside others: the
    sequential estimate leaves them out, whatever the segments say."""
    from lanepar.trace.model import KIND_CODE

    base = 1_000 * MS
    tasks = []
    for i in range(4):
        sub, free, start = base, base + 5 * MS, base + 6 * MS  # 5 ms queued, 1 ms dispatch
        bounds = [start, start + 2 * MS, start + 5 * MS, start + 6 * MS, start + 10 * MS]
        kinds = ("cpu", "gil", "runq", "wait")  # 2 ms cpu, 3 ms gil, 1 ms runq, 4 ms wait
        segs = [(Q, sub, free), (D, free, start)]
        segs += [(KIND_CODE[k], a, b) for k, a, b in zip(kinds, bounds, bounds[1:])]
        tasks.append(TaskRecord(
            id=i + 1, lane="a", name="t", args_summary="", outcome="ok", submitted_ns=sub,
            slot_free_ns=free, started_ns=start, finished_ns=bounds[-1], cpu_ns=2 * MS,
            wait_ns=4 * MS, gil_ns=3 * MS, runq_ns=1 * MS, slot=i, segments=segs,
        ))  # fmt: skip
    s = lp.summarize(Trace(tasks, lanes=LANES, start_ns=base, end_ns=base + 16 * MS))
    assert s["sequential_estimate_s"] == pytest.approx(4 * 6 * MS / 1e9)
    assert s["speedup"] == pytest.approx(4 * 6 / 16)
    assert s["gil_wait_s"] == pytest.approx(4 * 3 * MS / 1e9)
    assert s["runq_wait_s"] == pytest.approx(4 * 1 * MS / 1e9)
    assert not s["ran_sequentially"]


def test_a_sequential_run_has_ideal_one() -> None:
    """Each slot freed once the previous task finished: one at a time was the plan, so a
    sequential run reads as 1x of 1x, not as a failure against the lane limits."""
    base = 1_000 * MS
    tasks, t = [], base
    for i in range(6):
        tasks.append(rec(i + 1, lane="ab"[i % 2], sub=base, free=t, start=t + 20 * US,
                         fin=t + 10 * MS, slot=0))  # fmt: skip
        t += 10 * MS + 50 * US
    s = lp.summarize(Trace(tasks, lanes=LANES, start_ns=base, end_ns=t))
    assert s["ran_sequentially"]
    assert s["ideal_speedup"] == 1
    assert 0.95 < s["speedup"] <= 1 and s["efficiency"] == pytest.approx(s["speedup"])
    # the same tasks overlapping by one microsecond are not a sequence any more
    tasks[3] = rec(4, lane="b", sub=base, free=tasks[2].finished_ns - 1 * US, start=t,
                   fin=t + MS, slot=1)  # fmt: skip
    s = lp.summarize(Trace(tasks, lanes=LANES, start_ns=base, end_ns=t + MS))
    assert not s["ran_sequentially"] and s["ideal_speedup"] == 2 + 3


def test_a_limit_that_moved_counts_at_its_highest_for_the_ideal() -> None:
    """An adaptive lane ends a run at limit 2 after running 3 at once under a limit of 4: the
    ideal is what the lane was allowed, so efficiency stays a fraction."""
    base = 1_000 * MS
    tasks = [rec(i + 1, sub=base, free=base, start=base, fin=base + 10 * MS, slot=i)
             for i in range(3)]  # fmt: skip
    lanes = {"a": {**LANES["a"], "max_concurrency": 2}}
    events = [{"t_ns": base, "type": "limit", "lane": "a", "limit": 4},
              {"t_ns": base + MS, "type": "limit", "lane": "a", "limit": 2}]  # fmt: skip
    s = lp.summarize(Trace(tasks, lanes=lanes, start_ns=base, end_ns=base + 10 * MS,
                           events=events))  # fmt: skip
    assert s["per_lane"]["a"]["peak_active"] == 3
    assert s["ideal_speedup"] == 3  # min(3 tasks, the highest limit 4)
    assert s["efficiency"] <= 1
