"""The C look-up of a late start's window (``_latec.c``: ``loop_waits`` where the samples' picture
is up to date) answers what ``lanepar.trace.probe.loop_waits`` answers, on real running sums.

The loop thread's sampled states are a ``CumulativeRuns`` picture that grows as the thread
watch's samples arrive. A window asked when no sample came since the last look is two bisections
over it — in C, without the Python calls around them; any other (a first look, new samples, a
window older than the picture) goes to the Python one, which takes the samples in. Here twin
pictures over generated samples answer a sequence of windows, samples arriving between some of
them, through each version; answers and pictures must stay equal.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanepar.trace import _late, _statewatch
from lanepar.trace._cumruns import CumulativeRuns
from lanepar.trace._loopclock import _stepc
from lanepar.trace.probe import LOOKUP_MIN_NS, _clock, loop_waits

pytestmark = pytest.mark.skipif(_stepc is None, reason="the C step driver's module is not built")

T0 = 10**12
PERIOD = 4_000_000
CLASSES = [_statewatch.C_RUN, _statewatch.C_FUTEX, _statewatch.C_OTHER, _statewatch.C_LOCK]


class Watch:
    """The thread watch's reads: the samples written so far (``shown`` of them)."""

    def __init__(self, samples: list[tuple[int, int, int]]) -> None:
        self.all = samples
        self.shown = 0

    def samples(self, slot: int, t0: int, t1: int) -> list[tuple[int, int, int]]:
        got = self.all[: self.shown]
        first = max([i for i, s in enumerate(got) if s[0] <= t0], default=0)
        return [s for s in got[first:] if s[0] <= t1]

    def written(self, slot: int) -> int:
        return self.shown

    def current_period_ns(self) -> int:
        return PERIOD


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 40))
    t, rq, samples = T0, 0, []
    for _ in range(n):
        t += draw(st.integers(1, 3 * PERIOD))
        rq += draw(st.sampled_from([0, 0, draw(st.integers(0, 3 * PERIOD))]))
        samples.append((t, draw(st.sampled_from(CLASSES)), rq))
    span = t - T0 + 4 * PERIOD
    asks = []
    for _ in range(draw(st.integers(1, 12))):
        a = T0 + draw(st.integers(-PERIOD, span))
        wall = draw(st.one_of(st.integers(0, 3 * LOOKUP_MIN_NS), st.integers(0, span),
                              st.sampled_from([2 * PERIOD - 1, 2 * PERIOD])))  # fmt: skip
        cpu0 = draw(st.sampled_from([0, 7 * 10**9, 7 * 10**9]))
        used = draw(st.one_of(st.integers(0, wall + 20_000), st.integers(0, 30_000)))
        # (new samples before a third of the windows: the rest find the picture up to date)
        shown = draw(st.integers(0, n)) if draw(st.integers(0, 2)) == 0 else 0
        asks.append((a, a + wall, cpu0, cpu0 + used if draw(st.booleans()) else 0, shown))
    if draw(st.booleans()):  # (in order: each window from where the picture starts on, as a
        asks.sort()  # fan-out's are; out of order the Python one starts it afresh now and then)
    return {"samples": samples, "asks": asks, "states": draw(st.booleans()),
            "first": draw(st.integers(1, n))}  # fmt: skip


def answers(fn: Any, case: dict[str, Any]) -> tuple[list[tuple[int, int]], tuple[Any, ...]]:
    watch = Watch(case["samples"])
    runs = CumulativeRuns(watch.samples, 0, watch.current_period_ns, watch.written)
    c = _clock.s
    was = c.states, c.contention
    c.states, c.contention = (watch if case["states"] else None), runs
    try:
        out = []
        watch.shown = case["first"]  # (written before the first window)
        for t0, t1, cpu0, cpu1, shown in case["asks"]:
            watch.shown = max(watch.shown, shown)  # (samples arrive; never taken back)
            out.append(tuple(fn(t0, t1, cpu0, cpu1)))
        picture = (runs._bounds, runs._cg, runs._cr, runs._kinds, runs._last, runs._seen)
        return out, picture
    finally:
        c.states, c.contention = was


@settings(max_examples=500, deadline=None)
@given(histories())
def test_the_c_look_up_is_the_python_one(case: dict[str, Any]) -> None:
    assert answers(_stepc.loop_waits, case) == answers(loop_waits, case)


def test_an_up_to_date_picture_is_read_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a look that took the samples in, a window asked with no new sample is answered in
    C, without the Python ``between`` (counted here), and equals its answer; with a new sample
    the Python one takes it in. Another type (a subclass) is always left to Python."""
    samples = [(T0 + i * PERIOD, CLASSES[i % 4], i * 1_000_000) for i in range(1, 30)]
    watch = Watch(samples)
    watch.shown = len(samples) - 1
    calls: list[tuple[int, int]] = []
    real = CumulativeRuns.between

    def counted(self: CumulativeRuns, t0: int, t1: int) -> tuple[int, int]:
        calls.append((t0, t1))
        return real(self, t0, t1)

    class Sub(CumulativeRuns):
        __slots__ = ()

    c = _clock.s
    was = c.states, c.contention
    window = (T0 + 5 * PERIOD, T0 + 20 * PERIOD, 0, 0)  # (inside the picture: not stale)
    try:
        for kind in (CumulativeRuns, Sub):
            runs = kind(watch.samples, 0, watch.current_period_ns, watch.written)
            c.states, c.contention = None, runs
            loop_waits(T0, T0 + 30 * PERIOD, 0, 0)  # (the Python one: takes the samples in)
            want = loop_waits(*window)
            assert want != (0, 0)
            monkeypatch.setattr(CumulativeRuns, "between", counted)
            calls.clear()
            assert _stepc.loop_waits(*window) == want
            assert len(calls) == (0 if kind is CumulativeRuns else 1)
            watch.shown += 1  # a new sample: the Python one takes it in
            assert _stepc.loop_waits(*window) == real(runs, *window[:2])
            assert len(calls) == (1 if kind is CumulativeRuns else 2)
            monkeypatch.undo()
            watch.shown -= 1
    finally:
        c.states, c.contention = was


@pytest.mark.parametrize("wall", [2 * PERIOD - 1, 2 * PERIOD])
def test_a_window_the_samples_saw_no_wait_in_keeps_its_off_cpu_time_only_if_short(
    wall: int,
) -> None:
    """Off its CPU for most of a window in which every sample saw it running: under two periods
    the samples could have missed it all (the time counts as a GIL wait), at two or more they
    would not have (none) — the edge taken alike by both."""
    samples = [(T0 + i * PERIOD, _statewatch.C_RUN, 0) for i in range(1, 30)]
    first = (T0 + 4 * PERIOD, T0 + 6 * PERIOD, 0, 0, 0)  # (the picture, then up to date)
    ask = (T0 + 5 * PERIOD, T0 + 5 * PERIOD + wall, 10**9, 10**9 + 1000, 0)
    case = {"samples": samples, "states": True, "first": len(samples), "asks": [first, ask]}
    got = answers(_stepc.loop_waits, case)
    assert got == answers(loop_waits, case)
    assert got[0][1] == ((wall - 1000, 0) if wall < 2 * PERIOD else (0, 0))


def test_the_late_start_uses_it() -> None:
    assert _late.late_start is _stepc.late_start  # (whose look-up is lookup(): this one)
    with pytest.raises(TypeError, match="4 arguments"):
        _stepc.loop_waits(1, 2)  # type: ignore[call-arg]
