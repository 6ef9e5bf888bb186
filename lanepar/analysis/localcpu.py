"""The process tree's CPU over a trace's window, and how much of it no traced body accounts for.

A task's ``wait`` is time it was off its own CPU: a remote API, a sleep — or a child process or a
local server doing the work on this machine's cores (a ``grep`` child, a loopback service the
tools call). The first kind is free to overlap; the second competes for the cores like any CPU
phase, so a replay that keeps every wait at its recorded length predicts too much speed-up once
a higher limit packs more of that work together. The sampler's process-tree CPU (own process and
children, read from the kernel) minus the tasks' own CPU says how much local CPU there was
besides the traced bodies: the children's work, and the executor's and the event loop's own.
"""

from __future__ import annotations

from ..trace.model import Sample, Trace

#: The most of a wait replay will treat as local CPU: some of it is always really waiting.
MAX_SHARE = 0.9


def window_weights(trace: Trace) -> list[tuple[float, Sample]]:
    """Each sample with the ns of its interval inside the trace window. A sample holds the
    utilisation since the sample before it, so the first one only closes the interval before
    it, and the executor's samples at each batch's start and end cover even a 30 ms batch."""
    lo, hi = trace.start_ns, trace.end_ns
    weighted: list[tuple[float, Sample]] = []
    prev: int | None = None
    for smp in sorted(trace.samples, key=lambda x: x.t_ns):
        if prev is not None and smp.cores:
            w = min(smp.t_ns, hi) - max(prev, lo)
            if w > 0:
                weighted.append((float(w), smp))
        prev = smp.t_ns
    return weighted


def untraced_cpu_ns(trace: Trace) -> float:
    """CPU ns the process tree used over the window outside the tasks' traced CPU (0 without
    samples): the sampled average process-tree CPU over the whole window, less the bodies'."""
    weighted = window_weights(trace)
    total = sum(w for w, _ in weighted)
    if total <= 0:
        return 0.0
    avg = sum(w * smp.proc_cpu for w, smp in weighted) / total
    if not avg > 0:  # (0, or NaN from a hostile sample)
        return 0.0
    return max(0.0, avg * trace.wall_ns - sum(float(t.cpu_ns) for t in trace.tasks))


def local_cpu_share(trace: Trace) -> float:
    """The share of the tasks' wait time that was CPU on this machine outside any traced body
    (:func:`untraced_cpu_ns` over the waits of the tasks that ran), at most ``MAX_SHARE``."""
    waits = sum(float(t.wait_ns) for t in trace.tasks if t.slot >= 0)
    if waits <= 0:
        return 0.0
    return min(MAX_SHARE, untraced_cpu_ns(trace) / waits)
