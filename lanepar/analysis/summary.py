"""``summarize(trace)``: the numbers a user reads first after a batch.

A pure function of the trace (no executor, no clock, no machine probing) so that a trace loaded
from a file written on another machine summarises exactly as it did where it was recorded.
Every key is present for an empty trace (zeros), because a dashboard must not special-case
"nothing happened yet".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..trace.model import OUTCOMES, TaskRecord, Trace
from .localcpu import window_weights
from .stats import mean, peak_overlap, percentile, union_length

_S = 1e9
_US = 1e3


def summarize(trace: Trace) -> dict[str, Any]:
    """Totals, speedup, latency percentiles, CPU use and a per-lane breakdown of ``trace``.

    ``speedup`` is the one speedup every view prints: an estimate of what running the tasks one
    after another would take, over the batch's wall time. A task run alone would still spend its
    CPU time and its I/O wait, but not its GIL or run-queue waits, its queueing or its dispatch
    (those come from running beside other tasks), so the estimate is the sum of ``cpu_ns`` and
    ``wait_ns`` over all tasks. Measured against a real sequential run of the same batch it is
    within a few percent when the tools' own work does not change under load.

    ``ideal_speedup`` is what the schedule allowed: 1 for a sequential run (each task's slot
    freed only after its predecessor finished), otherwise the sum over the lanes used of
    ``min(tasks in the lane, its limit)``, the limit being the highest the lane had during the
    run (its ``"limit"`` events, its observed peak).
    ``peak_active`` (per lane) is the most task bodies running at once, from the same records
    the timeline draws. Percentiles use linear interpolation (see
    :func:`lanepar.analysis.stats.percentile`); dispatch percentiles count only tasks that
    started (a dropped task has no dispatch).
    """
    tasks = trace.tasks
    fields = [t.fields() for t in tasks]  # id, sub, free, start, fin, cpu, wait, slot

    outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
    for t in tasks:
        outcomes[t.outcome] = outcomes.get(t.outcome, 0) + 1

    wall_ns = trace.end_ns - trace.start_ns
    if wall_ns <= 0 and fields:
        wall_ns = max(f[4] for f in fields) - min(f[1] for f in fields)
    wall_ns = max(wall_ns, 0)
    wall_s = wall_ns / _S

    # A task that never got a slot (slot -1) has no body, whatever its timestamps say.
    task_time_ns = sum(max(f[4] - f[3], 0) for f in fields if f[7] >= 0)
    cpu_ns = sum(f[5] for f in fields)
    wait_ns = sum(f[6] for f in fields)
    gil_ns = sum(t.gil_ns for t in tasks)
    lock_ns = sum(t.lock_ns for t in tasks)  # the part of gil_ns that was not the GIL
    runq_ns = sum(t.runq_ns for t in tasks)
    # cpu + wait never exceed the body they split; a record saying otherwise (a hand-made or
    # hostile one) must not make a run look faster than its bodies could have been.
    sequential_ns = sum(min(f[5] + f[6], max(f[4] - f[3], 0)) for f in fields if f[7] >= 0)
    speedup = sequential_ns / wall_ns if wall_ns > 0 else 0.0
    blocked = [float(e.get("duration_ms", 0.0)) for e in trace.events
               if e.get("type") == "loop_blocked"]  # fmt: skip

    per_lane = _per_lane(tasks, trace.lanes)
    concurrency = sum(
        info["max_concurrency"] if info["max_concurrency"] is not None else info["peak_active"]
        for info in per_lane.values()
    )
    sequential = ran_sequentially(fields)
    # A limit that moved during the run (an adaptive lane, set_concurrency) allowed its highest
    # value at some point: the ideal must not fall below what the lane really ran at once.
    moved: dict[str, int] = {}
    for e in trace.events:
        if e.get("type") == "limit" and isinstance(e.get("limit"), int):
            lane = str(e.get("lane"))
            moved[lane] = max(moved.get(lane, 0), int(e["limit"]))
    if sequential:
        ideal = 1.0 if tasks else 0.0
    else:
        ideal = float(sum(
            min(info["tasks"], max(_limit(info), moved.get(name, 0), info["peak_active"]))
            for name, info in per_lane.items()
        ))  # fmt: skip
    efficiency = speedup / ideal if ideal > 0 else 0.0

    started = [f for f in fields if f[7] >= 0]
    util = _cpu_use(trace, cpu_ns / _S, wall_s)

    return {
        "tasks": len(tasks),
        "errors": len(tasks) - outcomes["ok"],
        "outcomes": outcomes,
        "wall_s": wall_s,
        "task_time_s": task_time_ns / _S,
        "sequential_estimate_s": sequential_ns / _S,
        "speedup": speedup,
        "ideal_speedup": ideal,
        "efficiency": efficiency,
        "concurrency": concurrency,
        "ran_sequentially": sequential,
        "cpu_s": cpu_ns / _S,
        "wait_s": wait_ns / _S,
        "gil_wait_s": gil_ns / _S,
        "lock_wait_s": lock_ns / _S,
        "runq_wait_s": runq_ns / _S,
        "loop_blocked_count": len(blocked),
        "loop_blocked_max_ms": max(blocked, default=0.0),
        "queued_p50_us": percentile((f[2] - f[1] for f in fields), 50) / _US,
        "queued_p99_us": percentile((f[2] - f[1] for f in fields), 99) / _US,
        "dispatch_p50_us": percentile((f[3] - f[2] for f in started), 50) / _US,
        "dispatch_p99_us": percentile((f[3] - f[2] for f in started), 99) / _US,
        "wall_p50_ms": percentile((f[4] - f[3] for f in started), 50) / 1e6,
        "wall_p99_ms": percentile((f[4] - f[3] for f in started), 99) / 1e6,
        **util,
        "per_lane": per_lane,
        "dropped": trace.dropped,
        "decisions": [dict(e) for e in trace.events if e.get("type") == "decision"],
    }  # fmt: skip


def _limit(info: Mapping[str, Any]) -> int:
    limit = info["max_concurrency"]
    return int(limit) if limit is not None else int(info["peak_active"])


def ran_sequentially(fields: Sequence[Sequence[int]]) -> bool:
    """True when every task's slot freed only once its predecessor (in submission order) had
    finished: a sequential run, whose ideal is one task at a time whatever the lane limits.

    Read from the records rather than from a mode flag so that a trace loaded from a file, or a
    cell's trace holding several sequential batches, answers the same. One task alone is not a
    sequence. A microsecond of slack absorbs clock conversion of child-process times.
    """
    ran = sorted((f for f in fields if f[7] >= 0), key=lambda f: f[0])
    if len(ran) < 2:
        return False
    return all(b[2] + 1_000 >= a[4] for a, b in zip(ran, ran[1:]))


def _per_lane(
    tasks: list[TaskRecord], lanes: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """One row per lane that ran tasks, in ``trace.lanes`` order then first appearance."""
    by_lane: dict[str, list[TaskRecord]] = {}
    for t in tasks:
        by_lane.setdefault(t.lane, []).append(t)
    order = [n for n in lanes if n in by_lane] + [n for n in by_lane if n not in lanes]
    out: dict[str, dict[str, Any]] = {}
    for name in order:
        recs = by_lane[name]
        fs = [t.fields() for t in recs]
        bodies = [(f[3], f[4]) for f in fs if f[7] >= 0]
        limit = lanes.get(name, {}).get("max_concurrency")
        # bool is an int; an "auto" lane without a live number falls back to the observed peak.
        known = isinstance(limit, int) and not isinstance(limit, bool) and limit > 0
        out[name] = {
            "tasks": len(recs),
            "errors": sum(1 for t in recs if t.outcome != "ok"),
            "peak_active": peak_overlap(bodies),
            "max_concurrency": limit if known else None,
            "busy_s": union_length(bodies) / _S,
            "task_time_s": sum(max(e - s, 0) for s, e in bodies) / _S,
            "cpu_s": sum(f[5] for f in fs) / _S,
            "wait_s": sum(f[6] for f in fs) / _S,
            "queued_p50_us": percentile((f[2] - f[1] for f in fs), 50) / _US,
            "dispatch_p50_us": percentile((f[3] - f[2] for f in fs if f[7] >= 0), 50) / _US,
            "dispatch_p99_us": percentile((f[3] - f[2] for f in fs if f[7] >= 0), 99) / _US,
        }
    return out


def _cpu_use(trace: Trace, cpu_s: float, wall_s: float) -> dict[str, Any]:
    """Machine and process CPU over the trace window.

    A sample holds the utilisation since the sample before it, so each counts for the part of
    its interval inside the window (the executor takes one at each batch's start and end, so
    even a 30 ms batch is covered by the kernel's own counters). Without samples it is estimated
    from the tasks' own CPU time, which undercounts work outside task bodies but is the honest
    best guess for a trace recorded without the sampler.
    """
    weighted = window_weights(trace)
    if weighted:
        total = sum(w for w, _ in weighted)
        width = max(len(smp.cores) for _, smp in weighted)
        per_core = [
            sum(w * smp.cores[i] for w, smp in weighted if i < len(smp.cores)) / total
            for i in range(width)
        ]
        avg = sum(w * mean(list(smp.cores)) for w, smp in weighted) / total
        return {
            "cpu_util_source": "samples",
            "cpu_util_avg": _clamp01(avg),
            "cpu_util_per_core": [_clamp01(c) for c in per_core],
            "proc_cpu_avg": sum(w * smp.proc_cpu for w, smp in weighted) / total,
        }
    n = trace.n_cores
    est = cpu_s / (wall_s * n) if wall_s > 0 and n > 0 else 0.0
    return {
        "cpu_util_source": "estimate" if wall_s > 0 and n > 0 else "none",
        "cpu_util_avg": _clamp01(est),
        "cpu_util_per_core": [],
        "proc_cpu_avg": cpu_s / wall_s if wall_s > 0 else 0.0,
    }


def _clamp01(x: float) -> float:
    return 0.0 if x != x else min(max(x, 0.0), 1.0)  # x != x: NaN from a hostile sample


def json_safe(x: Any) -> Any:
    """``x`` with tuples as lists and NaN / infinity as None: what every JSON reader (a browser's
    ``JSON.parse`` included) accepts, for summaries embedded in files and notebook outputs."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)
