"""An adaptive lane against a real loopback server with finite capacity."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import adaptive


def test_adaptive_lane_finds_the_capacity_of_a_real_server() -> None:
    r = adaptive.compare(tasks=1500, fixed=(4, 8, 16))
    assert r["best_fixed"] == 8  # the sweep itself sees the server's capacity
    assert r["throughput_ratio"] >= 0.9, r
    assert r["p99_ratio"] <= 1.5, r
    assert r["auto"]["errors"] == 0
    assert r["auto"]["limit_changes"] > 0  # the limit moved, and each move is in the trace
    assert 4 <= r["auto"]["final_limit"] <= 16
