"""Measuring a task body: CPU phases and waits, on one clock.

Async bodies are driven step by step (the seam trio exposes as ``before_task_step`` /
``after_task_step``): each ``send()`` into the coroutine is a step whose thread CPU time is CPU and
whose remainder was blocking; each suspension between two steps is a wait. Thread bodies can only
be measured around the whole body (plus at ``phase`` boundaries), because a thread cannot be
observed from outside without sampling. Child processes measure themselves and ship numbers back.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
import types
from collections.abc import Coroutine, Generator, Iterable, Iterator
from typing import Any

from .model import KIND_CODE
from .threadstate import ThreadWatch, Token

CPU = KIND_CODE["cpu"]
WAIT = KIND_CODE["wait"]
GIL = KIND_CODE["gil"]
RUNQ = KIND_CODE["runq"]

DEFAULT_RESOLUTION_NS = 500_000
DEFAULT_MAX_SEGMENTS = 64

_pc = time.perf_counter_ns
_tt = time.thread_time_ns


class TaskProbe:
    """The measurements of one running task body, and its segments as they are built.

    Short pieces (under the resolution) collect in a pending run; once the run spans the
    resolution it is emitted as whichever kind dominated it, so a burst of 10 µs steps shows as
    the colour it mostly was. At ``max_segments`` neighbours are merged pairwise, halving the
    count: a task's picture coarsens instead of growing without bound. ``cpu_ns``, ``wait_ns``,
    ``gil_ns`` and ``runq_ns`` are summed from every piece and never touched by merging, so they
    stay exact; :meth:`split` adds an interval whose off-CPU time was told apart from outside.
    """

    __slots__ = (
        "cpu_ns",
        "finished_ns",
        "gil_ns",
        "max_segments",
        "p_cpu",
        "p_end",
        "p_gil",
        "p_runq",
        "p_start",
        "p_wait",
        "phases",
        "resolution",
        "runq_ns",
        "segs",
        "started_ns",
        "wait_ns",
        "worker",
    )

    def __init__(
        self, resolution_ns: int = DEFAULT_RESOLUTION_NS, max_segments: int = DEFAULT_MAX_SEGMENTS
    ) -> None:
        self.resolution = resolution_ns
        self.max_segments = max(2, max_segments)
        self.segs: list[list[int]] = []  # [kind, start, end]
        self.p_start = -1
        self.p_end = -1
        self.p_cpu = 0
        self.p_wait = 0
        self.p_gil = 0
        self.p_runq = 0
        self.cpu_ns = 0
        self.wait_ns = 0
        #: Waiting for the GIL / a lock, and runnable but waiting for a core: filled in by
        #: whatever observes the thread from outside (zero where nothing can tell them apart).
        self.gil_ns = 0
        self.runq_ns = 0
        self.started_ns = 0
        self.finished_ns = 0
        self.phases: list[tuple[str, int, int]] | None = None
        #: Set by remote backends (Dask): "<worker address>/<thread id>" that ran the body.
        self.worker: str | None = None

    def step(self, t0: int, t1: int, cpu: int) -> None:
        """A step that ran from t0 to t1 on a thread that used ``cpu`` ns of CPU meanwhile:
        the CPU share is drawn first, the rest (blocking, preemption) as wait."""
        wall = t1 - t0
        if cpu > wall:
            cpu = wall
        elif cpu < 0:
            cpu = 0
        self.cpu_ns += cpu
        self.wait_ns += wall - cpu
        if wall >= self.resolution:  # long enough to draw as it was
            if self.p_start >= 0:
                self._close_pending()
            self._emit(CPU, t0, t0 + cpu)
            self._emit(WAIT, t0 + cpu, t1)
            return
        if self.p_start < 0:
            self.p_start = t0
        self.p_end = t1
        self.p_cpu += cpu
        self.p_wait += wall - cpu
        if t1 - self.p_start >= self.resolution:
            self._flush()

    def wait(self, t0: int, t1: int) -> None:
        wall = t1 - t0
        if wall <= 0:
            return
        self.wait_ns += wall
        if wall >= self.resolution:
            if self.p_start >= 0:
                self._close_pending()
            self._emit(WAIT, t0, t1)
            return
        if self.p_start < 0:
            self.p_start = t0
        self.p_end = t1
        self.p_wait += wall
        if t1 - self.p_start >= self.resolution:
            self._flush()

    def split(
        self,
        t0: int,
        t1: int,
        cpu: int,
        gil: int,
        runq: int,
        runs: Iterable[tuple[int, int, int]] = (),
    ) -> None:
        """An interval whose wall time is ``cpu`` + ``gil`` + ``runq`` + the rest (wait).

        The totals are taken as given (clamped so they never exceed the wall time); ``runs``,
        ``(kind, start, end)`` pieces from a sampler, only draw the picture — where it is empty
        the interval is drawn as cpu, gil, runq, wait in that order, like :meth:`step`.
        """
        wall = t1 - t0
        if wall <= 0:
            return
        cpu = min(max(cpu, 0), wall)
        gil = min(max(gil, 0), wall - cpu)
        runq = min(max(runq, 0), wall - cpu - gil)
        self.cpu_ns += cpu
        self.gil_ns += gil
        self.runq_ns += runq
        self.wait_ns += wall - cpu - gil - runq
        cursor = t0
        kind = WAIT
        for kind, _s, e in runs:
            e = min(e, t1)
            if e <= cursor:
                continue
            self._piece(kind, cursor, e)  # a gap before s goes to this piece
            cursor = e
        if cursor > t0:
            if cursor < t1:
                self._piece(kind, cursor, t1)
            return
        t = t0
        for kind, d in ((CPU, cpu), (GIL, gil), (RUNQ, runq), (WAIT, wall - cpu - gil - runq)):
            if d:
                self._piece(kind, t, t + d)
                t += d

    def _piece(self, kind: int, t0: int, t1: int) -> None:
        """Draw ``[t0, t1]`` as ``kind`` (totals are the caller's), through the pending run."""
        if t1 - t0 >= self.resolution:
            if self.p_start >= 0:
                self._close_pending()
            self._emit(kind, t0, t1)
            return
        if self.p_start < 0:
            self.p_start = t0
        self.p_end = t1
        d = t1 - t0
        if kind == CPU:
            self.p_cpu += d
        elif kind == GIL:
            self.p_gil += d
        elif kind == RUNQ:
            self.p_runq += d
        else:
            self.p_wait += d
        if t1 - self.p_start >= self.resolution:
            self._flush()

    def _flush(self) -> None:
        if self.p_start < 0:
            return
        kind = CPU if self.p_cpu >= self.p_wait else WAIT
        if self.p_gil | self.p_runq:
            best = max(self.p_cpu, self.p_wait)
            if self.p_gil > best:
                kind, best = GIL, self.p_gil
            if self.p_runq > best:
                kind = RUNQ
            self.p_gil = self.p_runq = 0
        self._emit(kind, self.p_start, self.p_end)
        self.p_start = self.p_end = -1
        self.p_cpu = self.p_wait = 0

    def _emit(self, kind: int, start: int, end: int) -> None:
        if end <= start:
            return
        segs = self.segs
        if segs:
            last = segs[-1]
            if last[0] == kind and last[2] >= start:
                last[2] = end
                return
            if last[2] < start:  # a gap (clock skew): give it to the new piece
                start = last[2]
        segs.append([kind, start, end])
        if len(segs) >= self.max_segments:
            self._coarsen()

    def _coarsen(self) -> None:
        merged: list[list[int]] = []
        segs = self.segs
        for i in range(0, len(segs), 2):
            a = segs[i]
            b = segs[i + 1] if i + 1 < len(segs) else a
            kind = a[0] if (a[2] - a[1]) >= (b[2] - b[1]) else b[0]
            if merged and merged[-1][0] == kind:
                merged[-1][2] = b[2]
            else:
                merged.append([kind, a[1], b[2]])
        self.segs = merged

    def _close_pending(self) -> None:
        """A pending run too short to stand alone: its left neighbour takes it."""
        if self.segs and self.segs[-1][2] >= self.p_start:
            self.segs[-1][2] = self.p_end
            self.p_start = self.p_end = -1
            self.p_cpu = self.p_wait = self.p_gil = self.p_runq = 0
        else:
            self._flush()

    def finish(self) -> list[list[int]]:
        """Close the pending run and return the segments."""
        if self.p_start >= 0:
            self._close_pending()
        return self.segs

    def add_phase(self, name: str, start: int, end: int) -> None:
        if self.phases is None:
            self.phases = []
        if len(self.phases) < 256:
            self.phases.append((name, start, end))


class _LoopClock(threading.local):
    """The last (wall, thread CPU) reading on this thread.

    ``thread_time_ns`` is a real system call (about 0.5 µs), so a step reads it only at its end,
    and at its start only when the last reading is older than ``FRESH_NS``; a step shorter than
    ``FRESH_NS`` is counted as CPU outright — a blocking call that short is noise. The error this
    allows is bounded by ``FRESH_NS`` of CPU per step.
    """

    w = 0
    c = 0


FRESH_NS = 50_000
_clock = _LoopClock()


@types.coroutine
def stepped(coro: Coroutine[Any, Any, Any], probe: TaskProbe) -> Generator[Any, Any, Any]:
    """Run a coroutine one step at a time under a :class:`TaskProbe` (``await stepped(...)``).

    It forwards whatever the coroutine yields to the event loop untouched, so it works on any
    loop anyio supports (asyncio futures, trio traps). A generator function rather than an
    awaitable object, and a fast path for bodies that finish in their first step, because this
    runs once per traced task and the tracing budget is a few microseconds.
    """
    send, throw = coro.send, coro.throw
    clock = _clock
    value: Any = None
    exc: BaseException | None = None
    t0 = probe.started_ns = _pc()
    while True:
        if t0 - clock.w > FRESH_NS:
            clock.w, clock.c = t0, _tt()
        c0 = clock.c
        try:
            yielded = send(value) if exc is None else throw(exc)
        except StopIteration as stop:
            t1 = probe.finished_ns = _pc()
            if t1 - t0 < FRESH_NS and not probe.segs and probe.p_start < 0:
                # finished in one short first step: all CPU, no merging machinery needed
                probe.cpu_ns = t1 - t0
                probe.segs = [[CPU, t0, t1]]
            else:
                probe.step(t0, t1, _cpu_since(clock, t0, t1, c0))
            return stop.value
        except BaseException:
            t1 = probe.finished_ns = _pc()
            probe.step(t0, t1, _cpu_since(clock, t0, t1, c0))
            raise
        t1 = _pc()
        probe.step(t0, t1, _cpu_since(clock, t0, t1, c0))
        try:
            value = yield yielded
            exc = None
        except BaseException as e:  # cancellation and throw() reach the coroutine
            value, exc = None, e
        t0 = _pc()
        probe.wait(t1, t0)


def _cpu_since(clock: _LoopClock, t0: int, t1: int, c0: int) -> int:
    if t1 - t0 < FRESH_NS:
        return t1 - t0
    c1 = _tt()
    clock.w, clock.c = t1, c1
    return c1 - c0


_current: contextvars.ContextVar[_ThreadMarks | TaskProbe | None] = contextvars.ContextVar(
    "lanepar_probe", default=None
)


class _ThreadMarks:
    """Checkpoints for a body running in a thread or child process: at each ``phase`` boundary
    the interval since the last one is split into its CPU share and the rest — and, under a
    :class:`ThreadWatch`, the rest into GIL/lock wait, run-queue wait and other waiting."""

    __slots__ = ("c", "clock", "probe", "t", "tok", "watch")

    def __init__(
        self, probe: TaskProbe, clock: Any, watch: ThreadWatch | None, tok: Token | None
    ) -> None:
        self.probe = probe
        self.clock = clock
        self.watch = watch
        self.tok = tok
        self.t = _pc()
        self.c = clock()

    def mark(self) -> int:
        t, c = _pc(), self.clock()
        if self.tok is None or self.watch is None:
            self.probe.step(self.t, t, c - self.c)
        else:
            sp = self.watch.split(self.tok, self.t, t, c - self.c)
            self.probe.split(self.t, t, sp.cpu_ns, sp.gil_ns, sp.runq_ns, sp.runs)
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
) -> Any:
    """Run a sync body on this thread, measuring its CPU (``clock``) and wall time.

    With a ``watch`` the off-CPU time is split (GIL/lock, run queue, the rest). ``handed`` holds
    the time the body was handed to this thread (set by the handing thread, 0 if not yet): from
    then until the body's first instruction the thread was waking and taking the GIL, so that
    span is drawn as GIL (its run-queue part as runq) rather than left as dispatch overhead.
    """
    tok = watch.begin() if watch is not None else None
    marks = _ThreadMarks(probe, clock, watch, tok)
    probe.started_ns = marks.t
    if tok is not None and handed is not None and 0 < handed[0] < marks.t:
        h = handed[0]
        rq = min(tok.pre_runq, marks.t - h)
        probe.split(h, marks.t, 0, marks.t - h - rq, rq)
        probe.started_ns = h
    token = _current.set(marks)
    try:
        return fn(*args, **kwargs)
    finally:
        probe.finished_ns = marks.mark()
        _current.reset(token)
        if tok is not None and watch is not None:
            watch.end(tok)


def activate(probe: TaskProbe | None) -> contextvars.Token[Any]:
    return _current.set(probe)


def deactivate(token: contextvars.Token[Any]) -> None:
    _current.reset(token)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark a named phase inside a tool body; it shows as a labelled span on the timeline.

    Outside a traced task this does nothing, so tools can use it unconditionally.
    """
    cur = _current.get()
    if cur is None:
        yield
        return
    if isinstance(cur, _ThreadMarks):
        start = cur.mark()
        try:
            yield
        finally:
            cur.probe.add_phase(name, start, cur.mark())
        return
    start = _pc()
    try:
        yield
    finally:
        cur.add_phase(name, start, _pc())
