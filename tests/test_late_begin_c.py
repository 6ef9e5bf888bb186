"""The C ``late_begin`` (``lanepar/trace/_latec.c``) reads what the Python one reads.

As a task that starts late begins, the hot path reads the loop thread's CPU clock at both ends of
its window (the slot's, or the batch's submission, where they were read), how long other tools'
steps had held the loop by then and since, and the CPU clock now only if the window may be worth
a look-up — one C call for the fan-out's every task instead of four Python ones. Both versions
run here on twin workers, jobs, batches and loop clocks, over every branch.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanepar.run import _hotpath
from lanepar.run.batch import _Batch
from lanepar.run.job import Job, Worker
from lanepar.trace import _late
from lanepar.trace._loopclock import FRESH_NS, _stepc
from lanepar.trace.probe import LOOKUP_MIN_NS, _clock

pytestmark = pytest.mark.skipif(_stepc is None, reason="the C step driver's module is not built")

T0 = 10**12


def world(case: dict[str, Any]) -> tuple[Worker, Job]:
    batch = _Batch(1, fail_fast=False, on_fail_fast=lambda b: None, traced=True)
    batch.submitted_ns = T0
    batch.submitted_cpu, batch.submitted_held = case["sub_cpu"], case["sub_held"]
    job = Job(batch, 0, print, (), {}, True, "t", None, 1, T0)
    job.pushed_ns = case["pushed"]
    w = Worker(0)
    w.free_at, w.free_cpu, w.free_held = case["free_at"], case["w_cpu"], case["w_held"]
    return w, job


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    late = draw(st.one_of(st.integers(200_001, 5 * LOOKUP_MIN_NS),
                          st.integers(200_001, 10**10)))  # fmt: skip
    free = draw(st.sampled_from(["slot", "submitted", "pushed later", "other"]))
    free_ns = {"slot": T0 + 7, "submitted": T0, "pushed later": T0 + 9, "other": T0 + 11}[free]
    held0 = draw(st.one_of(st.just(-1), st.integers(0, 10**9)))
    now = free_ns + late
    # other tools' steps held the loop for about the window, or left a look-up's worth
    by_steps = draw(st.one_of(st.integers(late - LOOKUP_MIN_NS - 2, late - LOOKUP_MIN_NS + 2),
                              st.integers(0, late + 10**6)))  # fmt: skip
    return {
        "free": free_ns,
        "now": now,
        "free_at": T0 + 7,
        "w_cpu": draw(st.integers(0, 10**10)),
        "w_held": held0,
        "sub_cpu": draw(st.integers(0, 10**10)),
        "sub_held": held0,
        "pushed": T0 + 9 if free == "pushed later" else T0,
        "held1": max(held0, 0) + by_steps,
        "held_end": now - draw(st.integers(0, 10**6)),
        "clock_w": now - draw(st.integers(0, FRESH_NS)),  # (fresh: no system call)
        "clock_c": draw(st.integers(1, 10**12)),
    }


def run(fn: Any, case: dict[str, Any]) -> tuple[Any, ...]:
    c = _clock.s
    was = c.w, c.c, c.held, c.held_end
    c.w, c.c, c.held, c.held_end = case["clock_w"], case["clock_c"], case["held1"], case["held_end"]
    try:
        w, job = world(case)
        out = fn(w, job, case["free"], case["now"])
        return out, (c.w, c.c)
    finally:
        c.w, c.c, c.held, c.held_end = was


@settings(max_examples=600, deadline=None)
@given(cases())
def test_the_c_late_begin_is_the_python_one(case: dict[str, Any]) -> None:
    assert run(_stepc.late_begin, case) == run(_late.late_begin_py, case)


def test_a_stale_reading_is_taken_afresh_by_both() -> None:
    """Past ``FRESH_NS`` since the loop clock's last reading, the CPU clock is read now (a real
    system call, so the two versions' values differ, not their shape) and kept for the next."""
    case = {"free": T0, "now": T0 + 10**9, "free_at": 0, "w_cpu": 0, "w_held": -1,
            "sub_cpu": 5, "sub_held": -1, "pushed": T0, "held1": 0, "held_end": 0,
            "clock_w": T0, "clock_c": 1}  # fmt: skip
    for fn in (_late.late_begin_py, _stepc.late_begin):
        (cpu, free_cpu, held0, mark), (w, c) = run(fn, case)
        assert (free_cpu, held0, mark) == (5, -1, (0, 0))
        assert w == T0 + 10**9 and cpu == c > 1  # this thread's CPU clock, read now


def test_the_hot_path_takes_the_c_version() -> None:
    assert _late.late_begin is _stepc.late_begin
    assert _hotpath.late_begin is _stepc.late_begin


def test_bad_arguments_say_what_is_wrong() -> None:
    with pytest.raises(TypeError, match="4 arguments"):
        _stepc.late_begin(Worker(0), None)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _stepc.late_begin(Worker(0), None, "x", 1)  # type: ignore[arg-type]
