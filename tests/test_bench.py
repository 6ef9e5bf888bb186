"""The scalability study runs end to end on real tools and fits its own curve."""

from __future__ import annotations

import json
import subprocess
import sys

from lanepar.bench import scalability, study_calls


def test_study_calls_are_deterministic_real_tools() -> None:
    a = study_calls(9, "127.0.0.1", 1, "/r")
    b = study_calls(9, "127.0.0.1", 1, "/r")
    assert [repr(c) for c in a] == [repr(c) for c in b]
    assert {c.tool_name for c in a} == {"fetch", "read", "grep"}


def test_small_study_measures_and_fits() -> None:
    r = scalability(ns=(1, 4, 8), limits=(1, 2, 8), table_limit=8, trials=2, delay_s=0.03)
    rows = {row["tasks"]: row for row in r["rows"]}
    assert rows[1]["speedup"] < 1.3  # one tool cannot go faster in parallel
    assert rows[8]["speedup"] > 3  # eight 30 ms socket calls overlap
    for row in r["rows"]:
        s = row["sequential_s"]
        assert s["min"] <= s["median"] <= s["max"]
    fit = r["fit"]
    assert 0.5 < fit["parallel_fraction"] <= 1.0
    assert fit["max_rel_error"] < 0.25
    json.dumps(r)  # everything is JSON-able


def test_cli_rejects_bad_lists() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lanepar.cli", "bench", "scalability", "--ns", "1,x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "not a comma-separated list" in out.stderr
