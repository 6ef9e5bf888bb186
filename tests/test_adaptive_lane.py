"""An adaptive lane against a real loopback server with finite capacity."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import adaptive


def test_adaptive_lane_finds_the_capacity_of_a_real_server() -> None:
    """The limiter finds a real server's capacity from latency alone.

    The issue's figures (>= 90% of the best fixed limit's throughput at <= 1.5x its p99) are a
    performance claim and live in benchmarks/adaptive.py and BENCHMARKS.md; this test pins the
    behaviour with margins a busy 2-core machine cannot break, and allows a second attempt."""
    attempts = []
    for _ in range(2):
        r = adaptive.compare(tasks=1500, fixed=(4, 8, 16))
        attempts.append(r)
        if r["throughput_ratio"] >= 0.8 and r["p99_ratio"] <= 2.0:
            break
    else:
        raise AssertionError([(a["throughput_ratio"], a["p99_ratio"]) for a in attempts])
    # The sweep itself sees the server's capacity: below it throughput scales with the limit
    # (8 vs 16, both at or past capacity, are within a busy machine's noise of each other).
    fixed = {row["limit"]: row["throughput"] for row in r["fixed"]}
    assert r["best_fixed"] in (8, 16) and fixed[8] >= 1.4 * fixed[4]
    assert r["auto"]["errors"] == 0
    assert r["auto"]["limit_changes"] > 0  # the limit moved, and each move is in the trace
    assert 4 <= r["auto"]["final_limit"] <= 16
