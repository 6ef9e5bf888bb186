"""Auto mode: decide per batch whether parallelism can pay, and where CPU-heavy calls should run.

``seed_rule`` is the common agent-framework rule (fewer than 3 tools, or only instant directory ops,
run sequentially); it stays as the fallback before anything has been measured. ``AutoPolicy`` learns
a ``ToolProfile`` per tool (EWMA of body wall time and CPU fraction) and the executor's own costs
from finished tasks, then predicts both schedules of a batch:

- sequential: ``sum(wall + handoff)`` — a lane's handoff is the measured gap from one task's
  end to the next one's start when they run back to back;
- parallel: ``fanout + max(lane makespans, GIL-bound CPU, CPU / cores)`` — each lane is a list
  schedule over its slots with the lane's measured dispatch delay per task; CPU of thread and
  async lanes cannot overlap (one GIL), and no schedule beats the cores.

Parallel is chosen only if it is predicted to take under ``min_ratio`` (95%) of the sequential
time AND to save at least ``min_saving_ns``: a saving inside the executor's own jitter is not a
saving, and a parallel batch of tiny tools occupies slots other batches could use.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psutil

from ..config import LaneConfig
from ..run._seams import Decision
from ..tools.registry import Resolved
from ..trace.model import TaskRecord, Trace
from ._model import GIL_KINDS, fmt_ns, gil_waits, makespan
from .shapes import ShapeTimes, explore, finished, measured

FAST_OPS = frozenset({"glob", "ls", "list_files"})


def seed_rule(names: Sequence[str]) -> Decision:
    if len(names) < 3:
        return Decision("sequential", f"{len(names)} tool(s): fewer than 3 cannot repay dispatch")
    if all(n in FAST_OPS for n in names):
        return Decision("sequential", "only instant directory ops (glob/ls/list_files)")
    return Decision("parallel", f"{len(names)} tools, not all instant")


@dataclasses.dataclass
class ToolProfile:
    """What one tool costs: EWMAs of body wall time and of the CPU share of that time."""

    name: str
    count: int = 0
    wall_ns: float = 0.0
    cpu_fraction: float = 0.0
    errors: int = 0

    def update(self, wall_ns: int, cpu_ns: int, ok: bool, alpha: float) -> None:
        frac = min(1.0, cpu_ns / wall_ns) if wall_ns > 0 else 0.0
        if self.count == 0:
            self.wall_ns, self.cpu_fraction = float(wall_ns), frac
        else:
            self.wall_ns += alpha * (wall_ns - self.wall_ns)
            self.cpu_fraction += alpha * (frac - self.cpu_fraction)
        self.count += 1
        self.errors += not ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "wall_ms": self.wall_ns / 1e6,
            "cpu_fraction": self.cpu_fraction,
            "errors": self.errors,
        }


def _lane_facts(lane: Any) -> tuple[str, int]:
    """(kind, current limit) of a LaneConfig, a live Lane, or a trace's lane dict."""
    if isinstance(lane, Mapping):
        kind, limit = lane.get("kind", "async"), lane.get("max_concurrency", 1)
    else:
        cfg = getattr(lane, "config", lane)
        kind = getattr(lane, "kind", None) or getattr(cfg, "kind", "async")
        limit = getattr(lane, "limit", None)
        if limit is None:
            mc = getattr(cfg, "max_concurrency", 1)
            limit = mc if isinstance(mc, int) else getattr(cfg, "initial_limit", 1)
    return str(kind), max(1, int(limit) if isinstance(limit, int) else 1)


