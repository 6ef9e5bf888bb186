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
- **Body.** The body is the recorded sequence of ``cpu`` and ``wait`` segments, scaled to the
  exact totals (``analysis.replaybody``); with ``include_dispatch`` the recorded dispatch delay
  comes first and, like a wait, needs no core.
- **Cores: processor sharing.** Every CPU phase in progress shares the cores fairly (each gets at
  most one core), because that is what the OS scheduler approximates over a millisecond; FIFO
  cores would model a run-to-completion scheduler that lanepar does not have.
- **The GIL.** CPU phases of ``async`` and ``thread`` lanes all share ONE extra resource of one
  core: pure-Python CPU on threads does not scale, and an async lane's CPU runs on the single
  event-loop thread anyway. ``process`` and ``dask`` lanes do not take it (``dask`` CPU is counted
  against ``cores`` too: the model knows no remote machines). Pass ``gil=False`` for code that
  releases the GIL (numpy, hashing large buffers) or a free-threaded Python.
- **Waits** (I/O, sleep, a child process) keep their recorded length but for their share that
  was CPU on this machine outside any traced body (``local_cpu``: ``analysis.localcpu``):
  phases at a wait's ends, ``own`` (this process's, on the GIL) and ``local`` (its children's,
  on a core), less the slowdown they had in the recorded run. A local service packed slows.

Cores are shared by a max-min fair split: GIL lanes as a group get at most one core, so with
``g`` GIL-bound and ``x`` free CPU phases each phase advances at a rate computed in ``_rates``.
Each class has one virtual clock of service received per phase, so a phase's finish is a heap
entry on its class's clock and one event costs O(log n): 100k tasks replay in about a second.

