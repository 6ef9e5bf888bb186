"""What a tool knows of its own waits and tells the trace: time that looked like I/O was not.

A tool that hands its work to someone else — a worker process, a helper thread — sees only its
own wait for them, which the probe draws as I/O wait: time a task would also spend alone, so the
trace's speedup estimate counts it. On a busy machine part of that wait is contention the tool
can measure exactly (the worker's run-queue counter, the helper's CPU clock) and these move it
to where it belongs. Outside a traced task they do nothing.
"""

from __future__ import annotations

from .probe import _current, _ThreadMarks
from .segments import GIL, RUNQ


def note_core_wait(ns: int, t0: int = 0, t1: int = 0) -> None:
    """Count ``ns`` that a process working for the current task spent runnable but waiting for
    a core as the task's run-queue wait, out of its wait (an async body's: within
    ``[t0, t1]``, ``perf_counter_ns`` times, when given, where the picture shows it)."""
    cur = _current.get()
    if ns <= 0 or cur is None:
        return
    if isinstance(cur, _ThreadMarks):
        cur.core_wait += ns
    else:  # an async body: moved as it settles, when the wait it is part of is counted
        cur.recast(RUNQ, ns, t0, t1)


def note_gil_wait(ns: int, t0: int = 0, t1: int = 0) -> None:
    """Count ``ns`` that a thread working for the current async task spent waiting for the GIL
    as the task's GIL wait, out of its wait (within ``[t0, t1]`` when given, as
    :func:`note_core_wait`). (A thread body's own GIL waits are the thread watch's to see:
    there this does nothing.)"""
    cur = _current.get()
    if ns <= 0 or cur is None or isinstance(cur, _ThreadMarks):
        return
    cur.recast(GIL, ns, t0, t1)
