"""A late start's contention: what held a task back between its slot coming free and its body's
first step — other tools' steps on the loop (a lock held by them), the loop thread's own waits
for the GIL or a core — put in front of the body, out of dispatch (the executor's own overhead).

A batch's fan-out starts its tasks one after another on the loop, so nearly every task of a wide
batch starts late and asks this as its body ends, in the burst of replies where the loop is the
bottleneck. Where the step driver's module is built, :func:`late_start` is its C version
(``_latec.c``): the same arithmetic without two calls and their helpers per task, and for a
window the samples must split the same look-up over the running sums, calling back into
:func:`~lanepar.trace.probe.loop_waits` only to take new samples in (the first such window of a
batch, about; 53 µs of Python, where twelve look-ups in Python took 9.3 µs each in the batch).
:func:`late_begin` is what the hot path reads as a late body begins, in C there too. The Python
versions stay the references the tests hold them to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._cumruns import _GIL, _RUNQ, CumulativeRuns
from ._loopclock import _stepc, cpu_at
from .probe import (
    LOOKUP_MIN_NS,
    OFF_NOISE_NS,
    _clock,
    loop_mark,
    loop_state,
    loop_waits,
    start_waits,
)
from .segments import GIL, RUNQ, TaskProbe

#: What a late start reads as its body begins (``late_begin``).
Begun = tuple[int, int, int, tuple[int, int]]


def late_begin_py(w: Any, job: Any, free: int, now: int) -> Begun:
    """What a task that starts late (``now``, its slot free since ``free``) reads as its body
    begins, for :func:`late_start` as the body ends: ``(cpu, free_cpu, held0, mark)`` — the
    loop thread's CPU clock now and at ``free`` (``w.clocks_at``: a worker's ``Worker``), both 0
    where what other tools' steps held of the window leaves too little to look up (a fan-out's
    late starts share the last step's reading: ``cpu_at``), ``loop_held()`` at ``free`` (-1:
    unknown) and ``loop_mark()`` now."""
    at_cpu, held0 = w.clocks_at(free, job)
    mark = loop_mark()
    if held0 < 0 or (now - free) - (mark[0] - held0) >= LOOKUP_MIN_NS:
        return cpu_at(loop_state(), now), at_cpu, held0, mark
    return 0, 0, held0, mark


def late_start_py(
    probe: TaskProbe, t0: int, cpu0: int, cpu1: int, held0: int, mark: tuple[int, int]
) -> None:
    """Move the late start of ``probe``'s body — its window from ``t0`` (the slot free) to its
    first step, ``cpu0`` / ``cpu1`` the loop thread's CPU clock at either end (0: not read),
    ``held0`` / ``mark`` :func:`~lanepar.trace.probe.loop_held` at ``t0`` and
    :func:`~lanepar.trace.probe.loop_mark` at its end — from dispatch to its waits
    (:func:`~lanepar.trace.probe.start_waits`, :meth:`TaskProbe.prepend_contention`)."""
    probe.prepend_contention(*start_waits(t0, probe.started_ns, cpu0, cpu1, held0, mark))


late_start: Callable[[TaskProbe, int, int, int, int, tuple[int, int]], None] = late_start_py
#: (the C one needs the worker's and job's slots, which ``_hotpath``'s ``setup_hand`` gives it)
late_begin: Callable[[Any, Any, int, int], Begun] = late_begin_py
if _stepc is not None:
    _stepc.setup_late(loop_waits, _clock, LOOKUP_MIN_NS, OFF_NOISE_NS, GIL, RUNQ)
    # (its look-up in C too, where the samples' picture is up to date: ``loop_waits`` is the
    # reference, and the C one calls it for anything else)
    _stepc.setup_runs(CumulativeRuns, _GIL, _RUNQ)
    late_start = _stepc.late_start
    late_begin = _stepc.late_begin