A what-if widget replays one trace on every slider move, so the per-trace work (each task's body
as phases, the arrival order) is done once by ``Replayer``; ``run`` only simulates, on plain lists
indexed by task and lane, because attribute and dict look-ups per event were most of its cost.
"""

from __future__ import annotations

import collections
import heapq
import math
import os
from collections.abc import Mapping
from typing import Any

from ..trace.model import Trace
from .localcpu import local_cpu_shares
from .replaybody import CPU_KINDS, LOCAL_KINDS, body_phases, without_recorded_stretch

GIL_KINDS = frozenset({"async", "thread"})


def _tol(t: float) -> float:
    """Event times are float ns: two events closer than this (well under 1 ns) coincide."""
    return 1e-9 * abs(t) + 1e-6


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
    local_cpu: bool = True,
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
    rp = Replayer(trace, include_dispatch=include_dispatch, local_cpu=local_cpu)
    return rp.run(lanes, cores, max_total, gil=gil, timeline=timeline)


class Replayer:
    """``trace`` prepared once for many replays: ``Replayer(trace).run(lanes={...})`` gives what
    ``replay(trace, lanes={...})`` gives, without re-reading every record per what-if."""

    def __init__(
        self, trace: Trace, *, include_dispatch: bool = True, local_cpu: bool = True
    ) -> None:
        self.trace = trace
        self.include_dispatch = include_dispatch
        #: The shares of each wait replayed as this process's CPU and its children's (0: off).
        self.own_share, self.local_share = local_cpu_shares(trace) if local_cpu else (0.0, 0.0)
        info = {name: dict(v) for name, v in trace.lanes.items()}
        slots_seen: dict[str, int] = {}
        rows: list[tuple[float, int, str, tuple[tuple[bool, str, float], ...]]] = []
        skipped = 0
        cpu_total = 0.0
        t0 = trace.start_ns
        for rec in trace.tasks:
            lane, slot = rec.lane, rec.slot
            slots_seen[lane] = max(slots_seen.get(lane, 0), slot + 1)
            info.setdefault(lane, {"min_concurrency": 0})
            if slot < 0:
                skipped += 1
                continue
            body = body_phases(rec, include_dispatch, self.own_share, self.local_share)
            phases = tuple((k in CPU_KINDS, k, d) for k, d in body)
            rows.append((float(rec.submitted_ns - t0), rec.id, lane, phases))
            cpu_total += float(rec.cpu_ns) + sum(d for k, d in body if k in LOCAL_KINDS)
        rows.sort(key=lambda r: (r[0], r[1]))
        self.info = info
        self.slots_seen = slots_seen
        self.skipped = skipped
        self.cpu_total = cpu_total
        self.names = list(info)
        index = {n: i for i, n in enumerate(self.names)}
        self.arrive = [r[0] for r in rows]
        self.ids = [r[1] for r in rows]
        self.lane_of = [index[r[2]] for r in rows]
        self.phases = [r[3] for r in rows]
        if self.own_share + self.local_share > 0:  # (a replay as recorded says by how much)
            as_recorded = self._sim(None, None, None, True, True)[0]
            self.phases = without_recorded_stretch(self.phases, as_recorded._marks)

    def run(
        self,
        lanes: Mapping[str, int] | None = None,
        cores: int | None = None,
        max_total: int | None = None,
        *,
        gil: bool = True,
        timeline: bool = False,
    ) -> dict[str, Any]:
        """One replay under these limits (see ``replay`` for the model and the result)."""
        sim, limit, cores = self._sim(lanes, cores, max_total, gil, timeline)
        names, trace = self.names, self.trace
        wall = sim.wall
        cpu_total = self.cpu_total
        per_lane = {
            n: {
                "tasks": sim.tasks[i],
                "busy_s": sim.busy[i] / 1e9,
                "slot_s": sim.slot[i] / 1e9,
                "queued_s": sim.queued[i] / 1e9,
                "peak_active": sim.peak[i],
                "max_concurrency": limit[n],
            }
            for i, n in enumerate(names)
        }
        out: dict[str, Any] = {
            "wall_s": wall / 1e9,
            "recorded_wall_s": trace.wall_ns / 1e9,
            "cpu_s": cpu_total / 1e9,  # (the local phases' CPU included)
            "cpu_util_avg": (cpu_total / (wall * cores)) if wall > 0 else 0.0,
            "local_cpu_share": self.own_share + self.local_share,
            "own_cpu_share": self.own_share,  # (of it, the part on the GIL)
            "per_lane": per_lane,
            "lanes": dict(limit),
            "cores": cores,
            "max_total": max_total,
            "gil": gil,
            "tasks": len(self.arrive),
            "skipped": self.skipped,
        }
        if timeline:
            out["timeline"] = sim.timeline(self, names)
        return out

    def _sim(
        self, lanes: Mapping[str, int] | None, cores: int | None, max_total: int | None,
        gil: bool, timeline: bool,
    ) -> tuple[_Sim, dict[str, int], int]:  # fmt: skip
        """The limits checked and filled in from the trace, and one simulation under them."""
        info, trace = self.info, self.trace
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
            limit[name] = overrides.get(name) or fallback or max(1, self.slots_seen.get(name, 1))
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
        names = self.names
        by_priority = sorted(info, key=lambda n: (int(info[n].get("priority", 1)), n))
        order = [names.index(n) for n in by_priority]
        free = [not gil or info[n].get("kind", "async") not in GIL_KINDS for n in names]
        sim = _Sim(self, [limit[n] for n in names], [reserve[n] for n in names], shared_cap,
                   order, [1 if f else 0 for f in free], cores, timeline, gil)  # fmt: skip
        return sim, limit, cores


class _Sim:
    """One simulation run: per lane totals and, with a timeline, each task's slot and marks.

    The event loop is written out on lists indexed by task and lane, with local variables,
    because a what-if slider replays a 1,000-task trace per move; its arithmetic is the earlier
    one-pass version's, operation for operation, so the floats (and the predictions pinned in
    tests/test_replay_pinned.py) are exactly the same.
    """

    def __init__(
        self,
        rp: Replayer,
        limit: list[int],
        reserve: list[int],
        shared_cap: float,
        order: list[int],
        lane_cls: list[int],
        cores: int,
        timeline: bool,
        gil: bool = True,
    ) -> None:
        arrive, lane_of, phases = rp.arrive, rp.lane_of, rp.phases
        n, n_lanes = len(arrive), len(limit)
        push, pop = heapq.heappush, heapq.heappop
        tcls = [lane_cls[ln] for ln in lane_of]
        t_idx = [0] * n
        t_start = [0.0] * n
        t_slot = [-1] * n
        marks: list[list[float]] = [[] for _ in range(n)] if timeline else []  # phase starts
        queues: list[collections.deque[int]] = [collections.deque() for _ in range(n_lanes)]
        active = [0] * n_lanes
        s_tasks, s_peak = [0] * n_lanes, [0] * n_lanes
        s_busy, s_slot, s_queued, s_since = ([0.0] * n_lanes for _ in range(4))
        free_slots: list[list[int]] = [[] for _ in range(n_lanes)]  # heaps of released slots
        next_slot = [0] * n_lanes
        drawn: list[int] = []
        rates: dict[tuple[int, int], tuple[float, float]] = {}
        cpu0: list[tuple[float, int, int]] = []  # (service at the end, seq, task): GIL-bound
        cpu1: list[tuple[float, int, int]] = []  # the same for CPU that needs no GIL
        waits: list[tuple[float, int, int]] = []  # (time at the end, seq, task)
        v0 = v1 = 0.0  # each class's virtual clock: service received per CPU phase
        shared_used = seq = i = 0
        now = wall = 0.0

        def advance(ti: int) -> None:
            """Start the task's next phase, or finish it and free its slot."""
            nonlocal seq, shared_used, wall
            ph = phases[ti]
            k = t_idx[ti]
            if k < len(ph):
                is_cpu, _kind, dur = ph[k]
                t_idx[ti] = k + 1
                seq += 1
                if timeline:
                    marks[ti].append(now)
                if not is_cpu:  # a wait or the dispatch delay: time passes, nothing is held
                    push(waits, (now + dur, seq, ti))
                elif _kind == "own" and gil:  # (this process's own work: on the GIL)
                    push(cpu0, (v0 + dur, seq, ti))
                elif tcls[ti] or _kind in LOCAL_KINDS:  # (a core, no GIL: a child's, or gil=False)
                    push(cpu1, (v1 + dur, seq, ti))
                else:
                    push(cpu0, (v0 + dur, seq, ti))
                return
            ln = lane_of[ti]
            s_slot[ln] += now - t_start[ti]
            if timeline:
                marks[ti].append(now)  # the end
                push(free_slots[ln], t_slot[ti])
            active[ln] -= 1
            if active[ln] >= reserve[ln]:
                shared_used -= 1
            if active[ln] == 0:
                s_busy[ln] += now - s_since[ln]
            if now > wall:
                wall = now

        while i < n or waits or cpu0 or cpu1:
            key = (len(cpu0), len(cpu1))
            rate = rates.get(key)
            if rate is None:
                rate = rates[key] = _rates(key[0], key[1], cores)
            rg, rx = rate
            nxt = arrive[i] if i < n else math.inf
            if waits and waits[0][0] < nxt:
                nxt = waits[0][0]
            snap = -1
            if cpu0:
                t_c = now + (cpu0[0][0] - v0) / rg
                if t_c < nxt:
                    nxt, snap = t_c, 0
            if cpu1:
                t_c = now + (cpu1[0][0] - v1) / rx
                if t_c < nxt:
                    nxt, snap = t_c, 1
            if not math.isfinite(nxt):  # pragma: no cover - every phase has a finite end
                raise RuntimeError("replay: simulation stalled")
            if nxt < now:
                nxt = now
            v0 += rg * (nxt - now)
            v1 += rx * (nxt - now)
            # rounding must never leave the chosen phase a hair short of done
            if snap == 0 and v0 < cpu0[0][0]:
                v0 = cpu0[0][0]
            elif snap == 1 and v1 < cpu1[0][0]:
                v1 = cpu1[0][0]
            now = nxt
            # events closer than _tol(t) coincide (the same expression, inline)
            done: list[int] = []
            if cpu0:
                lim = v0 + (1e-9 * abs(v0) + 1e-6)
                while cpu0 and cpu0[0][0] <= lim:
                    done.append(pop(cpu0)[2])
            if cpu1:
                lim = v1 + (1e-9 * abs(v1) + 1e-6)
                while cpu1 and cpu1[0][0] <= lim:
                    done.append(pop(cpu1)[2])
            lim = now + (1e-9 * abs(now) + 1e-6)
            while waits and waits[0][0] <= lim:
                done.append(pop(waits)[2])
            while i < n and arrive[i] <= lim:
                queues[lane_of[i]].append(i)
                i += 1
            for ti in done:
                advance(ti)
            for ln in order:  # free slots take queued tasks, lanes by priority
                q = queues[ln]
                while q and active[ln] < limit[ln]:
                    reserved = active[ln] < reserve[ln]
                    if not reserved:
                        if shared_used >= shared_cap:
                            break
                        shared_used += 1
                    ti = q.popleft()
                    if active[ln] == 0:
                        s_since[ln] = now
                    active[ln] += 1
                    if active[ln] > s_peak[ln]:
                        s_peak[ln] = active[ln]
                    s_tasks[ln] += 1
                    s_queued[ln] += now - arrive[ti]
                    t_start[ti] = now
                    if timeline:
                        pool = free_slots[ln]
                        if pool:
                            t_slot[ti] = pop(pool)
                        else:
                            t_slot[ti] = next_slot[ln]
                            next_slot[ln] += 1
                        drawn.append(ti)
                    advance(ti)
        self.wall = wall
        self.tasks, self.peak = s_tasks, s_peak
        self.busy, self.slot, self.queued = s_busy, s_slot, s_queued
        self._drawn, self._marks, self._slots, self._starts = drawn, marks, t_slot, t_start

    def timeline(self, rp: Replayer, names: list[str]) -> list[Any]:
        out = []
        phases, lanes, ids, arrive = rp.phases, rp.lane_of, rp.ids, rp.arrive
        for ti in self._drawn:
            m = self._marks[ti]
            if m:
                ph = phases[ti]
                segs = [("wait" if ph[j][1] in LOCAL_KINDS else ph[j][1], m[j], m[j + 1])
                        for j in range(len(m) - 1)]  # fmt: skip
                out.append((ids[ti], names[lanes[ti]], self._slots[ti], arrive[ti],
                            self._starts[ti], m[-1], segs))  # fmt: skip
        return out
