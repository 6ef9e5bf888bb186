"""Turning recorder deltas into the dashboard's binary messages, and the live figures.

This runs on the recorder's ticker thread, in the same process as the batch it watches, so every
microsecond per task is stolen from the batch: records are read with one ``fields()`` unpack each
and copied into ``array`` buffers, never into per-number Python lists or JSON. Percentiles are
kept in log-spaced histograms (about 2 % wide bins) because sorting every latency ten times a
second would cost more than the tasks being measured; the final figures come from
``lanepar.analysis.summary.summarize`` and are exact.
"""

from __future__ import annotations

import array
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..trace.model import KIND_CODE, RunningTask, Sample, TaskRecord
from .messages import ARG_SEP, OUTCOME_CODE, DeltaMessage, Figures, LaneState

_BINS_PER_E = 50.0  # bins per factor e: neighbouring bin edges differ by 2 %


class LogHistogram:
    """Counts of non-negative nanosecond values in log-spaced bins, for cheap live percentiles."""

    __slots__ = ("counts", "n")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * 1600  # up to e**32 ns: far beyond any task
        self.n = 0

    def add(self, value_ns: int) -> None:
        b = int(math.log1p(value_ns) * _BINS_PER_E) if value_ns > 0 else 0
        self.counts[b if b < 1600 else 1599] += 1
        self.n += 1

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) in ns: the geometric middle of its bin."""
        if self.n == 0:
            return 0.0
        rank = q / 100.0 * (self.n - 1)
        seen = 0
        for b, c in enumerate(self.counts):
            seen += c
            if seen > rank:
                return math.expm1((b + 0.5) / _BINS_PER_E) if b else 0.0
        return 0.0  # pragma: no cover - the loop always reaches rank < n


class _Encoded(NamedTuple):
    n: int
    ints: array.array[int]
    codes: array.array[int]
    seg_ends: array.array[int]
    seg_kinds: bytearray
    args: list[str]
    errors: list[tuple[int, str]]


class DeltaPacker:
    """Keeps the tables both ends share (lane and tool-name indices) and packs one message.

    ``t0_ns`` is the origin of the time axis; ``base_submitted`` / ``base_finished`` are the
    recorder's counters when the dashboard started, so "done / total" counts this run only.
    """

    def __init__(
        self,
        t0_ns: int,
        lanes: Mapping[str, Mapping[str, Any]],
        n_cores: int,
        *,
        base_submitted: int = 0,
        base_finished: int = 0,
    ) -> None:
        self.t0_ns = t0_ns
        self.lanes: list[str] = list(lanes)
        self.lane_kinds: dict[str, str] = {n: str(v.get("kind", "")) for n, v in lanes.items()}
        self.lane_index: dict[str, int] = {n: i for i, n in enumerate(self.lanes)}
        self.names: list[str] = []
        self.name_index: dict[str, int] = {}
        self.n_cores = n_cores
        self.base_submitted = base_submitted
        self.base_finished = base_finished
        self.sent_ids: set[int] = set()
        self.seq = 0
        # live figures, kept incrementally
        self.done = 0
        self.total = 0
        self.n_running = 0
        self.errors = 0
        self.first_ns: int | None = None
        self.last_ns = t0_ns
        self.now_ns = t0_ns
        self.task_time_ns = 0
        self.util_sum = 0.0
        self.util_n = 0
        self.dispatch = LogHistogram()
        self.queued = LogHistogram()
        self.lane_state: dict[str, LaneState] = {
            n: {
                "name": n,
                "kind": self.lane_kinds[n],
                "active": 0,
                "pending": 0,
                "limit": int(v.get("max_concurrency") or 0),
                "max_active": 0,
            }
            for n, v in lanes.items()
        }
        self.lanes_used: set[str] = set()

    # -- tables ----------------------------------------------------------------------------
    def _lane(self, name: str) -> int:
        i = self.lane_index.get(name)
        if i is None:  # a lane added after the dashboard started
            i = self.lane_index[name] = len(self.lanes)
            self.lanes.append(name)
            self.lane_state[name] = {
                "name": name,
                "kind": "",
                "active": 0,
                "pending": 0,
                "limit": 0,
                "max_active": 0,
            }
        return i

    def _name(self, name: str) -> int:
        i = self.name_index.get(name)
        if i is None:
            i = self.name_index[name] = len(self.names)
            self.names.append(name)
        return i

    # -- packing ---------------------------------------------------------------------------
    def pack(
        self,
        tasks: Sequence[TaskRecord],
        running: Sequence[RunningTask],
        samples: Sequence[Sample],
        *,
        submitted: int,
        finished: int,
        now_ns: int,
    ) -> tuple[DeltaMessage, list[bytes]]:
        """One ``delta`` message with everything in the arguments that was not sent before,
        counted into the live figures."""
        names_before = len(self.names)
        enc = self._encode(tasks, fresh_only=True)
        run = array.array("q")
        run_args: list[str] = []
        lane_of, name_of = self._lane, self._name
        for r in running:
            lane, name = lane_of(r.lane), name_of(r.name)
            run.extend((r.id, lane, r.slot, name, r.submitted_ns, r.started_ns))
            run_args.append(r.args_summary)
            if self.first_ns is None or r.submitted_ns < self.first_ns:
                self.first_ns = r.submitted_ns
        width, smp = self._pack_samples(samples, account=True)
        self.done = finished - self.base_finished
        self.total = submitted - self.base_submitted
        self.n_running = len(running)
        self.now_ns = now_ns
        self.seq += 1
        return self._message(enc, run, run_args, width, smp, len(samples), names_before, now_ns)

    def resend(
        self, tasks: Sequence[TaskRecord], samples: Sequence[Sample]
    ) -> tuple[DeltaMessage, list[bytes]]:
        """Everything again, for a view that missed messages: the full name table, no
        counting, and the current ``seq`` (the view was reset to expect it)."""
        enc = self._encode(tasks, fresh_only=False)
        width, smp = self._pack_samples(samples, account=False)
        return self._message(enc, array.array("q"), [], width, smp, len(samples), 0, self.now_ns)

    def _encode(self, tasks: Sequence[TaskRecord], *, fresh_only: bool) -> _Encoded:
        ints = array.array("q")
        codes = array.array("H")
        seg_ends = array.array("q")
        seg_kinds = bytearray()
        args: list[str] = []
        errors: list[tuple[int, str]] = []
        sent = self.sent_ids
        lane_of, name_of = self._lane, self._name
        dispatch_add, queued_add = self.dispatch.add, self.queued.add
        kind_code = KIND_CODE
        k = 0
        task_time = 0
        first = self.first_ns
        last = self.last_ns
        for rec in tasks:
            f = rec.fields()
            if fresh_only:
                if f[0] in sent:
                    continue
                sent.add(f[0])
            segs = rec.segments
            ints.extend(f)
            codes.extend(
                (lane_of(rec.lane), OUTCOME_CODE.get(rec.outcome, 1), name_of(rec.name), len(segs))
            )
            sub = f[1]
            for kind, _s, end in segs:
                seg_ends.append(end - sub)
                seg_kinds.append(kind_code[kind])
            args.append(rec.args_summary)
            if rec.outcome != "ok":
                errors.append((k, rec.error or rec.outcome))
            k += 1
            if not fresh_only:
                continue
            if f[7] >= 0:
                dispatch_add(f[3] - f[2])
                task_time += f[4] - f[3]
            queued_add(f[2] - f[1])
            if first is None or sub < first:
                first = sub
            if f[4] > last:
                last = f[4]
            self.lanes_used.add(rec.lane)
        if fresh_only:
            self.first_ns, self.last_ns = first, last
            self.task_time_ns += task_time
            self.errors += len(errors)
        return _Encoded(k, ints, codes, seg_ends, seg_kinds, args, errors)

    def _message(
        self,
        enc: _Encoded,
        run: array.array[int],
        run_args: list[str],
        width: int,
        smp: array.array[float],
        n_samples: int,
        names_from: int,
        now_ns: int,
    ) -> tuple[DeltaMessage, list[bytes]]:
        msg: DeltaMessage = {
            "type": "delta",
            "seq": self.seq,
            "t0_ns": self.t0_ns,
            "now_ns": now_ns,
            "n_tasks": enc.n,
            "n_segments": len(enc.seg_kinds),
            "n_running": len(run_args),
            "n_samples": n_samples,
            "n_cores": self.n_cores,
            "sample_width": width,
            "lanes": list(self.lanes),
            "names": self.names[names_from:],
            "errors": enc.errors,
            "running_args": run_args,
            "done": self.done,
            "total": self.total,
        }
        buffers = [
            enc.ints.tobytes(),
            enc.codes.tobytes(),
            enc.seg_ends.tobytes(),
            bytes(enc.seg_kinds),
            ARG_SEP.join(enc.args).encode("utf-8", "replace"),
            run.tobytes(),
            smp.tobytes(),
        ]
        return msg, buffers

    def _pack_samples(
        self, samples: Iterable[Sample], *, account: bool
    ) -> tuple[int, array.array[float]]:
        n_cores = self.n_cores
        out = array.array("f")
        samples = list(samples)
        for s in samples:
            for lane in s.lanes:
                self._lane(lane)
        n_lanes = len(self.lanes)
        width = 2 + n_cores + 3 * n_lanes
        t0 = self.t0_ns
        pad = [0.0] * n_cores
        for s in samples:
            cores = list(s.cores[:n_cores])
            if len(cores) < n_cores:
                cores += pad[len(cores) :]
            out.append((s.t_ns - t0) / 1e6)
            out.append(s.proc_cpu)
            out.extend(cores)
            if account and s.cores:
                self.util_sum += sum(s.cores) / len(s.cores)
                self.util_n += 1
            for lane in self.lanes:
                counts = s.lanes.get(lane)
                if counts is None:
                    out.extend((0.0, 0.0, 0.0))
                    continue
                out.extend(counts)
                if not account:
                    continue
                st = self.lane_state[lane]
                st["active"], st["pending"], st["limit"] = counts
                if counts[0] > st["max_active"]:
                    st["max_active"] = counts[0]
        return width, out

    # -- figures ---------------------------------------------------------------------------
    def figures(self) -> Figures:
        """Live estimates with the definitions of ``summarize()`` (speedup = task time / wall,
        ideal = min(tasks, summed limits of the lanes used))."""
        start = self.first_ns if self.first_ns is not None else self.t0_ns
        end = self.now_ns if self.n_running or self.done < self.total else self.last_ns
        elapsed = max(end - start, 0) / 1e9
        task_time = self.task_time_ns / 1e9
        speedup = task_time / elapsed if elapsed > 0 else 0.0
        limits = sum(self.lane_state[n]["limit"] for n in self.lanes_used if n in self.lane_state)
        ideal = float(min(max(self.total, self.done), limits)) if limits else 0.0
        return {
            "done": self.done,
            "total": self.total,
            "running": self.n_running,
            "errors": self.errors,
            "elapsed_s": elapsed,
            "task_time_s": task_time,
            "speedup": speedup,
            "ideal_speedup": ideal,
            "efficiency": speedup / ideal if ideal > 0 else 0.0,
            "cpu_util": self.util_sum / self.util_n if self.util_n else 0.0,
            "dispatch_p50_ms": self.dispatch.percentile(50) / 1e6,
            "dispatch_p99_ms": self.dispatch.percentile(99) / 1e6,
            "queued_p50_ms": self.queued.percentile(50) / 1e6,
            "final": False,
        }

    def set_lane_counts(self, counts: Mapping[str, tuple[int, int, int]]) -> None:
        """Take the lanes' current (active, pending, limit), e.g. once the run is over."""
        for lane, (active, pending, limit) in counts.items():
            self._lane(lane)
            st = self.lane_state[lane]
            st["active"], st["pending"], st["limit"] = active, pending, limit
            st["max_active"] = max(st["max_active"], active)

    def lane_rows(self) -> list[LaneState]:
        return [dict(self.lane_state[n]) for n in self.lanes]  # type: ignore[misc]


def final_figures(summary: Mapping[str, Any], *, total: int) -> Figures:
    """The figures panel from an exact ``summarize()`` result."""
    return {
        "done": int(summary["tasks"]),
        "total": max(total, int(summary["tasks"])),
        "running": 0,
        "errors": int(summary["errors"]),
        "elapsed_s": float(summary["wall_s"]),
        "task_time_s": float(summary["task_time_s"]),
        "speedup": float(summary["speedup"]),
        "ideal_speedup": float(summary["ideal_speedup"]),
        "efficiency": float(summary["efficiency"]),
        "cpu_util": float(summary["cpu_util_avg"]),
        "dispatch_p50_ms": float(summary["dispatch_p50_us"]) / 1e3,
        "dispatch_p99_ms": float(summary["dispatch_p99_us"]) / 1e3,
        "queued_p50_ms": float(summary["queued_p50_us"]) / 1e3,
        "final": True,
    }
