"""The loop thread's contention as a running sum must say what splitting each window afresh says.

Pure arithmetic over samples: a recorded sample list stands in for the thread watch, and the
reference is :func:`lanepar.trace._stateruns._runs` over the whole list, clipped to the window.
And a late start's window too short for a look-up is answered without the loop's CPU clock.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lanepar.trace import _statewatch as sw
from lanepar.trace._cumruns import CumulativeRuns, hand_off_waits
from lanepar.trace._stateruns import GIL, RUNQ, _runs
from lanepar.trace.probe import LOOKUP_MIN_NS, start_waits

PERIOD = 4_000_000
MS = 1_000_000
Sample = tuple[int, int, int]


class Ring:
    """What ``ThreadWatch.samples`` answers, over samples revealed as time goes on."""

    def __init__(self, samples: list[Sample]) -> None:
        self.all = samples
        self.now = 0
        self.calls = 0

    def written(self, slot: int) -> int:
        """What the watch's write index says: how many samples exist by now."""
        return sum(1 for s in self.all if s[0] <= self.now)

    def samples(self, slot: int, t0: int, t1: int) -> list[Sample]:
        self.calls += 1
        seen = [s for s in self.all if s[0] <= min(t1, self.now)]
        before = [s for s in seen if s[0] <= t0]
        return ([before[-1]] if before else []) + [s for s in seen if s[0] > t0]


def reference(samples: list[Sample], t0: int, t1: int, now: int) -> tuple[int, int]:
    seen = [s for s in samples if s[0] <= now]
    if not seen or seen[-1][0] < t0 - 2 * PERIOD:
        return 0, 0
    origin = min(seen[0][0], t0)
    gil = runq = 0
    for kind, s, e in _runs(seen, origin, max(t1, seen[-1][0]) + 1, PERIOD):
        overlap = max(0, min(e, t1) - max(s, t0))
        gil += overlap if kind == GIL else 0
        runq += overlap if kind == RUNQ else 0
    return gil, runq


@st.composite
def sampled_thread(draw: st.DrawFn) -> list[Sample]:
    n = draw(st.integers(1, 40))
    t, rq, out = 1_000_000_000, 0, []
    for _ in range(n):
        t += draw(st.integers(1, 3 * PERIOD))
        rq += draw(st.integers(0, PERIOD))
        out.append((t, draw(st.sampled_from([sw.C_RUN, sw.C_FUTEX, sw.C_OTHER])), rq))
    return out


@settings(max_examples=300, deadline=None)
@given(sampled_thread(), st.data())
def test_windows_match_a_fresh_split(samples: list[Sample], data: st.DataObject) -> None:
    ring = Ring(samples)
    # with the write index, as the loop's watch has it, or without (the ring read every time)
    counted = data.draw(st.booleans())
    runs = CumulativeRuns(ring.samples, 0, lambda: PERIOD, ring.written if counted else None)
    lo, hi = samples[0][0] - PERIOD, samples[-1][0] + PERIOD
    # windows asked as a batch asks them: time moves on, each window ends about now. The first
    # reaches back past the first sample, so the running sum starts where the reference does.
    ring.now = data.draw(st.integers(samples[0][0], hi))
    windows = [(lo, ring.now, ring.now)]
    for _ in range(data.draw(st.integers(0, 12))):
        # the watch holds the loop thread before a batch starts: a window ends after a sample
        now = data.draw(st.integers(samples[0][0], hi))
        t1 = data.draw(st.integers(samples[0][0], now))
        windows.append((data.draw(st.integers(lo, t1)), t1, now))
    for t0, t1, now in windows:
        ring.now = max(ring.now, now)
        got = runs.between(t0, t1)
        want = reference(samples, t0, t1, ring.now) if t1 > t0 else (0, 0)
        assert got == want, (t0, t1, ring.now)


def test_a_batch_of_windows_reads_each_sample_once() -> None:
    """Overlapping windows of one batch cost a bisection each, not a walk over their samples."""
    samples = [
        (1_000_000_000 + i * PERIOD, sw.C_FUTEX if i % 3 else sw.C_RUN, 0) for i in range(500)
    ]
    ring = Ring(samples)
    ring.now = samples[-1][0]
    runs = CumulativeRuns(ring.samples, 0, lambda: PERIOD)
    start = samples[0][0]
    total = [runs.between(start, start + k * PERIOD) for k in range(1, 500)]
    assert total[-1] == reference(samples, start, start + 499 * PERIOD, ring.now)
    assert len(runs._bounds) == 499  # every sample taken in once


