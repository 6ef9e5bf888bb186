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
import time
from collections.abc import Coroutine, Generator, Iterator
from typing import Any

from .model import KIND_CODE

CPU = KIND_CODE["cpu"]
WAIT = KIND_CODE["wait"]

DEFAULT_RESOLUTION_NS = 500_000
DEFAULT_MAX_SEGMENTS = 64

_pc = time.perf_counter_ns
_tt = time.thread_time_ns


class SegmentBuilder:
    """Accumulates contiguous cpu/wait pieces, merging those shorter than the resolution.

    Short pieces collect in a pending run; once the run spans the resolution it is emitted as
    whichever kind dominated it, so a burst of 10 µs steps shows as the colour it mostly was.
    At ``max_segments`` neighbours are merged pairwise, halving the count: a task's picture
    coarsens instead of growing without bound. Totals are kept by the caller, never from here.
    """

    __slots__ = ("_p_amt", "_p_end", "_p_start", "max_segments", "resolution", "segs")

    def __init__(
        self, resolution_ns: int = DEFAULT_RESOLUTION_NS, max_segments: int = DEFAULT_MAX_SEGMENTS
    ) -> None:
        self.resolution = resolution_ns
        self.max_segments = max(2, max_segments)
        self.segs: list[list[int]] = []  # [kind, start, end]
        self._p_start = -1
        self._p_end = -1
        self._p_amt = [0, 0, 0, 0]

    def add(self, kind: int, start: int, end: int) -> None:
        if end <= start:
            return
        if self._p_start < 0:
            if end - start >= self.resolution:
                self._emit(kind, start, end)
                return
            self._p_start = start
        self._p_end = end
        self._p_amt[kind] += end - start
        if end - self._p_start >= self.resolution:
            self._flush()

    def _flush(self) -> None:
        if self._p_start < 0:
            return
        amt = self._p_amt
        kind = CPU if amt[CPU] >= amt[WAIT] else WAIT
        self._emit(kind, self._p_start, self._p_end)
        self._p_start = self._p_end = -1
        self._p_amt = [0, 0, 0, 0]

    def _emit(self, kind: int, start: int, end: int) -> None:
        segs = self.segs
        if segs and segs[-1][0] == kind and segs[-1][2] >= start:
            segs[-1][2] = end
            return
        if segs and segs[-1][2] < start:  # a gap (clock skew): give it to the new piece
            start = segs[-1][2]
        segs.append([kind, start, end])
        if len(segs) >= self.max_segments:
            self._coarsen()

    def _coarsen(self) -> None:
        merged: list[list[int]] = []
        segs = self.segs
        for i in range(0, len(segs), 2):
            a = segs[i]
            if i + 1 == len(segs):
                b = a
            else:
                b = segs[i + 1]
            kind = a[0] if (a[2] - a[1]) >= (b[2] - b[1]) else b[0]
            if merged and merged[-1][0] == kind:
                merged[-1][2] = b[2]
            else:
                merged.append([kind, a[1], b[2]])
        self.segs = merged

    def finish(self) -> list[list[int]]:
        if self._p_start >= 0:
            if self.segs:
                self.segs[-1][2] = self._p_end  # too short to stand alone: the neighbour takes it
                self._p_start = self._p_end = -1
            else:
                self._flush()
        return self.segs


class TaskProbe:
    """The measurements of one running task body."""

    __slots__ = ("builder", "cpu_ns", "finished_ns", "phases", "started_ns", "wait_ns")

    def __init__(self, resolution_ns: int, max_segments: int) -> None:
        self.builder = SegmentBuilder(resolution_ns, max_segments)
        self.cpu_ns = 0
        self.wait_ns = 0
        self.started_ns = 0
        self.finished_ns = 0
        self.phases: list[tuple[str, int, int]] | None = None

    def step(self, t0: int, t1: int, cpu: int) -> None:
        """A step that ran from t0 to t1 on a thread that used ``cpu`` ns of CPU meanwhile."""
        wall = t1 - t0
        if cpu > wall:
            cpu = wall
        elif cpu < 0:
            cpu = 0
        self.cpu_ns += cpu
        self.wait_ns += wall - cpu
        self.builder.add(CPU, t0, t0 + cpu)
        self.builder.add(WAIT, t0 + cpu, t1)

    def wait(self, t0: int, t1: int) -> None:
        self.wait_ns += t1 - t0
        self.builder.add(WAIT, t0, t1)

    def add_phase(self, name: str, start: int, end: int) -> None:
        if self.phases is None:
            self.phases = []
        if len(self.phases) < 256:
            self.phases.append((name, start, end))


class Stepped:
    """An awaitable that runs a coroutine one step at a time under a :class:`TaskProbe`.

    It forwards whatever the coroutine yields to the event loop untouched, so it works on any
    loop anyio supports (asyncio futures, trio traps).
    """

    __slots__ = ("coro", "probe")

    def __init__(self, coro: Coroutine[Any, Any, Any], probe: TaskProbe) -> None:
        self.coro = coro
        self.probe = probe

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, probe = self.coro, self.probe
        send, throw = coro.send, coro.throw
        value: Any = None
        exc: BaseException | None = None
        probe.started_ns = _pc()
        while True:
            t0 = _pc()
            c0 = _tt()
            try:
                yielded = send(value) if exc is None else throw(exc)
            except StopIteration as stop:
                t1 = _pc()
                probe.step(t0, t1, _tt() - c0)
                probe.finished_ns = t1
                return stop.value
            except BaseException:
                t1 = _pc()
                probe.step(t0, t1, _tt() - c0)
                probe.finished_ns = t1
                raise
            t1 = _pc()
            probe.step(t0, t1, _tt() - c0)
            try:
                value = yield yielded
                exc = None
            except BaseException as e:  # cancellation and throw() reach the coroutine
                value, exc = None, e
            probe.wait(t1, _pc())


_current: contextvars.ContextVar[_ThreadMarks | TaskProbe | None] = contextvars.ContextVar(
    "lanepar_probe", default=None
)


class _ThreadMarks:
    """Checkpoints for a body running in a thread or child process: at each ``phase`` boundary
    the interval since the last one is split into its CPU share and the rest."""

    __slots__ = ("c", "clock", "probe", "t")

    def __init__(self, probe: TaskProbe, clock: Any) -> None:
        self.probe = probe
        self.clock = clock
        self.t = _pc()
        self.c = clock()

    def mark(self) -> int:
        t, c = _pc(), self.clock()
        self.probe.step(self.t, t, c - self.c)
        self.t, self.c = t, c
        return t


def run_sync_probed(probe: TaskProbe, fn: Any, args: Any, kwargs: Any, clock: Any = _tt) -> Any:
    """Run a sync body on this thread, measuring its CPU (``clock``) and wall time."""
    marks = _ThreadMarks(probe, clock)
    probe.started_ns = marks.t
    token = _current.set(marks)
    try:
        return fn(*args, **kwargs)
    finally:
        probe.finished_ns = marks.mark()
        _current.reset(token)


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
