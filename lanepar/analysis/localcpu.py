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
from .stats import merged

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
    """CPU ns the process tree used while tools ran, outside the tasks' traced CPU (0 without
    samples): its sampled average over the spans some body ran in, times their length, less
    the bodies' CPU. Only those spans: between batches the tree's CPU (a notebook kernel's own
    work, say) is nobody's wait."""
    busy = merged((t.started_ns, t.finished_ns) for t in trace.tasks if t.slot >= 0)
    used = seen = 0.0
    lo, hi, j = trace.start_ns, trace.end_ns, 0
    prev: int | None = None
    for smp in sorted(trace.samples, key=lambda x: x.t_ns):
        # (this sample's interval in the window: the first one only closes the interval before)
        a, b = max(prev if prev is not None else hi, lo), min(smp.t_ns, hi)
        if b > a and smp.cores:
            while j < len(busy) and busy[j][1] <= a:  # (samples come in time order)
                j += 1
            k, overlap = j, 0
            while k < len(busy) and busy[k][0] < b:
                overlap += min(b, busy[k][1]) - max(a, busy[k][0])
                k += 1
            if overlap > 0:
                used += smp.proc_cpu * overlap
                seen += overlap
        prev = smp.t_ns
    avg = used / seen if seen > 0 else 0.0
    if not avg > 0:  # (none seen, 0, or NaN from a hostile sample)
        return 0.0
    ran = sum(e - s for s, e in busy)
    return max(0.0, avg * ran - sum(float(t.cpu_ns) for t in trace.tasks))


def local_cpu_share(trace: Trace) -> float:
    """The share of the tasks' wait time that was CPU on this machine outside any traced body
    (:func:`untraced_cpu_ns` over the waits of the tasks that ran), at most ``MAX_SHARE``."""
    waits = sum(float(t.wait_ns) for t in trace.tasks if t.slot >= 0)
    if waits <= 0:
        return 0.0
    return min(MAX_SHARE, untraced_cpu_ns(trace) / waits)
