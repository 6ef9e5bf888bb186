"""Fit Amdahl's law, plus a dispatch-overhead term, to measured wall times at several concurrencies.

The model, for a fixed amount of work run with ``n`` workers::

    T(n) = T1 * ((1 - P) + P / n) + o * (n - 1)

``T1`` is the one-worker time, ``P`` the parallel fraction (Amdahl) and ``o`` the seconds each
extra worker adds because the dispatcher hands work out one worker at a time (thread wake-ups,
pickling to a process, scheduler hops). Without ``o`` a fit to real lanepar data overstates the
serial fraction — the curve bends back up at high ``n``, which pure Amdahl cannot draw — and it
could never say where adding workers stops paying; with it, the best ``n`` is ``sqrt(T1*P/o)``.

The model is linear in ``a = T1*(1-P)``, ``b = T1*P`` and ``o``, so the fit is an exact small
least-squares problem (no numpy: it is not a dependency). Every parameter must be non-negative
for ``P`` to stay in [0, 1]; with three unknowns the constrained optimum is found exactly by
solving the problem on each subset of free parameters and keeping the best feasible one.
Residuals are relative (weighted by ``1/T``) because timings span orders of magnitude and a fit
that is good at n=1 but 50% off at n=16 is useless for choosing a limit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class AmdahlFit:
    """Fitted parameters and how well they reproduce the measurements."""

    parallel_fraction: float
    overhead_s: float
    t1_s: float
    rmse: float  # seconds, over the measured points
    max_rel_error: float  # worst |predicted - measured| / measured

    def predict(self, n: float) -> float:
        """Predicted wall time (seconds) at ``n`` workers."""
        if n < 1:
            raise ValueError(f"predict: n={n!r} must be >= 1")
        p = self.parallel_fraction
        return self.t1_s * ((1.0 - p) + p / n) + self.overhead_s * (n - 1)

    def speedup(self, n: float) -> float:
        """Predicted ``T(1) / T(n)``."""
        t = self.predict(n)
        return self.predict(1) / t if t > 0 else math.inf

    @property
    def max_speedup(self) -> float:
        """Amdahl's ceiling ``1 / (1 - P)`` (ignoring overhead): infinite when P == 1."""
        serial = 1.0 - self.parallel_fraction
        return 1.0 / serial if serial > 0 else math.inf

    @property
    def best_n(self) -> float:
        """The real-valued ``n`` minimising predicted time: ``sqrt(T1*P/o)`` (inf if o == 0)."""
        if self.overhead_s <= 0:
            return math.inf
        return max(1.0, math.sqrt(self.t1_s * self.parallel_fraction / self.overhead_s))

    def to_dict(self) -> dict[str, Any]:
        def finite(x: float) -> float | None:
            return x if math.isfinite(x) else None  # JSON has no infinity

        return {
            "model": "T(n) = t1*((1-P) + P/n) + overhead*(n-1)",
            "parallel_fraction": self.parallel_fraction,
            "overhead_s": self.overhead_s,
            "t1_s": self.t1_s,
            "rmse": self.rmse,
            "max_rel_error": self.max_rel_error,
            "max_speedup": finite(self.max_speedup),
            "best_n": finite(self.best_n),
        }


def fit_amdahl(ns: Sequence[int], times_s: Sequence[float]) -> AmdahlFit:
    """Fit ``T(n)`` to wall times measured at worker counts ``ns`` (repeats allowed).

    Needs at least two distinct ``n``; with exactly two the overhead term is fixed at zero
    because three parameters cannot be identified from two points.
    """
    if len(ns) != len(times_s):
        raise ValueError(f"fit_amdahl: {len(ns)} ns but {len(times_s)} times")
    for n in ns:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"fit_amdahl: n={n!r} must be an integer >= 1")
    for t in times_s:
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise ValueError(f"fit_amdahl: time {t!r} must be a positive finite number")
    distinct = len(set(ns))
    if distinct < 2:
        raise ValueError("fit_amdahl: need measurements at >= 2 distinct worker counts")

    # Rows of the weighted design matrix: basis (1, 1/n, n-1) divided by the measured time.
    rows = [(1.0 / t, 1.0 / (n * t), (n - 1) / t) for n, t in zip(ns, times_s, strict=True)]
    allowed = (0, 1, 2) if distinct >= 3 else (0, 1)
    best: tuple[float, list[float]] | None = None
    for size in range(len(allowed), 0, -1):
        for free in itertools.combinations(allowed, size):
            coef = _solve_subset(rows, free)
            if coef is None or min(coef) < 0:
                continue
            sse = sum(
                (1.0 - sum(c * r[j] for c, j in zip(coef, free, strict=True))) ** 2 for r in rows
            )
            if best is None or sse < best[0] - 1e-15:
                full = [0.0, 0.0, 0.0]
                for c, j in zip(coef, free, strict=True):
                    full[j] = c
                best = (sse, full)
    assert best is not None  # the one-parameter fits of a (or b) always give a positive value
    a, b, o = best[1]
    t1 = a + b
    p = b / t1 if t1 > 0 else 0.0
    shell = AmdahlFit(p, o, t1, 0.0, 0.0)
    errs = [shell.predict(n) - t for n, t in zip(ns, times_s, strict=True)]
    rmse = math.sqrt(sum(e * e for e in errs) / len(errs))
    max_rel = max(abs(e) / t for e, t in zip(errs, times_s, strict=True))
    return AmdahlFit(p, o, t1, rmse, max_rel)


def _solve_subset(
    rows: Sequence[tuple[float, float, float]], free: tuple[int, ...]
) -> list[float] | None:
    """Least squares of ``sum_j coef_j * row[j] ≈ 1`` over the columns in ``free``.

    Normal equations with Gaussian elimination and partial pivoting: at most 3x3, and the
    columns are scaled by the measurements, so conditioning is fine; a singular system (a
    column that is identically zero) returns None.
    """
    k = len(free)
    m = [[sum(r[i] * r[j] for r in rows) for j in free] + [sum(r[i] for r in rows)] for i in free]
    for col in range(k):
        piv = max(range(col, k), key=lambda i: abs(m[i][col]))
        scale = max(abs(m[i][col]) for i in range(k)) or 1.0
        if abs(m[piv][col]) <= 1e-12 * scale:
            return None
        m[col], m[piv] = m[piv], m[col]
        for i in range(k):
            if i != col:
                f = m[i][col] / m[col][col]
                m[i] = [x - f * y for x, y in zip(m[i], m[col], strict=True)]
    return [m[i][k] / m[i][i] for i in range(k)]
