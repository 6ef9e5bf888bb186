"""Amdahl fit: recovers known parameters from synthetic timings and reproduces the curve."""

from __future__ import annotations

import json
import math
import random

import pytest

from lanepar.analysis.amdahl import AmdahlFit, fit_amdahl


def _curve(t1: float, p: float, o: float, ns: list[int]) -> list[float]:
    return [t1 * ((1 - p) + p / n) + o * (n - 1) for n in ns]


@pytest.mark.parametrize(("p", "o"), [(0.9, 0.0), (0.95, 0.002), (0.6, 0.01), (0.99, 0.0005)])
def test_recovers_parameters_exactly_without_noise(p: float, o: float) -> None:
    ns = [1, 2, 3, 4, 6, 8, 12, 16]
    fit = fit_amdahl(ns, _curve(1.5, p, o, ns))
    assert fit.parallel_fraction == pytest.approx(p, abs=1e-9)
    assert fit.overhead_s == pytest.approx(o, abs=1e-9)
    assert fit.t1_s == pytest.approx(1.5, rel=1e-9)
    assert fit.max_rel_error < 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_recovers_p_within_002_under_3pct_noise(seed: int) -> None:
    rng = random.Random(seed)
    ns = [1, 2, 3, 4, 6, 8, 12, 16] * 3  # repeats, as a benchmark sweep would record them
    true = _curve(0.8, 0.85, 0.003, ns)
    noisy = [t * (1 + rng.uniform(-0.03, 0.03)) for t in true]
    fit = fit_amdahl(ns, noisy)
    assert abs(fit.parallel_fraction - 0.85) < 0.02
    for n in range(1, 17):  # the fitted curve reproduces the true one within 10%
        exact = _curve(0.8, 0.85, 0.003, [n])[0]
        assert abs(fit.predict(n) - exact) / exact < 0.10
    assert fit.max_rel_error < 0.10


def test_parameters_stay_physical_when_data_speeds_down() -> None:
    # Timings that grow with n (pure overhead): P must not go negative, overhead absorbs it.
    ns = [1, 2, 4, 8]
    fit = fit_amdahl(ns, [1.0, 1.1, 1.3, 1.7])
    assert 0.0 <= fit.parallel_fraction <= 1.0
    assert fit.overhead_s > 0
    assert fit.max_rel_error < 0.05
    # Superlinear data would want P > 1; the constraint caps it at 1.
    fit2 = fit_amdahl([1, 2, 4], [1.0, 0.4, 0.15])
    assert 0.0 <= fit2.parallel_fraction <= 1.0


def test_two_distinct_points_fit_amdahl_only() -> None:
    fit = fit_amdahl([1, 4, 1, 4], [2.0, 0.8, 2.0, 0.8])
    assert fit.overhead_s == 0.0
    assert fit.parallel_fraction == pytest.approx(0.8)
    assert fit.predict(4) == pytest.approx(0.8)


def test_derived_quantities_and_json() -> None:
    fit = fit_amdahl([1, 2, 4, 8, 16], _curve(1.0, 0.9, 0.001, [1, 2, 4, 8, 16]))
    assert fit.max_speedup == pytest.approx(10.0, rel=1e-6)
    assert fit.best_n == pytest.approx(math.sqrt(0.9 / 0.001), rel=1e-6)
    assert fit.speedup(1) == pytest.approx(1.0)
    assert fit.speedup(8) == pytest.approx(1.0 / fit.predict(8), rel=1e-9)
    d = json.loads(json.dumps(fit.to_dict()))
    assert d["parallel_fraction"] == pytest.approx(0.9)
    assert AmdahlFit(1.0, 0.0, 1.0, 0.0, 0.0).to_dict()["max_speedup"] is None


@pytest.mark.parametrize(
    ("ns", "ts", "msg"),
    [
        ([1, 1], [1.0, 1.0], "distinct"),
        ([1, 2], [1.0], "ns but"),
        ([0, 2], [1.0, 1.0], "n=0"),
        ([1, 2], [1.0, -1.0], "positive"),
        ([1, 2], [1.0, math.nan], "positive"),
    ],
)
def test_bad_input_names_the_problem(ns: list[int], ts: list[float], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        fit_amdahl(ns, ts)
    with pytest.raises(ValueError, match="n="):
        AmdahlFit(0.5, 0.0, 1.0, 0.0, 0.0).predict(0)
