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

from collections.abc import Iterator

from ..trace.model import Sample, Trace
from .stats import merged

#: The most of a wait replay will treat as local CPU: some of it is always really waiting.
MAX_SHARE = 0.9


def _intervals(trace: Trace) -> Iterator[tuple[int, int, Sample]]:
    """Each sample with its interval inside the trace window. A sample holds the utilisation
    since the sample before it, so the first one only closes the interval before it."""
    lo, hi = trace.start_ns, trace.end_ns
    prev: int | None = None
    for smp in sorted(trace.samples, key=lambda x: x.t_ns):
        if prev is not None and smp.cores:
            a, b = max(prev, lo), min(smp.t_ns, hi)
            if b > a:
                yield a, b, smp
        prev = smp.t_ns


def window_weights(trace: Trace) -> list[tuple[float, Sample]]:
    """Each sample with the ns of its interval inside the trace window (see ``_intervals``):
    the executor's samples at each batch's start and end cover even a 30 ms batch."""
    return [(float(b - a), smp) for a, b, smp in _intervals(trace)]


#: Lanes whose bodies run in this process (their CPU is in its own clock); the others' run in
#: child processes (``process``) or elsewhere (``dask``).
IN_PROCESS = frozenset({"async", "thread"})


def _busy_avgs(trace: Trace) -> tuple[list[tuple[int, int]], float, float]:
    """The spans some body ran in, and over them the sampled average process-tree CPU and own
    CPU in cores (own -1 where a sample did not record it)."""
    busy = merged((t.started_ns, t.finished_ns) for t in trace.tasks if t.slot >= 0)
    used = own = seen = 0.0
    j = 0
    for a, b, smp in _intervals(trace):
        while j < len(busy) and busy[j][1] <= a:  # (samples come in time order)
            j += 1
        k, overlap = j, 0
        while k < len(busy) and busy[k][0] < b:
            overlap += min(b, busy[k][1]) - max(a, busy[k][0])
            k += 1
        if overlap > 0:
            used += smp.proc_cpu * overlap
            own = own + smp.own_cpu * overlap if smp.own_cpu >= 0 and own >= 0 else -1.0
            seen += overlap
    if not seen > 0:
        return busy, 0.0, -1.0
    return busy, used / seen, own / seen if own >= 0 else -1.0


def untraced_cpu_ns(trace: Trace) -> tuple[float, float]:
    """CPU ns used while tools ran outside the tasks' traced CPU: (this process's own — its
    event loop and threads, which need the GIL —, the rest of the tree's — children, a local
    server). Each is its sampled average over the spans some body ran in, times their length,
    less the CPU of the bodies that ran there. Only those spans: between batches the tree's CPU
    (a notebook kernel's own work, say) is nobody's wait. Without the own CPU in the samples
    all of it is the tree's; without samples, (0, 0)."""
    busy, tree, own = _busy_avgs(trace)
    if not tree > 0:  # (none seen, 0, or NaN from a hostile sample)
        return 0.0, 0.0
    ran = float(sum(e - s for s, e in busy))
    mine = sum(float(t.cpu_ns) for t in trace.tasks
               if trace.lanes.get(t.lane, {}).get("kind", "async") in IN_PROCESS)  # fmt: skip
    total = sum(float(t.cpu_ns) for t in trace.tasks)
    if not own >= 0:
        return 0.0, max(0.0, tree * ran - total)
    own = min(own, tree)
    return max(0.0, own * ran - mine), max(0.0, (tree - own) * ran - (total - mine))


def local_cpu_shares(trace: Trace) -> tuple[float, float]:
    """The shares of the tasks' wait time that were CPU on this machine outside any traced
    body, (this process's, the rest of the tree's) as :func:`untraced_cpu_ns` splits it; both
    together at most ``MAX_SHARE``."""
    waits = sum(float(t.wait_ns) for t in trace.tasks if t.slot >= 0)
    if waits <= 0:
        return 0.0, 0.0
    own, rest = (x / waits for x in untraced_cpu_ns(trace))
    scale = min(1.0, MAX_SHARE / (own + rest)) if own + rest > 0 else 1.0
    return own * scale, rest * scale


def local_cpu_share(trace: Trace) -> float:
    """Both of :func:`local_cpu_shares` together."""
    return sum(local_cpu_shares(trace))
