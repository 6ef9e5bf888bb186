"""What batches of one shape actually took, per mode: auto mode's measured ground truth.

The model in :mod:`lanepar.policy.auto` predicts both schedules from tool profiles. For a small
batch of tools that take microseconds, the two differ by the executor's own hand-offs and
fan-out — tens of µs either way, inside any model's error — and the model's answer is a coin
toss with a 5-10 % price. But agents run the same few batch shapes again and again (the same
tools, turn after turn), so what each mode really took for a shape is there to be had: kept here
from every finished batch (``auto`` or fixed mode alike), it decides once both modes have been
seen a few times, and it is what the decision says it went by.

A shape is the batch's (lane, tool name) pairs, sorted: arguments differ from turn to turn, the
cost of a glob over a directory hardly does. Only small batches are kept (``max_calls``) — a large
batch's schedules differ by far more than the model's error — and only batches that ran where
their tools live (no process routing) and ended cleanly.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

from ..run._seams import Decision
from ..trace.model import Trace
from ._model import fmt_ns

Shape = tuple[tuple[str, str], ...]
MODES = ("sequential", "parallel")


class ShapeTimes:
    """The last ``keep`` wall times of each (shape, mode), for at most ``max_shapes`` shapes.

    A mode that stops being chosen stops being measured, and the machine under it may change (a
    busier host, a warmer cache): once ``recheck_every`` batches of a shape have run without it,
    :func:`measured` runs it once more, so a stale choice costs one batch in that many.
    """

    def __init__(
        self,
        *,
        keep: int = 7,
        min_runs: int = 3,
        max_calls: int = 64,
        max_shapes: int = 256,
        recheck_every: int = 64,
    ) -> None:
        if keep < 1 or not 1 <= min_runs <= keep or recheck_every < 1:
            raise ValueError(f"ShapeTimes: need 1 <= min_runs ({min_runs}) <= keep ({keep}) "
                             f"and recheck_every ({recheck_every}) >= 1")  # fmt: skip
        self.keep = keep
        self.min_runs = min_runs
        self.max_calls = max_calls
        self.max_shapes = max_shapes
        self.recheck_every = recheck_every
        self._walls: collections.OrderedDict[Shape, dict[str, collections.deque[int]]] = (
            collections.OrderedDict()
        )
        #: per shape: batches recorded in all, and that count at each mode's latest
        self._count: dict[Shape, dict[str, int]] = {}
        #: per (shape, mode): the median of its kept walls once it has ``min_runs`` of them,
        #: worked out as a run is recorded (learning, after the batch) rather than as a batch
        #: is decided (on its critical path)
        self._medians: dict[tuple[Shape, str], float] = {}
        #: per shape: (ratio, :func:`measured`'s decision at that ratio), until its next run is
        #: recorded — worked out by the learning that records it (``AutoPolicy``), so that the
        #: decision of the batch after is a look-up: its reason's formatting and the checks
        #: were half of an auto decision's ~20 µs, on a 1 ms batch's critical path
        self._decided: dict[Shape, tuple[float, Decision | None]] = {}

    def shape_of(self, calls: Iterable[tuple[str, str]]) -> Shape | None:
        """The shape of a batch of (lane, tool name) calls; None when too large to keep."""
        pairs = list(calls)
        if not 2 <= len(pairs) <= self.max_calls:
            return None
        return tuple(sorted(pairs))

    def record(self, shape: Shape, mode: str, wall_ns: int) -> bool:
        """Keep one run; True when auto mode has asked about this shape (:func:`measured`)
        since its last run: its answer is now stale, and is worth working out again."""
        if mode not in MODES or wall_ns <= 0:
            return False
        walls = self._walls.get(shape)
        if walls is None:
            walls = self._walls[shape] = {}
            if len(self._walls) > self.max_shapes:  # the least recently run shape goes
                gone, _ = self._walls.popitem(last=False)
                self._count.pop(gone, None)
                self._decided.pop(gone, None)
                for m in MODES:
                    self._medians.pop((gone, m), None)
        else:
            self._walls.move_to_end(shape)
        runs = walls.get(mode)
        if runs is None:
            runs = walls[mode] = collections.deque(maxlen=self.keep)
        runs.append(wall_ns)
        if len(runs) >= self.min_runs:
            self._medians[shape, mode] = _median(runs)
        count = self._count.setdefault(shape, {"all": 0})
        count["all"] += 1
        count[mode] = count["all"]
        return self._decided.pop(shape, None) is not None

    def unrun_for(self, shape: Shape, mode: str) -> int:
        """How many batches of ``shape`` have run since ``mode`` last did."""
        count = self._count.get(shape)
        return count["all"] - count.get(mode, 0) if count else 0

    def runs(self, shape: Shape, mode: str) -> int:
        walls = self._walls.get(shape)
        return len(walls.get(mode, ())) if walls else 0

    def median(self, shape: Shape, mode: str) -> float | None:
        """The median of the kept walls (ns) of ``mode`` for ``shape``: one slow run (a
        collection, a page fault) must not flip the choice; None below ``min_runs`` runs."""
        return self._medians.get((shape, mode))

    def to_dict(self) -> dict[str, dict[str, float]]:
        """Per shape (``"lane/tool, ..."``), each mode's median wall in ms and its run count."""
        out: dict[str, dict[str, float]] = {}
        for shape, walls in self._walls.items():
            key = ", ".join(f"{lane}/{name}" for lane, name in shape)
            out[key] = {}
            for mode, runs in walls.items():
                out[key][f"{mode}_ms"] = _median(runs) / 1e6
                out[key][f"{mode}_runs"] = len(runs)
        return out


