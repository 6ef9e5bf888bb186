"""A task body's measurements: exact totals, and a bounded picture of segments.

Kept apart from the step drivers (:mod:`lanepar.trace.probe`) because this is pure bookkeeping,
tested as such (hypothesis checks that merging never changes a total).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from .model import KIND_CODE

CPU = KIND_CODE["cpu"]
WAIT = KIND_CODE["wait"]
GIL = KIND_CODE["gil"]
RUNQ = KIND_CODE["runq"]

DEFAULT_RESOLUTION_NS = 500_000
DEFAULT_MAX_SEGMENTS = 64


class TaskProbe:
    """The measurements of one running task body, and its segments as they are built.

    Short pieces (under the resolution) collect in a pending run; once the run spans the
    resolution it is emitted as whichever kind dominated it, so a burst of 10 µs steps shows as
    the colour it mostly was. At ``max_segments`` neighbours are merged pairwise, halving the
    count: a task's picture coarsens instead of growing without bound. ``cpu_ns``, ``wait_ns``,
    ``gil_ns`` and ``runq_ns`` are summed from every piece and never touched by merging, so they
    stay exact; :meth:`split` adds an interval whose off-CPU time was told apart from outside.
    """

    # The fields most probes never change are class-level defaults (``__dict__`` takes them
    # on first write), because a probe is made per traced task and every store in ``__init__``
    # is paid by every task.
    __slots__ = (
        "__dict__",
        "cpu_ns",
        "finished_ns",
        "max_segments",
        "p_cpu",
        "p_end",
        "p_start",
        "p_wait",
        "resolution",
        "segs",
        "started_ns",
        "wait_ns",
    )
    #: Waiting for the GIL / a lock, and runnable but waiting for a core: filled in by whatever
    #: observes the thread from outside (zero where nothing can tell them apart).
    gil_ns: int = 0
    runq_ns: int = 0
    #: The part of ``gil_ns`` spent waiting for a lock other than the GIL.
    lock_ns: int = 0
    #: The event-loop thread's CPU clock when the slot came free, and when a thread body ended
    #: (read from its thread): with them a hand-off's loop-side waits are exact (0: unknown).
    free_cpu_ns: int = 0
    end_loop_cpu_ns: int = 0
    #: ``probe.loop_held()`` when the slot came free and when a thread body ended (-1:
    #: unknown), and (held, its end) at the hand-off: the loop held by other tools' steps.
    free_held: int = -1
    end_loop_held: int = -1
    hand_held: tuple[int, int] = (-1, 0)
    #: The pending run's GIL and run-queue parts (its CPU and wait parts are slots).
    p_gil: int = 0
    p_runq: int = 0
    #: Steps that held the event loop past the loop watch's threshold: (start, end, stack).
    blocks: list[tuple[int, int, list[str]]] | None = None
    phases: list[tuple[str, int, int]] | None = None
    #: Set by remote backends (Dask): "<worker address>/<thread id>" that ran the body.
    worker: str | None = None
    #: Parts of its waits an async body's tool told apart itself (:mod:`lanepar.trace.notes`):
    #: (kind, ns, start, end), applied as the task settles (:meth:`apply_recasts`).
    recasts: list[tuple[int, int, int, int]] | None = None

    def __init__(
        self, resolution_ns: int = DEFAULT_RESOLUTION_NS, max_segments: int = DEFAULT_MAX_SEGMENTS
    ) -> None:
        self.resolution = resolution_ns
        self.max_segments = max_segments if max_segments > 2 else 2
        self.segs: list[list[int]] = []  # [kind, start, end]
        self.p_start = -1
        self.p_end = -1
        self.p_cpu = 0
        self.p_wait = 0
        self.cpu_ns = 0
        self.wait_ns = 0
        self.started_ns = 0
        self.finished_ns = 0

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
        lock: int = 0,
    ) -> None:
        """An interval whose wall time is ``cpu`` + ``gil`` + ``runq`` + the rest (wait), of
        whose ``gil`` time ``lock`` was spent waiting for a lock other than the GIL.

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
        self.lock_ns += min(max(lock, 0), gil)
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
            self.p_cpu = self.p_wait = 0
            if self.p_gil | self.p_runq:
                self.p_gil = self.p_runq = 0
        else:
            self._flush()

    def finish(self) -> list[list[int]]:
        """Close the pending run and return the segments."""
        if self.p_start >= 0:
            self._close_pending()
        return self.segs

    def recast(self, kind: int, ns: int, t0: int = 0, t1: int = 0) -> None:
        """``ns`` of this body's wait, within ``[t0, t1]`` (0, 0: anywhere), was ``kind`` (GIL
        or run queue), as a tool that handed work to a thread or process measured it.

        Kept until the task settles rather than moved now: a tool notes it as its step resumes,
        and the wait that step ended is not in the totals yet (a step driver accounts the wait
        before a step with the step), so a move now found nothing to take it from."""
        if self.recasts is None:
            self.recasts = []
        self.recasts.append((kind, ns, t0, t1))

    def apply_recasts(self) -> None:
        """Move what :meth:`recast` noted out of the wait totals (never more than there is) and
        redraw the wait segments of each window as that kind (as much of them as was moved)."""
        recasts, self.recasts = self.recasts, None
        if not recasts:
            return
        self.finish()
        for kind, ns, t0, t1 in recasts:
            moved = min(ns, self.wait_ns)
            if moved <= 0:
                continue
            self.wait_ns -= moved
            if kind == GIL:
                self.gil_ns += moved
            else:
                self.runq_ns += moved
            if t1 > t0:
                self._redraw(kind, moved, t0, t1)

    def _redraw(self, kind: int, ns: int, t0: int, t1: int) -> None:
        """Up to ``ns`` of the wait segments inside ``[t0, t1]`` become ``kind``, earliest first."""
        out: list[list[int]] = []
        for k, s, e in self.segs:
            pieces = [(k, s, e)]
            if k == WAIT and ns > 0 and s < t1 and e > t0:
                a = max(s, t0)
                b = min(e, t1, a + ns)
                ns -= b - a
                pieces = [(k, s, a), (kind, a, b), (k, b, e)]
            for pk, ps, pe in pieces:
                if pe <= ps:
                    continue
                if out and out[-1][0] == pk:
                    out[-1][2] = pe
                else:
                    out.append([pk, ps, pe])
        self.segs = out
        while len(self.segs) >= self.max_segments:
            self._coarsen()

    def add_phase(self, name: str, start: int, end: int) -> None:
        if self.phases is None:
            self.phases = []
        if len(self.phases) < 256:
            self.phases.append((name, start, end))

    def block(self, t0: int, t1: int, stack: list[str]) -> None:
        """A step that held the event loop from ``t0`` to ``t1``; ``stack`` names the culprit."""
        if self.blocks is None:
            self.blocks = []
        self.blocks.append((t0, t1, stack))

    def read_loop_clock(self, clock: int) -> None:
        """``end_loop_cpu_ns`` from the loop thread's CPU clock (unknown once that thread is gone;
        read on the body's thread, it costs a clock read and never releases the GIL)."""
        try:  # (not ``contextlib.suppress``: this runs once per traced sync body)
            self.end_loop_cpu_ns = time.clock_gettime_ns(clock)
        except OSError:
            pass

    def prepend_contention(self, gil: int, runq: int, lock: int = 0) -> None:
        """Before the body: ``gil`` then ``runq`` ns its hand-off spent waiting for the GIL or a
        core on the handing (loop) thread, and ``lock`` ns the loop was held by other tools'
        steps (a lock other than the GIL). They move from dispatch (the executor's own
        overhead) to the body's waits: the body starts that much earlier, totals stay exact."""
        gil, runq, lock = max(gil, 0), max(runq, 0), max(lock, 0)
        if not (gil or runq or lock) or not self.started_ns:
            return
        start = self.started_ns - lock - gil - runq
        segs = self.segs
        if not runq:  # (nearly always: one piece, or a longer first one)
            if segs and segs[0][0] == GIL and segs[0][1] == self.started_ns:
                segs[0][1] = start  # the body began waiting for the GIL too: one wait
            else:
                segs.insert(0, [GIL, start, self.started_ns])
        else:
            head = [[k, s, e] for k, s, e in ((GIL, start, start + lock + gil),
                    (RUNQ, start + lock + gil, self.started_ns)) if e > s]  # fmt: skip
            segs[:0] = head
        self.gil_ns += lock + gil
        self.lock_ns += lock
        self.runq_ns += runq
        self.started_ns = start


