"""Remote clocks: how a child process's or a Dask worker's ``perf_counter_ns`` maps onto ours.

One place for the arithmetic so the process lane and the Dask lane cannot drift apart: an offset
estimated from pings (offset = remote clock − midpoint of the round trip, uncertain by half the
trip), and a causality clamp so a converted task never starts before it was sent nor ends after
its answer arrived.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class WorkerClock:
    """How to read one worker's ``perf_counter_ns`` on the parent's clock: ``t - offset_ns``."""

    offset_ns: int
    uncertainty_ns: int
    rtt_ns: int
    method: str  # "shared" (same host, same monotonic clock), "ping", or "unknown"
    measured_ns: int


def estimate_offset(rounds: Iterable[tuple[int, int, int]]) -> tuple[int, int, int]:
    """(offset, uncertainty, rtt) from ``(parent_t0, remote_t, parent_t1)`` pings.

    The remote side read its clock somewhere inside [t0, t1]; assuming the midpoint errs by at
    most half the round trip, so the round with the shortest trip gives the tightest bound.
    """
    best: tuple[int, int, int] | None = None
    for t0, wt, t1 in rounds:
        rtt = max(0, t1 - t0)
        if best is None or rtt < best[2]:
            best = (wt - (t0 + t1) // 2, (rtt + 1) // 2, rtt)
    if best is None:
        raise ValueError("estimate_offset: no rounds")
    return best


def causal_offset(offset: int, t0: int, t1: int, sent_ns: int, recv_ns: int) -> int:
    """Clamp ``offset`` so remote times [t0, t1] land inside the parent's [sent, recv] window.

    Any offset outside [t1 - recv, t0 - sent] would have the task start before it was submitted
    or end after its result arrived; when the window is too short for that (clock drift), the
    estimate stands as it is.
    """
    lo, hi = t1 - recv_ns, t0 - sent_ns
    if lo > hi:
        return offset
    return min(max(offset, lo), hi)
