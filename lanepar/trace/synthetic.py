"""Synthetic traces of a known shape, for what must draw or replay a big trace without running
one: the 50k-task timeline test and its redraw benchmark use the same trace, so the benchmark
times what the test checks."""

from __future__ import annotations

from .model import KIND_CODE, TaskRecord, Trace


def busy_timeline(n: int) -> Trace:
    """``n`` tasks on 4 lanes x 16 slots, back to back, each with a queued, dispatch, cpu and
    wait segment; deterministic (durations vary by index), one task in 997 an error."""
    q, d, c, w = (KIND_CODE[k] for k in ("queued", "dispatch", "cpu", "wait"))
    lanes = ["control", "query", "execute", "generate"]
    tasks = []
    ends = [1_000_000_000] * 64
    for i in range(n):
        row = i % 64
        sub = ends[row] - 200_000
        free, start = ends[row], ends[row] + 20_000
        mid = start + 300_000 + (i * 7919) % 400_000
        fin = start + 1_000_000 + (i * 104729) % 900_000
        ends[row] = fin
        segs = [(q, sub, free), (d, free, start), (c, start, mid), (w, mid, fin)]
        tasks.append(
            TaskRecord(
                id=i + 1, lane=lanes[row // 16], name=f"tool{i % 7}", args_summary=f"f{i}.py",
                outcome="error" if i % 997 == 0 else "ok", submitted_ns=sub, slot_free_ns=free,
                started_ns=start, finished_ns=fin, cpu_ns=mid - start, wait_ns=fin - mid,
                slot=row % 16, segments=segs,
            )
        )  # fmt: skip
    info = {"kind": "async", "priority": 1, "min_concurrency": 1, "max_concurrency": 16}
    return Trace(tasks, lanes={name: info for name in lanes}, n_cores=2)
