"""Pure estimates behind the auto policy's model: how long a lane's list schedule takes, and how
much of a task's wall time was the GIL where a trace did not measure it."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from ..trace.model import TaskRecord

GIL_KINDS = frozenset({"async", "thread"})


def fmt_ns(ns: float) -> str:
    if ns < 1e6:
        return f"{ns / 1e3:.0f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def gil_waits(
    records: Sequence[tuple[TaskRecord, tuple[int, ...]]], kinds: Mapping[str, str]
) -> dict[int, int]:
    """Estimated GIL wait per task id: CPU that overlapping GIL-lane tasks ran inside its body
    (``records``: each with its ``TaskRecord.head``).

    Another task's CPU is assumed spread evenly over its body, so the share falling inside this
    body's interval is ``cpu * overlap / body``: an estimate, but it only has to tell a CPU-bound
    tool slowed by its neighbours from an I/O-bound one.
    """
    gil = sorted(
        (h[3], h[4], h[5], h[0])
        for r, h in records
        if kinds.get(r.lane) in GIL_KINDS and h[4] > h[3]
    )
    if len(gil) > 2000:  # quadratic in the worst case; large batches teach enough without it
        return {}
    out: dict[int, int] = {}
    for i, (s0, e0, _c0, id0) in enumerate(gil):
        wait = 0.0
        for j, (s1, e1, c1, _id1) in enumerate(gil):
            if j == i:
                continue
            if s1 >= e0:
                break
            overlap = min(e0, e1) - max(s0, s1)
            if overlap > 0:
                wait += c1 * overlap / (e1 - s1)
        out[id0] = int(wait)
    return out


def makespan(durations: Sequence[float], slots: int) -> float:
    """Greedy list schedule in submission order over ``slots`` workers, as a lane runs it."""
    free = [0.0] * min(slots, max(1, len(durations)))
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)
