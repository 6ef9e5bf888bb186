"""The C ``late_start`` (``lanepar/trace/_latec.c``) is the Python one, probe for probe.

A late start's window is split into other tools' steps (a lock), the loop thread's own GIL and
run-queue waits (the thread watch's look-up, faked here so that every answer it can give is
tried), and what is left as dispatch; the split goes in front of the body. Every branch — no
held reading, a window too short to look up, the loop on its CPU throughout, a look-up that
says more than the room left, a body that already began on the GIL, a run-queue part, values
past 2**63 when multiplied — is taken by both versions on twin probes, which must agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanepar.run import _hotpath
from lanepar.trace import _late
from lanepar.trace._loopclock import _stepc
from lanepar.trace.model import KIND_CODE
from lanepar.trace.probe import LOOKUP_MIN_NS, OFF_NOISE_NS, TaskProbe, _clock

pytestmark = pytest.mark.skipif(_stepc is None, reason="the C step driver's module is not built")

CPU, WAIT, GIL = KIND_CODE["cpu"], KIND_CODE["wait"], KIND_CODE["gil"]
T0 = 10**12


class _Runs:
    """The loop thread's running sums (``CumulativeRuns``), answering what the case says."""

    def __init__(self, answer: tuple[int, int]) -> None:
        self.answer = answer
        self.asked: list[tuple[int, int]] = []

    def between(self, t0: int, t1: int) -> tuple[int, int]:
        self.asked.append((t0, t1))
        return self.answer


class _States:
    def current_period_ns(self) -> int:
        return 4_000_000


@contextmanager
def watched(case: dict[str, Any]) -> Iterator[_Runs]:
    """This thread's loop clock with the case's watch (none, sums only, or both)."""
    c = _clock.s
    was = c.states, c.contention
    runs = _Runs(case["answer"])
    c.states = _States() if case["states"] else None
    c.contention = runs if case["runs"] else None
    try:
        yield runs
    finally:
        c.states, c.contention = was


def probe_of(case: dict[str, Any]) -> TaskProbe:
    p = TaskProbe(500_000, 64)
    t1 = T0 + case["window"]
    p.started_ns = t1 if case["started"] else 0
    p.finished_ns = t1 + 1_000_000
    p.segs = [[k, t1 + s, t1 + e] for k, s, e in case["segs"]]
    if case["before"] is not None:  # contention the probe was told of already
        p.gil_ns, p.lock_ns, p.runq_ns = case["before"]
    return p


def state(p: TaskProbe) -> tuple[Any, ...]:
    return (p.started_ns, p.segs, p.gil_ns, p.lock_ns, p.runq_ns, dict(p.__dict__))


windows = st.one_of(
    st.integers(0, 3 * LOOKUP_MIN_NS),
    st.sampled_from([LOOKUP_MIN_NS - 1, LOOKUP_MIN_NS, LOOKUP_MIN_NS + 1]),
    st.integers(0, 10**11),  # (100 s: a look-up times the room passes 2**63)
)
first_segs = st.sampled_from(
    [
        [],
        [(CPU, 0, 40_000), (WAIT, 40_000, 900_000)],
        [(GIL, 0, 30_000), (CPU, 30_000, 60_000)],  # began on the GIL: one wait
        [(GIL, 5, 30_000)],  # a GIL piece, not at the start
    ]
)


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    window = draw(windows)
    held0 = draw(st.one_of(st.just(-1), st.integers(0, 10**9)))
    by_steps = draw(st.integers(-1_000, window + 2_000_000))
    cpu0 = draw(st.sampled_from([0, 5 * 10**9]))
    used = draw(st.one_of(st.integers(0, window + 20_000),
                          st.just(max(window - OFF_NOISE_NS, 0))))  # fmt: skip
    answer = draw(st.one_of(
        st.tuples(st.integers(0, 2 * window + 10), st.integers(0, 2 * window + 10)),
        st.tuples(st.integers(-10, 10**12), st.integers(-10, 10**12)),
    ))  # fmt: skip
    return {
        "window": window,
        "held0": held0,
        "mark": (max(held0, 0) + by_steps, T0 + draw(st.integers(-1_000, window + 1_000))),
        "cpu0": cpu0,
        "cpu1": draw(st.sampled_from([0, cpu0 + used])),
        "states": draw(st.booleans()),
        "runs": draw(st.booleans()),
        "answer": answer,
        "started": draw(st.booleans()) or window == 0,
        "segs": draw(first_segs),
        "before": draw(st.one_of(st.none(), st.tuples(*[st.integers(0, 10**6)] * 3))),
    }


@settings(max_examples=600, deadline=None)
@given(cases())
def test_the_c_late_start_is_the_python_one(case: dict[str, Any]) -> None:
    out = []
    for fn in (_late.late_start_py, _stepc.late_start):
        p = probe_of(case)
        with watched(case) as runs:
            fn(p, T0, case["cpu0"], case["cpu1"], case["held0"], case["mark"])
        out.append((state(p), runs.asked))
    assert out[0] == out[1]


@pytest.mark.parametrize("window", [10**6, 5 * 10**10])
def test_a_look_up_larger_than_the_room_is_scaled_down_exactly(window: int) -> None:
    """The samples say more than the window left (their error is a period at each end): both
    parts shrink in proportion, with Python's floor division even where the product of a
    part and the room passes 2**63 (100 s windows)."""
    case = {"window": window, "held0": -1, "mark": (0, T0), "cpu0": 0, "cpu1": 0,
            "states": False, "runs": True, "answer": (3 * window + 7, 2 * window + 1),
            "started": True, "segs": [], "before": None}  # fmt: skip
    out = []
    for fn in (_late.late_start_py, _stepc.late_start):
        p = probe_of(case)
        with watched(case) as runs:
            fn(p, T0, 0, 0, -1, case["mark"])
        assert runs.asked == [(T0, T0 + window)]
        out.append(state(p))
        assert p.gil_ns + p.runq_ns <= window and p.started_ns >= T0
    assert out[0] == out[1]


def test_a_fan_outs_late_start_moves_its_wait_out_of_dispatch() -> None:
    """Pinned by hand: 3 ms late, 2 ms of it other tools' steps, the loop on its CPU the rest:
    the lock goes in front of the body as one GIL / lock piece, and dispatch keeps 1 ms."""
    for fn in (_late.late_start_py, _stepc.late_start):
        p = TaskProbe(500_000, 64)
        t1 = T0 + 3_000_000
        p.started_ns = t1
        p.segs = [[CPU, t1, t1 + 40_000]]
        with watched({"answer": (0, 0), "states": True, "runs": True}) as runs:
            fn(p, T0, 7_000_000, 7_000_000 + 2_999_000, 100, (2_000_100, t1 - 5))
        assert runs.asked == []  # on its CPU throughout: nothing to look up
        assert p.started_ns == t1 - 2_000_000
        assert p.segs == [[GIL, t1 - 2_000_000, t1], [CPU, t1, t1 + 40_000]]
        assert (p.gil_ns, p.lock_ns, p.runq_ns) == (2_000_000, 2_000_000, 0)


def test_the_hot_path_takes_the_c_version() -> None:
    assert _late.late_start is _stepc.late_start
    assert _hotpath.late_start is _stepc.late_start


def test_bad_arguments_say_what_is_wrong() -> None:
    p = TaskProbe(500_000, 64)
    p.started_ns = T0 + 1_000_000
    with pytest.raises(TypeError, match="6 arguments"):
        _stepc.late_start(p, T0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="mark must be"):
        _stepc.late_start(p, T0, 0, 0, -1, (1, 2, 3))  # type: ignore[arg-type]