class AutoPolicy:
    """Learns from finished tasks; decides sequential vs parallel and process routing per batch.

    It is the executor's ``BatchPolicy`` (``LaneExecutor(auto_policy=...)``, or made on the
    first ``mode="auto"`` batch) and an observer: ``batch_finished`` keeps the finished batch's
    trace — never its results — and learning happens at the next decision, bounded per batch,
    so an executor that runs auto mode rarely pays for it rarely.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        n_cores: int | None = None,
        process_lane: str | None = None,
        min_ratio: float = 0.95,
        min_saving_ns: float = 1_000_000,
        measured_ratio: float = 0.97,
        explore_band: float = 1.25,
        tiny_ns: float = 200_000,
        cpu_heavy_fraction: float = 0.7,
        cpu_heavy_ns: float = 5_000_000,
        handoff_ns: float = 150_000,
        dispatch_ns: float = 150_000,
        fanout_ns: float = 300_000,
        process_overhead_ns: float = 1_000_000,
        unknown_wall_ns: float = 10_000_000,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"AutoPolicy: alpha={alpha!r} must be in (0, 1]")
        self.alpha = alpha
        self.n_cores = n_cores or os.cpu_count() or 1
        self.process_lane = process_lane
        self.min_ratio = min_ratio
        self.min_saving_ns = min_saving_ns
        self.measured_ratio = measured_ratio
        self.explore_band = explore_band
        #: What each mode really took per small batch shape (see :mod:`lanepar.policy.shapes`).
        self.shapes = ShapeTimes()
        self.tiny_ns = tiny_ns
        self.cpu_heavy_fraction = cpu_heavy_fraction
        self.cpu_heavy_ns = cpu_heavy_ns
        self.fanout_ns = fanout_ns
        self.process_overhead_ns = process_overhead_ns
        self.unknown_wall_ns = unknown_wall_ns
        self.profiles: dict[str, ToolProfile] = {}
        #: Learned executor costs per lane (EWMA, ns): the gap between back-to-back tasks, and
        #: the delay from a free slot to the body's start.
        self.default_handoff_ns = float(handoff_ns)
        self.default_dispatch_ns = float(dispatch_ns)
        self.handoff: dict[str, float] = {}
        self.dispatch: dict[str, float] = {}
        #: finished batches not learnt from yet: (trace, mode, wall ns, clean: ok, unrouted)
        self._unlearnt: collections.deque[tuple[Trace, str, int, bool]] = collections.deque(
            maxlen=16
        )
        self._learn_scheduled = False

    # -- learning ---------------------------------------------------------------------------------
    def observe(
        self, records: Iterable[TaskRecord], lane_kinds: Mapping[str, str] | None = None
    ) -> None:
        """Learn tool profiles and executor overheads from finished tasks (one batch at a time).

        Time a task spent waiting for the GIL or for a core is not counted as its own: a tool
        measured only in parallel batches (or on a busy machine) would otherwise look like I/O
        and never be routed. The trace's measured ``gil_ns`` / ``runq_ns`` say it; where a trace
        lacks them, ``lane_kinds`` (lane -> kind) lets the GIL wait of thread/async tasks be
        inferred from their overlap.
        """
        # each record with its numbers, unpacked once (id, submitted, slot_free, started,
        # finished, cpu, wait, gil, runq, slot): learning runs between an agent's batches
        started = [(r, h) for r in records if (h := r.head())[9] >= 0 and r.outcome != "cancelled"]
        gil_wait = gil_waits(started, lane_kinds) if lane_kinds else {}
        dispatch = self.dispatch
        for r, h in started:  # cancelled or never ran: its wall time is not the tool's cost
            prof = self.profiles.get(r.name)
            if prof is None:
                prof = self.profiles[r.name] = ToolProfile(r.name)
            # What the tool would take alone: without waiting for the GIL or a core. Measured
            # (the thread-state observer) where the trace has it, inferred from overlap if not.
            contention = h[7] + h[8] or gil_wait.get(h[0], 0)
            wall = max(h[5], h[4] - h[3] - contention)
            prof.update(wall, h[5], r.outcome == "ok", self.alpha)
            dispatch[r.lane] = self._learn(dispatch.get(r.lane, self.default_dispatch_ns),
                                           h[3] - h[2])  # fmt: skip
        # A task that existed while its predecessor ran but started only after it finished was
        # handed over: the gap is what running back to back costs per task.
        started.sort(key=lambda rh: rh[1][3])
        for (prev, hp), (nxt, hn) in zip(started, started[1:], strict=False):
            if nxt.lane == prev.lane and hn[1] <= hp[4] <= hn[3]:
                gap = hn[3] - hp[4]
                if gap < 50_000_000:  # a longer gap is the caller pausing, not the executor
                    self.handoff[nxt.lane] = self._learn(
                        self.handoff.get(nxt.lane, self.default_handoff_ns), gap
                    )

    def _learn(self, old: float, sample: float) -> float:
        """EWMA step with the sample clamped to 10x the estimate: a cold start (a process pool
        spawning, a first import) must not make a lane look unusable for many batches."""
        return old + self.alpha * (min(float(sample), 10.0 * old + 1000.0) - old)

    def batch_finished(self, result: Any) -> None:
        """Observer hook: keep the batch's trace and learn from it right after the caller has
        its result (the next turn of the executor's loop), not on the batch's critical path;
        a decision that comes first learns whatever is still pending itself."""
        trace = getattr(result, "trace", None)
        if trace is None:
            return
        self._unlearnt.append(finished(result, trace))
        if not self._learn_scheduled:
            try:
                asyncio.get_running_loop().call_soon(self._learn_pending)
            except RuntimeError:  # not on asyncio (trio): the next decision learns
                return
            self._learn_scheduled = True

    def _learn_pending(self) -> None:
        self._learn_scheduled = False
        pending = list(self._unlearnt)
        self._unlearnt.clear()
        for trace, mode, wall_ns, clean in pending:
            self.learn((trace,))
            if clean and len(trace.tasks) <= self.shapes.max_calls:
                shape = self.shapes.shape_of((t.lane, t.name) for t in trace.tasks)
                # a shape auto mode decides: its next batch decided now, not on its critical path
                if shape is not None and self.shapes.record(shape, mode, wall_ns):
                    measured(self.shapes, shape, self.measured_ratio)

    # -- deciding ---------------------------------------------------------------------------------
    def learn(self, results: Iterable[Any], per_batch: int = 512) -> None:
        """Learn from finished batches (``BatchResult`` or ``Trace``), at most their last
        ``per_batch`` records each: the latest records say all a running average needs, and a
        20 000-task batch must not cost 20 000 observations."""
        for result in results:
            trace = result if isinstance(result, Trace) else getattr(result, "trace", None)
            if trace is None:
                continue
            kinds = {n: str(v.get("kind", "")) for n, v in trace.lanes.items()}
            self.observe(trace.tasks[-per_batch:], kinds)

    def decide_batch(self, executor: Any, resolved: list[Resolved]) -> Decision:
        """The ``BatchPolicy`` hook: learn what finished since, then decide over the executor's
        lanes, adding a process lane for CPU-heavy tools when none is configured."""
        self._learn_pending()
        lanes = executor.lanes  # (a view built per read: once a decision, unless one is added)
        if self.process_lane is None or self.process_lane not in lanes:
            self.process_lane = process_lane_for(executor)
            lanes = executor.lanes
        return self.decide(resolved, lanes, self.process_lane)

    def _estimate(self, r: Resolved) -> tuple[float, float, bool]:
        """(wall_ns, cpu_fraction, profiled) of one call."""
        p = self.profiles.get(r.name)
        if p is not None:
            return p.wall_ns, p.cpu_fraction, True
        if r.name in FAST_OPS:
            return 50_000.0, 0.5, False
        return self.unknown_wall_ns, 1.0 if r.cpu_bound else 0.0, False

    def decide(
        self, resolved: list[Resolved], lanes: Mapping[str, Any], process_lane: str | None = None
    ) -> Decision:
        n = len(resolved)
        for r in resolved:
            if r.lane not in lanes:
                raise ValueError(f"AutoPolicy: call {r.name!r} is in unknown lane {r.lane!r}")
        if process_lane is not None and process_lane not in lanes:
            raise ValueError(f"AutoPolicy: unknown process lane {process_lane!r}")
        # one pass: the estimates, how many are profiled, and the CPU-heavy calls
        est = [self._estimate(r) for r in resolved]
        profiled = 0
        heavy: list[int] = []
        frac, ns = self.cpu_heavy_fraction, self.cpu_heavy_ns
        for i, (w, f, profiled_i) in enumerate(est):
            if profiled_i:
                profiled += 1
                if f > frac and w > ns:
                    heavy.append(i)
            elif resolved[i].cpu_bound:
                heavy.append(i)
        routes: dict[int, str] = {}
        if process_lane is not None and len(heavy) >= 2:
            routes = {i: process_lane for i in heavy if resolved[i].lane != process_lane}
        if profiled == 0 and not routes:
            seed = seed_rule([r.name for r in resolved])
            return Decision(seed.mode, f"no profiles yet, seed rule: {seed.reason}")
        if n < 2:
            return Decision("sequential", f"{n} call: nothing to overlap")
        shape = None if routes else self.shapes.shape_of((r.lane, r.name) for r in resolved)
        if shape is not None and (known := measured(self.shapes, shape, self.measured_ratio)):
            return known

        # the lanes' kinds and limits only for the model (a measured shape, most repeated
        # batches, decides without them: this decision is on the batch's critical path)
        facts = {r.lane: _lane_facts(lanes[r.lane]) for r in resolved}
        if process_lane is not None:
            facts[process_lane] = _lane_facts(lanes[process_lane])
        t_seq = sum(
            w + self.handoff.get(r.lane, self.default_handoff_ns)
            for r, (w, _, _) in zip(resolved, est, strict=True)
        )
        t_par, bound = self._predict_parallel(resolved, est, routes, facts)
        saving = t_seq - t_par
        head = (
            f"predicted parallel {fmt_ns(t_par)} ({bound}) vs sequential {fmt_ns(t_seq)} "
            f"for {n} calls ({profiled} profiled)"
        )
        # too close to call: within the band, or a saving either way under the minimum
        unsure = max(t_par, t_seq) <= self.explore_band * min(t_par, t_seq)
        unsure = unsure or abs(saving) < self.min_saving_ns
        if shape is not None and unsure and (trial := explore(self.shapes, shape, head)):
            return trial
        if t_par >= self.min_ratio * t_seq or saving < self.min_saving_ns:
            why = (
                f"parallel ≥ {self.min_ratio:.0%} of sequential"
                if t_par >= self.min_ratio * t_seq
                else f"saving {fmt_ns(max(0.0, saving))} < {fmt_ns(self.min_saving_ns)}"
            )
            if all(w < self.tiny_ns for w, _, _ in est):
                why += f"; all tools under {fmt_ns(self.tiny_ns)}, dispatch overhead dominates"
            elif bound == "GIL":
                why += "; CPU-bound Python on threads shares one GIL"
            return Decision("sequential", f"sequential: {head}: {why}")
        reason = f"parallel: {head}, {t_seq / t_par:.1f}x"
        if routes:
            names = sorted({resolved[i].name for i in routes})
            reason += (
                f"; {len(routes)} CPU-heavy call(s) ({', '.join(names)}) routed to "
                f"process lane {process_lane!r}"
            )
        return Decision("parallel", reason, routes)

    def _predict_parallel(
        self,
        resolved: list[Resolved],
        est: list[tuple[float, float, bool]],
        routes: Mapping[int, str],
        facts: Mapping[str, tuple[str, int]],
    ) -> tuple[float, str]:
        per_lane: dict[str, list[float]] = {}
        gil_cpu = all_cpu = 0.0
        for i, (r, (w, f, _)) in enumerate(zip(resolved, est, strict=True)):
            lane = routes.get(i, r.lane)
            kind = facts[lane][0]
            cost = w + self.dispatch.get(lane, self.default_dispatch_ns)
            if i in routes:
                cost += self.process_overhead_ns
            per_lane.setdefault(lane, []).append(cost)
            all_cpu += f * w
            if kind in GIL_KINDS:
                gil_cpu += f * w
        bounds = {
            "slots": max(makespan(ds, facts[ln][1]) for ln, ds in per_lane.items()),
            "GIL": gil_cpu,
            "cores": all_cpu / self.n_cores,
        }
        bound = max(bounds, key=lambda k: bounds[k])
        return self.fanout_ns + bounds[bound], bound

    def to_dict(self) -> dict[str, Any]:
        return {
            "profiles": {k: p.to_dict() for k, p in sorted(self.profiles.items())},
            "handoff_us": {k: v / 1e3 for k, v in sorted(self.handoff.items())},
            "dispatch_us": {k: v / 1e3 for k, v in sorted(self.dispatch.items())},
            "n_cores": self.n_cores,
            "min_ratio": self.min_ratio,
            "min_saving_ms": self.min_saving_ns / 1e6,
            "shapes": self.shapes.to_dict(),
            "cpu_heavy": {"fraction": self.cpu_heavy_fraction, "ms": self.cpu_heavy_ns / 1e6},
        }


def process_lane_for(executor: Any) -> str:
    """The executor's first process lane; when the user configured none, one is added (its
    children start only when a task is routed there)."""
    lanes = executor.lanes
    for name, view in lanes.items():
        if view.kind == "process":
            return str(name)
    name = "cpu" if "cpu" not in lanes else "auto-process"
    cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    executor.add_lane(
        name, LaneConfig(min_concurrency=0, max_concurrency=cores, kind="process", priority=2)
    )
    return name
