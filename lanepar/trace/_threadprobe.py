"""Measuring a sync body on its own thread (a lane's thread, or a child process's main thread):
CPU and wall time at each mark, and under a thread watch the off-CPU time split. The context
variable ``phase`` and the tools' notes read is here too: a body of either kind sets it.
"""

from __future__ import annotations

import contextvars
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._loopclock import _Clock
    from .segments import TaskProbe
    from .threadstate import ThreadWatch, Token

_pc = time.perf_counter_ns
_tt = time.thread_time_ns
#: The wall and CPU clocks of a thread that never left its core drift 2-4 µs apart over a
#: window of milliseconds here (read apart, and counted apart by the kernel): a fan-out's late
#: starts all see that much "off-CPU" time, and a lookup each cost an adapter 5-8 µs a call.
#: A thread body's interval off its CPU by less than this has nothing for the watch to split
#: either (its run-queue read and sample lookup were half of tracing a short sync tool).
OFF_NOISE_NS = 10_000


_current: contextvars.ContextVar[_ThreadMarks | TaskProbe | None] = contextvars.ContextVar(
    "lanepar_probe", default=None
)


class _ThreadMarks:
    """Checkpoints for a body running in a thread or child process: at each ``phase`` boundary
    the interval since the last one is split into its CPU share and the rest — and, under a
    :class:`ThreadWatch`, the rest into GIL/lock wait, run-queue wait and other waiting."""

    __slots__ = ("c", "clock", "core_wait", "probe", "t", "tok", "watch")

    def __init__(
        self, probe: TaskProbe, clock: Any, watch: ThreadWatch | None, tok: Token | None
    ) -> None:
        self.probe = probe
        self.clock = clock
        self.watch = watch
        self.tok = tok
        self.t = _pc()
        self.c = clock()
        #: Run-queue wait of processes working for the body since the last mark (note_core_wait)
        self.core_wait = 0

    def mark(self) -> int:
        # The CPU clock first, the wall clock last, as ``__init__`` reads them the other way
        # round: the CPU window nests in the wall window, so the body's CPU can never exceed
        # its wall time by a read (a CPU clock is a system call, one that a fault or an interrupt
        # on a VM can stretch to 10 µs and more: a process lane's body was once recorded with
        # 12 µs more CPU beyond its own than the wall time around it had room for).
        c = self.clock()
        t = _pc()
        far = self.core_wait
        if far:
            self.core_wait = 0
        if self.tok is None or self.watch is None or (t - self.t) - (c - self.c) < OFF_NOISE_NS:
            # (no watch, or the interval never left its CPU: the run-queue wait the next split
            # reads since the last one includes this interval's, which is under OFF_NOISE_NS)
            if far:
                self.probe.split(self.t, t, c - self.c, 0, far)
            else:
                self.probe.step(self.t, t, c - self.c)
        else:
            sp = self.watch.split(self.tok, self.t, t, c - self.c)
            self.probe.split(self.t, t, sp.cpu_ns, sp.gil_ns, sp.runq_ns + far, sp.runs,
                             sp.lock_ns)  # fmt: skip
        self.t, self.c = t, c
        return t


def run_sync_probed(
    probe: TaskProbe,
    fn: Any,
    args: Any,
    kwargs: Any,
    clock: Any = _tt,
    watch: ThreadWatch | None = None,
    handed: list[int] | None = None,
    loop_clock: int | None = None,
    loop: _Clock | None = None,
) -> Any:
    """Run a sync body on this thread, measuring its CPU (``clock``) and wall time.

    With a ``watch`` the off-CPU time is split (GIL/lock, run queue, the rest). ``handed`` holds
    the hand-off time (set by the handing thread, 0 if not yet): from then until the body's first
    instruction the thread was waking and taking the GIL, so that span is drawn as GIL (its
    run-queue part as runq), not dispatch. ``loop_clock``: the loop thread's, read as it ends,
    as is ``loop``'s ``held`` (see :func:`start_waits`).

    That span is drawn once the body has ended (in front of the body's own pieces, and moving
    its start back to the hand-off), not before it begins: in a fan-out the threads take the GIL
    one after another, and every µs this thread spends before the body gives it up is a µs
    longer the next one waits to start.
    """
    tok = watch.begin() if watch is not None else None
    marks = _ThreadMarks(probe, clock, watch, tok)
    probe.started_ns = marks.t
    lead = None
    if tok is not None and handed is not None and 0 < handed[0] < marks.t:
        window = marks.t - handed[0]
        rq = min(tok.pre_runq, window)
        lead = (window - rq, rq)
    token = _current.set(marks)
    try:
        return fn(*args, **kwargs)
    finally:
        probe.finished_ns = marks.mark()
        if lead is not None:
            probe.prepend_contention(*lead)
        if loop_clock is not None:
            probe.read_loop_clock(loop_clock)
        if loop is not None:
            probe.end_loop_held = loop.held
        _current.reset(token)
        if tok is not None and watch is not None:
            watch.end(tok)