def test_lock_waits_are_a_share_of_the_gil_wait_and_draw_as_gil() -> None:
    """Waits for the GIL and for other locks share the futex time the samples saw; on the
    timeline both are ``gil`` ("GIL / lock wait"), merged where they touch."""
    from lanepar.trace._stateruns import CPU, LOCK, WAIT, Split, split_of

    runs = [(GIL, 0, 10), (LOCK, 10, 40), (WAIT, 40, 50), (CPU, 50, 60)]
    # 80 ns off-CPU (100 - 10 cpu - 10 runq): 40 of 50 sampled blocked ns were futex -> 64 gil,
    # of which 30 of 40 on another lock -> 48
    assert split_of(runs, 100, 10, 10) == Split(
        10, 64, 10, 16, [(GIL, 0, 40), (WAIT, 40, 50), (CPU, 50, 60)], 48
    )
    assert split_of([(WAIT, 0, 5)], 10, 0, 0) == Split(0, 0, 0, 10, [(WAIT, 0, 5)], 0)


def test_the_loop_waiting_on_a_lock_is_contention_like_the_gil() -> None:
    samples = [(1_000_000_000, sw.C_LOCK, 0), (1_000_000_000 + 2 * PERIOD, sw.C_OTHER, 0)]
    ring = Ring(samples)
    ring.now = samples[-1][0]
    runs = CumulativeRuns(ring.samples, 0, lambda: PERIOD)
    assert runs.between(samples[0][0], samples[-1][0]) == (PERIOD, 0)


