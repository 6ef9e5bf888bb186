"""``Recorder.window`` reads only the tail of its rings, and still returns exactly what a full
scan would: samples and events inside [lo, hi], in order, whatever order they were added in."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import lanepar as lp
from lanepar.trace.model import Sample, TaskRecord
from lanepar.trace.recorder import Recorder


def _full_scan(rec: Recorder, lo: int, hi: int) -> tuple[list[Sample], list[dict[str, Any]]]:
    return ([s for s in rec.samples if lo <= s.t_ns <= hi],
            [e for e in rec.events if lo <= e["t_ns"] <= hi])  # fmt: skip


def _add(a: int, b: int) -> int:
    return a + b


def _sample(t: int) -> Sample:
    return Sample(t, (0.5,), 0.1, {})


def test_window_matches_a_full_scan_for_ordered_and_backdated_records() -> None:
    rec = Recorder()
    rnd = random.Random(7)
    marks = []
    for i in range(2000):
        now = time.perf_counter_ns()
        rec.add_sample(_sample(now))
        if i % 3 == 0:
            rec.add_event("plain", i=i)
        if i % 17 == 0:  # reported when it ended: dated up to 5 ms in the past
            rec.add_event("loop_blocked", t_ns=now - rnd.randrange(5_000_000), i=i)
        marks.append(now)
    for _ in range(200):
        lo, hi = sorted(rnd.sample(marks, 2))
        assert rec.window(lo, hi) == _full_scan(rec, lo, hi)
    assert rec.window(marks[-1] + 10**9, marks[-1] + 2 * 10**9) == ([], [])


def test_window_falls_back_to_a_full_scan_when_order_is_broken() -> None:
    rec = Recorder()
    base = time.perf_counter_ns() - 10**9
    for t in (base + 50, base + 10, base + 30, base + 5):  # added out of order
        rec.add_sample(_sample(t))
    rec.add_event("future", t_ns=time.perf_counter_ns() + 10**9)  # dated ahead of arrival
    rec.add_event("now")
    for lo, hi in ((base + 20, base + 60), (base, base + 12), (base, 2 * 10**18)):
        assert rec.window(lo, hi) == _full_scan(rec, lo, hi)
    assert [s.t_ns - base for s in rec.window(base, base + 60)[0]] == [50, 10, 30, 5]
    assert [e["type"] for e in rec.window(base, 2 * 10**18)[1]] == ["future", "now"]


def test_window_of_a_full_ring_sees_only_what_the_ring_still_holds() -> None:
    rec = Recorder(max_samples=10, max_events=10)
    t0 = time.perf_counter_ns()
    for _ in range(25):
        rec.add_sample(_sample(time.perf_counter_ns()))
        rec.add_event("tick")
    samples, events = rec.window(t0, time.perf_counter_ns())
    assert len(samples) == 10 and len(events) == 10
    assert (samples, events) == _full_scan(rec, t0, time.perf_counter_ns())


def _task(i: int, t: int) -> TaskRecord:
    return TaskRecord(id=i, lane="q", name="t", args_summary="", outcome="ok", submitted_ns=t,
                      slot_free_ns=t, started_ns=t, finished_ns=t + 1, cpu_ns=1, wait_ns=0,
                      slot=0)  # fmt: skip


def test_a_full_task_ring_takes_older_samples_and_events_with_it() -> None:
    """With ``max_tasks`` reached, nothing older than the oldest kept task can be shown, so it
    is not kept either: a long-lived executor with a small ``max_tasks`` stays flat."""
    rec = Recorder(max_tasks=3)
    for i in range(10):
        t = 1_000 * (i + 1)
        rec.add(_task(i, t))
        rec.add_sample(_sample(t + 10))
        rec.add_event("tick", t_ns=t + 20)
    oldest = rec.tasks[0].submitted_ns
    assert [t.submitted_ns for t in rec.tasks] == [8_000, 9_000, 10_000]
    assert [s.t_ns for s in rec.samples] == [8_010, 9_010, 10_010]
    assert all(e["t_ns"] >= oldest for e in rec.events) and len(rec.events) == 3
    assert rec.dropped == 7 + 7  # the tasks and the events that fell off


def test_a_ring_not_yet_full_keeps_everything() -> None:
    rec = Recorder(max_tasks=100)
    for i in range(10):
        rec.add(_task(i, 1_000 * (i + 1)))
        rec.add_sample(_sample(5))  # older than every task, kept while there is room
    assert len(rec.samples) == 10


def test_a_batch_trace_looked_at_later_holds_what_its_end_saw() -> None:
    """``BatchResult.trace`` is assembled on first look, from what the batch's end took: a
    sample or event recorded after the batch returned is not in it, however late it is asked
    for; asked from two threads at once it is one object."""
    with lp.LaneExecutor(lanes={"query": lp.LaneConfig(max_concurrency=2)}) as ex:
        b = ex.run_batch([lp.ToolCall(_add, 1, 2, lane="query") for _ in range(3)])
        returned = time.perf_counter_ns()
        sampler = ex._sampler
        for _ in range(3):
            sampler.tick()
        ex.recorder.add_event("limit", lane="query", limit=2, source="test")
        assert ex.recorder.samples[-1].t_ns > returned
        got: list[object] = []
        threads = [threading.Thread(target=lambda: got.append(b.trace)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        trace = b.trace
        assert trace is not None and all(g is trace for g in got)
        assert [t.outcome for t in trace.tasks] == ["ok"] * 3
        assert trace.samples and all(s.t_ns <= returned for s in trace.samples)
        assert all(e["t_ns"] <= returned for e in trace.events)
        assert b == b and repr(b).startswith("BatchResult(results=[3, 3, 3]")
