"""What-if replay: simulate a recorded trace's tasks under other lane limits and core counts.

A discrete-event simulation; every choice below is stated because a what-if is only as good as
the model behind it:

- **Tasks** arrive at their recorded submission time (relative to the trace start) and queue in
  their lane in submission order (ties by id). Tasks that never started (cancelled while queued)
  are skipped and counted.
- **Slots.** A task holds a lane slot from the moment it starts until its body ends, exactly like
  a lanepar worker. With ``max_total`` the lanes share a budget as ``lanepar.budget`` does: each
  lane's ``min_concurrency`` slots are reserved, the rest go to the lane with the lowest
  ``priority`` number that has work waiting.
- **Body.** The body is the recorded sequence of ``cpu`` and ``wait`` segments, each kind scaled
  so the totals equal the exact ``cpu_ns`` and ``wait_ns`` (segments are merged at a resolution,
  totals are not). Without segments the body is its CPU, then its wait. With ``include_dispatch``
  the recorded dispatch delay comes first and, like a wait, needs no core.
- **Cores: processor sharing.** Every CPU phase in progress shares the cores fairly (each gets at
  most one core), because that is what the OS scheduler approximates over a millisecond; FIFO
  cores would model a run-to-completion scheduler that lanepar does not have.
- **The GIL.** CPU phases of ``async`` and ``thread`` lanes all share ONE extra resource of one
  core: pure-Python CPU on threads does not scale, and an async lane's CPU runs on the single
  event-loop thread anyway. ``process`` and ``dask`` lanes do not take it (``dask`` CPU is counted
  against ``cores`` too: the model knows no remote machines). Pass ``gil=False`` for code that
  releases the GIL (numpy, hashing large buffers) or a free-threaded Python.
- **Waits** (I/O, sleep, a child process) need no resource and keep their recorded length: the
  replay assumes the outside world answers as fast under the new limits as it did when recorded.

Cores are shared by a max-min fair split: GIL lanes as a group get at most one core, so with
``g`` GIL-bound and ``x`` free CPU phases each phase advances at a rate computed in ``_rates``.
Each class has one virtual clock of service received per phase, so a phase's finish is a heap
entry on its class's clock and one event costs O(log n): 100k tasks replay in about a second.
"""

from __future__ import annotations

import collections
import heapq
import math
import os
from collections.abc import Mapping
from typing import Any

from ..trace.model import Trace

GIL_KINDS = frozenset({"async", "thread"})


def _tol(t: float) -> float:
    """Event times are float ns: two events closer than this (well under 1 ns) coincide."""
    return 1e-9 * abs(t) + 1e-6


class _Task:
    __slots__ = ("arrive", "cls", "id", "idx", "lane", "marks", "phases", "slot", "start")

    def __init__(self, tid: int, lane: str, arrive: float, phases: list[tuple[str, float]]):
        self.id = tid
        self.lane = lane
        self.arrive = arrive
        self.phases = phases
        self.idx = 0
        self.start = 0.0
        self.cls = 0  # 0: GIL-bound CPU, 1: free CPU
        self.slot = -1
        self.marks: list[tuple[str, float]] | None = None  # (kind, start) per phase: timeline


def _body_phases(task: Any, include_dispatch: bool) -> list[tuple[str, float]]:
    """The body as (kind, duration_ns) phases, totals scaled to the exact cpu_ns / wait_ns."""
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
    return out


def _rates(g: int, x: int, cores: int) -> tuple[float, float]:
    """Max-min fair core shares of one GIL-bound and one free CPU phase."""
    if g + x == 0:
        return 0.0, 0.0
    level = cores / (g + x)
    if g == 0 or level * g <= 1.0:
        share = min(level, 1.0)
        return share, share
    return 1.0 / g, (min(1.0, (cores - 1.0) / x) if x else 0.0)