def test_a_span_whose_ends_ran_is_not_drawn_from_a_sample_before_it() -> None:
    """A phase or step boundary is a moment the thread ran (it read the clock there): a burn
    that starts right after a sleep is CPU from its first instant, however late the first
    sample inside it came, and the sleep before it does not leak in."""
    from lanepar.trace._stateruns import CPU, WAIT

    t0 = 1_000_000_000
    slept = (t0 - PERIOD // 10, sw.C_OTHER, 0)
    inside = [(t0 + PERIOD // 2 + i * PERIOD, sw.C_RUN, 0) for i in range(5)]
    t1 = inside[-1][0] + PERIOD // 3
    assert _runs([slept, *inside], t0, t1, PERIOD, edges_ran=True) == [(CPU, t0, t1)]
    # without the edges, the sleep reaches to the midpoint with the first sample inside
    assert _runs([slept, *inside], t0, t1, PERIOD)[0] == (WAIT, t0, (slept[0] + inside[0][0]) // 2)
    # a wait inside the span is drawn between the midpoints with its neighbours, ends included
    waited = [(t0 + PERIOD, sw.C_OTHER, 0)]
    assert _runs([slept, *waited], t0, t0 + 2 * PERIOD, PERIOD, edges_ran=True) == [
        (CPU, t0, t0 + PERIOD // 2),
        (WAIT, t0 + PERIOD // 2, t0 + 3 * PERIOD // 2),
        (CPU, t0 + 3 * PERIOD // 2, t0 + 2 * PERIOD),
    ]
    # with no sample inside, nothing was seen of the span: the one before does not draw it
    assert _runs([slept], t0, t0 + PERIOD // 4, PERIOD, edges_ran=True) == []


def test_a_span_the_helper_saw_nothing_of_is_drawn_from_its_exact_totals() -> None:
    """A 20 ms burn right after a sleep, while a busy machine stretched the helper's period past
    it: no sample falls inside. The sleep's last sample says nothing of the burn, so the picture
    is the exact totals (CPU first), not 20 ms of sleep beside a CPU total of 20 ms."""
    from lanepar.trace._stateruns import CPU, WAIT, split_of
    from lanepar.trace.segments import TaskProbe

    period = 25_000_000
    t0, t1 = 1_000_000_000, 1_000_000_000 + 21_000_000
    slept = (t0 - period // 2, sw.C_OTHER, 0)
    runs = _runs([slept], t0, t1, period, edges_ran=True)
    assert runs == []
    sp = split_of(runs, t1 - t0, 20_000_000, 0)
    p = TaskProbe()
    p.split(t0, t1, sp.cpu_ns, sp.gil_ns, sp.runq_ns, sp.runs, sp.lock_ns)
    assert p.finish() == [[CPU, t0, t0 + 20_000_000], [WAIT, t0 + 20_000_000, t1]]


def test_a_wake_caught_in_a_gil_wait_is_the_gils_not_the_sleeps() -> None:
    """A 200 ms sleep, then 127 ms waiting for the GIL, sampled every 10 ms; one sample catches
    the thread in one of its wakes (2 ms runnable, exact). That sample stands for 10 ms, but only
    the exact 3 ms ran or queued: the other 7 ms were the GIL wait around it. Spread over every
    blocked kind instead, they made the sleep 205 ms."""
    from lanepar.trace._stateruns import split_of

    ms = 1_000_000
    samples = [
        (t * ms, sw.C_OTHER if t < 201 else sw.C_RUN if t == 245 else sw.C_FUTEX, 0)
        for t in range(5, 330, 10)
    ]
    runs = _runs(samples, 0, 330 * ms, 10 * ms, edges_ran=True)
    sp = split_of(runs, 330 * ms, 1 * ms, 2 * ms)
    assert sp.cpu_ns + sp.gil_ns + sp.runq_ns + sp.wait_ns == 330 * ms
    assert abs(sp.wait_ns - 200 * ms) <= ms
    assert abs(sp.gil_ns - 127 * ms) <= ms


@given(
    wall=st.integers(0, 10**9),
    cpu_share=st.floats(0, 1.5),
    g=st.integers(0, 10**9),
    r=st.integers(0, 10**9),
    period=st.integers(1, 50_000_000),
)
def test_a_hand_offs_waits_are_its_off_cpu_time_as_far_as_the_samples_allow(
    wall: int, cpu_share: float, g: int, r: int, period: int
) -> None:
    cpu = int(wall * cpu_share)
    gil, runq = hand_off_waits(wall, cpu, (g, r), period)
    off = max(0, wall - cpu)
    assert gil >= 0 and runq >= 0
    assert gil + runq <= off  # never more than the loop thread was off a CPU
    if g + r:
        assert gil + runq == min(off, g + r + 2 * period)  # exact, within the samples' error
        if g == 0:
            assert gil == 0
        if r == 0:
            assert runq == 0
    else:  # unseen: counted only when too short to have been seen
        assert gil + runq == (off if wall < 2 * period else 0) and runq == 0


def test_a_loop_blocked_in_a_system_call_stays_the_hand_offs_delay() -> None:
    """300 ms off a CPU, of which the samples saw 8 ms of GIL wait: the rest was not waiting
    for the GIL or a core (a tool's ``time.sleep`` on the loop), and is not drawn as such."""
    gil, runq = hand_off_waits(300 * MS, 1 * MS, (8 * MS, 0), PERIOD)
    assert (gil, runq) == (16 * MS, 0)
    assert hand_off_waits(300 * MS, 1 * MS, (0, 0), PERIOD) == (0, 0)
    # a short window the samples could not have seen: all of its off-CPU time is the GIL's
    assert hand_off_waits(3 * MS, MS, (0, 0), PERIOD) == (2 * MS, 0)


@given(
    window=st.integers(0, LOOKUP_MIN_NS - 1),
    cpu0=st.integers(0, 10**12),
    cpu_used=st.integers(0, 10**9),
    held=st.integers(-1, 10**6),
)
@settings(max_examples=200, deadline=None)
def test_a_short_late_starts_waits_never_need_the_loops_cpu_clock(
    window: int, cpu0: int, cpu_used: int, held: int
) -> None:
    """A window shorter than a look-up's worth is answered without the loop's CPU clock, which
    a fan-out's hand-offs therefore do not read (``LocalBackend.hand_off``): whatever the clock
    said, or not read (0), the answer is the same."""
    t0 = 10**9
    mark = (held + window // 2, t0 + window) if held >= 0 else (0, 0)
    read = start_waits(t0, t0 + window, cpu0 + 1, cpu0 + 1 + cpu_used, held, mark)
    unread = start_waits(t0, t0 + window, cpu0 + 1, 0, held, mark)
    assert read == unread
    assert read[:2] == (0, 0)
