"""The scalability study runs end to end on real tools and fits its own curve."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lanepar.analysis.amdahl import fit_amdahl
from lanepar.bench import scalability, study_calls


def test_study_calls_are_deterministic_real_tools() -> None:
    a = study_calls(9, "127.0.0.1", 1, "/r")
    b = study_calls(9, "127.0.0.1", 1, "/r")
    assert [repr(c) for c in a] == [repr(c) for c in b]
    assert {c.tool_name for c in a} == {"fetch", "read", "grep"}


def test_small_study_measures_and_fits() -> None:
    """The study's figures are consistent with its own measurements: every derived number is
    recomputed here from the raw ones. How fast the machine makes them is the benchmark's
    business (BENCHMARKS.md), not a test's."""
    r = scalability(ns=(1, 4, 8), limits=(1, 2, 8), table_limit=8, trials=2, delay_s=0.03)
    assert [row["tasks"] for row in r["rows"]] == [1, 4, 8]
    for row in r["rows"]:
        for key in ("sequential_s", "parallel_s"):
            t = row[key]
            assert 0 < t["min"] <= t["median"] <= t["max"]
        assert row["ideal"] == min(row["tasks"], 8)
        assert row["speedup"] == pytest.approx(
            row["sequential_s"]["median"] / row["parallel_s"]["median"])  # fmt: skip
        assert row["efficiency"] == pytest.approx(row["speedup"] / row["ideal"])
    # a socket call lasts at least the server's delay, whatever the machine's load, and the
    # sequential run makes them one after another
    for row in r["rows"]:
        fetches = sum(c.tool_name == "fetch" for c in study_calls(row["tasks"], "h", 1, "/r"))
        assert row["sequential_s"]["min"] >= fetches * 0.03 * 0.99
    assert [s["limit"] for s in r["sweep"]] == [1, 2, 8] and r["sweep_tasks"] == 8
    fit = r["fit"]
    assert 0.0 <= fit["parallel_fraction"] <= 1.0
    sweep = r["sweep"]
    refit = fit_amdahl([s["limit"] for s in sweep], [s["wall_s"]["median"] for s in sweep])
    assert refit.to_dict() == pytest.approx(fit)
    errors = []
    for s in r["sweep"]:
        assert s["predicted_s"] == pytest.approx(refit.predict(s["limit"]))
        assert s["error"] == pytest.approx(s["predicted_s"] / s["wall_s"]["median"] - 1)
        errors.append(abs(s["error"]))
    assert fit["max_rel_error"] == pytest.approx(max(errors))
    json.dumps(r)  # everything is JSON-able


def test_cli_rejects_bad_lists() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lanepar.cli", "bench", "scalability", "--ns", "1,x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "not a comma-separated list" in out.stderr
