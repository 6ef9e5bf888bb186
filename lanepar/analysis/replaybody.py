"""A recorded task's body as the phases replay simulates, and the local CPU within its waits.

The body is the recorded sequence of ``cpu`` and ``wait`` segments, each kind scaled so the totals
equal the exact ``cpu_ns`` and ``wait_ns`` (segments are merged at a resolution, totals are not).
Part of a wait may have been CPU on this machine (``analysis.localcpu``): this process's own work
(``own``, which needs the GIL: the event loop's callbacks around the tool's steps) and the rest
of the process tree's (``local``: a child process, a local server). Each wait gives those shares
up as phases at its two ends — a request's work at its start, the response's at its end.

Those phases were already slowed by each other in the recorded run, and that slowdown is in the
recorded waits. :func:`without_recorded_stretch` takes it back out: a replay at the recorded
limits says how much longer than their demand the local phases ran, and each task's pure wait
gives that up, so replaying the trace as it ran gives back its own wall time, not more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: A phase: (whether it needs a core, kind, duration ns).
Phase = tuple[bool, str, float]
#: The kinds a wait's local CPU is split off as (this process's, the rest of the tree's).
LOCAL_KINDS = frozenset({"own", "local"})
CPU_KINDS = LOCAL_KINDS | {"cpu"}


def body_phases(
    task: Any, include_dispatch: bool, own: float = 0.0, local: float = 0.0
) -> list[tuple[str, float]]:
    """The body as (kind, duration_ns) phases; ``own`` and ``local`` of each wait split off at
    its two ends. With ``include_dispatch`` the recorded dispatch delay comes first."""
    body = [(k, float(e - s)) for k, s, e in task.segments if k in ("cpu", "wait")]
    totals = {"cpu": float(task.cpu_ns), "wait": float(task.wait_ns)}
    seg_sum = {"cpu": 0.0, "wait": 0.0}
    for k, d in body:
        seg_sum[k] += d
    for kind in ("cpu", "wait"):
        if seg_sum[kind] <= 0 and totals[kind] > 0:
            body.append((kind, totals[kind]))  # lost to merging: CPU first, then wait
            seg_sum[kind] = totals[kind]
    scaled = [(k, d * totals[k] / seg_sum[k]) for k, d in body if d > 0 and seg_sum[k] > 0]
    out: list[tuple[str, float]] = []
    if include_dispatch and task.dispatch_ns > 0:
        out.append(("dispatch", float(task.dispatch_ns)))  # needs no resource, like a wait
    for k, d in scaled:
        if out and out[-1][0] == k:
            out[-1] = (k, out[-1][1] + d)
        else:
            out.append((k, d))
    if own > 0 or local > 0:
        ends = [(k, f / 2) for k, f in (("own", own), ("local", local)) if f > 0]
        split = [*ends, ("wait", 1 - own - local), *ends[::-1]]
        out = [(k2, d * f) for k, d in out for k2, f in (split if k == "wait" else [(k, 1.0)])]
    return out


def without_recorded_stretch(
    phases: Sequence[tuple[Phase, ...]], marks: Sequence[Sequence[float]]
) -> list[tuple[Phase, ...]]:
    """``phases`` with each task's waits shortened by how much longer than their demand its
    local phases ran in a replay at the recorded limits (``marks``: each task's phase starts
    and its end in that replay; empty for a task it did not run), never below zero."""
    out = []
    for ph, m in zip(phases, marks):
        stretch = sum(m[j + 1] - m[j] - ph[j][2] for j in range(min(len(ph), len(m) - 1))
                      if ph[j][1] in LOCAL_KINDS)  # fmt: skip
        waits = sum(d for _c, k, d in ph if k == "wait")
        if stretch > 0 and waits > 0:
            f = max(0.0, 1.0 - stretch / waits)
            ph = tuple((c, k, d * f if k == "wait" else d) for c, k, d in ph)
        out.append(ph)
    return out
