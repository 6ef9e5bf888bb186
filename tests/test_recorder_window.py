"""``Recorder.window`` reads only the tail of its rings, and still returns exactly what a full
scan would: samples and events inside [lo, hi], in order, whatever order they were added in."""

from __future__ import annotations

import random
import time
from typing import Any

from lanepar.trace.model import Sample
from lanepar.trace.recorder import Recorder


def _full_scan(rec: Recorder, lo: int, hi: int) -> tuple[list[Sample], list[dict[str, Any]]]:
    return ([s for s in rec.samples if lo <= s.t_ns <= hi],
            [e for e in rec.events if lo <= e["t_ns"] <= hi])  # fmt: skip


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
