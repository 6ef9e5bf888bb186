"""Log-spaced histograms of nanosecond values, for live percentiles at a fixed cost per value.

Sorting every latency ten times a second would cost more than the tasks being measured, so the
live figures count values into 32 bins per octave, found with integer bit tricks instead of
``math.log``; a bin's geometric middle stands for its values (within 1.6 %).
"""

from __future__ import annotations

import itertools
import math

_SUB = 5  # 2**_SUB bins per octave: edges 2-3 % apart, a bin's middle within 1.6 % of its values
_NBINS = 64 << _SUB


def bin_of(v: int) -> int:
    """Log-spaced bin of a non-negative integer: octave from ``bit_length``, then the next
    ``_SUB`` bits below the leading one."""
    bl = v.bit_length()
    if bl <= _SUB + 1:
        return v  # small values are their own bin (exact)
    return ((bl - _SUB) << _SUB) | ((v >> (bl - _SUB - 1)) & ((1 << _SUB) - 1))


def _bin_middle(b: int) -> float:
    if b < 2 << _SUB:
        return float(b)
    octave, frac = b >> _SUB, b & ((1 << _SUB) - 1)
    lo = (2.0 ** (octave + _SUB - 1)) * (1 + frac / (1 << _SUB))
    hi = (2.0 ** (octave + _SUB - 1)) * (1 + (frac + 1) / (1 << _SUB))
    return math.sqrt(lo * hi)


class LogHistogram:
    """Counts of non-negative nanosecond values in log-spaced bins, for cheap live percentiles."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: list[float] = [0.0] * _NBINS  # float: sampled adds carry a weight

    def add(self, value_ns: int) -> None:
        self.counts[bin_of(value_ns) if value_ns > 0 else 0] += 1

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) in ns: the geometric middle of its bin."""
        total = sum(self.counts)
        if total <= 0:
            return 0.0
        rank = max(0.0, q / 100.0 * (total - 1))  # (below 0 only for weights under one)
        seen = 0.0
        # only the bins that hold values (skipped in C): the loop over all 2 048 cost a live
        # tick ~50 µs a percentile, several a tick
        for b, c in itertools.compress(enumerate(self.counts), self.counts):
            seen += c
            if seen > rank:
                return _bin_middle(b)
        return 0.0  # pragma: no cover - the loop always reaches rank < n
