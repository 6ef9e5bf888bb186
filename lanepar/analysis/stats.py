"""Small numeric helpers over task intervals: percentiles, peak overlap, union length.

They take plain numbers (not records) so the summary, the replay and the exporters can share them
and so each can be tested against a brute-force answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Interval = tuple[int, int]


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks.

    This is numpy's default ("linear", Hyndman & Fan type 7): sort the n values, take the rank
    ``h = (n - 1) * q / 100`` and interpolate between ``x[floor(h)]`` and ``x[ceil(h)]``. It is
    chosen because it is what users compare against (``numpy.percentile``, pandas ``quantile``)
    and it is defined for one value. An empty input gives 0.0 because summaries of empty traces
    must be numbers, never exceptions.
    """
    xs = sorted(values)
    if not xs:
        return 0.0
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise ValueError(f"percentile: q={q!r} must be within 0..100")
    h = (len(xs) - 1) * (q / 100.0)
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    frac = h - lo
    return float(xs[lo] + (xs[hi] - xs[lo]) * frac)


def peak_overlap(intervals: Iterable[Interval]) -> int:
    """The largest number of ``[start, end)`` intervals alive at one instant (a sweep).

    Touching intervals (one ends where the next starts) do not overlap, because a worker slot
    that finishes one task and starts the next at the same nanosecond ran one task at a time.
    Empty or reversed intervals are ignored: a task that never started occupied no slot.
    """
    points: list[tuple[int, int]] = []
    for start, end in intervals:
        if end > start:
            points.append((start, 1))
            points.append((end, -1))
    points.sort()  # at equal times -1 sorts before +1: ends are processed first
    peak = cur = 0
    for _t, delta in points:
        cur += delta
        peak = max(peak, cur)
    return peak


def merged(intervals: Iterable[Interval]) -> list[tuple[int, int]]:
    """The intervals' union as sorted, disjoint spans (empty ones dropped)."""
    out: list[tuple[int, int]] = []
    for s, e in sorted((s, e) for s, e in intervals if e > s):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def union_length(intervals: Iterable[Interval]) -> int:
    """Total length covered by at least one interval: the time a lane had anything running."""
    return sum(e - s for s, e in merged(intervals))


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean, 0.0 for no values (summaries never raise on empty traces)."""
    return float(sum(values) / len(values)) if values else 0.0
