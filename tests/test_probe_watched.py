"""The probe under watches, on a fake clock (a unit test of ``trace/probe.py``'s contract).

When the loop thread is watched, a step that was off its CPU for ``LONG_STEP_OFF_NS`` or more is
split into GIL / run-queue / other waits by the thread watch, and a step that held the loop past
the loop watch's threshold is kept with the stack the watchdog saw. Thread bodies are split at
each mark the same way. The watches here are stand-ins that answer with a fixed picture (the
real ones sample ``/proc`` and are tested in ``test_threadstate.py``), so what the probe does
with their answers — which interval it asks about, how it adds, where it draws — is exact.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest
from support import T0, FakeClock, fake_probe_clock, suspend

from lanepar.trace import _statewatch as sw
from lanepar.trace import probe as probe_mod
from lanepar.trace._stateruns import Split
from lanepar.trace.model import KIND_CODE
from lanepar.trace.probe import (
    FRESH_NS,
    LONG_STEP_OFF_NS,
    OFF_NOISE_NS,
    TaskProbe,
    loop_contention,
    run_sync_probed,
    stepped,
    watch_loop,
)

CPU, WAIT, GIL, RUNQ = (KIND_CODE[k] for k in ("cpu", "wait", "gil", "runq"))
US = 1_000
MS = 1_000_000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    # a fresh per-thread record: ``watch_loop`` below writes into it, and it goes with the test
    yield fake_probe_clock(monkeypatch)


class FakeWatch:
    """A thread watch that splits every interval it is asked about as ``gil`` then ``cpu`` then
    ``runq`` then the rest — an order the probe's own fallback (cpu, gil, runq, wait) never
    draws, so a picture that shows it came from these runs."""

    def __init__(self, gil: int, runq: int, pre_runq: int = 0) -> None:
        self.gil, self.runq = gil, runq
        self.asked: list[tuple[Any, ...]] = []
        self.tok = types.SimpleNamespace(pre_runq=pre_runq)
        self.ended: list[Any] = []

    def _answer(self, t0: int, t1: int, cpu: int) -> Split:
        g, r = self.gil, self.runq
        a, b, c = t0 + g, t0 + g + cpu, t0 + g + cpu + r
        runs = [(GIL, t0, a), (CPU, a, b), (RUNQ, b, c), (WAIT, c, t1)]
        return Split(cpu, g, r, t1 - t0 - cpu - g - r, [run for run in runs if run[2] > run[1]])

    def split_sampled(self, slot: int, t0: int, t1: int, cpu: int) -> Split:
        self.asked.append(("sampled", slot, t0, t1, cpu))
        return self._answer(t0, t1, cpu)

    def samples(self, slot: int, t0: int, t1: int) -> list[tuple[int, int, int]]:
        return []  # what the loop's contention reads (see the loop_contention test)

    def written(self, slot: int) -> int:
        return -1  # unknown: the samples are read for every window

    def current_period_ns(self) -> int:
        return 4 * MS

    def begin(self) -> Any:
        return self.tok

    def split(self, tok: Any, t0: int, t1: int, cpu: int) -> Split:
        assert tok is self.tok
        self.asked.append(("own", t0, t1, cpu))
        return self._answer(t0, t1, cpu)

    def end(self, tok: Any) -> None:
        self.ended.append(tok)


class FakeLoopWatch:
    """A loop watch whose watchdog 'saw' a stack named after the step's start."""

    def __init__(self, threshold_ns: int, parked: bool = False) -> None:
        self.threshold_ns = threshold_ns
        self.t0 = 0
        self.parked = parked
        self.begun: list[int] = []

    def begin(self, t0: int) -> None:
        self.begun.append(t0)
        self.parked = False

    def stack_of(self, t0: int) -> list[str]:
        return [f"stack@{t0}"]


def run_one_step(clock: FakeClock, wall: int, cpu: int) -> TaskProbe:
    """A body that finishes in one step of ``wall`` ns, ``cpu`` of them on its CPU."""

    async def body() -> str:
        clock.run(wall, cpu)
        return "done"

    p = TaskProbe(0, 64)
    gen = stepped(body(), p)
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert stop.value.value == "done"
    return p


