"""Turning recorder deltas into the dashboard's binary messages, and the live figures.

This runs on the recorder's ticker thread, in the same process as the batch it watches, so every
microsecond per task is stolen from the batch: a record's packed bytes travel as they are (the
JavaScript decodes ``TaskRecord.packed``), and the only per-task Python work is one header unpack
for the live figures and three small table look-ups. Percentiles are kept in log-spaced
histograms (32 bins per octave, found with integer bit tricks instead of ``math.log``) because
sorting every latency ten times a second would cost more than the tasks being measured; the final
figures come from ``lanepar.analysis.summary.summarize`` and are exact.
"""

from __future__ import annotations

import array
import functools
import itertools
import operator
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..trace.model import PACKED_HEAD, RunningTask, Sample, TaskRecord
from .histogram import LogHistogram as LogHistogram
from .histogram import bin_of as _bin
from .messages import OUTCOME_CODE, DeltaMessage, Figures, LaneState

_HEAD = struct.Struct(PACKED_HEAD)
_SAMPLE = 256
_PACKED = operator.attrgetter("packed")
_LANE = operator.attrgetter("lane")
_NAME = operator.attrgetter("name")
_OUTCOME = operator.attrgetter("outcome")
# little-endian int64 fields of a packed head, read without building a tuple per record
_ID_BYTES = operator.itemgetter(slice(0, 8))


_from_le = functools.partial(int.from_bytes, byteorder="little")  # C-level: no frame per call


def _column(packed: list[bytes], field: Callable[[bytes], bytes]) -> list[int]:
    return list(map(_from_le, map(field, packed)))


class _Encoded(NamedTuple):
    n: int
    records: bytes
    ends: array.array[int]
    codes: array.array[int]
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
        # Column-wise with C-level map()/attrgetter and no tuple per task: a Python loop body per
        # task costs ~1 µs, and a tuple per task (a GC-tracked container) sets off collections
        # that walk every live object — each would spend the whole budget of a fast batch.
        packed = list(map(_PACKED, tasks))
        if fresh_only:
            sent = self.sent_ids
            ids = _column(packed, _ID_BYTES)
            if not sent.isdisjoint(ids):
                keep = [i for i, t in enumerate(ids) if t not in sent]
                tasks = [tasks[i] for i in keep]
                packed = [packed[i] for i in keep]
                ids = [ids[i] for i in keep]
            sent.update(ids)
        n = len(packed)
        lane_codes = self._codes(list(map(_LANE, tasks)), self.lane_index, self._lane)
        name_codes = self._codes(list(map(_NAME, tasks)), self.name_index, self._name)
        outcomes = list(map(_OUTCOME, tasks))
        outcome_codes = list(map(OUTCOME_CODE.get, outcomes, itertools.repeat(1)))
        codes = array.array("H", bytes(6 * n))
        codes[0::3] = array.array("H", lane_codes)
        codes[1::3] = array.array("H", outcome_codes)
        codes[2::3] = array.array("H", name_codes)
        errors = [(k, tasks[k].error or outcomes[k]) for k, c in enumerate(outcome_codes) if c != 0]
        if fresh_only and n:
            self._account(packed, lane_codes)
            self.errors += len(errors)
        ends = array.array("I", itertools.accumulate(map(len, packed)))
        return _Encoded(n, b"".join(packed), ends, codes, errors)

    @staticmethod
    def _codes(values: list[str], index: dict[str, int], add: Callable[[str], int]) -> list[int]:
        codes = list(map(index.get, values))
        if None in codes:
            codes = [c if c is not None else add(v) for c, v in zip(codes, values)]
        return codes  # type: ignore[return-value]

    def _account(self, packed: list[bytes], lane_codes: list[int]) -> None:
        """Live figures from new records, estimated from an evenly spaced sample of at most
        ``_SAMPLE`` of them (each standing for ``weight`` records): an estimate a tenth of a
        second old needs no more, and the final figures are exact."""
        for i in set(lane_codes):
            self.lanes_used.add(self.lanes[i])
        step = max(1, len(packed) // _SAMPLE)
        heads = [_HEAD.unpack_from(p) for p in packed[::step]]
        weight = len(packed) / len(heads)
        cq, cd = self.queued.counts, self.dispatch.counts
        task_time = 0
        first, last = self.first_ns, self.last_ns
        for h in heads:
            sub, free, start, fin = h[1], h[2], h[3], h[4]
            task_time += fin - start  # a task that never started has started == finished
            q = free - sub
            cq[_bin(q) if q > 0 else 0] += weight
            if h[9] >= 0:
                d = start - free
                cd[_bin(d) if d > 0 else 0] += weight
            if first is None or sub < first:
                first = sub
            if fin > last:
                last = fin
        self.task_time_ns += int(task_time * weight)
        self.first_ns, self.last_ns = first, last

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
            enc.records,
            enc.ends.tobytes(),
            enc.codes.tobytes(),
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