def _median(runs: Iterable[int]) -> float:
    ordered = sorted(runs)
    mid = len(ordered) // 2
    return (ordered[mid] + ordered[~mid]) / 2


def measured(st: ShapeTimes, shape: Shape, ratio: float) -> Decision | None:
    """The decision from what this batch shape really took in each mode, once both have been
    run ``st.min_runs`` times: parallel when its median is under ``ratio`` of sequential's.
    None: not known yet, the model decides. Checked before the model, which it makes moot.

    The answer is kept until the shape's next run is recorded: it depends on nothing else."""
    known = st._decided.get(shape)
    if known is not None and known[0] == ratio:
        return known[1]
    decision = _measured(st, shape, ratio)
    st._decided[shape] = (ratio, decision)
    return decision


def _measured(st: ShapeTimes, shape: Shape, ratio: float) -> Decision | None:
    seq, par = st.median(shape, "sequential"), st.median(shape, "parallel")
    if seq is None or par is None:
        return None
    mode = "parallel" if par < ratio * seq else "sequential"
    both = f"parallel {fmt_ns(par)} vs sequential {fmt_ns(seq)}"
    other = "sequential" if mode == "parallel" else "parallel"
    if st.unrun_for(shape, other) >= st.recheck_every:
        return Decision(other, f"{other} (re-checking it: {st.unrun_for(shape, other)} batches "
                        f"of this shape since it last ran; measured {both})")  # fmt: skip
    return Decision(mode, f"{mode}: measured on this batch shape, {both} (medians of the last "
                    f"{st.keep} runs of each)")  # fmt: skip


def explore(st: ShapeTimes, shape: Shape, head: str) -> Decision | None:
    """For a batch the model cannot call (its caller decides when: predictions too close, or
    a saving too small to trust) whose shape has one mode measured: the other one, until it
    has been measured too — then :func:`measured` has something to go by. A few batches in
    the slower mode, once per shape, is the price. None: the model decides."""
    for mode, other in (MODES, MODES[::-1]):
        known = st.median(shape, other)
        if known is not None and st.runs(shape, mode) < st.min_runs:
            why = f"{other} measured on this batch shape, {fmt_ns(known)}"
            return Decision(mode, f"{mode} (trying it: {why}; the model's {head} is too close "
                            "to call)")  # fmt: skip
    return None


def finished(result: Any, trace: Trace) -> tuple[Trace, str, int, bool]:
    """What learning keeps of a finished batch: never its results."""
    decision = getattr(result, "decision", None)
    clean = bool(getattr(result, "ok", False)) and not getattr(result, "interrupted", False)
    clean = clean and not (decision is not None and decision.routes)
    wall_ns = int(float(getattr(result, "wall_s", 0.0)) * 1e9)
    return trace, str(getattr(result, "mode", "")), wall_ns, clean
