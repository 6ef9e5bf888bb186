"""The pure half of :mod:`lanepar.trace.threadstate`: a thread's sampled states as a picture.

Kept apart from the watch (processes, shared memory) because it is arithmetic over samples and is
tested as such.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _statewatch as sw
from ._loopclock import _stepc
from .model import KIND_CODE

CPU, WAIT, GIL, RUNQ = KIND_CODE["cpu"], KIND_CODE["wait"], KIND_CODE["gil"], KIND_CODE["runq"]
#: A wait on a lock other than the GIL: drawn as ``gil`` ("GIL / lock wait"), counted apart.
LOCK = -1
_KIND_OF_CLASS = {
    sw.C_RUN: CPU, sw.C_FUTEX: GIL, sw.C_OTHER: WAIT, sw.C_GONE: WAIT, sw.C_LOCK: LOCK
}  # fmt: skip


class Split(NamedTuple):
    """One interval of a body, its wall time split exactly (``wait`` is the remainder).
    ``lock_ns`` is the part of ``gil_ns`` spent waiting for a lock other than the GIL."""

    cpu_ns: int
    gil_ns: int
    runq_ns: int
    wait_ns: int
    runs: list[tuple[int, int, int]]
    lock_ns: int = 0


def drawn(runs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """``runs`` as the timeline draws them: a wait for another lock is a ``gil`` piece."""
    out: list[tuple[int, int, int]] = []
    for kind, s, e in runs:
        if kind == LOCK:
            kind = GIL
        if out and out[-1][0] == kind and out[-1][2] == s:
            out[-1] = (kind, out[-1][1], e)
        else:
            out.append((kind, s, e))
    return out


def kind_of(sample: tuple[int, int, int], prev: tuple[int, int, int] | None) -> int:
    """The kind a sample's state is drawn as: its class's, except that a running sample whose
    run-queue counter grew by more than half the time since ``prev`` waited for a core."""
    t, cls, rq = sample
    kind = _KIND_OF_CLASS[cls]
    if kind == CPU and prev is not None and 2 * (rq - prev[2]) > t - prev[0]:
        return RUNQ
    return kind


def _runs(
    smp: list[tuple[int, int, int]], t0: int, t1: int, period: int, edges_ran: bool = False
) -> list[tuple[int, int, int]]:
    """The sampled picture of ``[t0, t1]``: each sample's state holds from the midpoint with its
    predecessor to the midpoint with its successor; a sample whose run-queue counter grew by more
    than half the time since the previous one shows as ``runq``. Empty when the helper saw nothing
    of the span (it started late, or the ring no longer reaches back that far). Waits for a lock
    other than the GIL are ``LOCK`` pieces here (:func:`drawn` makes them ``gil``).

    ``edges_ran``: the thread was running at ``t0`` and ``t1`` (it read the clock there: a step's
    or a phase's ends), so a sample taken before ``t0`` says nothing of it: each end counts as a
    running sample instead. Otherwise a burn right after a sleep would be drawn as sleep up to
    the midpoint with the last sample of the sleep. With no sample inside such a span (the
    helper's period, stretched on a busy machine, outlasted it) nothing was seen of it: the
    picture is empty, and the caller draws the span from its exact totals."""
    if not smp or smp[-1][0] < t0 - 2 * period or t1 <= t0:
        return []
    if edges_ran:
        inner = [i for i, sample in enumerate(smp) if t0 < sample[0] < t1]
        return _edged_runs(smp, inner[0], inner[-1], t0, t1) if inner else []
    out: list[tuple[int, int, int]] = []
    start = t0
    for i, sample in enumerate(smp):
        t = sample[0]
        kind = kind_of(sample, smp[i - 1] if i else None)
        end = (t + smp[i + 1][0]) // 2 if i + 1 < len(smp) else t1
        end = min(end, t1)
        if end <= start:
            if i + 1 < len(smp):
                continue
            end = t1
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1], end)
        else:
            out.append((kind, start, end))
        start = end
    if out and out[-1][2] < t1:
        last = out[-1]
        out[-1] = (last[0], last[1], t1)
    return out


def _edged_runs(
    smp: list[tuple[int, int, int]], lo: int, hi: int, t0: int, t1: int
) -> list[tuple[int, int, int]]:
    """:func:`_runs` of the samples ``smp[lo:hi + 1]`` (all inside ``(t0, t1)``) between two
    running ends; a sample's run-queue test still looks at its real predecessor."""
    pts = [(t0, CPU)]
    pts += [(smp[i][0], kind_of(smp[i], smp[i - 1] if i else None)) for i in range(lo, hi + 1)]
    pts.append((t1, CPU))
    out: list[tuple[int, int, int]] = []
    start = t0
    for j, (t, kind) in enumerate(pts):
        end = (t + pts[j + 1][0]) // 2 if j + 1 < len(pts) else t1
        if end <= start:
            continue
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1], end)
        else:
            out.append((kind, start, end))
        start = end
    return out


def split_of(runs: list[tuple[int, int, int]], wall: int, cpu: int, runq: int) -> Split:
    """``wall`` ns of which ``cpu`` ran and ``runq`` waited for a core (both exact): the rest is
    shared between GIL / lock waits and other waits in the proportion the samples saw them, and
    the lock waits between the GIL and other locks likewise.

    A sample that found the thread running stands for a whole gap between samples, however
    briefly the thread ran: a thread waiting for the GIL wakes every switch interval, and on a
    busy machine each wake can be the one a sample catches. The sampled running time beyond the
    exact ``cpu + runq`` was really spent blocked, and it is given to the blocked states next to
    it (a wake between two GIL-wait samples is the GIL's), not spread over every kind: spread
    evenly, a sleep followed by a long GIL wait came out up to a tenth too long."""
    off = wall - cpu - runq
    seen = {GIL: 0, LOCK: 0, WAIT: 0}
    near = {GIL: 0, LOCK: 0, WAIT: 0}  # sampled running time, by the blocked kinds beside it
    ran = 0
    for i, (kind, s, e) in enumerate(runs):
        if kind in seen:
            seen[kind] += e - s
            continue
        ran += e - s
        beside = [runs[j][0] for j in (i - 1, i + 1) if 0 <= j < len(runs) and runs[j][0] in seen]
        for k in beside:
            near[k] += (e - s) // len(beside)
    extra, by = ran - cpu - runq, sum(near.values())
    if extra > 0 and by:
        for k in seen:
            seen[k] += extra * near[k] // by
    gil_seen, lock_seen, other_seen = seen[GIL], seen[LOCK], seen[WAIT]
    futex = gil_seen + lock_seen
    gil = off * futex // (futex + other_seen) if futex + other_seen else 0
    lock = gil * lock_seen // futex if futex else 0
    return Split(cpu, gil, runq, off - gil, drawn(runs), lock)


#: ``ThreadWatch._split`` (a slot's samples, :func:`_runs` with ``edges_ran``, :func:`split_of`)
#: in C where the step driver's module is built (``_watchc.c``): it runs on each traced sync body
#: that waited, as the body ends, holding the GIL the loop needs to learn the body ended (in
#: Python ~22 µs of it here). None: the Python functions above, which stay the reference.
split_c: Any = None
if _stepc is not None:
    _stepc.setup_watch(Split, CPU, WAIT, GIL, RUNQ, LOCK,
                       tuple(_KIND_OF_CLASS[c] for c in range(len(_KIND_OF_CLASS))),
                       sw.CLASS_BITS, sw.SLOTS_OFF, sw.SLOT_WORDS, sw.S_WIDX)  # fmt: skip
    split_c = _stepc.watch_split
