"""An adaptive lane against a real loopback server with finite capacity."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import adaptive


def test_adaptive_lane_finds_the_capacity_of_a_real_server() -> None:
    """Issue figures: >= 90% of the best fixed limit's throughput at <= 1.5x its p99.

    Latencies of real sockets on a shared 2-core machine are noisy: a second attempt is allowed,
    and both attempts are shown when both miss."""
    attempts = []
    for _ in range(2):
        r = adaptive.compare(tasks=1500, fixed=(4, 8, 16))
        attempts.append(r)
        if r["throughput_ratio"] >= 0.9 and r["p99_ratio"] <= 1.5:
            break
    else:
        raise AssertionError([(a["throughput_ratio"], a["p99_ratio"]) for a in attempts])
    assert r["best_fixed"] == 8  # the sweep itself sees the server's capacity
    assert r["auto"]["errors"] == 0
    assert r["auto"]["limit_changes"] > 0  # the limit moved, and each move is in the trace
    assert 4 <= r["auto"]["final_limit"] <= 16
