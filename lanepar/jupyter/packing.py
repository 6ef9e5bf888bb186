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
import itertools
import operator
import struct
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..trace.model import PACKED_HEAD, RunningTask, Sample, TaskRecord
from .histogram import LogHistogram as LogHistogram
from .histogram import bin_of as _bin
from .messages import OUTCOME_CODE, DeltaMessage, Figures, LaneState

_HEAD = struct.Struct(PACKED_HEAD)
_SAMPLE = 64  # records a tick's live figures come from (a Python loop each: 256 cost the most)
# The slot behind ``TaskRecord.packed``: the property costs a frame per record (a third of it).
_PACKED = operator.attrgetter("_p")
_LANE = operator.attrgetter("lane")
_NAME = operator.attrgetter("name")
_OUTCOME = operator.attrgetter("outcome")
# the id, a little-endian int64 at the head of a packed record
_ID_BYTES = operator.itemgetter(slice(0, 8))


def packed_ids(packed: Iterable[bytes]) -> array.array[int]:
    """The ids of packed records (their 8-byte heads as one int64 array: no int per record)."""
    ids = array.array("q", b"".join(map(_ID_BYTES, packed)))
    if sys.byteorder != "little":  # pragma: no cover - the layout is little-endian
        ids.byteswap()
    return ids


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
        # The packed records sent so far, as the lists they were sent in: the same bytes objects
        # the recorder holds, so remembering them costs a pointer a record and no work per tick.
        self._sent: list[list[bytes]] = []
        self._n_sent = 0
        self._sent_ids: set[int] | None = None
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
        self.alone_ns = 0  # cpu + I/O wait: what the tasks would also spend run one by one
        self.lane_done: dict[str, int] = {}
        self.lane_running: dict[str, int] = {}
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
        """One ``delta`` message with ``tasks`` (records not sent before: recorder deltas never
        repeat one, and ``finish()`` passes :meth:`unsent`), counted into the live figures."""
        names_before = len(self.names)
        enc = self._encode(tasks, fresh=True)
        run = array.array("q")
        run_args: list[str] = []
        lane_of, name_of = self._lane, self._name
        self.lane_running = {}
        for r in running:
            self.lane_running[r.lane] = self.lane_running.get(r.lane, 0) + 1
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

    @property
    def sent_ids(self) -> set[int]:
        """Ids of the records sent so far (built when asked: only a resync or an unusual
        ``finish()`` needs them)."""
        if self._sent_ids is None:
            self._sent_ids = set(packed_ids(itertools.chain.from_iterable(self._sent)))
        return self._sent_ids

    def unsent(self, tasks: Sequence[TaskRecord]) -> list[TaskRecord]:
        """The records of ``tasks`` not sent yet, in order.

        A run's trace is normally the records sent, in the order they were sent, then the tail
        the last tick missed: that is checked by object identity (C-level, no id decoded) and
        the tail returned. Any other trace is compared by id."""
        packed = list(map(_PACKED, tasks))
        k = self._n_sent
        if k <= len(packed) and all(
            map(operator.is_, packed, itertools.chain.from_iterable(self._sent))
        ):
            return list(tasks[k:])
        fresh = map(operator.not_, map(self.sent_ids.__contains__, packed_ids(packed)))
        return list(itertools.compress(tasks, fresh))

    def resend(
        self, tasks: Sequence[TaskRecord], samples: Sequence[Sample]
    ) -> tuple[DeltaMessage, list[bytes]]:
        """Everything again, for a view that missed messages: the full name table, no
        counting, and the current ``seq`` (the view was reset to expect it)."""
        enc = self._encode(tasks, fresh=False)
        width, smp = self._pack_samples(samples, account=False)
        return self._message(enc, array.array("q"), [], width, smp, len(samples), 0, self.now_ns)

    def _encode(self, tasks: Sequence[TaskRecord], *, fresh: bool) -> _Encoded:
        # Column-wise with C-level map()/attrgetter and no tuple per task: a Python loop body per
        # task costs ~1 µs, and a tuple per task (a GC-tracked container) sets off collections
        # that walk every live object — each would spend the whole budget of a fast batch.
        packed = list(map(_PACKED, tasks))
        if fresh and packed:
            self._sent.append(packed)
            self._n_sent += len(packed)
            self._sent_ids = None
        n = len(packed)
        lane_codes = self._codes(tasks, _LANE, self.lane_index, self._lane)
        name_codes = self._codes(tasks, _NAME, self.name_index, self._name)
        outcome_codes = list(map(OUTCOME_CODE.get, map(_OUTCOME, tasks), itertools.repeat(1)))
        codes = array.array("H", bytes(6 * n))
        codes[0::3] = array.array("H", lane_codes)
        codes[1::3] = array.array("H", outcome_codes)
        codes[2::3] = array.array("H", name_codes)
        errors = []  # (any() is C-level: the Python loop only when something failed)
        if any(outcome_codes):
            errors = [(k, tasks[k].error or tasks[k].outcome)
                      for k, c in enumerate(outcome_codes) if c]  # fmt: skip
        if fresh and n:
            self._account(packed, lane_codes)
            self.errors += len(errors)
        ends = array.array("I", itertools.accumulate(map(len, packed)))
        return _Encoded(n, b"".join(packed), ends, codes, errors)

    @staticmethod
    def _codes(tasks: Sequence[TaskRecord], attr: Callable[[TaskRecord], str],
               index: dict[str, int], add: Callable[[str], int]) -> list[int]:  # fmt: skip
        """Each task's ``attr`` as its index in a table (no list of the strings in between)."""
        codes = list(map(index.get, map(attr, tasks)))
        if None in codes:  # new names: add each once (in order of appearance), then look up again
            for v in dict.fromkeys(map(attr, tasks)):
                if v not in index:
                    add(v)
            codes = list(map(index.get, map(attr, tasks)))
        return codes  # type: ignore[return-value]

    def _account(self, packed: list[bytes], lane_codes: list[int]) -> None:
        """Live figures from new records, estimated from an evenly spaced sample of at most
        ``_SAMPLE`` of them (each standing for ``weight`` records): an estimate a tenth of a
        second old needs no more, and the final figures are exact."""
        done = self.lane_done
        for i, name in enumerate(self.lanes):  # (a few lanes: a C-level count each)
            k = lane_codes.count(i)
            if k:
                self.lanes_used.add(name)
                done[name] = done.get(name, 0) + k
        step = -(-len(packed) // _SAMPLE)  # (ceiling: at most _SAMPLE heads, never 2x)
        heads = [_HEAD.unpack_from(p) for p in packed[::step]]
        weight = len(packed) / len(heads)
        cq, cd = self.queued.counts, self.dispatch.counts
        task_time = alone = 0
        first, last = self.first_ns, self.last_ns
        for h in heads:
            sub, free, start, fin = h[1], h[2], h[3], h[4]
            task_time += fin - start  # a task that never started has started == finished
            if h[9] >= 0:
                alone += min(h[5] + h[6], max(fin - start, 0))
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
        self.alone_ns += int(alone * weight)
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
        """Live estimates with the definitions of ``summarize()``: speedup = the finished tasks'
        CPU + I/O wait over the elapsed time; ideal = the sum over the lanes used of
        min(tasks seen in the lane, its limit). The final figures are ``summarize()``'s own."""
        start = self.first_ns if self.first_ns is not None else self.t0_ns
        end = self.now_ns if self.n_running or self.done < self.total else self.last_ns
        elapsed = max(end - start, 0) / 1e9
        task_time = self.task_time_ns / 1e9
        speedup = self.alone_ns / 1e9 / elapsed if elapsed > 0 else 0.0
        ideal = 0.0
        for name in self.lanes_used | set(self.lane_running):
            st = self.lane_state.get(name)
            if st is None or not st["limit"]:
                continue
            seen = self.lane_done.get(name, 0) + self.lane_running.get(name, 0) + st["pending"]
            ideal += min(seen, st["limit"])
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

    def set_peaks(self, per_lane: Mapping[str, Mapping[str, Any]]) -> None:
        """The exact peaks of a finished run (``summarize()``'s, from the records the timeline
        draws), replacing the sampled ones: a 20 Hz sampler misses short peaks."""
        for lane, info in per_lane.items():
            self._lane(lane)
            self.lane_state[lane]["max_active"] = int(info.get("peak_active", 0))

    def lane_rows(self) -> list[LaneState]:
        return [dict(self.lane_state[n]) for n in self.lanes]  # type: ignore[misc]
