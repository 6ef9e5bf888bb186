"""The C split of a thread body's off-CPU time (``lanepar/trace/_watchc.c``) is the Python one.

``ThreadWatch._split`` reads a slot of the helper's shared sample ring and splits an interval
into CPU, GIL / lock, run-queue and other waits, with the sampled picture. The C version runs
on every traced sync body that waited; the Python version (``_split_py``) is the reference.
Both are given the same generated rings — samples before, inside and after the interval, every
class, run-queue counters growing fast and slow, rings that wrapped — and must agree exactly.
"""

from __future__ import annotations

import mmap
import os
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanepar.trace import _stateruns, threadstate
from lanepar.trace import _statewatch as sw
from lanepar.trace._loopclock import _stepc
from lanepar.trace._ownsched import OwnSched

pytestmark = pytest.mark.skipif(_stepc is None, reason="the C step driver's module is not built")

RING, SLOTS = 16, 3
N_CLASSES = 5  # C_RUN, C_FUTEX, C_OTHER, C_GONE, C_LOCK


def watch_over(
    samples: list[tuple[int, int, int]], slot: int, period: int
) -> threadstate.ThreadWatch:
    """A watch whose ring holds ``samples`` (time, class, cumulative run-queue ns) for ``slot``,
    written as the helper writes them (the ring wraps past ``RING``)."""
    w = threadstate.ThreadWatch(slots=SLOTS, ring=RING, helper=False)
    mm = mmap.mmap(-1, sw.layout_size(SLOTS, RING))
    q = memoryview(mm).cast("q")
    q[sw.H_PERIOD] = period
    b = sw.slot_offset(slot, RING) // 8
    for i, (t, cls, rq) in enumerate(samples):
        k = b + sw.SLOT_WORDS + 2 * (i % RING)
        q[k] = (t << sw.CLASS_BITS) + cls
        q[k + 1] = rq
    q[b + sw.S_WIDX] = len(samples)
    w._q = q
    return w


def python_split(w: threadstate.ThreadWatch, *args: Any) -> Any:
    """``ThreadWatch._split`` with the C path switched off (the reference)."""
    saved, _stateruns.split_c = _stateruns.split_c, None
    try:
        return w._split(*args)
    finally:
        _stateruns.split_c = saved


@st.composite
def rings(draw: st.DrawFn) -> tuple[list[tuple[int, int, int]], int, int, int, int, int | None]:
    n = draw(st.integers(0, 3 * RING))
    t, rq, samples = draw(st.integers(1, 10**6)), 0, []
    for _ in range(n):
        t += draw(st.integers(0, 5 * 10**6))
        rq += draw(st.integers(0, 6 * 10**6))
        samples.append((t, draw(st.integers(0, N_CLASSES - 1)), rq))
    t0 = draw(st.integers(0, t + 10**6))
    t1 = t0 + draw(st.integers(-1000, 4 * 10**7))
    cpu = draw(st.integers(-10, 4 * 10**7))
    runq = draw(st.none() | st.integers(-10, 4 * 10**7))
    return samples, t0, t1, cpu, draw(st.integers(1, 8 * 10**6)), runq


@settings(max_examples=400, deadline=None)
@given(rings(), st.integers(0, SLOTS - 1))
def test_the_c_split_is_the_python_split(
    case: tuple[list[tuple[int, int, int]], int, int, int, int, int | None], slot: int
) -> None:
    samples, t0, t1, cpu, period, runq = case
    w = watch_over(samples, slot, period)
    c = w._split(slot, t0, t1, cpu, runq)
    py = python_split(w, slot, t0, t1, cpu, runq)
    assert c == py
    assert type(c) is type(py)
    assert sum(c[:4]) == max(0, t1 - t0)  # (the totals the record keeps are the wall time)


def test_a_long_interval_does_not_overflow() -> None:
    """Products of nanosecond spans outgrow 64 bits past ~3 s: an hour-long body still splits as
    Python's integers do."""
    hour = 3600 * 10**9
    samples = [(10**9 + i * hour // 10, i % N_CLASSES, i * 10**8) for i in range(12)]
    w = watch_over(samples, 0, 4 * 10**6)
    t0, t1 = 10**9 + 1, 10**9 + hour
    assert w._split(0, t0, t1, hour // 7, None) == python_split(w, 0, t0, t1, hour // 7, None)


def test_a_sample_of_no_known_class_goes_to_the_python_path() -> None:
    w = watch_over([(1000, 1, 0), (2000, 7, 0), (3000, 0, 0)], 0, 1000)
    assert _stepc.watch_split(w._q, 0, RING, 500, 3500, 0, 0, 1000) is None
    with pytest.raises(KeyError):  # (what the Python path always did with it)
        w._split(0, 500, 3500, 0, 0)


def test_the_c_run_queue_read_is_the_schedstat_field() -> None:
    """``OwnSched.runq`` (C) reads what the file says, and a dead descriptor reads 0."""
    own = OwnSched(threading.get_native_id())
    try:
        before = own.runq()
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            fields = f.read().split()
        assert before <= int(fields[1]) <= own.runq()
    finally:
        own.close()
    r, wfd = os.pipe()
    os.close(wfd)
    try:
        assert _stepc.read_runq(r) == 0  # (a pipe cannot be read at an offset: the read fails)
    finally:
        os.close(r)