def hand_and_wait(
    probe: TaskProbe, ps: int, pe: int, pc: int, pw: int, ac: int, aw: int, t1: int
) -> None:
    """For a step driver that keeps the pending run in local variables: hand the probe that run
    ``[ps, pe]`` (its cpu / wait ``pc`` / ``pw``, of which ``ac`` / ``aw`` are not yet in the
    totals), then a wait ``[pe, t1]`` of at least the resolution — in one call rather than the
    four methods it replaces (hand, wait, close the run, emit), because a tool that waits on
    real I/O takes this path at every suspension.

    Leaves the probe's totals and segments exactly as :meth:`TaskProbe.wait` after the hand
    would; its pending-run fields are the driver's to set again before any other method.
    """
    probe.cpu_ns += ac
    probe.wait_ns += aw + t1 - pe
    segs = probe.segs
    if pe > ps or pc or pw:  # close the run: its left neighbour takes it, else it stands alone
        if segs and segs[-1][2] >= ps:
            segs[-1][2] = pe
            if probe.p_gil | probe.p_runq:
                probe.p_gil = probe.p_runq = 0
        else:
            probe.p_start, probe.p_end, probe.p_cpu, probe.p_wait = ps, pe, pc, pw
            probe._flush()
    probe._emit(WAIT, pe, t1)
