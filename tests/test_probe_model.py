"""The probe's arithmetic on a fake clock (a unit test of ``trace/probe.py``'s contract).

``lanepar.trace.probe`` reads the wall clock and the thread CPU clock through two module names,
``_pc`` and ``_tt``; these tests replace both with a clock the test advances by hand (as
pyinstrument's ``fake_time_util`` does), so every segment and total below is exact. The real
clocks are exercised, with tolerances measured in the same run, in ``test_probe.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import T0, FakeClock, fake_probe_clock, suspend

import lanepar as lp
from lanepar.trace import probe as probe_mod
from lanepar.trace._stateruns import Split
from lanepar.trace.loopwatch import LoopWatch
from lanepar.trace.model import KIND_CODE
from lanepar.trace.probe import FRESH_NS, TaskProbe, activate, deactivate, run_sync_probed, stepped

CPU, WAIT = KIND_CODE["cpu"], KIND_CODE["wait"]
US = 1_000
MS = 1_000_000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    yield fake_probe_clock(monkeypatch)


def drive(gen: Any, clock: FakeClock, waits: list[int]) -> Any:
    """Run a ``stepped`` generator, letting ``waits[i]`` ns pass at its i-th suspension."""
    value = None
    for w in [*waits, None]:
        try:
            assert gen.send(value) == "suspended"
        except StopIteration as stop:
            return stop.value
        assert w is not None, "the body suspended more often than the test expected"
        clock.idle(w)
        value = "resumed"
    raise AssertionError("unreachable")


# -- TaskProbe ---------------------------------------------------------------------------------
def test_a_long_step_draws_its_cpu_then_its_blocking() -> None:
    p = TaskProbe(500 * US, 64)
    p.step(0, 3 * MS, 2 * MS)
    assert p.finish() == [[CPU, 0, 2 * MS], [WAIT, 2 * MS, 3 * MS]]
    assert (p.cpu_ns, p.wait_ns) == (2 * MS, 1 * MS)


def test_cpu_is_clamped_to_the_steps_wall_time() -> None:
    p = TaskProbe(0, 64)
    p.step(0, 1 * MS, 5 * MS)  # a CPU clock of coarser grain can overshoot
    p.step(1 * MS, 2 * MS, -3)  # ... or step back
    assert (p.cpu_ns, p.wait_ns) == (1 * MS, 1 * MS)
    assert p.finish() == [[CPU, 0, 1 * MS], [WAIT, 1 * MS, 2 * MS]]


def test_short_pieces_collect_and_show_as_the_kind_that_dominated() -> None:
    p = TaskProbe(1 * MS, 64)
    for i in range(4):  # 4 × 250 µs, 200 of each CPU: one 1 ms piece, mostly CPU
        p.step(i * 250 * US, (i + 1) * 250 * US, 200 * US)
    assert p.segs == [[CPU, 0, 1 * MS]]
    for i in range(4, 8):  # mostly waiting
        p.step(i * 250 * US, (i + 1) * 250 * US, 50 * US)
    assert p.finish() == [[CPU, 0, 1 * MS], [WAIT, 1 * MS, 2 * MS]]
    assert (p.cpu_ns, p.wait_ns) == (1000 * US, 1000 * US)  # totals exact, not the colours


def test_a_tie_between_cpu_and_wait_shows_as_cpu() -> None:
    p = TaskProbe(1 * MS, 64)
    p.step(0, 500 * US, 250 * US)
    p.step(500 * US, 1 * MS, 250 * US)
    assert p.finish() == [[CPU, 0, 1 * MS]]


def test_a_short_tail_joins_its_left_neighbour() -> None:
    p = TaskProbe(1 * MS, 64)
    p.step(0, 2 * MS, 2 * MS)
    p.wait(2 * MS, 2 * MS + 300 * US)  # too short to draw alone
    assert p.finish() == [[CPU, 0, 2 * MS + 300 * US]]
    assert p.wait_ns == 300 * US
    alone = TaskProbe(1 * MS, 64)
    alone.wait(0, 300 * US)  # nothing on its left: drawn as itself
    assert alone.finish() == [[WAIT, 0, 300 * US]]


def test_a_long_piece_closes_a_pending_run_first() -> None:
    p = TaskProbe(1 * MS, 64)
    p.step(0, 2 * MS, 2 * MS)
    p.wait(2 * MS, 2 * MS + 100 * US)  # pending
    p.wait(2 * MS + 100 * US, 5 * MS)  # long: the pending run joins the CPU on its left
    assert p.finish() == [[CPU, 0, 2 * MS + 100 * US], [WAIT, 2 * MS + 100 * US, 5 * MS]]
    q = TaskProbe(1 * MS, 64)
    q.wait(0, 100 * US)
    q.step(100 * US, 3 * MS, 2_900 * US)  # a pending run with no left neighbour is flushed
    assert q.finish() == [[WAIT, 0, 100 * US], [CPU, 100 * US, 3 * MS]]


def test_empty_waits_are_ignored_and_gaps_go_to_the_next_piece() -> None:
    p = TaskProbe(0, 64)
    p.wait(5, 5)
    p.wait(9, 3)
    assert p.finish() == [] and p.wait_ns == 0
    p.step(0, 10, 10)
    p.wait(15, 30)  # 10..15 unaccounted (clock skew): the wait takes it
    assert p.finish() == [[CPU, 0, 10], [WAIT, 10, 30]]


def test_same_kind_neighbours_merge() -> None:
    p = TaskProbe(0, 64)
    p.step(0, 10, 10)
    p.step(10, 20, 10)
    p.wait(20, 25)
    p.wait(25, 40)
    assert p.finish() == [[CPU, 0, 20], [WAIT, 20, 40]]


def test_at_max_segments_neighbours_merge_pairwise() -> None:
    p = TaskProbe(0, 4)
    t = 1000  # not at 0: lengths, not positions, decide
    p.step(t, t + 10, 10)  # cpu 10
    p.wait(t + 10, t + 40)  # wait 30
    p.step(t + 40, t + 60, 20)  # cpu 20
    assert len(p.segs) == 3
    p.wait(t + 60, t + 65)  # 4th segment: coarsen -> (cpu10|wait30) -> wait, (cpu20|wait5) -> cpu
    assert p.segs == [[WAIT, t, t + 40], [CPU, t + 40, t + 65]]
    assert (p.cpu_ns, p.wait_ns) == (30, 35)
    q = TaskProbe(0, 2)  # an odd count: the last one stands alone, same kinds fuse
    q.step(0, 10, 10)
    q.wait(10, 12)
    assert q.segs == [[CPU, 0, 12]]
    r = TaskProbe(0, 5)
    for i in range(5):
        (r.step if i % 2 == 0 else r.wait)(i * 10, i * 10 + 10, *((10,) if i % 2 == 0 else ()))
    assert r.segs == [[CPU, 0, 50]]  # pairs tie -> first kind; the odd tail fuses


def test_max_segments_has_a_floor_of_two() -> None:
    assert TaskProbe(0, 0).max_segments == 2 and TaskProbe(0, 1).max_segments == 2


def test_phases_are_capped() -> None:
    p = TaskProbe()
    assert p.phases is None
    for i in range(300):
        p.add_phase(f"p{i}", i, i + 1)
    assert p.phases is not None and len(p.phases) == 256 and p.phases[-1] == ("p255", 255, 256)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(
        st.tuples(
            st.sampled_from(["step", "wait", "split"]),
            st.integers(0, 3 * MS),
            st.integers(0, 100),
            st.integers(0, 100),
            st.lists(st.tuples(st.sampled_from([2, 3, 4, 5]), st.integers(0, 100)), max_size=6),
        ),
        max_size=300,
    ),
    resolution=st.sampled_from([0, 100_000, 500_000, 2 * MS]),
    max_segments=st.integers(2, 64),
)
def test_merging_bounds_segments_and_keeps_totals_exact(
    pieces: list[tuple[str, int, int, int, list[tuple[int, int]]]],
    resolution: int,
    max_segments: int,
) -> None:
    """Steps, waits and split intervals (with or without a sampled picture, which may leave gaps
    or overrun the interval) keep every total exact and the picture contiguous and bounded."""
    probe = TaskProbe(resolution, max_segments)
    t = 1_000_000_000
    cpu = wait = gil = runq = 0
    for what, length, cpu_pct, gil_pct, picture in pieces:
        c = length * cpu_pct // 100
        if what == "step":
            probe.step(t, t + length, c)
            cpu += c
            wait += length - c
        elif what == "wait":
            probe.wait(t, t + length)
            wait += length
        else:
            g = (length - c) * gil_pct // 100
            r = (length - c - g) // 3
            runs = [(k, t + length * p // 100, t + length * (p + 10) // 100) for k, p in picture]
            probe.split(t, t + length, c, g, r, sorted(runs, key=lambda x: x[1]))
            cpu, gil, runq = cpu + c, gil + g, runq + r
            wait += length - c - g - r
        t += length
    segs = probe.finish()
    assert (probe.cpu_ns, probe.wait_ns, probe.gil_ns, probe.runq_ns) == (cpu, wait, gil, runq)
    assert len(segs) <= max_segments
    if cpu + wait + gil + runq:
        assert segs[0][1] == 1_000_000_000 and segs[-1][2] == t
    for a, b in zip(segs, segs[1:]):
        assert a[2] == b[1] and a[0] != b[0]
    body_kinds = {KIND_CODE[k] for k in ("cpu", "wait", "gil", "runq")}
    assert all(seg[0] in body_kinds for seg in segs)


# -- stepped: a coroutine driven step by step --------------------------------------------------
def test_steps_are_cpu_and_suspensions_are_waits(clock: FakeClock) -> None:
    async def body() -> int:
        clock.run(3 * MS, 2 * MS)  # 2 ms on the CPU, 1 ms blocked inside the step
        assert await suspend() == "resumed"
        clock.run(1 * MS, 1 * MS)
        return 42

    p = TaskProbe(500 * US, 64)
    assert drive(stepped(body(), p), clock, [10 * MS]) == 42
    assert p.started_ns == T0 and p.finished_ns == T0 + 14 * MS
    assert p.finish() == [
        [CPU, T0, T0 + 2 * MS], [WAIT, T0 + 2 * MS, T0 + 13 * MS], [CPU, T0 + 13 * MS, T0 + 14 * MS]
    ]  # fmt: skip
    assert (p.cpu_ns, p.wait_ns) == (3 * MS, 11 * MS)


def test_a_body_done_in_one_short_step_is_all_cpu(clock: FakeClock) -> None:
    async def body() -> str:
        clock.run(FRESH_NS - 1, 0)  # blocked, but too short to tell: counted as CPU
        return "fast"

    p = TaskProbe(500 * US, 64)
    assert drive(stepped(body(), p), clock, []) == "fast"
    assert p.segs == [[CPU, T0, T0 + FRESH_NS - 1]] and p.cpu_ns == FRESH_NS - 1
    assert (p.started_ns, p.finished_ns) == (T0, T0 + FRESH_NS - 1)


def test_a_long_first_and_only_step_reads_the_cpu_clock(clock: FakeClock) -> None:
    async def body() -> None:
        clock.run(FRESH_NS * 10, FRESH_NS)

    p = TaskProbe(0, 64)
    drive(stepped(body(), p), clock, [])
    assert (p.cpu_ns, p.wait_ns) == (FRESH_NS, FRESH_NS * 9)


def test_short_steps_reuse_a_fresh_cpu_reading(clock: FakeClock) -> None:
    reads = 0
    real_tt = clock.tt

    def counting_tt() -> int:
        nonlocal reads
        reads += 1
        return real_tt()

    probe_mod._tt = counting_tt  # the fixture restores the module's clock afterwards

    async def body() -> None:
        for _ in range(3):
            clock.run(10 * US, 10 * US)
            await suspend()

    p = TaskProbe(0, 64)
    drive(stepped(body(), p), clock, [1 * US] * 3)
    assert reads == 1  # short steps within FRESH_NS of a reading never pay for another
    assert p.cpu_ns == 30 * US and p.wait_ns == 3 * US


def test_an_exception_ends_the_last_step_and_propagates(clock: FakeClock) -> None:
    async def body() -> None:
        await suspend()
        clock.run(2 * MS, 2 * MS)
        raise KeyError("boom")

    p = TaskProbe(0, 64)
    gen = stepped(body(), p)
    gen.send(None)
    clock.idle(1 * MS)
    with pytest.raises(KeyError, match="boom"):
        gen.send(None)
    assert p.finished_ns == T0 + 3 * MS
    assert (p.cpu_ns, p.wait_ns) == (2 * MS, 1 * MS)


def test_a_thrown_in_exception_reaches_the_body(clock: FakeClock) -> None:
    seen: list[BaseException] = []

    async def body() -> str:
        try:
            await suspend()
        except ValueError as e:
            seen.append(e)
            clock.run(1 * MS, 1 * MS)
        return "handled"

    p = TaskProbe(0, 64)
    gen = stepped(body(), p)
    gen.send(None)
    clock.idle(2 * MS)
    with pytest.raises(StopIteration) as stop:
        gen.throw(ValueError("cancel-like"))
    assert stop.value.value == "handled" and len(seen) == 1
    assert (p.cpu_ns, p.wait_ns) == (1 * MS, 2 * MS)


# -- threads and phases ------------------------------------------------------------------------
def test_sync_body_is_measured_around_and_split_at_phases(clock: FakeClock) -> None:
    cpu = [0]

    def tool() -> str:
        clock.run(1 * MS, 0)
        with lp.phase("load"):
            clock.run(4 * MS, 1 * MS)
        with lp.phase("crunch"):
            clock.run(3 * MS, 3 * MS)
        clock.run(2 * MS, 0)
        return "done"

    def thread_cpu() -> int:
        return clock.cpu + cpu[0]

    p = TaskProbe(0, 64)
    assert run_sync_probed(p, tool, (), {}, thread_cpu) == "done"
    assert (p.started_ns, p.finished_ns) == (T0, T0 + 10 * MS)
    assert p.phases == [("load", T0 + 1 * MS, T0 + 5 * MS), ("crunch", T0 + 5 * MS, T0 + 8 * MS)]
    assert (p.cpu_ns, p.wait_ns) == (4 * MS, 6 * MS)
    assert p.finish() == [
        [WAIT, T0, T0 + 1 * MS], [CPU, T0 + 1 * MS, T0 + 2 * MS], [WAIT, T0 + 2 * MS, T0 + 5 * MS],
        [CPU, T0 + 5 * MS, T0 + 8 * MS], [WAIT, T0 + 8 * MS, T0 + 10 * MS],
    ]  # fmt: skip
    with lp.phase("outside"):  # no probe active any more: a no-op
        pass
    assert len(p.phases) == 2


def test_a_raising_sync_body_is_still_measured(clock: FakeClock) -> None:
    def tool() -> None:
        clock.run(2 * MS, 1 * MS)
        raise OSError("disk")

    p = TaskProbe(0, 64)
    with pytest.raises(OSError):
        run_sync_probed(p, tool, (), {}, clock.tt)
    assert p.finished_ns == T0 + 2 * MS and (p.cpu_ns, p.wait_ns) == (1 * MS, 1 * MS)


def test_phase_on_an_async_body_uses_the_wall_clock(clock: FakeClock) -> None:
    p = TaskProbe(0, 64)
    token = activate(p)
    try:
        with lp.phase("fetch"):
            clock.idle(7 * MS)
        with pytest.raises(RuntimeError), lp.phase("fails"):
            clock.idle(1 * MS)
            raise RuntimeError
    finally:
        deactivate(token)
    assert p.phases == [("fetch", T0, T0 + 7 * MS), ("fails", T0 + 7 * MS, T0 + 8 * MS)]
    with lp.phase("after"):
        pass
    assert len(p.phases) == 2


def test_a_sync_body_gets_its_arguments(clock: FakeClock) -> None:
    def tool(a: int, *, b: int = 0) -> tuple[int, int]:
        return a, b

    assert run_sync_probed(TaskProbe(), tool, (7,), {"b": 2}, clock.tt) == (7, 2)


class _SplitsAs:
    """A thread watch that reports every span as ``runq`` for all but ``own`` ns of it."""

    def __init__(self, own: int) -> None:
        self.own = own

    def samples(self, slot: int, t0: int, t1: int) -> list[tuple[int, int, int]]:
        return []

    def written(self, slot: int) -> int:
        return -1

    def current_period_ns(self) -> int:
        return 4 * MS

    def split_sampled(self, slot: int, t0: int, t1: int, cpu: int) -> Split:
        runq = max(0, t1 - t0 - self.own)
        return Split(min(cpu, self.own), 0, runq, t1 - t0 - runq - min(cpu, self.own), [])


@pytest.mark.parametrize(("own_ms", "flagged"), [(55, True), (10, False)])
def test_a_step_blocks_the_loop_only_for_what_the_tool_itself_took(
    clock: FakeClock, own_ms: int, flagged: bool
) -> None:
    """A 60 ms step of which the loop thread spent 50 ms waiting for a core (a busy machine) is
    contention, not a tool holding the loop; the same step run by the tool itself is flagged."""
    blocks = LoopWatch(50 * MS)
    probe_mod.watch_loop(blocks, _SplitsAs(own_ms * MS), 0)  # type: ignore[arg-type]
    try:

        async def body() -> None:
            clock.run(60 * MS, own_ms * MS)

        p = TaskProbe(500 * US, 64)
        drive(stepped(body(), p), clock, [])
    finally:
        probe_mod.watch_loop(None)
        blocks.close()
    assert bool(p.blocks) is flagged
    assert p.runq_ns == (60 - own_ms) * MS


def test_contention_before_a_body_that_began_waiting_for_the_gil_is_one_wait() -> None:
    """``prepend_contention`` moves a hand-off's waits in front of the body (its start moves
    back, totals stay exact). Where the body's first piece is itself a GIL wait, the two are
    one wait on the timeline; in front of any other piece, a new one."""
    gil, cpu = KIND_CODE["gil"], KIND_CODE["cpu"]
    p = TaskProbe()
    p.started_ns = 1_000
    p.segs = [[gil, 1_000, 1_500], [cpu, 1_500, 2_000]]
    p.gil_ns, p.cpu_ns = 500, 500
    p.prepend_contention(300, 0)
    assert (p.started_ns, p.gil_ns) == (700, 800)
    assert p.segs == [[gil, 700, 1_500], [cpu, 1_500, 2_000]]
    p.prepend_contention(0, 0)  # nothing to move: nothing moves
    assert p.started_ns == 700

    q = TaskProbe()
    q.started_ns = 1_000
    q.segs = [[cpu, 1_000, 2_000]]
    q.cpu_ns = 1_000
    q.prepend_contention(200, 100, lock=50)
    assert (q.started_ns, q.gil_ns, q.lock_ns, q.runq_ns) == (650, 250, 50, 100)
    assert q.segs == [[gil, 650, 900], [KIND_CODE["runq"], 900, 1_000], [cpu, 1_000, 2_000]]
    assert sum(e - s for _, s, e in q.segs) == 2_000 - 650


def test_a_loop_clock_reading_under_fresh_ns_old_is_taken_forward(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fan-out's late starts and hand-offs come right after the steps before them: the loop
    ran since the last reading, so that reading is carried forward by the wall time since,
    without a system call; an older one is read afresh and kept for the next."""
    from lanepar.trace import _loopclock

    reads: list[int] = []

    def fake_tt() -> int:
        reads.append(1)
        return 7_000_000

    monkeypatch.setattr(_loopclock, "_tt", fake_tt)
    clock = _loopclock.new_clock()
    clock.w, clock.c = 1_000_000, 5_000_000
    assert _loopclock.cpu_at(clock, 1_000_000 + FRESH_NS) == 5_000_000 + FRESH_NS
    assert reads == []
    assert _loopclock.cpu_at(clock, 1_000_001 + FRESH_NS) == 7_000_000
    assert reads == [1] and (clock.w, clock.c) == (1_000_001 + FRESH_NS, 7_000_000)
    assert _loopclock.cpu_at(clock, clock.w + 10) == 7_000_010 and reads == [1]
