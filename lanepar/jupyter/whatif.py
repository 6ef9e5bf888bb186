"""``%lanepar whatif LANE=N1,N2,... [cores=N]``: the last run, replayed under other limits.

A sweep re-runs the work; a what-if only simulates it from the trace (``lanepar.replay``), so it
answers "would 32 query slots help?" in milliseconds, before anyone pays for the real runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..analysis.replay import replay
from ..config import parse_lane_values

if TYPE_CHECKING:
    from ..trace.model import Trace

USAGE = "%lanepar whatif LANE=N1,N2,... [cores=N]"


def parse_whatif(arg: str) -> tuple[str, list[int], int | None]:
    """``"query=8,16 cores=4"`` → ``("query", [8, 16], 4)``, naming what is wrong."""
    try:
        values = parse_lane_values(arg)
    except ValueError as exc:
        raise UsageError(f"%lanepar whatif: {exc}. usage: {USAGE}") from None
    cores_list = values.pop("cores", None)
    if cores_list is not None and len(cores_list) != 1:
        raise UsageError("%lanepar whatif: cores takes one number")
    if len(values) != 1:
        what = "a LANE=N1,N2,... is needed" if not values else "one lane at a time"
        raise UsageError(f"%lanepar whatif: {what}. usage: {USAGE}")
    ((lane, limits),) = values.items()
    return lane, limits, cores_list[0] if cores_list else None


def run_whatif(trace: Trace | None, arg: str) -> list[dict[str, Any]]:
    """Replay ``trace`` (the last ``%%lanepar`` run) once per limit and print the table."""
    lane, limits, cores = parse_whatif(arg)
    if trace is None or not trace.tasks:
        raise UsageError("%lanepar whatif: no traced run yet; run a %%lanepar cell first")
    if lane not in trace.lanes and all(t.lane != lane for t in trace.tasks):
        raise UsageError(f"%lanepar whatif: the last run used no lane {lane!r}")
    current = trace.lanes.get(lane, {}).get("max_concurrency")
    baseline = replay(trace, cores=cores)
    rows = [
        {
            "limit": f"{current} (current)",
            "predicted_s": baseline["wall_s"],
            "cpu_util_avg": baseline["cpu_util_avg"],
        }
    ]
    for n in limits:
        r = replay(trace, lanes={lane: n}, cores=cores)
        rows.append({"limit": n, "predicted_s": r["wall_s"], "cpu_util_avg": r["cpu_util_avg"]})
    recorded = trace.wall_ns / 1e9
    where = f", {cores} cores" if cores else ""
    print(f"what-if for lane {lane!r}{where}: recorded {recorded:.3f} s (replayed from the trace)")
    print(f"{lane + ' limit':>16} {'predicted s':>12} {'vs current':>11} {'CPU util':>9}")
    base = rows[0]["predicted_s"] or 1e-12
    for row in rows:
        print(
            f"{row['limit']!s:>16} {row['predicted_s']:>12.4f} "
            f"{base / max(row['predicted_s'], 1e-12):>10.2f}x {row['cpu_util_avg']:>9.0%}"
        )
    return rows
