"""``stepped`` keeps short steps and waits in local variables: what the probe ends up holding must
be exactly what feeding every piece to :meth:`TaskProbe.step` / :meth:`TaskProbe.wait` leaves.

Driven on a fake clock (as ``test_probe_model.py`` is), over random bodies: any piece, any
resolution, any segment budget.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import T0, fake_probe_clock, step_drivers, suspend, use_step_driver

from lanepar.trace import probe as probe_mod
from lanepar.trace.probe import FRESH_NS, TaskProbe, stepped

US = 1_000
MS = 1_000_000
#: Each step driver (C where built, and Python) must leave exactly what ``step`` / ``wait`` would.
DRIVERS = step_drivers()

# A piece: ("step", wall, cpu) or ("wait", wall). A long step follows a wait of at least
# FRESH_NS, so the thread clock is read at its start and its CPU is exactly ``cpu``.
short_step = st.tuples(st.just("step"), st.integers(0, FRESH_NS - 1), st.just(0))
long_step = st.integers(FRESH_NS, 5 * MS).flatmap(
    lambda w: st.tuples(st.just("step"), st.just(w), st.integers(0, w))
)
wait = st.tuples(st.just("wait"), st.integers(0, 3 * MS), st.just(0))


@st.composite
def bodies(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    pieces: list[tuple[str, int, int]] = [draw(st.one_of(short_step, long_step))]
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["short", "long", "short"]))
        if kind == "long":
            pieces.append(("wait", draw(st.integers(FRESH_NS, 2 * MS)), 0))
            pieces.append(draw(long_step))
        else:
            pieces.append(draw(wait))
            pieces.append(draw(short_step))
    return pieces


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@settings(max_examples=300, deadline=None)
@given(
    pieces=bodies(),
    resolution=st.sampled_from([0, 1 * US, 30 * US, 100 * US, 500 * US, 2 * MS]),
    max_segments=st.integers(2, 64),
)
def test_stepped_leaves_what_step_and_wait_would(
    driver: str, pieces: list[tuple[str, int, int]], resolution: int, max_segments: int
) -> None:
    mp = pytest.MonkeyPatch()
    clock = fake_probe_clock(mp)
    use_step_driver(mp, driver)
    try:
        steps = [p for p in pieces if p[0] == "step"]
        waits = [p for p in pieces if p[0] == "wait"]

        async def body() -> str:
            for i, (_, wall, cpu) in enumerate(steps):
                clock.wall += wall
                clock.cpu += cpu
                if i + 1 < len(steps):
                    await suspend()
            return "done"

        got = TaskProbe(resolution, max_segments)
        gen = stepped(body(), got)
        value: Any = None
        result = None
        for _, w, _c in [*waits, ("wait", -1, 0)]:
            try:
                assert gen.send(value) == "suspended"
            except StopIteration as stop:
                result = stop.value
                break
            clock.wall += w
            value = "resumed"
        assert result == "done"
    finally:
        mp.undo()

    want = TaskProbe(resolution, max_segments)
    t = T0
    if len(pieces) == 1 and pieces[0][1] < FRESH_NS:  # the one-short-step fast path: all CPU
        want.cpu_ns = pieces[0][1]
        want.segs = [[probe_mod.CPU, T0, T0 + pieces[0][1]]]
        pieces = []
        t += want.cpu_ns
    for kind, wall, cpu in pieces:
        if kind == "wait":
            want.wait(t, t + wall)
        else:
            want.step(t, t + wall, wall if wall < FRESH_NS else cpu)
        t += wall
    assert (got.started_ns, got.finished_ns) == (T0, t)
    assert (got.cpu_ns, got.wait_ns) == (want.cpu_ns, want.wait_ns)
    assert got.finish() == want.finish()
