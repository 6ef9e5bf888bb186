"""``%lanepar whatif LANE=N1,N2,... [cores=N]``: the last run, replayed under other limits.

A sweep re-runs the work; a what-if only simulates it from the trace (``Trace.replay``), so it
answers "would 32 query slots help?" in milliseconds, before anyone pays for the real runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

if TYPE_CHECKING:
    from .magics import LaneparMagics

USAGE = "%lanepar whatif LANE=N1,N2,... [cores=N]"


def parse_whatif(arg: str) -> tuple[str, list[int], int | None]:
    """``"query=8,16 cores=4"`` → ``("query", [8, 16], 4)``, naming what is wrong."""
    parts = arg.split()
    cores: int | None = None
    spec: str | None = None
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq:
            raise UsageError(f"%lanepar whatif: {part!r} is not KEY=VALUE. usage: {USAGE}")
        try:
            numbers = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"%lanepar whatif: {value!r} is not a list of integers") from None
        if not numbers or min(numbers) < 1:
            raise UsageError(f"%lanepar whatif: {part!r} needs integers >= 1")
        if key == "cores":
            if len(numbers) != 1:
                raise UsageError("%lanepar whatif: cores takes one number")
            cores = numbers[0]
        elif spec is None:
            spec = part
        else:
            raise UsageError(f"%lanepar whatif: one lane at a time. usage: {USAGE}")
    if spec is None:
        raise UsageError(f"%lanepar whatif: a LANE=N1,N2,... is needed. usage: {USAGE}")
    lane, _, values = spec.partition("=")
    return lane, [int(v) for v in values.split(",") if v.strip()], cores


def run_whatif(magics: LaneparMagics, arg: str) -> list[dict[str, Any]]:
    """Replay the last ``%%lanepar`` run (or the session executor's last batch) per limit."""
    lane, limits, cores = parse_whatif(arg)
    trace = magics.last_trace
    if trace is None and magics.executor.last_result is not None:
        trace = magics.executor.last_result.trace
    if trace is None or not trace.tasks:
        raise UsageError("%lanepar whatif: no traced run yet; run a %%lanepar cell first")
    if lane not in trace.lanes and all(t.lane != lane for t in trace.tasks):
        raise UsageError(f"%lanepar whatif: the last run used no lane {lane!r}")
    current = trace.lanes.get(lane, {}).get("max_concurrency")
    baseline = trace.replay(cores=cores)
    rows = [
        {
            "limit": f"{current} (current)",
            "predicted_s": baseline["wall_s"],
            "cpu_util_avg": baseline["cpu_util_avg"],
        }
    ]
    for n in limits:
        r = trace.replay(lanes={lane: n}, cores=cores)
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