# -- steps on a watched loop thread ------------------------------------------------------------
def test_a_long_off_cpu_step_is_split_by_the_thread_watch(clock: FakeClock) -> None:
    watch = FakeWatch(gil=5 * MS, runq=2 * MS)
    watch_loop(None, watch, 3)  # type: ignore[arg-type]
    p = run_one_step(clock, 10 * MS, 2 * MS)
    assert watch.asked == [("sampled", 3, T0, T0 + 10 * MS, 2 * MS)]
    assert (p.cpu_ns, p.gil_ns, p.runq_ns, p.wait_ns) == (2 * MS, 5 * MS, 2 * MS, 1 * MS)
    assert p.finish() == [
        [GIL, T0, T0 + 5 * MS], [CPU, T0 + 5 * MS, T0 + 7 * MS],
        [RUNQ, T0 + 7 * MS, T0 + 9 * MS], [WAIT, T0 + 9 * MS, T0 + 10 * MS],
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("watched", "slot", "cpu", "off", "asks"),
    [
        (True, 0, 0, LONG_STEP_OFF_NS, True),  # exactly the threshold: asked
        (True, 0, 0, LONG_STEP_OFF_NS - 1, False),  # just under it
        (True, 0, 5 * MS, LONG_STEP_OFF_NS - 1, False),  # CPU time does not count as off-CPU
        (True, -1, 0, 5 * MS, False),  # a watch without a held slot cannot say
        (False, 0, 0, 5 * MS, False),  # no watch: a slot alone is nothing to ask
        (False, -1, 0, 5 * MS, False),
    ],
)
def test_which_steps_ask_the_thread_watch(
    clock: FakeClock, watched: bool, slot: int, cpu: int, off: int, asks: bool
) -> None:
    watch = FakeWatch(gil=off // 2, runq=0)
    watch_loop(None, watch if watched else None, slot)  # type: ignore[arg-type]
    p = run_one_step(clock, cpu + off, cpu)
    assert bool(watch.asked) is asks
    if asks:
        assert (p.cpu_ns, p.gil_ns, p.wait_ns) == (cpu, off // 2, off - off // 2)
    else:  # the thread clock alone: CPU then wait
        assert (p.cpu_ns, p.gil_ns, p.runq_ns, p.wait_ns) == (cpu, 0, 0, off)
        assert p.finish() == [s for s in ([CPU, T0, T0 + cpu], [WAIT, T0 + cpu, T0 + cpu + off])
                              if s[2] > s[1]]  # fmt: skip


def test_steps_that_hold_the_loop_are_kept_with_their_stack(clock: FakeClock) -> None:
    """The watchdog sees each step's start while it runs and 0 between steps; a step as long as
    the threshold (or longer) is kept with the stack the watchdog saw of it."""
    blocks = FakeLoopWatch(threshold_ns=20 * MS, parked=True)
    watch_loop(blocks, None, -1)  # type: ignore[arg-type]
    seen: list[int] = []
    lengths = [10 * US, 20 * MS, 20 * MS - 1, 3 * MS, 25 * MS]

    async def body() -> None:
        for i, wall in enumerate(lengths):
            seen.append(blocks.t0)
            clock.run(wall, wall)
            if i < len(lengths) - 1:
                await suspend()

    p = TaskProbe(0, 64)
    gen = stepped(body(), p)
    starts: list[int] = []
    between: list[int] = []
    try:
        while True:
            starts.append(clock.wall)
            gen.send(None)
            between.append(blocks.t0)
            clock.run(1 * MS, 0)  # suspended: a wait
    except StopIteration:
        pass
    assert seen == starts and all(seen)
    assert between == [0] * (len(lengths) - 1) and blocks.t0 == 0
    assert blocks.begun == [starts[0]]  # woken once, by the first step; awake afterwards
    long_ones = [(starts[i], starts[i] + lengths[i]) for i in (1, 4)]
    assert p.blocks == [(t0, t1, [f"stack@{t0}"]) for t0, t1 in long_ones]
    assert p.cpu_ns == sum(lengths) and p.wait_ns == 4 * MS


@pytest.mark.parametrize("wall", [10 * US, 3 * MS])
def test_a_single_step_clears_the_watchdogs_mark(clock: FakeClock, wall: int) -> None:
    blocks = FakeLoopWatch(threshold_ns=20 * MS)
    watch_loop(blocks, None, -1)  # type: ignore[arg-type]
    p = run_one_step(clock, wall, wall)
    assert blocks.t0 == 0 and p.blocks is None and p.cpu_ns == wall


# -- the loop thread's own contention, before a body starts -----------------------------------
def test_loop_contention_adds_up_the_sampled_gil_and_run_queue(clock: FakeClock) -> None:
    """The loop thread's samples, each state holding from midpoint to midpoint: GIL until 1 ms,
    running to 3, a run-queue wait to 5 (its counter grew by more than half the gap), GIL to 7,
    then blocked elsewhere."""

    class Sampled(FakeWatch):
        def samples(self, slot: int, t0: int, t1: int) -> list[tuple[int, int, int]]:
            self.asked.append((slot, t0, t1))
            return [(T0, sw.C_FUTEX, 0), (T0 + 2 * MS, sw.C_RUN, 0),
                    (T0 + 4 * MS, sw.C_RUN, 1_500_000), (T0 + 6 * MS, sw.C_FUTEX, 1_500_000),
                    (T0 + 8 * MS, sw.C_OTHER, 1_500_000)]  # fmt: skip

    watch = Sampled(0, 0)
    watch_loop(None, watch, 2)  # type: ignore[arg-type]
    assert loop_contention(T0, T0 + 9 * MS) == (3 * MS, 2 * MS)
    assert loop_contention(T0 + 2 * MS, T0 + 6 * MS) == (1 * MS, 2 * MS)
    assert [a[0] for a in watch.asked] == [2, 2]  # the held slot is what it reads
    short = LONG_STEP_OFF_NS // 10
    assert loop_contention(T0, T0 + short - 1) == (0, 0)  # too short to ask about
    assert len(watch.asked) == 2
    assert loop_contention(T0, T0 + short) == (short, 0) and len(watch.asked) == 3
    watch_loop(None, watch, -1)  # type: ignore[arg-type]
    assert loop_contention(T0, T0 + 9 * MS) == (0, 0)  # no held slot: nothing to ask
    watch_loop(None, None, 2)
    assert loop_contention(T0, T0 + 9 * MS) == (0, 0)
    assert len(watch.asked) == 3


def test_a_hand_off_window_off_its_cpu_by_less_than_the_clocks_skew_asks_nothing(
    clock: FakeClock,
) -> None:
    """``loop_waits``: the loop thread's wall and CPU clocks drift a few µs apart even when it
    never left its core; a window off its CPU by less than ``OFF_NOISE_NS`` has no waits to look
    up (each lookup cost a fan-out's every late start), one off by more is split by the samples
    and, in total, exact."""
    from lanepar.trace.probe import OFF_NOISE_NS, loop_waits

    class Sampled(FakeWatch):
        def samples(self, slot: int, t0: int, t1: int) -> list[tuple[int, int, int]]:
            self.asked.append((slot, t0, t1))
            return [(T0, sw.C_FUTEX, 0), (T0 + 2 * MS, sw.C_FUTEX, 0)]

    watch = Sampled(0, 0)
    watch_loop(None, watch, 2)  # type: ignore[arg-type]
    wall, cpu0 = 3 * MS, 10 * MS
    assert loop_waits(T0, T0 + wall, cpu0, cpu0 + wall - OFF_NOISE_NS + 1) == (0, 0)
    assert watch.asked == []
    off = 400 * US
    assert loop_waits(T0, T0 + wall, cpu0, cpu0 + wall - off) == (off, 0)  # all of it GIL
    assert len(watch.asked) == 1


# -- thread bodies under a watch ---------------------------------------------------------------
def test_a_thread_body_is_split_at_each_mark_and_its_hand_off_is_gil(clock: FakeClock) -> None:
    """From the hand-off to the body's first instruction the thread was waking and taking the
    GIL (its run-queue share is runq): the body starts at the hand-off, with no CPU there."""
    watch = FakeWatch(gil=1 * MS, runq=1 * MS, pre_runq=1 * MS)
    handed = [T0 - 3 * MS]

    def tool() -> str:
        clock.run(4 * MS, 1 * MS)
        return "ok"

    p = TaskProbe(0, 64)
    assert run_sync_probed(p, tool, (), {}, clock.tt, watch, handed) == "ok"  # type: ignore[arg-type]
    assert watch.asked == [("own", T0, T0 + 4 * MS, 1 * MS)] and watch.ended == [watch.tok]
    assert (p.started_ns, p.finished_ns) == (T0 - 3 * MS, T0 + 4 * MS)
    assert (p.cpu_ns, p.gil_ns, p.runq_ns, p.wait_ns) == (1 * MS, 3 * MS, 2 * MS, 1 * MS)
    assert p.finish() == [
        [GIL, T0 - 3 * MS, T0 - 1 * MS], [RUNQ, T0 - 1 * MS, T0],  # the hand-off
        [GIL, T0, T0 + 1 * MS], [CPU, T0 + 1 * MS, T0 + 2 * MS],  # the body, as sampled
        [RUNQ, T0 + 2 * MS, T0 + 3 * MS], [WAIT, T0 + 3 * MS, T0 + 4 * MS],
    ]  # fmt: skip


@pytest.mark.parametrize("off", [0, OFF_NOISE_NS - 1, OFF_NOISE_NS])
def test_a_thread_body_interval_that_never_left_its_cpu_asks_the_watch_nothing(
    clock: FakeClock, off: int
) -> None:
    """Off its CPU by less than the clocks' skew, an interval has no waits to split: no
    run-queue read, no sample lookup (what made a short traced sync tool cost ~45 µs)."""
    watch = FakeWatch(gil=0, runq=0)

    def tool() -> None:
        clock.run(3 * MS, 3 * MS - off)

    p = TaskProbe(0, 64)
    run_sync_probed(p, tool, (), {}, clock.tt, watch, [0])  # type: ignore[arg-type]
    assert watch.asked == ([] if off < OFF_NOISE_NS else [("own", T0, T0 + 3 * MS, 3 * MS - off)])
    assert (p.cpu_ns, p.wait_ns, p.finished_ns - p.started_ns) == (3 * MS - off, off, 3 * MS)
    assert watch.ended == [watch.tok]


@pytest.mark.parametrize("handed_at", [0, T0, T0 + 1])
def test_no_hand_off_is_drawn_when_its_time_is_unknown_or_not_before(
    clock: FakeClock, handed_at: int
) -> None:
    watch = FakeWatch(gil=0, runq=0, pre_runq=1 * MS)

    def tool() -> None:
        clock.run(2 * MS, 2 * MS)

    p = TaskProbe(0, 64)
    run_sync_probed(p, tool, (), {}, clock.tt, watch, [handed_at])  # type: ignore[arg-type]
    assert p.started_ns == T0 and (p.cpu_ns, p.gil_ns, p.runq_ns, p.wait_ns) == (2 * MS, 0, 0, 0)


def test_a_fresh_cpu_reading_is_reused_only_within_fresh_ns(clock: FakeClock) -> None:
    """A step starting more than ``FRESH_NS`` after the last reading reads the thread clock."""
    reads: list[int] = []
    real = clock.tt

    def counting() -> int:
        reads.append(clock.wall)
        return real()

    probe_mod._tt = counting  # the fixture restores the module's clock afterwards

    async def body() -> None:
        clock.run(10 * US, 10 * US)
        await suspend()
        clock.run(10 * US, 10 * US)

    p = TaskProbe(0, 64)
    gen = stepped(body(), p)
    gen.send(None)
    clock.run(FRESH_NS, 0)  # the second step starts FRESH_NS + 10 µs after the first reading
    with pytest.raises(StopIteration):
        gen.send(None)
    assert reads == [T0, T0 + 10 * US + FRESH_NS]
    assert (p.cpu_ns, p.wait_ns) == (20 * US, FRESH_NS)