def replay(
    trace: Trace,
    lanes: Mapping[str, int] | None = None,
    cores: int | None = None,
    max_total: int | None = None,
    *,
    gil: bool = True,
    include_dispatch: bool = True,
    timeline: bool = False,
) -> dict[str, Any]:
    """Simulate ``trace``'s tasks with lane limits ``lanes`` (others keep their recorded limit),
    ``cores`` cores (default: the trace's core count) and an optional shared ``max_total``.

    Returns JSON-able numbers: the simulated ``wall_s``, average core utilisation, and per lane
    the tasks, busy time (at least one task active), slot-seconds, peak concurrency, limit used.
    With ``timeline=True`` also ``"timeline"``: per simulated task ``(id, lane, slot, arrive_ns,
    start_ns, end_ns, [(kind, start_ns, end_ns), ...])`` relative to the trace start, the lowest
    free slot taken as a lanepar worker pool would, so the replay can be drawn like the run.
    """
    info = {name: dict(v) for name, v in trace.lanes.items()}
    slots_seen: dict[str, int] = {}
    for t in trace.tasks:
        slots_seen[t.lane] = max(slots_seen.get(t.lane, 0), t.slot + 1)
        info.setdefault(t.lane, {"min_concurrency": 0})
    overrides = dict(lanes or {})
    for name, n in overrides.items():
        if name not in info:
            raise ValueError(f"replay: unknown lane {name!r}; lanes are {', '.join(info)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"replay: lanes[{name!r}]={n!r} must be an integer >= 1")
    limit: dict[str, int] = {}
    for name, cfg in info.items():
        recorded = cfg.get("max_concurrency")
        fallback = recorded if isinstance(recorded, int) and recorded >= 1 else None
        limit[name] = overrides.get(name) or fallback or max(1, slots_seen.get(name, 1))
    if cores is None:
        cores = trace.n_cores if trace.n_cores > 0 else (os.cpu_count() or 1)
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ValueError(f"replay: cores={cores!r} must be an integer >= 1")
    reserve = {n: int(c.get("min_concurrency", 0) or 0) for n, c in info.items()}
    shared_cap = math.inf
    if max_total is not None:
        if isinstance(max_total, bool) or not isinstance(max_total, int) or max_total < 1:
            raise ValueError(f"replay: max_total={max_total!r} must be an integer >= 1")
        if sum(reserve.values()) > max_total:
            raise ValueError(
                f"replay: max_total={max_total} is smaller than the reserved slots "
                f"(sum of min_concurrency = {sum(reserve.values())})"
            )
        shared_cap = max_total - sum(reserve.values())
    order = sorted(info, key=lambda n: (int(info[n].get("priority", 1)), n))
    free_kind = {n: not gil or info[n].get("kind", "async") not in GIL_KINDS for n in info}

    tasks: list[_Task] = []
    skipped = 0
    cpu_total = 0.0
    for rec in trace.tasks:
        if rec.slot < 0:
            skipped += 1
            continue
        tk = _Task(rec.id, rec.lane, float(rec.submitted_ns - trace.start_ns), [])
        tk.phases = _body_phases(rec, include_dispatch)
        tk.cls = 1 if free_kind[rec.lane] else 0
        if timeline:
            tk.marks = []
        cpu_total += float(rec.cpu_ns)
        tasks.append(tk)
    tasks.sort(key=lambda tk: (tk.arrive, tk.id))

    queue: dict[str, collections.deque[_Task]] = {n: collections.deque() for n in info}
    active = dict.fromkeys(info, 0)
    stats = {
        n: {"tasks": 0, "busy": 0.0, "slot": 0.0, "queued": 0.0, "peak": 0, "since": 0.0}
        for n in info
    }
    shared_used = 0
    vclock = [0.0, 0.0]  # service received per CPU phase, per class
    cpu_heaps: list[list[tuple[float, int, _Task]]] = [[], []]
    waits: list[tuple[float, int, _Task]] = []
    seq = 0
    now = 0.0
    wall = 0.0
    free_slots: dict[str, list[int]] = {n: [] for n in info}  # heaps of released slots
    next_slot = dict.fromkeys(info, 0)
    drawn: list[_Task] = []

    def advance(tk: _Task) -> None:
        """Start the task's next phase, or finish it and free its slot."""
        nonlocal seq, shared_used, wall
        if tk.idx < len(tk.phases):
            kind, dur = tk.phases[tk.idx]
            tk.idx += 1
            seq += 1
            if tk.marks is not None:
                tk.marks.append((kind, now))
            if kind != "cpu":  # a wait or the dispatch delay: time passes, nothing is held
                heapq.heappush(waits, (now + dur, seq, tk))
            else:
                heapq.heappush(cpu_heaps[tk.cls], (vclock[tk.cls] + dur, seq, tk))
            return
        st = stats[tk.lane]
        st["slot"] += now - tk.start
        if tk.marks is not None:
            tk.marks.append(("", now))
            heapq.heappush(free_slots[tk.lane], tk.slot)
        active[tk.lane] -= 1
        if active[tk.lane] >= reserve[tk.lane]:
            shared_used -= 1
        if active[tk.lane] == 0:
            st["busy"] += now - st["since"]
        wall = max(wall, now)

    def fill() -> None:
        nonlocal shared_used
        for name in order:
            q = queue[name]
            while q and active[name] < limit[name]:
                reserved = active[name] < reserve[name]
                if not reserved and shared_used >= shared_cap:
                    break
                if not reserved:
                    shared_used += 1
                tk = q.popleft()
                st = stats[name]
                if active[name] == 0:
                    st["since"] = now
                active[name] += 1
                st["peak"] = max(st["peak"], active[name])
                st["tasks"] += 1
                st["queued"] += now - tk.arrive
                tk.start = now
                if tk.marks is not None:
                    pool = free_slots[name]
                    if pool:
                        tk.slot = heapq.heappop(pool)
                    else:
                        tk.slot = next_slot[name]
                        next_slot[name] += 1
                    drawn.append(tk)
                advance(tk)

    i = 0
    while i < len(tasks) or waits or cpu_heaps[0] or cpu_heaps[1]:
        rg, rx = _rates(len(cpu_heaps[0]), len(cpu_heaps[1]), cores)
        rate = (rg, rx)
        nxt = tasks[i].arrive if i < len(tasks) else math.inf
        if waits:
            nxt = min(nxt, waits[0][0])
        snap = -1
        for c in (0, 1):
            if cpu_heaps[c]:
                t_c = now + (cpu_heaps[c][0][0] - vclock[c]) / rate[c]
                if t_c < nxt:
                    nxt, snap = t_c, c
        if not math.isfinite(nxt):  # pragma: no cover - every phase has a finite end
            raise RuntimeError("replay: simulation stalled")
        nxt = max(nxt, now)
        for c in (0, 1):
            vclock[c] += rate[c] * (nxt - now)
        if snap >= 0:  # rounding must never leave the chosen phase a hair short of done
            vclock[snap] = max(vclock[snap], cpu_heaps[snap][0][0])
        now = nxt
        done: list[_Task] = []
        for c in (0, 1):
            h = cpu_heaps[c]
            while h and h[0][0] <= vclock[c] + _tol(vclock[c]):
                done.append(heapq.heappop(h)[2])
        while waits and waits[0][0] <= now + _tol(now):
            done.append(heapq.heappop(waits)[2])
        while i < len(tasks) and tasks[i].arrive <= now + _tol(now):
            queue[tasks[i].lane].append(tasks[i])
            i += 1
        for tk in done:
            advance(tk)
        fill()

    wall_s = wall / 1e9
    per_lane = {
        n: {
            "tasks": int(st["tasks"]),
            "busy_s": st["busy"] / 1e9,
            "slot_s": st["slot"] / 1e9,
            "queued_s": st["queued"] / 1e9,
            "peak_active": int(st["peak"]),
            "max_concurrency": limit[n],
        }
        for n, st in stats.items()
    }
    out: dict[str, Any] = {
        "wall_s": wall_s,
        "recorded_wall_s": trace.wall_ns / 1e9,
        "cpu_s": cpu_total / 1e9,
        "cpu_util_avg": (cpu_total / (wall * cores)) if wall > 0 else 0.0,
        "per_lane": per_lane,
        "lanes": dict(limit),
        "cores": cores,
        "max_total": max_total,
        "gil": gil,
        "tasks": len(tasks),
        "skipped": skipped,
    }
    if timeline:
        out["timeline"] = [
            (tk.id, tk.lane, tk.slot, tk.arrive, tk.start, m[-1][1],
             [(k, a, b) for (k, a), (_k, b) in zip(m, m[1:])])
            for tk in drawn
            if (m := tk.marks)
        ]  # fmt: skip
    return out
